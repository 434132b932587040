"""A small, slow, exact stand-in for the accelerator: one multiply-accumulate per cycle.

:class:`StandInCore` runs an :class:`~model_tools.ir.IntegerNetwork` made of dense layers bit for
bit like :func:`model_tools.golden.run_integer`, with the accelerator's port contract (see
``sim/verilator.py``). It exists so that the board flow (UART, protocol, PLL, builds) is real
before and independently of ``hw.Accelerator``; it is not meant to be fast (``pe = simd = 1``).

Raw inputs are integers in ``in_range`` (0..255 pixels by default), quantized with the network's
input quantizer made exact on integers (:meth:`InputQuantizer.integer_thresholds`).
"""

import numpy as np
from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from ...model_tools.errors import ThresherError
from ...model_tools.ir import Dense, signed_bits

from ..core import core_signature

__all__ = ["StandInCore"]


def _rom_attrs(depth_bits):
    # ask yosys for block RAM for anything bigger than a few LUTs' worth
    return {"ram_style": "block", "rom_style": "block"} if depth_bits >= 512 else None


class StandInCore(wiring.Component):
    """A sequential integer-network engine for dense networks.

    Parameters
    ----------
    network : IntegerNetwork
        Dense layers only; every layer but the last has an activation; the input quantizer has
        one set of thresholds for all values.
    in_range : (int, int)
        The range of the raw integer inputs.

    Members
    -------
    i : In(stream.Signature(unsigned or signed))      one raw input value per beat
    o : Out(stream.Signature(signed(acc_bits)))       one last-layer accumulator per beat
    start : In(1), busy : Out(1), done : Out(1), cycles : Out(32)
    """

    pe = simd = 1

    def __init__(self, network, *, in_range=(0, 255)):
        layers = network.layers
        if not layers or not all(isinstance(l, Dense) for l in layers):
            raise ThresherError("the stand-in core runs dense layers only")
        if any(l.activation is None for l in layers[:-1]) or layers[-1].activation is not None:
            raise ThresherError("the stand-in core needs thresholds on every layer but the last")
        if network.input.thresholds.channels != 1:
            raise ThresherError("the stand-in core needs one input quantizer for all values")
        lo, hi = int(in_range[0]), int(in_range[1])
        if lo > hi:
            raise ValueError(f"in_range must be (lo, hi) with lo <= hi, not {in_range!r}")
        self.network, self.in_range = network, (lo, hi)
        self.in_thresholds = network.input.integer_thresholds(lo, hi)
        self.n_in = int(np.prod(network.input.out_shape))
        self.n_out = layers[-1].out_channels
        ranges = [network.input.out_range] + [l.out_range for l in layers[:-1]]
        self.act_bits = max(signed_bits(*r) for r in ranges)
        in_shape = signed(signed_bits(lo, hi)) if lo < 0 else unsigned(max(1, hi.bit_length()))
        super().__init__(core_signature(in_shape, signed(layers[-1].acc_bits)))

    def predict_cycles(self) -> int:
        """Cycles from ``start`` to ``done`` with the inputs loaded before ``start`` and outputs
        that never wait."""
        return 2 + sum(l.out_channels * (l.fan_in + 2) + 1 for l in self.network.layers)

    def elaborate(self, platform):
        m = Module()
        layers = self.network.layers
        depth = max([self.n_in] + [l.out_channels for l in layers])
        bufs = []
        for n in range(2):
            mem = Memory(shape=signed(self.act_bits), depth=depth, init=[])
            m.submodules[f"act{n}"] = mem
            bufs.append((mem.write_port(), mem.read_port()))

        counting = Signal()
        with m.If(self.start):
            m.d.sync += [self.cycles.eq(1), counting.eq(1)]
        with m.Elif(counting):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        m.d.comb += self.busy.eq(counting)

        # the input quantizer: a comparator bank on each raw value
        t = self.in_thresholds
        x = self.i.payload
        xd = -x if t.direction[0] < 0 else x
        count = sum((xd >= int(v)).as_unsigned() for v in t.values[0]) if t.levels else C(0)
        q = Signal(signed(self.act_bits))
        m.d.comb += q.eq(t.offset + t.step * count)

        idx = Signal(range(depth + 1))
        wr0, _ = bufs[0]

        # inputs are taken before or after ``start``; the layers run once all are in and
        # ``start`` was seen
        started = Signal()
        with m.If(self.start):
            m.d.sync += started.eq(1)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.i.ready.eq(idx != self.n_in), wr0.addr.eq(idx), wr0.data.eq(q)]
                with m.If(self.i.valid & self.i.ready):
                    m.d.comb += wr0.en.eq(1)
                    m.d.sync += idx.eq(idx + 1)
                with m.If((started | self.start) & (idx == self.n_in)):
                    m.d.sync += [idx.eq(0), started.eq(0)]
                    m.next = "L0_START"
            for n, layer in enumerate(layers):
                self._layer(m, n, layer, bufs[n % 2][1], bufs[(n + 1) % 2][0],
                            last=n == len(layers) - 1)
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.d.sync += counting.eq(0)
                m.next = "IDLE"
        return m

    def _layer(self, m, n, layer, src, dst, *, last):
        C_out, K = layer.out_channels, layer.fan_in
        w = layer.weights.reshape(C_out, K)
        wbits = signed_bits(int(w.min()), int(w.max()))
        wrom = Memory(shape=signed(wbits), depth=C_out * K, init=w.reshape(-1).tolist(),
                      attrs=_rom_attrs(C_out * K * wbits))
        m.submodules[f"w{n}"] = wrom
        wrd = wrom.read_port()

        c = Signal(range(C_out + 1), name=f"l{n}_c")
        k = Signal(range(K + 1), name=f"l{n}_k")
        waddr = Signal(range(C_out * K + 1), name=f"l{n}_waddr")
        v1 = Signal(name=f"l{n}_v1")
        acc = Signal(signed(layer.acc_bits + 1), name=f"l{n}_acc")
        m.d.comb += wrd.addr.eq(waddr)

        result = Signal(signed(self.act_bits), name=f"l{n}_q")
        if not last:
            t = layer.activation
            levels = t.levels
            tbits = layer.acc_bits + 1
            rows = []
            for ch in range(C_out):
                tc = ch if t.channels > 1 else 0
                vals = [int(np.clip(v, -(1 << (tbits - 1)), (1 << (tbits - 1)) - 1))
                        for v in t.values[tc]]
                word = (1 if t.direction[tc] < 0 else 0)
                for j, v in enumerate(vals):
                    word |= (v & ((1 << tbits) - 1)) << (1 + j * tbits)
                rows.append(word)
            trom = Memory(shape=1 + levels * tbits, depth=C_out, init=rows,
                          attrs=_rom_attrs(C_out * (1 + levels * tbits)))
            m.submodules[f"t{n}"] = trom
            trd = trom.read_port()
            m.d.comb += trd.addr.eq(c)
            d_acc = Signal(signed(tbits + 1), name=f"l{n}_dacc")
            m.d.comb += d_acc.eq(Mux(trd.data[0], -acc, acc))
            count = C(0, 1)
            for j in range(levels):
                tj = trd.data[1 + j * tbits:1 + (j + 1) * tbits].as_signed()
                count = count + (d_acc >= tj).as_unsigned()
            m.d.comb += result.eq(t.offset + t.step * count)

        with m.State(f"L{n}_START"):
            m.d.sync += [c.eq(0), k.eq(0), waddr.eq(0), acc.eq(0), v1.eq(0)]
            m.next = f"L{n}_ISSUE"
        with m.State(f"L{n}_ISSUE"):
            # address k goes out now, its activation and weight are there next cycle
            m.d.comb += src.addr.eq(k)
            m.d.sync += [k.eq(k + 1), waddr.eq(waddr + 1), v1.eq(1)]
            with m.If(v1):
                m.d.sync += acc.eq(acc + src.data * wrd.data)
            with m.If(k == K - 1):
                m.next = f"L{n}_DRAIN"
        with m.State(f"L{n}_DRAIN"):
            m.d.sync += [acc.eq(acc + src.data * wrd.data), v1.eq(0)]
            m.next = f"L{n}_WRITE"
        with m.State(f"L{n}_WRITE"):
            ready = C(1)
            if last:
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(acc)]
                ready = self.o.ready
            else:
                m.d.comb += [dst.addr.eq(c), dst.data.eq(result), dst.en.eq(1)]
            with m.If(ready):
                m.d.sync += [c.eq(c + 1), k.eq(0), acc.eq(0)]
                with m.If(c == C_out - 1):
                    m.next = "DONE" if last else f"L{n + 1}_START"
                with m.Else():
                    m.next = f"L{n}_ISSUE"
