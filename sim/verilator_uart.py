"""The board top (:class:`hw.board.top.UartBridge`, accelerator inside) under Verilator, as a host
:class:`sim.transport.Transport`: the same byte pipe as :class:`sim.transport.SimulatedTransport`,
many times faster.

The bridge is converted to Verilog (:mod:`sim.verilog`) and built by
:func:`sim.toolchain.build_library` (its flags, build cache and runtime pool) together with
``sim/harness/uart_harness.cpp`` into a shared library. The harness keeps the model alive between ctypes calls, bit-bangs queued bytes onto ``rx``
(8N1, ``divisor`` clocks per bit) and decodes ``tx`` into bytes, a whole chunk of cycles per call:
Python never runs per simulated cycle.

Members
-------
VerilatorUartTransport(design, divisor=...)   a Transport around a design with ``rx`` / ``tx``.
build_uart(verilog_text, name)                the cached shared library for that Verilog.
"""

from __future__ import annotations

import ctypes
import time
from pathlib import Path

from .toolchain import HARNESS_DIR, VERILATOR_FLAGS, VerilatorError, build_library
from .transport import Transport
from .verilog import to_verilog, verilator_source

__all__ = ["VerilatorUartTransport", "build_uart", "UART_HARNESS"]

UART_HARNESS = HARNESS_DIR / "uart_harness.cpp"
_ABI_VERSION = 1


def build_uart(verilog_text: str, name: str) -> tuple[Path, bool]:
    """The cached shared library of ``name`` (a design with ``clk``, ``rst``, ``rx``, ``tx``)
    with the UART harness, built by :func:`sim.toolchain.build_library` like every other design.
    Returns ``(path, built)``."""
    verilog_text = verilator_source(verilog_text)
    sources = {f"{name}.v": verilog_text, "harness.cpp": UART_HARNESS.read_text()}
    return build_library(name, name, sources, list(VERILATOR_FLAGS),
                            key_parts=("uart", _ABI_VERSION), info={"harness": "uart"})


def _load(path: Path):
    lib = ctypes.CDLL(str(path))
    if lib.thresher_uart_abi_version() != _ABI_VERSION:
        raise VerilatorError(f"{path}: UART harness ABI {lib.thresher_uart_abi_version()}, "
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

    def clock(self) -> float:
        return time.process_time()          # the simulation runs in this process

    def __init__(self, design, *, divisor: int, name: str = "thresher_uart_top",
                 chunk_cycles: int | None = None):
        if not isinstance(divisor, int) or divisor < 2:
            raise ValueError(f"divisor must be an integer >= 2, not {divisor!r}")
        started = time.monotonic()
        self.divisor = divisor
        self.chunk_cycles = chunk_cycles or 200_000
        self.lib_path, self.built = build_uart(to_verilog(design, name), name)
        self._lib = _load(self.lib_path)
        self._handle = self._lib.thresher_uart_open(divisor)
        if not self._handle:
            raise VerilatorError("the UART harness refused to open the model")
        self._buf = ctypes.create_string_buffer(4096)
        self.build_seconds = time.monotonic() - started

    @property
    def cycles(self) -> int:
        self._check_open()
        return int(self._lib.thresher_uart_cycles(self._handle))

    def _check_open(self):
        if not self._handle:
            raise VerilatorError("the Verilator board transport is closed")

    def write(self, data: bytes) -> None:
        self._check_open()
        data = bytes(data)
        self._lib.thresher_uart_send(self._handle, data, len(data))

    def read(self, n: int, timeout: float) -> bytes:
        """At most ``n`` bytes from tx; runs the clock until they arrived or ``timeout`` seconds
        of this process's CPU time (what advances the simulation; wall time runs on while a
        loaded machine holds the simulation still) ran out; ``timeout`` 0 runs no cycle at all."""
        self._check_open()
        out = bytearray()
        deadline = self.clock() + timeout
        while len(out) < n and self.clock() < deadline:
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
