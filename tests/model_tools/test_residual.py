"""Residual networks (graphs with adds) through import, fold and the golden engine.

Brevitas networks in the style of ``brevitas_examples/bnn_pynq/models/resnet.py`` (QuantBasicBlock:
conv-bn-quant-conv-bn-quant on one branch, the identity or a 1x1 conv-bn-quant shortcut, add, ReLU,
quant; a quantizer shared by both operands of the add), with random weights and random batch-norm
(negative and zero gammas), exported with the same exporter as the other tests and compared with
qonnx's executor on random inputs, within 1e-4 of the largest output. Adds of scales that differ by
a power of two are aligned by a shift; any other ratio, or an unquantized operand, is refused naming
the add.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch
import brevitas.nn as qnn
from brevitas.quant import Uint8ActPerTensorFixedPoint, Uint8ActPerTensorFloat
from brevitas_factory import export, reference
from reference_nets import calibrate
from torch import nn

from thresher.hw.board.frame import network_hash
from thresher.model_tools import IntegerNetwork, ThresherError, golden, load_model
from thresher.model_tools.ir import Add

from test_import_variants import W, conv, div255, in_q, lin, relu_q  # noqa: E402

BN2, S = nn.BatchNorm2d, nn.Sequential


class Flat(nn.Module):
    def forward(self, x):
        return torch.flatten(x, 1)


class Block(nn.Module):
    """Brevitas' QuantBasicBlock, small: ``shared`` quantizes the branch and (through the caller) the
    identity shortcut; a downsampling shortcut brings its own quantizer, shared with the branch."""

    def __init__(self, cin, cout, stride, shared, bits=4, quant_out=True):
        super().__init__()
        self.conv1, self.bn1 = conv(cin, cout, 3, stride=stride, padding=1, w=W(4, True)), BN2(cout)
        self.relu1 = relu_q(bits, return_quant_tensor=True)
        self.conv2, self.bn2 = conv(cout, cout, 3, padding=1, w=W(4, True)), BN2(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = S(conv(cin, cout, 1, stride=stride), BN2(cout),
                          relu_q(bits, return_quant_tensor=True))
            shared = self.down[-1]
        self.relu2 = shared
        self.relu_out = relu_q(bits, return_quant_tensor=quant_out)

    def forward(self, x):
        out = self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))))
        if self.down is not None:
            x = self.down(x)
        return self.relu_out(out + x)


class Stem(nn.Module):
    """Input quantizer, conv, bn, and the shared quantizer (returning a QuantTensor)."""

    def __init__(self, cin, cout, bits=4):
        super().__init__()
        self.pre, self.q = div255(), in_q()
        self.conv, self.bn = conv(cin, cout, 3, padding=1), BN2(cout)
        self.act = relu_q(bits, return_quant_tensor=True)

    def forward(self, x):
        return self.act(self.bn(self.conv(self.q(self.pre(x)))))


class Net(nn.Module):
    def __init__(self, stem, blocks, head):
        super().__init__()
        self.stem, self.blocks, self.head = stem, nn.ModuleList(blocks), head

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def identity_block_net():
    stem = Stem(3, 8)
    return Net(stem, [Block(8, 8, 1, stem.act)], S(Flat(), lin(8 * 8 * 8, 5)))


def downsample_block_net():
    stem = Stem(3, 6)
    return Net(stem, [Block(6, 8, 2, stem.act)], S(Flat(), lin(8 * 4 * 4, 5)))


def resnet8_small():
    """MLPerf Tiny's ResNet-8 shape at 3x16x16: stem, three stages of one block (identity, then two
    1x1 stride-2 downsampling shortcuts), global average pool, dense."""
    stem = Stem(3, 8)
    b1 = Block(8, 8, 1, stem.act)
    b2 = Block(8, 16, 2, b1.relu_out)
    b3 = Block(16, 32, 2, b2.relu_out, quant_out=False)
    return Net(stem, [b1, b2, b3], S(nn.AdaptiveAvgPool2d(1), Flat(), lin(32, 10)))


class TwoScaleAdd(nn.Module):
    """Two branches with their own quantizers, added as float tensors, then quantized."""

    def __init__(self, qa, qb):
        super().__init__()
        self.pre, self.q = div255(), in_q()
        self.ca, self.ba, self.qa = conv(3, 4, 3, padding=1), BN2(4), qa
        self.cb, self.bb, self.qb = conv(3, 4, 1), BN2(4), qb
        self.out = relu_q(3)
        self.head = S(Flat(), lin(4 * 8 * 8, 5))

    def forward(self, x):
        x = self.q(self.pre(x))
        return self.head(self.out(self.qa(self.ba(self.ca(x))) + self.qb(self.bb(self.cb(x)))))


def pow2_scales_net():
    """Fixed-point (power-of-two scale) quantizers of 4 and 2 bits on similar ranges: the scales
    differ by a power of two (about 2^-2 or 2^-3, as the calibration data decides)."""
    return TwoScaleAdd(qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=4),
                       qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=2))


def unrelated_scales_net():
    return TwoScaleAdd(qnn.QuantReLU(act_quant=Uint8ActPerTensorFloat, bit_width=4),
                       qnn.QuantReLU(act_quant=Uint8ActPerTensorFloat, bit_width=3))


def _calibrate(model, x, seed, learned=True):
    """``reference_nets.calibrate``: random batch-norm, a calibration pass, eval mode.

    ``learned``: then scale each quantizer's calibrated scale by a random factor in [0.9, 1.1], as
    training moves it (not the fixed power-of-two quantizers ``qa``/``qb``). Right after
    calibration the quantizer behind an add has a scale of ``m * s / (2^b - 1)`` (the largest sum
    seen, ``m`` steps of ``s``), so ``(a + b) * s`` lands exactly on its rounding ties, where the
    reference's float32 add rounds differently for different splits of one integer sum (refused:
    see ``test_float_ties_after_add_are_refused``).
    """
    return calibrate(model, x, seed, nudge=learned, keep=("qa.", "qb."))


def _pixels(seed, shape, n):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n,) + tuple(shape[1:])).astype(np.float32)


def _export(build, shape, tmp_path, name, seed=0, learned=True):
    torch.manual_seed(seed)
    model = build()
    _calibrate(model, torch.from_numpy(_pixels(seed + 1, shape, 64)), seed, learned)
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export(model, path, shape, dynamo=False)
    return path


CASES = {
    "identity_shortcut_shared_quant": (identity_block_net, (1, 3, 8, 8)),
    "downsample_1x1_stride2": (downsample_block_net, (1, 3, 8, 8)),
    "resnet8_small": (resnet8_small, (1, 3, 16, 16)),
    "power_of_two_scale_ratio": (pow2_scales_net, (1, 3, 8, 8)),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_residual_matches_qonnx(name, seed, tmp_path):
    build, shape = CASES[name]
    path = _export(build, shape, tmp_path, name, seed)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Add" in ops, ops
    net = load_model(path)
    adds = [layer for layer in net.layers if isinstance(layer, Add)]
    assert adds and not net.is_chain
    model = onnx.load(str(path))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    makers = {o: n for n in model.graph.node for o in n.output}
    for add in adds:        # the shift is log2 of the ratio of the two operands' Quant scales
        node = next(n for n in model.graph.node if n.name == add.name)
        s_a, s_b = (float(inits[makers[i].input[1]]) for i in node.input)
        ka, kb = add.shifts
        assert s_a * 2.0 ** kb == s_b * 2.0 ** ka, (s_a, s_b, add.shifts)
        if name == "power_of_two_scale_ratio":
            assert add.shifts != (0, 0)
        else:
            assert add.shifts == (0, 0)         # the shared quantizer: equal scales
    x = _pixels(seed + 7, shape, 8)
    ref = reference(path, x)
    out = golden.run(net, x)
    assert out.shape == ref.shape and out.dtype == np.float32
    err = float(np.abs(out - ref).max())
    assert err <= 1e-4 * max(float(np.abs(ref).max()), 1e-12), (name, err)


def test_add_thresholds_exact_on_every_input_pair(tmp_path):
    """The Add layer's thresholds against the reference's float32 add and quantizer, for every pair
    of input levels (not only those random images reach)."""
    path = _export(identity_block_net, (1, 3, 8, 8), tmp_path, "pairs", 3)
    model = onnx.load(str(path))
    net = load_model(path)
    add = next(layer for layer in net.layers if isinstance(layer, Add))
    i_a, i_b = net.sources(net.layers.index(add))
    (alo, ahi), (blo, bhi) = add.in_ranges
    a, b = np.meshgrid(np.arange(alo, ahi + 1), np.arange(blo, bhi + 1), indexing="ij")
    a, b = a.ravel(), b.ravel()
    # the two quantizers in front of the add and the one after it, from the file itself
    from qonnx.core.modelwrapper import ModelWrapper
    wrapper = ModelWrapper(model)
    node = next(n for n in model.graph.node if n.name == add.name)
    quant_in = [wrapper.find_producer(i) for i in node.input]
    quant_out = next(n for n in model.graph.node if n.op_type == "Quant" and
                     wrapper.find_producer(n.input[0]) is not None and
                     wrapper.find_producer(n.input[0]).op_type == "Relu" and
                     wrapper.find_producer(n.input[0]).input[0] == node.output[0])
    s_a, s_b, s_o = (np.float32(wrapper.get_initializer(q.input[1])) for q in quant_in + [quant_out])
    bits = int(wrapper.get_initializer(quant_out.input[3]))
    total = np.float32(a) * s_a + np.float32(b) * s_b                   # float32, as executed
    want = np.clip(np.round(np.maximum(total, np.float32(0)) / s_o), 0, 2 ** bits - 1)
    y = (a << add.shifts[0]) + (b << add.shifts[1])
    got = golden.apply_thresholds(add.activation, np.broadcast_to(
        y[:, None, None, None], (y.size,) + add.in_shape).astype(np.int64))
    assert np.all(got == want[:, None, None, None])
    lo, hi = add.channel_acc_range()
    assert lo.min() == y.min() and hi.max() == y.max()            # the exact accumulator range


def test_unrelated_scales_are_refused_naming_the_add(tmp_path):
    path = _export(unrelated_scales_net, (1, 3, 8, 8), tmp_path, "ratio")
    adds = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Add"]
    assert len(adds) == 1
    with pytest.raises(ThresherError) as info:
        load_model(path)
    assert adds[0] in str(info.value) and "power of two" in str(info.value)


def test_float_ties_after_add_are_refused(tmp_path):
    """Calibrated but untrained: the output scale is 4/3 of the shared input scale (seed 0), so sums
    such as 6 fall on a rounding tie that float32 breaks differently for different splits; no
    integer add can reproduce that, so the fold refuses, naming the add."""
    path = _export(identity_block_net, (1, 3, 8, 8), tmp_path, "ties", 0, learned=False)
    adds = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Add"]
    with pytest.raises(ThresherError) as info:
        load_model(path)
    assert adds[0] in str(info.value) and "split" in str(info.value)


def test_golden_keep_and_liveness(tmp_path):
    """``keep`` returns every layer's output; each equals its layer run on its own inputs."""
    path = _export(resnet8_small, (1, 3, 16, 16), tmp_path, "keep")
    net = load_model(path)
    x = _pixels(5, (1, 3, 16, 16), 4)
    q = golden.quantize_input(net, x)
    stages = golden.forward(net, q, keep=True)
    assert len(stages) == len(net.layers)
    assert np.array_equal(stages[-1], golden.forward(net, q))
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Add):
            a, b = (stages[j] if j >= 0 else q for j in net.sources(i))
            assert np.array_equal(stages[i], golden.apply_thresholds(
                layer.activation, layer.accumulate(a.reshape(stages[i].shape),
                                             b.reshape(stages[i].shape))))


