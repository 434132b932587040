"""Random verification: random networks on golden, Verilator and Amaranth's simulator.

``thresher verify --random N --seed S`` calls :func:`verify_random`; ``thresher verify --case S:I``
calls :func:`verify_cases` for the one case. Case ``i`` of seed ``S`` is drawn from
``numpy.random.default_rng([S, i])`` by :func:`random_case` (and its network and inputs from the
same generator, its stall pattern from the same seeds), so a case and its verdict are the same
whichever process or host runs it, and one failing case can be re-run alone.

The cases are the tasks of a :class:`thresher.sim.campaign.Campaign`: in this process, in a pool
of local processes (``--workers``) or on a Dask cluster (``--scheduler``). The tasks only
compute; the process that started the campaign writes everything: ``DIR/verify.json`` (every
case: what it exercised, the engines compared, cycles, the verdict) and, for a failing case,
``DIR/case-<S>-<i>/`` with what it takes to reproduce it.

Members
-------
random_case(rng)          a random configuration (shapes, layers, PE, SIMD, input range).
verify_case(seed, i)      one case on golden, Verilator (full speed and with stalls) and pysim.
verify_cases(seed, idx)   the cases ``idx`` of ``seed`` as a campaign; verify.json, failures saved.
verify_random(n, seed)    ``verify_cases(seed, range(n))``.
VerifyResult              one case's outcome.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..model_tools.errors import ThresherError
from ..model_tools.files import atomic_write_bytes
from .campaign import Campaign, TaskFailure
from .toolchain import unavailable_reason

__all__ = ["random_case", "verify_case", "verify_cases", "verify_random", "VerifyResult"]


def random_case(rng) -> dict:
    """A random accelerator configuration: input shape, layer spec, PE, SIMD, raw input range.

    Shapes stay small (a build is seconds, a pysim run of a few thousand cycles is too), but cover
    dense-only, conv (im2col first layer or not), pooling, strides, padding, conv or pool last,
    residual blocks (a quarter of the conv cases: identity or 1x1 stride-2 shortcut, shifts, the
    add last or not), PE < = > SIMD, 1..8-bit weights (the generator's choice), signed or unsigned
    raw inputs.
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
    if rng.random() < 0.25:                                     # a residual graph
        spec = _residual_spec(rng, c, h)
        return dict(in_shape=(c, h, h), spec=spec, pe=pe, simd=simd, raw_range=raw_range)
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


def _residual_spec(rng, c: int, h: int) -> list:
    """One residual block on a ``c x h x h`` input (see :func:`model_tools.netgen.random_network`'s
    ``add`` entries): its input the input quantizer's output or a stem conv's; either an identity
    block (one or two convs keeping the shape, then an add with the block input) or a downsampling
    block (a stride-2 3x3 conv, maybe a second conv, and a 1x1 stride-2 shortcut conv from the
    block input, then their add). The add's operands in either order, a power-of-two shift on one
    of them a third of the time; then a dense layer, or the add last (thresholds or raw sums)."""
    spec, src, cb = [], -1, c
    if rng.random() < 0.5:                                      # a stem conv
        cb = int(rng.integers(2, 9))
        spec.append(("conv", cb, 3, 1, 1))
        src = 0
    if h < 3 or rng.random() < 0.5:                             # identity
        for _ in range(rng.integers(1, 3)):
            k = int(rng.choice([1, 3]))
            spec.append(("conv", cb, k, 1, k // 2))
        a, b = len(spec) - 1, src
    else:                                                       # downsampling, 1x1 shortcut
        co = int(rng.integers(2, 9))
        spec.append(("conv", co, 3, 2, 1))
        if rng.random() < 0.5:
            spec.append(("conv", co, 3, 1, 1))
        spec.append(("conv", co, 1, 2, 0, src))
        a, b = len(spec) - 2, len(spec) - 1
    if rng.random() < 0.5:
        a, b = b, a
    shifts = (0, 0)
    if rng.random() < 1 / 3:
        k = int(rng.integers(1, 4))
        shifts = (k, 0) if rng.random() < 0.5 else (0, k)
    r = rng.random()
    if r < 0.5:
        spec += [("add", a, b, shifts), ("dense", int(rng.integers(2, 12)))]
    else:
        spec.append(("add", a, b, shifts, bool(r < 0.75)))
    return spec


@dataclass
class VerifyResult:
    """One case of a verification campaign.

    ``verdict`` is ``"pass"``, ``"fail"`` (a mismatch, a wrong cycle count, a hang, a build
    error), ``"died"`` (its worker process died: a crash is a failure too) or ``"skipped"`` (the
    planner refuses the drawn configuration: reported, not a failure).
    """

    index: int
    case: dict
    ok: bool
    unsupported: bool = False   # the planner refused the drawn configuration: not a failure
    cycles: int | None = None
    predicted: int | None = None
    engines: tuple[str, ...] = ()
    message: str = ""
    saved: Path | None = None
    seed: int = 0
    died: bool = False
    layers: list = field(default_factory=list)   # what the network exercised, per stage
    seconds: float | None = None                 # the task's own time (not part of the verdict)
    outputs: dict | None = field(default=None, repr=False)   # a failure's engine outputs

    @property
    def verdict(self) -> str:
        return ("pass" if self.ok else "skipped" if self.unsupported else
                "died" if self.died else "fail")

    @property
    def command(self) -> str:
        """The command that runs this case again, alone."""
        return f"thresher verify --case {self.seed}:{self.index}"

    def __str__(self):
        c = self.case
        what = (f"case {self.index}: in {c['in_shape']} {c['spec']} pe={c['pe']} simd={c['simd']} "
                f"raw {c['raw_range']}")
        if self.ok:
            return f"{what}: ok ({'+'.join(self.engines)}; {self.cycles} cycles)"
        if self.unsupported:
            return f"{what}: skipped, {self.message}"
        return (f"{what}: {'DIED' if self.died else 'FAIL'} {self.message}"
                + (f" (saved in {self.saved}; rerun: {self.command})" if self.saved else ""))

    def to_json(self) -> dict:
        """The case's entry in verify.json."""
        c = self.case
        return {"seed": self.seed, "index": self.index, "verdict": self.verdict,
                "in_shape": list(c["in_shape"]), "spec": [list(s) for s in c["spec"]],
                "layer_kinds": sorted({row["kind"] for row in self.layers}),
                "layers": self.layers, "pe": c["pe"], "simd": c["simd"],
                "input_range": list(c["raw_range"]), "engines": list(self.engines),
                "cycles": self.cycles, "predicted_cycles": self.predicted,
                "message": self.message, "command": self.command,
                "saved": None if self.saved is None else str(self.saved),
                "seconds": self.seconds}


def _draw(seed: int, i: int):
    """Case ``i`` of ``seed``: ``(case, rng)``, the generator left where the network is drawn."""
    rng = np.random.default_rng([seed, i])
    return random_case(rng), rng


def _network(seed: int, i: int, batch: int):
    """Case ``i`` of ``seed`` in full: ``(case, network, inputs)``, all from the case's seeds."""
    from ..model_tools import netgen
    case, rng = _draw(seed, i)
    net = netgen.random_network(rng, case["in_shape"], case["spec"],
                                raw_range=case["raw_range"], name=f"verify-{seed}-{i}")
    x = netgen.random_input(rng, net, batch, raw_range=case["raw_range"])
    return case, net, x


def _stall_seed(seed: int, i: int) -> int:
    """The seed of case ``i``'s stall pattern: a child of the case's own seed sequence."""
    child = np.random.SeedSequence([seed, i]).spawn(1)[0]
    return int(child.generate_state(1, np.uint64)[0])


def _layers(net) -> list[dict]:
    """What a network exercises, stage by stage: kind, shapes, weight bits, kernel, stride,
    (grouped convolutions, average pools) groups and divisor, and (a layer that does not read just
    the previous one: adds, branches) its inputs by index, -1 the input quantizer's output."""
    from ..model_tools.ir import Add, AvgPool, Conv, MaxPool
    rows = []
    for k, layer in enumerate(net.layers):
        row = {"name": layer.name, "kind": type(layer).__name__,
               "in_shape": list(layer.in_shape), "out_shape": list(layer.out_shape)}
        if layer.inputs is not None and tuple(layer.inputs) != (k - 1,):
            row["inputs"] = [int(i) for i in layer.inputs]
        if isinstance(layer, Add) and any(layer.shifts):
            row["shifts"] = [int(i) for i in layer.shifts]
        if isinstance(layer, (Conv, MaxPool, AvgPool)):
            row["kernel"], row["stride"] = list(layer.kernel), list(layer.stride)
        if isinstance(layer, Conv) and layer.groups != 1:
            row["groups"] = int(layer.groups)
        if isinstance(layer, AvgPool):
            row["divisor"] = int(layer.divisor)
        if not isinstance(layer, MaxPool):
            row["weight_bits"] = int(layer.weight_bits)
            row["activation"] = layer.activation is not None
        rows.append(row)
    return rows


def verify_case(seed: int, i: int, *, batch: int = 3, pysim_every: int = 5,
                stall: float = 0.3) -> VerifyResult:
    """Case ``i`` of ``seed``: its network on ``batch`` random raw inputs by
    ``golden.run_integer`` and by Verilator twice: at full speed (outputs must be equal,
    ``cycles`` must equal ``hw.plan``'s prediction) and with random input gaps and output
    back-pressure (``stall``; outputs must be equal). If ``pysim_every`` divides ``i`` (0: never),
    its first input on Amaranth's simulator too (``sim.run.run_pysim``).

    A campaign's task: it writes nothing (but the Verilator cache), and what it returns depends
    on ``seed``, ``i`` and the options only. A failure carries the engines' outputs
    (``outputs``), for the campaign to save.
    """
    from ..hw.plan import predict_cycles
    from ..model_tools import golden
    from .verilator import accelerator_model
    started = time.perf_counter()
    case, _ = _draw(seed, i)
    result = VerifyResult(i, case, ok=False, seed=seed)
    outputs: dict[str, np.ndarray] = {}
    try:
        if (missing := unavailable_reason()) is not None:
            raise RuntimeError(f"this worker cannot build with Verilator: {missing}")
        case, net, x = _network(seed, i, batch)
        result.layers = _layers(net)
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
        stalled, _ = model.run_batch(x.reshape(batch, -1), stall=stall,
                                     seed=_stall_seed(seed, i))
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
    if not result.ok and not result.unsupported:
        result.outputs = outputs
    result.seconds = round(time.perf_counter() - started, 2)
    return result


def verify_random(n: int, seed: int = 0, out_dir="thresher-verify", **options
                  ) -> list[VerifyResult]:
    """``thresher verify --random N --seed S``: cases ``0 .. n-1`` of ``seed``; see
    :func:`verify_cases` for the options and what is written."""
    if not isinstance(n, int) or n < 1:
        raise ThresherError(f"--random needs a positive number of networks, not {n!r}")
    return verify_cases(seed, range(n), out_dir, **options)


def verify_cases(seed: int, indices, out_dir="thresher-verify", *, batch: int = 3,
                 pysim_every: int = 5, stall: float = 0.3, log=print,
                 workers: int | None = None, scheduler: str | None = None,
                 task=verify_case) -> list[VerifyResult]:
    """Cases ``indices`` of ``seed`` (see :func:`verify_case`) as one campaign.

    ``workers``: a pool of that many local processes; ``scheduler``: a Dask scheduler's address;
    neither: this process (see :class:`thresher.sim.campaign.Campaign`). ``task`` is the case
    function (``verify_case``; a test may give another module-level function with its
    signature). Progress: a bar ("verify") and one line per case to ``log``, as cases complete,
    then a summary line.

    Writes ``out_dir/verify.json`` (the campaign, and every case in index order: its seed and
    index, shapes, layers, PE, SIMD, input range, the engines compared, cycles and predicted
    cycles, the verdict and the command that re-runs it) and, for every failing or dead case,
    ``out_dir/case-<seed>-<i>/``: ``network.json``/``network.npz`` (``IntegerNetwork.save``),
    ``input.npy``, ``case.json`` (PE, SIMD, raw input range, what failed, the command and a
    Python line that reproduce it) and, when they ran, ``outputs.npz`` with each engine's
    outputs. Returns the results in index order; the CLI exits non-zero if any failed or died
    (``skipped``: a configuration the planner refuses, reported but not a failure).
    """
    indices = [int(i) for i in indices]
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ThresherError(f"--seed needs a non-negative integer, not {seed!r}")
    if not indices or min(indices) < 0:
        raise ThresherError(f"give at least one case, numbered from 0 (not {indices!r})")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ThresherError(f"{out_dir}: exists and is not a directory")
    campaign = Campaign(workers, scheduler)
    if scheduler is None and (missing := unavailable_reason()) is not None:
        raise ThresherError(f"verify needs Verilator and a C++ compiler: {missing}")
    started = time.perf_counter()
    results: dict[int, VerifyResult] = {}
    options = dict(batch=batch, pysim_every=pysim_every, stall=stall)
    with campaign:
        log(f"{len(indices)} case{'s' if len(indices) > 1 else ''} of seed {seed} on "
            f"{campaign.describe()}")
        for k, outcome in campaign.run(_call, [(task, seed, i, options) for i in indices],
                                       label="verify"):
            i = indices[k]
            result = outcome if isinstance(outcome, VerifyResult) else \
                _lost(seed, i, outcome)
            if not result.ok and not result.unsupported:
                result.saved = _save_case(out_dir / f"case-{seed}-{i}", result, batch)
            result.outputs = None
            results[k] = result
            log(str(result))
        where = campaign.info()
    ordered = [results[k] for k in range(len(indices))]
    counts = {v: sum(r.verdict == v for r in ordered) for v in ("pass", "fail", "died", "skipped")}
    n, bad = len(ordered), counts["fail"] + counts["died"]
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "verify.json", json.dumps({
        "seed": seed, "cases": len(ordered), **counts,
        "options": options, "executor": where,
        "seconds": round(time.perf_counter() - started, 1),
        "case_seconds_mean": _mean([r.seconds for r in ordered]),
        "results": [r.to_json() for r in ordered],
    }, indent=1).encode() + b"\n")
    log(f"{n - bad - counts['skipped']} of {n} random networks agree"
        + (f"; {counts['skipped']} skipped (unsupported)" if counts["skipped"] else "")
        + (f"; {bad} FAILED" + (f" ({counts['died']} died)" if counts["died"] else "")
           + f", saved in {out_dir}" if bad else ""))
    return ordered


def _call(task, seed, i, options):
    """A campaign's task: one case (module level, so that it pickles by reference)."""
    return task(seed, i, **options)


def _lost(seed: int, i: int, failure: TaskFailure) -> VerifyResult:
    """The result of a case whose task died or raised outside the case's own checks."""
    case, _ = _draw(seed, i)
    return VerifyResult(i, case, ok=False, seed=seed, died=failure.died,
                        message=failure.message)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 2) if values else None


def _first_difference(got, want) -> str:
    if got.shape != want.shape:
        return f"shape {got.shape} vs {want.shape}"
    where = tuple(int(i) for i in np.argwhere(got != want)[0])
    return f"{where} ({int(got[where])} vs {int(want[where])})"


def _save_case(directory: Path, result: VerifyResult, batch: int) -> Path:
    """Save what it takes to re-run a failing case; the network and inputs are drawn again from
    the case's seeds (they are the task's own), the outputs come from the task."""
    directory.mkdir(parents=True, exist_ok=True)
    case = result.case
    saved_network = False
    try:
        _, net, x = _network(result.seed, result.index, batch)
        if not result.layers:
            result.layers = _layers(net)
        net.save(directory)
        np.save(directory / "input.npy", x)
        saved_network = True
    except Exception as e:   # the generator itself fails: case.json says so
        result.message += f" (drawing the network again: {type(e).__name__}: {e})"
    if result.outputs:
        np.savez(directory / "outputs.npz", **result.outputs)
    (directory / "case.json").write_text(json.dumps({
        "seed": result.seed, "index": result.index, "verdict": result.verdict,
        "in_shape": list(case["in_shape"]), "spec": [list(s) for s in case["spec"]],
        "pe": case["pe"], "simd": case["simd"], "input_range": list(case["raw_range"]),
        "problem": result.message,
        "command": result.command,
        "reproduce": ("from thresher.model_tools.ir import IntegerNetwork; import numpy as np; "
                      "from thresher.sim.verilator import run_verilator; "
                      f"net = IntegerNetwork.load('{directory}'); "
                      f"x = np.load('{directory}/input.npy'); "
                      f"run_verilator(net, x, {case['pe']}, {case['simd']}, "
                      f"input_range={tuple(case['raw_range'])})") if saved_network else None,
    }, indent=1))
    return directory
