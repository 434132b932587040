"""Typed inputs: a model with no quantizer first whose input is already integers (a finn_datatype
annotation such as UINT8 or BIPOLAR, or ``--input-type``); golden against qonnx's executor."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from qonnx_builder import GraphBuilder
from thresher.hw.board.frame import network_hash
from thresher.model_tools import golden
from thresher.model_tools.bench import qonnx_reference
from thresher.model_tools.errors import ThresherError
from thresher.model_tools.ir import IntegerNetwork, identity_thresholds
from thresher.model_tools.load import load_model, load_network
from thresher.sim.app.cli import main


def _uint8_conv(tmp_path, input_type="UINT8", name="uint8"):
    """Conv straight on 8-bit pixels (like QuantResNet): no input quantizer."""
    rng = np.random.default_rng(0)
    b = GraphBuilder((1, 3, 6, 6))
    b.apply("Mul", b.const(np.float32(1 / 256)))      # a positive scalar scale before the layer
    b.conv(rng.integers(-7, 8, (4, 3, 3, 3)), np.float32([0.5, 0.25, 0.125, 0.25]).reshape(4, 1, 1, 1),
           4, bias=rng.normal(0, 1, 4), pads=(1, 1, 1, 1))
    b.batchnorm(rng.normal(1, .5, 4), rng.normal(0, .5, 4), rng.normal(0, 1, 4), rng.random(4) + .5)
    b.quant(0.25, 3, signed=False).apply("MaxPool", kernel_shape=[2, 2], strides=[2, 2])
    b.apply("Flatten", axis=1)
    b.matmul(rng.integers(-3, 4, (36, 5)), 0.125, 3)
    return b.build(tmp_path / f"{name}.onnx", input_type=input_type)


def _bipolar_mlp(tmp_path):
    """Like the qonnx zoo's UNSW-NB15 MLP: bipolar input, bipolar weights and activations."""
    rng = np.random.default_rng(1)
    b = GraphBuilder((1, 12))
    b.matmul(rng.choice([-1, 1], (12, 8)), 1.0, 1)
    b.batchnorm(rng.normal(1, .5, 8), rng.normal(0, .5, 8), rng.normal(0, 1, 8), rng.random(8) + .5)
    b.bipolar()
    b.matmul(rng.choice([-1, 1], (8, 3)), 0.5, 1)
    return b.build(tmp_path / "bipolar.onnx", input_type="BIPOLAR")


def _pixels(n=16, shape=(3, 6, 6), seed=2):
    x = np.random.default_rng(seed).integers(0, 256, (n, *shape)).astype(np.float32)
    x[0], x[1] = 0, 255                                   # the extremes
    return x


def test_identity_thresholds_exact():
    for name, values in (("UINT8", range(256)), ("INT4", range(-8, 8)), ("BINARY", (0, 1)),
                         ("BIPOLAR", (-1, 1)), ("UINT16", range(0, 65536, 257))):
        v = np.asarray(list(values), dtype=np.float32)[None]
        assert np.array_equal(golden.apply_thresholds(identity_thresholds(name), v), v)


def test_uint8_annotated_matches_qonnx(tmp_path):
    path = _uint8_conv(tmp_path)
    net = load_model(path)
    assert net.input.input_type == "UINT8"
    x = _pixels()
    np.testing.assert_allclose(golden.run(net, x), qonnx_reference(path, x), rtol=1e-6, atol=1e-6)


def test_bipolar_annotated_matches_qonnx(tmp_path):
    path = _bipolar_mlp(tmp_path)
    net = load_model(path)
    assert net.input.input_type == "BIPOLAR" and net.input.out_range == (-1, 1)
    x = np.random.default_rng(3).choice([-1.0, 1.0], (32, 12)).astype(np.float32)
    np.testing.assert_allclose(golden.run(net, x), qonnx_reference(path, x), rtol=1e-6, atol=1e-6)


def test_float_input_without_quantizer_suggests_input_type(tmp_path, capsys):
    path = _uint8_conv(tmp_path, input_type=None)
    with pytest.raises(ThresherError, match="give --input-type"):
        load_model(path)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("thresher: error: ") and "--input-type" in err and "\n" not in err


def test_cli_input_type(tmp_path, capsys):
    path = _uint8_conv(tmp_path, input_type=None)
    x = _pixels(6)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(path), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                 "--input-type", "uint8"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), qonnx_reference(path, x),
                               rtol=1e-6, atol=1e-6)
    assert main(["info", str(path), "--input-type", "UINT8"]) == 0
    assert "UINT8 (no quantizer)" in capsys.readouterr().out
    assert main(["compile", str(path), "-o", str(tmp_path / "c"), "--input-type", "UINT8"]) == 0
    assert main(["run", str(tmp_path / "c"), str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y2.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "y2.npy"), np.load(tmp_path / "y.npy"))
    capsys.readouterr()
    assert main(["info", str(path), "--input-type", "FLOAT8"]) == 2
    assert "input type FLOAT8: give BIPOLAR, BINARY, UINTn or INTn" in capsys.readouterr().err


