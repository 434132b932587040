import pytest
from amaranth import *
from amaranth.sim import Simulator

from thresher.hw.board.uart import (MAX_RATE_ERROR, STANDARD_BAUDS, UARTRx, UARTTx, baud_divisor,
                                      check_baud, fastest_baud, AUTO_MIN_DIVISOR)


def test_baud_divisor():
    assert baud_divisor(12e6, 115200) == 104
    assert baud_divisor(25e6, 1_000_000) == 25
    with pytest.raises(ValueError, match="at least 4"):
        baud_divisor(1e6, 500_000)
    with pytest.raises(ValueError, match="off by"):
        baud_divisor(12e6, 1_000_000 * 12 // 5 + 300_000)


@pytest.mark.parametrize("divisor", [4, 5, 13])
def test_loopback(divisor):
    m = Module()
    m.submodules.tx = tx = UARTTx(divisor)
    m.submodules.rx = rx = UARTRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    data = [0x00, 0xFF, 0xA5, 0x5A, 0x01, 0x80, 0x3C]
    got = []

    async def send(ctx):
        for b in data:
            ctx.set(tx.i.payload, b)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)

    async def recv(ctx):
        ctx.set(rx.o.ready, 1)
        while len(got) < len(data):
            _, _, valid, payload, err = await ctx.tick().sample(rx.o.valid, rx.o.payload, rx.error)
            assert not err
            if valid:
                got.append(payload)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(send)
    sim.add_testbench(recv)
    sim.run_until(1e-6 * divisor * 10 * (len(data) + 3))
    assert got == data


def test_rx_framing_error():
    rx = UARTRx(4)
    errors = []

    async def bench(ctx):
        ctx.set(rx.o.ready, 1)
        for bit in [1, 1, 0] + [0] * 8 + [0] + [1] * 3:   # stop bit low: framing error
            ctx.set(rx.rx, bit)
            for _ in range(4):
                _, _, err, valid = await ctx.tick().sample(rx.error, rx.o.valid)
                errors.append(err)
                assert not valid

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert sum(errors) == 1


def test_check_baud():
    assert check_baud(3_000_000) == 3_000_000 and check_baud(115200.0) == 115200
    for bad in (7, 0, -115200, 115200.5, 50_000_000, "115200", True):
        with pytest.raises(ValueError, match="not a UART rate"):
            check_baud(bad)


def test_fastest_baud_for_the_clock_built_at():
    # (clock, bridge limit) -> the rate a build picks; each within 2 % and >= 8 clocks per bit
    cases = {(12e6, 12_000_000): 1_500_000,      # iCEBreaker oscillator: 3M would be 4 clocks
             (30e6, 12_000_000): 3_000_000,      # the iCE40 target clock: 10
             (27.375e6, 12_000_000): 3_000_000,  # a retimed PLL clock: 9 clocks, 1.4 % fast
             (29.25e6, 12_000_000): 1_000_000,   # 3M, 2M, 1.5M are 2.5 % off at 29.25 MHz
             (25e6, 3_000_000): 1_500_000,       # ULX3S oscillator: 17 clocks, 2.0 % slow
             (100e6, 3_000_000): 3_000_000,      # ULX3S at 100 MHz: 33 clocks
             (12e6, 115_200): 115_200,           # a bridge thresher does not know
             (48e6, 2_500_000): 2_000_000}       # the limit is a ceiling, not a rate
    for (clk, limit), baud in cases.items():
        assert fastest_baud(clk, limit) == baud, (clk, limit)
        divisor = baud_divisor(clk, baud)
        assert divisor >= AUTO_MIN_DIVISOR and abs(clk / divisor - baud) / baud <= MAX_RATE_ERROR
        assert baud in STANDARD_BAUDS
    with pytest.raises(ValueError, match="no standard UART rate"):
        fastest_baud(0.4e6, 3_000_000)           # not even 115,200 at 8 clocks per bit


@pytest.mark.parametrize("clk_hz", [27.375e6, 3_000_000 * 9 * 0.981, 3_000_000 * 9 * 1.019])
def test_rx_and_tx_at_a_nominal_rate_the_divisor_only_approximates(clk_hz):
    """The host's bridge sends at exactly 3 Mbaud, back to back; the FPGA's receiver counts
    9 clocks a bit at a clock up to 1.9 % off that (the worst a build accepts), and still reads
    every byte; its transmitter's bytes are read back by a receiver at exactly 3 Mbaud."""
    baud = 3_000_000
    divisor = baud_divisor(clk_hz, baud)
    assert divisor == 9
    m = Module()
    m.submodules.rx = rx = UARTRx(divisor)
    m.submodules.tx = tx = UARTTx(divisor)
    data = [0x00, 0xFF, 0xA5, 0x5A, 0x01, 0x80, 0x3C, 0xC3, 0x7E, 0x81] * 2
    got, errors, echoed = [], [], []
    bit = 1 / baud

    async def host_tx(ctx):
        ctx.set(rx.rx, 1)
        await ctx.delay(3 * bit)
        for b in data:
            for level in [0] + [(b >> i) & 1 for i in range(8)] + [1]:
                ctx.set(rx.rx, level)
                await ctx.delay(bit)

    async def fpga(ctx):
        # the receiver's bytes go straight back out through the transmitter
        ctx.set(rx.o.ready, 1)
        while len(got) < len(data):
            _, _, valid, payload, err = await ctx.tick().sample(rx.o.valid, rx.o.payload, rx.error)
            errors.append(err)
            if valid:
                got.append(payload)
                ctx.set(tx.i.payload, payload)
                ctx.set(tx.i.valid, 1)
                await ctx.tick().until(tx.i.ready)
                ctx.set(tx.i.valid, 0)

    async def host_rx(ctx):
        while len(echoed) < len(data):
            await ctx.negedge(tx.tx)
            await ctx.delay(1.5 * bit)
            b = 0
            for i in range(8):
                b |= ctx.get(tx.tx) << i
                await ctx.delay(bit)
            assert ctx.get(tx.tx) == 1, "stop bit"
            echoed.append(b)

    sim = Simulator(m)
    sim.add_clock(1 / clk_hz)
    sim.add_testbench(host_tx)
    sim.add_testbench(fpga)
    sim.add_testbench(host_rx, background=True)
    sim.run_until(bit * 10 * (len(data) + 6))
    assert got == data and not any(errors)
    assert echoed == data
