"""The board's framed byte protocol, as plain Python: shared by the gateware
(:mod:`hw.board.protocol`) and the host (:mod:`sim.host`). Only the CRC's parameters come from
Amaranth (``amaranth.lib.crc``), so that the gateware and the host use one definition.

A frame, in either direction::

    0xA5 0x5A | CMD (1) | LEN (2, little-endian) | PAYLOAD (LEN bytes) | CRC (2, big-endian)

``CRC`` is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, not reflected, see
:data:`CRC`) of ``CMD LEN PAYLOAD``; sent high byte first, so that the CRC of ``CMD .. CRC`` is
zero (how the gateware checks it).

Requests and their replies (a reply's CMD is the request's with bit 7 set):

``INFO`` (0x01, no payload)
    :class:`Info`, :data:`INFO_FORMAT` (20 bytes): protocol version, input / output value bits
    and signedness, number of inputs / outputs, PE, SIMD, clock in Hz, network hash.
``INFER`` (0x02, one raw input value per ``ceil(in_bits / 8)`` bytes, little-endian)
    The outputs, ``ceil(out_bits / 8)`` bytes each (little-endian, two's complement when signed),
    then the cycle count of the inference (u32). The request's ``in_bits`` / signedness (from
    ``INFO``) are the wire format (:func:`hw.board.top.core_info`).

Any failure is answered with ``ERROR`` (0x7F), payload ``[code, request CMD]``, code one of
:data:`ERRORS`. The device drops a frame whose bytes stop arriving for longer than its inter-byte
timeout and answers it with ``TIMEOUT``.
"""

import hashlib
import struct
from dataclasses import dataclass

import numpy as np
from amaranth.lib import crc

__all__ = ["SYNC", "CMD_INFO", "CMD_INFER", "CMD_ERROR", "REPLY", "ERRORS", "ERR_BAD_CRC",
           "ERR_BAD_LENGTH", "ERR_UNKNOWN_COMMAND", "ERR_TIMEOUT", "PROTOCOL_VERSION",
           "INFO_FORMAT", "FRAME_OVERHEAD", "Info", "CRC", "crc16", "encode_frame", "network_hash",
           "value_bytes", "pack_values", "unpack_values"]

SYNC = b"\xA5\x5A"
CMD_INFO = 0x01
CMD_INFER = 0x02
CMD_ERROR = 0x7F
REPLY = 0x80

ERR_BAD_CRC = 1
ERR_BAD_LENGTH = 2
ERR_UNKNOWN_COMMAND = 3
ERR_TIMEOUT = 4
ERRORS = {ERR_BAD_CRC: "bad CRC", ERR_BAD_LENGTH: "bad length",
          ERR_UNKNOWN_COMMAND: "unknown command", ERR_TIMEOUT: "inter-byte timeout"}

PROTOCOL_VERSION = 1
INFO_FORMAT = "<BBBBHHHHII"   # version, in_bits, out_bits, flags, n_in, n_out, pe, simd, clock_hz, hash
INFO_IN_SIGNED = 1
INFO_OUT_SIGNED = 2
#: bytes of a frame around its payload: SYNC (2), CMD (1), LEN (2), CRC (2)
FRAME_OVERHEAD = len(SYNC) + 1 + 2 + 2


#: The frame CRC, byte by byte: the gateware builds it (``CRC.create()``), the host computes it
#: (:func:`crc16`).
CRC = crc.catalog.CRC16_CCITT_FALSE(data_width=8)


def crc16(data: bytes) -> int:
    """The frame CRC (:data:`CRC`) of ``data``."""
    return CRC.compute(data)


def encode_frame(cmd: int, payload: bytes = b"") -> bytes:
    """One complete frame."""
    if not 0 <= cmd <= 0xFF or len(payload) > 0xFFFF:
        raise ValueError(f"command {cmd!r} or payload length {len(payload)} out of range")
    body = bytes([cmd]) + struct.pack("<H", len(payload)) + bytes(payload)
    return SYNC + body + struct.pack(">H", crc16(body))


def value_bytes(bits: int) -> int:
    return (bits + 7) // 8


def pack_values(values, bits: int, signed: bool) -> bytes:
    """Integers to little-endian fields of ``value_bytes(bits)`` bytes; raises ``ValueError`` for a
    value that does not fit ``bits``."""
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if values.size and (values.min() < lo or values.max() > hi):
        bad = values[(values < lo) | (values > hi)][0]
        raise ValueError(f"value {int(bad)} does not fit {'signed' if signed else 'unsigned'} "
                         f"{bits}-bit ({lo}..{hi})")
    n = value_bytes(bits)
    return b"".join(int(v).to_bytes(n, "little", signed=signed) for v in values)


def unpack_values(data: bytes, bits: int, signed: bool) -> np.ndarray:
    n = value_bytes(bits)
    if len(data) % n:
        raise ValueError(f"{len(data)} bytes is not a whole number of {n}-byte values")
    return np.array([int.from_bytes(data[i:i + n], "little", signed=signed)
                     for i in range(0, len(data), n)], dtype=np.int64)


@dataclass(frozen=True)
class Info:
    """What ``INFO`` returns: the shape of the accelerator behind the UART."""

    in_bits: int
    in_signed: bool
    out_bits: int
    out_signed: bool
    n_in: int
    n_out: int
    pe: int
    simd: int
    clock_hz: int
    network_hash: int
    version: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        flags = (INFO_IN_SIGNED if self.in_signed else 0) | (INFO_OUT_SIGNED if self.out_signed else 0)
        return struct.pack(INFO_FORMAT, self.version, self.in_bits, self.out_bits, flags, self.n_in,
                           self.n_out, self.pe, self.simd, int(self.clock_hz), self.network_hash)

    @classmethod
    def decode(cls, data: bytes) -> "Info":
        (version, in_bits, out_bits, flags, n_in, n_out, pe, simd, clock_hz,
         h) = struct.unpack(INFO_FORMAT, data)
        return cls(in_bits, bool(flags & INFO_IN_SIGNED), out_bits, bool(flags & INFO_OUT_SIGNED),
                   n_in, n_out, pe, simd, clock_hz, h, version)

    @property
    def request_length(self) -> int:
        return self.n_in * value_bytes(self.in_bits)

    @property
    def reply_length(self) -> int:
        return self.n_out * value_bytes(self.out_bits) + 4

    @property
    def link_bytes(self) -> int:
        """Bytes on the line per inference: the ``INFER`` request frame and its reply frame
        (each payload plus :data:`FRAME_OVERHEAD`). At ``baud`` (8N1: 10 bits a byte) the link
        carries at most ``baud / (10 * link_bytes)`` inferences per second."""
        return self.request_length + self.reply_length + 2 * FRAME_OVERHEAD


def network_hash(network) -> int:
    """A 32-bit fingerprint of an :class:`~model_tools.ir.IntegerNetwork`: shapes, weights,
    thresholds, the wiring, the input type and the host ops (not its name), so the host can tell
    whether a board runs the network it means. What identifies each part is declared beside its
    kind in ``model_tools.ir`` (``fingerprint``); this encodes those items in order."""
    h = hashlib.sha256()
    for item in network.fingerprint():
        if isinstance(item, np.ndarray):
            h.update(str(item.dtype).encode() + str(item.shape).encode())
            h.update(np.ascontiguousarray(item).tobytes())
        else:
            h.update(repr(item).encode())
    return int.from_bytes(h.digest()[:4], "little")
