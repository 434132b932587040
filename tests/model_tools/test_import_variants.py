"""Brevitas export variants that ``brevitas_factory`` does not build, against qonnx's own executor.

Each in-scope variant is a small Brevitas network (calibrated like the factory's: batch-norm statistics
from real pre-BN values with mixed-sign and zero gammas, one train-mode pass per activation quantizer),
exported with ``brevitas.export.export_qonnx`` (+ qonnx ``cleanup_model``), run sample by sample through
``qonnx.core.onnx_exec.execute_onnx`` and compared with ``golden.run(load_model(path), x)`` within
1e-4 of the largest output (the issue's tolerance).

A few variants edit the exported file where Brevitas cannot produce a legal QONNX/ONNX form itself
(``IntQuant`` op type, weight rounding modes, a MaxPool relying on the default ``strides``).

Out-of-scope models must be refused with a :class:`ThresherError` naming the offending node.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import torch

import brevitas.nn as qnn  # noqa: E402
import onnx  # noqa: E402
from brevitas.quant import (  # noqa: E402
    Int8ActPerTensorFloat, Int8ActPerTensorFloatMinMaxInit, Int8Bias, Int8WeightPerTensorFixedPoint,
    Int8WeightPerTensorFloat, Int32Bias, ShiftedUint8ActPerTensorFloat, SignedBinaryActPerTensorConst,
    SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFloat)
from brevitas_factory import _randomise_bn, export, reference  # noqa: E402
from torch import nn  # noqa: E402

from thresher.model_tools import ThresherError, golden, load_model  # noqa: E402

# ------------------------------------------------------------------------------------------ helpers


class Pre(nn.Module):
    """Scalar pre-processing written as plain torch ops (exports as scalar Mul/Div/Add/Sub)."""

    def __init__(self, *ops):
        super().__init__()
        self.ops = ops

    def forward(self, x):
        for op, v in self.ops:
            if op == "mul":
                x = x * v
            elif op == "div":
                x = x / v
            elif op == "add":
                x = x + v
            elif op == "sub":
                x = x - v
            else:  # "rsub"
                x = v - x
        return x


class PerChannelNorm(nn.Module):
    """ImageNet-style per-channel mean/std normalisation (not scalar: out of scope)."""

    def forward(self, x):
        return (x - torch.tensor([100.0, 120.0, 130.0]).view(1, 3, 1, 1)) / 60.0


class ViewFlat(nn.Module):
    """``x.view(x.shape[0], -1)`` (a Shape-dependent reshape in the TorchScript export)."""

    def forward(self, x):
        return x.view(x.shape[0], -1)


class FinnTfcInput(nn.Module):
    """The start of FINN's TFC ``forward``: view, then ``2 * x - tensor([1.0])``."""

    def forward(self, x):
        x = x.view(x.shape[0], -1)
        return 2.0 * x - torch.tensor([1.0])


class Mean(nn.Module):
    """``x.mean((2, 3))``: exports as ReduceMean over H and W."""

    def __init__(self, keepdim):
        super().__init__()
        self.keepdim = keepdim

    def forward(self, x):
        return x.mean(dim=(2, 3), keepdim=self.keepdim)


class Flat(nn.Module):
    def forward(self, x):
        return torch.flatten(x, 1)


class TensorNorm(nn.Module):
    """FINN's TensorNorm-like scalar tail: ((x - m) / s) * a + b."""

    def __init__(self, m, s, a, b):
        super().__init__()
        self.m, self.s = m, s
        self.a = nn.Parameter(torch.tensor(a))
        self.b = nn.Parameter(torch.tensor(b))

    def forward(self, x):
        return (x - self.m) / self.s * self.a + self.b


def W(bits=4, per_channel=False, narrow=True, **kw):
    return dict(weight_quant=Int8WeightPerTensorFloat, weight_bit_width=bits,
                weight_scaling_per_output_channel=per_channel, weight_narrow_range=narrow, **kw)


WB = dict(weight_quant=SignedBinaryWeightPerTensorConst, weight_scaling_const=1.0)
W_PO2 = dict(weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=4)


def relu_q(bits=3, **kw):
    return qnn.QuantReLU(act_quant=Uint8ActPerTensorFloat, bit_width=bits, **kw)


