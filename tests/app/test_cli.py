"""The command line: the happy path, and every kind of bad input (exit 2, one line, nothing
overwritten)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from thresher.sim.app.cli import main

TFC = "models/TFC_2W2A.onnx"


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_compile_writes_network_and_prints_table(shared, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "compile", shared / TFC, "-o", tmp_path / "tfc")
    assert code == 0
    assert (tmp_path / "tfc" / "network.json").exists() and (tmp_path / "tfc" / "network.npz").exists()
    for column in ("MACs", "params", "accumulator", "thresholds", "50,176", "s10 [-311, 311]", "64x2"):
        assert column in out


def test_run_golden_from_onnx_and_from_compiled_dir(shared, tmp_path, capsys):
    x = shared / "data" / "mnist4" / "input.npy"
    assert run_cli(capsys, "compile", shared / TFC, "-o", tmp_path / "tfc")[0] == 0
    for model in (shared / TFC, tmp_path / "tfc"):
        y_path = tmp_path / "y.npy"
        code, _, _ = run_cli(capsys, "run", model, x, "-o", y_path, "--engine", "golden")
        assert code == 0
        y = np.load(y_path)
        assert y.dtype == np.float32 and y.shape == (4, 10)
        assert y.argmax(1).tolist() == [7, 2, 1, 0]


def test_info_and_compile_predict_what_build_picks(tmp_path, capsys):
    from thresher.hw.build import predict_build
    from thresher.model_tools import load_model
    p = predict_build(load_model("default"), "icebreaker")
    for argv in (["info", "default"], ["compile", "default", "-o", tmp_path / "net"]):
        code, out, _ = run_cli(capsys, *argv, "--board", "icebreaker")
        assert code == 0
        assert (f"build would pick PE={p['pe']} x SIMD={p['simd']} at {p['clock_mhz']:g} MHz"
                in out)
        assert f"{p['inferences_per_s']:,.0f} inferences/s" in out


def test_info(shared, capsys):
    code, out, _ = run_cli(capsys, "info", shared / TFC)
    assert code == 0 and "59,008 MACs" in out


# -- bad input ----------------------------------------------------------------------------------

def tfc_with(shared, tmp_path, edit):
    """A copy of TFC_2W2A (cleaned by qonnx, for stable tensor names) with one initializer changed
    by ``edit(name, array) -> array | None``."""
    from onnx import numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model
    model = cleanup_model(ModelWrapper(str(shared / TFC))).model
    for init in model.graph.initializer:
        new = edit(init.name, numpy_helper.to_array(init))
        if new is not None:
            init.CopyFrom(numpy_helper.from_array(np.asarray(new, dtype=np.float32), init.name))
    path = tmp_path / "edited.onnx"
    onnx.save(model, str(path))
    return path


def bn_param(index, value):
    def edit(name, array):
        if name == f"BatchNormalization_1_param{index}":
            array = array.copy()
            array[3] = value
            return array
    return edit


def quant_param(index, value):
    def edit(name, array):
        if name == f"Quant_5_param{index}":
            return np.asarray(value)
    return edit


BAD_MODELS = {
    "nan variance": (bn_param(3, np.nan), "NaN"),
    "negative variance": (bn_param(3, -1.0), "negative batch-norm variance"),
    "zero scale": (quant_param(0, 0.0), "scales must be finite and positive"),
    "infinite scale": (quant_param(0, np.inf), "scales must be finite and positive"),
    "non-integer bit width": (quant_param(2, 2.5), "bit width must be an integer"),
}


@pytest.mark.parametrize("kind", BAD_MODELS)
def test_broken_model_parameters(kind, shared, tmp_path, capsys):
    edit, message = BAD_MODELS[kind]
    path = tfc_with(shared, tmp_path, edit)
    code, out, err = run_cli(capsys, "compile", path, "-o", tmp_path / "out")
    assert code == 2
    assert err.startswith("thresher: error: ") and err.count("\n") == 1 and message in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_garbage_model_file(tmp_path, capsys):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\x00\x01not an onnx model at all" * 10)
    code, _, err = run_cli(capsys, "info", path)
    assert code == 2 and "not a readable ONNX file" in err and err.count("\n") == 1


def test_missing_model_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, "info", tmp_path / "nope.onnx")
    assert code == 2 and "no such model file" in err


def test_unsupported_op(tmp_path, capsys):
    from qonnx_builder import GraphBuilder
    path = GraphBuilder((1, 4)).quant(1.0, 8).apply("Tanh").build(tmp_path / "tanh.onnx")
    code, _, err = run_cli(capsys, "info", path)
    assert code == 2 and "(Tanh)" in err and "unsupported operation" in err


def write(path, array):
    np.save(path, array)
    return path


BAD_INPUTS = {
    "wrong shape": (lambda p: write(p, np.zeros((4, 28, 28), np.float32)), "expects (batch, 1, 28, 28)"),
    "nan": (lambda p: write(p, np.full((2, 1, 28, 28), np.nan, np.float32)), "NaN"),
    "missing": (lambda p: p, "no such file"),
    "not npy": (lambda p: (p.write_text("1,2,3\n"), p)[1], "not a .npy file"),
    "strings": (lambda p: write(p, np.array(["a", "b"])), "expected numbers"),
    "truncated": (lambda p: (write(p, np.zeros((2, 1, 28, 28), np.float32)),
                             p.write_bytes(p.read_bytes()[:200]), p)[2], "unreadable .npy"),
}


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_inputs_leave_existing_output_untouched(kind, shared, tmp_path, capsys):
    make, message = BAD_INPUTS[kind]
    x = make(tmp_path / "x.npy")
    y = tmp_path / "y.npy"
    y.write_bytes(b"precious")
    code, _, err = run_cli(capsys, "run", shared / TFC, x, "-o", y)
    assert code == 2 and message in err, err
    assert err.startswith("thresher: error: ") and err.count("\n") == 1
    assert y.read_bytes() == b"precious"


def test_usage_errors_are_one_line(capsys):
    code, _, err = run_cli(capsys, "run")
    assert code == 2 and err.startswith("thresher: error: ") and err.count("\n") == 1


def test_installed_console_script_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"junk")
    script = Path(sys.executable).parent / "thresher"     # what pip installed for the user
    proc = subprocess.run([str(script), "info", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("thresher: error: ") and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_demo_runs_end_to_end_and_its_bitstream_programs_dry(tmp_path, capsys):
    """The Quick start's main job: accuracy, RTL = float class on every image, a real build."""
    import json
    code, out, _ = run_cli(capsys, "demo", "--out", tmp_path)
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["test_images"] >= 300
    assert report["accuracy"]["integer"] >= 0.97 and report["accuracy"]["rtl"] >= 0.97
    assert report["agreement_rtl_vs_float"] == 1.0 and report["rtl_bit_exact_vs_golden"]
    for key in ("board", "fmax_mhz", "cycles_per_inference", "mac_bound_cycles"):
        assert report[key]
    assert report["cycles_per_inference"] <= 1.25 * report["mac_bound_cycles"]
    assert report["meets_timing"] and report["fmax_mhz"] >= report["clock_mhz"]
    html = (tmp_path / "report.html").read_text()
    assert html.count("<svg") == 4 and "confusion" in html and "class=\"graph\"" in html
    build = tmp_path / "build"
    assert (build / report["build"]["bitstream"]).stat().st_size > 0
    code, out, _ = run_cli(capsys, "program", build, "--dry-run")   # the board comes from the build
    assert code == 0 and "iCEBreaker" in out and "0403:6010" in out and "top.bin" in out
    # --engine rtl --build: the simulation is that build's accelerator (array, DSP lanes)
    from thresher.model_tools.builtin import digits_test
    x, _ = digits_test()
    np.save(tmp_path / "x.npy", x[:3])
    built = json.loads((build / "report.json").read_text())
    run = ("run", "default", tmp_path / "x.npy")
    code, out, _ = run_cli(capsys, *run, "--engine", "rtl", "--build", build, "-o", tmp_path / "r.npy")
    assert code == 0 and f"(PE={built['pe']}, SIMD={built['simd']})" in out
    assert f"{built['cycles_per_inference']:,} cycles per inference" in out
    assert run_cli(capsys, *run, "-o", tmp_path / "g.npy")[0] == 0
    assert np.array_equal(np.load(tmp_path / "r.npy"), np.load(tmp_path / "g.npy"))
    # --engine board --port verilator --build: the build's whole UART bridge (its clock, UART
    # divisor, INFO and timeout) under Verilator, the frames on the simulated wire
    code, out, _ = run_cli(capsys, *run, "--engine", "board", "--port", "verilator", "--build",
                           build, "-o", tmp_path / "v.npy")
    assert code == 0 and f"{built['cycles_per_inference']:,} cycles per inference" in out
    assert np.array_equal(np.load(tmp_path / "v.npy"), np.load(tmp_path / "g.npy"))
    for argv, words in (((*run, "--engine", "rtl", "--build", build, "--pe", "64"), "--pe 64"),
                        (("run", "tfc", tmp_path / "x.npy", "--engine", "rtl", "--build", build),
                         "another network"),
                        ((*run, "--build", build), "hardware engines"),
                        ((*run, "--engine", "board", "--port", "verilator", "--build", build,
                          "--baud", "115200"), "build's rate")):
        code, _, err = run_cli(capsys, *argv, "-o", tmp_path / "bad.npy")
        assert code == 2 and words in err and err.count("\n") == 1, argv
    assert not (tmp_path / "bad.npy").exists()
    # place and route past its time budget: nextpnr is stopped, and the failure is one a build
    # steps down from (the real tool on the real netlist, given a second)
    from thresher.hw.flow import Flow, ToolFailed
    with pytest.raises(ToolFailed, match="did not finish in 1 s") as failed:
        Flow(build, "icebreaker").place_and_route(timeout=1)
    assert failed.value.timed_out and failed.value.over_use


