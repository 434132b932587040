"""``thresher run --engine``: the hardware engines write what the golden engine writes."""

import numpy as np
import pytest

from thresher.model_tools import golden, load_model
from thresher.sim.app.cli import main
from thresher.sim.engines import run_engine


def test_pysim_engine_on_tfc_is_bit_exact_and_matches_the_cycle_model(shared, tmp_path, capsys):
    x = np.load(shared / "data" / "mnist4" / "input.npy")[:1]
    np.save(tmp_path / "x.npy", x)
    for engine in ("golden", "pysim"):
        assert main(["run", str(shared / "models" / "TFC_2W2A.onnx"), str(tmp_path / "x.npy"),
                     "-o", str(tmp_path / f"{engine}.npy"), "--engine", engine]) == 0
    out = capsys.readouterr().out
    assert np.array_equal(np.load(tmp_path / "pysim.npy"), np.load(tmp_path / "golden.npy"))
    from thresher.hw.plan import predict_cycles
    net = load_model(shared / "models" / "TFC_2W2A.onnx")
    assert f"{predict_cycles(net, 8, 8):,} cycles per inference" in out


@pytest.mark.slow
def test_hardware_engines_take_float_inputs_through_the_host_quantizer(shared, tmp_path, capsys):
    """Inputs that are not 8-bit integers (here [0, 1] floats, as TFC was trained on) are
    quantized on the host with the exact float32 thresholds; the RTL is still bit-exact."""
    x = np.random.default_rng(5).random((3, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    model = str(shared / "models" / "TFC_2W2A.onnx")
    for engine in ("golden", "rtl"):
        assert main(["run", model, str(tmp_path / "x.npy"), "-o", str(tmp_path / f"{engine}.npy"),
                     "--engine", engine]) == 0
    assert "the host applies the input quantizer" in capsys.readouterr().err
    assert np.array_equal(np.load(tmp_path / "rtl.npy"), np.load(tmp_path / "golden.npy"))


def test_engine_result_integers_dequantize_to_outputs(shared):
    net = load_model(shared / "models" / "TFC_2W2A.onnx")
    x = np.load(shared / "data" / "mnist4" / "input.npy")
    r = run_engine(net, x, "golden")
    assert np.array_equal(r.integers, golden.run_integer(net, x))
    assert np.array_equal(r.outputs, golden.run(net, x))


@pytest.mark.slow
def test_verify_command_runs_random_networks(tmp_path, capsys):
    assert main(["verify", "--random", "2", "--seed", "3", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 passed, 0 failed" in out and "golden+verilator" in out
