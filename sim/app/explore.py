"""``thresher explore``: real builds over array shapes (and nextpnr seeds, clocks), side by side.

``build`` picks one array from the resource model's estimate (:func:`hw.resources.array_candidates`)
and one clock policy. ``explore`` builds the candidates for real -- by default the model's top few
arrays at the default clock policy and nextpnr seed 1 -- each in its own subdirectory of ``DIR``
with ``hw.build.build(..., arrays=[(pe, simd)])`` (so no step-down inside a point: a point that
does not fit the device is a row saying so), as the tasks of a
:class:`thresher.sim.campaign.Campaign` (this process, local processes or a Dask cluster).

It writes a table on stdout, ``DIR/explore.json`` (one row per point: its configuration, Fmax,
clock, resources used, cycles per inference, inferences/s, whether it is on the Pareto front of
inferences/s against logic used, and which point ``build`` would pick) and ``DIR/explore.html``
(inferences/s against logic used, the front drawn; inline SVG).

On a Dask cluster a point is built in a temporary directory on its worker, and its
``report.json`` and bitstream come back to ``DIR/<point>/``; locally it is built in place.

Members
-------
explore(network, board, out_dir, ...)   build the points, write explore.json/.html; the result.
sweep_points(network, board, ...)       the points a sweep builds.
build_point(...)                        one point (a campaign's task).
format_explore(result)                  the stdout table.
render_html(result)                     the page.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from ...hw.board.frame import network_hash
from ...model_tools.errors import ThresherError
from ...model_tools.files import atomic_write_bytes
from ..campaign import Campaign, TaskFailure
from .report_html import _BLUE, _GREY, _ORANGE, _RED, _esc, _table

__all__ = ["explore", "sweep_points", "build_point", "format_explore", "render_html",
           "DEFAULT_TOP"]

#: how many of the resource model's candidate arrays a sweep builds by default
DEFAULT_TOP = 6


def _point_name(pe: int, simd: int, seed: int, clock: float | None) -> str:
    return (f"pe{pe}-simd{simd}" + (f"-seed{seed}" if seed != 1 else "")
            + (f"-{clock:g}mhz" if clock is not None else ""))


def sweep_points(network, board: str, *, top: int = DEFAULT_TOP, arrays=None, seeds=(1,),
                 clocks=(None,)) -> list[dict]:
    """The points of a sweep: ``arrays`` (default: the first ``top`` of
    :func:`hw.resources.array_candidates`, best first) x nextpnr ``seeds`` x target ``clocks``
    (MHz; ``None``: the build's default policy, its family's target then just below the routed
    Fmax until the clock is met). Each point: ``pe``, ``simd``, ``seed``, ``target_clock_mhz``,
    ``point`` (its name and subdirectory)."""
    from ...hw.resources import array_candidates
    if arrays is None:
        if top < 1:
            raise ThresherError(f"--top needs a positive number of arrays, not {top}")
        arrays = array_candidates(network, board)[:top]
    points = []
    for pe, simd in arrays:
        for seed in seeds:
            for clock in clocks:
                points.append({"point": _point_name(pe, simd, seed, clock), "pe": int(pe),
                               "simd": int(simd), "seed": int(seed), "target_clock_mhz": clock})
    names = [p["point"] for p in points]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:   # two tasks would build into one directory
        raise ThresherError(f"explore: the sweep lists point {repeated[0]} twice "
                            "(a repeated array, seed or clock)")
    return points


# -- one point: a campaign's task ------------------------------------------------------------------

@contextlib.contextmanager
def _flock(path: Path):
    import fcntl
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@lru_cache(maxsize=None)
def _prime_tools(family: str) -> None:
    """Run each YoWASP tool of ``family`` once, one process at a time (a file lock in YoWASP's
    cache), before the first build of this process: a cold YoWASP cache compiles each tool's
    WebAssembly for a minute and writes it in place, not atomically, so workers starting
    together would all compile it and could read each other's half-written copies."""
    from ...hw.flow import tool_path
    try:
        import platformdirs
        default = platformdirs.user_cache_dir("YoWASP", appauthor=False)
    except ImportError:
        default = str(Path.home() / ".cache" / "YoWASP")
    cache = Path(os.environ.get("YOWASP_CACHE_DIR", default))
    cache.mkdir(parents=True, exist_ok=True)
    tools = ["yosys", f"nextpnr-{family}", "icepack" if family == "ice40" else "ecppack"]
    with _flock(cache / "thresher-prime.lock"):
        for tool in tools:
            subprocess.run([tool_path(tool), "--version"], capture_output=True, timeout=900)


