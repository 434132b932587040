"""hw.Accelerator under Verilator against golden.run_integer (and Amaranth's pysim), bit for bit.

Each configuration is one Verilator build (a few seconds once the Verilator runtime is cached):
three configurations, the traced variant of one, one random verify case; TFC is linted only.
"""

from pathlib import Path

import numpy as np
import pytest

from hw.accelerator import Accelerator
from hw.plan import predict_cycles
from hw.run import run_pysim
from model_tools import golden
from model_tools.errors import ThresherError
from model_tools.netgen import random_input, random_network
from sim.verilator import accelerator_model, lint, run_verilator, verify_random


# (in_shape, spec, pe, simd, input_range): accumulator output, pooled feature output, im2col
CASES = {
    "dense": ((1, 4, 4), (("dense", 16), ("dense", 10)), 4, 4, (0, 255)),
    "conv-pool": ((2, 6, 6), (("conv", 8, 3, 1, 1), ("pool", 2, 2)), 8, 2, (-128, 127)),
    "im2col": ((1, 8, 8), (("conv", 8, 3, 1, 1), ("pool", 2, 2), ("conv", 8, 3, 1, 0),
                           ("dense", 10)), 8, 8, (0, 255)),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    in_shape, spec, pe, simd, input_range = CASES[request.param]
    net = random_network(3, in_shape, spec, raw_range=input_range)
    model = accelerator_model(net, pe, simd, input_range=input_range)
    return net, pe, simd, input_range, model


def test_matches_golden_and_cycle_model(case):
    net, pe, simd, input_range, model = case
    x = random_input(4, net, 16, raw_range=input_range)
    x[0] = input_range[0]
    x[1] = input_range[1]
    y, cycles = run_verilator(net, x, pe, simd, input_range=input_range)
    assert np.array_equal(y, golden.run_integer(net, x))
    assert cycles.tolist() == [predict_cycles(net, pe, simd, input_range)] * 16


def test_matches_golden_under_back_pressure(case):
    net, pe, simd, input_range, model = case
    x = random_input(5, net, 8, raw_range=input_range)
    y, cycles = run_verilator(net, x, pe, simd, input_range=input_range, stall=0.4, seed=1)
    assert np.array_equal(y, golden.run_integer(net, x))
    assert np.all(cycles >= predict_cycles(net, pe, simd, input_range))


def test_lint_clean(case):
    net, pe, simd, input_range, model = case
    result = lint(model.verilog, name=model.name)
    assert result.ok, result.output


def test_agrees_with_pysim_and_trace(tmp_path):
    in_shape, spec, pe, simd, input_range = CASES["dense"]
    net = random_network(3, in_shape, spec, raw_range=input_range)
    x = random_input(6, net, 2, raw_range=input_range)
    vcd = tmp_path / "accel.vcd"
    y, cycles = run_verilator(net, x, pe, simd, input_range=input_range, trace=vcd)
    y_py, cycles_py = run_pysim(net, x, pe, simd, input_range=input_range)
    assert np.array_equal(y, y_py) and cycles.tolist() == list(cycles_py)
    assert "o__payload" in vcd.read_text()


def test_input_errors_are_user_errors():
    in_shape, spec, pe, simd, input_range = CASES["dense"]
    net = random_network(3, in_shape, spec, raw_range=input_range)
    with pytest.raises(ThresherError, match="outside input_range"):
        run_verilator(net, np.full((1,) + net.input_shape, 256), pe, simd)
    with pytest.raises(ThresherError, match="shape"):
        run_verilator(net, np.zeros((1, 3)), pe, simd)
    with pytest.raises(ThresherError, match="integer"):
        run_verilator(net, np.full((1,) + net.input_shape, 0.5), pe, simd)


def test_verify_random_reports_and_saves_failures(tmp_path, monkeypatch):
    """A random case passes; then a deliberately wrong golden makes one fail and be saved."""
    lines = []
    results = verify_random(1, seed=0, out_dir=tmp_path, log=lines.append)
    assert all(r.ok or r.unsupported for r in results), lines
    assert "agree" in lines[-1] and "pysim" in lines[0]

    real = golden.run_integer
    monkeypatch.setattr(golden, "run_integer", lambda net, x: real(net, x) + 1)
    lines = []
    results = verify_random(1, seed=0, out_dir=tmp_path, pysim_every=0, log=lines.append)
    assert not results[0].ok and "verilator != golden" in results[0].message
    saved = results[0].saved
    assert saved and {"network.json", "network.npz", "input.npy", "case.json",
                      "outputs.npz"} <= {p.name for p in saved.iterdir()}
    assert "FAILED" in lines[-1]
    from model_tools.ir import IntegerNetwork
    net = IntegerNetwork.load(saved)
    x = np.load(saved / "input.npy")
    assert np.array_equal(np.load(saved / "outputs.npz")["verilator"], real(net, x))


TFC = Path("/work/shared/models/TFC_2W2A.onnx")


def test_lint_clean_on_tfc():
    """The default model's accelerator (lint only: no build)."""
    import model_tools
    net = model_tools.load_model(str(TFC))
    result = lint(Accelerator(net, pe=8, simd=8), name="thresher_accelerator")
    assert result.ok, result.output
