"""Byte pipes between the host and a board, real or simulated.

Members
-------
Transport            what the host needs of a byte pipe: ``write(bytes)``, ``read(n, timeout)``.
SerialTransport      a real serial port (``pyserial``).
QueueTransport       an in-process pipe (two queues), for whatever plays the board in a thread.
SimulatedTransport   a board simulated in-process (Amaranth's simulator), run while the host waits.

The board under Verilator is one more transport, in :mod:`.verilator_uart`.
"""

from __future__ import annotations

import collections
import queue
import time

from ..model_tools.errors import ThresherError

__all__ = ["Transport", "SerialTransport", "QueueTransport", "SimulatedTransport"]


class Transport:
    """A byte pipe. ``read`` returns at most ``n`` bytes, fewer only when ``timeout`` ran out."""

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
    """A serial port through ``pyserial``."""

    def __init__(self, port: str, baud: int = 115200):
        import serial
        try:
            self._serial = serial.Serial(port, baud, timeout=0)
        except (OSError, serial.SerialException) as e:
            raise ThresherError(f"cannot open serial port {port!r}: {e}") from None

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
    for bytes. ``divisor`` is the design's UART clock cycles per bit.
    """

    def __init__(self, design, *, divisor: int, clk_hz: float = 1e6):
        from amaranth.sim import Simulator

        self._to_device = collections.deque()
        self._from_device = collections.deque()
        period = 1 / clk_hz
        bit = divisor * period
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

    def read(self, n: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self._from_device) < n and time.monotonic() < deadline:
            self.advance(self.cycles_per_chunk)
        return bytes(self._from_device.popleft() for _ in range(min(n, len(self._from_device))))

    def flush_input(self) -> None:
        self._from_device.clear()
