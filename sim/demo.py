"""``thresher demo``: the main job on the embedded default model, step by step.

fold -> float accuracy (the ONNX model itself, through qonnx's executor) -> integer accuracy
(golden engine) -> the report. Each step that takes more than a moment shows a progress bar.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from model_tools.errors import ThresherError

__all__ = ["run_demo"]


def _confusion(labels: np.ndarray, predicted: np.ndarray, classes: int) -> list[list[int]]:
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (labels, predicted), 1)
    return m.tolist()


def run_demo(out: Path, progress, say=print) -> dict:
    """Run the demo, write ``out/report.json``; return the report."""
    from model_tools import golden
    from model_tools.bench import qonnx_reference
    from model_tools.default import DEFAULT_MODEL, default_record, digits_test
    from model_tools.files import atomic_write_bytes
    from model_tools.fold import load_model
    from model_tools.report import format_table, layer_rows, network_summary

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ThresherError(f"{out}: exists and is not a directory")
    x, labels = digits_test()
    record = default_record()
    say(f"thresher demo: {DEFAULT_MODEL.name} (digits, {record['wbits']}-bit weights, "
        f"{record['abits']}-bit activations; trained with `{record['command']}`)")

    t0 = time.perf_counter()
    net = load_model(DEFAULT_MODEL)
    timings = {"fold_s": time.perf_counter() - t0}
    say(f"\n[1] folded in {timings['fold_s']:.2f} s\n")
    say(format_table(layer_rows(net)))

    t0 = time.perf_counter()
    float_out = qonnx_reference(DEFAULT_MODEL, x, progress(len(x), "float model (qonnx)"))
    timings["float_s"] = time.perf_counter() - t0
    float_class = float_out.argmax(1)

    t0 = time.perf_counter()
    integer_out = golden.run(net, x)
    timings["golden_s"] = time.perf_counter() - t0
    integer_class = integer_out.argmax(1)
    rel_err = float(np.abs(integer_out - float_out).max() / np.abs(float_out).max())

    accuracy = {"float": float(np.mean(float_class == labels)),
                "integer": float(np.mean(integer_class == labels))}
    report = {
        "model": DEFAULT_MODEL.name,
        "test_images": int(len(x)),
        "accuracy": accuracy,
        "agreement_integer_vs_float": float(np.mean(integer_class == float_class)),
        "golden_vs_float_rel_err": rel_err,
        "network": network_summary(net),
        "layers": layer_rows(net),
        "confusion": _confusion(labels, integer_class, 10),
        "seconds": timings,
    }
    say(f"\n[2] float model (qonnx executor): {accuracy['float']:.2%} on {len(x)} test images "
        f"({timings['float_s']:.1f} s)")
    say(f"[3] integer network (golden engine): {accuracy['integer']:.2%}, class equal to the float "
        f"model's on {report['agreement_integer_vs_float']:.2%}, max |difference| "
        f"{rel_err:.1e} of max |output| ({timings['golden_s'] * 1e3:.1f} ms)")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "report.json", json.dumps(report, indent=1).encode())
    say(f"\nwrote {out / 'report.json'}")
    if report["agreement_integer_vs_float"] != 1.0 or rel_err > 1e-4:
        raise ThresherError("the integer network disagrees with the float model")
    return report
