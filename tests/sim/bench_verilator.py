"""Measure the Verilator engine: cold build, warm (cached) build, simulated cycles per second.

    python tests/sim/bench_verilator.py [--design standin|accelerator] [--n 1000] [--batch B]

Each phase runs in its own Python process against a fresh temporary ``THRESHER_CACHE``, so
"cold" includes compiling everything (the Verilator runtime too), "new design" is a different
design once the runtime objects are cached (the usual case: a new network), and "warm" is what a
second ``thresher run`` of the same design pays (Verilog generation + cache lookup + loading the
library), followed by the cycles/s measurement. Not collected by pytest.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))     # verilator_standin (thresher itself is installed)


def _design(args, variant):
    """(model, inputs, check) for the design asked for; ``variant`` 1 is a slightly different
    design (a different build)."""
    import numpy as np

    from thresher.sim.verilator import VerilatorModel, accelerator_model
    rng = np.random.default_rng(0)
    if args.design == "standin":
        from verilator_standin import RunningSum, running_sum_reference
        n = args.n + variant
        model = VerilatorModel(RunningSum(n=n))
        x = rng.integers(-64, 64, size=(args.batch, n))
        return model, x, lambda y: np.array_equal(y, running_sum_reference(x))
    from thresher.model_tools import golden
    from thresher.model_tools import load_model
    net = load_model("tfc")
    pe = 8 >> variant
    model = accelerator_model(net, pe, 8)
    x = rng.integers(0, 256, size=(args.batch,) + net.input_shape)
    return model, x.reshape(args.batch, -1), \
        lambda y: np.array_equal(y.reshape((args.batch,) + net.last_shape),
                                 golden.run_integer(net, x))


def phase(args) -> dict:
    started = time.monotonic()
    model, x, check = _design(args, 1 if args.phase == "new design" else 0)
    result = {"built": model.built, "build_seconds": round(model.build_seconds, 2)}
    if args.run:
        best = None
        for _ in range(3):
            out, _cycles = model.run_batch(x)
            stats = model.last_stats
            best = stats if best is None or stats.seconds < best.seconds else best
        assert check(out), "wrong outputs"
        result.update(cycles=best.total_cycles, run_seconds=round(best.seconds, 3),
                      mcycles_per_second=round(best.cycles_per_second / 1e6, 2),
                      mcycles_per_cpu_second=round(best.cycles_per_cpu_second / 1e6, 2))
    result["process_seconds"] = round(time.monotonic() - started, 2)
    cpu = os.times()
    result["process_cpu_seconds"] = round(cpu.user + cpu.system + cpu.children_user
                                          + cpu.children_system, 2)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="inputs (and outputs) per inference")
    parser.add_argument("--batch", type=int, default=None,
                        help="inferences per batch (default: 2000 stand-in, 300 accelerator)")
    parser.add_argument("--design", choices=["standin", "accelerator"], default="standin",
                        help="the stand-in of tests/sim, or hw.Accelerator on TFC_2W2A (8x8)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch is None:
        args.batch = 2000 if args.design == "standin" else 300
    if args.phase:
        print(json.dumps(phase(args)))
        return
    with tempfile.TemporaryDirectory(prefix="thresher-bench-") as cache:
        env = dict(os.environ, THRESHER_CACHE=cache)
        for name, extra in (("cold", []), ("new design", []), ("warm", ["--run"])):
            t = time.monotonic()
            r = subprocess.run([sys.executable, __file__, "--phase", name, "--n", str(args.n),
                                "--batch", str(args.batch), "--design", args.design, *extra],
                               env=env, capture_output=True, text=True, check=True)
            result = json.loads(r.stdout)
            result["wall_seconds_incl_python_start"] = round(time.monotonic() - t, 2)
            print(name, json.dumps(result))


if __name__ == "__main__":
    main()
