"""The host side of the board protocol (frames in :mod:`hw.board.frame`), over any byte transport
(:mod:`.transport`).

Members
-------
Board                requests on a transport: ``info()``, ``infer(values)``, ``request(cmd, payload)``.
BoardError           the board answered with an error frame, or did not answer correctly.
simulated_board      a board (accelerator + UART top) in Amaranth's simulator (or, with
                     ``engine="verilator"``, under Verilator), as a transport.
run_board            ``run_integer`` on a board: raw input batch -> last-stage integers.
"""

from __future__ import annotations

import struct

import numpy as np

from ..hw.board import frame
from ..hw.board.frame import Info
from ..model_tools.errors import ThresherError
from .transport import SerialTransport, SimulatedTransport, Transport, board_baud

__all__ = ["simulated_board", "Board", "BoardError", "run_board", "open_transport"]


class BoardError(ThresherError):
    """The board answered with an error frame (``code`` set), or not at all / not correctly."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


def simulated_board(network, *, pe: int = 4, simd: int = 4, divisor: int = 4,
                    input_range=(0, 255), core=None, engine: str = "pysim",
                    built: dict | None = None) -> Transport:
    """A whole board in Amaranth's simulator: ``hw.Accelerator(network, pe, simd)`` (or ``core``)
    behind :class:`hw.board.top.UartBridge` at ``divisor`` clocks per bit, as a transport.
    ``engine="verilator"``: the same design built with Verilator
    (:class:`sim.verilator_uart.VerilatorUartTransport`), much faster.

    ``built``: a build's configuration (:func:`hw.build.built_configuration`); then the design is
    the build's, as :class:`hw.board.top.BoardTop` puts it on the board (the accelerator at the
    build's array and hard-multiplier lanes, the bridge at its clock and UART divisor, its
    ``INFO`` and inter-byte timeout: :func:`hw.board.top.board_bridge`), not a fast stand-in;
    ``pe``, ``simd``, ``divisor`` and ``core`` are then not given."""
    if engine not in ("pysim", "verilator"):
        raise ThresherError(f"engine must be 'pysim' or 'verilator', not {engine!r}")
    from ..hw.board.top import UartBridge, board_bridge, core_info
    from ..hw.accelerator import Accelerator
    clk_hz, baud = 1e6, None
    if built is not None:
        from ..hw.board.uart import baud_divisor
        pe, simd, clk_hz, baud = built["pe"], built["simd"], built["clock_hz"], built["baud"]
        divisor = baud_divisor(clk_hz, baud)
        core = Accelerator(network, pe=pe, simd=simd, input_range=input_range,
                           dsp_lanes=built["dsp_lanes"])
        bridge = board_bridge(core, clock_hz=clk_hz, divisor=divisor, n_in=core.n_in,
                              n_out=core.n_out, network_hash=frame.network_hash(network),
                              pe=pe, simd=simd)
    else:
        if core is None:
            core = Accelerator(network, pe=pe, simd=simd, input_range=input_range)
        info = core_info(core, n_in=core.n_in, n_out=core.n_out, clock_hz=clk_hz,
                         network_hash=frame.network_hash(network), pe=pe, simd=simd,
                         input_range=input_range)
        bridge = UartBridge(core, info, divisor=divisor, timeout_cycles=100 * divisor * 10)
    if engine == "verilator":
        from .verilator_uart import VerilatorUartTransport
        return VerilatorUartTransport(bridge, divisor=divisor)
    return SimulatedTransport(bridge, divisor=divisor, clk_hz=clk_hz, baud=baud)


def open_transport(port, network=None, baud: int | None = None,
                   built: dict | None = None) -> Transport:
    """A :class:`Transport` for ``port``: one already (returned as is), ``"sim"`` (a simulated
    board for ``network``, see :func:`simulated_board`; the build's design with ``built``),
    ``"verilator"`` (the same board under Verilator), or a serial port name, opened at ``baud``
    (None: 115,200, the rate of builds that do not record one; see
    :func:`sim.transport.board_baud`)."""
    if isinstance(port, Transport):
        return port
    if port in ("sim", "verilator"):
        if network is None:
            raise ThresherError(f"port {port!r} needs the network to simulate")
        return simulated_board(network, engine="pysim" if port == "sim" else "verilator",
                               built=built)
    if isinstance(port, str):
        return SerialTransport(port, board_baud(None, baud))
    raise ThresherError(f"port must be a serial port name or a Transport, not {port!r}")


class Board:
    """Requests to a board running ``hw.board.top.BoardTop`` behind ``transport``.

    ``timeout`` bounds the wait for each reply (seconds).
    """

    def __init__(self, transport: Transport, *, timeout: float = 5.0):
        self.transport = transport
        self.timeout = timeout
        self._info = None

    # -- frames -----------------------------------------------------------------------------------
    def _read_exact(self, n, deadline, what):
        data = bytearray()
        while len(data) < n:
            left = deadline - self.transport.clock()
            chunk = self.transport.read(n - len(data), max(0.0, left)) if left > 0 else b""
            if not chunk and self.transport.clock() >= deadline:
                raise BoardError(f"no reply from the board within {self.timeout:g} s "
                                 f"(waiting for {what}; got {len(data)} of {n} bytes)")
            data += chunk
        return bytes(data)

    def read_frame(self) -> tuple[int, bytes]:
        """The next frame from the board: ``(cmd, payload)``; raises :class:`BoardError` on a
        timeout or a bad CRC."""
        deadline = self.transport.clock() + max(self.timeout, self.transport.MIN_TIMEOUT)
        prev = None
        while True:     # hunt for the sync bytes
            b = self._read_exact(1, deadline, "a frame")[0]
            if prev == frame.SYNC[0] and b == frame.SYNC[1]:
                break
            prev = b
        head = self._read_exact(3, deadline, "the frame header")
        cmd, length = head[0], struct.unpack("<H", head[1:])[0]
        rest = self._read_exact(length + 2, deadline, f"a {length}-byte payload")
        if frame.crc16(head + rest) != 0:
            raise BoardError(f"reply 0x{cmd:02x} has a bad CRC")
        return cmd, rest[:-2]

    def request(self, cmd: int, payload: bytes = b"") -> bytes:
        """Send one request, return its reply's payload; error replies raise :class:`BoardError`."""
        self.transport.flush_input()
        self.transport.write(frame.encode_frame(cmd, payload))
        rcmd, data = self.read_frame()
        if rcmd == frame.CMD_ERROR:
            code = data[0] if data else None
            raise BoardError(f"the board answered command 0x{cmd:02x} with an error: "
                             f"{frame.ERRORS.get(code, f'code {code}')}", code)
        if rcmd != cmd | frame.REPLY:
            raise BoardError(f"the board answered command 0x{cmd:02x} with 0x{rcmd:02x}")
        return data

    # -- commands ---------------------------------------------------------------------------------
    def info(self) -> Info:
        data = self.request(frame.CMD_INFO)
        if len(data) != struct.calcsize(frame.INFO_FORMAT):
            raise BoardError(f"INFO reply of {len(data)} bytes; expected "
                             f"{struct.calcsize(frame.INFO_FORMAT)}")
        self._info = Info.decode(data)
        if self._info.version != frame.PROTOCOL_VERSION:
            raise BoardError(f"the board speaks protocol version {self._info.version}, this host "
                             f"{frame.PROTOCOL_VERSION}")
        return self._info

    def infer(self, values) -> tuple[np.ndarray, int]:
        """One inference on raw integer inputs: ``(outputs, cycles)``."""
        info = self._info or self.info()
        values = np.asarray(values).reshape(-1)
        if values.size != info.n_in:
            raise ThresherError(f"{values.size} input values; the board takes {info.n_in}")
        try:
            payload = frame.pack_values(values, info.in_bits, info.in_signed)
        except ValueError as e:
            raise ThresherError(f"input for the board: {e}") from None
        data = self.request(frame.CMD_INFER, payload)
        if len(data) != info.reply_length:
            raise BoardError(f"INFER reply of {len(data)} bytes; expected {info.reply_length}")
        out = frame.unpack_values(data[:-4], info.out_bits, info.out_signed)
        return out, struct.unpack("<I", data[-4:])[0]


def run_board(network, x, port, *, timeout: float = 5.0, return_cycles: bool = False,
              check_hash: bool = True, baud: int | None = None, built: dict | None = None):
    """:func:`model_tools.golden.run_integer` on a board: raw input batch ``x`` (B, *input_shape)
    -> the last stage's integers (B, *network.last_shape), one ``INFER`` per sample.

    ``port`` is a serial port name, ``"sim"`` (the accelerator and UART top in Amaranth's simulator:
    slow, for trying the protocol without a board) or a :class:`Transport`; a serial port is
    opened at ``baud`` (the build's, :func:`sim.transport.board_baud`). With ``check_hash`` the
    board must run ``network`` (its ``INFO`` hash is compared with
    :func:`hw.board.frame.network_hash`). ``built`` (a build's configuration,
    :func:`hw.build.built_configuration`): a simulated port simulates that build's design.
    With ``return_cycles`` the result is ``(outputs, cycles)``, cycles (B,) per inference.
    """
    from .run import host_input
    from ..model_tools.golden import check_input
    raw = host_input(network, check_input(network, x))   # the same checks as the RTL engines
    own = isinstance(port, str)
    transport = open_transport(port, network, baud, built)
    try:
        board = Board(transport, timeout=timeout)
        info = board.info()
        if check_hash and info.network_hash != frame.network_hash(network):
            raise ThresherError(f"the board runs another network (hash 0x{info.network_hash:08x}, "
                                f"this one 0x{frame.network_hash(network):08x}): build and program "
                                f"it for this model first")
        n_out = int(np.prod(network.last_shape))
        if info.n_out != n_out:
            raise ThresherError(f"the board returns {info.n_out} values; the model {n_out}")
        outs = np.empty((raw.shape[0], n_out), dtype=np.int64)
        cycles = np.empty(raw.shape[0], dtype=np.int64)
        for b in range(raw.shape[0]):
            outs[b], cycles[b] = board.infer(raw[b])
    finally:
        if own:
            transport.close()
    outs = outs.reshape((raw.shape[0],) + tuple(network.last_shape))
    return (outs, cycles) if return_cycles else outs
