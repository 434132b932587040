"""Resource decisions made in Python: memory styles, stored widths, DSP lanes, the estimate and the
arrays a build tries (no synthesis; the measured points are in docs/calibration)."""

import itertools
import json
import math

import pytest
from paths import CHECKOUT, DEFAULT, TFC
from thresher import model_tools
from thresher.hw.accelerator import Accelerator, pack_shift
from thresher.hw.devices import BLOCK_RAM, LOGIC, bram_blocks, memory_style
from thresher.hw.plan import Plan
from thresher.hw.resources import (
    FEATURES,
    LOGIC_MARGIN,
    array_candidates,
    choose_parallelism,
    estimate_memories,
    estimate_resources,
    fit_logic_model,
    logic_features,
)
from thresher.model_tools.errors import ThresherError
from thresher.model_tools.netgen import small_cnn


def test_memory_style_puts_shallow_wide_roms_in_logic():
    assert memory_style(184, 6, rom=True) == LOGIC           # the default model's threshold ROM
    assert memory_style(128, 136, rom=True) == BLOCK_RAM      # its weight ROM at 4 x 8
    assert memory_style(48, 3, rom=False) == LOGIC            # a 3-word output RAM
    assert memory_style(16, 256, rom=False) == BLOCK_RAM


def test_bram_blocks_as_yosys_maps_them():
    assert bram_blocks(16, 256) == 1 and bram_blocks(8, 784) == 2 and bram_blocks(1, 2048) == 1
    assert bram_blocks(20, 768) == 4                          # stacked into spare bits, not 5
    assert bram_blocks(36, 512, "ecp5") == 1 and bram_blocks(72, 600, "ecp5") == 4
    with pytest.raises(ValueError, match="family"):
        bram_blocks(8, 8, "gowin")


def test_default_model_widths_and_dsp_lanes():
    net = model_tools.load_model(str(DEFAULT))
    plan = Plan(net, 4, 8)
    assert plan.im2col and plan.tap_width == 9 and plan.act_width == 9
    assert plan.feat_width == 3                               # later maps are 0..3
    acc = Accelerator(net, pe=4, simd=8)
    assert acc.dsp_lanes == 8 and acc.pack_shift == 12        # 16 of the 32 lanes on 8 DSPs
    assert Accelerator(net, pe=4, simd=8, dsp_lanes=0).dsp_lanes == 0


def test_small_products_never_use_dsps():
    net = model_tools.load_model(str(TFC))
    assert Accelerator(net, pe=8, simd=8).dsp_lanes == 0      # 2 x 2-bit products


def test_pack_shift_needs_room_in_16_bits():
    net = model_tools.load_model(str(DEFAULT))
    assert pack_shift(Plan(net, 4, 8)) == 12                  # |w| <= 7, a <= 255: |w a| < 2^11


# -- the estimate --------------------------------------------------------------------------------

def test_estimate_counts_block_ram_and_dsps_exactly():
    net = model_tools.load_model(str(DEFAULT))
    need = estimate_resources(net, 8, 4, "icebreaker")
    assert set(need) == {"ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_DSP"}
    assert need["ICESTORM_RAM"] == {"used": 22, "available": 30}     # what synthesis reports
    assert need["ICESTORM_DSP"] == {"used": 8, "available": 8}       # 16 lanes packed in 8
    rows = estimate_memories(net, 8, 4, "icebreaker")
    assert sum(r["brams"] for r in rows) == 22
    assert {r["style"] for r in rows} <= {"block", "logic", "none"}
    tfc = model_tools.load_model(str(TFC))
    assert estimate_resources(tfc, 8, 8, "ulx3s-85f")["MULT18X18D"]["used"] == 0


def test_logic_features_follow_the_hardware():
    net = model_tools.load_model(str(DEFAULT))
    f = logic_features(net, 4, 8, "icebreaker")
    assert set(f) == set(FEATURES) and f["base"] == 1
    # 16 of the 32 lanes on the 8 DSPs, the others shift-and-add: 3 adders of 4 + 9 bits
    assert f["lut_products"] == (32 - 16) * 3 * 13
    assert f["dsps"] == 8 and f["stages"] == 3                # conv + pool, conv, dense
    assert logic_features(net, 4, 8, "ulx3s-85f")["lut_products"] == 0   # 156 multipliers


def test_fit_recovers_a_linear_model():
    feats = [logic_features(small_cnn(s), pe, simd, "icebreaker")
             for s in range(4) for pe, simd in ((2, 4), (4, 4), (8, 8))]
    truth = {k: float(i + 1) for i, k in enumerate(FEATURES)}
    y = [sum(truth[k] * f[k] for k in FEATURES) for f in feats]
    coef = fit_logic_model(feats, y)
    assert all(v >= 0 for v in coef.values())
    for f, target in zip(feats, y):
        assert sum(coef[k] * f[k] for k in FEATURES) == pytest.approx(target, rel=1e-6)


