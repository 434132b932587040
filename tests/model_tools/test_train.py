"""model_tools.train: parameter checks, the digits split, and a short QAT run whose export qonnx can run."""

import subprocess
import sys

import numpy as np
import pytest

from thresher.model_tools.errors import ThresherError
from thresher.model_tools.train import digits_split, train


def test_model_tools_imports_without_torch():
    code = ("import sys, thresher.model_tools, thresher.model_tools.train; "
            "assert 'torch' not in sys.modules and 'brevitas' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("kwargs,match", [
    ({"dataset": "cifar10"}, "unknown dataset 'cifar10'"),
    ({"wbits": 0}, "wbits must be an integer from 1 to 8, not 0"),
    ({"abits": 9}, "abits must be an integer from 1 to 8, not 9"),
    ({"wbits": 2.5}, "wbits"),
    ({"epochs": 0}, "epochs must be a positive integer, not 0"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ThresherError, match=match):
        train(**kwargs, progress=False)


def test_digits_split_is_fixed_raw_pixels():
    x_train, y_train, x_test, y_test = digits_split(0)
    assert x_train.shape[1:] == x_test.shape[1:] == (1, 8, 8)
    assert x_train.dtype == x_test.dtype == np.float32
    assert len(x_test) >= 300 and len(x_train) + len(x_test) == 1797
    assert np.array_equal(x_test, np.round(x_test)) and x_test.min() == 0 and x_test.max() == 255
    assert set(np.unique(y_test)) == set(range(10))
    again = digits_split(0)
    assert np.array_equal(again[2], x_test) and np.array_equal(again[3], y_test)


def test_short_training_exports_a_working_model(tmp_path):
    import brevitas_factory as factory

    out = tmp_path / "digits.onnx"
    summary = train(wbits=4, abits=2, epochs=2, seed=0, out=out, progress=False)
    assert summary["onnx"] == str(out) and out.exists()
    assert summary["test_images"] >= 300
    assert summary["test_accuracy"] > 0.5  # chance is 0.1
    assert summary["weight_bits"] < 60 * 1024

    _, _, x_test, y_test = digits_split(0)
    logits = factory.reference(out, x_test[:60])
    assert logits.shape == (60, 10)
    assert np.mean(logits.argmax(1) == y_test[:60]) > 0.5


def test_training_is_deterministic_for_a_seed():
    a = train(epochs=1, seed=3, progress=False)
    b = train(epochs=1, seed=3, progress=False)
    assert a["test_accuracy"] == b["test_accuracy"] and a["train_accuracy"] == b["train_accuracy"]


def test_shipped_test_split_is_the_training_split():
    """The demo's embedded test images are exactly ``digits_split(0)``'s test part."""
    from thresher.model_tools.builtin import digits_test
    _, _, x_test, y_test = digits_split(0)
    x, y = digits_test()
    assert np.array_equal(x, x_test) and np.array_equal(y, y_test)
