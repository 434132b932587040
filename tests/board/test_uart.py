import pytest
from amaranth import *
from amaranth.sim import Simulator

from thresher.hw.board.uart import UARTRx, UARTTx, baud_divisor


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
