"""Residual networks (graphs with adds and branches) on the overlay, bit for bit.

The plan gives every stored tensor a region of the feature RAM held until its last reader has run
(``Plan._allocate``), a branch reads its source's region, and an :class:`~model_tools.ir.Add` runs
as a channelwise stage of two taps (lanes over channels; tap 0 reads one input's region, tap 1 the
other's).
Every network here runs through the whole accelerator in Amaranth's simulator
(``sim.run.run_pysim``) against ``golden.run_integer`` with ``np.array_equal``, and the RTL cycle
counter must equal ``hw.plan.predict_cycles``. Hand-built IR graphs (``residual_graphs``) cover the
identity and the 1x1 stride-2 downsampling shortcut, power-of-two shifts between the branches, an
add as the last layer (raw sums out), the input quantizer's output as a branch source, and several
PE x SIMD shapes with channel counts that are not multiples of the lanes; Brevitas residual blocks
come from ``tests/model_tools/test_residual.py``'s builders and exporter.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

from residual_graphs import graph_network
from thresher.hw.plan import Plan, mac_bound_cycles, predict_cycles
from thresher.hw.images import weight_lanes
from thresher.hw.resources import estimate_resources
from thresher.model_tools import golden
from thresher.model_tools.ir import Add
from thresher.model_tools.netgen import random_input, random_network
from thresher.sim.run import run_pysim

IDENTITY = ((4, 6, 6), (("conv", 4, 3, 1, 1), ("conv", 4, 3, 1, 1), ("conv", 4, 3, 1, 1),
                        ("add", 2, 0), ("dense", 5)))
DOWNSAMPLE = ((3, 8, 8), (("conv", 6, 3, 1, 1), ("conv", 8, 3, 2, 1), ("conv", 8, 3, 1, 1),
                          ("conv", 8, 1, 2, 0, 0), ("add", 2, 3), ("dense", 5)))

CASES = [
    # (in_shape, spec, pe, simd)
    IDENTITY + (4, 4),
    IDENTITY + (2, 8),                                                   # simd > pe
    DOWNSAMPLE + (4, 4),
    DOWNSAMPLE + (8, 2),                                                 # pe > simd
    ((5, 6, 6), (("conv", 5, 3, 1, 1), ("conv", 5, 3, 1, 1), ("add", 1, 0, (2, 0)),
                 ("conv", 6, 3, 2, 1), ("dense", 4)), 4, 4),             # 5 channels, shift a
    ((4, 5, 5), (("conv", 6, 3, 1, 1), ("conv", 6, 1, 1, 0), ("add", 0, 1, (0, 3)),
                 ("pool", 2, 2), ("dense", 3)), 2, 4),                   # shift b, pool after add
    ((4, 6, 6), (("conv", 4, 3, 1, 1), ("add", 0, -1), ("conv", 6, 3, 2, 1),
                 ("conv", 6, 3, 1, 1), ("add", 3, 2, (1, 0), False)), 4, 2),  # input source, add last
    ((2, 4, 4), (("conv", 3, 3, 1, 1), ("conv", 3, 3, 1, 1), ("add", 0, 1),
                 ("conv", 3, 3, 1, 1, 0), ("add", 3, 2), ("dense", 3)), 2, 2),  # 0 read 3 times
]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("in_shape,spec,pe,simd", CASES)
def test_residual_graph_matches_golden(in_shape, spec, pe, simd, seed):
    net = graph_network(seed, in_shape, spec)
    assert not net.is_chain and any(isinstance(layer, Add) for layer in net.layers)
    x = random_input(seed, net, 2)
    y, cycles = run_pysim(net, x, pe, simd)
    assert np.array_equal(y, golden.run_integer(net, x))
    assert cycles[0] == cycles[1] == predict_cycles(net, pe, simd)


def _check_allocation(plan):
    """No two feature maps alive at once share a region, every read finds what its source's
    stage wrote, and the RAM holds exactly the regions used."""
    R = plan.region_words
    region = {-1: plan.stages[0].in_base}
    last = {}
    for k, s in enumerate(plan.stages):
        for t in s.reads:
            last[t] = k
    live = {-1}
    used = {region[-1]}
    for k, s in enumerate(plan.stages):
        assert s.in_base == region[s.reads[0]] and s.in_base2 == region[s.reads[-1]]
        assert all(t in live for t in s.reads)
        if not s.to_output:
            assert s.out_base not in {region[t] for t in live}
            assert s.out_base % R == 0 and s.out_base + R <= plan.feature_depth
            region[s.writes] = s.out_base
            live.add(s.writes)
            used.add(s.out_base)
        live = {t for t in live if last.get(t, -1) > k or k == len(plan.stages) - 1}
    assert len(used) == plan.feature_regions == plan.feature_depth // R
    assert plan.peak_live_words <= plan.feature_depth


@pytest.mark.parametrize("in_shape,spec,pe,simd", CASES)
def test_feature_regions_by_liveness(in_shape, spec, pe, simd):
    plan = Plan(graph_network(0, in_shape, spec), pe, simd)
    _check_allocation(plan)
    budget = plan.feature_budget
    assert budget["words"] == budget["regions"] * budget["region_words"] == plan.feature_depth
    assert budget["bits"] == plan.feature_depth * plan.V * plan.feat_width


@pytest.mark.parametrize("spec", [(("conv", 8, 3, 1, 1), ("pool", 2, 2), ("conv", 8, 3, 1, 0),
                                   ("dense", 10)),
                                  (("conv", 4, 3, 1, 1), ("conv", 6, 3, 1, 1), ("pool", 2, 2))])
def test_chains_keep_the_ping_pong_layout(spec):
    """A chain's stages alternate between two regions of the largest map, as before graphs."""
    for fuse in (True, False):
        plan = Plan(random_network(0, (2, 8, 8), spec), 4, 4, fuse_pools=fuse)
        _check_allocation(plan)
        R = plan.region_words
        assert plan.feature_regions == 2 and plan.feature_depth == 2 * R
        for k, s in enumerate(plan.stages):
            assert (s.in_base, s.out_base) == ((k % 2) * R, ((k + 1) % 2) * R)


