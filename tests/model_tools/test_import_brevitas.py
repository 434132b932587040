"""Import + fold + golden engine on Brevitas QAT networks that the tests export themselves,
against qonnx's own executor (tolerance 1e-4 of the largest output, as the issue asks)."""

import numpy as np
import pytest
from brevitas_factory import make_case

from thresher.model_tools import golden, load_model


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """``case(seed, kind)``: one export per (seed, kind) for the whole module."""
    cache = {}
    directory = tmp_path_factory.mktemp("brevitas")

    def get(seed, kind):
        if (seed, kind) not in cache:
            cache[seed, kind] = make_case(seed, kind, directory, n=12)
        return cache[seed, kind]
    return get


CONV_SEEDS = [0, 1, 2, 3, 5, 8, 13, 21]


def assert_matches(path, x, reference):
    net = load_model(path)
    out = golden.run(net, x)
    assert out.shape == reference.shape and out.dtype == np.float32
    tolerance = 1e-4 * max(float(np.abs(reference).max()), 1e-12)
    assert np.abs(out - reference).max() <= tolerance
    return net


@pytest.mark.parametrize("seed", CONV_SEEDS)
def test_random_conv_networks(seed, case):
    path, x, reference = case(seed, "conv")
    net = assert_matches(path, x, reference)
    assert any(type(layer).__name__ == "Conv" for layer in net.layers)


@pytest.mark.parametrize("seed", [0, 1, 2, 4])
def test_random_mlp_networks(seed, case):
    path, x, reference = case(seed, "mlp")
    assert_matches(path, x, reference)


def test_the_factory_covers_the_hard_cases(case):
    """The seeds above must include negative and zero gammas, pooling, signed activations."""
    seen = {"negative direction": False, "constant channel": False, "maxpool": False,
            "signed activations": False}
    for seed in CONV_SEEDS:
        path, _, _ = case(seed, "conv")
        net = load_model(path)
        for layer in net.layers:
            if type(layer).__name__ == "MaxPool":
                seen["maxpool"] = True
                continue
            t = layer.activation
            if t is None:
                continue
            seen["negative direction"] |= bool((t.direction < 0).any())
            seen["signed activations"] |= t.offset < 0
            lo, hi = layer.channel_acc_range()
            v_lo = np.where(t.direction > 0, lo, -hi)[:, None]
            v_hi = np.where(t.direction > 0, hi, -lo)[:, None]
            seen["constant channel"] |= bool(((t.values <= v_lo) | (t.values > v_hi)).all(1).any())
    assert all(seen.values()), seen
