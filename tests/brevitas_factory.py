"""Random Brevitas QAT networks, their QONNX export and qonnx's reference output (a test utility).

Tests of the importer, the fold and the golden engine need many *different* real Brevitas exports, with
the awkward cases real models contain: negative and zero batch-norm gammas, per-channel weight scales,
signed narrow activations, bipolar weights, pre-processing scalars, max pooling. This module builds such
networks from a seed, exports them with ``brevitas.export.export_qonnx`` (then qonnx ``cleanup_model``),
and computes what the file means with qonnx's own executor, so a test can compare against it.

Public API::

    random_net(seed, kind="conv")          -> torch.nn.Module   (kind: "conv" or "mlp")
    export(model, path, input_shape, dynamo=None) -> pathlib.Path
    random_inputs(seed, input_shape, n)    -> np.ndarray float32 (n, *input_shape[1:]), integer pixels
    reference(path, x)                     -> np.ndarray float32 (n, *out_shape[1:])
    make_case(seed, kind, tmpdir, n=8)     -> (onnx_path, x, y_ref)

The model carries its export shape as ``model.input_shape`` (batch 1, NCHW), the exporter its seed chose
as ``model.dynamo`` and the random choices that built it as ``model.recipe`` (a list of strings, handy in
failure messages).

Both torch ONNX exporters are exercised, chosen by seed, because their graphs differ: the dynamo exporter
(torch >= 2.9 default) writes ``Reshape`` + ``Gemm`` for every linear layer; the TorchScript exporter
(``dynamo=False``, about 7x faster) writes ``Flatten``, and ``MatMul`` with pre-transposed weights for a
linear layer without bias (``Gemm`` with bias).

torch, brevitas and qonnx are imported lazily so that collecting tests does not need them.
"""

from __future__ import annotations

import pathlib
import tempfile

import numpy as np

KINDS = ("conv", "mlp")

# Scalar pre-processing recipes applied with plain torch ops inside ``forward``; they export as scalar
# Mul/Div/Add/Sub nodes in front of the input quantizer.
PREPROCESS = {
    "none": (),
    "div255": (("div", 255.0),),
    "div255_mul2_sub1": (("div", 255.0), ("mul", 2.0), ("sub", 1.0)),
    "sub127.5_div127.5": (("sub", 127.5), ("div", 127.5)),
    "mul_add": (("mul", 1.0 / 64.0), ("add", -0.75)),
}

_CALIBRATION_BATCH = 64


# --------------------------------------------------------------------------------------------- model


def _torch():
    import torch  # noqa: PLC0415  (lazy: torch is an optional dependency)
    return torch


class _Preprocess:
    """Scalar arithmetic on the raw input, written as plain torch ops so that it exports as such."""

    def __init__(self, ops):
        self.ops = tuple(ops)

    def __call__(self, x):
        for op, value in self.ops:
            if op == "div":
                x = x / value
            elif op == "mul":
                x = x * value
            elif op == "add":
                x = x + value
            elif op == "sub":
                x = x - value
            else:  # pragma: no cover - the table above is fixed
                raise ValueError(f"unknown pre-processing op {op!r}")
        return x


def _build_module_class():
    """Define the network class once torch is imported (keeps this module importable without torch)."""
    torch = _torch()
    nn = torch.nn

    class RandomQuantNet(nn.Module):
        """pre-process -> input quantizer -> conv blocks -> flatten -> dense blocks -> final linear.

        ``flatten_first`` (the "mlp" kind, like FINN's TFC) flattens the raw input before anything else.
        """

        def __init__(self, preprocess, input_quant, conv_blocks, dense_blocks, final, flatten_first):
            super().__init__()
            self.preprocess = _Preprocess(preprocess)
            self.input_quant = input_quant
            self.conv_blocks = nn.ModuleList(conv_blocks)
            self.dense_blocks = nn.ModuleList(dense_blocks)
            self.final = final
            self.flatten_first = flatten_first

        def forward(self, x):
            if self.flatten_first:
                x = torch.flatten(x, 1)
            x = self.input_quant(self.preprocess(x))
            for block in self.conv_blocks:
                x = block(x)
            if not self.flatten_first:
                x = torch.flatten(x, 1)
            for block in self.dense_blocks:
                x = block(x)
            return self.final(x)

    return RandomQuantNet


_MODULE_CLASS = None


def _module_class():
    global _MODULE_CLASS
    if _MODULE_CLASS is None:
        _MODULE_CLASS = _build_module_class()
    return _MODULE_CLASS


