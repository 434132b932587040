import numpy as np
import pytest
from amaranth.sim import Simulator

from thresher.hw.mac_array import MACArray
from thresher.sim.streamsim import stream_get, stream_put


def _run(pe, simd, ww, aw, accw, beats, stall_every=0, dsp_lanes=None, pack_shift=None,
         rows=None):
    """beats: list of (w (pe*simd,), a (simd,), first, last); ``rows``: per beat ``(d (pe,),
    diag)`` for an array with ``row_operands``. Returns emitted accumulators."""
    dut = MACArray(pe=pe, simd=simd, weight_width=ww, act_width=aw, acc_width=accw, tag_width=4,
                   dsp_lanes=dsp_lanes, pack_shift=pack_shift, row_operands=rows is not None)
    out = []
    n_out = sum(1 for b in beats if b[3])

    async def producer(ctx):
        for k, (w, a, first, last) in enumerate(beats):
            beat = {"w": [int(v) for v in w], "a": [int(v) for v in a], "first": first,
                    "last": last, "tag": k % 16}
            if rows is not None:
                beat.update(d=[int(v) for v in rows[k][0]], diag=rows[k][1])
            await stream_put(ctx, dut.i, beat)

    async def consumer(ctx):
        for n in range(n_out):
            if stall_every and n % stall_every == 0:
                await ctx.tick().repeat(3)          # back-pressure
            p = await stream_get(ctx, dut.o)
            out.append(([int(p.acc[k]) for k in range(pe)], int(p.tag)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return out


def _random_groups(rng, pe, simd, groups, longest, w_hi, a_hi, rows=False):
    """``groups`` accumulations of 1 to ``longest`` random beats (weights in [-w_hi, w_hi),
    activations in [-a_hi, a_hi)); with ``rows``, also each beat's ``(d, diag)``."""
    beats, extra = [], []
    for _ in range(groups):
        n = int(rng.integers(1, longest + 1))
        for j in range(n):
            w, a = rng.integers(-w_hi, w_hi, pe * simd), rng.integers(-a_hi, a_hi, simd)
            if rows:
                extra.append((rng.integers(-a_hi, a_hi, pe), int(rng.integers(0, 2))))
            beats.append((w, a, j == 0, j == n - 1))
    return (beats, extra) if rows else beats


def _reference(pe, simd, beats):
    res, acc = [], np.zeros(pe, dtype=np.int64)
    for k, (w, a, first, last) in enumerate(beats):
        s = np.asarray(w, dtype=np.int64).reshape(pe, simd) @ np.asarray(a, dtype=np.int64)
        acc = s if first else acc + s
        if last:
            res.append((acc.tolist(), k % 16))
    return res


@pytest.mark.parametrize("stall", [0, 2])
def test_random_groups(stall):
    pe, simd = 3, 4
    beats = _random_groups(np.random.default_rng(1), pe, simd, 6, 4, 8, 4)
    assert _run(pe, simd, 4, 3, 12, beats, stall) == _reference(pe, simd, beats)


def test_extreme_values_do_not_wrap():
    # 8-bit weights and activations at their extremes, 64 beats: |acc| = 64 * 4 * 128 * 128
    pe, simd, n = 2, 4, 64
    hi = [(np.full(pe * simd, -128), np.full(simd, -128), j == 0, j == n - 1) for j in range(n)]
    lo = [(np.full(pe * simd, 127), np.full(simd, -128), j == 0, j == n - 1) for j in range(n)]
    bound = n * simd * 128 * 128
    accw = int(bound).bit_length() + 1
    out = _run(pe, simd, 8, 8, accw, hi + lo)
    assert out == _reference(pe, simd, hi + lo)
    assert out[0][0] == [bound] * pe and out[1][0] == [-n * simd * 127 * 128] * pe


def test_bad_arguments():
    with pytest.raises(ValueError, match="pe must be"):
        MACArray(pe=0, simd=4, weight_width=2, act_width=2, acc_width=8)


@pytest.mark.parametrize("ww,aw", [(2, 2), (4, 9), (9, 4), (1, 5), (8, 8)])
def test_shift_add_product_is_exact(ww, aw):
    """The LUT (shift-and-add) products equal ``*`` for every extreme pair of operands."""
    from amaranth import signed
    from amaranth.sim import Simulator as Sim
    from amaranth.hdl import Module, Signal
    from thresher.hw.mac_array import shift_add_product
    m = Module()
    w, a = Signal(signed(ww)), Signal(signed(aw))
    p = Signal(signed(ww + aw))
    m.d.comb += p.eq(shift_add_product(w, a, ww, aw))
    ws = sorted({-(1 << (ww - 1)), (1 << (ww - 1)) - 1, 0, -1 if ww > 1 else 0})
    as_ = sorted({-(1 << (aw - 1)), (1 << (aw - 1)) - 1, 0, 1 if aw > 1 else 0, -1})
    bad = []

    async def tb(ctx):
        for x in ws:
            for y in as_:
                ctx.set(w, x)
                ctx.set(a, y)
                await ctx.delay(1e-9)
                if ctx.get(p) != x * y:
                    bad.append((x, y, ctx.get(p)))

    sim = Sim(m)
    sim.add_testbench(tb)
    sim.run()
    assert not bad


@pytest.mark.parametrize("dsp_lanes", [0, 5])
def test_lut_products_match_reference(dsp_lanes):
    """Lanes past ``dsp_lanes`` (shift-and-add) accumulate exactly like ``*`` lanes."""
    rng = np.random.default_rng(7)
    beats = [(rng.integers(-8, 8, 16), rng.integers(-256, 256, 4), k % 3 == 0, k % 3 == 2)
             for k in range(6)]
    beats[0] = (np.full(16, -8), np.full(4, -256), True, False)
    assert _run(4, 4, 4, 9, 16, beats, dsp_lanes=dsp_lanes) == _reference(4, 4, beats)


@pytest.mark.parametrize("dsp_lanes", [3, None])
def test_two_products_per_dsp_are_exact(dsp_lanes):
    """pack_shift: one multiplier computes lanes (k, s) and (k + 1, s); extremes of the ranges
    the packing is allowed for (|w| <= 7, a in 0..255, S = 12)."""
    rng = np.random.default_rng(3)
    beats = [(rng.integers(-7, 8, 16), rng.integers(0, 256, 4), k % 2 == 0, k % 2 == 1)
             for k in range(6)]
    beats[0] = (np.array([-7, 7] * 8), np.full(4, 255), True, False)
    beats[1] = (np.array([7, -7] * 8), np.array([255, 0, 255, 1]), False, True)
    got = _run(4, 4, 4, 9, 16, beats, dsp_lanes=dsp_lanes, pack_shift=12)
    assert got == _reference(4, 4, beats)


def test_pack_shift_is_checked():
    with pytest.raises(ValueError, match="pack_shift"):
        MACArray(pe=2, simd=2, weight_width=8, act_width=9, acc_width=20, pack_shift=12)


@pytest.mark.parametrize("dsp_lanes, pack_shift", [(None, None), (0, None), (8, 6)])
def test_row_operands_feed_lane_zero_of_each_row_while_diag(dsp_lanes, pack_shift):
    """``row_operands``: with ``diag`` high, lane (k, 0) multiplies row k's own ``d[k]``, every
    other lane still the shared ``a[s]``; with ``diag`` low the array is the plain one. Beats of
    both kinds interleave within and across groups; DSP products and packed pairs (column 0 is
    never packed) alike."""
    pe, simd = 4, 3
    # packed pairs are exact for products in [-2^(S-1), 2^(S-1)): 4-bit values up to 4
    beats, rows = _random_groups(np.random.default_rng(5), pe, simd, 8, 3, 4, 4, rows=True)
    want, acc = [], np.zeros(pe, dtype=np.int64)
    for k, ((w, a, first, last), (d, diag)) in enumerate(zip(beats, rows)):
        w = np.asarray(w, dtype=np.int64).reshape(pe, simd)
        s = w @ np.asarray(a, dtype=np.int64)
        if diag:
            s += w[:, 0] * (np.asarray(d, dtype=np.int64) - a[0])
        acc = s if first else acc + s
        if last:
            want.append((acc.tolist(), k % 16))
    got = _run(pe, simd, 4, 4, 12, beats, dsp_lanes=dsp_lanes, pack_shift=pack_shift, rows=rows)
    assert got == want and any(r[1] for r in rows) and not all(r[1] for r in rows)