def signed_q(bits=3, narrow=False, **kw):
    return qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=bits, narrow_range=narrow, **kw)


def unsigned_q(bits=3, **kw):
    return qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=bits, **kw)


def bipolar_q():
    return qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst)


def tfc_q(bits):
    """FINN's CommonActQuant for the TFC models: signed narrow, initialised on [-1, 1]."""
    return qnn.QuantIdentity(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=bits,
                             min_val=-1.0, max_val=1.0, narrow_range=True)


def per_channel(quant, bits, channels, ndim=4, **kw):
    shape = (1, channels) + (1,) * (ndim - 2)
    perm = (1, 0) + tuple(range(2, ndim))
    return quant(act_quant=kw.pop("act_quant"), bit_width=bits, scaling_per_output_channel=True,
                 per_channel_broadcastable_shape=shape, scaling_stats_permute_dims=perm, **kw)


def in_q(**kw):
    return qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=8, **kw)


def in_q_signed(**kw):
    return qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=8, **kw)


def conv(cin, cout, k, w=None, **kw):
    return qnn.QuantConv2d(cin, cout, k, **kw, **(w or W()))


def lin(fin, fout, bias=True, w=None, **kw):
    return qnn.QuantLinear(fin, fout, bias=bias, **(w or W()), **kw)


BN2, BN1, S = nn.BatchNorm2d, nn.BatchNorm1d, nn.Sequential


def div255():
    return Pre(("div", 255.0))


def _calibrate(model, x, seed):
    """Like the factory: BN statistics from the real pre-BN values (mixed-sign, zero gammas), one
    train-mode pass per activation quantizer, eval mode."""
    rng = np.random.default_rng(seed)
    for m in model:
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            _randomise_bn(m, getattr(x, "value", x), rng)
        elif isinstance(m, (qnn.QuantIdentity, qnn.QuantReLU, qnn.QuantHardTanh)):
            m.train()
            with torch.no_grad():
                m(x)
        m.eval()
        with torch.no_grad():
            x = m(x)
    return model.eval()