def build_point(network, board: str, point: dict, out_dir: str | None, *, keep_files=()) -> dict:
    """Build one point of a sweep; return its row (see :func:`explore`).

    ``out_dir``: build there (a local campaign). ``None``: build in a temporary directory and
    return ``keep_files`` (``report.json``, the bitstream) as bytes under ``"files"``, for the
    campaign to write (a cluster's worker need not share ``DIR``'s filesystem).
    """
    from ...hw.board.platforms import board_spec
    from ...hw.build import build
    from ...hw.resources import estimate_resources
    spec = board_spec(board)
    _prime_tools(spec.family)
    pe, simd = point["pe"], point["simd"]
    row = {**point, "built": False, "fits": None, "message": ""}
    try:
        row["estimate"] = estimate_resources(network, pe, simd, board)
    except ThresherError as e:
        row["estimate"] = None
        row["message"] = f"no estimate: {e}"
    where = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="thresher-"))
    started = time.monotonic()
    try:
        report = build(network, board, where, seed=point["seed"], arrays=[(pe, simd)],
                       target_clock_mhz=point["target_clock_mhz"])
    except ThresherError as e:
        row["fits"] = False if "does not fit" in str(e) else None
        row["message"] = str(e)
        report = None
    row["seconds"] = round(time.monotonic() - started, 1)
    if report is not None:
        row.update(_from_report(report, spec))
        if out_dir is None:
            row["files"] = {name: (where / name).read_bytes()
                            for name in ("report.json", report["bitstream"], *keep_files)
                            if (where / name).exists()}
    if out_dir is None:
        shutil.rmtree(where, ignore_errors=True)
    return row


def _from_report(report: dict, spec) -> dict:
    util = report["utilization"]
    used = lambda k: util.get(k, {}).get("used")             # noqa: E731
    return {"built": True, "fits": True, "clock_mhz": report["clock_mhz"],
            "fmax_mhz": report["fmax_mhz"], "meets_timing": report["meets_timing"],
            "logic_resource": spec.logic, "logic_used": used(spec.logic),
            "logic_available": spec.resources.get(spec.logic),
            "bram_used": used(spec.bram), "dsp_used": used(spec.dsp),
            "utilization": util,
            "cycles_per_inference": report["cycles_per_inference"],
            "inferences_per_s": report["inferences_per_s"],
            "build_seconds": report["build_seconds"],
            "clock_attempts": len(report.get("attempts", []))}


# -- the sweep -------------------------------------------------------------------------------------

def _pareto(rows: list[dict]) -> set[str]:
    """The points no other beats on both counts: more inferences/s for no more logic (built
    points that meet their clock only)."""
    live = [r for r in rows if r.get("built") and r.get("meets_timing") and
            r.get("inferences_per_s") and r.get("logic_used") is not None]
    front = set()
    for r in live:
        if not any(q is not r and q["inferences_per_s"] >= r["inferences_per_s"]
                   and q["logic_used"] <= r["logic_used"]
                   and (q["inferences_per_s"] > r["inferences_per_s"]
                        or q["logic_used"] < r["logic_used"]) for q in live):
            front.add(r["point"])
    return front


def _build_pick(network, board: str) -> tuple[int, int] | None:
    """The array ``thresher build`` tries first (it steps down only if that is over the
    device)."""
    from ...hw.resources import array_candidates
    try:
        return tuple(array_candidates(network, board)[0])
    except ThresherError:
        return None


