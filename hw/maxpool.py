"""Max-pool unit: lane-wise running maximum over the beats of one pooling window.

Each beat carries ``lanes`` activation values and a per-lane ``valid`` mask (padding and channels past
the layer's C are invalid and never win). ``first`` restarts the maximum; ``last`` emits it, with the
beat's ``tag``, on the next cycle. A lane that saw no valid value outputs the most negative value
(only possible for lanes past the layer's channels, which nothing reads).

Members
-------
i : In(stream.Signature(StructLayout))
    ``a`` (``lanes`` x signed(width)), ``valid`` (``lanes`` bits), ``first``, ``last``, ``tag``.
o : Out(stream.Signature(StructLayout))
    ``value`` (``lanes`` x signed(width)), ``tag``.
"""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MaxPoolUnit"]


class MaxPoolUnit(wiring.Component):
    def __init__(self, *, lanes, width, tag_width=1):
        for name, v in (("lanes", lanes), ("width", width), ("tag_width", tag_width)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self.lanes, self.width, self.tag_width = lanes, width, tag_width
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "a": data.ArrayLayout(signed(width), lanes),
                "valid": unsigned(lanes),
                "first": unsigned(1),
                "last": unsigned(1),
                "tag": unsigned(tag_width),
            }))),
            "o": Out(stream.Signature(data.StructLayout({
                "value": data.ArrayLayout(signed(width), lanes),
                "tag": unsigned(tag_width),
            }))),
        })

    def elaborate(self, platform):
        m = Module()
        en = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(en)
        lowest = -(1 << (self.width - 1))
        best = [Signal(signed(self.width), name=f"best_{k}") for k in range(self.lanes)]
        p = self.i.payload
        with m.If(en):
            m.d.sync += self.o.valid.eq(self.i.valid & p.last)
            with m.If(self.i.valid):
                m.d.sync += self.o.payload.tag.eq(p.tag)
                for k in range(self.lanes):
                    prev = Mux(p.first, lowest, best[k])
                    a = p.a[k].as_signed()
                    nxt = Mux(p.valid[k] & (a > prev), a, prev)
                    m.d.sync += [best[k].eq(nxt), self.o.payload.value[k].eq(nxt)]
        return m
