import numpy as np
import pytest
from amaranth.sim import Simulator

from thresher.sim.streamsim import stream_get, stream_put
from thresher.hw.threshold import ThresholdUnit


def _run(lanes, levels, accw, cw, outw, beats, prenegated=False):
    dut = ThresholdUnit(lanes=lanes, acc_width=accw, cmp_width=cw, levels=levels, out_width=outw,
                        prenegated=prenegated)
    out = []

    async def tb(ctx):
        for acc, thr, neg, offset, step in beats:
            await stream_put(ctx, dut.i, {"acc": acc, "thr": thr, "neg": neg, "offset": offset,
                                          "step": step, "tag": 0})
            p = await stream_get(ctx, dut.o)
            out.append([int(p.value[k]) for k in range(lanes)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return out


def _ref(acc, thr, neg, offset, step):
    res = []
    for k, y in enumerate(acc):
        d = -1 if (neg >> k) & 1 else 1
        res.append(offset + step * int(np.sum(d * y >= np.asarray(thr[k]))))
    return res


def test_directions_ties_constants_offsets():
    accw, cw, levels = 8, 9, 3
    thr = [[-5, 0, 0],        # a tie between two thresholds
           [-3, 2, 7],        # compared on -y (neg lane)
           [200, 200, 200],   # constant channel: never reached
           [-200, -200, -200]]  # constant channel: always passed
    beats = []
    for y in (-128, -6, -5, -4, -3, -1, 0, 1, 2, 3, 6, 7, 8, 127):
        for offset, step in ((0, 1), (-1, 2), (-3, 1)):
            beats.append(([y, y, y, y], thr, 0b0010, offset, step))
    out = _run(4, levels, accw, cw, 4, beats)
    assert out == [_ref(*b) for b in beats]
    # spot checks: exact ties count (>=), negative direction
    assert _ref([0, 0, 0, 0], thr, 0b0010, 0, 1) == [3, 1, 0, 3]
    assert _ref([-2, -2, 0, 0], thr, 0b0010, 0, 1) == [1, 2, 0, 3]


def test_random_against_reference():
    rng = np.random.default_rng(3)
    lanes, levels, accw, cw = 3, 7, 10, 11
    beats = []
    for _ in range(40):
        thr = np.sort(rng.integers(-600, 600, size=(lanes, levels)), axis=1).tolist()
        acc = rng.integers(-512, 512, size=lanes).tolist()
        beats.append((acc, thr, int(rng.integers(0, 1 << lanes)), -3, 1))
    assert _run(lanes, levels, accw, cw, 5, beats) == [_ref(*b) for b in beats]


def test_bad_arguments():
    with pytest.raises(ValueError, match="cmp_width"):
        ThresholdUnit(lanes=1, acc_width=8, cmp_width=8, levels=3, out_width=3)


def test_prenegated_thresholds():
    """``prenegated=True``: negative lanes carry ``1 - T`` and the comparison is inverted."""
    rng = np.random.default_rng(5)
    lanes, levels, accw, cw = 4, 3, 8, 9
    beats, pre = [], []
    for _ in range(60):
        thr = np.sort(rng.integers(-130, 131, size=(lanes, levels)), axis=1).tolist()
        neg = int(rng.integers(0, 1 << lanes))
        acc = rng.integers(-128, 128, size=lanes).tolist()
        beats.append((acc, thr, neg, -1, 1))
        thr_p = [[1 - t for t in row] if (neg >> k) & 1 else row for k, row in enumerate(thr)]
        pre.append((acc, thr_p, neg, -1, 1))
    dut_out = _run(lanes, levels, accw, cw, 4, pre, prenegated=True)
    assert dut_out == [_ref(*b) for b in beats]


def test_threshold_images_share_one_layout_across_levels():
    """A network mixing activation widths (here 6 and 3 levels): every stage's threshold word has
    the plan's layout, so slot j of lane k is one ROM slice for every stage, and reading any
    stage's word as the unit does (prenegated) counts what golden's thresholds count; the
    spare slots of the narrower stage never count, in either direction."""
    from thresher.hw.images import threshold_image
    from thresher.hw.plan import Plan
    from thresher.model_tools.netgen import random_network
    net = random_network(0, (8, 6, 6), (("conv", 8, 3, 2, 1), ("conv", 8, 3, 1, 1), ("dense", 5)))
    plan = Plan(net, 4, 8)
    stages = [s for s in plan.stages if s.kind == "mac" and s.levels >= 1]
    assert len({s.levels for s in stages}) > 1
    cw, L, pe = plan.cmp_width, plan.levels, plan.pe
    lane_bits = 1 + L * cw
    rng = np.random.default_rng(0)
    for s in stages:
        width, words = threshold_image(plan, s, prenegated=True)
        assert width == pe * lane_bits
        act = s.layer.activation
        values = np.broadcast_to(act.values, (s.layer.out_channels, s.levels))
        direction = np.broadcast_to(act.direction, (s.layer.out_channels,))
        lo, hi = s.acc_bound
        for g, word in enumerate(words):
            for k in range(pe):
                c = min(g * pe + k, s.layer.out_channels - 1)
                lane = word >> (k * lane_bits) & ((1 << lane_bits) - 1)
                neg = lane & 1
                assert neg == (direction[c] < 0)
                slots = [(lane >> (1 + j * cw)) & ((1 << cw) - 1) for j in range(L)]
                slots = [v - (1 << cw) if v >> (cw - 1) else v for v in slots]
                for acc in [int(a) for a in rng.integers(lo, hi + 1, 50)] + [lo, hi]:
                    unit = sum((acc >= t) ^ neg for t in slots)
                    want = int((int(direction[c]) * acc >= values[c].astype(np.int64)).sum())
                    assert unit == want, (s.index, g, k, acc)