# ------------------------------------------------------------------------------------ random choices


def _weight_kwargs(rng, recipe, allow_binary=True):
    """Keyword arguments for a random weight quantizer: 1-bit bipolar, or 2..8 bits, per tensor/channel."""
    from brevitas.quant import (  # noqa: PLC0415
        Int8WeightPerTensorFixedPoint, Int8WeightPerTensorFloat, SignedBinaryWeightPerTensorConst)

    if allow_binary and rng.random() < 0.15:
        scale = float(rng.choice([0.1, 0.25, 1.0]))
        recipe.append(f"w1 bipolar scale={scale}")
        return {"weight_quant": SignedBinaryWeightPerTensorConst, "weight_scaling_const": scale}
    bits = int(rng.integers(2, 9))
    per_channel = bool(rng.random() < 0.5)
    power_of_two = bool(rng.random() < 0.25)
    narrow = bool(rng.random() < 0.7)
    recipe.append(f"w{bits}{' per-channel' if per_channel else ''}{' po2' if power_of_two else ''}"
                  f"{' narrow' if narrow else ' wide'}")
    return {
        "weight_quant": Int8WeightPerTensorFixedPoint if power_of_two else Int8WeightPerTensorFloat,
        "weight_bit_width": bits,
        "weight_scaling_per_output_channel": per_channel,
        "weight_narrow_range": narrow,
    }


def _activation(rng, recipe):
    """A random quantized activation: QuantReLU (unsigned) or signed QuantIdentity, 2..4 bits."""
    import brevitas.nn as qnn  # noqa: PLC0415
    from brevitas.quant import (  # noqa: PLC0415
        Int8ActPerTensorFixedPoint, Int8ActPerTensorFloat, Uint8ActPerTensorFixedPoint,
        Uint8ActPerTensorFloat)

    bits = int(rng.integers(2, 5))
    power_of_two = bool(rng.random() < 0.25)
    po2 = " po2" if power_of_two else ""
    if rng.random() < 0.5:
        recipe.append(f"QuantReLU a{bits}{po2}")
        quant = Uint8ActPerTensorFixedPoint if power_of_two else Uint8ActPerTensorFloat
        return qnn.QuantReLU(act_quant=quant, bit_width=bits)
    narrow = bool(rng.random() < 0.5)
    recipe.append(f"QuantIdentity signed a{bits}{' narrow' if narrow else ''}{po2}")
    quant = Int8ActPerTensorFixedPoint if power_of_two else Int8ActPerTensorFloat
    return qnn.QuantIdentity(act_quant=quant, bit_width=bits, narrow_range=narrow)


def _input_quant(rng, recipe):
    """The 8-bit input quantizer, signed or unsigned."""
    import brevitas.nn as qnn  # noqa: PLC0415
    from brevitas.quant import Int8ActPerTensorFloat, Uint8ActPerTensorFloat  # noqa: PLC0415

    signed = bool(rng.random() < 0.5)
    narrow = signed and bool(rng.random() < 0.3)
    recipe.append(f"input {'signed' if signed else 'unsigned'} a8{' narrow' if narrow else ''}")
    quant = Int8ActPerTensorFloat if signed else Uint8ActPerTensorFloat
    return qnn.QuantIdentity(act_quant=quant, bit_width=8, narrow_range=narrow)


def _conv_geometry(rng, size):
    """Kernel, stride, padding that keep the output at least 1x1; returns them and the output size."""
    while True:
        kernel = int(rng.integers(1, 4))
        stride = int(rng.integers(1, 3))
        padding = int(rng.integers(0, 2))
        out = (size + 2 * padding - kernel) // stride + 1
        if out >= 1:
            return kernel, stride, padding, out


def _conv_blocks(rng, recipe, channels, size):
    """1..3 QuantConv2d -> BatchNorm2d -> activation blocks, with a 2x2 max pool sometimes."""
    torch = _torch()
    import brevitas.nn as qnn  # noqa: PLC0415

    blocks = []
    for _ in range(int(rng.integers(1, 4))):
        out_channels = int(rng.integers(2, 9))
        kernel, stride, padding, size = _conv_geometry(rng, size)
        bias = bool(rng.random() < 0.5)
        recipe.append(f"conv {channels}->{out_channels} k{kernel} s{stride} p{padding}"
                      f"{' bias' if bias else ''}")
        layers = [qnn.QuantConv2d(channels, out_channels, kernel, stride=stride, padding=padding,
                                  bias=bias, **_weight_kwargs(rng, recipe)),
                  torch.nn.BatchNorm2d(out_channels),
                  _activation(rng, recipe)]
        if size >= 2 and rng.random() < 0.4:
            recipe.append("maxpool 2x2")
            layers.append(torch.nn.MaxPool2d(2))
            size //= 2
        blocks.append(torch.nn.Sequential(*layers))
        channels = out_channels
    return blocks, channels * size * size


