"""Measure the Verilator engine: cold build, warm (cached) build, simulated cycles per second.

    python tests/sim/bench_verilator.py [--n 1000] [--batch 2000] [--design standin|accelerator]

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
sys.path[:0] = [str(HERE), str(HERE.parents[1])]


def phase(args) -> dict:
    import numpy as np

    from sim.verilator import VerilatorModel
    from verilator_standin import RunningSum, running_sum_reference

    started = time.monotonic()
    model = VerilatorModel(RunningSum(n=args.n), n_in=args.n, n_out=args.n)
    result = {"built": model.built, "build_seconds": round(model.build_seconds, 2)}
    if args.run:
        rng = np.random.default_rng(0)
        x = rng.integers(-64, 64, size=(args.batch, args.n))
        best = None
        for _ in range(3):
            out, _cycles = model.run_batch(x)
            stats = model.last_stats
            best = stats if best is None or stats.seconds < best.seconds else best
        assert np.array_equal(out, running_sum_reference(x, shift=28, out_shape=model_out_shape()))
        result.update(cycles=best.total_cycles, run_seconds=round(best.seconds, 3),
                      mcycles_per_second=round(best.cycles_per_second / 1e6, 2))
    result["process_seconds"] = round(time.monotonic() - started, 2)
    return result


def model_out_shape():
    from amaranth import signed
    return signed(40)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="inputs (and outputs) per inference")
    parser.add_argument("--batch", type=int, default=2000, help="inferences per batch")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args)))
        return
    with tempfile.TemporaryDirectory(prefix="thresher-bench-") as cache:
        env = dict(os.environ, THRESHER_CACHE=cache)
        for name, n, extra in (("cold", args.n, []), ("new design", args.n + 1, []),
                               ("warm", args.n, ["--run"])):
            t = time.monotonic()
            r = subprocess.run([sys.executable, __file__, "--phase", name, "--n", str(n),
                                "--batch", str(args.batch), *extra],
                               env=env, capture_output=True, text=True, check=True)
            result = json.loads(r.stdout)
            result["wall_seconds_incl_python_start"] = round(time.monotonic() - t, 2)
            print(name, json.dumps(result))


if __name__ == "__main__":
    main()
