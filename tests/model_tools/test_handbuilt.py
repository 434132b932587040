"""Hand-built QONNX graphs for the cases Brevitas exports rarely produce, against qonnx's executor."""

import numpy as np
import pytest

from thresher.model_tools import ThresherError, golden, load_model
from qonnx_builder import GraphBuilder, execute

rng = np.random.default_rng(7)


def check(path, x, tolerance=1e-4):
    net = load_model(path)
    reference = execute(path, x)
    out = golden.run(net, x)
    assert out.shape == reference.shape
    assert np.abs(out - reference).max() <= tolerance * max(np.abs(reference).max(), 1e-12)
    return net


def test_w1a1_bipolar_mlp(tmp_path):
    """FINN's W1A1 style: x*2-1, BipolarQuant input, bipolar weights and activations."""
    g = GraphBuilder((16, 20))
    g.apply("Mul", g.const(2.0)).apply("Sub", g.const(1.0)).bipolar()
    g.matmul(rng.choice([-1, 1], (20, 12)), np.ones((1, 12)), bits=1)
    g.batchnorm(rng.normal(0, 1, 12), rng.normal(0, 1, 12), rng.normal(0, 2, 12),
                rng.uniform(0.5, 4, 12), eps=1e-5)
    g.bipolar()
    g.matmul(rng.choice([-1, 1], (12, 5)), np.ones((1, 5)), bits=1)
    path = g.build(tmp_path / "w1a1.onnx", output_shape=[16, 5])
    x = rng.random((16, 20)).astype(np.float32)
    net = check(path, x)
    assert net.layers[0].bipolar_weights and net.layers[0].activation.step == 2
    assert net.input.thresholds.out_range == (-1, 1)


def test_gemm_with_bias_relu_and_transposed_weights(tmp_path):
    g = GraphBuilder((10, 6)).quant(0.05, 8, signed=False)
    w = rng.integers(-7, 8, (9, 6)).astype(np.float32)
    wq = g.quant_tensor(g.const(w * 0.1), 0.1, 4)
    g.tensor = g.node("Gemm", [g.tensor, wq, g.const(rng.normal(0, 1, 9))], transB=1)
    g.apply("Relu").quant(0.25, 3, signed=False)
    w2 = rng.integers(-7, 8, (3, 9)).astype(np.float32)
    w2q = g.quant_tensor(g.const(w2 * 0.2), np.full((3, 1), 0.2, np.float32), 4)
    g.tensor = g.node("Gemm", [g.tensor, w2q, g.const(np.zeros(3))], transB=1, alpha=0.5)
    path = g.build(tmp_path / "gemm.onnx", output_shape=[10, 3])
    check(path, rng.random((10, 6)).astype(np.float32) * 12)


@pytest.mark.parametrize("stride,pads", [((1, 1), (1, 1, 1, 1)), ((2, 2), (0, 1, 1, 0)),
                                         ((2, 1), (0, 0, 0, 0))])
def test_conv_stride_padding_signed_activations(tmp_path, stride, pads):
    g = GraphBuilder((4, 2, 7, 6)).quant(1.0, 8, signed=False)
    g.conv(rng.integers(-3, 4, (5, 2, 3, 3)), np.full((5, 1, 1, 1), 0.125, np.float32), 3,
           bias=rng.normal(0, 1, 5), strides=stride, pads=pads)
    g.batchnorm(rng.normal(0, 1, 5), rng.normal(0, 1, 5), rng.normal(0, 20, 5), rng.uniform(1, 50, 5),
                eps=1e-5)
    g.quant(0.5, 3, signed=True, narrow=True)
    path = g.build(tmp_path / "conv.onnx")
    check(path, rng.integers(0, 256, (4, 2, 7, 6)).astype(np.float32))


def test_maxpool_between_bn_and_quantizer_is_moved(tmp_path):
    """Conv -> BN (positive) -> MaxPool -> Quant: max commutes with the non-decreasing rest."""
    g = GraphBuilder((3, 1, 6, 6)).quant(1.0, 8, signed=False)
    g.conv(rng.integers(-3, 4, (4, 1, 3, 3)), np.full((4, 1, 1, 1), 0.25, np.float32), 3,
           pads=(1, 1, 1, 1))
    g.apply("MaxPool", kernel_shape=[2, 2], strides=[2, 2])
    g.batchnorm(rng.uniform(0.5, 1, 4), rng.normal(0, 1, 4), rng.normal(0, 5, 4),
                rng.uniform(1, 5, 4), eps=1e-5)
    g.quant(0.5, 2, signed=False)
    path = g.build(tmp_path / "pool.onnx")
    net = check(path, rng.integers(0, 256, (3, 1, 6, 6)).astype(np.float32))
    assert [type(layer).__name__ for layer in net.layers] == ["Conv", "MaxPool"]


def test_maxpool_before_a_negative_scale_is_refused(tmp_path):
    g = GraphBuilder((1, 1, 4, 4)).quant(1.0, 8, signed=False)
    g.conv(np.ones((1, 1, 1, 1)), np.full((1, 1, 1, 1), 0.25, np.float32), 3)
    g.apply("MaxPool", kernel_shape=[2, 2], strides=[2, 2])
    g.batchnorm([-1.0], [0.0], [0.0], [1.0]).quant(0.5, 2, signed=False)
    path = g.build(tmp_path / "badpool.onnx")
    with pytest.raises(ThresherError, match="negative scale"):
        load_model(path)


def test_unsupported_op_names_node_and_lists_supported(tmp_path):
    g = GraphBuilder((1, 4)).quant(1.0, 8).apply("Tanh")    # Sigmoid is a host op at the end now
    path = g.build(tmp_path / "tanh.onnx")
    with pytest.raises(ThresherError, match=r"Tanh_\d+ \(Tanh\).*supported: Quant"):
        load_model(path)


def test_input_thresholds_exact_for_every_float32_near_them(tmp_path):
    """The input quantizer's float32 thresholds reproduce qonnx on values a few ulps around them."""
    def model(batch):
        g = GraphBuilder((batch, 1))
        g.apply("Div", g.const(255.0)).apply("Mul", g.const(3.0)).apply("Sub", g.const(0.7))
        g.quant(0.0123, 4, signed=True, narrow=False)
        g.matmul(np.ones((1, 1)), np.ones((1, 1)), bits=2)
        return g.build(tmp_path / f"in{batch}.onnx", output_shape=[batch, 1])

    net = load_model(model(1))
    t = net.input.thresholds.values.ravel()
    t = t[np.isfinite(t)]
    assert len(t) == 15
    around = [np.nextafter(t, np.float32(np.inf)), t, np.nextafter(t, np.float32(-np.inf))]
    x = np.concatenate(around + [np.arange(-300, 300, 0.37, dtype=np.float32)])[:, None]
    assert np.array_equal(golden.run(net, x), execute(model(len(x)), x))
