"""The ``thresher`` command line.

It sits on top of ``model_tools``, ``hw`` and ``sim`` (it lives in ``sim`` because that package is
the top of the dependency chain). User errors are :class:`ThresherError` and become one line,
``thresher: error: <what and where>``, with exit status 2 -- here, in one place.
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from ...model_tools import progress
from ...model_tools.builtin import BUILTIN_MODELS
from ...model_tools.errors import ThresherError
from ..engines import ENGINES

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line, like every other error."""

    def error(self, message):
        raise ThresherError(f"{message} (see '{self.prog} --help')")


def _progress(total: int, label: str):
    """A progress callback for ``total`` units (see :mod:`thresher.model_tools.progress`)."""
    return progress.bar(total, label)


def _output_file(path, what: str) -> Path:
    """An output file path whose directory exists (checked before any work is done)."""
    out = Path(path)
    if out.is_dir():
        raise ThresherError(f"{out}: is a directory; give the {what} to write")
    if not out.parent.is_dir():
        raise ThresherError(f"{out.parent}: no such directory")
    return out


def _output_dir(path) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ThresherError(f"{out}: exists and is not a directory")
    return out


# -- commands ---------------------------------------------------------------------------------------

def cmd_compile(args) -> int:
    from ...hw.build import predict_build
    from ...hw.plan import Plan, mac_bound_cycles, predict_cycles
    from ...model_tools.load import load_network
    from ...model_tools.report import (format_table, layer_rows, network_summary, skip_connections,
                                       table_columns)
    html = getattr(args, "html", None)      # info --html: checked before any work is done
    html = _output_file(html, "HTML page") if html is not None else None
    net = load_network(args.model, input_type=args.input_type)
    if args.out is not None:
        net.save(_output_dir(args.out))
    print(format_table(layer_rows(net), table_columns(net)))
    if not net.is_chain:
        print(f"\nskips and branches: {', '.join(skip_connections(net))}")
    s = network_summary(net)
    print(f"\n{s['macs']:,} MACs per inference, {s['params']:,} weights "
          f"({s['weight_bits_total'] / 1024:.1f} kbit), widest accumulator {s['max_acc_bits']} bits")
    try:    # the integer network stands on its own; say why hardware cannot
        if args.board is not None:
            p = predict_build(net, args.board, args.pe, args.simd)
            print(format_prediction(p))
            pe, simd = p["pe"], p["simd"]
        else:
            pe, simd = args.pe or 8, args.simd or 8
            predicted, bound = predict_cycles(net, pe, simd), mac_bound_cycles(net, pe, simd)
            print(f"PE={pe} x SIMD={simd}: {predicted:,} cycles per inference predicted, "
                  f"MAC bound {bound:,} ({predicted / bound:.2f}x); give --board for the array "
                  f"and clock a build would pick")
        print(format_feature_budget(Plan(net, pe, simd).feature_budget))
    except ThresherError as e:
        where = f"on {args.board}" if args.board else f"PE={args.pe or 8} x SIMD={args.simd or 8}"
        print(f"{where}: no hardware plan ({e})")
    if args.out is not None:
        print(f"wrote {Path(args.out) / 'network.json'} and network.npz")
    if html is not None:
        from .report_html import write_network
        write_network(net, html)
        print(f"wrote {html}")
    return 0


def format_feature_budget(b: dict) -> str:
    """The feature RAM of a plan (``Plan.feature_budget``): its regions, allocated by liveness."""
    return (f"feature RAM: {b['regions']} regions of {b['region_words']:,} words "
            f"({b['words']:,} words, {b['bits'] / 1024:.1f} kbit), at most {b['peak_words']:,} "
            f"words of feature maps live at once")


