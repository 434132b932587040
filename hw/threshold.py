"""Threshold-comparator activation unit: accumulators in, activation values out.

For every lane ``k``: ``count = #{ j : d * acc[k] >= thr[k][j] }`` with ``d = -1`` where ``neg[k]``,
and the output value is ``offset + step * count``. All ``levels`` comparisons run in parallel.

Why parallel comparators rather than a (pipelined) binary search: the activations this engine targets
are 1-4 bits (L = 1..15 thresholds), where L comparators of ``cmp_width`` bits cost about
``L * cmp_width`` LUTs per lane and decide in one cycle from one threshold-ROM word; a binary search
would need ``log2(L + 1)`` dependent ROM reads per output (one EBR per lane and step). The unit fires
once per output group, i.e. at most every ``taps * NC`` array cycles, so its cost is area, not time.
For 8-bit activations (L = 255) a sequential search would be the better trade (see
``docs/architecture.md``).

Constant channels need nothing special: their thresholds lie outside the reachable range (clamped
to ``[-M, M + 1]`` by :mod:`hw.images`), so every comparison has a fixed outcome. Ties count
(``>=``). Unused threshold slots hold the largest representable value, which no ``d * acc`` reaches.

With ``prenegated=True`` the caller has already folded the direction into the thresholds of the
negative lanes (``T' = 1 - T``: ``-acc >= T`` is ``not (acc >= T')``), and the unit counts
``#{ j : (acc[k] >= thr[k][j]) xor neg[k] }``: no negation of the accumulator (one adder per lane
less, and one adder less on the path).

Members
-------
i : In(stream.Signature(StructLayout))
    ``acc`` (``lanes`` x signed(acc_width)), ``thr`` (``lanes`` x ``levels`` x signed(cmp_width)),
    ``neg`` (``lanes`` bits), ``offset`` (signed(out_width)), ``step`` (unsigned(4)) and ``tag``.
o : Out(stream.Signature(StructLayout))
    ``value`` (``lanes`` x signed(out_width)) and the input's ``tag``; registered (one cycle).
"""

from amaranth import Module, Mux, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import balanced_sum

__all__ = ["ThresholdUnit"]


class ThresholdUnit(wiring.Component):
    def __init__(self, *, lanes, acc_width, cmp_width, levels, out_width, tag_width=1,
                 prenegated=False):
        for name, v, least in (("lanes", lanes, 1), ("acc_width", acc_width, 1),
                               ("levels", levels, 1), ("out_width", out_width, 1),
                               ("tag_width", tag_width, 1)):
            if not isinstance(v, int) or v < least:
                raise ValueError(f"{name} must be an integer >= {least}, not {v!r}")
        if not isinstance(cmp_width, int) or cmp_width < acc_width + 1:
            raise ValueError(f"cmp_width must be at least acc_width + 1, not {cmp_width!r}")
        self.lanes, self.acc_width, self.cmp_width = lanes, acc_width, cmp_width
        self.levels, self.out_width, self.tag_width = levels, out_width, tag_width
        self.prenegated = bool(prenegated)
        in_layout = data.StructLayout({
            "acc": data.ArrayLayout(signed(acc_width), lanes),
            "thr": data.ArrayLayout(data.ArrayLayout(signed(cmp_width), levels), lanes),
            "neg": unsigned(lanes),
            "offset": signed(out_width),
            "step": unsigned(4),
            "tag": unsigned(tag_width),
        })
        out_layout = data.StructLayout({
            "value": data.ArrayLayout(signed(out_width), lanes),
            "tag": unsigned(tag_width),
        })
        super().__init__({
            "i": In(stream.Signature(in_layout)),
            "o": Out(stream.Signature(out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        en = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(en)
        p = self.i.payload
        with m.If(en):
            m.d.sync += [
                self.o.valid.eq(self.i.valid),
                self.o.payload.tag.eq(p.tag),
            ]
            for k in range(self.lanes):
                y = p.acc[k].as_signed()
                if self.prenegated:
                    hits = [(y >= p.thr[k][j]) ^ p.neg[k] for j in range(self.levels)]
                else:
                    dy = Mux(p.neg[k], -y, y)
                    hits = [dy >= p.thr[k][j] for j in range(self.levels)]
                count = balanced_sum(h.as_unsigned() for h in hits)
                m.d.sync += self.o.payload.value[k].eq(p.offset + p.step * count)
        return m
