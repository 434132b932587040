"""hw.Accelerator under Verilator against golden.run_integer (and Amaranth's pysim), bit for bit.

Each configuration is one Verilator build (a few seconds once the Verilator runtime is cached):
three configurations and the traced variant of one.
"""

import numpy as np
import pytest

from thresher.hw.plan import predict_cycles
from thresher.sim.run import run_pysim
from thresher.model_tools import golden
from thresher.model_tools.errors import ThresherError
from thresher.model_tools.netgen import random_input, random_network
from thresher.sim.lint import lint
from thresher.sim.verilator import accelerator_model, run_verilator


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


@pytest.mark.slow
def test_matches_golden_and_cycle_model(case):
    net, pe, simd, input_range, model = case
    x = random_input(4, net, 16, raw_range=input_range)
    x[0] = input_range[0]
    x[1] = input_range[1]
    y, cycles = run_verilator(net, x, pe, simd, input_range=input_range)
    assert np.array_equal(y, golden.run_integer(net, x))
    assert cycles.tolist() == [predict_cycles(net, pe, simd, input_range)] * 16


@pytest.mark.slow
def test_matches_golden_under_back_pressure(case):
    net, pe, simd, input_range, model = case
    x = random_input(5, net, 8, raw_range=input_range)
    y, cycles = run_verilator(net, x, pe, simd, input_range=input_range, stall=0.4, seed=1)
    assert np.array_equal(y, golden.run_integer(net, x))
    assert np.all(cycles >= predict_cycles(net, pe, simd, input_range))


@pytest.mark.slow
def test_lint_clean(case):
    net, pe, simd, input_range, model = case
    result = lint(model.verilog, name=model.name)
    assert result.ok, result.output


@pytest.mark.slow
def test_agrees_with_pysim_and_trace(tmp_path, progress_events):
    in_shape, spec, pe, simd, input_range = CASES["dense"]
    net = random_network(3, in_shape, spec, raw_range=input_range, name="dense-case")
    x = random_input(6, net, 2, raw_range=input_range)
    vcd = tmp_path / "accel.vcd"
    y, cycles = run_verilator(net, x, pe, simd, input_range=input_range, trace=vcd)
    y_py, cycles_py = run_pysim(net, x, pe, simd, input_range=input_range)
    assert np.array_equal(y, y_py) and cycles.tolist() == list(cycles_py)
    assert "o__payload" in vcd.read_text()
    # the compile of the traced variant (only this test asks for it) names the network
    assert ("step", "Verilator compile (dense-case, PE=4 SIMD=4, VCD trace)") in progress_events


def test_input_errors_are_user_errors():
    in_shape, spec, pe, simd, input_range = CASES["dense"]
    net = random_network(3, in_shape, spec, raw_range=input_range)
    with pytest.raises(ThresherError, match="outside input_range"):
        run_verilator(net, np.full((1,) + net.input_shape, 256), pe, simd)
    with pytest.raises(ThresherError, match="shape"):
        run_verilator(net, np.zeros((1, 3)), pe, simd)
    with pytest.raises(ThresherError, match="integer"):
        run_verilator(net, np.full((1,) + net.input_shape, 0.5), pe, simd)
