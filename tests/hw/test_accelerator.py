"""The whole accelerator in Amaranth's simulator against golden.run_integer, bit for bit."""


import numpy as np
import pytest

from thresher.hw.plan import Plan, mac_bound_cycles, predict_cycles
from thresher.sim.run import run_pysim
from thresher.model_tools import golden
from thresher.model_tools.ir import Dense, Dequant, InputQuantizer, IntegerNetwork, Thresholds
from thresher.model_tools.netgen import random_input, random_network

CASES = [
    # (in_shape, spec, pe, simd)
    ((1, 4, 4), (("dense", 16), ("dense", 10)), 4, 4),
    ((1, 6, 6), (("conv", 8, 3, 1, 1), ("dense", 10)), 4, 4),                        # im2col
    ((1, 8, 8), (("conv", 8, 3, 1, 1), ("pool", 2, 2), ("conv", 8, 3, 1, 0), ("dense", 10)), 8, 8),
    ((8, 6, 6), (("conv", 8, 3, 2, 1), ("conv", 8, 3, 1, 1), ("dense", 5)), 4, 8),
    ((3, 5, 5), (("conv", 4, 3, 1, 1), ("conv", 6, 3, 1, 1)), 2, 4),                 # conv out
    ((2, 6, 6), (("conv", 8, 3, 1, 1), ("pool", 2, 2)), 8, 2),                       # pool out
    ((8, 7, 7), (("conv", 8, 1, 1, 0), ("pool", 2, 2), ("dense", 3)), 8, 8),        # tight fusion
    ((3, 7, 7), (("conv", 8, 2, 2, 0), ("conv", 5, 1, 1, 0), ("dense", 3)), 16, 2),  # pe > simd
    ((16, 3, 3), (("conv", 16, 3, 1, 1), ("pool", 3, 1), ("dense", 4)), 2, 16),      # simd > pe
]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("in_shape,spec,pe,simd", CASES)
def test_random_network_matches_golden(in_shape, spec, pe, simd, seed):
    net = random_network(seed, in_shape, spec)
    x = random_input(seed, net, 2)
    y, cycles = run_pysim(net, x, pe, simd)
    assert np.array_equal(y, golden.run_integer(net, x))
    assert cycles[0] == cycles[1] == predict_cycles(net, pe, simd)


def test_pool_stage_without_fusion_matches_golden():
    net = random_network(3, (1, 8, 8), (("conv", 8, 3, 1, 1), ("pool", 2, 2), ("dense", 4)),
                         variety=0)                    # a max pool (fusable), plain convs
    x = random_input(3, net, 1)
    y, cycles = run_pysim(net, x, 4, 8, fuse_pools=False)
    assert np.array_equal(y, golden.run_integer(net, x))
    assert cycles[0] == predict_cycles(net, 4, 8, fuse_pools=False)
    assert cycles[0] > predict_cycles(net, 4, 8)      # fusion saves the pool stage


def _extreme_dense(w_value, x_value):
    """784 -> 4 dense, 8-bit weights all w_value, 8-bit inputs all x_value: the worst case."""
    n = 256
    ident = Thresholds(np.arange(-127, 128, dtype=np.float32)[None] - 0.5, [1], -128, 1)
    inq = InputQuantizer((n,), (n,), ident)           # raw -128..127 -> the same integer
    w = np.full((4, n), w_value)
    w[1] = -w_value
    layer = Dense("d", w, (n,), (4,), (-128, 127), 8, None)
    return IntegerNetwork(inq, (layer,), Dequant(np.ones(4), np.zeros(4)), (4,))


@pytest.mark.parametrize("w_value,x_value", [(-128, -128), (-128, 127), (127, -128)])
def test_extreme_weights_and_inputs_do_not_wrap(w_value, x_value):
    net = _extreme_dense(w_value, x_value)
    x = np.full((1, 256), x_value)
    y, _ = run_pysim(net, x, 4, 16, input_range=(-128, 127))
    want = golden.run_integer(net, x)
    assert np.array_equal(y, want)
    assert abs(int(want[0, 0])) == 256 * abs(w_value * x_value)


def test_cycle_model_and_efficiency_on_conv_net():
    """A conv net with >= 8 channels per layer: RTL cycles = model, within 1.25 x the MAC bound."""
    net = random_network(5, (1, 12, 12), (("conv", 8, 3, 1, 1), ("conv", 8, 3, 1, 1),
                                          ("pool", 2, 2), ("conv", 16, 3, 1, 1),
                                          ("dense", 10)), variety=0)    # no lowered stages
    x = random_input(5, net, 1)
    y, cycles = run_pysim(net, x, 8, 8)
    assert np.array_equal(y, golden.run_integer(net, x))
    pred = predict_cycles(net, 8, 8)
    assert abs(cycles[0] - pred) <= 0.05 * pred
    assert cycles[0] <= 1.25 * mac_bound_cycles(net, 8, 8)


from paths import TFC  # noqa: E402


def test_tfc_2w2a_one_image():
    from thresher import model_tools
    net = model_tools.load_model(str(TFC))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(1,) + net.input_shape)
    x[0, 0, :14] = 0                                   # some -1 inputs too
    y, cycles = run_pysim(net, x, 8, 8)
    assert np.array_equal(y, golden.run_integer(net, x))
    assert cycles[0] == predict_cycles(net, 8, 8)
    assert cycles[0] <= 1.25 * mac_bound_cycles(net, 8, 8)


def test_plan_rejects_bad_shapes():
    net = random_network(0, (1, 4, 4), (("dense", 4),))
    with pytest.raises(Exception, match="power of two"):
        Plan(net, 3, 4)
