"""Grouped / depthwise convolutions and average pools on the overlay, bit for bit.

A depthwise conv and an average pool's window sum run as channelwise stages (lanes over
channels: PE channels a cycle, one tap a cycle); a grouped conv that mixes channels runs as the
dense conv with zero cross-group weights (``hw.plan.lower_layer``), thresholds unchanged. These
tests run such networks through the whole accelerator in Amaranth's simulator
(``sim.run.run_pysim``) against ``golden.run_integer`` with ``np.array_equal``, on arrays with
PE below, equal to and above SIMD (a feature word holds several PE groups, one, or a part of
one), and check the RTL cycle counter against ``hw.plan.predict_cycles``.
"""

import numpy as np
import pytest

from thresher.hw.images import weight_lanes
from thresher.hw.plan import Plan, lower_layer, predict_cycles
from thresher.hw.resources import estimate_resources
from thresher.model_tools import golden
from thresher.model_tools.ir import AvgPool, Conv, Dequant, InputQuantizer, IntegerNetwork, Thresholds
from thresher.model_tools.netgen import random_input, random_network
from thresher.sim.run import run_pysim

CASES = [
    # (in_shape, spec, pe, simd)
    ((4, 6, 6), (("gconv", 4, 3, 1, 1, 4), ("dense", 5)), 4, 4),                  # depthwise
    ((1, 7, 7), (("conv", 4, 3, 1, 1), ("gconv", 8, 3, 2, 1, 4),                   # multiplier 2
                 ("gconv", 4, 1, 1, 0, 2), ("dense", 3)), 4, 2),                   # 1 < g < C
    ((2, 6, 6), (("conv", 4, 3, 1, 1), ("gconv", 6, 3, 1, 0, 2)), 2, 4),          # grouped out
    ((2, 8, 8), (("conv", 4, 3, 1, 1), ("avgpool", 2, 2), ("dense", 4)), 4, 4),
    ((4, 7, 7), (("conv", 4, 1, 1, 0), ("avgpool", 3, 2), ("conv", 4, 3, 1, 1),
                 ("pool", 3, 3)), 4, 8),                                            # avg mid, max out
    ((2, 6, 6), (("conv", 8, 3, 1, 1), ("avgpool", 6, 1)), 8, 2),                  # global sum out
    ((6, 7, 7), (("gconv", 6, 3, 2, 1, 6), ("dense", 3)), 4, 8),                   # 2 groups a word
    ((4, 6, 6), (("conv", 12, 1, 1, 0), ("gconv", 12, 3, 1, 1, 12),
                 ("avgpool", 2, 2), ("dense", 3)), 2, 8),                           # 4 groups a word
    ((3, 6, 5), (("conv", 10, 3, 1, 1), ("gconv", 10, 3, 1, 1, 10), ("pool", 2, 2),
                 ("gconv", 10, 3, 2, 1, 10)), 8, 2),                                # PE > SIMD, raw out
]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("in_shape,spec,pe,simd", CASES)
def test_grouped_and_average_networks_match_golden(in_shape, spec, pe, simd, seed):
    net = random_network(seed, in_shape, spec, variety=0)
    kinds = {type(layer).__name__ + ("g" if getattr(layer, "groups", 1) > 1 else "")
             for layer in net.layers}
    assert kinds & {"Convg", "AvgPoolg"}, kinds        # the case really has the new kinds
    x = random_input(seed, net, 2)
    y, cycles = run_pysim(net, x, pe, simd)
    assert np.array_equal(y, golden.run_integer(net, x))
    assert cycles[0] == cycles[1] == predict_cycles(net, pe, simd)


