"""The board top: UART <-> protocol engine <-> accelerator core, LEDs, and a PLL.

:class:`UartBridge` is everything but the pins and the clock (it is what the end-to-end tests
simulate); :class:`BoardTop` puts it on an amaranth-boards platform, with the clock either the
board's oscillator or a PLL output (``clock_mhz``), and the UART at the fastest standard rate
the board's USB-UART bridge holds at that clock (:func:`.uart.fastest_baud`) unless told one.
"""

from amaranth import *
from amaranth.hdl import Shape
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from ...model_tools.errors import ThresherError
from ...model_tools.ir import bits_for_range

from .frame import Info
from .platforms import spec_of_platform
from .pll import ecp5_pll, ice40_pll, pll_instance
from .protocol import ProtocolEngine
from .uart import DEFAULT_BAUD, UARTRx, UARTTx, baud_divisor, check_baud, fastest_baud

__all__ = ["UartBridge", "BoardTop", "board_bridge", "core_info", "uart_baud", "DEFAULT_BAUD"]


def uart_baud(clock_hz: float, max_baud: int, baud: int | None = None) -> tuple[int, int]:
    """``(baud, divisor)`` of the UART at ``clock_hz``: ``baud`` if given (checked: a usable rate
    that the clock makes within the tolerance of :func:`.uart.baud_divisor`), else the fastest
    standard rate up to ``max_baud`` that it makes. Raises :class:`ThresherError`."""
    try:
        if baud is None:
            baud = fastest_baud(clock_hz, max_baud)
        else:
            baud = check_baud(baud)
        return baud, baud_divisor(clock_hz, baud)
    except ValueError as e:
        raise ThresherError(f"UART: {e}") from None


def _payload_shape(core, port):
    return Shape.cast(core.signature.members[port].signature.members["payload"].shape)


def core_info(core, *, n_in, n_out, clock_hz, network_hash=0, pe=1, simd=1,
              input_range=None) -> Info:
    """The ``INFO`` reply for ``core`` (widths read from its ``i`` / ``o`` stream signatures).

    With ``input_range`` (lo, hi) the wire format of an input value is the narrowest that holds
    the range (e.g. one unsigned byte for 0..255 pixels into a signed 9-bit port), not the port's.
    """
    for port in ("i", "o", "start", "done", "cycles"):
        if port not in core.signature.members:
            raise TypeError(f"the core has no {port!r} port; it must follow the accelerator's "
                            f"port contract (i, o, start, done, cycles)")
    si, so = _payload_shape(core, "i"), _payload_shape(core, "o")
    in_bits, in_signed = si.width, si.signed
    if input_range is not None:
        lo, hi = (int(v) for v in input_range)
        in_bits, in_signed = bits_for_range(lo, hi)
        if in_bits > si.width or (in_signed and not si.signed) or \
                (not in_signed and si.signed and in_bits >= si.width):
            raise ValueError(f"input_range {input_range!r} does not fit the core's input {si!r}")
    return Info(in_bits=in_bits, in_signed=in_signed, out_bits=so.width, out_signed=so.signed,
                n_in=int(n_in), n_out=int(n_out), pe=int(pe), simd=int(simd),
                clock_hz=int(round(clock_hz)), network_hash=int(network_hash) & 0xFFFFFFFF)


