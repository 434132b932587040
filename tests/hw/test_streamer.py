"""OutputStreamer: the result map, read through a memory port, out in C order."""

import numpy as np
import pytest
from amaranth import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from thresher.hw.plan import Plan
from thresher.hw.streamer import OutputStreamer
from thresher.model_tools.netgen import random_network
from thresher.sim.streamsim import stream_get


def _signed(v, bits):
    return v - (1 << bits) if v >> (bits - 1) & 1 else v


def _expected(plan, streamer, words):
    """The values in C order of the output, from the memory image ``words``."""
    oc, oh, ow = plan.out_geom
    npix, L, W = oh * ow, streamer.lanes, streamer.lane_width
    out = []
    for c in range(oc):
        for p in range(npix):
            if plan.output_mode == "acc":
                addr = (c // plan.pe) * npix + p
            else:
                addr = plan.out_base + p * plan.stages[-1].out_words + c // plan.V
            out.append(_signed(words[addr] >> (c % L * W) & ((1 << W) - 1), W))
    return out


def _with_memory(plan, seed=0):
    """The streamer and the memory it reads, filled with random words."""
    dut = OutputStreamer(plan)
    depth = plan.out_depth if plan.output_mode == "acc" else plan.feature_depth
    rng = np.random.default_rng(seed)
    width = dut.lanes * dut.lane_width
    words = [int(rng.integers(0, 1 << 62)) & ((1 << width) - 1) for _ in range(depth)]
    m = Module()
    m.submodules.dut = dut
    m.submodules.mem = mem = Memory(shape=unsigned(width), depth=depth, init=words)
    wiring.connect(m, dut.rd, mem.read_port())
    return m, dut, _expected(plan, dut, words)


def _stream(plan, ready_rate, seed=0):
    m, dut, want = _with_memory(plan, seed)
    rng = np.random.default_rng(seed)
    runs = []

    async def testbench(ctx):
        for _ in range(2):                      # twice: start resets the walk
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            got, cycles = [], 0
            while True:
                ctx.set(dut.o.ready, int(rng.random() < ready_rate))
                fire = ctx.get(dut.o.valid) and ctx.get(dut.o.ready)
                if fire:
                    got.append(ctx.get(dut.o.payload))
                assert ctx.get(dut.busy)
                assert ctx.get(dut.done) == (fire and len(got) == plan.n_out)
                await ctx.tick()
                cycles += 1
                if len(got) == plan.n_out:
                    break
            assert not ctx.get(dut.busy) and not ctx.get(dut.o.valid)
            runs.append((got, cycles))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return runs, want


@pytest.mark.parametrize("in_shape,spec,pe,simd,mode", [
    ((8, 4, 4), (("conv", 8, 3, 1, 1), ("dense", 10)), 4, 8, "acc"),          # one pixel
    ((3, 5, 5), (("conv", 4, 3, 1, 1), ("conv", 6, 3, 1, 1)), 2, 4, "acc"),    # a conv map
    ((2, 6, 6), (("conv", 8, 3, 1, 1), ("pool", 2, 2)), 8, 2, "feature"),      # a pooled map
    ((16, 3, 3), (("conv", 16, 3, 1, 1), ("pool", 3, 1)), 2, 16, "feature"),   # V > pe
])
def test_streams_the_map_in_c_order(in_shape, spec, pe, simd, mode):
    plan = Plan(random_network(0, in_shape, spec), pe, simd)
    assert plan.output_mode == mode
    runs, want = _stream(plan, ready_rate=0.5)
    for got, _ in runs:
        assert got == want


def test_one_value_per_cycle_without_back_pressure():
    plan = Plan(random_network(0, (3, 5, 5), (("conv", 4, 3, 1, 1), ("conv", 6, 3, 1, 1))), 2, 4)
    m, dut, want = _with_memory(plan)
    got, busy_cycles = [], []

    async def testbench(ctx):
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for _ in range(plan.n_out):
            got.append(await stream_get(ctx, dut.o))
        await ctx.tick()

    async def count_busy(ctx):
        async for _, _, busy in ctx.tick().sample(dut.busy):
            busy_cycles.append(busy)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.add_process(count_busy)
    sim.run()
    assert got == want
    assert sum(busy_cycles) == plan.n_out + 1       # the read latency, then a beat a cycle


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_streamer_needs_a_plan():
    with pytest.raises(TypeError, match="Plan"):
        OutputStreamer(object())
