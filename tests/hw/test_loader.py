"""InputLoader: quantized input values land where the first stage reads them."""

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from thresher.hw.loader import InputLoader
from thresher.hw.plan import Plan
from thresher.model_tools import golden
from thresher.model_tools.ir import InputQuantizer, Thresholds
from thresher.model_tools.netgen import random_input, random_network
from thresher.sim.run import host_input
from thresher.sim.streamsim import stream_put


def _per_channel(net, levels, raw_range):
    """``net`` with a per-channel input quantizer (random directions)."""
    rng = np.random.default_rng(levels)
    c = net.input.in_shape[0]
    t = np.sort(rng.uniform(*raw_range, size=(c, levels)), axis=1).astype(np.float32)
    q = Thresholds(t, rng.choice([-1, 1], size=c), 0, 1)
    return dataclasses.replace(net, input=InputQuantizer(net.input.in_shape,
                                                         net.input.out_shape, q))


def _signed(v, bits):
    return v - (1 << bits) if v >> (bits - 1) & 1 else v


def _load(plan, samples):
    """Stream every sample into a fresh loader (``clear`` between them); returns, per sample, the
    memories as written ({(memory, addr, lane): value}) and the cycles from the last beat
    accepted to ``loaded``."""
    dut = InputLoader(plan)
    writes, waits = [], []
    if plan.im2col:
        ports = dut.taps
        lanes, width = plan.load_geom[0], plan.tap_width
    else:
        ports = [dut.o]
        lanes, width = plan.V, plan.feat_width

    async def testbench(ctx):
        ctx.set(dut.enable, 1)
        for sample in samples:
            writes.append({})
            for v in sample:
                await stream_put(ctx, dut.i, int(v))
            assert not ctx.get(dut.i.ready)                   # full: nothing more is taken
            n = 0
            while not ctx.get(dut.loaded):
                await ctx.tick()
                n += 1
            waits.append(n)
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            assert ctx.get(dut.i.ready) and not ctx.get(dut.loaded)

    async def monitor(ctx):
        fields = []
        for p in ports:
            if plan.im2col:
                fields += [p.addr, p.data, p.en]
            else:
                fields += [p.payload.addr, p.payload.data, p.payload.en, p.valid]
        async for _, _, *values in ctx.tick().sample(*fields):
            for j in range(len(ports)):
                if plan.im2col:
                    addr, word, en = values[3 * j:3 * j + 3]
                else:
                    addr, word, en, valid = values[4 * j:4 * j + 4]
                    en = en if valid else 0
                for k in range(lanes):
                    if en >> k & 1:
                        v = _signed(word >> (k * width) & ((1 << width) - 1), width)
                        writes[-1][(j, addr, k)] = v

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.add_process(monitor)
    sim.run()
    return writes, waits


def _expected(plan, q):
    """The writes the first stage expects for the quantized input ``q`` (C, H, W)."""
    s0 = plan.stages[0]
    want = {}
    C, H, W = q.shape
    if not plan.im2col:
        for c in range(C):
            for p in range(H * W):
                want[(0, s0.in_base + p * s0.in_words + c // plan.V, c % plan.V)] = \
                    int(q[c].reshape(-1)[p])
        return want
    kh, kw = s0.kernel
    (sh, sw), (pt, pl) = s0.stride, s0.pad_tl
    _, ho, wo = s0.conv_geom
    for y in range(kh):
        for x in range(kw):
            for oh in range(ho):
                for ow in range(wo):
                    h, w = oh * sh - pt + y, ow * sw - pl + x
                    if 0 <= h < H and 0 <= w < W:
                        for c in range(C):
                            want[(y * kw + x, oh * wo + ow, c)] = int(q[c, h, w])
    return want


@pytest.mark.parametrize("in_shape,spec,pe,simd,levels,per_channel,stage", [
    ((8, 4, 4), (("conv", 8, 3, 1, 1), ("dense", 3)), 4, 8, 255, False, "rom"),      # feature RAM
    ((8, 2, 2), (("conv", 8, 1, 1, 0), ("dense", 3)), 8, 2, 7, True, "rom"),         # V > simd
    ((20,), (("dense", 6), ("dense", 3)), 2, 8, 3, False, "compare"),                # dense
    ((3, 7, 7), (("conv", 8, 2, 2, 0), ("dense", 3)), 4, 4, 3, True, "compare"),     # im2col
    ((1, 6, 6), (("conv", 8, 3, 1, 1), ("dense", 4)), 4, 4, 7, False, "rom"),        # padding
])
def test_loader_writes_the_first_stage_layout(in_shape, spec, pe, simd, levels, per_channel,
                                              stage):
    raw_range = (-20, 40)
    net = random_network(0, in_shape, spec, input_levels=levels, raw_range=raw_range)
    if per_channel:
        net = _per_channel(net, levels, raw_range)
    plan = Plan(net, pe, simd, raw_range, input_stage=stage)
    x = random_input(1, net, 2, raw_range=raw_range)
    x.reshape(2, -1)[0, :2] = raw_range                       # both ends of the range
    writes, waits = _load(plan, host_input(net, x, input_range=raw_range))
    q = golden.quantize_input(net, x)
    for n in range(2):
        assert writes[n] == _expected(plan, q[n].reshape(plan.load_geom))
    assert waits == [2, 2]                # the two-cycle quantizer pipeline drains


def test_levels_mode_passes_levels_through():
    net = random_network(2, (8, 4, 4), (("conv", 8, 3, 1, 1), ("dense", 3)), input_levels=3)
    plan = Plan(net, 4, 8, input_mode="levels")
    x = np.random.default_rng(2).random((1,) + net.input_shape).astype(np.float32)
    writes, _ = _load(plan, host_input(net, x, input_mode="levels"))
    assert plan.input_stage == "none"
    assert writes[0] == _expected(plan, golden.quantize_input(net, x)[0].reshape(plan.load_geom))


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_loader_needs_a_plan():
    with pytest.raises(TypeError, match="Plan"):
        InputLoader("plan")
