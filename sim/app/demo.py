"""``thresher demo``: the main job on the embedded default model, step by step.

1. fold the default model (trained by ``thresher train``) into the integer network;
2. the float model itself (qonnx's executor) on every held-out test image;
3. the integer network (golden engine) on the same images;
4. a bitstream for the board (yosys + nextpnr from pip), with the array and the clock ``build``
   chooses by default;
5. that very array, generated again and simulated (Verilator, else Amaranth's simulator) on
   every image, bit-exact against the golden engine;
6. a summary on the terminal, ``DIR/report.json`` and ``DIR/report.html``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ...model_tools.errors import ThresherError

__all__ = ["run_demo", "DEMO_BOARD"]

DEMO_BOARD = "icebreaker"


def _confusion(labels: np.ndarray, predicted: np.ndarray, classes: int) -> list[list[int]]:
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (labels, predicted), 1)
    return m.tolist()


def layer_cycles(net, pe: int, simd: int) -> list[dict]:
    """Per hardware stage: its cycles in the cycle model and its MAC bound."""
    from ...hw.plan import Plan, ceil_div
    plan = Plan(net, pe, simd)
    rows = []
    for stage, cycles in zip(plan.stages, plan.stage_cycles()):
        macs = getattr(stage.layer, "macs", 0)
        rows.append({"name": stage.layer.name, "kind": stage.kind, "macs": macs, "cycles": cycles,
                     "bound": ceil_div(macs, pe * simd)})
    return rows


def run_demo(out: Path, progress, say=print, board: str = DEMO_BOARD,
             clock_mhz: float | None = None) -> dict:
    """Run the demo into ``out``; return the report (also ``out/report.json``)."""
    from ...hw.build import build
    from ...hw.plan import mac_bound_cycles
    from ...model_tools import golden
    from ...model_tools.bench import qonnx_reference
    from ...model_tools.builtin import DEFAULT_MODEL, default_record, digits_test
    from ...model_tools.files import atomic_write_bytes
    from ...model_tools.load import load_model
    from ...model_tools.report import format_table, layer_rows, network_summary

    from . import report_html
    from ..engines import run_engine

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ThresherError(f"{out}: exists and is not a directory")
    x, labels = digits_test()
    record = default_record()
    say(f"thresher demo: {DEFAULT_MODEL.name}, digits, {record['wbits']}-bit weights, "
        f"{record['abits']}-bit activations (trained by `{record['command']}`)")

    seconds = {}
    t0 = time.perf_counter()
    net = load_model(DEFAULT_MODEL)
    seconds["fold"] = time.perf_counter() - t0
    say(f"\n[1/5] folded into an integer network in {seconds['fold']:.2f} s\n")
    say(format_table(layer_rows(net)))

    t0 = time.perf_counter()
    float_out = qonnx_reference(DEFAULT_MODEL, x, progress(len(x), "float model (qonnx)"))
    seconds["float"] = time.perf_counter() - t0
    float_class = float_out.argmax(1)
    say(f"\n[2/5] float model (qonnx executor): {np.mean(float_class == labels):.2%} on "
        f"{len(x)} held-out images ({seconds['float']:.1f} s)")

    t0 = time.perf_counter()
    ints = golden.run_integer(net, x)
    integer_out = golden.dequantize(net, ints)
    seconds["golden"] = time.perf_counter() - t0
    integer_class = integer_out.argmax(1)
    rel_err = float(np.abs(integer_out - float_out).max() / np.abs(float_out).max())
    say(f"[3/5] integer network (golden engine): {np.mean(integer_class == labels):.2%}, same "
        f"class as the float model on {np.mean(integer_class == float_class):.2%}, max |difference| "
        f"{rel_err:.1e} of max |output| ({seconds['golden'] * 1e3:.0f} ms)")

    t0 = time.perf_counter()
    built = build(net, board, out / "build", clock_mhz=clock_mhz)
    pe, simd = built["pe"], built["simd"]
    seconds["build"] = time.perf_counter() - t0
    say(f"[4/5] bitstream for {board} ({built['device']}): PE={pe} x SIMD={simd}, Fmax "
        f"{built['fmax_mhz']} MHz at {built['clock_mhz']} MHz, built in "
        f"{built['build_seconds']} s -> {out / 'build' / built['bitstream']}")

    t0 = time.perf_counter()
    rtl = run_engine(net, x, "rtl", pe=pe, simd=simd)         # the array that was built
    seconds["rtl"] = time.perf_counter() - t0
    rtl_class = rtl.outputs.argmax(1)
    bit_exact = bool(np.array_equal(rtl.integers, ints))
    cycles = int(np.max(rtl.cycles))
    for note in rtl.notes:
        say(f"      note: {note}")
    say(f"[5/5] RTL of that array ({rtl.engine}) on all {len(x)} images: "
        f"{'bit-exact with' if bit_exact else 'DIFFERENT from'} the golden engine, "
        f"{np.mean(rtl_class == labels):.2%}; {cycles:,} cycles per inference "
        f"({seconds['rtl']:.1f} s)")

    report = {
        "model": DEFAULT_MODEL.name,
        "test_images": int(len(x)),
        "accuracy": {"float": float(np.mean(float_class == labels)),
                     "integer": float(np.mean(integer_class == labels)),
                     "rtl": float(np.mean(rtl_class == labels))},
        "agreement_rtl_vs_float": float(np.mean(rtl_class == float_class)),
        "agreement_integer_vs_float": float(np.mean(integer_class == float_class)),
        "rtl_bit_exact_vs_golden": bit_exact,
        "rtl_engine": rtl.engine,
        "golden_vs_float_rel_err": rel_err,
        "board": board,
        "fmax_mhz": built["fmax_mhz"],
        "meets_timing": built["meets_timing"],
        "clock_mhz": built["clock_mhz"],
        "cycles_per_inference": cycles,
        "mac_bound_cycles": mac_bound_cycles(net, pe, simd),
        "pe": pe, "simd": simd,
        "build": built,
        "network": network_summary(net),
        "layers": layer_rows(net),
        "layer_cycles": layer_cycles(net, pe, simd),
        "confusion": _confusion(labels, integer_class, int(float_out.shape[1])),
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "report.json", json.dumps(report, indent=1).encode())
    report_html.write(report, out / "report.html")
    _summary(report, say)
    say(f"\nwrote {out / 'report.json'} and {out / 'report.html'}")
    if not bit_exact or report["agreement_rtl_vs_float"] != 1.0:
        raise ThresherError("the hardware disagrees with the model (see report.json)")
    return report


def _summary(r: dict, say) -> None:
    util = r["build"]["utilization"]
    rows = [
        ("test images", f"{r['test_images']}"),
        ("accuracy float / integer / RTL", " / ".join(f"{r['accuracy'][k]:.2%}"
                                                      for k in ("float", "integer", "rtl"))),
        ("RTL class = float class", f"{r['agreement_rtl_vs_float']:.2%}"),
        ("RTL vs golden", "bit-exact" if r["rtl_bit_exact_vs_golden"] else "DIFFERENT"),
        ("parallelism", f"PE={r['pe']} x SIMD={r['simd']}"),
        ("cycles per inference", f"{r['cycles_per_inference']:,} (MAC bound "
                                 f"{r['mac_bound_cycles']:,}, "
                                 f"{r['cycles_per_inference'] / r['mac_bound_cycles']:.2f}x)"),
        ("board", f"{r['board']} ({r['build']['device']})"),
        ("Fmax / clock", f"{r['fmax_mhz']} MHz / {r['clock_mhz']} MHz"),
        ("inferences per second", f"{r['build']['inferences_per_s']:,.0f} at {r['clock_mhz']} MHz"),
        ("MAC/s", f"{r['network']['macs'] * r['build']['inferences_per_s'] / 1e6:,.0f} M"),
    ] + [(f"  {k}", f"{v['used']:,} / {v['available']:,}") for k, v in util.items() if v["used"]]
    width = max(len(k) for k, _ in rows)
    say("\nsummary")
    for k, v in rows:
        say(f"  {k.ljust(width)}  {v}")