def test_dscnn_stem_nonsquare_kernel_stride_asymmetric_pads():
    """DS-CNN's 10x4 stride-2 stem with TF-style asymmetric pads, then a depthwise 3x3 (a stride
    that differs per axis) and a global average: non-square everything through the RTL."""
    rng = np.random.default_rng(7)
    inq = InputQuantizer((1, 12, 8), (1, 12, 8),
                         Thresholds(np.sort(rng.uniform(0, 255, (1, 3))).astype(np.float32),
                                    [1], 0, 1))
    w0 = rng.integers(-8, 8, size=(4, 1, 10, 4))
    stem = Conv("stem", w0, (1, 12, 8), (4, 6, 4), (0, 3), 4, None, stride=(2, 2),
                pads=(4, 1, 5, 2))
    lo, hi = stem.acc_range
    t0 = Thresholds(np.sort(rng.integers(lo // 4, hi // 4, size=(4, 3)), axis=1), [1, -1, 1, 1],
                    0, 1)
    stem = Conv("stem", w0, (1, 12, 8), (4, 6, 4), (0, 3), 4, t0, stride=(2, 2), pads=(4, 1, 5, 2))
    w1 = rng.integers(-4, 4, size=(4, 1, 3, 3))
    dw = Conv("dw", w1, (4, 6, 4), (4, 6, 2), (0, 3), 3, None, stride=(1, 2), pads=(1, 1, 1, 0),
              groups=4)
    lo, hi = dw.acc_range
    t1 = Thresholds(np.sort(rng.integers(lo // 3, hi // 3, size=(4, 3)), axis=1), [1, 1, -1, 1],
                    0, 1)
    dw = Conv("dw", w1, (4, 6, 4), (4, 6, 2), (0, 3), 3, t1, stride=(1, 2), pads=(1, 1, 1, 0),
              groups=4)
    avg = AvgPool("gap", (4, 6, 2), (4, 1, 1), (6, 2), (1, 1), (0, 0, 0, 0), (0, 3), 12)
    net = IntegerNetwork(inq, (stem, dw, avg), Dequant(np.ones(4) / 12, np.zeros(4)), (4, 1, 1))
    x = rng.integers(0, 256, size=(2, 1, 12, 8))
    y, cycles = run_pysim(net, x, 4, 4)
    want = golden.run_integer(net, x)
    assert np.array_equal(y, want)
    assert cycles[0] == cycles[1] == predict_cycles(net, 4, 4)


def test_lowering_is_exact_and_priced():
    """A grouped conv that mixes channels runs as the dense conv with zero cross-group weights:
    the same accumulators (golden on both), its weight ROM holds the zeros, the resource estimate
    sees them."""
    net = random_network(3, (4, 6, 6), (("gconv", 8, 3, 1, 1, 4), ("avgpool", 2, 2),
                                        ("dense", 3)), variety=0)
    grouped = net.layers[0]
    a = np.random.default_rng(0).integers(-3, 4, size=(5, 4, 6, 6))
    assert np.array_equal(grouped.accumulate(a), lower_layer(grouped).accumulate(a))
    plan = Plan(net, 4, 4)
    stage0 = plan.stages[0]
    assert stage0.source is grouped and stage0.layer.groups == 1 and not stage0.channelwise
    assert stage0.loops == (2, 3, 3, 1)
    rom = weight_lanes(plan, stage0)
    assert int((rom != 0).sum()) == int((grouped.weights != 0).sum())     # the zeros are stored
    assert rom.shape[0] * rom.shape[1] == 8 * 9 * 4
    need = estimate_resources(net, 4, 4, "ulx3s-85f")
    assert need and all(v["used"] >= 0 for v in need.values())


@pytest.mark.parametrize("pe,simd", [(4, 4), (2, 8), (8, 2)])
def test_channelwise_stages_keep_every_lane_busy(pe, simd):
    """A depthwise conv and a window sum are channelwise stages: PE channels and one tap a cycle
    (``pixels * ceil(C / PE) * kh * kw`` cycles, the MACs over PE when PE divides C), their
    weights in lane column 0 only, the depthwise weights themselves, the window sum's ones."""
    net = random_network(4, (8, 6, 6), (("gconv", 8, 3, 1, 1, 8), ("avgpool", 2, 2),
                                        ("dense", 3)), variety=0)
    dw, avg = net.layers[0], net.layers[1]
    assert dw.depthwise and dw.channel_weights().shape == (8, 9)
    plan = Plan(net, pe, simd)
    s0, s1 = plan.stages[0], plan.stages[1]
    assert s0.channelwise and s1.channelwise and s0.layer is dw and s1.layer is avg
    assert s0.loops == (8 // pe, 3, 3, 1) and s1.loops == (8 // pe, 2, 2, 1)
    assert s0.issue_cycles * pe == dw.macs and s1.issue_cycles * pe == avg.macs
    for stage, want in ((s0, dw.weights.reshape(8, 9)), (s1, np.ones((8, 4), dtype=np.int64))):
        rom = weight_lanes(plan, stage).reshape(8 // pe, -1, pe, simd)
        assert not rom[..., 1:].any()
        got = rom[..., 0].transpose(0, 2, 1).reshape(8, -1)
        assert np.array_equal(got, want)
