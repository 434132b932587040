"""The Verilator model (sim/verilator.py + sim/harness/harness.cpp) on the stand-in component.

Four Verilator builds in all (the design, its traced variant, a 64-bit variant, a smaller one for
the progress report), each made once for the module; everything else reuses them.
"""

import gc
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth import signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from thresher.sim import verilator
from thresher.sim.toolchain import VerilatorError, cache_root
from thresher.sim.verilator import VerilatorModel
from verilator_standin import DeadRegister, RunningSum, running_sum_reference


N = 5
HANG = 42


@pytest.fixture(scope="module")
def model():
    return VerilatorModel(RunningSum(n=N, hang_on=HANG), timeout=1000)


@pytest.fixture(scope="module")
def wide_model():
    """signed(64) in and out: built by two processes at once (see test_concurrent_builds)."""
    return _build_in_two_processes()


def _random_inputs(seed, batch, lo=-64, hi=63):
    x = np.random.default_rng(seed).integers(lo, hi + 1, size=(batch, N))
    x[x == HANG] = 0
    return x


@pytest.mark.slow
@pytest.mark.parametrize("inputs_first", [True, False])
@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_matches_reference(model, inputs_first, stall):
    x = _random_inputs(1, 300)
    x[0] = -64                     # the extremes of signed(7), and sign bits of the 40-bit output
    x[1] = 63
    model.inputs_first = inputs_first
    try:
        y, cycles = model.run_batch(x, stall=stall, seed=7)
    finally:
        model.inputs_first = True
    assert y.dtype == np.int64 and y.shape == (300, N)
    assert np.array_equal(y, running_sum_reference(x))
    assert (y < 0).any() and (y > 0).any()
    if stall == 0 and inputs_first:
        assert np.all(cycles == 3 * N + 3)   # the stand-in's documented cycle count
    else:
        assert np.all(cycles >= 3 * N + 3)
        if stall:
            assert len(set(cycles.tolist())) > 1


@pytest.mark.slow
def test_stall_pattern_is_reproducible(model):
    x = _random_inputs(2, 20)
    _, a = model.run_batch(x, stall=0.3, seed=11)
    _, b = model.run_batch(x, stall=0.3, seed=11)
    _, c = model.run_batch(x, stall=0.3, seed=12)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.slow
def test_batch_stats_and_empty_batch(model):
    y, cycles = model.run_batch(np.zeros((0, N), dtype=np.int64))
    assert y.shape == (0, N) and cycles.shape == (0,)
    model.run_batch(_random_inputs(3, 100))
    stats = model.last_stats
    assert stats.samples == 100 and stats.total_cycles >= 100 * (3 * N + 3)
    assert stats.cycles_per_second > 0


@pytest.mark.slow
def test_inputs_are_checked_not_truncated(model):
    with pytest.raises(ValueError, match=r"input 64 at \(0, 2\) does not fit"):
        model.run_batch([[0, 0, 64, 0, 0]])
    with pytest.raises(ValueError, match="-65"):
        model.run_batch([[0, 0, 0, 0, -65]])
    with pytest.raises(ValueError, match="shape"):
        model.run_batch(np.zeros((2, N + 1)))
    with pytest.raises(ValueError, match="integers"):
        model.run_batch(np.full((1, N), 0.5))
    with pytest.raises(ValueError, match="stall"):
        model.run_batch(np.zeros((1, N)), stall=1.0)
    y, _ = model.run_batch(np.ones((1, N)))      # integral floats are fine
    assert np.array_equal(y, running_sum_reference(np.ones((1, N), dtype=np.int64)))


@pytest.mark.slow
def test_hung_design_times_out(model):
    x = _random_inputs(4, 3)
    x[1, 3] = HANG
    with pytest.raises(VerilatorError, match=r"no `done` within 1000 cycles in inference 1 of 3 "
                                             r"\(4/5 inputs taken, 0/5 outputs"):
        model.run_batch(x)
    with pytest.raises(VerilatorError, match="within 50 cycles"):
        model.run_batch(x, timeout=50)
    y, _ = model.run_batch(x[:1])                # and the model is still usable
    assert np.array_equal(y, running_sum_reference(x[:1]))


@pytest.mark.slow
def test_protocol_errors_are_reported(model):
    # the harness expects fewer outputs than the design sends
    short = VerilatorModel(RunningSum(n=N, hang_on=HANG), n_in=N, n_out=N - 1, timeout=1000)
    assert not short.built                     # the same design: from the cache
    with pytest.raises(VerilatorError, match="more than 4 outputs"):
        short.run_batch(_random_inputs(5, 1))
    more = VerilatorModel(RunningSum(n=N, hang_on=HANG), n_in=N, n_out=N + 1, timeout=1000)
    with pytest.raises(VerilatorError, match="`done` before"):
        more.run_batch(_random_inputs(5, 1))


@pytest.mark.slow
def test_cache_hit_is_clean(model):
    again = VerilatorModel(RunningSum(n=N, hang_on=HANG))
    assert not again.built and again.lib_path == model.lib_path
    root = cache_root() / "verilator"
    assert root == Path(os.environ["THRESHER_CACHE"]) / "verilator"
    assert not list(root.glob(".build-*")), "a temporary build directory was left behind"
    assert list(root.glob("runtime-*/verilated.o"))
    build = model.lib_path.parent
    assert {"build.log", "build.json", "top.v", "harness.cpp"} <= {p.name for p in build.iterdir()}
    assert not (build / "obj").exists(), "the objects are removed once linked"


