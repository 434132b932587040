import numpy as np
from amaranth.sim import Simulator

from thresher.hw.board.standin import StandInCore
from thresher.model_tools.golden import run_integer

from board_nets import tiny_network


def run_core(core, samples):
    results = []

    async def bench(ctx):
        for x in samples:
            for v in x:
                ctx.set(core.i.payload, int(v))
                ctx.set(core.i.valid, 1)
                await ctx.tick().until(core.i.ready)
            ctx.set(core.i.valid, 0)
            ctx.set(core.start, 1)
            await ctx.tick()
            ctx.set(core.start, 0)
            ctx.set(core.o.ready, 1)
            outs = []
            while True:
                _, _, valid, payload, done = await ctx.tick().sample(
                    core.o.valid, core.o.payload, core.done)
                if valid:
                    outs.append(payload)
                if done:
                    break
            await ctx.tick()
            results.append((outs, ctx.get(core.cycles)))

    sim = Simulator(core)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def test_standin_matches_golden():
    net = tiny_network(seed=3)
    core = StandInCore(net)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(3, 1, 12)).astype(np.float32)
    x[0, 0, :4] = [0, 40, 41, 255]
    want = run_integer(net, x)
    got = run_core(core, x.reshape(3, -1))
    for (outs, cycles), w in zip(got, want):
        assert outs == w.tolist()
        assert cycles == core.predict_cycles()