def _inputs(seed, shape, n, kind="pixels"):
    """Raw inputs: integer pixels 0..255 (noise and sparse digit-like images) or floats in [0, 1]."""
    rng = np.random.default_rng(seed)
    shape = (n,) + tuple(shape[1:])
    if kind == "unit":
        x = rng.random(shape).astype(np.float32)
        x[: n // 2] = np.round(x[: n // 2] * 8) / 8      # exact eighths: quantizer edges and ties
        return x
    uniform = rng.integers(0, 256, size=shape)
    sparse = np.where(rng.random(shape) < 0.3, rng.choice([128, 255, 255], size=shape), 0)
    pick = (rng.random(n) < 0.5).reshape((-1,) + (1,) * (len(shape) - 1))
    return np.where(pick, sparse, uniform).astype(np.float32)


def _ops(path):
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def _build(name, spec, tmp_path, seed=0):
    """Build, calibrate and export one variant; returns (path, shape, kind)."""
    torch.manual_seed(seed)
    model = spec["build"]()
    shape, kind = spec.get("shape", (1, 1, 8, 8)), spec.get("kind", "pixels")
    x = torch.from_numpy(_inputs(seed + 1, shape, 64, kind))
    _calibrate(model, x, seed)
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export(model, path, shape, dynamo=spec.get("dynamo", False))
    return path, shape, kind


def _edit(path, fn, suffix):
    model = onnx.load(str(path))
    fn(model)
    out = path.with_name(path.stem + suffix + ".onnx")
    onnx.save(model, str(out))
    return out


def _set_rounding(model, mode, which):
    for node in model.graph.node:
        if node.op_type == "Quant" and which(node, model):
            for a in node.attribute:
                if a.name == "rounding_mode":
                    a.s = mode.encode()


def _is_weight_quant(node, model):
    inits = {i.name: i for i in model.graph.initializer}
    return node.input[0] in inits and len(inits[node.input[0]].dims) >= 2


def _rename_quant(model):
    for node in model.graph.node:
        if node.op_type == "Quant":
            node.op_type = "IntQuant"


def _drop_maxpool_strides(model):
    for node in model.graph.node:
        if node.op_type == "MaxPool":
            strides = [a for a in node.attribute if a.name == "strides"]
            assert strides and list(strides[0].ints) == [1, 1]   # built with stride 1 below
            keep = [a for a in node.attribute if a.name != "strides"]
            del node.attribute[:]
            node.attribute.extend(keep)


def _asymmetric_stem_pads(model):
    """The first Conv's pads [5, 1, 5, 1] (a 10x4 kernel) -> [4, 0, 6, 2] (same output size)."""
    first = next(n for n in model.graph.node if n.op_type == "Conv")
    pads = next(a for a in first.attribute if a.name == "pads")
    assert list(pads.ints) == [5, 1, 5, 1]
    del pads.ints[:]
    pads.ints.extend([4, 0, 6, 2])


def _rtz_to_down(model):
    """qonnx's executor knows Brevitas' ROUND_TO_ZERO only under its QONNX name DOWN (np.fix)."""
    for node in model.graph.node:
        for a in node.attribute:
            if a.name == "rounding_mode" and a.s == b"ROUND_TO_ZERO":
                a.s = b"DOWN"


# --------------------------------------------------------------------------------- the variants
#
# build: () -> nn.Sequential; shape (batch 1); kind of input; dynamo exporter or TorchScript;
# edit: (path) -> the file thresher loads; ref_edit: (path) -> the file qonnx executes (default: same).

VARIANTS = {
    # activations
    "hardtanh_signed_narrow": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3, padding=1), BN2(4),
        qnn.QuantHardTanh(act_quant=Int8ActPerTensorFloat, bit_width=3, narrow_range=True,
                          max_val=1.0, min_val=-1.0), Flat(), lin(256, 5))),
    "identity_signed_narrow_2bit": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), signed_q(2, narrow=True), Flat(), lin(144, 5))),
    "relu_unsigned_narrow": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3, narrow_range=True), Flat(), lin(144, 4))),
    "relu_then_signed_identity": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), nn.ReLU(), signed_q(3), Flat(), lin(144, 4))),
    "requant_mid_unsigned": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(4), unsigned_q(2), Flat(), lin(144, 4))),
    "requant_mid_signed_after_unsigned": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(4), signed_q(3), Flat(), lin(144, 4))),
    "requant_after_input_quant": dict(build=lambda: S(
        div255(), in_q(), unsigned_q(4), conv(1, 4, 3), BN2(4), relu_q(3), Flat(), lin(144, 4))),
    "bn_between_quantizers": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3), BN2(4), signed_q(3), Flat(),
        lin(144, 4))),
    "bipolar_act_conv": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), bipolar_q(), conv(4, 4, 3, w=WB), BN2(4),
        bipolar_q(), Flat(), lin(64, 4))),
    "signed_1bit_quant_act": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4),
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=1), Flat(), lin(144, 4))),
    "unsigned_1bit_act": dict(build=lambda: S(   # Brevitas writes Relu -> BipolarQuant for this
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(1), Flat(), lin(144, 4))),
    "signed_4bit_wide_per_channel_weights": dict(build=lambda: S(
        div255(), in_q_signed(), conv(1, 8, 3, w=W(3, True, False)), BN2(8), signed_q(4),
        conv(8, 8, 3, w=W(2, True, True)), BN2(8), signed_q(4), Flat(), lin(128, 4))),
    "per_channel_act_then_per_tensor_requant": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4),
        per_channel(qnn.QuantReLU, 4, 4, act_quant=Uint8ActPerTensorFloat), unsigned_q(3), Flat(),
        lin(144, 4))),
    "per_channel_output_quant": dict(build=lambda: S(
        div255(), in_q(), Flat(), lin(64, 16), BN1(16), relu_q(2), lin(16, 6),
        per_channel(qnn.QuantIdentity, 8, 6, ndim=2, act_quant=Int8ActPerTensorFloat))),
    # rounding modes
    "floor_act": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4),
        relu_q(3, float_to_int_impl_type="FLOOR"), Flat(), lin(144, 4))),
    "ceil_act_signed": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4),
        signed_q(3, float_to_int_impl_type="CEIL"), Flat(), lin(144, 4))),
    "floor_input_quant": dict(build=lambda: S(
        div255(), in_q(float_to_int_impl_type="FLOOR"), conv(1, 4, 3), BN2(4), relu_q(3), Flat(),
        lin(144, 4))),
    "round_to_zero_act": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4),
        signed_q(3, float_to_int_impl_type="ROUND_TO_ZERO"), Flat(), lin(144, 4)),
        ref_edit=lambda p: _edit(p, _rtz_to_down, "_down")),
    # Brevitas always writes ROUND on weight quantizers: set the modes in the file
    "weight_rounding_floor": dict(build=lambda: S(
        div255(), in_q_signed(), conv(1, 4, 3, w=W(5, False, False)), BN2(4), signed_q(4), Flat(),
        lin(144, 10, w=W(6, True, True))),
        edit=lambda p: _edit(p, lambda m: _set_rounding(m, "FLOOR", _is_weight_quant), "_floor")),
    "weight_rounding_ceil": dict(build=lambda: S(
        div255(), in_q_signed(), conv(1, 4, 3, w=W(5, False, False)), BN2(4), signed_q(4), Flat(),
        lin(144, 10, w=W(6, True, True))),
        edit=lambda p: _edit(p, lambda m: _set_rounding(m, "CEIL", _is_weight_quant), "_ceil")),
    # weights and biases
    "weights_8bit_per_channel_wide": dict(build=lambda: S(
        div255(), in_q(), conv(1, 6, 3, w=W(8, True, False)), BN2(6), relu_q(4), Flat(),
        lin(216, 10, w=W(7, True, True)))),
    "signed_1bit_quant_weights": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3, w=W(1, False, False)), BN2(4), relu_q(2), Flat(),
        lin(144, 4, w=W(1, True, False)))),
    "power_of_two_scales": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3, w=W_PO2), BN2(4), relu_q(3), Flat(), lin(144, 4))),
    "linear_int8_bias": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3, return_quant_tensor=True), Flat(),
        lin(144, 5, bias_quant=Int8Bias))),
    "linear_int32_bias": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3, return_quant_tensor=True), Flat(),
        lin(144, 5, bias_quant=Int32Bias))),
    "conv_int32_bias": dict(build=lambda: S(
        div255(), in_q(return_quant_tensor=True), conv(1, 4, 3, bias=True, bias_quant=Int32Bias),
        BN2(4), relu_q(3), Flat(), lin(144, 5))),
    "conv_and_linear_int32_bias_dynamo": dict(dynamo=True, build=lambda: S(
        div255(), in_q(return_quant_tensor=True), conv(1, 4, 3, bias=True, bias_quant=Int32Bias),
        BN2(4), relu_q(3, return_quant_tensor=True), Flat(), lin(144, 5, bias_quant=Int32Bias))),
    "intquant_op_type": dict(build=lambda: S(   # qonnx >= 1.0 name of Quant
        div255(), in_q_signed(), conv(1, 8, 3, w=W(3, True, False)), BN2(8), signed_q(4), Flat(),
        lin(288, 4)),
        edit=lambda p: _edit(p, _rename_quant, "_intquant")),
    # geometry
    "kernel5_pad2_then_kernel1": dict(shape=(1, 2, 9, 9), build=lambda: S(
        div255(), in_q(), conv(2, 4, 5, padding=2, bias=True), BN2(4), relu_q(3), conv(4, 3, 1),
        BN2(3), signed_q(3), Flat(), lin(243, 4))),
    "stride2_no_pad_odd_sizes": dict(shape=(1, 1, 9, 9), build=lambda: S(
        div255(), in_q(), conv(1, 4, 3, stride=2), BN2(4), relu_q(2), conv(4, 4, 2, stride=2),
        BN2(4), relu_q(2), Flat(), lin(16, 4))),
    "pad2_kernel3": dict(shape=(1, 1, 7, 7), build=lambda: S(
        div255(), in_q(), conv(1, 4, 3, padding=2), BN2(4), signed_q(3), Flat(), lin(4 * 81, 4))),
    "nonsquare_kernel_and_stride": dict(shape=(1, 2, 9, 12), build=lambda: S(
        div255(), in_q(), conv(2, 4, (3, 1), stride=(2, 1), padding=(1, 0)), BN2(4), relu_q(3),
        conv(4, 4, (1, 3), stride=(1, 2)), BN2(4), signed_q(2), Flat(), lin(100, 4))),
    "rgb16_four_convs_dynamo": dict(shape=(1, 3, 16, 16), dynamo=True, build=lambda: S(
        div255(), in_q(), conv(3, 6, 3, padding=1, w=W(4, True)), BN2(6), relu_q(2), nn.MaxPool2d(2),
        conv(6, 6, 3, padding=1, bias=True), BN2(6), signed_q(3), conv(6, 8, 3, stride=2), BN2(8),
        relu_q(3), conv(8, 8, 3, w=W(6, True)), BN2(8), signed_q(2, narrow=True), Flat(),
        lin(8, 10))),
    # grouped and depthwise convolutions (ONNX group)
    "grouped_conv": dict(build=lambda: S(    # depthwise: group == C
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3), conv(4, 4, 3, groups=4), BN2(4),
        relu_q(3), Flat(), lin(64, 4))),
    "depthwise_multiplier2_pad_stride2": dict(shape=(1, 1, 9, 9), build=lambda: S(
        div255(), in_q(), conv(1, 4, 3, padding=1), BN2(4), signed_q(3),
        conv(4, 8, 3, groups=4, stride=2, padding=1, bias=True, w=W(4, True)), BN2(8), relu_q(2),
        Flat(), lin(200, 4))),
    "grouped_conv_2_of_8_then_pointwise": dict(shape=(1, 2, 8, 8), build=lambda: S(
        div255(), in_q(), conv(2, 8, 3, padding=1), BN2(8), relu_q(3),
        conv(8, 6, 3, groups=2, w=W(3, True, False)), BN2(6), signed_q(3, narrow=True),
        conv(6, 4, 1), BN2(4), relu_q(2), Flat(), lin(144, 4))),
    "grouped_conv_bipolar": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3, padding=1), BN2(4), bipolar_q(),
        conv(4, 4, 3, groups=2, w=WB), BN2(4), bipolar_q(), Flat(), lin(144, 4))),
    "grouped_conv_last_layer": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3), conv(4, 8, 3, groups=4, bias=True))),
    # DS-CNN's stem (10x4 kernel, stride 2) with TensorFlow-style asymmetric "same" pads set in the
    # file (top 4, left 0, bottom 6, right 2: same output size as the exported 5/1 symmetric pads)
    "dscnn_stem_asymmetric_pads": dict(shape=(1, 1, 20, 10), build=lambda: S(
        div255(), in_q(), conv(1, 6, (10, 4), stride=2, padding=(5, 1)), BN2(6), relu_q(3),
        conv(6, 6, 3, groups=6, padding=1), BN2(6), relu_q(3), conv(6, 4, 1), BN2(4),
        signed_q(3), Flat(), lin(220, 4)),
        edit=lambda p: _edit(p, _asymmetric_stem_pads, "_asym")),
    # average pooling: thresholds on the integer window sum, the divisor folded in
    "average_pool": dict(build=lambda: S(      # an average then a quantizer
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3), nn.AvgPool2d(2), unsigned_q(3),
        Flat(), lin(36, 4))),
    "average_pool_padded_bn_signed": dict(build=lambda: S(   # count_include_pad=1 (PyTorch's)
        div255(), in_q(), conv(1, 4, 3), BN2(4), signed_q(3), nn.AvgPool2d(3, 2, padding=1),
        BN2(4), signed_q(3), Flat(), lin(36, 4))),
    "average_pool_per_channel_scales": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4),
        per_channel(qnn.QuantReLU, 3, 4, act_quant=Uint8ActPerTensorFloat), nn.AvgPool2d(2),
        unsigned_q(2), Flat(), lin(36, 4))),
    "trunc_avg_pool": dict(build=lambda: S(     # Brevitas TruncAvgPool2d: AveragePool -> Trunc
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3, return_quant_tensor=True),
        qnn.TruncAvgPool2d(2, 2, bit_width=4), Flat(), lin(36, 4))),
    "trunc_avg_pool_3x3_floor_shift": dict(shape=(1, 1, 9, 9), build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(2, return_quant_tensor=True),
        qnn.TruncAvgPool2d(3, 2, bit_width=3, float_to_int_impl_type="FLOOR"), Flat(),
        lin(36, 4))),
    "global_avg_pool_into_linear": dict(build=lambda: S(   # no quantizer: folded into weights
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3), nn.AdaptiveAvgPool2d(1), Flat(),
        lin(4, 4))),
    "reduce_mean_into_linear": dict(build=lambda: S(
        div255(), in_q(), conv(1, 8, 3), BN2(8), signed_q(3), Mean(False), lin(8, 4))),
    "reduce_mean_keepdims_then_quant": dict(build=lambda: S(
        div255(), in_q(), conv(1, 8, 3), BN2(8), relu_q(3), Mean(True), BN2(8), signed_q(3),
        Flat(), lin(8, 4))),
    "avg_pool_stride1_into_linear": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3), nn.AvgPool2d(3, 1), Flat(),
        lin(64, 4))),
    "depthwise_separable_gap_head": dict(shape=(1, 2, 8, 8), build=lambda: S(   # DS-CNN-like
        div255(), in_q(), conv(2, 8, 3, padding=1), BN2(8), relu_q(3),
        conv(8, 8, 3, groups=8, padding=1), BN2(8), relu_q(3), conv(8, 8, 1), BN2(8), relu_q(3),
        nn.AvgPool2d(8), Flat(), lin(8, 4))),
    "mean_of_last_conv_output": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3), conv(4, 5, 1, bias=True), Mean(True))),
    # max pooling
    "maxpool3_stride2": dict(shape=(1, 1, 11, 11), build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3), nn.MaxPool2d(3, 2), Flat(), lin(64, 4))),
    "maxpool3_stride2_pad1": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), signed_q(3), nn.MaxPool2d(3, 2, padding=1), Flat(),
        lin(36, 4))),
    "maxpool3_stride1": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3), nn.MaxPool2d(3, 1), Flat(), lin(64, 4))),
    "maxpool_without_strides_attribute": dict(build=lambda: S(   # ONNX default strides: 1
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3), nn.MaxPool2d(3, 1), Flat(), lin(64, 4)),
        edit=lambda p: _edit(p, _drop_maxpool_strides, "_nostrides")),
    "maxpool_ceil_mode": dict(shape=(1, 1, 9, 9), build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3), nn.MaxPool2d(2, ceil_mode=True), Flat(),
        lin(64, 4))),
    "maxpool_before_act_quant": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3, padding=1), BN2(4), nn.ReLU(), nn.MaxPool2d(2),
        unsigned_q(3), Flat(), lin(64, 4))),
    "maxpool_before_signed_quant": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3, padding=1), BN2(4), nn.MaxPool2d(2), signed_q(3), Flat(),
        lin(64, 4))),
    "maxpool_between_quantizers": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3, padding=1), BN2(4), signed_q(4), nn.MaxPool2d(2),
        signed_q(2), Flat(), lin(64, 4))),
    "maxpool_after_bipolar_act": dict(build=lambda: S(   # CNV W1A1 style
        Pre(("mul", 2.0 / 255.0), ("sub", 1.0)), in_q_signed(), conv(1, 4, 3, padding=1, w=WB),
        BN2(4), bipolar_q(), conv(4, 4, 3, padding=1, w=WB), BN2(4), bipolar_q(), nn.MaxPool2d(2),
        Flat(), lin(64, 4, False, WB))),
    "maxpool_right_after_input_quant": dict(build=lambda: S(
        div255(), in_q(), nn.MaxPool2d(2), conv(1, 4, 3, padding=1), BN2(4), relu_q(3), Flat(),
        lin(64, 4))),
    # input side
    "unit_float_inputs": dict(kind="unit", build=lambda: S(
        in_q(), conv(1, 4, 3), BN2(4), relu_q(3), Flat(), lin(144, 4))),
    "rsub_preprocessing": dict(build=lambda: S(
        Pre(("rsub", 255.0), ("div", 255.0)), in_q(), conv(1, 4, 3), BN2(4), relu_q(3), Flat(),
        lin(144, 4))),
    "negative_mul_preprocessing": dict(build=lambda: S(
        Pre(("mul", -1.0 / 255.0), ("add", 0.5)), in_q_signed(), conv(1, 4, 3), BN2(4), relu_q(3),
        Flat(), lin(144, 4))),
    "mlp_2d_input": dict(shape=(1, 64), build=lambda: S(
        div255(), in_q(), lin(64, 16), BN1(16), signed_q(3), lin(16, 5))),
    # tails
    "final_batchnorm1d": dict(build=lambda: S(
        div255(), in_q(), Flat(), lin(64, 16), BN1(16), relu_q(2), lin(16, 6), BN1(6))),
    "final_tensornorm": dict(build=lambda: S(
        div255(), in_q(), Flat(), lin(64, 16), BN1(16), relu_q(2), lin(16, 6),
        TensorNorm(0.3, 1.7, -0.5, 0.25))),
    "final_output_quant": dict(build=lambda: S(
        div255(), in_q(), Flat(), lin(64, 16), BN1(16), relu_q(2), lin(16, 6), signed_q(8))),
    "final_conv_output_4d": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3), conv(4, 3, 3, bias=True))),
    "final_conv_bn_flatten_scalar": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3), conv(4, 3, 3), BN2(3), Flat(),
        TensorNorm(0.0, 1.0, 0.5, 0.1))),
    "view_shape0_flatten": dict(build=lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3), ViewFlat(), lin(144, 4))),
    # model-zoo-like MLPs
    "finn_tfc_forward_w1a1": dict(kind="unit", build=lambda: S(
        FinnTfcInput(), bipolar_q(), lin(64, 16, False, WB), BN1(16), bipolar_q(),
        lin(16, 10, False, WB), TensorNorm(0.0, 1.0, 0.5, 0.1))),
    "mlp_relu_gemm": dict(build=lambda: S(
        Flat(), div255(), in_q(), lin(64, 16), nn.ReLU(), unsigned_q(3), lin(16, 16), nn.ReLU(),
        unsigned_q(3), lin(16, 10))),
}


