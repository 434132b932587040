"""Byte pipes between the host and a board, real or simulated.

Members
-------
Transport            what the host needs of a byte pipe: ``write(bytes)``, ``read(n, timeout)``.
SerialTransport      a real serial port (``pyserial``).
QueueTransport       an in-process pipe (two queues), for whatever plays the board in a thread.
SimulatedTransport   a board simulated in-process (Amaranth's simulator), run while the host waits.
board_baud           the rate of a board's UART: from its build's ``report.json``, else given,
                     else 115,200 (builds from before the rate was chosen per build).

The board under Verilator is one more transport, in :mod:`.verilator_uart`.
"""

from __future__ import annotations

import collections
import queue
import time
from pathlib import Path

from ..hw.board.uart import DEFAULT_BAUD, check_baud
from ..model_tools.errors import ThresherError

__all__ = ["Transport", "SerialTransport", "QueueTransport", "SimulatedTransport", "board_baud",
           "DEFAULT_BAUD"]


def board_baud(build_dir=None, baud=None) -> int:
    """The rate to open a board's serial port at: the ``baud`` that ``build_dir/report.json``
    (written by ``thresher build``) records; else ``baud``; else :data:`DEFAULT_BAUD` (115,200,
    what every build used before the rate was chosen per build, and what a report without
    ``baud`` means). Giving both a build and a different ``baud`` is refused, as is a report
    that cannot be read. Raises :class:`ThresherError`."""
    if baud is not None:
        try:
            baud = check_baud(baud)
        except ValueError as e:
            raise ThresherError(f"--baud: {e}") from None
    if build_dir is None:
        return DEFAULT_BAUD if baud is None else baud
    from ..hw.build import read_build_report
    report = Path(build_dir) / "report.json"
    try:
        built = check_baud(read_build_report(build_dir).get("baud", DEFAULT_BAUD))
    except ValueError as e:
        raise ThresherError(f"cannot read the UART rate from {report}: {e}") from None
    if baud is not None and baud != built:
        raise ThresherError(f"--baud {baud} disagrees with {report}, which says the board's UART "
                            f"runs at {built} baud; give one or the other")
    return built


class Transport:
    """A byte pipe. ``read`` returns at most ``n`` bytes, fewer only when ``timeout`` ran out.

    Timeouts count :meth:`clock`'s seconds: wall time for a real device; a simulated one counts
    this process's CPU time (what advances the simulation: on a loaded machine wall time runs on
    while it stands still) and asks the host to wait at least ``MIN_TIMEOUT`` for a reply.
    """

    MIN_TIMEOUT = 0.0

    def clock(self) -> float:
        return time.monotonic()

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def read(self, n: int, timeout: float) -> bytes:
        raise NotImplementedError

    def flush_input(self) -> None:
        """Drop bytes that arrived unasked (after an error, before a request)."""
        while self.read(4096, 0.0):
            pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialTransport(Transport):
    """A serial port through ``pyserial``, at ``baud`` (the board's rate: :func:`board_baud`).

    FTDI bridges hold a short reply until their latency timer runs out (16 ms by default on
    Linux, set in ``/sys/bus/usb-serial/devices/ttyUSB*/latency_timer``); at megabaud rates that
    timer, not the line, bounds the inferences per second of one request at a time."""

    def __init__(self, port: str, baud: int = DEFAULT_BAUD):
        import serial
        self.baud = baud
        try:
            self._serial = serial.Serial(port, baud, timeout=0)
        except (OSError, ValueError, serial.SerialException) as e:
            raise ThresherError(f"cannot open serial port {port!r} at {baud} baud: {e}") from None

    def write(self, data: bytes) -> None:
        self._serial.write(data)
        self._serial.flush()

    def read(self, n: int, timeout: float) -> bytes:
        self._serial.timeout = timeout
        return self._serial.read(n)

    def flush_input(self) -> None:
        self._serial.reset_input_buffer()

    def close(self) -> None:
        self._serial.close()


class QueueTransport(Transport):
    """An in-process byte pipe: the host writes into ``to_device`` and reads ``from_device``
    (``queue.Queue`` s of ints); whatever plays the board serves the other ends."""

    def __init__(self):
        self.to_device: queue.Queue = queue.Queue()
        self.from_device: queue.Queue = queue.Queue()

    def write(self, data: bytes) -> None:
        for b in data:
            self.to_device.put(b)

    def read(self, n: int, timeout: float) -> bytes:
        out = bytearray()
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            try:
                out.append(self.from_device.get(timeout=left) if left > 0
                           else self.from_device.get_nowait())
            except queue.Empty:
                break
        return bytes(out)


class SimulatedTransport(Transport):
    """A board simulated in-process: an Amaranth simulation of a design with ``rx`` / ``tx``
    serial lines (e.g. :class:`hw.board.top.UartBridge`), advanced only while the host waits
    for bytes. ``divisor`` is the design's UART clock cycles per bit at ``clk_hz``; the host's
    side of the line runs at ``baud`` (default ``clk_hz / divisor``, the design's own rate; a
    nominal rate the divisor only approximates, e.g. 3,000,000 at a 27.375 MHz clock, tests the
    receivers' tolerance of the difference).
    """

    def __init__(self, design, *, divisor: int, clk_hz: float = 1e6, baud: float | None = None):
        from amaranth.sim import Simulator

        self._to_device = collections.deque()
        self._from_device = collections.deque()
        period = 1 / clk_hz
        bit = divisor * period if baud is None else 1 / baud
        self.cycles_per_chunk = 20 * divisor * 10     # 20 bytes' time
        self._period = period
        self._sim = Simulator(design)
        self._sim.add_clock(period)
        todev, fromdev = self._to_device, self._from_device

        async def drive_rx(ctx):
            ctx.set(design.rx, 1)
            while True:
                if not todev:
                    await ctx.delay(bit)
                    continue
                byte = todev.popleft()
                for level in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                    ctx.set(design.rx, level)
                    await ctx.delay(bit)

        async def watch_tx(ctx):
            while True:
                await ctx.changed(design.tx)
                if ctx.get(design.tx):
                    continue
                await ctx.delay(bit * 1.5)
                byte = 0
                for i in range(8):
                    byte |= ctx.get(design.tx) << i
                    await ctx.delay(bit)
                if ctx.get(design.tx):      # a stop bit: a byte (else a framing error: dropped)
                    fromdev.append(byte)

        self._sim.add_testbench(drive_rx, background=True)
        self._sim.add_testbench(watch_tx, background=True)
        self._now = 0.0

    def advance(self, cycles: int) -> None:
        self._now += cycles * self._period
        self._sim.run_until(self._now)

    def write(self, data: bytes) -> None:
        self._to_device.extend(data)

    #: Amaranth's simulator takes seconds of CPU for what a board does in milliseconds (several
    #: for one default-model inference on a loaded 2-core machine): a host timeout sized for a
    #: board would fire on a working design; only a hung one should time out.
    MIN_TIMEOUT = 120.0

    def clock(self) -> float:
        return time.process_time()

    def read(self, n: int, timeout: float) -> bytes:
        deadline = self.clock() + timeout
        while len(self._from_device) < n and self.clock() < deadline:
            self.advance(self.cycles_per_chunk)
        return bytes(self._from_device.popleft() for _ in range(min(n, len(self._from_device))))

    def flush_input(self) -> None:
        self._from_device.clear()