def test_add_stage_is_channelwise_and_priced():
    """The add's stage: lanes over channels, two taps (one per input) a group, the weights
    ``2^ka, 2^kb`` in lane column 0 as the ROM holds them, accumulators wide enough for its
    exact range, and the estimate sees it."""
    net = graph_network(2, (5, 6, 6), (("conv", 5, 3, 1, 1), ("conv", 5, 3, 1, 1),
                                       ("add", 1, 0, (3, 0)), ("dense", 4)))
    add = net.layers[2]
    plan = Plan(net, 4, 4)
    s = plan.stages[2]
    assert s.add and s.channelwise and s.source is add and s.loops == (2, 1, 1, 2)
    assert s.issue_cycles == 36 * 2 * 2                 # pixels x groups x taps
    rom = weight_lanes(plan, s).reshape(2, 2, 4, 4)    # (group, tap, pe, simd)
    assert not rom[..., 1:].any()
    w = rom[..., 0].transpose(0, 2, 1).reshape(8, 2)[:5]   # (channel, input)
    ka, kb = add.shifts
    assert np.array_equal(w, np.tile([1 << ka, 1 << kb], (5, 1)))
    assert s.weight_width >= (1 << ka).bit_length() + 1
    assert s.acc_bound[0] <= add.acc_range[0] and s.acc_bound[1] >= add.acc_range[1]
    assert plan.acc_width >= add.acc_bits
    need = estimate_resources(net, 4, 4, "ulx3s-85f")
    assert need and all(v["used"] >= 0 for v in need.values())


def test_input_read_by_a_branch_is_stored_in_the_feature_ram():
    """A first conv on 3 channels would be im2col (input in its tap memories only); when a later
    layer reads the input too, the first conv runs as a regular stage on the feature RAM."""
    net = graph_network(0, (3, 6, 6), (("conv", 3, 3, 1, 1), ("add", 0, -1), ("dense", 3)))
    assert Plan(graph_network(0, (3, 6, 6), (("conv", 3, 3, 1, 1), ("dense", 3))), 4, 4).im2col
    plan = Plan(net, 4, 4)
    assert not plan.im2col and plan.stages[1].in_base2 == plan.stages[0].in_base
    x = random_input(0, net, 2)
    y, cycles = run_pysim(net, x, 4, 4)
    assert np.array_equal(y, golden.run_integer(net, x))
    assert cycles[0] == cycles[1] == plan.predict_cycles()


