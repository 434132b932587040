"""thresher's SPI flash writer (``sim/spiflash.py``) against a behavioural model of the
W25Q128JV the iCEBreaker carries (``spi_flash_model.py``), and checks that the model keeps the
chip's rules."""

import random
from contextlib import contextmanager

import pytest
from spi_flash_model import SIZE, SYNC, BusContention, Ice40, W25Q128JV

from thresher.model_tools import progress
from thresher.model_tools.errors import ThresherError
from thresher.sim.spiflash import SpiFlash, erase_range, program_ice40

UP5K_BITSTREAM = 104_090          # bytes in an iCE40 UP5K .bin: not a multiple of a page or block


def bitstream(n=UP5K_BITSTREAM, seed=0):
    """An image shaped like an icepack .bin: comment header, sync word, then noise."""
    rng = random.Random(seed)
    head = b"\xff\x00Lattice\x00\xff" + SYNC
    return head + bytes(rng.getrandbits(8) for _ in range(n - len(head)))


def board(**kw):
    """A flash as the FPGA leaves it (previous design in it, maybe powered down) and the FPGA
    running from it."""
    flash = W25Q128JV(**kw)
    flash.mem[:300_000] = bitstream(300_000, seed=99)
    return flash, Ice40(flash, running=True)


def test_model_keeps_the_datasheet_rules():
    f = W25Q128JV(busy_polls=3)
    assert f.exchange(b"\x9f", 3) == b"\xef\x40\x18"
    f.exchange(b"\x02\x00\x00\x10" + b"\x00")                  # no write enable: ignored
    assert f.mem[0x10] == 0xFF and not f.done
    f.exchange(b"\x06")
    assert f.exchange(b"\x05", 1)[0] & 0x02                     # WEL set
    f.exchange(b"\x04")
    assert not f.exchange(b"\x05", 1)[0] & 0x02                 # and cleared by write disable
    f.exchange(b"\x06")
    f.exchange(b"\x02\x00\x00\xfe" + bytes(range(1, 5)))         # crosses the page end: wraps
    assert f.mem[0xFE:0x100] == b"\x01\x02" and f.mem[0:2] == b"\x03\x04"
    assert f.mem[0x100] == 0xFF
    assert f.exchange(b"\x03\x00\x00\x00", 2) == b"\xff\xff"     # busy: reads ignored
    assert [f.exchange(b"\x05", 1)[0] for _ in range(4)] == [0x03, 0x03, 0x03, 0x00]  # WEL clears
    f.exchange(b"\x06")
    f.exchange(b"\x02\x00\x00\x00" + b"\xf0")                    # program only clears bits
    for _ in range(3):
        f.exchange(b"\x05", 1)
    assert f.mem[0] == 0x03 & 0xF0 == 0x00
    f.exchange(b"\x06")
    f.exchange(b"\x02\x00\x01\x00" + bytes(range(256)) + b"\xaa\xbb")   # 258 bytes: first 2 lost
    f.exchange(b"\x05", 4)                                        # one transaction, 4 polls
    assert f.mem[0x100:0x103] == b"\xaa\xbb\x02" and f.mem[0x1FF] == 0xFF
    assert f.exchange(b"\x03\x00\x00\xfe", 4) == b"\x01\x02\xaa\xbb"    # reads cross pages
    f.exchange(b"\x06")
    f.exchange(b"\x20\x00\x01\x23")                              # 4 kB erase of the sector
    f.exchange(b"\x05", 5)
    assert f.mem[0:0x1000] == b"\xff" * 0x1000
    f.exchange(b"\xb9")                                           # deep power-down
    assert f.exchange(b"\x9f", 3) == b"\xff\xff\xff"
    f.exchange(b"\x06")
    assert not f.wel
    assert f.exchange(b"\xab\x00\x00\x00", 1) == b"\x17"           # release (and device ID)
    assert f.exchange(b"\x9f", 3) == b"\xef\x40\x18"
    assert f.exchange(b"\x9f\x00\x00\x00", duplex=True)[1:] == b"\xef\x40\x18"


def test_model_fpga_owns_the_bus_until_creset_is_low():
    flash, fpga = board()
    with pytest.raises(BusContention):
        SpiFlash(flash).jedec_id()
    fpga.creset(False)
    assert SpiFlash(flash).jedec_id() == b"\xef\x40\x18"
    fpga.creset(True)
    assert fpga.cdone()          # the old design is still in the flash


@contextmanager
def recorded_progress():
    events = []

    class Recorder(progress.Reporter):
        @contextmanager
        def step(self, label):
            events.append(("step", label))
            yield

        def bar(self, total, label):
            events.append(("bar", label, total))
            return lambda done: events.append(("tick", done))

    with progress.reporting(Recorder()):
        yield events


