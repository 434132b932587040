"""Reference architectures as real Brevitas models with random weights (a test utility).

The networks the issue "Real networks" is checked on: MLPerf Tiny's ResNet-8, DS-CNN and FC
auto-encoder, a MobileNetV1-style net, FINN's CNV/LFC/SFC/TFC (``brevitas_examples.bnn_pynq``,
random weights, nothing downloaded), a UNSW-NB15-style bipolar MLP and an hls4ml-style jet tagger.

Each builder returns an untrained, eval-mode module; :func:`calibrate` gives it random batch-norm
(statistics from the real pre-BN values, perturbed, negative and zero gammas, random beta) and
activation scales from one train-mode pass, nudged by a random factor as training moves them.
:func:`build` builds, calibrates and exports one network by name and returns the file, the input
shape, the input kind and the ``finn_datatype`` the graph input is annotated with (or ``None``).

torch, brevitas and qonnx are needed (tests import this module only where they are installed).
"""

from __future__ import annotations

import pathlib
import warnings

import brevitas.nn as qnn
import numpy as np
import torch
from brevitas.quant import (
    Int8ActPerTensorFloat,
    Int8WeightPerTensorFloat,
    SignedBinaryActPerTensorConst,
    SignedBinaryWeightPerTensorConst,
    Uint8ActPerTensorFloat,
)
from brevitas_factory import _randomise_bn, export
from torch import nn

BN1, BN2, S = nn.BatchNorm1d, nn.BatchNorm2d, nn.Sequential


# --------------------------------------------------------------------------------------- pieces


def _w(bits=4, per_channel=True):
    return {"weight_quant": Int8WeightPerTensorFloat, "weight_bit_width": bits,
            "weight_scaling_per_output_channel": per_channel, "weight_narrow_range": True}


_WB = {"weight_quant": SignedBinaryWeightPerTensorConst, "weight_scaling_const": 1.0}


def _conv(cin, cout, k, bits=4, **kw):
    return qnn.QuantConv2d(cin, cout, k, bias=kw.pop("bias", False), **kw, **_w(bits))


def _lin(fin, fout, bits=4, bias=True):
    return qnn.QuantLinear(fin, fout, bias=bias, **_w(bits))


def _relu(bits=4):
    return qnn.QuantReLU(act_quant=Uint8ActPerTensorFloat, bit_width=bits)


def _signed(bits=4):
    return qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=bits)


def _in_u8():
    return qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=8)


def _in_s8():
    return qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=8)


class Div(nn.Module):
    """``x / d`` (exports as a scalar Div)."""

    def __init__(self, d):
        super().__init__()
        self.d = d

    def forward(self, x):
        return x / self.d


class Flat(nn.Module):
    def forward(self, x):
        return torch.flatten(x, 1)


# ------------------------------------------------------------------------------------- ResNet-8


class ResBlock(nn.Module):
    """One stage of MLPerf Tiny's ResNet-8 (Keras ``resnet_v1_eembc``): conv3x3-bn-relu,
    conv3x3-bn, a 1x1 stride-2 conv shortcut where the shape changes, add, relu.

    The add needs both operands on one scale: ``shared`` (a signed quantizer) quantizes the branch
    and the shortcut; for an identity shortcut it is the quantizer that produced the block input.
    """

    def __init__(self, cin, cout, stride, shared):
        super().__init__()
        self.conv1, self.bn1 = _conv(cin, cout, 3, stride=stride, padding=1), BN2(cout)
        self.relu1 = _relu(4)
        self.conv2, self.bn2 = _conv(cout, cout, 3, padding=1), BN2(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = _conv(cin, cout, 1, stride=stride, bias=True)
            shared = _signed(6)
        self.shared = shared
        self.relu = nn.ReLU()
        self.out_q = _signed(6)          # the next block's shared quantizer

    def forward(self, x):
        y = self.shared(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))))
        if self.down is not None:
            x = self.shared(self.down(x))
        return self.out_q(self.relu(x + y))


class ResNet8(nn.Module):
    """MLPerf Tiny image classification ResNet-8 (CIFAR-10, 3x32x32): stem conv3x3 16, stages of
    16, 32, 64 channels (the last two stride 2 with 1x1 shortcuts), global average pool, dense 10.

    ``quant_input``: divide by 255 and quantize to 8 bits first; otherwise the stem conv reads the
    raw pixels (the graph input is then annotated UINT8, as FINN flows do).
    """

    def __init__(self, quant_input=True):
        super().__init__()
        self.pre = S(Div(255.0), _in_u8()) if quant_input else nn.Identity()
        self.stem = S(_conv(3, 16, 3, bits=8, padding=1), BN2(16), nn.ReLU(), _signed(6))
        self.b1 = ResBlock(16, 16, 1, self.stem[-1])
        self.b2 = ResBlock(16, 32, 2, None)
        self.b3 = ResBlock(32, 64, 2, None)
        self.head = S(nn.AdaptiveAvgPool2d(1), Flat(), _lin(64, 10, bits=8))

    def forward(self, x):
        x = self.stem(self.pre(x))
        return self.head(self.b3(self.b2(self.b1(x))))