def format_prediction(p: dict) -> str:
    """What ``build`` would pick, from :func:`thresher.hw.build.predict_build`."""
    est = ", ".join(f"{k} {v['used']:,}/{v['available']:,}" for k, v in p["estimate"].items())
    return (f"on {p['board']}, build would pick PE={p['pe']} x SIMD={p['simd']} at "
            f"{p['clock_mhz']:g} MHz: {p['cycles_per_inference']:,} cycles per inference "
            f"(MAC bound {p['mac_bound_cycles']:,}, "
            f"{p['cycles_per_inference'] / p['mac_bound_cycles']:.2f}x), "
            f"{p['inferences_per_s']:,.0f} inferences/s; estimated {est}")


def cmd_info(args) -> int:
    args.out = None
    return cmd_compile(args)


def cmd_run(args) -> int:
    from ...model_tools.files import load_array, save_array
    from ...model_tools.load import load_network
    from ..engines import run_engine
    out = _output_file(args.out, "output .npy file")
    if args.trace is not None and not str(args.trace).endswith((".vcd", ".fst")):
        raise ThresherError(f"--trace {args.trace}: give a .vcd or .fst file name")
    net = load_network(args.model, input_type=args.input_type)
    x = load_array(args.input)
    if (args.engine == "board") != (args.port is not None):
        raise ThresherError("--engine board needs --port, and --port needs --engine board")
    baud, dsp_lanes, built = None, None, None
    if args.engine == "board" and args.port in ("sim", "verilator") and args.build is not None:
        if args.baud is not None:
            raise ThresherError("--baud: a simulated board with --build runs at the build's rate;"
                                " leave --baud out")
        built = _built_configuration(args, net)        # simulate that build's board
    elif args.engine == "board":
        from ..transport import board_baud
        baud = board_baud(args.build, args.baud)
    elif args.baud is not None:
        raise ThresherError("--baud is for --engine board (the board's UART)")
    elif args.build is not None and args.engine == "golden":
        raise ThresherError("--build is for the hardware engines (rtl, pysim: simulate that "
                            "build's accelerator; board: its UART rate)")
    elif args.build is not None:
        accelerator = _built_configuration(args, net)      # simulate that build's accelerator
        args.pe, args.simd = accelerator["pe"], accelerator["simd"]
        dsp_lanes = accelerator["dsp_lanes"]
    args.pe, args.simd = args.pe or 8, args.simd or 8
    result = run_engine(net, x, args.engine, pe=args.pe, simd=args.simd, trace=args.trace,
                        port=args.port, baud=baud, dsp_lanes=dsp_lanes, built=built)
    for note in result.notes:
        print(f"thresher: note: {note}", file=sys.stderr)
    save_array(out, result.outputs)
    y = result.outputs
    print(f"wrote {out}: {y.shape[0]} outputs of shape {tuple(y.shape[1:])} ({result.engine} engine)")
    if result.cycles is not None and len(result.cycles):
        where = "" if args.engine == "board" else f" (PE={args.pe}, SIMD={args.simd})"
        print(f"{int(np.mean(result.cycles)):,} cycles per inference{where}")
    if args.trace:
        print(f"wrote the waveform of the first input to {args.trace}")
    return 0


def _built_configuration(args, net) -> dict:
    """:func:`hw.build.built_configuration` of ``args.build``, checked against the model (the
    network hash the build recorded) and any --pe / --simd given."""
    from ...hw.board.frame import network_hash
    from ...hw.build import built_configuration
    built = built_configuration(args.build)
    if network_hash(net) != built["network_hash"]:
        raise ThresherError(f"--build {args.build}: built from another network (hash "
                            f"0x{built['network_hash']:08x}, this model's 0x{network_hash(net):08x});"
                            f" give the model it was built from")
    for name in ("pe", "simd"):
        given = getattr(args, name)
        if given is not None and given != built[name]:
            raise ThresherError(f"--{name} {given}: the build in {args.build} has "
                                f"{name.upper()}={built[name]}; leave --{name} out")
    return built