class UartBridge(wiring.Component):
    """A core behind a UART: UARTRx -> :class:`ProtocolEngine` -> UARTTx, plus status LEDs.

    Parameters
    ----------
    core : wiring.Component
        Follows the accelerator's port contract (``i``, ``o``, ``start``, ``done``, ``cycles``,
        optionally ``busy``).
    info : Info
        See :func:`core_info`.
    divisor : int
        UART clock cycles per bit.
    timeout_cycles : int
        The protocol's inter-byte timeout.

    Members
    -------
    rx : In(1), tx : Out(1)
        The serial lines (idle high).
    led_busy : Out(1)
        The core is computing.
    led_done : Out(1)
        Lit from the end of an inference until the next one starts.
    led_error : Out(1)
        Lit from an error reply until the next inference.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    led_busy: Out(1)
    led_done: Out(1)
    led_error: Out(1)

    def __init__(self, core, info: Info, *, divisor: int, timeout_cycles: int):
        self.core, self.info = core, info
        self.divisor, self.timeout_cycles = divisor, timeout_cycles
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        m.submodules.uart_rx = urx = UARTRx(self.divisor)
        m.submodules.uart_tx = utx = UARTTx(self.divisor)
        m.submodules.protocol = proto = ProtocolEngine(self.info,
                                                       timeout_cycles=self.timeout_cycles)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        wiring.connect(m, urx.o, proto.rx)
        wiring.connect(m, proto.tx, utx.i)
        # the wire format may be narrower than the core's port: extend
        m.d.comb += [core.i.valid.eq(proto.core_i.valid), proto.core_i.ready.eq(core.i.ready),
                     core.i.payload.eq(proto.core_i.payload)]
        wiring.connect(m, core.o, proto.core_o)
        m.d.comb += [core.start.eq(proto.start), proto.done.eq(core.done),
                     proto.cycles.eq(core.cycles)]

        if "busy" in core.signature.members:
            m.d.comb += self.led_busy.eq(core.busy)
        with m.If(proto.start):
            m.d.sync += [self.led_done.eq(0), self.led_error.eq(0)]
        with m.Elif(core.done):
            m.d.sync += self.led_done.eq(1)
        with m.If(proto.error):
            m.d.sync += self.led_error.eq(1)
        return m


def _request_leds(platform, n):
    """Up to ``n`` single-bit LED outputs (``led`` resources, else the RGB LED's channels)."""
    leds = []
    for i in range(n):
        try:
            leds.append(platform.request("led", i).o)
        except Exception:
            break
    if len(leds) < n:
        try:
            rgb = platform.request("rgb_led", 0)
            leds += [rgb.g.o, rgb.r.o, rgb.b.o][:n - len(leds)]
        except Exception:
            pass
    return leds


def board_bridge(core, *, clock_hz, divisor, n_in, n_out, network_hash=0, pe=1, simd=1,
                 timeout_s=0.05) -> UartBridge:
    """The :class:`UartBridge` that :class:`BoardTop` puts on a board running at ``clock_hz``
    with ``divisor`` clock cycles per UART bit: its ``INFO`` reply (:func:`core_info`, the input
    in the core port's own width) and an inter-byte timeout of ``timeout_s``. Simulating a build
    (``thresher run --engine board --port verilator --build DIR``) builds the same bridge."""
    info = core_info(core, n_in=n_in, n_out=n_out, clock_hz=clock_hz, network_hash=network_hash,
                     pe=pe, simd=simd)
    return UartBridge(core, info, divisor=divisor,
                      timeout_cycles=max(2, int(timeout_s * clock_hz)))


class BoardTop(Elaboratable):
    """A core on a board: the UART resource, LEDs (busy, done, error) and the clock.

    Parameters
    ----------
    core : wiring.Component
        The accelerator (port contract of :class:`UartBridge`).
    platform : amaranth.build.Platform
        An amaranth-boards platform with a ``uart`` resource (see :mod:`hw.board.platforms`).
    n_in, n_out : int
        Values per inference in and out.
    clock_mhz : float or None
        Run the design from a PLL at (nearly) this frequency; None: the board oscillator.
    baud : int or None
        The UART's rate; None: the fastest standard rate up to ``max_baud`` that the real clock
        makes (:func:`uart_baud`). Either way checked against the real clock.
    max_baud : int or None
        The fastest rate the board's USB-UART bridge holds; None: the board's
        (:attr:`.platforms.BoardSpec.uart_max_baud`), or :data:`DEFAULT_BAUD` for a platform
        thresher does not list.
    network_hash, pe, simd : int
        Reported by ``INFO``.
    timeout_s : float
        Inter-byte timeout.

    Attributes
    ----------
    clock_hz : float
        The design's real clock (the PLL's output frequency, or the oscillator's).
    baud, divisor : int
        The UART's rate and its clock cycles per bit at ``clock_hz``.
    pll : ICE40PLL or ECP5PLL or None

    Raises
    ------
    ThresherError
        ``baud`` is no usable rate or the clock cannot make it (nor, without ``baud``, any
        standard rate).
    """

    def __init__(self, core, platform, *, n_in, n_out, clock_mhz=None, baud=None, max_baud=None,
                 network_hash=0, pe=1, simd=1, timeout_s=0.05):
        self.core = core
        self.board_hz = float(platform.default_clk_frequency)
        self.family = "ecp5" if platform.family == "ecp5" else "ice40"
        self.pll = None
        if clock_mhz is not None:
            fin = self.board_hz / 1e6
            self.pll = ecp5_pll(fin, clock_mhz) if self.family == "ecp5" \
                else ice40_pll(fin, clock_mhz)
            self.clock_hz = self.pll.fout_mhz * 1e6
        else:
            self.clock_hz = self.board_hz
        if max_baud is None:
            spec = spec_of_platform(platform)
            max_baud = spec.uart_max_baud if spec is not None else DEFAULT_BAUD
        self.baud, self.divisor = uart_baud(self.clock_hz, max_baud, baud)
        self.bridge = board_bridge(core, clock_hz=self.clock_hz, divisor=self.divisor,
                                   n_in=n_in, n_out=n_out, network_hash=network_hash, pe=pe,
                                   simd=simd, timeout_s=timeout_s)
        self.info = self.bridge.info

    def _pll_domain(self, m, platform):
        clk_out, locked = Signal(name="pll_clk"), Signal(name="pll_locked")
        if self.family == "ice40":
            if platform.default_clk == "SB_HFOSC":
                hf = Signal()
                m.submodules.hfosc = Instance(
                    "SB_HFOSC", i_CLKHFEN=1, i_CLKHFPU=1,
                    p_CLKHF_DIV=f"0b{platform.hfosc_div:02b}", o_CLKHF=hf)
                m.submodules.pll = pll_instance(self.pll, hf, clk_out, locked)
            else:
                # the oscillator sits on the PLL-capable pad (iCEBreaker, iCESugar: pin 35)
                clk_pad = platform.request(platform.default_clk, dir="-")
                m.submodules.pll = pll_instance(self.pll, clk_pad.io, clk_out, locked, pad=True)
        else:
            clk_pad = platform.request(platform.default_clk, dir="-")
            m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_pad)
            m.submodules.pll = pll_instance(self.pll, clk_buf.i, clk_out, locked)
        m.domains.sync = cd_sync = ClockDomain("sync")
        m.d.comb += cd_sync.clk.eq(clk_out)
        # no constraint on the PLL's output: synthesis renames that net (a constraint on it is
        # ignored with a warning), and nextpnr derives its frequency from the oscillator's
        # constraint through the PLL's own parameters

        # hold reset until the PLL locks, then for 15 us more (iCE40 block RAM reads zeros for
        # ~3 us after configuration)
        m.domains.por = cd_por = ClockDomain("por", reset_less=True)
        m.d.comb += cd_por.clk.eq(clk_out)
        delay = int(15e-6 * self.clock_hz)
        timer = Signal(range(delay + 1))
        ready = Signal()
        with m.If(~locked):
            m.d.por += timer.eq(0)
        with m.Elif(timer != delay):
            m.d.por += timer.eq(timer + 1)
        m.d.comb += ready.eq(locked & (timer == delay))
        m.submodules.rst_sync = ResetSynchronizer(~ready, domain="sync")

    def elaborate(self, platform):
        m = Module()
        if self.pll is not None:
            self._pll_domain(m, platform)
        m.submodules.bridge = bridge = self.bridge
        uart = platform.request("uart", 0)
        m.d.comb += [bridge.rx.eq(uart.rx.i), uart.tx.o.eq(bridge.tx)]
        for led, sig in zip(_request_leds(platform, 3),
                            (bridge.led_busy, bridge.led_done, bridge.led_error)):
            m.d.comb += led.eq(sig)
        return m
