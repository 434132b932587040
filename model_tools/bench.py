"""Benchmark of the golden engine against qonnx's own executor, measured in one run."""

from __future__ import annotations

import time
import warnings

import numpy as np

__all__ = ["mnist_like", "qonnx_reference", "bench_golden"]


def mnist_like(images: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` MNIST-like inputs from a few real images: random shifts of up to 2 pixels and pixel
    noise, rounded and clipped to 0..255 (float32, like the originals)."""
    rng = np.random.default_rng(seed)
    picks = images[rng.integers(0, len(images), n)].astype(np.float64)
    out = np.empty_like(picks)
    for i, img in enumerate(picks):
        dy, dx = rng.integers(-2, 3, 2)
        out[i] = np.roll(img, (dy, dx), axis=(-2, -1))
    out += rng.normal(0, 24, out.shape)
    return np.clip(np.round(out), 0, 255).astype(np.float32)


def qonnx_reference(path, x: np.ndarray, progress=None) -> np.ndarray:
    """The model's own output from qonnx's ``execute_onnx``, one sample at a time (the exported
    batch size is fixed at 1), after qonnx's ``cleanup_model``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx
        from qonnx.util.cleanup import cleanup_model
        model = cleanup_model(ModelWrapper(str(path)))
        iname, oname = model.graph.input[0].name, model.graph.output[0].name
        outs = []
        for i, xi in enumerate(x):
            outs.append(execute_onnx(model, {iname: xi[None].astype(np.float32)})[oname][0])
            if progress:
                progress(i + 1)
    return np.stack(outs).astype(np.float32)


def bench_golden(path, x: np.ndarray, progress=None) -> dict:
    """Time the golden engine and qonnx's executor on the same batch; check they agree."""
    from .load import load_model
    from .golden import run
    net = load_model(path)
    run(net, x[:2])  # warm-up
    t0 = time.perf_counter()
    ours = run(net, x)
    t_golden = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = qonnx_reference(path, x, progress)
    t_qonnx = time.perf_counter() - t0
    err = float(np.abs(ours - ref).max())
    scale = float(np.abs(ref).max()) or 1.0
    same_class = float(np.mean(ours.reshape(len(x), -1).argmax(1) == ref.reshape(len(x), -1).argmax(1)))
    return {"inputs": len(x), "golden_s": t_golden, "qonnx_s": t_qonnx,
            "speedup": t_qonnx / t_golden, "max_abs_err": err, "rel_err": err / scale,
            "same_class": same_class}