def test_save_load_round_trip_and_hash(tmp_path):
    path = _export(resnet8_small, (1, 3, 16, 16), tmp_path, "save")
    net = load_model(path)
    net.save(tmp_path / "net")
    back = IntegerNetwork.load(tmp_path / "net")
    assert [back.sources(i) for i in range(len(back.layers))] == \
        [net.sources(i) for i in range(len(net.layers))]
    assert network_hash(back) == network_hash(net)
    x = _pixels(9, (1, 3, 16, 16), 4)
    assert np.array_equal(golden.run(back, x), golden.run(net, x))
    # the wiring is in the hash: the same layers read in another order hash differently
    i = next(k for k, layer in enumerate(net.layers) if isinstance(layer, Add))
    import dataclasses
    swapped = list(net.layers)
    swapped[i] = dataclasses.replace(net.layers[i], inputs=net.sources(i)[::-1])
    other = IntegerNetwork(net.input, tuple(swapped), net.output, net.output_shape, net.name,
                           net.host)
    assert network_hash(other) != network_hash(net)


@pytest.mark.parametrize("model", ["default", "tfc"])
def test_chain_networks_keep_format_and_hash(model, shared, tmp_path):
    net = load_model("default" if model == "default" else shared / "models" / "TFC_2W2A.onnx")
    assert net.is_chain     # its hash against the one from before graphs: test_layer_kinds.py
    net.save(tmp_path / "net")
    doc = json.loads((tmp_path / "net" / "network.json").read_text())
    assert all("inputs" not in layer for layer in doc["layers"])
    back = IntegerNetwork.load(tmp_path / "net")
    assert network_hash(back) == network_hash(net)
