"""Quantization-aware training of a small convolutional net on scikit-learn's digits, exported as QONNX.

This is how the method obtains its trained model: Brevitas quantizes the weights and activations in
every training iteration, so the exported model's activations are integers that fold exactly into
thresholds. The network is sized for an iCE40 UP5K::

    raw 8-bit pixels (1x8x8, 0..255) -> x / 255 -> QuantIdentity (8-bit unsigned)
    -> QuantConv2d 3x3 (pad 1) 1->8   -> BatchNorm2d -> QuantReLU(abits) -> MaxPool2d 2x2
    -> QuantConv2d 3x3 (pad 1) 8->16  -> BatchNorm2d -> QuantReLU(abits)
    -> flatten (16x4x4) -> QuantLinear 256->10 (with bias; the host applies scale and bias)

(``abits=1`` uses a sign activation instead of QuantReLU, ``wbits=1`` bipolar weights.)

torch, brevitas and scikit-learn are imported inside the functions that need them, so that
``model_tools`` imports without them (training is an optional extra: ``pip install thresher[train]``).
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .errors import ThresherError

__all__ = ["DATASETS", "digits_split", "export_bnn_pynq", "train"]

DATASETS = ("digits",)
INPUT_SHAPE = (1, 1, 8, 8)
CHANNELS = (8, 16)
CLASSES = 10
TEST_FRACTION = 0.3
BATCH_SIZE = 32
LEARNING_RATE = 0.01


# --------------------------------------------------------------------------------------------- data


def digits_split(seed: int = 0):
    """The fixed digits split: ``(x_train, y_train, x_test, y_test)``.

    Images are float32 ``(n, 1, 8, 8)`` holding integer raw pixels 0..255 (the dataset's 0..16 levels
    scaled by 255/16 and rounded), labels int64. The split is stratified and seeded; 30 % (540 images)
    are held out for testing. The demo reads the same split, so it must not change for a given seed.
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise ThresherError("the digits data set needs scikit-learn (pip install scikit-learn)") from exc
    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.float32).reshape(-1, *INPUT_SHAPE[1:])
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        pixels, labels, test_size=TEST_FRACTION, random_state=seed, stratify=labels)
    return x_train, y_train, x_test, y_test


# -------------------------------------------------------------------------------------------- model


def _weight_quant(wbits: int) -> dict:
    """Keyword arguments for ``wbits``-bit weights: per-output-channel scales, or bipolar for 1 bit."""
    from brevitas.quant import Int8WeightPerTensorFloat, SignedBinaryWeightPerTensorConst

    if wbits == 1:
        return {"weight_quant": SignedBinaryWeightPerTensorConst}
    return {"weight_quant": Int8WeightPerTensorFloat, "weight_bit_width": wbits,
            "weight_scaling_per_output_channel": True}


def _activation(abits: int):
    """The ``abits``-bit activation: a QuantReLU, or for 1 bit a sign (bipolar, -1/+1) activation.

    A 1-bit QuantReLU would compute {0, 1} in torch, but Brevitas exports every 1-bit quantizer as
    ``BipolarQuant`` (-1/+1), so the file would not mean what was trained; a signed binary activation
    is what the export says it is (and is the usual binarized-network choice).
    """
    import brevitas.nn as qnn
    from brevitas.quant import SignedBinaryActPerTensorConst

    if abits == 1:
        return qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst)
    return qnn.QuantReLU(bit_width=abits)


def build_model(wbits: int, abits: int):
    """The digits network (see the module docstring) with ``wbits``-bit weights, ``abits``-bit ReLUs."""
    import brevitas.nn as qnn
    import torch
    from brevitas.quant import Uint8ActPerTensorFloat

    class DigitsNet(torch.nn.Module):
        """Input quantizer, two conv/BN/QuantReLU blocks (pooling after the first), linear classifier."""

        def __init__(self):
            super().__init__()
            c1, c2 = CHANNELS
            self.input_quant = qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=8)
            self.features = torch.nn.Sequential(
                qnn.QuantConv2d(1, c1, 3, padding=1, bias=False, **_weight_quant(wbits)),
                torch.nn.BatchNorm2d(c1),
                _activation(abits),
                torch.nn.MaxPool2d(2),
                qnn.QuantConv2d(c1, c2, 3, padding=1, bias=False, **_weight_quant(wbits)),
                torch.nn.BatchNorm2d(c2),
                _activation(abits),
            )
            self.classifier = qnn.QuantLinear(c2 * 4 * 4, CLASSES, bias=True, **_weight_quant(wbits))

        def forward(self, x):
            x = self.input_quant(x / 255.0)  # exports as a scalar Div before the input Quant
            return self.classifier(torch.flatten(self.features(x), 1))

    return DigitsNet()


