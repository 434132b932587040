"""Input stages: the lookup ROM vs the comparator bank, and host-quantized levels mode."""

import dataclasses

import numpy as np
import pytest

from thresher.hw.images import input_level_image
from thresher.hw.plan import Plan, predict_cycles
from thresher.sim.run import run_pysim
from thresher.model_tools import golden
from thresher.model_tools.errors import ThresherError
from thresher.model_tools.ir import InputQuantizer, Thresholds
from thresher.model_tools.netgen import random_input, random_network

SMALL = ((3, 5, 5), (("conv", 4, 3, 1, 1), ("dense", 5)))


def _per_channel_input(net, rng, levels, raw_range, margin=3):
    """``net`` with a per-channel input quantizer (random directions, some thresholds outside)."""
    rng = np.random.default_rng(rng)
    c = net.input.in_shape[0]
    lo, hi = raw_range
    t = np.sort(rng.uniform(lo - margin, hi + margin, size=(c, levels)), axis=1)
    t = t.astype(np.float32)
    old = net.input.thresholds
    q = Thresholds(t, rng.choice([-1, 1], size=c), old.offset, old.step)
    return dataclasses.replace(net, input=InputQuantizer(net.input.in_shape,
                                                         net.input.out_shape, q))


def test_level_rom_image_matches_golden_quantizer():
    net = _per_channel_input(random_network(0, *SMALL, input_levels=7), 1, 7, (-20, 40))
    plan = Plan(net, 2, 4, (-20, 40), input_stage="rom")
    width, words = input_level_image(plan)
    raw = np.arange(-20, 41)
    x = np.broadcast_to(raw[None, None, :, None], (1, 3, raw.size, 1)).astype(np.float32)
    t = net.input.thresholds
    want = golden.apply_thresholds(t, x)[0, :, :, 0]          # (channels, raw values) levels
    got = t.offset + t.step * np.array(words).reshape(3, raw.size)
    assert width == 3 and np.array_equal(got, want)


def test_auto_input_stage_picks_the_smaller():
    eight_bit = random_network(0, *SMALL, input_levels=255)
    assert Plan(eight_bit, 2, 4).input_stage == "rom"
    two_bit = random_network(0, *SMALL, input_levels=3)
    assert Plan(two_bit, 2, 4).input_stage == "compare"
    costs = Plan(eight_bit, 2, 4).input_stage_costs()
    assert costs["rom"] < costs["compare"]
    huge = Plan(eight_bit, 2, 4, (-100_000, 100_000))          # too deep for a ROM
    assert huge.input_stage == "compare"


@pytest.mark.parametrize("stage,raw_range,levels", [
    ("rom", (0, 255), 255), ("rom", (-20, 40), 7), ("compare", (-20, 40), 7)])
def test_input_stages_match_golden(stage, raw_range, levels):
    net = random_network(2, *SMALL, input_levels=levels, raw_range=raw_range)
    if levels == 7:
        net = _per_channel_input(net, 3, levels, raw_range)
    x = random_input(2, net, 2, raw_range=raw_range)
    x[0, :, 0, :] = raw_range[0]                              # both ends of the range
    x[1, :, -1, :] = raw_range[1]
    y, cycles = run_pysim(net, x, 2, 4, input_range=raw_range, input_stage=stage)
    assert np.array_equal(y, golden.run_integer(net, x))
    assert cycles == [predict_cycles(net, 2, 4, raw_range)] * 2


@pytest.mark.parametrize("seed,in_shape,spec,pe,simd", [
    (4, (1, 6, 6), (("conv", 8, 3, 1, 1), ("dense", 10)), 4, 4),                   # im2col
    (5, (8, 4, 4), (("conv", 8, 3, 1, 1), ("pool", 2, 2), ("dense", 3)), 4, 8),
    (6, (20,), (("dense", 6), ("dense", 3)), 2, 8),
])
def test_levels_mode_float_inputs_match_golden(seed, in_shape, spec, pe, simd):
    """Floats in [0, 1] can only go through the host quantizer: levels mode."""
    net = random_network(seed, in_shape, spec, input_levels=3)
    net = _per_channel_input(net, seed, 3, (0, 1), margin=0)
    rng = np.random.default_rng(seed)
    x = rng.random((2,) + net.input_shape).astype(np.float32)
    with pytest.raises(ThresherError, match="integer"):
        run_pysim(net, x, pe, simd)
    y, cycles = run_pysim(net, x, pe, simd, input_mode="levels")
    assert np.array_equal(y, golden.run_integer(net, x))
    assert cycles == [predict_cycles(net, pe, simd, input_mode="levels")] * 2
    plan = Plan(net, pe, simd, input_mode="levels")
    assert plan.input_stage == "none" and plan.in_thresholds is None


def test_bad_input_mode_and_stage():
    net = random_network(0, *SMALL)
    with pytest.raises(ThresherError, match="input_mode"):
        Plan(net, 2, 4, input_mode="float")
    with pytest.raises(ThresherError, match="input_stage"):
        Plan(net, 2, 4, input_stage="lut")


from paths import DEFAULT  # noqa: E402


def test_default_model_rom_input_one_image():
    from thresher import model_tools
    net = model_tools.load_model(str(DEFAULT))
    plan = Plan(net, 4, 8)
    assert plan.input_stage == "rom" and net.input.integer_thresholds(0, 255).levels == 255
    x = np.random.default_rng(1).integers(0, 256, size=(1,) + net.input_shape)
    y, cycles = run_pysim(net, x, 4, 8)
    assert np.array_equal(y, golden.run_integer(net, x))
    assert cycles[0] == plan.predict_cycles()
