"""UART receiver and transmitter (8N1) with stream interfaces.

The bit period is a whole number of clock cycles, ``divisor = round(clk_hz / baud)``
(:func:`baud_divisor`); at least 4 so that the receiver can find the middle of a bit. Both blocks
are plain ``wiring.Component`` s and know nothing about pins: the board top wires ``rx`` / ``tx``
to a UART resource, the simulator drives them directly.

A build runs the UART at :func:`fastest_baud`: the fastest of :data:`STANDARD_BAUDS` that the
board's USB-UART bridge holds, whose divisor is within :data:`MAX_RATE_ERROR` at the clock the
design is really built at and leaves at least :data:`AUTO_MIN_DIVISOR` clocks a bit.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx", "baud_divisor", "fastest_baud", "check_baud", "STANDARD_BAUDS",
           "MIN_BAUD", "MAX_BAUD", "MAX_RATE_ERROR", "DEFAULT_BAUD", "AUTO_MIN_DIVISOR"]

#: The rates a build chooses from, fastest first: termios' standard speeds that the FTDI bridges
#: (FT2232H, FT232H, FT231X: 3 Mbaud from their 48 MHz / 12 MHz baud generators) make exactly
#: or within 0.2 %, so that the host's serial driver and the bridge both know them.
STANDARD_BAUDS = (3_000_000, 2_000_000, 1_500_000, 1_000_000, 921_600, 460_800, 230_400,
                  115_200)
#: Explicit rates outside this range are refused (no bridge thresher knows goes beyond 12 Mbaud,
#: and below 1,200 baud the protocol's inter-byte timeout would fire inside a byte).
MIN_BAUD, MAX_BAUD = 1_200, 12_000_000
#: The rate of builds made before the rate was chosen per build, and so the host's default when
#: it knows nothing better; also the limit assumed for a USB-UART bridge thresher does not know.
DEFAULT_BAUD = 115_200
#: The largest difference between ``baud`` and the rate a whole divisor makes (8N1 tolerates
#: about 4 % between both ends; the other half is left to the host's bridge).
MAX_RATE_ERROR = 0.02


def check_baud(baud) -> int:
    """``baud`` as an int if it is a rate thresher can use (:data:`MIN_BAUD` .. :data:`MAX_BAUD`);
    else ``ValueError``."""
    if isinstance(baud, bool) or not isinstance(baud, (int, float)) or baud != int(baud) \
            or not MIN_BAUD <= baud <= MAX_BAUD:
        raise ValueError(f"baud {baud!r} is not a UART rate thresher can use (give a whole "
                         f"number from {MIN_BAUD:,} to {MAX_BAUD:,}, e.g. 3000000 or 115200)")
    return int(baud)


def baud_divisor(clk_hz: float, baud: int) -> int:
    """Clock cycles per bit for ``baud`` at ``clk_hz``; raises ``ValueError`` when the rate error
    would exceed :data:`MAX_RATE_ERROR` (2 %; 8N1 tolerates about 4 % between both ends) or the
    divisor is below 4."""
    if baud <= 0 or clk_hz <= 0:
        raise ValueError(f"clock {clk_hz!r} Hz and baud {baud!r} must be positive")
    divisor = int(round(clk_hz / baud))
    if divisor < 4:
        raise ValueError(f"baud {baud} is too fast for a {clk_hz / 1e6:g} MHz clock "
                         f"(needs at least 4 clocks per bit, got {clk_hz / baud:.2f})")
    error = abs(clk_hz / divisor - baud) / baud
    if error > MAX_RATE_ERROR:
        raise ValueError(f"baud {baud} at {clk_hz / 1e6:g} MHz is off by {error:.1%} (divisor "
                         f"{divisor}); pick another baud or clock")
    return divisor


#: The fewest clocks per bit a build chooses by itself: the receiver samples once, mid-bit, after
#: a start edge it sees up to a clock (plus its synchronizer) late; at 8 clocks a bit that is an
#: eighth of a bit of margin lost, not a quarter (an explicit rate may go down to 4).
AUTO_MIN_DIVISOR = 8


def fastest_baud(clk_hz: float, max_baud: int) -> int:
    """The fastest of :data:`STANDARD_BAUDS` up to ``max_baud`` (what the USB-UART bridge holds)
    that :func:`baud_divisor` accepts at ``clk_hz`` with at least :data:`AUTO_MIN_DIVISOR`
    clocks per bit (rate error within :data:`MAX_RATE_ERROR`); ``ValueError`` when none is."""
    for baud in STANDARD_BAUDS:
        if baud > max_baud:
            continue
        try:
            if baud_divisor(clk_hz, baud) < AUTO_MIN_DIVISOR:
                continue
        except ValueError:
            continue
        return baud
    raise ValueError(f"no standard UART rate up to {max_baud:,} baud can be made from a "
                     f"{clk_hz / 1e6:g} MHz clock within {MAX_RATE_ERROR:.0%}")


def _check_divisor(divisor):
    if not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"divisor must be an integer of at least 4 clocks per bit, not {divisor!r}")


class UARTRx(wiring.Component):
    """UART receiver, 8 data bits, no parity, 1 stop bit, LSB first.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (>= 4).

    Members
    -------
    rx : In(1)
        The serial line (idle high); synchronised inside.
    o : Out(stream.Signature(8))
        Received bytes. A byte not taken before the next one completes is lost (``overrun``).
    error : Out(1)
        Pulses for one cycle on a framing error (stop bit low) or an overrun.
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(8))
    error: Out(1)

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(self.divisor))
        shreg = Signal(8)
        bits = Signal(range(9))

        m.d.sync += self.error.eq(0)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    # the start bit's middle: half a bit period after the falling edge
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):            # a glitch, not a start bit
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bits.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), bits.eq(bits + 1),
                                 timer.eq(self.divisor - 1)]
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(rx):
                        m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                        with m.If(self.o.valid & ~self.o.ready):
                            m.d.sync += self.error.eq(1)       # overrun: the old byte is lost
                    with m.Else():
                        m.d.sync += self.error.eq(1)           # framing error
                    m.next = "WAIT_IDLE"
            with m.State("WAIT_IDLE"):
                # leave the stop bit at its middle; a break (line held low) waits here
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """UART transmitter, 8N1, LSB first.

    Members
    -------
    i : In(stream.Signature(8))
        Bytes to send; one is taken whenever the line is idle.
    tx : Out(1)
        The serial line (idle high).
    """

    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        shreg = Signal(9)                # stop . data[7:0], shifted out LSB first after the start bit
        bits = Signal(range(10))

        m.d.comb += self.i.ready.eq((bits == 0) & (timer == 0))
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.tx.eq(0), shreg.eq(Cat(self.i.payload, C(1, 1))), bits.eq(9),
                         timer.eq(self.divisor - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Elif(bits != 0):
            m.d.sync += [self.tx.eq(shreg[0]), shreg.eq(shreg >> 1), bits.eq(bits - 1),
                         timer.eq(self.divisor - 1)]
        return m
