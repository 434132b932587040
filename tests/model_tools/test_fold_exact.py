"""Property tests: the fold is exact over the whole accumulator range.

Each case is a one-layer QONNX graph ``Quant(input) -> MatMul(Quant(W)) -> [Add bias] -> BN ->
[Relu] -> Quant``. The input quantizer has scale 1, so the inputs enumerate every integer the
first quantizer can produce, and with weights of +-1 every accumulator value of the layer is
driven. With power-of-two scales, integer-multiple biases and ``sqrt(var + eps)`` exact, qonnx's
float32 arithmetic is exact too, so ties happen on purpose and must come out identical.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thresher.model_tools import golden, load_model
from qonnx_builder import GraphBuilder, execute

pow2 = st.integers(-3, 2).map(lambda k: 2.0 ** k)


@st.composite
def blocks(draw):
    channels = draw(st.integers(1, 6))
    in_bits = draw(st.integers(4, 8))
    act_bits = draw(st.integers(1, 4))
    signed = draw(st.booleans()) if act_bits > 1 else True
    return dict(
        channels=channels, in_bits=in_bits,
        w_int=draw(st.lists(st.sampled_from([-4, -2, -1, 0, 1, 1, 2, 3]), min_size=channels,
                            max_size=channels)),
        w_scale=draw(st.lists(pow2, min_size=channels, max_size=channels)),
        bias=draw(st.one_of(st.none(), st.lists(st.integers(-8, 8).map(lambda m: m / 4),
                                                min_size=channels, max_size=channels))),
        gamma=draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, -0.5, -1.0, -2.0]),
                            min_size=channels, max_size=channels)),
        beta=draw(st.lists(st.integers(-16, 16).map(lambda m: m / 8), min_size=channels,
                           max_size=channels)),
        mean=draw(st.lists(st.integers(-16, 16).map(lambda m: m / 4), min_size=channels,
                           max_size=channels)),
        var=draw(st.lists(st.sampled_from([0.25, 1.0, 4.0, 16.0]), min_size=channels,
                          max_size=channels)),
        relu=draw(st.booleans()), act_bits=act_bits, signed=signed,
        narrow=draw(st.booleans()) and act_bits > 1,
        rounding=draw(st.sampled_from(["ROUND", "FLOOR", "CEIL"])),
        out_scale=draw(pow2),
    )


def build_block(p, path):
    c = p["channels"]
    g = GraphBuilder((1 << p["in_bits"], 1))
    g.quant(1.0, p["in_bits"], signed=True)
    g.matmul(np.array(p["w_int"], np.float32)[None, :], np.array(p["w_scale"], np.float32)[None, :],
             bits=3)
    if p["bias"] is not None:
        g.apply("Add", g.const(np.array(p["bias"], np.float32)))
    g.batchnorm(p["gamma"], p["beta"], p["mean"], p["var"], eps=p.get("eps", 0.0))
    if p["relu"]:
        g.apply("Relu")
    g.quant(p["out_scale"], p["act_bits"], signed=p["signed"], narrow=p["narrow"],
            rounding=p["rounding"])
    g.build(path, output_shape=[1 << p["in_bits"], c])
    x = np.arange(-(1 << (p["in_bits"] - 1)), 1 << (p["in_bits"] - 1), dtype=np.float32)[:, None]
    return x


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(p=blocks())
def test_fold_equals_qonnx_on_every_accumulator_value(p, tmp_path):
    path = tmp_path / "block.onnx"
    x = build_block(p, path)
    net = load_model(path)
    reference = execute(path, x)
    ours = golden.run(net, x)
    assert np.array_equal(ours, reference), (ours - reference)
    # the integer levels are the reference's integers (the output is level * scale, exactly)
    assert np.array_equal(golden.run_integer(net, x) * p["out_scale"], reference)


def reference_levels(p, y, rounding):
    """An independent float64 evaluation of the block for accumulators ``y`` (N, C)."""
    s_w = np.array(p["w_scale"])
    z = y * s_w + (0 if p["bias"] is None else np.array(p["bias"]))
    u = (z - np.array(p["mean"])) / np.sqrt(np.array(p["var"]) + p["eps"]) * np.array(p["gamma"]) \
        + np.array(p["beta"])
    if p["relu"]:
        u = np.maximum(u, 0)
    bits, signed, narrow = p["act_bits"], p["signed"], p["narrow"]
    if bits == 1 and signed:
        return np.where(u / p["out_scale"] >= 0, 1, -1)
    q_min = (-(1 << (bits - 1)) + narrow) if signed else 0
    q_max = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1 - narrow
    r = {"ROUND": np.round, "FLOOR": np.floor, "CEIL": np.ceil, "ROUND_TO_ZERO": np.fix}[rounding]
    return r(np.clip(u / p["out_scale"], q_min, q_max))


finite = st.floats(-3, 3, allow_nan=False, width=32)


@st.composite
def float_blocks(draw):
    p = draw(blocks())
    c = p["channels"]
    p["w_scale"] = draw(st.lists(st.floats(0.015625, 2.0, width=32), min_size=c, max_size=c))
    p["gamma"] = draw(st.lists(st.one_of(st.just(0.0), finite), min_size=c, max_size=c))
    p["beta"] = draw(st.lists(finite, min_size=c, max_size=c))
    p["mean"] = draw(st.lists(finite, min_size=c, max_size=c))
    p["var"] = draw(st.lists(st.floats(0.0, 4.0, width=32), min_size=c, max_size=c))
    p["eps"] = 1e-5
    p["out_scale"] = draw(st.floats(0.0625, 2.0, width=32))
    p["rounding"] = draw(st.sampled_from(["ROUND", "FLOOR", "CEIL", "ROUND_TO_ZERO"]))
    return p


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(p=float_blocks())
def test_fold_is_exact_for_arbitrary_float_parameters(p, tmp_path):
    """With arbitrary float32 parameters the fold still equals the reference step function,
    evaluated independently in float64 on every accumulator value."""
    path = tmp_path / "block.onnx"
    x = build_block(p, path)
    p["eps"] = float(np.float32(p["eps"]))   # the graph stores epsilon as float32
    net = load_model(path)
    y = x * np.array(p["w_int"], dtype=np.float64)[None, :]   # every accumulator value
    want = reference_levels(p, y, p["rounding"])
    assert np.array_equal(golden.run_integer(net, x), want)


def test_exact_tie_rounds_half_to_even(tmp_path):
    """y * 0.5 = k + 0.5 exactly: ROUND must go to even, like qonnx (not up, like a ceil)."""
    g = GraphBuilder((8, 1)).quant(1.0, 4, signed=True)
    g.matmul(np.ones((1, 1)), np.full((1, 1), 0.5), bits=2)
    g.batchnorm([1.0], [0.0], [0.0], [1.0], eps=0.0).quant(1.0, 4, signed=True)
    g.build(tmp_path / "tie.onnx", output_shape=[8, 1])
    x = np.array([[1], [3], [5], [-1], [-3], [7], [-5], [0]], np.float32)   # y * 0.5 = .5 ties
    net = load_model(tmp_path / "tie.onnx")
    ours = golden.run(net, x)
    assert np.array_equal(ours, execute(tmp_path / "tie.onnx", x))
    assert ours[:, 0].tolist() == [0.0, 2.0, 2.0, -0.0, -2.0, 4.0, -2.0, 0.0]


@pytest.mark.parametrize("gamma", [-1.5, 0.0])
def test_negative_and_zero_gamma_channels(tmp_path, gamma):
    g = GraphBuilder((256, 1)).quant(1.0, 8, signed=True)
    g.matmul(np.array([[1, -1]]), np.array([[0.25, 0.125]]), bits=2)
    g.batchnorm([gamma, 1.0], [0.3, -0.2], [1.0, 0.0], [2.0, 1.0], eps=1e-5)
    g.quant(0.5, 3, signed=True, narrow=True)
    path = g.build(tmp_path / "neg.onnx", output_shape=[256, 2])
    x = np.arange(-128, 128, dtype=np.float32)[:, None]
    net = load_model(path)
    assert (net.layers[0].activation.direction[0] == -1) == (gamma < 0)
    np.testing.assert_allclose(golden.run(net, x), execute(path, x), atol=1e-6)