@pytest.mark.parametrize("powered_down", [False, True])
def test_program_ice40_writes_and_verifies_an_unaligned_image(powered_down):
    flash, fpga = board(powered_down=powered_down)
    old = bytes(flash.mem[:300_000])
    image = bitstream()
    with recorded_progress() as events:
        desc = program_ice40(flash, fpga, image, sleep=lambda s: None)
    assert desc == "Winbond flash EF 40 18, 16 MB"
    assert flash.mem[:len(image)] == image
    start, end = erase_range(0, len(image))
    assert (start, end) == (0, 0x20000)
    assert flash.mem[len(image):end] == b"\xff" * (end - len(image))   # erased, not programmed
    assert flash.mem[end:300_000] == old[end:]                         # outside the erase: kept
    erases = [d for d in flash.done if d[0] != 0x02]
    assert erases == [(0xD8, 0, 0x10000), (0xD8, 0x10000, 0x10000)]
    programs = [d for d in flash.done if d[0] == 0x02]
    assert len(programs) == -(-len(image) // 256)
    assert all(a % 256 == 0 and n == min(256, len(image) - a) for _, a, n in programs)
    assert fpga.running and fpga.cdone() and fpga.boots == 1
    # iceprog's order: leave continuous read, wake, identify, write enable (checked), erase ...
    assert flash.commands[:6] == [0xFF, 0xAB, 0x9F, 0x06, 0x05, 0xD8]
    # ... read back, power down; then the FPGA, out of reset, wakes the flash and reads it
    assert flash.commands[-4:] == [0x03, 0xB9, 0xAB, 0x03]
    assert ("step", "erase flash 0x000000-0x01ffff") in events
    assert ("bar", "program flash (pages)", len(programs)) in events
    assert ("tick", len(programs)) in events
    assert ("step", f"verify {len(image):,} bytes") in events


def test_write_at_an_offset_splits_pages_at_their_boundaries():
    flash = W25Q128JV()
    image = bitstream(1000, seed=3)
    SpiFlash(flash).write(image, offset=0x1F0F0, unit=4096)
    assert flash.mem[0x1F0F0:0x1F0F0 + 1000] == image
    assert [d for d in flash.done if d[0] == 0x20] == [(0x20, 0x1F000, 4096)]
    first = [d for d in flash.done if d[0] == 0x02][0]
    assert first == (0x02, 0x1F0F0, 0x10)


def test_a_byte_that_does_not_program_fails_verification():
    flash, fpga = board()
    image = bytearray(bitstream())
    image[0x12345] = 0x00
    flash.stuck_bits[0x12345] = 0x04                     # a worn cell: bit 2 stays 1
    with pytest.raises(ThresherError, match=r"flash verify failed at 0x012345: wrote 0x00, "
                                            r"read 0x04"):
        program_ice40(flash, fpga, bytes(image), sleep=lambda s: None)
    assert fpga.running                                   # CRESET released even so


class NoFlash(W25Q128JV):
    """MISO pulled low instead of high: the ID reads as zeros."""
    jedec_id = bytes(3)


@pytest.mark.parametrize("flash", [W25Q128JV(present=False), NoFlash()], ids=["ff", "00"])
def test_no_flash_is_refused_with_a_clear_message(flash):
    fpga = Ice40(flash)
    ident = "FF FF FF" if not flash.present else "00 00 00"
    with pytest.raises(ThresherError, match=f"no SPI flash answers \\(JEDEC ID {ident}\\)"):
        program_ice40(flash, fpga, bitstream(), sleep=lambda s: None)
    assert not flash.done and fpga.running


def test_a_flash_that_stays_busy_times_out():
    flash = W25Q128JV()
    flash.stuck_busy = True
    with pytest.raises(ThresherError, match="still busy 0.05 s after a block erase"):
        SpiFlash(flash, timeouts={"block erase": 0.05}).write(bitstream(1000))


def test_a_too_small_flash_and_a_bitstream_the_fpga_rejects():
    class Small(W25Q128JV):
        jedec_id = bytes([0xEF, 0x40, 0x10])               # 64 kB
    flash = Small()
    with pytest.raises(ThresherError, match="104,090 bytes do not fit the 65,536-byte flash"):
        program_ice40(flash, Ice40(flash), bitstream(), sleep=lambda s: None)
    flash = W25Q128JV()
    with pytest.raises(ThresherError, match="CDONE stayed low"):
        program_ice40(flash, Ice40(flash), b"\x00" * 5000, sleep=lambda s: None, boot_timeout=0.05)
    assert flash.mem[:5000] == b"\x00" * 5000


def test_model_size():
    assert len(W25Q128JV().mem) == SIZE == 1 << W25Q128JV.jedec_id[2]