def test_boards_lists_every_board(capsys):
    code, out, _ = run_cli(capsys, "boards")
    assert code == 0
    for board in ("icebreaker", "upduino-v3", "icesugar", "ulx3s-85f", "ulx3s-25f", "orangecrab-85f"):
        assert board in out


def test_build_refuses_unknown_boards_and_models_that_do_not_fit(shared, tmp_path, capsys):
    code, _, err = run_cli(capsys, "build", shared / TFC, "--board", "nexys", "-o", tmp_path / "b")
    assert code == 2 and "nexys" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "build", shared / TFC, "--board", "icebreaker", "-o", tmp_path / "b")
    assert code == 2 and "does not fit icebreaker" in err and "needed" in err


def test_run_on_the_simulated_board_over_the_uart_protocol(tmp_path, capsys):
    from thresher.model_tools.builtin import DEFAULT_MODEL, digits_test
    x, _ = digits_test()
    np.save(tmp_path / "x.npy", x[:2])
    for engine, extra in (("board", ["--port", "sim"]), ("golden", [])):
        assert run_cli(capsys, "run", DEFAULT_MODEL, tmp_path / "x.npy", "-o",
                       tmp_path / f"{engine}.npy", "--engine", engine, *extra)[0] == 0
    assert np.array_equal(np.load(tmp_path / "board.npy"), np.load(tmp_path / "golden.npy"))