def _tfc(wbits, abits):
    def build():
        w = WB if wbits == 1 else W(wbits, False, True)

        def act():
            return bipolar_q() if abits == 1 else tfc_q(abits)
        return S(Flat(), Pre(("mul", 2.0), ("sub", 1.0)), act(),
                 lin(64, 16, False, w), BN1(16), act(), lin(16, 16, False, w), BN1(16), act(),
                 lin(16, 10, False, w), TensorNorm(0.1, 1.3, 0.37, -0.2))
    return build


for _w, _a in ((1, 1), (1, 2), (2, 2)):
    VARIANTS[f"tfc_w{_w}a{_a}"] = dict(build=_tfc(_w, _a), kind="unit")


# a residual add of two integer tensors quantized by one shared quantizer (the graph import)
VARIANTS["residual_add"] = dict(build=lambda: _residual_shared_quant())


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_matches_qonnx(name, tmp_path):
    spec = VARIANTS[name]
    path, shape, kind = _build(name, spec, tmp_path)
    loaded = spec["edit"](path) if "edit" in spec else path
    executed = spec["ref_edit"](path) if "ref_edit" in spec else loaded
    x = _inputs(0, shape, 8, kind)
    ref = reference(executed, x)
    try:
        out, refused = golden.run(load_model(loaded), x), None
    except ThresherError as e:
        refused = str(e)
    if refused is not None:
        pytest.fail(f"{name}: refused although in scope: {refused}\nops: {_ops(loaded)}")
    assert out.shape == ref.shape and out.dtype == np.float32
    err = float(np.abs(out - ref).max())
    tolerance = 1e-4 * max(float(np.abs(ref).max()), 1e-12)
    assert err <= tolerance, f"{name}: max |golden - qonnx| = {err:.3g} > {tolerance:.3g}; " \
                             f"ops: {_ops(loaded)}"


