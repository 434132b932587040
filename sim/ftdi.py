"""The FTDI USB chip on iCE40 boards, opened with pyftdi over the libusb that ``libusb-package``
ships, so programming needs no system library.

The iCEBreaker (FT2232H, 0403:6010) and the UPduino v3 (FT232H, 0403:6014) wire interface A of
their FTDI chip the way icestorm's ``iceprog`` expects: SCK on ADBUS0, MOSI ADBUS1, MISO ADBUS2,
flash chip select ADBUS4, CDONE ADBUS6 (input), CRESET_B ADBUS7 (output). pyftdi's SPI master
numbers its chip selects from ADBUS3, so the flash is its chip select 1 (ADBUS3, chip select 0,
just idles high), and CRESET/CDONE are GPIOs beside the SPI pins.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from ..model_tools.errors import ThresherError

__all__ = ["FtdiBoard", "FTDI_BOARDS", "find_device", "open_ice40"]

FLASH_CS = 1          # pyftdi chip select 1 = ADBUS4
CRESET = 0x80         # ADBUS7
CDONE = 0x40          # ADBUS6
SPI_HZ = 6e6          # iceprog's clock


@dataclass(frozen=True)
class FtdiBoard:
    """How to find a board's FTDI chip: vendor and product id, and the MPSSE interface (1 = A)."""

    label: str
    chip: str
    vid: int
    pid: int
    interface: int = 1

    @property
    def usb_id(self) -> str:
        return f"{self.vid:04x}:{self.pid:04x}"

    def describe(self) -> str:
        return f"{self.label} (FTDI {self.chip} {self.usb_id}, interface " \
               f"{'ABCD'[self.interface - 1]})"


FTDI_BOARDS = {
    "icebreaker": FtdiBoard("iCEBreaker", "FT2232H", 0x0403, 0x6010),
    "upduino-v3": FtdiBoard("UPduino v3", "FT232H", 0x0403, 0x6014),
}


def usb_backend():
    """pyusb's libusb-1.0 backend on the library bundled by ``libusb-package``."""
    try:
        import libusb_package
    except ImportError:
        raise ThresherError("libusb-package is not installed (pip install libusb-package)"
                            ) from None
    backend = libusb_package.get_libusb1_backend()
    if backend is None:
        raise ThresherError("libusb-package has no usable libusb-1.0 for this platform")
    return backend


def find_device(board: str, backend=None):
    """The one USB device that is ``board``'s FTDI chip; a one-line ThresherError when there is
    none, or several (which one to overwrite would be a guess)."""
    import usb.core
    fb = FTDI_BOARDS[board]
    try:
        found = list(usb.core.find(find_all=True, idVendor=fb.vid, idProduct=fb.pid,
                                   backend=backend or usb_backend()))
    except usb.core.USBError as e:
        raise ThresherError(f"cannot list USB devices: {e}") from None
    if not found:
        raise ThresherError(f"no {fb.label} (FTDI {fb.usb_id}) found on USB; is it plugged in?")
    if len(found) > 1:
        raise ThresherError(f"{len(found)} FTDI {fb.usb_id} devices on USB; unplug all but the "
                            f"{fb.label}")
    return found[0]


class FtdiPins:
    """CRESET_B and CDONE through pyftdi's GPIO port of the SPI controller."""

    def __init__(self, gpio):
        self.gpio = gpio

    def creset(self, high: bool) -> None:
        self.gpio.write(CRESET if high else 0)

    def cdone(self) -> bool:
        return bool(self.gpio.read() & CDONE)


@contextmanager
def open_ice40(board: str, frequency: float = SPI_HZ) -> Iterator[tuple]:
    """Open ``board``'s FTDI chip as an SPI master: yields ``(spi_port, pins)`` for
    :func:`thresher.sim.spiflash.program_ice40`, with CRESET low from the moment it opens.
    USB errors on the way become one-line ThresherErrors."""
    fb = FTDI_BOARDS[board]
    device = find_device(board)
    from pyftdi.spi import SpiController
    controller = SpiController(cs_count=FLASH_CS + 1)
    try:
        controller.configure(device, interface=fb.interface, frequency=frequency,
                             direction=CRESET, initial=0)
        port = controller.get_port(FLASH_CS, freq=frequency, mode=0)
        pins = FtdiPins(controller.get_gpio())
    except (OSError, ValueError) as e:
        controller.close()
        hint = ("; on Linux a udev rule must give you access to the device (see the pyftdi "
                "installation notes)" if getattr(e, "errno", None) == 13 else "")
        raise ThresherError(f"cannot open the {fb.describe()}: {e}{hint}") from None
    try:
        yield port, pins
    except OSError as e:                # pyftdi and pyusb errors; ThresherError passes through
        raise ThresherError(f"USB error talking to the {fb.label}: {e}") from None
    finally:
        controller.close()
