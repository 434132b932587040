"""The window generator against numpy windows: stride, padding, channel groups, im2col masks."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from thresher.hw.plan import Plan
from thresher.sim.streamsim import stream_get
from thresher.hw.window import WindowGenerator
from thresher.model_tools.netgen import random_network


def _commands(plan):
    dut = WindowGenerator(plan, gap=2)
    n = sum(s.issue_cycles for s in plan.stages)
    cmds = []

    async def tb(ctx):
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for _ in range(n):
            p = await stream_get(ctx, dut.o)
            cmds.append({f: int(getattr(p, f)) for f in
                         ("stage", "addr", "sub", "chunk", "mask", "waddr", "group", "first",
                          "last", "oaddr", "olane")})
        await ctx.tick().repeat(4)
        assert not ctx.get(dut.busy)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return cmds


def _memory_image(plan, stage, x):
    """The stage's input (C, H, W) as the feature RAM holds it: {word: [V lanes]}."""
    C, H, W = stage.in_geom
    mem = {}
    for c in range(C):
        for p in range(H * W):
            word = stage.in_base + p * stage.in_words + c // plan.V
            mem.setdefault(word, [None] * plan.V)[c % plan.V] = int(x[c].ravel()[p])
    return mem


def _padded_windows(stage, x):
    C, H, W = stage.in_geom
    kh, kw = stage.kernel
    sh, sw = stage.stride
    pt, pl = stage.pad_tl
    _, ho, wo = stage.conv_geom
    big = np.zeros((C, H + kh + pt + sh * ho, W + kw + pl + sw * wo), dtype=np.int64)
    big[:, pt:pt + H, pl:pl + W] = x
    return np.array([[big[:, oh * sh:oh * sh + kh, ow * sw:ow * sw + kw].transpose(1, 2, 0)
                      for ow in range(wo)] for oh in range(ho)])   # (ho, wo, kh, kw, C)


@pytest.mark.parametrize("in_shape,spec,pe,simd", [
    ((8, 7, 6), (("conv", 8, 3, 2, 1), ("conv", 4, 3, 1, 1), ("dense", 3)), 4, 8),
    ((8, 5, 5), (("conv", 16, 3, 1, 2), ("pool", 2, 2), ("dense", 3)), 8, 4),
    ((12, 6, 6), (("conv", 5, 2, 2, 0), ("dense", 3)), 2, 4),
])
def test_regular_windows_match_numpy(in_shape, spec, pe, simd):
    net = random_network(0, in_shape, spec)
    plan = Plan(net, pe, simd)
    assert not plan.im2col
    cmds = _commands(plan)
    rng = np.random.default_rng(0)
    pos = 0
    for stage in plan.stages:
        C, H, W = stage.in_geom
        x = rng.integers(1, 100, size=(C, H, W))          # 0 never occurs: padding is visible
        mem = _memory_image(plan, stage, x)
        ng, kh, kw, nc = stage.loops
        mine = cmds[pos:pos + stage.issue_cycles]
        pos += stage.issue_cycles
        assert all(c["stage"] == stage.index for c in mine)
        gathered, k = [], 0
        for _ in range(stage.pixels):
            for g in range(ng):
                lanes = []
                for t in range(kh * kw * nc):
                    c = mine[k]
                    k += 1
                    assert c["first"] == (t == 0) and c["last"] == (t == kh * kw * nc - 1)
                    assert c["group"] == g
                    word = mem.get(c["addr"], [None] * plan.V)
                    for i in range(simd):
                        if (c["mask"] >> i) & 1:
                            v = word[c["sub"] * simd + i]
                            assert v is not None, "unmasked lane reads an unwritten element"
                            lanes.append(v)
                        else:
                            lanes.append(0)
                gathered.append(lanes)
        win = _padded_windows(stage, x)                    # (ho, wo, kh, kw, C)
        if stage.kind == "pool":
            continue
        cpad = nc * simd
        want = np.zeros(win.shape[:4] + (cpad,), dtype=np.int64)
        want[..., :C] = win
        want = want.reshape(stage.pixels, -1)
        got = np.array(gathered).reshape(stage.pixels, ng, -1)
        for g in range(ng):
            assert np.array_equal(got[:, g], want), f"stage {stage.index} group {g}"


def test_pool_windows_match_numpy():
    net = random_network(2, (8, 6, 6), (("conv", 8, 1, 1, 0), ("pool", 2, 2), ("dense", 2)))
    plan = Plan(net, 4, 4, fuse_pools=False)
    cmds = _commands(plan)
    stage = plan.stages[1]
    start = plan.stages[0].issue_cycles
    mine = cmds[start:start + stage.issue_cycles]
    x = np.random.default_rng(1).integers(-50, 50, size=stage.in_geom)
    mem = _memory_image(plan, stage, x)
    ng, kh, kw, _ = stage.loops
    got = []
    for c in mine:
        word = mem[c["addr"]]
        got.append([word[c["sub"] * 4 + i] for i in range(4)])
    got = np.array(got).reshape(stage.pixels, ng, kh * kw, 4).max(axis=2).reshape(
        stage.pixels, -1)
    want = x.reshape(8, 3, 2, 3, 2).max(axis=(2, 4)).reshape(8, -1).T
    assert np.array_equal(got, want)
    # results go to the pooled pixel's words
    for c in mine[::kh * kw]:
        assert c["oaddr"] >= stage.out_base


def test_im2col_masks_follow_padding_and_stride():
    net = random_network(0, (1, 7, 7), (("conv", 8, 3, 2, 1), ("dense", 3)))
    plan = Plan(net, 8, 4)
    assert plan.im2col
    stage = plan.stages[0]
    cmds = _commands(plan)[:stage.issue_cycles]
    _, ho, wo = stage.out_geom
    k = 0
    for oh in range(ho):
        for ow in range(wo):
            bits = []
            for j in range(stage.loops[3]):
                c = cmds[k]
                k += 1
                assert c["addr"] == oh * wo + ow and c["chunk"] == j
                bits += [(c["mask"] >> i) & 1 for i in range(4)]
            want = [int(0 <= oh * 2 - 1 + y < 7 and 0 <= ow * 2 - 1 + x < 7)
                    for y in range(3) for x in range(3)]
            assert bits[:9] == want and not any(bits[9:])