def explore(network, board: str, out_dir, *, top: int = DEFAULT_TOP, arrays=None, seeds=(1,),
            clocks=(None,), workers: int | None = None, scheduler: str | None = None,
            log=print, task=build_point) -> dict:
    """Build the points of :func:`sweep_points` as a campaign; write ``out_dir/explore.json``
    and ``out_dir/explore.html``; return what explore.json holds.

    explore.json: ``board``, ``network`` (name, MACs), ``executor``, ``seconds``, ``build_pick``
    (the point ``thresher build`` would pick: the model's first array at the default clock
    policy and seed 1), ``front`` (the points on the Pareto front), and ``points``, one row
    each: ``point``, ``pe``, ``simd``, ``seed``, ``target_clock_mhz`` (None: the default
    policy), ``built``, ``fits``, ``clock_mhz``, ``fmax_mhz``, ``meets_timing``,
    ``logic_resource`` / ``logic_used`` / ``logic_available``, ``bram_used``, ``dsp_used``,
    ``utilization`` (nextpnr's), ``estimate`` (the resource model's), ``cycles_per_inference``,
    ``inferences_per_s``, ``build_seconds``, ``seconds`` (the task), ``pareto``,
    ``build_pick``, ``message`` (why a point did not build), ``dir``.
    """
    from ...hw.board.platforms import board_spec
    spec = board_spec(board)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ThresherError(f"{out_dir}: exists and is not a directory")
    points = sweep_points(network, board, top=top, arrays=arrays, seeds=seeds, clocks=clocks)
    out_dir.mkdir(parents=True, exist_ok=True)
    campaign = Campaign(workers, scheduler)
    local = scheduler is None
    started = time.perf_counter()
    rows: dict[int, dict] = {}
    with campaign:
        log(f"{len(points)} build{'s' if len(points) > 1 else ''} of {network.name!r} on {board} "
            f"on {campaign.describe()}")
        tasks = [(network, board, p, str((out_dir / p["point"]).resolve()) if local else None)
                 for p in points]
        for k, outcome in campaign.run(task, tasks, label="explore"):
            row = outcome if isinstance(outcome, dict) else \
                {**points[k], "built": False, "fits": None, "message":
                 f"{'died' if outcome.died else 'failed'}: {outcome.message}"}
            if isinstance(outcome, TaskFailure):
                row["died"] = outcome.died
            files = row.pop("files", None)
            row["dir"] = str(out_dir / row["point"])
            if files:
                Path(row["dir"]).mkdir(parents=True, exist_ok=True)
                for name, data in files.items():
                    (Path(row["dir"]) / name).write_bytes(data)
            rows[k] = row
            log(_one_line(row))
        where = campaign.info()
    ordered = [rows[k] for k in range(len(points))]
    front = _pareto(ordered)
    pick = _build_pick(network, board)
    pick_point = None
    for r in ordered:
        r["pareto"] = r["point"] in front
        r["build_pick"] = (pick == (r["pe"], r["simd"]) and r["seed"] == 1
                           and r["target_clock_mhz"] is None)
        if r["build_pick"]:
            pick_point = r["point"]
    result = {
        "board": board, "device": spec.device,
        "network": {"name": network.name, "macs": network.macs,
                    "fingerprint": f"{network_hash(network):08x}"},
        "executor": where, "seconds": round(time.perf_counter() - started, 1),
        "build_pick": {"pe": pick[0], "simd": pick[1], "point": pick_point} if pick else None,
        "front": [r["point"] for r in sorted(ordered, key=lambda r: r.get("logic_used") or 0)
                  if r["pareto"]],
        "points": ordered,
    }
    atomic_write_bytes(out_dir / "explore.json", json.dumps(result, indent=1).encode() + b"\n")
    atomic_write_bytes(out_dir / "explore.html", render_html(result).encode())
    return result