# ----------------------------------------------------------------------------------------- DS-CNN


def _ds_block(cin, cout, stride=1, bits=4):
    """Depthwise 3x3 -> BN -> quantized ReLU -> pointwise 1x1 -> BN -> quantized ReLU."""
    return [_conv(cin, cin, 3, stride=stride, padding=1, groups=cin), BN2(cin), _relu(bits),
            _conv(cin, cout, 1), BN2(cout), _relu(bits)]


def ds_cnn():
    """MLPerf Tiny keyword spotting DS-CNN (1x49x10 MFCC input): conv 10x4 stride 2 with Keras
    'same' padding (top 4, bottom 5, left 1, right 1: asymmetric, an explicit ZeroPad2d), 64
    channels, four depthwise-separable blocks, global average pool (25x5), dense 12."""
    layers = [_in_s8(), nn.ZeroPad2d((1, 1, 4, 5)), _conv(1, 64, (10, 4), bits=8, stride=2),
              BN2(64), _relu(4)]
    for _ in range(4):
        layers += _ds_block(64, 64)
    layers += [nn.AvgPool2d((25, 5)), Flat(), _lin(64, 12, bits=8)]
    return S(*layers)


def mobilenet_v1():
    """MobileNetV1 at width 0.25 (channels 8..256) on a 3x32x32 input: conv3x3 stride 2, thirteen
    depthwise-separable blocks (stride 2 where MobileNet has it), global average pool, dense 10."""
    cfg = [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1), (128, 1),
           (128, 1), (128, 1), (256, 2), (256, 1)]
    layers = [Div(255.0), _in_u8(), _conv(3, 8, 3, bits=8, stride=2, padding=1), BN2(8), _relu(4)]
    cin = 8
    for cout, stride in cfg:
        layers += _ds_block(cin, cout, stride)
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), Flat(), _lin(cin, 10, bits=8)]
    return S(*layers)


def fc_autoencoder():
    """MLPerf Tiny anomaly detection FC auto-encoder (640 log-mel inputs): dense 128 x4, bottleneck
    8, dense 128 x4 (each with BN and quantized ReLU), dense 640 with a float output."""
    layers = [_in_s8()]
    fin = 640
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        layers += [_lin(fin, units, bias=True), BN1(units), _relu(4)]
        fin = units
    layers.append(_lin(fin, 640, bits=8))
    return S(*layers)


def unsw_nb15():
    """The UNSW-NB15 intrusion-detection MLP of the FINN/qonnx examples: 600 bipolar inputs (no
    input quantizer: the graph input is annotated BIPOLAR), dense 64/64/64 with bipolar weights,
    BN and bipolar activations, dense 1."""
    layers = []
    fin = 600
    for units in (64, 64, 64):
        layers += [qnn.QuantLinear(fin, units, bias=True, **_WB), BN1(units),
                   qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst)]
        fin = units
    layers.append(qnn.QuantLinear(fin, 1, bias=True, **_WB))
    return S(*layers)


def jet_tagger():
    """hls4ml's jet-substructure tagger (16 high-level features): dense 64/32/32 with BN and a
    quantized ReLU, dense 5, softmax."""
    layers = [_in_s8()]
    fin = 16
    for units in (64, 32, 32):
        layers += [_lin(fin, units, bits=6), BN1(units), _relu(6)]
        fin = units
    layers += [_lin(fin, 5, bits=6), nn.Softmax(dim=1)]
    return S(*layers)


def bnn_pynq(name):
    """FINN's ``brevitas_examples.bnn_pynq`` model ``name`` (cnv_1w1a, tfc_2w2a, ...), untrained."""
    from brevitas_examples.bnn_pynq.models import model_with_cfg
    return model_with_cfg(name, pretrained=False)[0]


# ----------------------------------------------------------------------------------- calibration


def _randomise_tensor_norm(m, pre, rng):
    with torch.no_grad():
        m.running_mean.fill_(float(pre.mean()) + float(rng.normal(0, 0.3)) * float(pre.std()))
        m.running_var.fill_(float(pre.var()) * float(np.exp(rng.normal(0, 0.3))))
        m.weight.fill_(float(rng.uniform(0.5, 1.5) * rng.choice([-1.0, 1.0])))
        m.bias.fill_(float(rng.normal(0, 0.5)))


