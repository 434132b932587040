"""Writing an iCE40 bitstream into the SPI flash it boots from, the way icestorm's ``iceprog`` does.

An iCE40 board keeps its bitstream in a serial NOR flash (a Winbond W25Q128JV on the iCEBreaker)
and reads it at power-up. To replace it, the programmer holds the FPGA in reset (CRESET low) so
it lets go of the SPI bus, speaks the flash's standard (JEDEC) command set, then releases CRESET
and watches CDONE go high when the FPGA has configured itself from the new bitstream.

This module knows nothing about USB: :class:`SpiFlash` talks to any object with pyftdi's
``SpiPort.exchange(out, readlen)`` (one call = one chip-select-low transaction: write ``out``,
then read ``readlen`` bytes), and :func:`program_ice40` also needs a :class:`ResetPins` for
CRESET and CDONE. :mod:`thresher.sim.ftdi` provides both over an FTDI chip; the tests provide a
behavioural model of the flash.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

from ..model_tools import progress
from ..model_tools.errors import ThresherError

__all__ = ["SpiFlash", "ResetPins", "program_ice40", "erase_range", "PAGE", "BLOCK"]

PAGE = 256            # page program writes at most one page, wrapping inside it
SECTOR = 4 * 1024     # smallest erase unit
BLOCK = 64 * 1024     # the erase unit iceprog uses by default

# JEDEC / Winbond command codes (the subset every SPI NOR flash on these boards understands)
WRITE_ENABLE, WRITE_DISABLE = 0x06, 0x04
READ_STATUS = 0x05
READ_DATA = 0x03
PAGE_PROGRAM = 0x02
SECTOR_ERASE, BLOCK_ERASE, CHIP_ERASE = 0x20, 0xD8, 0xC7
JEDEC_ID = 0x9F
POWER_DOWN, RELEASE_POWER_DOWN = 0xB9, 0xAB
STATUS_BUSY, STATUS_WEL = 0x01, 0x02

#: worst cases from the W25Q128JV datasheet (3 ms, 400 ms, 2 s, 200 s) with a margin
TIMEOUT_S = {"program": 0.5, "sector erase": 2.0, "block erase": 6.0, "chip erase": 400.0}

_VENDORS = {0xEF: "Winbond", 0xC2: "Macronix", 0x20: "Micron", 0x1F: "Adesto", 0xC8: "GigaDevice",
            0x9D: "ISSI", 0x01: "Cypress", 0x85: "Puya"}


class SpiPortLike(Protocol):
    def exchange(self, out: bytes = b"", readlen: int = 0) -> bytes: ...


class ResetPins(Protocol):
    """The two FPGA configuration pins the programmer drives and watches."""

    def creset(self, high: bool) -> None:
        """Drive CRESET_B: low holds the FPGA in reset (off the SPI bus), high lets it boot."""

    def cdone(self) -> bool:
        """Whether CDONE is high, i.e. the FPGA has loaded a bitstream."""


def erase_range(offset: int, size: int, unit: int = BLOCK) -> tuple[int, int]:
    """The erase-unit-aligned ``[start, end)`` that covers ``size`` bytes written at ``offset``."""
    start = offset - offset % unit
    end = -(-(offset + size) // unit) * unit
    return start, end


class SpiFlash:
    """A SPI NOR flash reached through ``spi`` (see :class:`SpiPortLike`).

    Each method is one command of the JEDEC set; :meth:`write` is the whole erase, program and
    verify of an image. Timeouts are in seconds of wall time (``TIMEOUT_S`` by default);
    ``poll_sleep`` is the pause between status polls during an erase.
    """

    def __init__(self, spi: SpiPortLike, *, timeouts: dict | None = None,
                 poll_sleep: float = 0.001, sleep: Callable[[float], None] = time.sleep):
        self.spi = spi
        self.timeouts = {**TIMEOUT_S, **(timeouts or {})}
        self.poll_sleep = poll_sleep
        self.sleep = sleep
        self.size: int | None = None     # bytes, once :meth:`identify` knows it

    # -- single commands --------------------------------------------------------------------

    def _command(self, op: int, addr: int | None = None, data: bytes = b"",
                 readlen: int = 0) -> bytes:
        out = bytes([op]) if addr is None else bytes([op]) + addr.to_bytes(3, "big")
        return bytes(self.spi.exchange(out + bytes(data), readlen))

    def exit_continuous_read(self) -> None:
        """Clock out 0xFF 0xFF: leaves a continuous-read (XIP) mode the FPGA may have left the
        flash in; any flash not in that mode ignores it (as ``iceprog``'s ``flash_reset``)."""
        self.spi.exchange(b"\xff\xff", 0)

    def release_power_down(self) -> None:
        """0xAB: wake the flash from deep power-down (where it ignores everything else)."""
        self._command(RELEASE_POWER_DOWN)

    def power_down(self) -> None:
        """0xB9: deep power-down; the iCE40 wakes the flash itself (0xAB) when it boots."""
        self._command(POWER_DOWN)

    def jedec_id(self) -> bytes:
        """0x9F: manufacturer, memory type, capacity (``EF 40 18`` for a W25Q128JV)."""
        return self._command(JEDEC_ID, readlen=3)

    def identify(self) -> str:
        """Read the JEDEC ID and refuse a missing flash (MISO stuck high or low); a readable
        description such as ``Winbond flash EF 40 18, 16 MB``. Sets :attr:`size` when the third
        ID byte is the usual log2 of the capacity."""
        ident = self.jedec_id()
        text = " ".join(f"{b:02X}" for b in ident)
        if ident in (b"\xff\xff\xff", b"\x00\x00\x00"):
            raise ThresherError(f"no SPI flash answers (JEDEC ID {text}): the FPGA may not be held "
                                f"in reset, or the board is not an FTDI-programmed iCE40 board")
        vendor = _VENDORS.get(ident[0], f"vendor 0x{ident[0]:02X}")
        if 0x10 <= ident[2] <= 0x1F:
            self.size = 1 << ident[2]
            mb = self.size >= 1 << 20
            amount = f"{self.size >> 20} MB" if mb else f"{self.size >> 10} kB"
            return f"{vendor} flash {text}, {amount}"
        return f"{vendor} flash {text}"

    def status(self) -> int:
        """0x05: status register 1 (bit 0 BUSY, bit 1 WEL, the write-enable latch)."""
        return self._command(READ_STATUS, readlen=1)[0]

    def wait_ready(self, what: str) -> None:
        """Poll the status register until BUSY clears; a ThresherError after the timeout."""
        deadline = time.monotonic() + self.timeouts[what]
        while self.status() & STATUS_BUSY:
            if time.monotonic() > deadline:
                raise ThresherError(f"SPI flash still busy {self.timeouts[what]:g} s after a "
                                    f"{what}; unplug the board and try again")
            if what != "program":
                self.sleep(self.poll_sleep)

    def write_enable(self) -> None:
        """0x06, checked: program and erase do nothing unless the write-enable latch is set, and
        the flash clears it after each one, so it is set (and read back) before every command."""
        self._command(WRITE_ENABLE)
        if not self.status() & STATUS_WEL:
            raise ThresherError("SPI flash refuses to enable writes (write-protected, or not "
                                "answering)")

    def erase(self, addr: int, unit: int = BLOCK) -> None:
        """Erase (set to 0xFF) the 4 kB sector or 64 kB block at ``addr`` and wait for it."""
        op, what = {SECTOR: (SECTOR_ERASE, "sector erase"),
                    BLOCK: (BLOCK_ERASE, "block erase")}[unit]
        if addr % unit:
            raise ValueError(f"erase address 0x{addr:06x} is not {unit}-aligned")
        self.write_enable()
        self._command(op, addr)
        self.wait_ready(what)

    def erase_chip(self) -> None:
        """0xC7: erase the whole flash (up to minutes on a 16 MB part)."""
        self.write_enable()
        self._command(CHIP_ERASE)
        self.wait_ready("chip erase")

    def program_page(self, addr: int, data: bytes) -> None:
        """0x02: program ``data`` at ``addr``, all inside one 256-byte page (a page program that
        runs past the page end wraps to its start, so callers split at page boundaries)."""
        if not data or addr % PAGE + len(data) > PAGE:
            raise ValueError(f"{len(data)} bytes at 0x{addr:06x} are not inside one page")
        self.write_enable()
        self._command(PAGE_PROGRAM, addr, data)
        self.wait_ready("program")

    def read(self, addr: int, n: int) -> bytes:
        """0x03: ``n`` bytes from ``addr`` (a read runs on across pages and sectors)."""
        return self._command(READ_DATA, addr, readlen=n)

    # -- a whole image ----------------------------------------------------------------------

    def write(self, image: bytes, offset: int = 0, *, unit: int = BLOCK, chunk: int = 4096) -> None:
        """Erase the ``unit`` blocks that ``image`` covers at ``offset``, program it page by page,
        then read it back and compare; a ThresherError names the first differing address."""
        if self.size is not None and offset + len(image) > self.size:
            raise ThresherError(f"{len(image):,} bytes do not fit the {self.size:,}-byte flash")
        start, end = erase_range(offset, len(image), unit)
        with progress.step(f"erase flash 0x{start:06x}-0x{end - 1:06x}"):
            for addr in range(start, end, unit):
                self.erase(addr, unit)
        pages = []
        addr = offset
        while addr < offset + len(image):
            n = min(PAGE - addr % PAGE, offset + len(image) - addr)
            pages.append((addr, n))
            addr += n
        tick = progress.bar(len(pages), "program flash (pages)")
        for i, (addr, n) in enumerate(pages):
            self.program_page(addr, image[addr - offset:addr - offset + n])
            if tick:
                tick(i + 1)
        with progress.step(f"verify {len(image):,} bytes"):
            self.verify(image, offset, chunk=chunk)

    def verify(self, image: bytes, offset: int = 0, *, chunk: int = 4096) -> None:
        """Read the flash back in ``chunk``-byte reads and compare it with ``image``."""
        for at in range(0, len(image), chunk):
            want = image[at:at + chunk]
            got = self.read(offset + at, len(want))
            if got != want:
                i = next(i for i in range(len(want)) if i >= len(got) or got[i] != want[i])
                seen = f"0x{got[i]:02x}" if i < len(got) else "nothing"
                raise ThresherError(f"flash verify failed at 0x{offset + at + i:06x}: wrote "
                                    f"0x{want[i]:02x}, read {seen}; the board is not programmed")


def program_ice40(spi: SpiPortLike, pins: ResetPins, image: bytes, *, boot_timeout: float = 1.0,
                  sleep: Callable[[float], None] = time.sleep,
                  flash: SpiFlash | None = None) -> str:
    """``iceprog``'s default mode: hold CRESET low, wake and identify the flash, write and verify
    ``image`` at address 0, put the flash back to sleep, release CRESET and wait for CDONE.

    Returns the flash's description. CRESET is released on any failure too, so the board is never
    left held in reset.
    """
    flash = flash or SpiFlash(spi, sleep=sleep)
    pins.creset(False)
    sleep(0.01)            # CRESET_B low for at least 200 ns; the FPGA then floats its SPI pins
    released = False
    try:
        flash.exit_continuous_read()
        flash.release_power_down()
        sleep(0.001)       # tRES1: 3 us on the W25Q128JV before the next command
        description = flash.identify()
        flash.write(image)
        flash.power_down()
        pins.creset(True)
        released = True
        deadline = time.monotonic() + boot_timeout
        while not pins.cdone():
            if time.monotonic() > deadline:
                raise ThresherError(f"the flash is written and verified, but the FPGA did not "
                                    f"configure from it (CDONE stayed low {boot_timeout:g} s "
                                    f"after reset); is the bitstream for this FPGA?")
            sleep(0.01)
        return description
    finally:
        if not released:
            try:
                pins.creset(True)
            except Exception:                         # the error being raised matters more
                pass