@pytest.mark.parametrize("family", ["ice40", "ecp5"])
def test_estimate_within_the_measured_band(family):
    """The estimate against every calibration build (synthesis and nextpnr packing, see
    docs/calibration): within the band docs/architecture.md states for the family."""
    from thresher.sim.app.bench import calibration_network
    doc = json.loads((CHECKOUT / "docs" / "calibration" / f"{family}.json").read_text())
    board = doc["board"]
    logic, bram = {"ice40": ("ICESTORM_LC", "ICESTORM_RAM"),
                   "ecp5": ("TRELLIS_COMB", "DP16KD")}[family]
    errors = []
    for p in doc["points"]:
        need = estimate_resources(calibration_network(p["network"]), p["pe"], p["simd"], board)
        errors.append(need[logic]["used"] / p["packed"][logic] - 1)
        assert need[bram]["used"] == p["packed"].get(bram, 0), p
    assert max(abs(e) for e in errors) <= BAND[family]


#: the largest relative error of the logic estimate on the calibration builds (docs/architecture.md)
BAND = {"ice40": 0.22, "ecp5": 0.27}


# -- the arrays a build tries ----------------------------------------------------------------------

def test_candidates_fastest_that_fits_and_earns_its_lanes():
    net = small_cnn(3)
    arrays = array_candidates(net, "icebreaker")
    best = arrays[0]
    assert choose_parallelism(net, "icebreaker") == best

    priced = {}
    for pe in (1, 2, 4, 8, 16, 32, 64):
        for simd in (1, 2, 4, 8, 16, 32, 64):
            if pe * simd <= 64 and pe <= 64 and simd <= 64:
                try:
                    need = estimate_resources(net, pe, simd, "icebreaker")
                except ThresherError:
                    continue
                priced[pe, simd] = (Plan(net, pe, simd).predict_cycles(), need)

    def fits(a):
        need = priced[a][1]
        return (need["ICESTORM_LC"]["used"] <= LOGIC_MARGIN * 5280 and
                need["ICESTORM_RAM"]["used"] <= 30 and need["ICESTORM_DSP"]["used"] <= 8)

    def earns(a):
        return all(priced[a][0] <= priced[b][0] * 0.8 ** math.log2(a[0] * a[1] / (b[0] * b[1]))
                   for b in priced if b[0] * b[1] < a[0] * a[1])

    assert fits(best) and earns(best)
    assert all(priced[a][0] >= priced[best][0] * 0.98 for a in priced if fits(a) and earns(a))
    # the step-downs: each smaller and slower than the one before
    steps = [(priced[a][0], priced[a][1]["ICESTORM_LC"]["used"]) for a in arrays]
    for (c0, l0), (c1, l1) in itertools.pairwise(steps):
        assert l1 < l0 and c1 > c0


def test_larger_boards_are_never_slower():
    for seed in range(4):
        net = small_cnn(seed)
        small = Plan(net, *array_candidates(net, "icebreaker")[0]).predict_cycles()
        large = Plan(net, *array_candidates(net, "ulx3s-85f")[0]).predict_cycles()
        assert large <= small


def test_idle_lanes_do_not_come_first():
    """No first pick is wider than the network's layers (PE over the output channels, SIMD over
    a layer's inputs): those lanes would cost logic and save no cycles."""
    for seed in range(6):
        net = small_cnn(seed)
        pe, simd = array_candidates(net, "icebreaker")[0]
        assert pe <= max(l.out_channels for l in net.mac_layers)
        assert simd <= max(l.fan_in for l in net.mac_layers)


def test_logic_estimate_refuses_only_when_far_over():
    net = small_cnn(0)
    # nothing fits a margin of 10 %: the least-logic array is tried, packing decides
    only = array_candidates(net, "icebreaker", margin=0.1)
    assert len(only) == 1
    with pytest.raises(ThresherError, match=r"does not fit icebreaker .*ICESTORM_LC [\d,]+ "
                                            r"needed of 5,280"):
        array_candidates(net, "icebreaker", margin=0.1, refuse_over=0.1)


def test_wide_threshold_roms_in_logic_are_not_tried_first():
    """Six-bit activations (63 thresholds a channel) on 64 channels: at 16 x 4 or 8 x 8 the
    threshold word (11,000-22,000 bits) goes to logic, which fits the ECP5-85F's LUTs but did not
    route (docs/architecture.md); the arrays a build tries keep it in block RAM or narrow."""
    from thresher.hw.resources import MAX_LOGIC_THRESHOLD_BITS, _estimate, _threshold_rom_in_logic
    from thresher.model_tools.netgen import random_network
    net = random_network(0, (16, 16, 16), (("conv", 64, 3, 1, 1), ("conv", 64, 3, 1, 1),
                                           ("dense", 10)), act_kinds=("unsigned6",))
    for wide in ((16, 4), (8, 8)):
        need, memories = _estimate(net, *wide, "ulx3s-85f", (0, 255))
        assert _threshold_rom_in_logic(memories) > MAX_LOGIC_THRESHOLD_BITS
        assert all(v["used"] <= v["available"] for v in need.values())   # it would fit
    arrays = array_candidates(net, "ulx3s-85f")
    for pe, simd in arrays:
        _, memories = _estimate(net, pe, simd, "ulx3s-85f", (0, 255))
        assert _threshold_rom_in_logic(memories) <= MAX_LOGIC_THRESHOLD_BITS, (pe, simd)
