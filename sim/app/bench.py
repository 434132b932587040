"""``thresher bench``: one table, measured in one run, for the default model and TFC_2W2A.

Per model: golden engine vs qonnx's executor (time ratio on the same batch), Verilator's simulated
cycles per second, cycles per inference against the MAC bound, and per board: build seconds,
Fmax and resources from the real place-and-route report.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["bench_all", "format_bench", "TARGET_MHZ"]

#: builds ask nextpnr for these clocks (the issue's Fmax goals), so that Fmax is measured under a
#: real timing target rather than the slow oscillator's
TARGET_MHZ = {"icebreaker": 36.0, "ulx3s-85f": 100.0}


def _models():
    from ...model_tools.bench import mnist_like
    from ...model_tools.builtin import DEFAULT_MODEL, TFC_MODEL, digits_test, mnist4
    x, _ = digits_test()
    yield "default (digits)", DEFAULT_MODEL, x, ("icebreaker", "ulx3s-85f")
    yield "TFC_2W2A (MNIST)", TFC_MODEL, mnist_like(mnist4()[0], 1000), ("ulx3s-85f",)


def bench_all(out_dir: Path, progress=None, say=print) -> list[dict]:
    """Measure every row; builds go to ``out_dir/<model>-<board>``."""
    from ...hw.build import build
    from ...hw.resources import choose_parallelism
    from ...hw.plan import mac_bound_cycles
    from ...model_tools.bench import bench_golden
    from ...model_tools.load import load_model

    from ..verilator import accelerator_model, run_verilator

    rows = []
    for label, path, x, boards in _models():
        say(f"{label}: golden engine vs qonnx on {len(x)} inputs ...")
        golden_row = bench_golden(path, x, progress(len(x), "qonnx") if progress else None)
        net = load_model(path)
        for board in boards:
            pe, simd = choose_parallelism(net, board)
            say(f"{label}: Verilator at PE={pe} x SIMD={simd} ...")
            run_verilator(net, x, pe, simd)           # build (or cache) first
            t0 = time.perf_counter()
            _, cycles = run_verilator(net, x, pe, simd)
            sim_s = time.perf_counter() - t0
            stats = accelerator_model(net, pe, simd).last_stats
            say(f"{label}: bitstream for {board} ...")
            built = build(net, board, Path(out_dir) / f"{path.stem}-{board}", pe=pe, simd=simd,
                          clock_mhz=TARGET_MHZ.get(board))
            rows.append({
                "model": label, "inputs": len(x), "board": board, "pe": pe, "simd": simd,
                "golden_s": golden_row["golden_s"], "qonnx_s": golden_row["qonnx_s"],
                "golden_speedup": golden_row["speedup"],
                "sim_cycles_per_s": stats.cycles_per_second, "sim_s": sim_s,
                "cycles": int(np.max(cycles)), "mac_bound": mac_bound_cycles(net, pe, simd),
                "build_s": built["build_seconds"], "fmax_mhz": built["fmax_mhz"],
                "clock_mhz": built["clock_mhz"], "meets_timing": built["meets_timing"],
                "utilization": built["utilization"],
                "device": built["device"],
            })
    return rows


def format_bench(rows: list[dict]) -> str:
    head = ("model", "board", "PE x SIMD", "golden vs qonnx", "sim cycles/s", "cycles (MAC bound)",
            "build s", "Fmax MHz (target)", "resources used / available")
    lines = []
    for r in rows:
        used = ", ".join(f"{k} {v['used']}/{v['available']}" for k, v in r["utilization"].items()
                         if v["used"])
        lines.append((r["model"], r["board"], f"{r['pe']} x {r['simd']}",
                      f"{r['golden_speedup']:.0f}x ({r['golden_s'] * 1e3:.0f} ms vs "
                      f"{r['qonnx_s']:.1f} s)",
                      f"{r['sim_cycles_per_s'] / 1e6:.2f} M",
                      f"{r['cycles']:,} ({r['mac_bound']:,}, {r['cycles'] / r['mac_bound']:.2f}x)",
                      f"{r['build_s']:.0f}", f"{r['fmax_mhz']} ({r['clock_mhz']:g})", used))
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head)]
    fmt = lambda cells: " | ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join(["| " + fmt(head) + " |", "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + ["| " + fmt(l) + " |" for l in lines])
