"""The random-network factory itself: exports load, run through qonnx, and give non-trivial outputs."""

import numpy as np
import pytest

import torch

import brevitas_factory as factory  # noqa: E402  (tests/ is on sys.path under pytest's rootdir import)


@pytest.mark.slow
@pytest.mark.parametrize("seed,kind", [(0, "conv"), (1, "conv"), (2, "mlp"), (3, "mlp")])
def test_make_case_exports_and_runs(tmp_path, seed, kind):
    path, x, y = factory.make_case(seed, kind, tmp_path, n=8)
    assert path.exists()
    assert x.dtype == np.float32 and x.shape[0] == 8
    assert np.array_equal(x, np.round(x)) and x.min() >= 0 and x.max() <= 255
    assert y.dtype == np.float32 and y.shape[0] == 8 and y.ndim == 2
    assert np.all(np.isfinite(y))
    assert np.ptp(y, axis=0).max() > 0, "output is constant across inputs"


@pytest.mark.slow
def test_reference_matches_torch(tmp_path):
    """qonnx's reading of the export agrees with the Brevitas model it came from (to float rounding)."""

    model = factory.random_net(5, "conv")
    path = factory.export(model, tmp_path / "m.onnx", model.input_shape)
    x = factory.random_inputs(5, model.input_shape, 4)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(factory.reference(path, x), expected, rtol=1e-5, atol=1e-5)


def test_same_seed_same_network(tmp_path):
    a = factory.random_net(7, "mlp")
    b = factory.random_net(7, "mlp")
    assert a.recipe == b.recipe
    x = factory.random_inputs(7, a.input_shape, 3)
    assert np.array_equal(x, factory.random_inputs(7, a.input_shape, 3))


def test_unknown_kind_rejected():
    with pytest.raises(ValueError, match="kind"):
        factory.random_net(0, "transformer")


@pytest.mark.slow
def test_export_is_one_self_contained_file(tmp_path):
    model = factory.random_net(0, "conv")
    model.dynamo = True  # the exporter that writes a side ".data" file
    factory.export(model, tmp_path / "m.onnx", model.input_shape)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
