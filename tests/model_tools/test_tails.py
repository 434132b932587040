"""Host-side tails after the last integer layer (Softmax, LogSoftmax, Sigmoid, ArgMax, TopK):
golden against qonnx's executor, the IR's save/load and fingerprint, ``thresher info``."""

from __future__ import annotations

import numpy as np
import pytest

from qonnx_builder import GraphBuilder
from thresher.hw.board.frame import network_hash
from thresher.model_tools import golden
from thresher.model_tools.bench import qonnx_reference
from thresher.model_tools.errors import ThresherError
from thresher.model_tools.ir import HostOp, IntegerNetwork
from thresher.model_tools.load import load_model
from thresher.model_tools.report import format_table, layer_rows


def _mlp(seed=0, features=6, classes=5) -> GraphBuilder:
    """Quantized input, one hidden 3-bit layer, raw final scores (with exact ties possible)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder((1, features))
    b.quant(1.0, 8, signed=False)
    b.matmul(rng.integers(-3, 4, (features, 7)), 0.25, 3)
    b.batchnorm(rng.normal(1, .3, 7), rng.normal(0, 1, 7), rng.normal(0, 1, 7) * 20,
                rng.random(7) * 400 + 100, 1e-3)
    b.quant(0.5, 3, signed=False)
    b.matmul(rng.integers(-3, 4, (7, classes)), np.float32([[0.125, 0.25, 0.5, 0.125, 0.0625]]), 3)
    return b


def _inputs(n=24, features=6, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (n, features)).astype(np.float32)


TAILS = {
    "softmax": lambda b: b.apply("Softmax", axis=-1),
    "logsoftmax": lambda b: b.apply("LogSoftmax", axis=1),
    "sigmoid": lambda b: b.apply("Sigmoid"),
    "argmax_keepdims": lambda b: b.apply("ArgMax", axis=1, keepdims=1),
    "argmax_flat": lambda b: b.apply("ArgMax", axis=-1, keepdims=0),
    "topk_values": lambda b: b.topk(3),                     # values and indices declared: values
    "topk_indices": lambda b: b.topk(2, outputs=(1,)),      # only the indices are the output
    "topk_smallest": lambda b: b.topk(2, largest=0, outputs=(0,)),
    "softmax_argmax": lambda b: b.apply("Softmax", axis=-1).apply("ArgMax", axis=1, keepdims=0),
}


def _model(tmp_path, tail, opset=13):
    b = _mlp()
    TAILS[tail](b)
    return b.build(tmp_path / f"{tail}.onnx", opset=opset)


@pytest.mark.parametrize("tail", sorted(TAILS))
def test_tail_matches_qonnx(tmp_path, tail):
    path = _model(tmp_path, tail)
    net = load_model(path)
    assert net.host, "the tail became host ops"
    x = _inputs()
    ours, ref = golden.run(net, x), qonnx_reference(path, x)
    assert ours.shape == ref.shape
    if net.host[-1].integer_output:
        assert ours.dtype == np.int64
        assert np.array_equal(ours, ref)
    else:
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


def test_softmax_opset11_flattens(tmp_path):
    """Before opset 13, Softmax(axis=1) on (1, C, H, W) normalises over C*H*W together."""
    rng = np.random.default_rng(3)
    b = GraphBuilder((1, 2, 4, 4)).quant(1.0, 8, signed=False)
    b.conv(rng.integers(-3, 4, (3, 2, 3, 3)), 0.25, 3, pads=(1, 1, 1, 1))
    b.apply("Softmax", axis=1)
    path = b.build(tmp_path / "sm11.onnx", opset=11)
    net = load_model(path)
    assert net.host[0].flatten
    x = np.random.default_rng(4).integers(0, 256, (6, 2, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(golden.run(net, x), qonnx_reference(path, x), rtol=1e-6, atol=1e-7)


def test_tail_round_trip_and_fingerprint(tmp_path):
    nets = {t: load_model(_model(tmp_path, t)) for t in ("topk_values", "topk_indices", "softmax")}
    for tail, net in nets.items():
        net.save(tmp_path / tail)
        back = IntegerNetwork.load(tmp_path / tail)
        assert [vars(op) for op in back.host] == [vars(op) for op in net.host]
        x = _inputs(4)
        assert np.array_equal(golden.run(back, x), golden.run(net, x))
        assert network_hash(back) == network_hash(net)
    assert len({network_hash(n) for n in nets.values()}) == 3


def test_info_rows(tmp_path):
    table = format_table(layer_rows(load_model(_model(tmp_path, "topk_indices"))))
    assert "TopK" in table and "k 2, largest, returns indices" in table


def test_affine_after_tail_refused(tmp_path):
    b = _mlp()
    b.apply("Softmax", axis=-1).apply("Mul", b.const(2.0))
    with pytest.raises(ThresherError, match=r"Softmax_\d+ \(Softmax\): Softmax is supported only at the end"):
        load_model(b.build(tmp_path / "bad.onnx"))


def test_batch_axis_refused(tmp_path):
    b = _mlp()
    b.apply("ArgMax", axis=0)
    with pytest.raises(ThresherError, match="batch axis"):
        load_model(b.build(tmp_path / "bad.onnx"))


def test_host_op_checks():
    with pytest.raises(ValueError, match="unknown host op"):
        HostOp("Tanh", (3,), (3,))
    with pytest.raises(ValueError, match="not a per-sample axis"):
        HostOp("Softmax", (3,), (3,), axis=2)


def test_brevitas_argmax_and_softmax(tmp_path):
    """A real Brevitas export (TorchScript exporter) ending in softmax, and one in argmax."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("brevitas")
    import brevitas.nn as qnn
    from brevitas_factory import export

    class Net(torch.nn.Module):
        def __init__(self, tail):
            super().__init__()
            self.tail = tail
            self.q = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.fc1 = qnn.QuantLinear(6, 8, bias=False, weight_bit_width=3)
            self.bn = torch.nn.BatchNorm1d(8)
            self.act = qnn.QuantReLU(bit_width=3, return_quant_tensor=True)
            self.fc2 = qnn.QuantLinear(8, 5, bias=True, weight_bit_width=3)

        def forward(self, x):
            y = self.fc2(self.act(self.bn(self.fc1(self.q(x / 255.0)))))
            return torch.softmax(y, dim=1) if self.tail == "softmax" else torch.argmax(y, dim=1)

    torch.manual_seed(0)
    x = _inputs(16)
    for tail in ("softmax", "argmax"):
        model = Net(tail)
        with torch.no_grad():
            model.bn.running_mean.uniform_(-1, 1)
            model.bn.running_var.uniform_(0.5, 2)
        path = export(model.eval(), tmp_path / f"{tail}.onnx", (1, 6), dynamo=False)
        net = load_model(path)
        assert [op.kind for op in net.host] == ["Softmax" if tail == "softmax" else "ArgMax"]
        ours, ref = golden.run(net, x), qonnx_reference(path, x)
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_tail_golden_vs_rtl(tmp_path):
    from thresher.sim.engines import run_engine
    net = load_model(_model(tmp_path, "topk_values"))
    x = _inputs(4)
    rtl = run_engine(net, x, "rtl")
    assert np.array_equal(rtl.outputs, golden.run(net, x))
    assert np.array_equal(rtl.integers, golden.run_integer(net, x))
