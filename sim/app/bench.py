"""``thresher bench``: one table, measured in one run, for the default model and TFC_2W2A.

Per model: golden engine vs qonnx's executor (time ratio on the same batch), Verilator's simulated
cycles per second, cycles per inference against the MAC bound, and per board: build seconds,
Fmax and resources from the real place-and-route report.

``thresher bench resources --board B [-n N]`` (:func:`bench_resources`) checks the resource
estimate instead: N held-out-like small CNNs (``small_cnn(0 .. N-1)``) at the array
``array_candidates`` picks, synthesised and packed (no placement), predicted against packed.

``python -m thresher.sim.app.bench calibrate --board B --out F`` (:func:`calibrate`) measures
the spread of networks and arrays the logic model of :mod:`hw.resources` is fitted to
(``docs/calibration/*.json``); ``... fit --out F`` (:func:`fit`) fits it and prints the
coefficients and the error band (in-sample and leave-one-network-out).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["CALIBRATION_POINTS", "FINN_BNN_PYNQ", "TARGET_MHZ", "bench_all", "bench_finn",
           "bench_resources", "calibrate", "fit", "format_bench", "format_finn", "format_resources",
           "measure_resources"]

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


# -- FINN's BNN-PYNQ networks against FINN's published throughput ---------------------------------

#: BNN-PYNQ's throughput on the Pynq-Z1 (Zynq-7020, 53 k LUTs), images/s (docs/anchors.md)
FINN_BNN_PYNQ = {"cnv_1w1a": 9150, "cnv_2w2a": 2580}


def bench_finn(out_dir: Path, board: str = "ulx3s-85f", say=print) -> list[dict]:
    """FINN's CIFAR-10 CNV_1W1A and CNV_2W2A (Brevitas' ``brevitas_examples.bnn_pynq``
    definitions, random weights: :func:`model_tools.train.export_bnn_pynq`) built for ``board``
    with default options, as a user would; one row each: the array and clock the build picked,
    cycles against the MAC bound, Fmax, the accelerator's inferences/s, and BNN-PYNQ's figure
    beside it. A network that gets no bitstream has a row saying why (``refused``)."""
    from ...hw.board.platforms import board_spec
    from ...hw.build import build
    from ...model_tools.errors import ThresherError
    from ...model_tools.load import load_network
    from ...model_tools.train import export_bnn_pynq

    board_spec(board)                      # an unknown board: refused before minutes of work
    out_dir = Path(out_dir)
    rows = []
    for name, finn in FINN_BNN_PYNQ.items():
        say(f"{name}: Brevitas' definition with random weights, exported ...")
        net = load_network(export_bnn_pynq(name, out_dir / f"{name}.onnx"))
        row = {"network": name, "board": board, "macs": net.macs, "finn_images_per_s": finn}
        say(f"{name}: building for {board} ...")
        try:
            r = build(net, board, out_dir / f"{name}-{board}")
        except ThresherError as e:
            rows.append({**row, "refused": str(e)})
            continue
        rows.append({**row, "pe": r["pe"], "simd": r["simd"], "clock_mhz": r["clock_mhz"],
                     "fmax_mhz": r["fmax_mhz"], "cycles": r["cycles_per_inference"],
                     "mac_bound": r["mac_bound_cycles"],
                     "images_per_s": r["inferences_per_s"],
                     "link_images_per_s": r["link_inferences_per_s"],
                     "build_s": r["build_seconds"], "utilization": r["utilization"]})
    return rows


def format_finn(rows: list[dict]) -> str:
    """The table of :func:`bench_finn`."""
    head = ("network", "board", "PE x SIMD", "cycles (MAC bound)", "clock / Fmax MHz",
            "images/s", "BNN-PYNQ (Pynq-Z1)", "of BNN-PYNQ", "build s")
    lines = []
    for r in rows:
        finn = f"{r['finn_images_per_s']:,}"
        if "refused" in r:
            lines.append((r["network"], r["board"], "no bitstream", r["refused"], "", "", finn,
                          "", ""))
            continue
        lines.append((r["network"], r["board"], f"{r['pe']} x {r['simd']}",
                      f"{r['cycles']:,} ({r['mac_bound']:,}, {r['cycles'] / r['mac_bound']:.2f}x)",
                      f"{r['clock_mhz']:g} / {r['fmax_mhz']}", f"{r['images_per_s']:,}", finn,
                      f"{r['images_per_s'] / r['finn_images_per_s']:.2%}", f"{r['build_s']:.0f}"))
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head)]

    def fmt(cells):
        return " | ".join(c.ljust(w) for c, w in zip(cells, widths))

    return "\n".join(["| " + fmt(head) + " |", "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + ["| " + fmt(l) + " |" for l in lines])


# -- the resource estimate against synthesis and packing ---------------------------------------

def measure_resources(network, pe: int, simd: int, board: str, out_dir: Path,
                      clock_mhz: float | None = None) -> dict:
    """Synthesise ``Accelerator(network, pe, simd)`` behind the UART for ``board`` as a build
    does and pack it with nextpnr (``--pack-only``: the device's own counts, what placement has
    to meet), without placing (:func:`hw.build.synthesize_and_pack`). Returns ``{"yosys":
    cells, "packed": utilisation, "seconds": s}``."""
    from ...hw.build import synthesize_and_pack
    t0 = time.monotonic()
    measured = synthesize_and_pack(network, pe, simd, board, out_dir, clock_mhz=clock_mhz)
    return {**measured, "seconds": round(time.monotonic() - t0, 1)}


def _relative(predicted: float, measured: float) -> float:
    return (predicted - measured) / measured if measured else float(predicted != measured)


def bench_resources(board: str, n: int, out_dir: Path, say=print) -> list[dict]:
    """``small_cnn(0 .. n-1)`` at the array :func:`hw.resources.array_candidates` picks for
    ``board``: predicted (:func:`hw.resources.estimate_resources`) against packed resources."""
    from ...hw.board.platforms import board_spec
    from ...hw.plan import mac_bound_cycles, predict_cycles
    from ...hw.resources import array_candidates, estimate_resources
    from ...model_tools.errors import ThresherError
    from ...model_tools.netgen import small_cnn

    spec = board_spec(board)
    rows = []
    for seed in range(n):
        net = small_cnn(seed)
        try:
            pe, simd = array_candidates(net, board)[0]
        except ThresherError as e:
            say(f"small_cnn({seed}): {e}")
            rows.append({"network": net.name, "seed": seed, "refused": str(e)})
            continue
        predicted = estimate_resources(net, pe, simd, board)
        say(f"small_cnn({seed}): {net.macs:,} MACs, PE={pe} x SIMD={simd}: synthesis and packing "
            f"...")
        measured = measure_resources(net, pe, simd, board, Path(out_dir) / f"small_cnn_{seed}")
        row = {"network": net.name, "seed": seed, "pe": pe, "simd": simd,
               "cycles": predict_cycles(net, pe, simd),
               "mac_bound": mac_bound_cycles(net, pe, simd), "seconds": measured["seconds"]}
        for k in (spec.logic, spec.bram, spec.dsp):
            used = measured["packed"].get(k, {"used": 0})["used"]
            row[k] = {"predicted": predicted[k]["used"], "packed": used,
                      "available": predicted[k]["available"],
                      "error": _relative(predicted[k]["used"], used)}
        rows.append(row)
    return rows


def format_resources(rows: list[dict], board: str) -> str:
    """The table of :func:`bench_resources` and its error band (max and median relative error
    of the estimate, per resource)."""
    from ...hw.board.platforms import board_spec
    spec = board_spec(board)
    keys = (spec.logic, spec.bram, spec.dsp)
    head = ("network", "PE x SIMD", "cycles (MAC bound)") + tuple(
        f"{k} predicted / packed" for k in keys)
    lines = []
    for r in rows:
        if "refused" in r:
            lines.append((r["network"], "refused", "", *([""] * len(keys))))
            continue
        lines.append((r["network"], f"{r['pe']} x {r['simd']}",
                      f"{r['cycles']:,} ({r['mac_bound']:,})",
                      *(f"{r[k]['predicted']:,} / {r[k]['packed']:,} of {r[k]['available']:,} "
                        f"({r[k]['error']:+.1%})" for k in keys)))
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head)]

    def fmt(cells):
        return " | ".join(c.ljust(w) for c, w in zip(cells, widths))

    table = ["| " + fmt(head) + " |", "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + \
        ["| " + fmt(l) + " |" for l in lines]
    measured = [r for r in rows if "refused" not in r]
    for k in keys:
        errors = sorted(abs(r[k]["error"]) for r in measured)
        if errors:
            table.append(f"{k}: max |error| {errors[-1]:.1%}, median {errors[len(errors) // 2]:.1%}"
                         f", estimate under the packed count on "
                         f"{sum(r[k]['error'] < 0 for r in measured)} of {len(measured)}")
    return "\n".join(table)


# -- calibration: the spread the logic model is fitted to --------------------------------------

#: (network, arrays) per family: ``cnn<seed>`` is ``small_cnn(seed)``; ``default`` and ``tfc`` the
#: built-in models. Arrays span 4 to 64 lanes, square and skewed. The seeds start at 100:
#: ``thresher bench resources`` checks the model on ``small_cnn(0 ..)``, networks it never saw.
CALIBRATION_POINTS = {
    "ice40": [("default", ((4, 8), (8, 4), (8, 8), (2, 4))),
              ("tfc", ((8, 8), (4, 4), (16, 4)))] + [
        (f"cnn{seed}", arrays) for seed, arrays in enumerate([
            ((4, 4), (8, 8), (2, 16)), ((8, 4), (4, 16), (16, 2)), ((4, 8), (16, 4), (2, 2)),
            ((8, 8), (1, 16), (32, 2)), ((4, 4), (16, 2), (8, 8)), ((2, 4), (8, 4), (4, 16)),
            ((16, 4), (4, 8), (2, 32)), ((8, 2), (4, 4), (16, 1)), ((8, 8), (2, 4), (4, 8)),
            ((4, 16), (8, 4), (2, 2)), ((16, 2), (4, 4), (8, 8)), ((2, 8), (8, 4), (16, 4)),
        ], start=100)],
    "ecp5": [("default", ((8, 8), (4, 8))), ("tfc", ((8, 8), (16, 16)))] + [
        (f"cnn{seed}", arrays) for seed, arrays in enumerate([
            ((8, 8), (16, 4)), ((4, 16), (32, 2)), ((16, 4), (8, 8)), ((8, 8), (2, 32)),
            ((32, 2), (16, 4)), ((4, 4), (8, 8)),
        ], start=100)],
}


def calibration_network(name: str):
    """The network of a calibration point: ``cnn<seed>``, ``default`` or ``tfc``."""
    from ...model_tools.load import load_model
    from ...model_tools.netgen import small_cnn
    return small_cnn(int(name[3:])) if name.startswith("cnn") else load_model(name)


def calibrate(board: str, out: Path, work: Path, say=print) -> list[dict]:
    """Measure every point of :data:`CALIBRATION_POINTS` for ``board``'s family (synthesis and
    packing, as :func:`measure_resources`) into ``out`` (JSON, rewritten after each point;
    points already there are kept, so an interrupted run continues)."""
    import json

    from ...hw.board.platforms import board_spec
    family = board_spec(board).family
    out = Path(out)
    doc = json.loads(out.read_text()) if out.exists() else {}
    points = doc.get("points", [])
    done = {(p["network"], p["pe"], p["simd"]) for p in points}
    for name, arrays in CALIBRATION_POINTS[family]:
        net = calibration_network(name)
        for pe, simd in arrays:
            if (name, pe, simd) in done:
                continue
            say(f"{name} at PE={pe} x SIMD={simd} on {board} ...")
            m = measure_resources(net, pe, simd, board, Path(work) / f"{name}-{pe}x{simd}")
            points.append({"network": name, "pe": pe, "simd": simd, "yosys": m["yosys"],
                           "packed": {k: v["used"] for k, v in m["packed"].items() if v["used"]},
                           "seconds": m["seconds"]})
            say(f"  {points[-1]['packed']} in {m['seconds']} s")
            doc = {"board": board, "family": family,
                   "command": f"python -m thresher.sim.app.bench calibrate --board {board} "
                              f"--out {out}",
                   "points": points}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(doc, indent=1) + "\n")
    return points


def fit(path: Path, say=print) -> dict:
    """Fit :data:`hw.resources.LOGIC_MODEL` for the family of the calibration file ``path`` and
    report its error on the points: in-sample and leave-one-network-out (each network's points
    predicted by a model fitted without that network: the error to expect on a new network).
    Block RAM is compared too (the count is exact, the error should be 0)."""
    import json

    from ...hw.board.platforms import board_spec
    from ...hw.memories import accelerator_memories
    from ...hw.resources import FEATURES, LOGIC_MODEL, fit_logic_model, logic_features
    doc = json.loads(Path(path).read_text())
    board = doc["board"]
    spec = board_spec(board)
    feats, logic, brams, names = [], [], [], []
    for p in doc["points"]:
        net = calibration_network(p["network"])
        mems = accelerator_memories(net, p["pe"], p["simd"], board)
        feats.append(logic_features(net, p["pe"], p["simd"], board, memories=mems))
        logic.append(p["packed"][spec.logic])
        brams.append((sum(m.brams for m in mems), p["packed"].get(spec.bram, 0)))
        names.append(p["network"])
    # the ECP5 has few points: it borrows the iCE40 model's proportions (hw.resources)
    options = {"prior": LOGIC_MODEL["ice40"]} if spec.family == "ecp5" else {}
    model = fit_logic_model(feats, logic, **options)

    def predict(m, f):
        return sum(m[k] * f[k] for k in FEATURES)

    inside = [predict(model, f) / y - 1 for f, y in zip(feats, logic)]
    held = []
    for i, (f, y) in enumerate(zip(feats, logic)):
        keep = [j for j in range(len(feats)) if names[j] != names[i]]
        m = fit_logic_model([feats[j] for j in keep], [logic[j] for j in keep], **options)
        held.append(predict(m, f) / y - 1)
    band = {
        "points": len(logic), "networks": len(set(names)),
        "coefficients": {k: round(v, 4) for k, v in model.items()},
        "logic_in_sample": {"max": float(np.max(np.abs(inside))),
                            "median": float(np.median(np.abs(inside)))},
        "logic_held_out": {"max": float(np.max(np.abs(held))),
                           "median": float(np.median(np.abs(held))),
                           "under": int(sum(e < 0 for e in held))},
        "bram_exact": sum(a == b for a, b in brams), "bram_max_error": max(abs(a - b)
                                                                            for a, b in brams),
    }
    say(json.dumps(band, indent=1))
    for n, p, e, h in zip(names, doc["points"], inside, held):
        say(f"  {n:8s} {p['pe']:3d} x {p['simd']:<3d} {spec.logic} {p['packed'][spec.logic]:6,} "
            f"fit {e:+6.1%}  held out {h:+6.1%}")
    return band


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(prog="python -m thresher.sim.app.bench")
    parser.add_argument("what", choices=("calibrate", "fit"))
    parser.add_argument("--board", help="calibrate: the board to build for")
    parser.add_argument("--out", required=True, type=Path, help="the calibration JSON")
    parser.add_argument("--work", default="thresher-calibration", type=Path,
                        help="where the builds go")
    a = parser.parse_args()
    if a.what == "calibrate":
        calibrate(a.board, a.out, a.work)
    else:
        fit(a.out)