@pytest.mark.parametrize("value, message", [
    (256.0, "input value 256 at index (0, 1, 2, 3) is not of the model's input type UINT8 "
            "(an integer in 0..255)"),
    (-1.0, "input value -1 at index (0, 1, 2, 3)"),
    (7.5, "input value 7.5 at index (0, 1, 2, 3)"),
])
def test_out_of_range_uint8(tmp_path, capsys, value, message):
    path = _uint8_conv(tmp_path)
    x = _pixels(2)
    x[0, 1, 2, 3] = value
    np.save(tmp_path / "x.npy", x)
    code = main(["run", str(path), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("thresher: error: ")
    assert message in err


def test_out_of_range_bipolar(tmp_path, capsys):
    path = _bipolar_mlp(tmp_path)
    x = np.ones((2, 12), np.float32)
    x[1, 4] = 0
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(path), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 2
    assert capsys.readouterr().err == ("thresher: error: input value 0 at index (1, 4) is not of "
                                       "the model's input type BIPOLAR (-1 or +1)\n")


def test_round_trip_and_fingerprint(tmp_path):
    typed = load_model(_uint8_conv(tmp_path))
    typed.save(tmp_path / "typed")
    back = IntegerNetwork.load(tmp_path / "typed")
    assert back.input.input_type == "UINT8" and network_hash(back) == network_hash(typed)
    other = load_model(_uint8_conv(tmp_path, input_type="UINT8"), input_type="UINT16")
    assert other.input.input_type == "UINT16" and network_hash(other) != network_hash(typed)
    with pytest.raises(ThresherError, match="compiled with input type UINT8"):
        load_network(tmp_path / "typed", input_type="INT8")


def test_quantizer_first_ignores_annotation(tmp_path):
    """A model that starts with a quantizer behaves as before, annotation or not."""
    b = GraphBuilder((1, 4)).quant(1.0, 8, signed=False)
    b.matmul(np.arange(-4, 4).reshape(4, 2) % 3, 0.5, 3)
    path = b.build(tmp_path / "q.onnx", input_type="UINT8")
    net = load_model(path)
    assert net.input.input_type is None
    x = np.float32([[0, 3, 255, 17], [1, 2, 4, 8]])      # qonnx checks the annotation itself
    np.testing.assert_allclose(golden.run(net, x), qonnx_reference(path, x))
    golden.run(net, np.float32([[0.4, 3.5, 300.0, -2.0]]))  # golden: still any float input


@pytest.mark.parametrize("dynamo", [False, True])
def test_brevitas_no_input_quant(tmp_path, dynamo):
    """A Brevitas net with no input quantizer (QuantResNet-style: 'the input is already 8b RGB'),
    annotated UINT8 after export, and the same file without the annotation plus input_type."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("brevitas")
    import brevitas.nn as qnn
    from brevitas_factory import export
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper

    torch.manual_seed(5)
    model = torch.nn.Sequential(
        qnn.QuantConv2d(3, 4, 3, padding=1, bias=False, weight_bit_width=4),
        torch.nn.BatchNorm2d(4),
        qnn.QuantReLU(bit_width=4),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        qnn.QuantLinear(36, 5, bias=True, weight_bit_width=4))
    with torch.no_grad():
        model[1].running_mean.uniform_(-50, 50)
        model[1].running_var.uniform_(1e3, 1e4)
    plain = export(model.eval(), tmp_path / "plain.onnx", (1, 3, 6, 6), dynamo=dynamo)
    wrapper = ModelWrapper(str(plain))
    wrapper.set_tensor_datatype(wrapper.graph.input[0].name, DataType["UINT8"])
    annotated = tmp_path / "annotated.onnx"
    wrapper.save(str(annotated))
    x = _pixels(8)
    ref = qonnx_reference(plain, x)
    for net in (load_model(annotated), load_model(plain, input_type="UINT8")):
        assert net.input.input_type == "UINT8"
        np.testing.assert_allclose(golden.run(net, x), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ThresherError, match="--input-type"):
        load_model(plain)


@pytest.mark.slow
def test_typed_golden_vs_rtl(tmp_path):
    from thresher.sim.engines import run_engine
    net = load_model(_uint8_conv(tmp_path))
    x = _pixels(3)
    rtl = run_engine(net, x, "rtl")
    assert np.array_equal(rtl.integers, golden.run_integer(net, x))
    assert np.array_equal(rtl.outputs, golden.run(net, x))