def weight_count(model) -> int:
    """Number of weights in the conv and linear layers (what the hardware stores)."""
    import brevitas.nn as qnn

    return sum(m.weight.numel() for m in model.modules()
               if isinstance(m, (qnn.QuantConv2d, qnn.QuantLinear)))


# ----------------------------------------------------------------------------------------- training


def _check_params(dataset, wbits, abits, epochs):
    """Reject what cannot be trained, with a message that names the bad value."""
    if dataset not in DATASETS:
        raise ThresherError(f"unknown dataset {dataset!r} (known: {', '.join(DATASETS)})")
    for name, bits in (("wbits", wbits), ("abits", abits)):
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
            raise ThresherError(f"{name} must be an integer from 1 to 8, not {bits!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ThresherError(f"epochs must be a positive integer, not {epochs!r}")


class _Progress:
    """A progress bar on stderr: tqdm when installed, otherwise one line rewritten per epoch."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.bar = total, enabled, None
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc="training", unit="epoch", file=sys.stderr)

    def update(self, epoch: int, loss: float, accuracy: float):
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.3f}", train_acc=f"{accuracy:.3f}")
            self.bar.update(1)
        else:
            print(f"\rtraining: epoch {epoch}/{self.total} loss {loss:.3f} train acc {accuracy:.3f}",
                  end="", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print(file=sys.stderr)


class _Deterministic:
    """Seed torch, use one thread and deterministic kernels (bit-identical reruns); restore on exit."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        import torch

        self.threads = torch.get_num_threads()
        self.deterministic = torch.are_deterministic_algorithms_enabled()
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        torch.manual_seed(self.seed)
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(self.deterministic)
        return False


def _run_epoch(model, optimizer, x, y, generator):
    """One pass over the training set in shuffled mini-batches; returns (mean loss, accuracy)."""
    import torch

    model.train()
    order = torch.randperm(len(x), generator=generator)
    total_loss, correct = 0.0, 0
    for start in range(0, len(x), BATCH_SIZE):
        idx = order[start:start + BATCH_SIZE]
        logits = model(x[idx])
        loss = torch.nn.functional.cross_entropy(logits, y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total_loss += float(loss.detach()) * len(idx)
        correct += int((logits.argmax(1) == y[idx]).sum())
    return total_loss / len(x), correct / len(x)


def accuracy(model, x, y) -> float:
    """Top-1 accuracy of ``model`` in eval mode on numpy images ``x`` and labels ``y``."""
    import torch

    model.eval()
    with torch.no_grad():
        predicted = model(torch.as_tensor(x)).argmax(1).numpy()
    return float(np.mean(predicted == np.asarray(y)))


def export(model, path, input_shape=INPUT_SHAPE) -> Path:
    """Export ``model`` with ``export_qonnx`` (an input of ``input_shape``, batch 1), then qonnx
    ``cleanup_model``."""
    import torch
    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    # The dynamo exporter writes initializers to a side file ("<name>.data"); export into a scratch
    # directory so that only the cleaned-up, self-contained model lands at ``path``.
    with tempfile.TemporaryDirectory() as scratch:
        raw = str(Path(scratch) / "export.onnx")
        with torch.no_grad():
            export_qonnx(model, torch.zeros(input_shape), export_path=raw, verbose=False)
        cleanup_model(ModelWrapper(raw)).save(str(path))
    return path


#: the input of each dataset of Brevitas' ``brevitas_examples.bnn_pynq`` networks (batch 1)
BNN_PYNQ_INPUTS = {"CIFAR10": (1, 3, 32, 32), "MNIST": (1, 1, 28, 28)}


def export_bnn_pynq(name: str, path, seed: int = 0) -> Path:
    """FINN's BNN-PYNQ network ``name`` (``cnv_1w1a``, ``cnv_2w2a``, ``lfc_1w1a``, ``tfc_2w2a``
    ...) as Brevitas defines it (``brevitas_examples.bnn_pynq``), with random weights (torch's
    ``seed``; nothing is downloaded), exported to ``path`` as QONNX (:func:`export`)."""
    try:
        import torch
        from brevitas_examples.bnn_pynq.models import model_with_cfg
    except ImportError as e:
        raise ThresherError(f"FINN's BNN-PYNQ networks need torch and brevitas ({e.name} is "
                            f"missing): pip install 'thresher[train]'") from None
    torch.manual_seed(seed)
    try:
        model, cfg = model_with_cfg(name, pretrained=False)
    except AssertionError:             # Brevitas asserts its cfg/<name>.ini exists
        raise ThresherError(f"{name!r} is no brevitas_examples.bnn_pynq network (cnv_1w1a, "
                            f"cnv_2w2a, lfc_1w1a, tfc_2w2a, ...)") from None
    return export(model, path, BNN_PYNQ_INPUTS[cfg.get("MODEL", "dataset")])


def train(dataset: str = "digits", wbits: int = 4, abits: int = 2, epochs: int = 40, seed: int = 0,
          out=None, progress: bool = True) -> dict:
    """Train the digits network with quantization-aware training and export it to QONNX at ``out``.

    Deterministic for a given ``seed`` (seeded torch, one thread, deterministic kernels; the data split
    is ``digits_split(0)`` whatever the seed, so accuracies are comparable). Adam with a cosine learning
    rate schedule. Returns a summary: ``test_accuracy`` (of the eval-mode model, which the export
    reproduces), ``test_images``, ``train_images``, ``train_seconds``, ``weights``, ``weight_bits``,
    the parameters and ``onnx`` (the path written, or None when ``out`` is None).

    Raises :class:`ThresherError` for an unknown dataset, bits outside 1..8 or epochs < 1.
    """
    _check_params(dataset, wbits, abits, epochs)
    try:
        import torch
        import brevitas  # noqa: F401
    except ImportError as exc:
        raise ThresherError("training needs torch and brevitas (pip install 'thresher[train]')") from exc

    x_train, y_train, x_test, y_test = digits_split(0)
    start = time.perf_counter()
    with _Deterministic(seed):
        model = build_model(int(wbits), int(abits))
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(epochs))
        generator = torch.Generator().manual_seed(seed)
        xt, yt = torch.as_tensor(x_train), torch.as_tensor(y_train)
        bar = _Progress(int(epochs), progress)
        try:
            for epoch in range(1, int(epochs) + 1):
                loss, train_accuracy = _run_epoch(model, optimizer, xt, yt, generator)
                schedule.step()
                bar.update(epoch, loss, train_accuracy)
        finally:
            bar.close()
        seconds = time.perf_counter() - start
        test_accuracy = accuracy(model, x_test, y_test)
        path = export(model, out) if out is not None else None

    weights = weight_count(model)
    return {
        "dataset": dataset, "wbits": int(wbits), "abits": int(abits), "epochs": int(epochs),
        "seed": int(seed), "test_accuracy": test_accuracy, "test_images": int(len(x_test)),
        "train_images": int(len(x_train)), "train_accuracy": train_accuracy,
        "train_seconds": round(seconds, 2), "weights": weights, "weight_bits": weights * int(wbits),
        "onnx": None if path is None else str(path),
    }


def write_record(summary: dict, path, command=None) -> Path:
    """Save a training summary as JSON next to the model, with the command that produced it."""
    record = dict(summary)
    record["command"] = command if command is not None else " ".join(shlex.quote(a) for a in sys.argv)
    path = Path(path)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


DEFAULT_COMMAND = "python -m thresher.model_tools.train model_tools/data/default.onnx"


def train_default(out, progress: bool = True) -> dict:
    """Train the embedded default model (4-bit weights, 2-bit activations, defaults) and its JSON record.

    Writes ``out`` and ``out`` with suffix ``.json`` (the summary plus the command that reproduces it).
    """
    summary = train(dataset="digits", wbits=4, abits=2, seed=0, out=out, progress=progress)
    summary["onnx"] = Path(out).name
    write_record(summary, Path(out).with_suffix(".json"), command=DEFAULT_COMMAND)
    return summary


if __name__ == "__main__":
    # Retrains the embedded default model; run from the checkout so that it lands in the source tree.
    print(json.dumps(train_default(sys.argv[1] if len(sys.argv) > 1 else "model_tools/data/default.onnx"),
                     indent=2, sort_keys=True))