def _dense_blocks(rng, recipe, features, count):
    """``count`` QuantLinear -> BatchNorm1d -> activation blocks of 8..32 units."""
    torch = _torch()
    import brevitas.nn as qnn  # noqa: PLC0415

    blocks = []
    for _ in range(count):
        units = int(rng.integers(8, 33))
        bias = bool(rng.random() < 0.5)
        recipe.append(f"dense {features}->{units}{' bias' if bias else ''}")
        blocks.append(torch.nn.Sequential(
            qnn.QuantLinear(features, units, bias=bias, **_weight_kwargs(rng, recipe)),
            torch.nn.BatchNorm1d(units),
            _activation(rng, recipe)))
        features = units
    return blocks, features


def _final(rng, recipe, features):
    """The last QuantLinear (no activation), 2..10 outputs, bias sometimes."""
    import brevitas.nn as qnn  # noqa: PLC0415

    outputs = int(rng.integers(2, 11))
    bias = bool(rng.random() < 0.5)
    recipe.append(f"final {features}->{outputs}{' bias' if bias else ''}")
    return qnn.QuantLinear(features, outputs, bias=bias, **_weight_kwargs(rng, recipe))


# ----------------------------------------------------------------------------------------- calibration


def _randomise_bn(bn, pre_bn, rng):
    """Set eval-mode statistics from the real pre-BN values, perturbed, with mixed-sign/zero gammas.

    running_mean/var come from ``pre_bn`` (so the normalised value is roughly N(0, 1)) and are then
    perturbed; gamma has random sign with about 15 % exact zeros; beta shifts the result a little. The
    activation quantizer is calibrated afterwards, so outputs spread over its range instead of clipping.
    """
    torch = _torch()
    dims = [0] + list(range(2, pre_bn.dim()))
    mean = pre_bn.mean(dim=dims).double().numpy()
    var = pre_bn.var(dim=dims).double().numpy()
    n = mean.shape[0]
    std = np.sqrt(var) + 1e-3
    gamma = rng.uniform(0.5, 1.5, n) * rng.choice([-1.0, 1.0], n, p=[0.35, 0.65])
    gamma[rng.random(n) < 0.15] = 0.0
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor(mean + rng.normal(0.0, 0.3, n) * std))
        bn.running_var.copy_(torch.tensor(var * np.exp(rng.normal(0.0, 0.3, n)) + 1e-4))
        bn.weight.copy_(torch.tensor(gamma))
        bn.bias.copy_(torch.tensor(rng.normal(0.0, 0.5, n)))


def _calibrate_quantizer(module, x):
    """Collect the runtime statistics of an activation quantizer (one train-mode pass), then freeze."""
    torch = _torch()
    module.train()
    with torch.no_grad():
        module(x)
    module.eval()
    with torch.no_grad():
        return module(x)


def _calibrate_block(block, x, rng):
    """Calibrate one [linear/conv, BN, activation, (pool)] block on ``x``; return its eval output."""
    torch = _torch()
    layer, bn, act, *rest = block
    with torch.no_grad():
        layer.eval()
        pre_bn = layer(x)
    _randomise_bn(bn, pre_bn, rng)
    bn.eval()
    with torch.no_grad():
        y = bn(pre_bn)
    y = _calibrate_quantizer(act, y)
    with torch.no_grad():
        for module in rest:
            y = module(y)
    return y


def _calibrate(model, rng, seed):
    """Block by block: set BN statistics and activation scales from a random input batch; eval mode."""
    torch = _torch()
    x = torch.from_numpy(random_inputs(seed + 1, model.input_shape, _CALIBRATION_BATCH))
    if model.flatten_first:
        x = torch.flatten(x, 1)
    x = _calibrate_quantizer(model.input_quant, model.preprocess(x))
    for block in model.conv_blocks:
        x = _calibrate_block(block, x, rng)
    x = torch.flatten(x, 1)
    for block in model.dense_blocks:
        x = _calibrate_block(block, x, rng)
    model.eval()
    return model


# ------------------------------------------------------------------------------------------------ API