def _build_in_two_processes():
    code = ("import sys; sys.path[:0] = sys.argv[1:3]\n"
            "from amaranth import signed\n"
            "from verilator_standin import RunningSum\n"
            "from thresher.sim.verilator import VerilatorModel\n"
            "m = VerilatorModel(RunningSum(n=5, in_shape=signed(64), out_shape=signed(64), "
            "shift=3))\n"
            "print(m.built, m.lib_path)\n")
    here = Path(__file__).resolve().parent
    args = [sys.executable, "-c", code, str(here), str(here.parents[1])]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
    lines = sorted(out.split() for out, _ in results)
    model = VerilatorModel(RunningSum(n=5, in_shape=signed(64), out_shape=signed(64), shift=3))
    model.concurrent = lines
    return model


@pytest.mark.slow
def test_concurrent_builds(wide_model):
    """Two processes asking for the same new design: one builds, the other waits and reuses it."""
    (built_a, path_a), (built_b, path_b) = wide_model.concurrent
    assert {built_a, built_b} == {"False", "True"}
    assert path_a == path_b == str(wide_model.lib_path) and not wide_model.built


@pytest.mark.slow
def test_64_bit_payloads(wide_model):
    lo, hi = -2**63, 2**63 - 1
    x = np.array([[lo, 0, 0, 0, 0], [hi, 1, -1, hi, lo], [-1, -1, -1, -1, -1],
                  [hi, hi, hi, hi, hi], [lo, lo, lo, 7, -7]], dtype=np.int64)
    x = np.concatenate([x, np.random.default_rng(6).integers(lo, hi, size=(50, 5),
                                                             endpoint=True)])
    y, _ = wide_model.run_batch(x, stall=0.2)
    assert np.array_equal(y, running_sum_reference(x, shift=3, out_shape=signed(64)))


@pytest.mark.slow
def test_trace_first_inference(model, tmp_path):
    x = _random_inputs(8, 4)
    plain, _ = model.run_batch(x)
    vcd = tmp_path / "wave.vcd"
    traced, cycles = model.run_batch(x, trace=vcd)
    assert np.array_equal(traced, plain)
    text = vcd.read_text()
    assert "$enddefinitions" in text and " start " in text and "o__payload" in text
    last_time = max(int(line[1:]) for line in text.splitlines() if line.startswith("#"))
    # reset (2 cycles) + the inputs + the first inference, two time steps per cycle: not the batch
    assert last_time <= 2 * (2 + N + cycles[0]) + 2
    assert model.last_stats.total_cycles > 3 * cycles[0]
    with pytest.raises(VerilatorError, match="could not write the waveform"):
        model.run_batch(x, trace=tmp_path / "no" / "such" / "dir.vcd")


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_port_contract_is_checked():
    class NoDone(wiring.Component):
        i: In(stream.Signature(8))
        o: Out(stream.Signature(8))
        start: In(1)

    with pytest.raises(TypeError, match="no output port 'done'"):
        VerilatorModel(NoDone(), n_in=1, n_out=1)

    class Wide(wiring.Component):
        i: In(stream.Signature(signed(65)))
        o: Out(stream.Signature(8))
        start: In(1)
        done: Out(1)

    with pytest.raises(TypeError, match="65 bits"):
        VerilatorModel(Wide(), n_in=1, n_out=1)
    with pytest.raises(TypeError, match="wiring.Component"):
        VerilatorModel(object(), n_in=1, n_out=1)
    unused = [DeadRegister(), DeadRegister()]
    with pytest.raises(ValueError, match="n_in"):
        VerilatorModel(unused[0])
    with pytest.raises(ValueError, match="timeout"):
        VerilatorModel(unused[1], n_in=1, n_out=1, timeout=0)
    del unused
    gc.collect()  # their "created but never used" warnings now, under this test's filter


@pytest.mark.slow
def test_progress_of_compile_and_long_batches(model, progress_events, monkeypatch):
    """A real compile is a progress step (a cache hit is not); a batch still running when the
    harness first calls back gets a bar that ends at the batch size."""
    small = VerilatorModel(RunningSum(n=3), label="small stand-in")
    assert small.built and progress_events == [("step", "Verilator compile (small stand-in)")]
    VerilatorModel(RunningSum(n=3))
    assert len(progress_events) == 1
    monkeypatch.setattr(verilator, "_PROGRESS_SECONDS", 0.0)   # call back at every check
    model.run_batch(_random_inputs(9, 10))       # 230 cycles: over before the first check
    assert len(progress_events) == 1
    x = _random_inputs(9, 20_000)                # 460,000 cycles: 7 checks (1 in 65,536)
    y, _ = model.run_batch(x)
    assert np.array_equal(y, running_sum_reference(x))
    (_, label, total, updates), = progress_events[1:]
    assert label == "Verilator simulation (top)" and total == 20_000
    assert len(updates) > 2 and updates == sorted(updates) and updates[-1] == 20_000
