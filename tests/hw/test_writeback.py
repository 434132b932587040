"""WriteBack: who writes the feature RAM and the output RAM, and the fused max pool."""

import numpy as np
import pytest
from amaranth import Module, unsigned
from amaranth.hdl import Const
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from thresher.hw.plan import Plan
from thresher.hw.window import tag_layout
from thresher.hw.writeback import WriteBack
from thresher.model_tools.netgen import random_network

SPEC = (("conv", 8, 3, 1, 1), ("pool", 2, 2), ("dense", 3))


def _plan(fuse_pools):
    plan = Plan(random_network(0, (8, 4, 4), SPEC), 4, 8, fuse_pools=fuse_pools)
    assert plan.V == 8 and not plan.im2col and plan.output_mode == "acc"
    return plan


def _tag(plan, **fields):
    layout = tag_layout(plan)
    return Const.cast(layout.const({f: fields.get(f, 0) for f in layout.members})).value


def _unpack(word, lanes, width):
    return [(word >> (k * width)) & ((1 << width) - 1) for k in range(lanes)]


def _sim(dut, body):
    """Run ``body(ctx, out)`` on ``dut`` (with its pool buffer, if it has one); returns out."""
    plan, out = dut.plan, []
    m = Module()
    m.submodules.dut = dut
    if plan.pool_buffer_depth:
        m.submodules.pbuf = pbuf = Memory(shape=unsigned(plan.pe * plan.feat_width),
                                          depth=plan.pool_buffer_depth, init=[])
        wr = pbuf.write_port()
        wiring.connect(m, dut.pbuf_rd, pbuf.read_port(transparent_for=(wr,)))
        wiring.connect(m, dut.pbuf_wr, wr)

    async def testbench(ctx):
        await body(ctx, out)

    sim = Simulator(m)
    sim.add_clock(1e-8, if_exists=True)      # no clock without a pool buffer: all combinational
    sim.add_testbench(testbench)
    sim.run()
    return out


def test_fused_pool_keeps_the_running_maximum():
    """A 2 x 4 conv row pair pooled 2 x 2 into two pixels, beats back to back as the window
    generator issues them: the pool buffer holds the running maximum of each pooled pixel and
    only the window's last pixel writes the feature RAM; a skipped pixel writes nothing."""
    plan = _plan(True)
    assert plan.stages[0].pool == (2, 2)
    dut = WriteBack(plan)
    F, pe = plan.feat_width, plan.pe
    rng = np.random.default_rng(0)
    lo, hi = plan.stages[0].layer.activation.out_range
    # conv pixels (row, col) -> pooled pixel col // 2, in walk order, then one skipped pixel
    pixels = [(r, c) for r in range(2) for c in range(4)]
    beats = []
    for r, c in pixels:
        beats.append((rng.integers(lo, hi + 1, size=pe).tolist(),
                      dict(pbaddr=c // 2, pfirst=int(r == 0 and c % 2 == 0),
                           plast=int(r == 1 and c % 2 == 1), oaddr=5 + c // 2, olane=4)))
    beats.append(([hi] * pe, dict(pbaddr=0, pskip=1, oaddr=5)))

    async def body(ctx, out):
        ctx.set(dut.acc.payload.tag, _tag(plan, **beats[0][1]))   # the pool buffer read leads
        await ctx.tick()
        for n, (values, fields) in enumerate(beats):
            nxt = beats[n + 1][1] if n + 1 < len(beats) else {}
            ctx.set(dut.acc.payload.tag, _tag(plan, **nxt))
            ctx.set(dut.act.valid, 1)
            ctx.set(dut.act.payload, {"value": values, "tag": _tag(plan, **fields)})
            en = ctx.get(dut.feature.en)
            if en:
                out.append((ctx.get(dut.feature.addr), en, ctx.get(dut.feature.data)))
            await ctx.tick()
        ctx.set(dut.act.valid, 0)

    got = _sim(dut, body)
    want = []
    for p in range(2):
        window = [v for v, f in beats[:-1] if f["pbaddr"] == p]
        best = np.max(window, axis=0)
        want.append((5 + p, 0xF << 4, [int(v) & ((1 << F) - 1) for v in best]))
    assert [(a, en, _unpack(d, 8, F)[4:]) for a, en, d in got] == want


def test_writers_and_their_priority():
    plan = _plan(False)
    s_conv, s_pool, s_dense = plan.stages
    assert s_pool.kind == "pool" and s_dense.to_output and s_dense.levels == 0
    dut = WriteBack(plan)
    F, OW, pe, simd = plan.feat_width, plan.out_width, plan.pe, plan.simd

    async def body(ctx, out):
        def writes():
            return (ctx.get(dut.feature.addr), ctx.get(dut.feature.en),
                    _unpack(ctx.get(dut.feature.data), 8, F),
                    ctx.get(dut.out.en), ctx.get(dut.out.addr),
                    _unpack(ctx.get(dut.out.data), pe, OW))
        # the activations of a MAC stage: pe lanes at olane
        ctx.set(dut.act.valid, 1)
        ctx.set(dut.act.payload, {"value": [1, 0, 1, 1],
                                  "tag": _tag(plan, stage=s_conv.index, oaddr=3, olane=4)})
        out.append(writes())
        # the loader first
        ctx.set(dut.load.valid, 1)
        ctx.set(dut.load.payload, {"addr": 7, "data": (1 << (2 * F)), "en": 0b100})
        out.append(writes())
        ctx.set(dut.load.valid, 0)
        ctx.set(dut.act.valid, 0)
        # the max-pool unit: simd lanes
        ctx.set(dut.pool.valid, 1)
        ctx.set(dut.pool.payload, {"value": [k % 3 - 1 for k in range(simd)],
                                   "tag": _tag(plan, stage=s_pool.index, oaddr=2)})
        out.append(writes())
        ctx.set(dut.pool.valid, 0)
        # the last stage's accumulators, to the output RAM
        ctx.set(dut.acc.valid, 1)
        ctx.set(dut.acc.payload, {"acc": [-1, 2, -3, 4],
                                  "tag": _tag(plan, stage=s_dense.index, oaddr=0)})
        out.append(writes())

    got = _sim(dut, body)
    mask = (1 << F) - 1
    assert got[0][:3] == (3, 0xF << 4, [1, 0, 1, 1] * 2) and got[0][3] == 0
    assert got[1][:3] == (7, 0b100, [0, 0, 1, 0, 0, 0, 0, 0])
    assert got[2][:3] == (2, 0xFF, [(k % 3 - 1) & mask for k in range(simd)])
    assert plan.out_depth == 1                                 # one word: 3 outputs on 4 lanes
    assert got[3][1] == 0 and got[3][3:] == (1, 0, [v & ((1 << OW) - 1) for v in (-1, 2, -3, 4)])


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_writeback_needs_a_plan():
    with pytest.raises(TypeError, match="Plan"):
        WriteBack(None)