def cmd_build(args) -> int:
    from ...hw.build import build
    from ...model_tools.load import load_network
    net = load_network(args.model, input_type=args.input_type)
    out = _output_dir(args.out)
    if (args.pe is None) != (args.simd is None):
        raise ThresherError("give both --pe and --simd, or neither (then the board decides)")
    if args.clock is not None and not 1 <= args.clock <= 400:
        raise ThresherError(f"--clock {args.clock}: give a frequency in MHz between 1 and 400")
    options = dict(pe=args.pe, simd=args.simd, clock_mhz=args.clock)
    if args.route_minutes is not None:
        options["route_timeout_s"] = 60 * args.route_minutes
    if args.baud is not None:
        options["baud"] = args.baud
    if args.explore is not None:
        if args.pe is not None or args.clock is not None:
            raise ThresherError("--explore picks the array and the clock: give it without "
                                "--pe, --simd and --clock")
        from .explore import fastest_point
        point = fastest_point(args.explore, net, args.board)
        print(f"building {point['point']} of {args.explore}: the fastest point that sweep built "
              f"({point['inferences_per_s']:,.0f} inferences/s at {point['clock_mhz']:g} MHz)")
        options.update(pe=point["pe"], simd=point["simd"], clock_mhz=point["clock_mhz"],
                       seed=point["seed"])
    report = build(net, args.board, out, **options)
    print(format_build(report))
    print(f"\nwrote {out / report['bitstream']} and {out / 'report.json'}")
    print(f"the board's UART runs at {report['baud']:,} baud: give '--build {out}' to "
          f"'thresher run --engine board' (it reads the rate from report.json)")
    return 0


def format_build(r: dict) -> str:
    """The build report as a table, the same facts as report.json."""
    rows = [
        ("board", f"{r['board']} ({r['device']})"),
        ("parallelism", f"PE={r['pe']} x SIMD={r['simd']}"),
        ("clock / Fmax (routed)", f"{r['clock_mhz']} MHz / {r['fmax_mhz']} MHz"
                                  + ("" if r.get("meets_timing", True) else "  (TIMING NOT MET)")),
        ("cycles per inference", f"{r['cycles_per_inference']:,} (MAC bound "
                                 f"{r['mac_bound_cycles']:,})"),
        ("inferences per second", f"{r['inferences_per_s']:,} at {r['clock_mhz']} MHz"),
    ] + ([("UART link", f"{r['baud']:,} baud: {r['link_inferences_per_s']:,} inferences/s "
                        f"({r['link_bytes_per_inference']:,} bytes each)")]
         if "link_bytes_per_inference" in r else []) + [
        ("build seconds", f"{r['build_seconds']}"),
    ] + [(f"  {k}", f"{v['used']:,} / {v['available']:,}")
         for k, v in r["utilization"].items() if v["used"]]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def cmd_boards(args) -> int:
    from ...hw.build import boards
    from ...model_tools.report import format_table
    rows = [{"board": b["board"], "device": b["device"], "clock": f"{b['clock_mhz']:g} MHz",
             "logic": next(f"{v:,} {k}" for k, v in b["resources"].items()),
             "block RAM": next((f"{v} {k}" for k, v in b["resources"].items()
                                if k in ("ICESTORM_RAM", "DP16KD")), "-"),
             "multipliers": next((f"{v} {k}" for k, v in b["resources"].items()
                                  if k in ("ICESTORM_DSP", "MULT18X18D")), "-"),
             "UART": f"{b['uart_bridge']} ({b['uart_max_baud']:,} baud)",
             "note": b.get("note", "")} for b in boards()]
    columns = [(k, k) for k in rows[0]]
    print(format_table(rows, columns))
    return 0


def cmd_program(args) -> int:
    from ..program import program
    program(Path(args.dir), args.board, dry_run=args.dry_run)
    return 0