def test_version(capsys):
    from importlib.metadata import version
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"thresher {version('thresher')}"


def test_builtin_models_by_name(tmp_path, capsys, monkeypatch):
    code, out, _ = run_cli(capsys, "info", "default")
    assert code == 0 and "Dense" in out and "MACs per inference" in out
    code, out, _ = run_cli(capsys, "info", "tfc")
    assert code == 0 and "59,008 MACs" in out
    # a file or folder of that name in the working directory wins over the built-in model
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").mkdir()
    code, _, err = run_cli(capsys, "info", "default")
    assert code == 2 and "without network.json" in err


def test_outputs_follow_the_umask(tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 1, 8, 8), np.float32))
    old = os.umask(0o022)
    try:
        assert run_cli(capsys, "run", "default", x, "-o", tmp_path / "y.npy")[0] == 0
        assert run_cli(capsys, "compile", "default", "-o", tmp_path / "net")[0] == 0
    finally:
        os.umask(old)
    for f in (tmp_path / "y.npy", tmp_path / "net" / "network.json", tmp_path / "net" / "network.npz"):
        assert f.stat().st_mode & 0o777 == 0o644, f


def test_uart_rate_errors_are_one_line(tmp_path, capsys):
    from thresher.model_tools.builtin import DEFAULT_MODEL
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    run = ("run", DEFAULT_MODEL, tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    for argv in [("build", DEFAULT_MODEL, "--board", "icebreaker", "-o", tmp_path / "b",
                  "--baud", "7"),
                 (*run, "--engine", "board", "--port", "sim", "--baud", "7"),
                 (*run, "--engine", "board", "--port", "sim", "--baud", "fast"),
                 (*run, "--baud", "115200"),                       # not the board engine
                 (*run, "--engine", "board", "--port", "sim", "--build", tmp_path / "none")]:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and err.startswith("thresher: error: ") and err.count("\n") == 1, argv
    assert not (tmp_path / "y.npy").exists()


def test_run_on_the_board_opens_the_port_at_the_builds_rate(tmp_path, capsys, monkeypatch):
    """``run --engine board --build DIR``: the serial port is opened at report.json's ``baud``
    (here a board simulated behind a UART at that rate stands in for the port); ``--baud``
    without a build; 115,200 for a build that records no rate."""
    import json
    from thresher.hw.board import frame
    from thresher.hw.board.top import UartBridge, core_info
    from thresher.hw.board.uart import baud_divisor
    from thresher.model_tools.builtin import DEFAULT_MODEL, digits_test
    from thresher.model_tools.load import load_model
    from thresher.hw.accelerator import Accelerator
    from thresher.sim import host
    from thresher.sim.transport import SimulatedTransport
    net = load_model(DEFAULT_MODEL)
    opened = []

    def serial_port(port, baud):        # what the host opens: a board simulated at 4 clocks a bit
        opened.append((port, baud))
        core = Accelerator(net, pe=4, simd=4)
        clk_hz = 4 * baud
        divisor = baud_divisor(clk_hz, baud)
        info = core_info(core, n_in=core.n_in, n_out=core.n_out, clock_hz=clk_hz,
                         network_hash=frame.network_hash(net), input_range=(0, 255))
        bridge = UartBridge(core, info, divisor=divisor, timeout_cycles=100_000)
        return SimulatedTransport(bridge, divisor=divisor, clk_hz=clk_hz, baud=baud)

    monkeypatch.setattr(host, "SerialTransport", serial_port)
    x, _ = digits_test()
    np.save(tmp_path / "x.npy", x[:1])
    build = tmp_path / "build"
    build.mkdir()
    (build / "report.json").write_text(json.dumps({"board": "icebreaker", "baud": 3_000_000}))
    run = ("run", DEFAULT_MODEL, tmp_path / "x.npy", "--engine", "board", "--port", "/dev/ttyX")
    assert run_cli(capsys, *run, "-o", tmp_path / "b.npy", "--build", build)[0] == 0
    assert run_cli(capsys, *run[:3], "-o", tmp_path / "g.npy")[0] == 0          # golden
    assert np.array_equal(np.load(tmp_path / "b.npy"), np.load(tmp_path / "g.npy"))
    assert run_cli(capsys, *run, "-o", tmp_path / "b.npy", "--baud", "1000000")[0] == 0
    code, _, err = run_cli(capsys, *run, "-o", tmp_path / "b.npy", "--build", build,
                           "--baud", "115200")
    assert code == 2 and "disagrees" in err and err.count("\n") == 1
    (build / "report.json").write_text(json.dumps({"board": "icebreaker"}))   # an old build
    assert run_cli(capsys, *run, "-o", tmp_path / "b.npy", "--build", build)[0] == 0
    assert opened == [("/dev/ttyX", 3_000_000), ("/dev/ttyX", 1_000_000), ("/dev/ttyX", 115_200)]