def test_resnet_like_graph_cycles_against_mac_bound():
    """Stem, an identity block and a downsampling block: RTL = model, and the cycles the lowered
    adds cost on top of the MAC bound are exactly their stages' issue cycles."""
    spec = (("conv", 8, 3, 1, 1), ("conv", 8, 3, 1, 1), ("conv", 8, 3, 1, 1), ("add", 2, 0),
            ("conv", 16, 3, 2, 1), ("conv", 16, 3, 1, 1), ("conv", 16, 1, 2, 0, 3), ("add", 5, 6),
            ("dense", 10))
    net = graph_network(4, (8, 8, 8), spec)
    x = random_input(4, net, 1)
    y, cycles = run_pysim(net, x, 8, 8)
    assert np.array_equal(y, golden.run_integer(net, x))
    plan = Plan(net, 8, 8)
    assert cycles[0] == plan.predict_cycles()
    adds = sum(s.issue_cycles for s in plan.stages if s.add)
    assert adds > 0 and plan.predict_cycles() - adds <= 1.25 * mac_bound_cycles(net, 8, 8)


# -- Brevitas residual blocks (exported; activation scales nudged off float32 ties) ---------------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model_tools"))
import test_residual as tr  # noqa: E402


@pytest.mark.parametrize("name,pe,simd", [("identity_shortcut_shared_quant", 4, 4),
                                          ("downsample_1x1_stride2", 4, 8),
                                          ("power_of_two_scale_ratio", 2, 4),
                                          pytest.param("resnet8_small", 8, 8,
                                                       marks=pytest.mark.slow)])
def test_brevitas_residual_block_on_the_overlay(name, pe, simd, tmp_path):
    from thresher.model_tools import load_model
    build, shape = tr.CASES[name]
    net = load_model(tr._export(build, shape, tmp_path, name, 0))
    adds = [layer for layer in net.layers if isinstance(layer, Add)]
    assert adds and (name != "power_of_two_scale_ratio" or adds[0].shifts != (0, 0))
    x = tr._pixels(7, shape, 2)
    y, cycles = run_pysim(net, x, pe, simd)
    assert np.array_equal(y, golden.run_integer(net, x))
    assert cycles[0] == cycles[1] == predict_cycles(net, pe, simd)


def test_plan_memories_are_the_designs_for_a_residual_graph():
    """What the estimate prices from the plan (the deeper feature RAM, the add stages' weights in
    the weight ROM) is exactly what the elaborated accelerator and bridge hold."""
    from thresher.hw.memories import accelerator_memories
    in_shape, spec = DOWNSAMPLE
    net = graph_network(1, in_shape, spec)
    plan = Plan(net, 4, 4)
    assert plan.feature_regions == 3            # the block input lives across the branch

    def key(spec):
        return (spec.name, spec.width, spec.depth, spec.writes, spec.reads, spec.transparent,
                spec.async_reads, spec.attrs, spec.used, spec.kept_lanes())
    for pe, simd in [(4, 4), (2, 8)]:
        fast = accelerator_memories(net, pe, simd, "icebreaker")
        real = accelerator_memories(net, pe, simd, "icebreaker", elaborate=True)
        assert sorted(key(m.spec) for m in fast) == sorted(key(m.spec) for m in real)
        assert sorted((m.name, m.lcs) for m in fast) == sorted((m.name, m.lcs) for m in real)
        fmem = next(m.spec for m in fast if m.name.endswith("core.fmem"))
        assert fmem.depth == Plan(net, pe, simd).feature_depth


@pytest.mark.slow
def test_residual_graph_under_verilator():
    """One residual graph (downsampling block, then an identity add as the last layer) through
    the generated Verilog under Verilator: golden outputs, cycle model, back-pressure."""
    from thresher.sim.verilator import run_verilator
    spec = DOWNSAMPLE[1][:-1] + (("conv", 8, 3, 1, 1), ("add", 5, 4, (0, 1), False))
    net = graph_network(5, DOWNSAMPLE[0], spec)
    x = random_input(6, net, 8)
    y, cycles = run_verilator(net, x, 4, 2)
    assert np.array_equal(y, golden.run_integer(net, x))
    assert cycles.tolist() == [predict_cycles(net, 4, 2)] * 8
    y, cycles = run_verilator(net, x, 4, 2, stall=0.4, seed=1)
    assert np.array_equal(y, golden.run_integer(net, x))