def random_net(seed: int, kind: str = "conv"):
    """Build a random, calibrated, eval-mode Brevitas network for ``seed``.

    ``kind="conv"``: 1..3 conv blocks (pooling sometimes), then 0..2 dense blocks, then a final linear.
    ``kind="mlp"``: the input is flattened first (like FINN's TFC), then 1..3 dense blocks and a final
    linear. The result carries ``input_shape`` (batch 1) and ``recipe`` (the choices made).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    torch = _torch()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    recipe = [f"seed={seed} kind={kind}"]

    channels = int(rng.choice([1, 1, 2]))
    size = int(rng.choice([8, 12]))
    preprocess = list(PREPROCESS)[int(rng.integers(len(PREPROCESS)))]
    recipe.append(f"input 1x{channels}x{size}x{size} preprocess={preprocess}")
    input_quant = _input_quant(rng, recipe)
    if kind == "conv":
        conv_blocks, features = _conv_blocks(rng, recipe, channels, size)
        dense_count = int(rng.integers(0, 3))
    else:
        conv_blocks, features = [], channels * size * size
        dense_count = int(rng.integers(1, 4))
    dense_blocks, features = _dense_blocks(rng, recipe, features, dense_count)
    final = _final(rng, recipe, features)

    model = _module_class()(PREPROCESS[preprocess], input_quant, conv_blocks, dense_blocks, final,
                            flatten_first=(kind == "mlp"))
    model.input_shape = (1, channels, size, size)
    model.dynamo = bool(rng.random() < 0.5)
    recipe.append(f"exporter={'dynamo' if model.dynamo else 'torchscript'}")
    model.recipe = recipe
    return _calibrate(model, rng, seed)


def export(model, path, input_shape, dynamo=None) -> pathlib.Path:
    """Export with ``brevitas.export.export_qonnx`` (batch 1) and save qonnx ``cleanup_model`` in place.

    ``dynamo``: which torch ONNX exporter to use; ``None`` takes ``model.dynamo`` (set by
    :func:`random_net`) and otherwise Brevitas' default for the installed torch.
    """
    torch = _torch()
    from brevitas.export import export_qonnx  # noqa: PLC0415
    from qonnx.core.modelwrapper import ModelWrapper  # noqa: PLC0415
    from qonnx.util.cleanup import cleanup_model  # noqa: PLC0415

    path = pathlib.Path(path)
    model.eval()
    example = torch.from_numpy(random_inputs(0, input_shape, 1))
    if dynamo is None:
        dynamo = getattr(model, "dynamo", None)
    kwargs = {} if dynamo is None else {"dynamo": bool(dynamo)}
    # The dynamo exporter writes initializers to a side file ("<name>.data"); export into a scratch
    # directory so that only the cleaned-up, self-contained model lands at ``path``.
    with tempfile.TemporaryDirectory() as scratch:
        raw = str(pathlib.Path(scratch) / "export.onnx")
        with torch.no_grad():
            export_qonnx(model, example, export_path=raw, verbose=False, **kwargs)
        cleanup_model(ModelWrapper(raw)).save(str(path))
    return path


def random_inputs(seed, input_shape, n) -> np.ndarray:
    """``n`` raw inputs shaped ``(n, *input_shape[1:])``: integer pixel values 0..255 as float32.

    Half the samples are uniform noise; the others are "sparse" images (mostly 0, some 255, some grey),
    like digits, so that the extremes of the input range are hit as well as the middle.
    """
    rng = np.random.default_rng(seed)
    shape = (int(n), *tuple(input_shape)[1:])
    uniform = rng.integers(0, 256, size=shape)
    sparse = np.where(rng.random(shape) < 0.3, rng.choice([128, 255, 255], size=shape), 0)
    pick_sparse = (rng.random(shape[0]) < 0.5).reshape((-1,) + (1,) * (len(shape) - 1))
    return np.where(pick_sparse, sparse, uniform).astype(np.float32)


def reference(path, x: np.ndarray) -> np.ndarray:
    """Run each sample through ``qonnx.core.onnx_exec.execute_onnx`` (exports have batch 1); stack."""
    from thresher.model_tools.bench import qonnx_reference  # noqa: PLC0415
    return qonnx_reference(path, np.asarray(x, dtype=np.float32))


def make_case(seed, kind, tmpdir, n=8):
    """Build, export and evaluate one random network; returns ``(onnx_path, x, y_ref)``."""
    model = random_net(seed, kind)
    path = export(model, pathlib.Path(tmpdir) / f"random_{kind}_{seed}.onnx", model.input_shape)
    x = random_inputs(seed, model.input_shape, n)
    return path, x, reference(path, x)