def calibrate(model, x, seed, nudge=True, keep=()):
    """Random batch-norm from the real pre-BN values, one train-mode pass of each activation
    quantizer (the first time it runs: a shared quantizer keeps its first scale), eval mode.

    ``nudge``: multiply each calibrated activation scale by a random factor in [0.9, 1.1], as
    training moves it (freshly calibrated scales put sums after an add exactly on rounding ties),
    except the quantizers whose names start with one of ``keep`` (e.g. fixed power-of-two scales).
    """
    from brevitas_examples.bnn_pynq.models.tensor_norm import TensorNorm
    rng = np.random.default_rng(seed)
    model.eval()
    done, hooks = set(), []

    def bn_hook(m, args):
        if m not in done:
            done.add(m)
            pre = getattr(args[0], "value", args[0])
            (_randomise_tensor_norm if isinstance(m, TensorNorm) else _randomise_bn)(m, pre, rng)

    def q_pre(m, args):
        if m not in done:
            done.add(m)
            m.train()

    def q_post(m, args, out):
        m.eval()

    for m in model.modules():
        if isinstance(m, (BN1, BN2, TensorNorm)):
            hooks.append(m.register_forward_pre_hook(bn_hook))
        elif isinstance(m, (qnn.QuantReLU, qnn.QuantIdentity, qnn.QuantHardTanh)):
            hooks.append(m.register_forward_pre_hook(q_pre))
            hooks.append(m.register_forward_hook(q_post))
    with torch.no_grad():
        model(x)
        for h in hooks:
            h.remove()
        if nudge:
            for name, buf in model.named_buffers():
                if name.endswith("fused_activation_quant_proxy.tensor_quant.scaling_impl.buffer") \
                        and not name.startswith(tuple(keep)):
                    buf.mul_(float(rng.uniform(0.9, 1.1)))
    return model.eval()


# ------------------------------------------------------------------------------------ the nets


def inputs(kind, shape, n, seed):
    """``n`` valid raw inputs: ``pixels`` (integers 0..255), ``unit`` (pixels / 255, FINN's
    loaders), ``normal`` (float features), ``bipolar`` (-1/+1)."""
    rng = np.random.default_rng(seed)
    shape = (n,) + tuple(shape[1:])
    if kind == "bipolar":
        return rng.choice([-1.0, 1.0], shape).astype(np.float32)
    if kind == "normal":
        return rng.normal(0.0, 1.0, shape).astype(np.float32)
    x = rng.integers(0, 256, shape).astype(np.float32)
    x[0] = 0
    if n > 1:
        x[1] = 255
    return (x / np.float32(255)).astype(np.float32) if kind == "unit" else x


#: name -> (builder, input shape with batch 1, input kind, graph input finn_datatype or None)
NETS = {
    "resnet8": (lambda: ResNet8(True), (1, 3, 32, 32), "pixels", None),
    "resnet8_uint8": (lambda: ResNet8(False), (1, 3, 32, 32), "pixels", "UINT8"),
    "ds_cnn": (ds_cnn, (1, 1, 49, 10), "normal", None),
    "mobilenet_v1": (mobilenet_v1, (1, 3, 32, 32), "pixels", None),
    "fc_autoencoder": (fc_autoencoder, (1, 640), "normal", None),
    "cnv_1w1a": (lambda: bnn_pynq("cnv_1w1a"), (1, 3, 32, 32), "unit", None),
    "cnv_2w2a": (lambda: bnn_pynq("cnv_2w2a"), (1, 3, 32, 32), "unit", None),
    "lfc_1w1a": (lambda: bnn_pynq("lfc_1w1a"), (1, 1, 28, 28), "unit", None),
    "lfc_1w2a": (lambda: bnn_pynq("lfc_1w2a"), (1, 1, 28, 28), "unit", None),
    "sfc_1w1a": (lambda: bnn_pynq("sfc_1w1a"), (1, 1, 28, 28), "unit", None),
    "sfc_2w2a": (lambda: bnn_pynq("sfc_2w2a"), (1, 1, 28, 28), "unit", None),
    "tfc_1w1a": (lambda: bnn_pynq("tfc_1w1a"), (1, 1, 28, 28), "unit", None),
    "tfc_2w2a": (lambda: bnn_pynq("tfc_2w2a"), (1, 1, 28, 28), "unit", None),
    "unsw_nb15": (unsw_nb15, (1, 600), "bipolar", "BIPOLAR"),
    "jet_tagger": (jet_tagger, (1, 16), "normal", None),
}


def build(name, tmp_path, seed=0):
    """Build, calibrate and export network ``name``; returns ``(path, shape, kind)``. A typed
    input is annotated on the exported graph input (qonnx ``set_tensor_datatype``)."""
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    builder, shape, kind, dtype = NETS[name]
    torch.manual_seed(seed)
    model = builder()
    calibrate(model, torch.from_numpy(inputs(kind, shape, 64, seed + 1)), seed)
    path = pathlib.Path(tmp_path) / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export(model, path, shape, dynamo=False)
    if dtype is not None:
        wrapper = ModelWrapper(str(path))
        wrapper.set_tensor_datatype(wrapper.graph.input[0].name, DataType[dtype])
        wrapper.save(str(path))
    return path, shape, kind
