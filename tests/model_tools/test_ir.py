"""The integer-network representation: invariants, bounds, integer input thresholds, save/load."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thresher.model_tools import IntegerNetwork, ThresherError, Thresholds, golden, load_model
from thresher.model_tools.ir import Conv, Dense, signed_bits


def test_thresholds_must_be_ascending_and_directions_unit():
    with pytest.raises(ValueError, match="ascending"):
        Thresholds(np.array([[3, 1]]), np.array([1]), 0)
    with pytest.raises(ValueError, match="direction"):
        Thresholds(np.array([[1, 3]]), np.array([2]), 0)


def test_arrays_are_immutable():
    t = Thresholds(np.array([[1, 3]]), np.array([1]), 0)
    with pytest.raises(ValueError):
        t.values[0, 0] = 5


@pytest.mark.parametrize("lo,hi,bits", [(0, 0, 1), (-1, 0, 1), (0, 1, 2), (-128, 127, 8),
                                        (-129, 127, 9), (-311, 311, 10)])
def test_signed_bits(lo, hi, bits):
    assert signed_bits(lo, hi) == bits


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 5), st.integers(1, 40), st.integers(1, 8), st.booleans(), st.integers(0, 2**31))
def test_accumulator_bound_is_tight_and_reached(cout, cin, wbits, signed_in, seed):
    """The extreme inputs (per channel, by the weights' signs) reach the bound exactly."""
    rng = np.random.default_rng(seed)
    wmax = (1 << (wbits - 1)) - 1 if wbits > 1 else 1
    w = rng.integers(-wmax - 1, wmax + 1, (cout, cin))
    in_range = (-8, 7) if signed_in else (0, 15)
    layer = Dense("d", w, (cin,), (cout,), in_range, max(wbits, 2), None)
    lo, hi = layer.channel_acc_range()
    for c in range(cout):
        a_hi = np.where(w[c] > 0, in_range[1], in_range[0])
        a_lo = np.where(w[c] > 0, in_range[0], in_range[1])
        assert w[c] @ a_hi == hi[c] and w[c] @ a_lo == lo[c]
    assert layer.acc_bits == signed_bits(*layer.acc_range)


def test_padding_widens_the_bound_to_include_zero():
    w = np.ones((1, 1, 3, 3), dtype=np.int64)
    unpadded = Conv("c", w, (1, 4, 4), (1, 2, 2), (1, 3), 2, None)
    padded = Conv("c", w, (1, 4, 4), (1, 4, 4), (1, 3), 2, None, pads=(1, 1, 1, 1))
    assert unpadded.acc_range == (0, 27) and unpadded.channel_acc_range()[0][0] == 9
    assert padded.channel_acc_range()[0][0] == 0


def test_integer_input_thresholds_match_float_ones_on_every_byte(shared):
    net = load_model(shared / "models" / "TFC_2W2A.onnx")
    pixels = np.arange(256, dtype=np.float32)
    by_float = golden.apply_thresholds(net.input.thresholds, pixels[None, None])
    by_int = golden.apply_thresholds(net.input.integer_thresholds(0, 255), pixels.astype(np.int64)[None, None])
    assert np.array_equal(by_float, by_int)
    assert by_int.min() == -1 and by_int.max() == 1


def test_save_load_round_trip(shared, tmp_path):
    net = load_model(shared / "models" / "TFC_2W2A.onnx")
    net.save(tmp_path)
    back = IntegerNetwork.load(tmp_path)
    x = np.load(shared / "data" / "mnist4" / "input.npy")
    assert np.array_equal(golden.run(back, x), golden.run(net, x))
    for a, b in zip(net.layers, back.layers):
        assert type(a) is type(b) and np.array_equal(a.weights, b.weights)
        assert a.acc_range == b.acc_range


def test_load_of_a_broken_directory_is_a_user_error(tmp_path):
    (tmp_path / "network.json").write_text("{not json")
    with pytest.raises(ThresherError, match="not a readable thresher network"):
        IntegerNetwork.load(tmp_path)


def test_dense_weight_shape_is_checked():
    with pytest.raises(ValueError, match="do not match"):
        Dense("d", np.zeros((2, 3), dtype=np.int64), (4,), (2,), (0, 1), 2, None)
