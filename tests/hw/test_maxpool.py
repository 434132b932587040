import numpy as np
from amaranth.sim import Simulator

from thresher.hw.maxpool import MaxPoolUnit
from thresher.sim.streamsim import stream_get, stream_put


def test_running_max_ignores_invalid_lanes():
    rng = np.random.default_rng(0)
    lanes, width = 4, 3
    dut = MaxPoolUnit(lanes=lanes, width=width)
    windows = []
    for _ in range(10):
        n = int(rng.integers(1, 5))
        a = rng.integers(-4, 4, size=(n, lanes))
        valid = rng.integers(0, 2, size=(n, lanes))
        valid[0] = 1                              # at least one valid tap per lane
        windows.append((a, valid))
    got = []

    async def producer(ctx):
        for a, valid in windows:
            for j in range(len(a)):
                await stream_put(ctx, dut.i, {"a": a[j].tolist(),
                                              "valid": int(sum(int(v) << k for k, v in
                                                               enumerate(valid[j]))),
                                              "first": j == 0, "last": j == len(a) - 1,
                                              "tag": 0})

    async def consumer(ctx):
        for _ in windows:
            p = await stream_get(ctx, dut.o)
            got.append([int(p.value[k]) for k in range(lanes)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    want = [np.where(v == 1, a, -99).max(axis=0).tolist() for a, v in windows]
    assert got == want