# --------------------------------------------------------------------------- out of scope


class ChannelMean(nn.Module):
    def forward(self, x):
        return x.mean(dim=1, keepdim=True)


class Residual(nn.Module):
    """``a(q(b(c(x))) + x)``: with ``shared`` (the quantizer that made ``x``) as ``q`` both operands of
    the add are integer tensors of one scale (supported, see ``VARIANTS["residual_add"]``);
    without it the branch adds a float batch-norm output (refused, naming the Add)."""

    def __init__(self, shared=None):
        super().__init__()
        self.c, self.b, self.a = conv(4, 4, 3, padding=1), BN2(4), relu_q(3)
        self.q = shared

    def forward(self, x):
        y = self.b(self.c(x))
        return self.a((self.q(y) if self.q is not None else y) + x)


def _residual_shared_quant():
    q = relu_q(3)
    return S(div255(), in_q(), conv(1, 4, 3), BN2(4), q, Residual(q), Flat(), lin(144, 4))


OUT_OF_SCOPE = {
    # name: (builder, shape, op type of the node the message must name)
    # one divisor per layer: border windows divided by fewer values are refused
    "average_pool_count_exclude_pad": (lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3),
        nn.AvgPool2d(3, 2, padding=1, count_include_pad=False), unsigned_q(3), Flat(),
        lin(36, 4)), (1, 1, 8, 8), "AveragePool"),
    "average_pool_ceil_mode_overhang": (lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3), nn.AvgPool2d(2, ceil_mode=True),
        unsigned_q(3), Flat(), lin(64, 4)), (1, 1, 9, 9), "AveragePool"),
    "average_pool_into_conv_without_quant": (lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3), nn.AvgPool2d(2), conv(4, 4, 1),
        BN2(4), relu_q(3), Flat(), lin(36, 4)), (1, 1, 8, 8), "AveragePool"),
    "average_of_unquantized_values": (lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), nn.AvgPool2d(2), relu_q(3), Flat(), lin(36, 4)),
        (1, 1, 8, 8), "AveragePool"),
    "reduce_mean_over_channels": (lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3), ChannelMean(), Flat(), lin(36, 4)),
        (1, 1, 8, 8), "ReduceMean"),
    "nonzero_zero_point": (lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4),
        qnn.QuantIdentity(act_quant=ShiftedUint8ActPerTensorFloat, bit_width=4), Flat(),
        lin(144, 4)), (1, 1, 8, 8), "Quant"),
    "sigmoid": (lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), nn.Sigmoid(), unsigned_q(3), Flat(), lin(144, 4)),
        (1, 1, 8, 8), "Sigmoid"),
    "per_channel_preprocessing": (lambda: S(
        PerChannelNorm(), in_q(), conv(3, 4, 3), BN2(4), relu_q(3), Flat(), lin(144, 4)),
        (1, 3, 8, 8), "Sub"),
    "residual_add_of_unquantized_branch": (lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4), relu_q(3), Residual(), Flat(), lin(144, 4)),
        (1, 1, 8, 8), "Add"),
    # A layer whose input has one scale per channel has no exact integer accumulator
    # (sum_k w[c,k] * s_a[k] * a[k]): the method needs one input scale per tensor.
    "per_channel_act_scale_into_final_layer": (lambda: S(
        div255(), in_q(), conv(1, 4, 3), BN2(4),
        per_channel(qnn.QuantReLU, 3, 4, act_quant=Uint8ActPerTensorFloat), Flat(), lin(144, 5)),
        (1, 1, 8, 8), "Gemm"),
    "per_channel_input_quant": (lambda: S(
        div255(), per_channel(qnn.QuantIdentity, 8, 3, act_quant=Uint8ActPerTensorFloat),
        conv(3, 4, 3), BN2(4), relu_q(3), Flat(), lin(144, 4)), (1, 3, 8, 8), "Conv"),
}


@pytest.mark.parametrize("name", list(OUT_OF_SCOPE))
def test_out_of_scope_is_refused_naming_the_node(name, tmp_path):
    build, shape, op_type = OUT_OF_SCOPE[name]
    path, _, _ = _build(name, dict(build=build, shape=shape), tmp_path)
    names = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == op_type]
    assert names, _ops(path)
    with pytest.raises(ThresherError) as info:
        load_model(path)
    assert any(n in str(info.value) for n in names), (str(info.value), names)