def cmd_verify(args) -> int:
    from ..campaign import default_workers
    from ..verify import verify_cases
    t0 = time.perf_counter()
    out = _output_dir(args.out)
    if args.case is not None:       # one case, again: in this process unless told otherwise
        seed, indices = args.case[0], [args.case[1]]
        workers = args.workers
    else:
        seed, indices = args.seed, range(args.random)
        workers = args.workers or (None if args.scheduler else default_workers())
    results = verify_cases(seed, indices, out, log=print, workers=workers,
                           scheduler=args.scheduler)
    failed = [r for r in results if not r.ok and not r.unsupported]
    died = sum(r.died for r in results)
    unsupported = sum(r.unsupported for r in results)
    passed = sum(r.ok for r in results)
    print(f"\n{passed} passed, {len(failed)} failed" + (f" ({died} died)" if died else "")
          + (f", {unsupported} skipped (configurations the planner refuses)" if unsupported
             else "") + f" in {time.perf_counter() - t0:.0f} s")
    print(f"wrote {out / 'verify.json'}")
    if failed:
        print(f"failing cases saved under {out}/; run one again with: {failed[0].command}",
              file=sys.stderr)
        return 1
    return 0


def cmd_explore(args) -> int:
    from ...model_tools.load import load_network
    from ..campaign import default_workers
    from .explore import explore, format_explore
    net = load_network(args.model, input_type=args.input_type)
    out = _output_dir(args.out)
    workers = args.workers or (None if args.scheduler else default_workers())
    result = explore(net, args.board, out, top=args.top, arrays=args.arrays, seeds=args.seeds,
                     clocks=args.clocks or (None,), workers=workers, scheduler=args.scheduler)
    print("\n" + format_explore(result))
    built = sum(bool(r.get("built")) for r in result["points"])
    print(f"\n{built} of {len(result['points'])} points built in {result['seconds']:.0f} s; "
          f"wrote {out / 'explore.json'} and {out / 'explore.html'}")
    return 0


def _arrays(text: str) -> list[tuple[int, int]]:
    """``8x4,4x4`` -> [(8, 4), (4, 4)], for ``thresher explore --arrays``."""
    arrays = []
    for item in text.split(","):
        pe, _, simd = item.strip().lower().partition("x")
        arrays.append((_power_of_two(pe), _power_of_two(simd)))
    return arrays


def _numbers(kind):
    """A comma-separated list of ``kind`` (``1,2,3``), for ``--seeds`` / ``--clocks``."""
    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"a comma-separated list of numbers, not {text!r}"
                                             ) from None
        if any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"positive numbers only, not {text!r}")
        return values
    return parse


def _case_id(text: str) -> tuple[int, int]:
    """``SEED:I`` -> (SEED, I), for ``thresher verify --case``."""
    seed, _, index = text.partition(":")
    try:
        seed, index = int(seed), int(index)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give SEED:I (e.g. 5:3), not {text!r}") from None
    if seed < 0 or index < 0:
        raise argparse.ArgumentTypeError(f"SEED and I are non-negative, not {text!r}")
    return seed, index


