"""Random verification: random networks on golden, Verilator and Amaranth's simulator.

``thresher verify --random N --seed S`` calls :func:`verify_random`. Case ``i`` is drawn from
``numpy.random.default_rng([seed, i])`` by :func:`random_case`, so one failing case can be re-run
alone; a failing case is saved with everything needed to reproduce it.

Members
-------
random_case(rng)        a random accelerator configuration (shapes, layers, PE, SIMD, input range).
verify_random(n, seed)  N random networks on golden, Verilator and pysim; failures saved.
VerifyResult            one case's outcome.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..model_tools import progress
from .toolchain import unavailable_reason
from .verilator import accelerator_model

__all__ = ["random_case", "verify_random", "VerifyResult"]


def random_case(rng) -> dict:
    """A random accelerator configuration: input shape, layer spec, PE, SIMD, raw input range.

    Shapes stay small (a build is seconds, a pysim run of a few thousand cycles is too), but cover
    dense-only, conv (im2col first layer or not), pooling, strides, padding, conv or pool last,
    PE < = > SIMD, 1..8-bit weights (the generator's choice), signed or unsigned raw inputs.
    """
    rng = np.random.default_rng(rng)
    pe = int(rng.choice([1, 2, 4, 8, 16]))
    simd = int(rng.choice([1, 2, 4, 8, 16]))
    raw_range = [(0, 255), (-128, 127), (0, 15)][rng.integers(3)]
    if rng.random() < 0.25:                                     # an MLP on a flat input
        in_shape = (int(rng.integers(4, 40)),)
        spec = [("dense", int(rng.integers(2, 20))) for _ in range(rng.integers(1, 4))]
        return dict(in_shape=in_shape, spec=spec, pe=pe, simd=simd, raw_range=raw_range)
    c, h = int(rng.choice([1, 2, 3, 4, 8])), int(rng.integers(3, 9))
    shape = (c, h, h)
    spec = []
    for _ in range(rng.integers(1, 4)):
        _, hh, _ = shape
        if hh >= 4 and spec and spec[-1][0] == "conv" and rng.random() < 0.4:
            k = int(rng.choice([2, 3])) if hh >= 6 else 2
            s = int(rng.choice([1, 2]))
            spec.append(("pool", k, s))
            shape = (shape[0], (hh - k) // s + 1, (hh - k) // s + 1)
            continue
        k = int(rng.choice([1, 2, 3]))
        s = int(rng.choice([1, 1, 2]))
        p = int(rng.choice([0, 1])) if k > 1 else 0
        if (hh + 2 * p - k) // s + 1 < 1:
            k, s, p = 1, 1, 0
        cout = int(rng.integers(2, 17))
        spec.append(("conv", cout, k, s, p))
        shape = (cout, (hh + 2 * p - k) // s + 1, (hh + 2 * p - k) // s + 1)
    if rng.random() < 0.6:
        spec.append(("dense", int(rng.integers(2, 12))))
    return dict(in_shape=(c, h, h), spec=spec, pe=pe, simd=simd, raw_range=raw_range)


@dataclass
class VerifyResult:
    """One case of :func:`verify_random`."""

    index: int
    case: dict
    ok: bool
    unsupported: bool = False   # the planner refused the drawn configuration: not a failure
    cycles: int | None = None
    predicted: int | None = None
    engines: tuple[str, ...] = ()
    message: str = ""
    saved: Path | None = None

    def __str__(self):
        c = self.case
        what = (f"case {self.index}: in {c['in_shape']} {c['spec']} pe={c['pe']} simd={c['simd']} "
                f"raw {c['raw_range']}")
        if self.ok:
            return f"{what}: ok ({'+'.join(self.engines)}; {self.cycles} cycles)"
        if self.unsupported:
            return f"{what}: skipped, {self.message}"
        return f"{what}: FAIL {self.message}" + (f" (saved in {self.saved})" if self.saved else "")


def verify_random(n: int, seed: int = 0, out_dir="thresher-verify", *, batch: int = 3,
                  pysim_every: int = 5, stall: float = 0.3, log=print) -> list[VerifyResult]:
    """``thresher verify --random N --seed S``: N random networks on golden and Verilator.

    Case ``i`` is drawn from ``numpy.random.default_rng([seed, i])`` (so one failing case can be
    re-run alone), folded straight into an ``IntegerNetwork`` by the random generator, and run on
    ``batch`` random raw inputs by ``golden.run_integer`` and by Verilator twice: at full speed
    (outputs must be equal, ``cycles`` must equal ``hw.plan``'s prediction) and with random input
    gaps and output back-pressure (``stall``; outputs must be equal). Every ``pysim_every``-th case
    (0 for none) also runs its first input on Amaranth's simulator (``sim.run.run_pysim``).

    A failing case (mismatch, wrong cycle count, hang or build error) is saved for reproduction in
    ``out_dir/case-<seed>-<i>/``: ``network.json``/``network.npz`` (``IntegerNetwork.save``),
    ``input.npy``, ``case.json`` (PE, SIMD, raw input range, what failed) and, when they ran,
    ``outputs.npz`` with each engine's outputs. Progress goes to ``log`` (one line per case).
    Returns the results; the CLI should exit non-zero if any is neither ``ok`` nor
    ``unsupported`` (a configuration the planner refuses with a ThresherError: reported, not
    counted as a failure).
    """
    from ..hw.plan import predict_cycles
    from ..model_tools import golden
    from ..model_tools.errors import ThresherError
    from ..model_tools import netgen
    if not isinstance(n, int) or n < 1:
        raise ThresherError(f"--random needs a positive number of networks, not {n!r}")
    if (missing := unavailable_reason()) is not None:
        raise ThresherError(f"verify needs Verilator and a C++ compiler: {missing}")
    results = []
    tick = progress.bar(n, "verify")
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        case = random_case(rng)
        result = VerifyResult(i, case, ok=False)
        outputs: dict[str, np.ndarray] = {}
        net = x = None
        try:
            net = netgen.random_network(rng, case["in_shape"], case["spec"],
                                        raw_range=case["raw_range"], name=f"verify-{seed}-{i}")
            x = netgen.random_input(rng, net, batch, raw_range=case["raw_range"])
            kw = dict(input_range=case["raw_range"])
            outputs["golden"] = want = golden.run_integer(net, x)
            model = accelerator_model(net, case["pe"], case["simd"], **kw)
            got, cycles = model.run_batch(x.reshape(batch, -1))
            outputs["verilator"] = got = got.reshape(want.shape)
            result.cycles = int(cycles[0])
            result.predicted = predict_cycles(net, case["pe"], case["simd"], **kw)
            problems = []
            if not np.array_equal(got, want):
                problems.append(f"verilator != golden at {_first_difference(got, want)}")
            if not np.all(cycles == result.predicted):
                problems.append(f"cycles {cycles.tolist()} != predicted {result.predicted}")
            stalled, _ = model.run_batch(x.reshape(batch, -1), stall=stall, seed=seed * 1000 + i)
            outputs["verilator_stalled"] = stalled = stalled.reshape(want.shape)
            if not np.array_equal(stalled, want):
                problems.append(f"verilator with stalls != golden at "
                                f"{_first_difference(stalled, want)}")
            engines = ["golden", "verilator", "verilator+stalls"]
            if pysim_every and i % pysim_every == 0:
                from .run import run_pysim
                py, py_cycles = run_pysim(net, x[:1], case["pe"], case["simd"], **kw)
                outputs["pysim"] = py
                engines.append("pysim")
                if not np.array_equal(py, want[:1]):
                    problems.append(f"pysim != golden at {_first_difference(py, want[:1])}")
                if int(py_cycles[0]) != result.cycles:
                    problems.append(f"pysim cycles {py_cycles[0]} != verilator {result.cycles}")
            result.engines = tuple(engines)
            result.ok = not problems
            result.message = "; ".join(problems)
        except ThresherError as e:      # the generator drew a configuration the planner refuses
            result.unsupported = True
            result.message = f"unsupported configuration: {e}"
        except Exception as e:          # a build failure, a hang: a bug, keep it for reproduction
            result.message = f"{type(e).__name__}: {e}"
        if not result.ok and not result.unsupported and net is not None:
            result.saved = _save_case(Path(out_dir) / f"case-{seed}-{i}", net, x, case, result,
                                      outputs)
        log(str(result))
        results.append(result)
        if tick is not None:
            tick(i + 1)
    failed = sum(not r.ok and not r.unsupported for r in results)
    skipped = sum(r.unsupported for r in results)
    log(f"{n - failed - skipped} of {n} random networks agree"
        + (f"; {skipped} skipped (unsupported)" if skipped else "")
        + (f"; {failed} FAILED, saved in {out_dir}" if failed else ""))
    return results


def _first_difference(got, want) -> str:
    if got.shape != want.shape:
        return f"shape {got.shape} vs {want.shape}"
    where = tuple(int(i) for i in np.argwhere(got != want)[0])
    return f"{where} ({int(got[where])} vs {int(want[where])})"


def _save_case(directory: Path, net, x, case, result, outputs) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    net.save(directory)
    if x is not None:
        np.save(directory / "input.npy", x)
    if outputs:
        np.savez(directory / "outputs.npz", **outputs)
    (directory / "case.json").write_text(json.dumps({
        "in_shape": list(case["in_shape"]), "spec": [list(s) for s in case["spec"]],
        "pe": case["pe"], "simd": case["simd"], "input_range": list(case["raw_range"]),
        "problem": result.message,
        "reproduce": ("from thresher.model_tools.ir import IntegerNetwork; import numpy as np; "
                      "from thresher.sim.verilator import run_verilator; "
                      f"net = IntegerNetwork.load('{directory}'); "
                      f"x = np.load('{directory}/input.npy'); "
                      f"run_verilator(net, x, {case['pe']}, {case['simd']}, "
                      f"input_range={tuple(case['raw_range'])})"),
    }, indent=1))
    return directory
