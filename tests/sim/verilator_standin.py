"""A stand-in for ``hw.Accelerator`` with the same port contract, for the Verilator harness tests.

:class:`RunningSum` takes ``n`` inputs per inference (streamed before or after ``start``, as the
accelerator allows) into a memory, then answers with ``n`` outputs: the running sum of the inputs
so far, shifted left by ``shift`` and wrapped to the output width (so that the high and sign bits
of wide payloads are exercised). An input equal to ``hang_on`` makes it hang (it never finishes),
to test the harness' timeout.

Per inference, with the inputs streamed first and no back-pressure, it takes ``3 * n + 3`` cycles
from the ``start`` cycle to the ``done`` cycle inclusive: ``start``, one cycle to notice the inputs
are all there, then fetch / add / send per output, then ``done``.

Members
-------
i : In(stream.Signature(in_shape))
o : Out(stream.Signature(out_shape))
start : In(1)
busy : Out(1)
    From the cycle after ``start`` until ``done``.
done : Out(1)
    One-cycle pulse after the last output beat was taken.
cycles : Out(32)
    Cycles of the last inference, ``start`` to ``done`` inclusive.

:class:`DeadRegister` is a minimal design with the contract's ports (and no ``n_in`` / ``n_out``)
and a register nothing reads, for the lint tests.
"""

import numpy as np
from amaranth import Module, Shape, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from thresher.hw.core import core_signature

__all__ = ["DeadRegister", "RunningSum", "running_sum_reference"]


class RunningSum(wiring.Component):
    def __init__(self, *, n, in_shape=signed(7), out_shape=signed(40), shift=28, hang_on=None):
        if n < 1:
            raise ValueError(f"n must be at least 1, not {n!r}")
        self.n, self.shift, self.hang_on = n, shift, hang_on
        self.n_in = self.n_out = n
        self.in_shape, self.out_shape = Shape.cast(in_shape), Shape.cast(out_shape)
        super().__init__(core_signature(self.in_shape, self.out_shape))

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=self.in_shape, depth=self.n, init=[])
        wr, rd = mem.write_port(), mem.read_port()

        loaded = Signal(range(self.n + 1))
        hung = Signal()
        outputting = Signal()
        m.d.comb += [
            self.i.ready.eq((loaded != self.n) & ~outputting & ~hung),
            wr.addr.eq(loaded), wr.data.eq(self.i.payload), wr.en.eq(self.i.valid & self.i.ready),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += loaded.eq(loaded + 1)
            if self.hang_on is not None:
                with m.If(self.i.payload == self.hang_on):
                    m.d.sync += hung.eq(1)

        count = Signal(32)
        with m.If(self.busy):
            m.d.sync += count.eq(count + 1)

        acc = Signal(signed(64))
        index = Signal(range(self.n))
        m.d.comb += rd.addr.eq(index)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), count.eq(1)]
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(loaded == self.n):
                    m.d.sync += [outputting.eq(1), index.eq(0), acc.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):  # the read port has one cycle of latency
                m.next = "ADD"
            with m.State("ADD"):
                total = acc + rd.data
                m.d.sync += [acc.eq(total), self.o.payload.eq(total << self.shift)]
                m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.d.sync += index.eq(index + 1)
                    m.next = "DONE" if self.n == 1 else "FETCH"
                    with m.If(index == self.n - 1):
                        m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.d.sync += [self.busy.eq(0), self.cycles.eq(count + 1), outputting.eq(0),
                             loaded.eq(0)]
                m.next = "IDLE"
        return m


def running_sum_reference(x, *, shift=28, out_shape=signed(40)) -> np.ndarray:
    """What :class:`RunningSum` outputs for inputs ``x`` (B, n), computed with Python ints."""
    out_shape = Shape.cast(out_shape)
    width = out_shape.width
    result = np.zeros(np.shape(x), dtype=np.int64)
    for b, row in enumerate(np.asarray(x).tolist()):
        acc = 0
        for k, v in enumerate(row):
            acc = (acc + v + 2**63) % 2**64 - 2**63  # the 64-bit accumulator
            y = (acc << shift) % 2**width
            if out_shape.signed and y >= 2**(width - 1):
                y -= 2**width
            result[b, k] = y if y < 2**63 else y - 2**64
    return result


class DeadRegister(wiring.Component):
    """Passes ``i`` to ``o``; also stores each input in a register that nothing reads."""

    i: In(stream.Signature(unsigned(8)))
    o: Out(stream.Signature(unsigned(8)))
    start: In(1)
    done: Out(1)

    def elaborate(self, platform):
        m = Module()
        forgotten = Signal(8)
        m.d.sync += forgotten.eq(self.i.payload)
        m.d.comb += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid),
                     self.i.ready.eq(self.o.ready), self.done.eq(self.start)]
        return m
