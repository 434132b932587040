"""The real Brevitas-trained MNIST network from ../shared against qonnx's executor."""

import numpy as np

from thresher.model_tools import golden, load_model
from thresher.model_tools.bench import mnist_like, qonnx_reference


def test_tfc_labels_and_qonnx_agreement(shared):
    model = shared / "models" / "TFC_2W2A.onnx"
    x = np.load(shared / "data" / "mnist4" / "input.npy")
    labels = np.load(shared / "data" / "mnist4" / "labels.npy")
    net = load_model(model)
    out = golden.run(net, x)
    assert out.argmax(1).tolist() == labels.tolist() == [7, 2, 1, 0]
    reference = qonnx_reference(model, x)
    assert np.abs(out - reference).max() <= 1e-4 * np.abs(reference).max()


def test_tfc_structure(shared):
    net = load_model(shared / "models" / "TFC_2W2A.onnx")
    assert [type(layer).__name__ for layer in net.layers] == ["Dense"] * 4
    assert [layer.out_shape for layer in net.layers] == [(64,), (64,), (64,), (10,)]
    # 2-bit narrow signed weights and activations: values -1, 0, +1
    for layer in net.layers:
        assert set(np.unique(layer.weights)) <= {-1, 0, 1}
        if layer.activation is not None:
            assert layer.activation.out_range == (-1, 1)
    assert net.macs == 784 * 64 + 2 * 64 * 64 + 64 * 10


def test_tfc_on_mnist_like_inputs(shared):
    """Many inputs, including pixels that land on the input quantizer's edges."""
    model = shared / "models" / "TFC_2W2A.onnx"
    x = mnist_like(np.load(shared / "data" / "mnist4" / "input.npy"), 40, seed=1)
    net = load_model(model)
    reference = qonnx_reference(model, x)
    assert np.abs(golden.run(net, x) - reference).max() <= 1e-4 * np.abs(reference).max()