def cmd_bench(args) -> int:
    if args.what == "all":
        from .bench import bench_all, format_bench
        rows = bench_all(Path(args.out), _progress)
        print("\n" + format_bench(rows))
        return 0
    if args.what == "finn":
        from .bench import bench_finn, format_finn
        rows = bench_finn(Path(args.out) / "finn", args.board or "ulx3s-85f")
        print("\n" + format_finn(rows))
        return 0
    if args.what == "resources":
        from .bench import bench_resources, format_resources
        board = args.board or "icebreaker"
        rows = bench_resources(board, args.n or 10, Path(args.out) / "resources")
        print("\n" + format_resources(rows, board))
        return 0
    from ...model_tools.bench import bench_golden, mnist_like
    from ...model_tools.builtin import mnist4
    from ...model_tools.files import load_array
    from ...model_tools.load import resolve_model
    model = resolve_model(args.model)
    if not model.is_file():
        raise ThresherError(f"{args.model}: no such model file")
    if args.input:
        x = load_array(args.input).astype(np.float32)
    else:
        x = mnist_like(mnist4()[0], args.n or 1000, seed=0)
    r = bench_golden(model, x, _progress(len(x), "qonnx execute_onnx"))
    print(f"model {model.name}, {r['inputs']} inputs")
    print(f"  golden engine        {r['golden_s'] * 1e3:10.1f} ms")
    print(f"  qonnx execute_onnx   {r['qonnx_s'] * 1e3:10.1f} ms")
    print(f"  speed-up             {r['speedup']:10.1f} x")
    print(f"  max |golden - qonnx| {r['max_abs_err']:10.3g}  ({r['rel_err']:.2g} of max |output|), "
          f"same class on {r['same_class']:.1%}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo
    run_demo(Path(args.out), _progress)
    return 0


def cmd_train(args) -> int:
    from ...model_tools.train import train
    out = _output_file(args.out, ".onnx file")
    summary = train(dataset=args.dataset, wbits=args.wbits, abits=args.abits, epochs=args.epochs,
                    seed=args.seed, out=out, progress=sys.stderr.isatty())
    print(f"trained {summary['dataset']} W{summary['wbits']}A{summary['abits']} for "
          f"{summary['epochs']} epochs in {summary['train_seconds']:.1f} s: test accuracy "
          f"{summary['test_accuracy']:.2%} on {summary['test_images']} images; wrote {out}")
    return 0


# -- the parser -------------------------------------------------------------------------------------

def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _baud(text: str) -> int:
    from ...hw.board.uart import check_baud
    try:
        return check_baud(int(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e) if text.strip().lstrip("-").isdigit()
                                         else f"not an integer: {text!r}") from None


def _power_of_two(text: str) -> int:
    value = _positive(text)
    if value & (value - 1):
        raise argparse.ArgumentTypeError(f"must be a power of two, not {value}")
    return value


def _parallelism_options(parser, default=8):
    parser.add_argument("--pe", type=_power_of_two, default=default,
                        help="output channels per cycle" + (f" (default {default})" if default else ""))
    parser.add_argument("--simd", type=_power_of_two, default=default,
                        help="inputs per output per cycle" + (f" (default {default})" if default else ""))


def _input_type_option(parser):
    parser.add_argument("--input-type", metavar="TYPE", help="the raw input is already integers of "
                        "this type (UINT8, INT4, BIPOLAR, ...) for a model with no input quantizer; "
                        "overrides the graph input's finn_datatype annotation")


def _prediction_options(parser):
    _parallelism_options(parser, default=None)
    parser.add_argument("--board", help="predict the array and clock 'thresher build' would pick "
                        "for this board (see 'thresher boards'); without it, PE x SIMD (8 x 8)")


def _campaign_options(parser):
    """--workers N | --scheduler ADDR: where a campaign's tasks run (see sim/campaign.py)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive, metavar="N",
                       help="local processes (default: one per CPU)")
    where.add_argument("--scheduler", metavar="ADDR", help="a Dask scheduler, e.g. "
                       "tcp://HOST:8786 (needs the [cluster] extra)")


def _version() -> str:
    try:
        return version("thresher")
    except PackageNotFoundError:   # imported from a source tree that was never installed
        return "unknown (not installed)"


_MODEL_HELP = ("QONNX file (.onnx), a compiled directory, or a built-in model: "
               + ", ".join(f"{k} ({v[1]})" for k, v in BUILTIN_MODELS.items()))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="thresher", description="Trained quantized networks onto small FPGAs: fold "
                "batch-norm and quantized activations into integer thresholds, generate hardware, "
                "simulate it bit-exact, build bitstreams with pip-installed tools.")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    c = sub.add_parser("compile", help="fold a QONNX model into an integer network")
    c.add_argument("model", help=_MODEL_HELP)
    c.add_argument("-o", "--out", required=True, metavar="DIR", help="write network.json/.npz here")
    _prediction_options(c)
    _input_type_option(c)
    c.set_defaults(func=cmd_compile)

    i = sub.add_parser("info", help="print the per-layer table of a model")
    i.add_argument("model", help=_MODEL_HELP)
    i.add_argument("--html", metavar="FILE", help="also write the network as a page: its graph "
                   "(a box per layer, an arrow per input it reads) and the table")
    _prediction_options(i)
    _input_type_option(i)
    i.set_defaults(func=cmd_info)

    r = sub.add_parser("run", help="run a model on a batch of inputs")
    r.add_argument("model", help=_MODEL_HELP)
    r.add_argument("input", metavar="X.npy", help="a batch in the model's input shape")
    r.add_argument("-o", "--out", required=True, metavar="Y.npy", help="where the outputs go")
    r.add_argument("--engine", default="golden", choices=ENGINES,
                   help="golden (integer numpy), rtl (Verilator, else Amaranth's simulator), pysim")
    r.add_argument("--pe", type=_power_of_two, help="output channels per cycle (default 8, or "
                   "the build's with --build)")
    r.add_argument("--simd", type=_power_of_two, help="inputs per output per cycle (default 8, "
                   "or the build's with --build)")
    r.add_argument("--trace", metavar="FILE.vcd", help="dump the waveform of the first input")
    r.add_argument("--port", help="--engine board: the board's serial port (e.g. /dev/ttyUSB1),"
                   " or 'verilator' / 'sim' for a board simulated in Verilator / Amaranth")
    r.add_argument("--build", metavar="DIR", help="the directory 'thresher build' wrote: "
                   "--engine rtl / pysim simulate exactly its accelerator (array, DSP lanes), "
                   "--engine board talks to it at the UART rate its report.json records, and "
                   "--port verilator / sim simulates its whole UART bridge (clock, divisor)")
    r.add_argument("--baud", type=_baud, metavar="N", help="--engine board without --build: the "
                   "UART's rate (default 115200, the rate of builds that do not record one)")
    _input_type_option(r)
    r.set_defaults(func=cmd_run)

    bl = sub.add_parser("build", help="a bitstream for a board (yosys + nextpnr from pip)")
    bl.add_argument("model", help=_MODEL_HELP)
    bl.add_argument("--board", required=True, help="see 'thresher boards'")
    bl.add_argument("-o", "--out", required=True, metavar="DIR")
    bl.add_argument("--pe", type=_power_of_two, help="override the board's automatic choice")
    bl.add_argument("--simd", type=_power_of_two, help="override the board's automatic choice")
    bl.add_argument("--clock", type=float, metavar="MHZ", help="run from a PLL at this clock")
    bl.add_argument("--baud", type=_baud, metavar="N", help="the UART's rate (default: the "
                    "fastest standard rate, up to 3 Mbaud, that the board's USB-UART bridge and "
                    "the clock built at allow; see 'thresher boards')")
    bl.add_argument("--route-minutes", type=_positive_float, metavar="MIN", help="how long place "
                    "and route may take before the build steps down to a smaller array (default "
                    "30)")
    bl.add_argument("--explore", metavar="SWEEP", help="build the fastest point that 'thresher "
                    "explore -o SWEEP' built and that met its clock (array, clock, nextpnr seed)")
    _input_type_option(bl)
    bl.set_defaults(func=cmd_build)

    bo = sub.add_parser("boards", help="list the supported boards")
    bo.set_defaults(func=cmd_boards)

    pr = sub.add_parser("program", help="load a built bitstream onto its board (iCEBreaker, "
                        "UPduino v3: SPI flash via pyftdi; others: openFPGALoader)")
    pr.add_argument("dir", metavar="DIR", help="a directory written by 'thresher build'")
    pr.add_argument("--board", help="default: the board DIR was built for (its report.json)")
    pr.add_argument("--dry-run", action="store_true", help="print what would be done, do nothing")
    pr.set_defaults(func=cmd_program)

    v = sub.add_parser("verify", help="random networks on golden vs Verilator (and pysim)")
    which = v.add_mutually_exclusive_group(required=True)
    which.add_argument("--random", type=_positive, metavar="N", help="how many networks")
    which.add_argument("--case", type=_case_id, metavar="SEED:I",
                       help="run case I of seed SEED again, alone (as a failure's line says)")
    v.add_argument("--seed", type=int, default=0, help="with --random (default 0)")
    _campaign_options(v)
    v.add_argument("-o", "--out", default="thresher-verify", metavar="DIR",
                   help="where verify.json and failing cases go (default: ./thresher-verify)")
    v.set_defaults(func=cmd_verify)

    ex = sub.add_parser("explore", help="real builds over array shapes (seeds, clocks): a table, "
                        "explore.json and a Pareto plot in explore.html")
    ex.add_argument("model", help=_MODEL_HELP)
    _input_type_option(ex)
    ex.add_argument("--board", required=True, help="see 'thresher boards'")
    ex.add_argument("-o", "--out", required=True, metavar="DIR",
                    help="one subdirectory per point, explore.json, explore.html")
    ex.add_argument("--top", type=_positive, default=6, metavar="K",
                    help="build the resource model's first K candidate arrays (default 6)")
    ex.add_argument("--arrays", type=_arrays, metavar="PExSIMD,...",
                    help="build these arrays instead (e.g. 8x8,4x8)")
    ex.add_argument("--seeds", type=_numbers(int), default=[1], metavar="S,...",
                    help="nextpnr placement seeds, each a point (default 1)")
    ex.add_argument("--clocks", type=_numbers(float), metavar="MHZ,...",
                    help="target clocks, each a point (default: build's policy: the family's "
                    "target, then just below the routed Fmax until met)")
    _campaign_options(ex)
    ex.set_defaults(func=cmd_explore)

    b = sub.add_parser("bench", help="the benchmark table (golden vs qonnx, simulation, builds)")
    b.add_argument("what", nargs="?", default="all",
                   choices=("all", "golden", "resources", "finn"),
                   help="all: the whole table (builds bitstreams, minutes); golden: golden vs "
                   "qonnx; resources: the resource estimate against synthesis and packing of "
                   "-n small CNNs (a minute each); finn: FINN's CNV_1W1A and CNV_2W2A (Brevitas' "
                   "definitions, random weights; needs the train extra) built with default "
                   "options, images/s beside BNN-PYNQ's published figures (minutes)")
    b.add_argument("--out", default="thresher-bench", metavar="DIR", help="where builds go")
    b.add_argument("--model", default="tfc", help="golden: the QONNX model (default: the built-in "
                   "tfc, FINN's TFC_2W2A)")
    b.add_argument("--input", metavar="X.npy", help="inputs (default: 1,000 MNIST-like images)")
    b.add_argument("-n", type=_positive, default=None, help="golden: number of generated inputs "
                   "(default 1,000); resources: number of networks, small_cnn(0 .. n-1) "
                   "(default 10)")
    b.add_argument("--board", default=None, help="resources: the board (default icebreaker);"
                   " finn: the board (default ulx3s-85f)")
    b.set_defaults(func=cmd_bench)

    d = sub.add_parser("demo", help="the main job on the default model")
    d.add_argument("--out", metavar="DIR", default="thresher-demo",
                   help="write report.json (and the build) here (default: ./thresher-demo)")
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", help="quantization-aware training (needs the [train] extra)")
    t.add_argument("--dataset", default="digits", help="digits (scikit-learn's 8x8 digits)")
    t.add_argument("--wbits", type=int, default=4, help="weight bits (1-8)")
    t.add_argument("--abits", type=int, default=2, help="activation bits (1-8)")
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("-o", "--out", required=True, metavar="MODEL.onnx")
    t.set_defaults(func=cmd_train)
    return p


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        with progress.reporting(progress.StderrReporter()):
            return args.func(args)
    except ThresherError as e:
        print(f"thresher: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("thresher: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