def fastest_point(explore_dir, network, board: str) -> dict:
    """The row of ``explore_dir/explore.json`` that ``thresher build --explore`` builds: of the
    points that were built for this ``network`` and ``board`` and met their clock, the one with
    the most inferences/s (the least logic among equals). What a sweep measured on real builds,
    instead of the resource model's guess; :class:`ThresherError` if the sweep is of another
    network or board, or no point of it qualifies."""
    path = Path(explore_dir) / "explore.json"
    try:
        result = json.loads(path.read_text())
        points, swept = result["points"], result["network"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ThresherError(f"--explore {explore_dir}: not a directory written by 'thresher "
                            f"explore' ({e})") from None
    if result.get("board") != board:
        raise ThresherError(f"--explore {explore_dir}: that sweep is for {result.get('board')}, "
                            f"not {board}")
    if swept.get("fingerprint") != f"{network_hash(network):08x}":
        raise ThresherError(f"--explore {explore_dir}: that sweep is of another network "
                            f"({swept.get('name')}), or of this one before it changed")
    ok = [r for r in points if r.get("built") and r.get("fits") and r.get("meets_timing")]
    if not ok:
        raise ThresherError(f"--explore {explore_dir}: no point of that sweep was built and met "
                            "its clock")
    return max(ok, key=lambda r: (r["inferences_per_s"], -r["logic_used"]))


def _one_line(row: dict) -> str:
    if not row.get("built"):
        return f"{row['point']}: not built ({row['message']})"
    return (f"{row['point']}: {row['logic_used']:,} {row['logic_resource']}, Fmax "
            f"{row['fmax_mhz']} MHz at {row['clock_mhz']:g} MHz"
            + ("" if row["meets_timing"] else " (timing missed)")
            + f", {row['inferences_per_s']:,.0f} inferences/s ({row['seconds']:.0f} s)")


# -- what a person reads ---------------------------------------------------------------------------

def _table_rows(result: dict) -> list[dict]:
    out = []
    for r in result["points"]:
        built = r.get("built")
        mark = ("*" if r.get("pareto") else "") + ("<" if r.get("build_pick") else "")
        out.append({
            "point": r["point"], "array": f"{r['pe']} x {r['simd']}", "seed": r["seed"],
            "target": "default" if r["target_clock_mhz"] is None else f"{r['target_clock_mhz']:g}",
            "clock": f"{r['clock_mhz']:g}" if built else "-",
            "fmax": f"{r['fmax_mhz']}" + ("" if r.get("meets_timing") else " (missed)")
            if built else "-",
            "logic": f"{r['logic_used']:,} / {r['logic_available']:,}" if built else
            ("over the device" if r.get("fits") is False else "failed"),
            "bram": r.get("bram_used", "-") if built else "-",
            "dsp": r.get("dsp_used", "-") if built else "-",
            "cycles": r.get("cycles_per_inference", "-") if built else "-",
            "ips": f"{r['inferences_per_s']:,.0f}" if built else "-",
            "mark": mark,
        })
    return out


_COLUMNS = [("array", "PE x SIMD"), ("seed", "seed"), ("target", "target MHz"),
            ("clock", "clock MHz"), ("fmax", "Fmax MHz"), ("logic", "logic used"),
            ("bram", "BRAM"), ("dsp", "DSP"), ("cycles", "cycles/inf"), ("ips", "inferences/s"),
            ("mark", "")]


def format_explore(result: dict) -> str:
    """The sweep as a table: ``*`` marks the Pareto front, ``<`` the point build would pick."""
    from ...model_tools.report import format_table
    logic = next((r["logic_resource"] for r in result["points"] if r.get("logic_resource")), "")
    text = format_table(_table_rows(result), _COLUMNS)
    return (text + f"\n\n* on the Pareto front of inferences/s against logic ({logic}) used; "
            "< the point 'thresher build' would pick")


def _scatter(result: dict) -> str:
    """Inferences/s against logic used: every built point, the front as a line, build's pick
    ringed."""
    pts = [r for r in result["points"] if r.get("built") and r.get("logic_used") is not None]
    if not pts:
        return "<p>(no point built)</p>"
    width, height, left, bottom, top_pad, right = 640, 360, 80, 50, 40, 20
    x_max = _nice(max(r["logic_used"] for r in pts) * 1.05)
    y_max = _nice(max(r["inferences_per_s"] for r in pts) * 1.05)
    sx = lambda v: left + v / x_max * (width - left - right)              # noqa: E731
    sy = lambda v: height - bottom - v / y_max * (height - bottom - top_pad)  # noqa: E731
    out = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="inferences per second against logic used">']
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        y, x = sy(frac * y_max), sx(frac * x_max)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="#eee"/><text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" '
                   f'font-size="11">{frac * y_max:,.0f}</text>')
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top_pad}" y2="{height - bottom}" '
                   f'stroke="#eee"/><text x="{x:.1f}" y="{height - bottom + 16}" '
                   f'text-anchor="middle" font-size="11">{frac * x_max:,.0f}</text>')
    logic = pts[0]["logic_resource"]
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle" '
               f'font-size="12">logic used ({_esc(logic)})</text>')
    out.append(f'<text x="16" y="{(top_pad + height - bottom) / 2}" font-size="12" '
               f'text-anchor="middle" transform="rotate(-90 16 {(top_pad + height - bottom) / 2})"'
               f'>inferences / s</text>')
    front = sorted((r for r in pts if r.get("pareto")), key=lambda r: r["logic_used"])
    if front:   # the front as a staircase: what the best point for a logic budget achieves
        path = [f"M{sx(front[0]['logic_used']):.1f},{sy(0):.1f}"]
        for r in front:
            path += [f"H{sx(r['logic_used']):.1f}", f"V{sy(r['inferences_per_s']):.1f}"]
        path.append(f"H{sx(x_max):.1f}")
        out.append(f'<path d="{" ".join(path)}" fill="none" stroke="{_BLUE}" stroke-width="1.5" '
                   f'stroke-dasharray="4 3"/>')
    for r in pts:
        colour = _BLUE if r.get("pareto") else _RED if not r.get("meets_timing") else _GREY
        x, y = sx(r["logic_used"]), sy(r["inferences_per_s"])
        tip = (f"{r['point']}: {r['logic_used']:,} {logic}, {r['inferences_per_s']:,.0f} "
               f"inferences/s at {r['clock_mhz']:g} MHz (Fmax {r['fmax_mhz']})")
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}"><title>{_esc(tip)}'
                   f'</title></circle>')
        out.append(f'<text x="{x + 8:.1f}" y="{y - 6:.1f}" font-size="10" fill="#555">'
                   f'{r["pe"]}x{r["simd"]}</text>')
        if r.get("build_pick"):
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="none" '
                       f'stroke="{_ORANGE}" stroke-width="2"/>')
    legend_y = 14
    for j, (colour, text) in enumerate(((_BLUE, "on the front"), (_GREY, "dominated"),
                                        (_RED, "timing missed"))):
        x = left + 10 + j * 120
        out.append(f'<circle cx="{x}" cy="{legend_y}" r="5" fill="{colour}"/>'
                   f'<text x="{x + 9}" y="{legend_y + 4}" font-size="11">{text}</text>')
    x = left + 370
    out.append(f'<circle cx="{x}" cy="{legend_y}" r="7" fill="none" stroke="{_ORANGE}" '
               f'stroke-width="2"/><text x="{x + 11}" y="{legend_y + 4}" font-size="11">'
               f'build&#8217;s pick</text></svg>')
    return "".join(out)


