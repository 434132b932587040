"""A behavioural model of the SPI NOR flash on the iCEBreaker (Winbond W25Q128JV), and of the
iCE40 beside it, to test thresher's flash writer against the chip's rules rather than against a
mock of our own code.

:class:`W25Q128JV` is driven like pyftdi's ``SpiPort``: ``exchange(out, readlen, start, stop,
duplex)``, where ``start`` lowers chip select and ``stop`` raises it. Bytes are clocked in one at
a time and, as on the real part, program / erase / write-enable / power-down take effect when chip
select rises, and only when the command had exactly the right length. What it models (datasheet
rev. F, sections 8.2-8.4):

* JEDEC ID (0x9F) ``EF 40 18``; release power-down / device ID (0xAB, three dummy bytes, ``17``)
* status register 1 (0x05, read repeatedly while chip select stays low): BUSY (bit 0), WEL (bit 1);
  status registers 2 and 3 (0x35, 0x15) read as 0
* write enable / disable (0x06 / 0x04); program and erase are ignored unless WEL is set, and WEL
  clears when they finish
* page program (0x02): only clears bits (new = old AND data); the address wraps inside its 256-byte
  page, so more than 256 bytes overwrite the first ones
* erase 4 kB (0x20), 32 kB (0x52), 64 kB (0xD8), chip (0xC7 / 0x60): the aligned unit becomes 0xFF
* read (0x03): runs on across pages and sectors and wraps at the end of the array
* busy for ``busy_polls`` status reads after a program and ``erase_polls`` after an erase;
  everything except the status reads is ignored while busy
* deep power-down (0xB9): everything except 0xAB is ignored (MISO floats: reads 0xFF)
* faults for tests: ``present=False`` (no flash: MISO pulled high), ``stuck_bits`` (cells that will
  not program to 0), ``stuck_busy`` (never finishes)

:class:`Ice40` models CRESET_B / CDONE: the SPI bus belongs to the FPGA unless CRESET is low (the
model raises if the programmer talks while the FPGA is running), and on CRESET rising the FPGA wakes
the flash, reads it and raises CDONE if it finds the iCE40 sync word ``7E AA 99 7E``.
"""

from __future__ import annotations

SIZE = 16 * 1024 * 1024
PAGE = 256
SYNC = bytes([0x7E, 0xAA, 0x99, 0x7E])

_STATUS_READS = {0x05, 0x35, 0x15}
_ERASE_UNITS = {0x20: 4096, 0x52: 32768, 0xD8: 65536}


class BusContention(AssertionError):
    """The programmer drove the SPI bus while the FPGA owned it (CRESET high)."""