def _nice(top: float) -> float:
    """An axis end at or above ``top`` whose quarters are round numbers (1, 2, 2.5, 5 x 10^k)."""
    if top <= 0:
        return 1.0
    step = top / 4
    magnitude = 10 ** math.floor(math.log10(step))
    for m in (1, 2, 2.5, 5, 10):
        if m * magnitude >= step:
            return 4 * m * magnitude
    return top


def render_html(result: dict) -> str:
    """The page of a sweep (the dict written to explore.json)."""
    columns = [("point", "point")] + [c for c in _COLUMNS if c[0] != "mark"] + \
        [("mark", "front / pick")]
    rows = _table_rows(result)
    for row in rows:
        row["mark"] = {"*": "front", "<": "build's pick", "*<": "front, build's pick"}.get(
            row["mark"], "")
    failed = [r for r in result["points"] if not r.get("built")]
    notes = "".join(f"<li><b>{_esc(r['point'])}</b>: {_esc(r['message'])}</li>" for r in failed)
    net = result["network"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>thresher explore: {_esc(net['name'])} on {_esc(result['board'])}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 2em; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ border-bottom: 1px solid #eee; padding: 3px 10px; text-align: left; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
</style></head><body>
<h1>thresher explore: {_esc(net['name'])} on {_esc(result['board'])} ({_esc(result['device'])})</h1>
<p>{len(result['points'])} builds ({net['macs']:,} MACs per inference), {_esc(result['executor']
['description'])}, {result['seconds']:,} s.</p>
<h2>Inferences per second against logic used</h2>
{_scatter(result)}
<h2>Points</h2>
{_table(rows, columns)}
{f"<h2>Not built</h2><ul>{notes}</ul>" if notes else ""}
</body></html>
"""