class W25Q128JV:
    jedec_id = bytes([0xEF, 0x40, 0x18])
    device_id = 0x17

    def __init__(self, *, busy_polls: int = 2, erase_polls: int = 5, powered_down: bool = False,
                 present: bool = True):
        self.mem = bytearray(b"\xff") * SIZE
        self.busy_polls, self.erase_polls = busy_polls, erase_polls
        self.powered_down = powered_down
        self.present = present
        self.wel = False
        self.busy = 0                  # status reads left before the operation finishes
        self.stuck_busy = False
        self.stuck_bits: dict[int, int] = {}   # address -> bits that stay 1 when programmed
        self.done: list[tuple] = []    # executed program/erase operations: (op, address, length)
        self.commands: list[int] = []  # the command byte of every transaction, in order
        self.owner = None              # an Ice40 that owns the bus while CRESET is high
        self._tx: bytearray | None = None

    # -- the SPI pins --------------------------------------------------------------------------

    def exchange(self, out=b"", readlen: int = 0, start: bool = True, stop: bool = True,
                 duplex: bool = False, droptail: int = 0) -> bytes:
        if self.owner is not None and self.owner.running:
            raise BusContention("SPI traffic while CRESET is high (the FPGA drives the bus)")
        return self.transfer(out, readlen, start, stop, duplex)

    def transfer(self, out=b"", readlen: int = 0, start: bool = True, stop: bool = True,
                 duplex: bool = False) -> bytes:
        """``exchange`` without the bus-ownership check (the FPGA uses this)."""
        if start:
            self._tx = bytearray()
        assert self._tx is not None, "exchange(start=False) outside a transaction"
        out = bytes(out)
        if duplex:
            out = out + bytes(max(0, readlen - len(out)))
            miso = bytes(self._clock(b) for b in out)
            result = miso[:readlen or len(out)]
        else:
            for b in out:
                self._clock(b)
            result = bytes(self._clock(0xFF) for _ in range(readlen))
        if stop:
            self._chip_select_high()
            self._tx = None
        return result

    # -- one byte in, one byte out -------------------------------------------------------------

    def _status1(self) -> int:
        return (0x01 if self.busy else 0) | (0x02 if self.wel else 0)

    def _clock(self, mosi: int) -> int:
        tx = self._tx
        tx.append(mosi)
        i = len(tx) - 1
        if i == 0 or not self.present:
            return 0xFF                            # nothing driven while the command shifts in
        op = tx[0]
        if self.powered_down:
            return self.device_id if op == 0xAB and i >= 4 else 0xFF
        if self.busy and op not in _STATUS_READS:
            return 0xFF
        if op == 0x05:
            status = self._status1()
            self._poll()
            return status
        if op in (0x35, 0x15):
            return 0x00
        if op == 0x9F:
            return self.jedec_id[i - 1] if i <= 3 else 0x00
        if op == 0xAB:
            return self.device_id if i >= 4 else 0xFF
        if op == 0x03 and i >= 4:
            addr = int.from_bytes(tx[1:4], "big")
            return self.mem[(addr + i - 4) % SIZE]
        return 0xFF

    def _poll(self) -> None:
        """One status read during an operation: it finishes after a set number of them."""
        if self.busy and not self.stuck_busy:
            self.busy -= 1
            if not self.busy:
                self.wel = False

    def _start(self, polls: int) -> None:
        self.busy = max(polls, 1) if self.stuck_busy else polls
        if not self.busy:
            self.wel = False

    def _chip_select_high(self) -> None:
        tx = self._tx
        if not tx:
            return
        self.commands.append(tx[0])
        if not self.present:
            return
        op, n = tx[0], len(tx)
        if self.powered_down:
            if op == 0xAB:
                self.powered_down = False
            return
        if self.busy:
            return
        addr = int.from_bytes(tx[1:4], "big") if n >= 4 else None
        if op == 0x06 and n == 1:
            self.wel = True
        elif op == 0x04 and n == 1:
            self.wel = False
        elif op == 0xB9 and n == 1:
            self.powered_down = True
        elif op == 0x02 and n >= 5 and self.wel:
            page = addr - addr % PAGE
            latched = {}
            for k, d in enumerate(tx[4:]):           # wraps inside the page: later bytes win
                latched[(addr + k) % PAGE] = d
            for off, d in latched.items():
                a = page + off
                self.mem[a] &= d | self.stuck_bits.get(a, 0)
            self.done.append((0x02, addr, n - 4))
            self._start(self.busy_polls)
        elif op in _ERASE_UNITS and n == 4 and self.wel:
            unit = _ERASE_UNITS[op]
            base = addr - addr % unit
            self.mem[base:base + unit] = b"\xff" * unit
            self.done.append((op, base, unit))
            self._start(self.erase_polls)
        elif op in (0xC7, 0x60) and n == 1 and self.wel:
            self.mem[:] = b"\xff" * SIZE
            self.done.append((op, 0, SIZE))
            self._start(self.erase_polls)


class Ice40:
    """CRESET_B and CDONE of an iCE40 that boots from ``flash`` (the :class:`ResetPins` side)."""

    def __init__(self, flash: W25Q128JV, *, running: bool = True, power_down_after_boot=False):
        self.flash = flash
        flash.owner = self
        self.running = running                 # CRESET high: the FPGA owns the SPI bus
        self.configured = False
        self.power_down_after_boot = power_down_after_boot
        self.boots = 0

    def creset(self, high: bool) -> None:
        if high and not self.running:
            self.running = True
            self._boot()
        elif not high:
            self.running = False
            self.configured = False

    def cdone(self) -> bool:
        return self.configured

    def _boot(self) -> None:
        """What the iCE40's SPI master does at reset release: wake the flash, then read it."""
        self.boots += 1
        self.flash.transfer(b"\xab")
        head = self.flash.transfer(b"\x03\x00\x00\x00", 1024)
        self.configured = SYNC in head
        if self.power_down_after_boot:
            self.flash.transfer(b"\xb9")
