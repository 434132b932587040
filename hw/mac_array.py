"""MAC array: PE output channels x SIMD input elements per cycle, exact signed accumulation.

Every beat carries ``pe * simd`` signed weights, ``simd`` signed activations and ``first``/``last``
flags. Output channel ``k`` adds ``sum_s w[k * simd + s] * a[s]`` to its accumulator (cleared by
``first``); the beat flagged ``last`` emits the ``pe`` accumulators with that beat's ``tag``.

Two pipeline stages: registered products, then adder tree + accumulate (registered output). The
accumulator width comes from the network's worst case (:class:`hw.plan.Plan`), so nothing wraps.

Products: the first ``dsp_lanes`` lanes (all when ``None``) are written as ``*``, which yosys maps
to DSP blocks (iCE40 ``SB_MAC16``, ECP5 ``MULT18X18D``) when ``synth_* -dsp`` is on; the others
are shift-and-add over the bits of the narrower operand (``w = -w[n-1] 2^(n-1) + sum w[i] 2^i``),
which yosys keeps in LUTs. Small products (2 x 2 bits) are far cheaper in LUTs than a DSP, and the
UP5K has 8 DSPs: a 32-lane array of 13-bit products cannot be mapped to DSPs alone.

With ``pack_shift=S`` every DSP multiplier computes *two* lanes that share an activation, lanes
``(k, s)`` and ``(k + 1, s)`` for even ``k``: ``P = a * (w0 + w1 * 2^S)`` (packed into 16 signed
bits), ``a * w0 = sext(P[:S])`` and ``a * w1 = P[S:] + P[S - 1]``. Exact when every product
``a * w`` lies in ``[-2^(S-1), 2^(S-1))`` and the packed weight fits 16 signed bits: the caller
(:class:`hw.accelerator.Accelerator`) checks that on the network's real ranges.

With ``row_operands=True`` the array also takes one activation per PE row, ``d``, and a flag
``diag``: while ``diag`` is high, lane ``(k, 0)`` multiplies ``d[k]`` instead of the shared
``a[0]`` (a mux in front of one lane per row). That is how a channelwise stage (a depthwise conv,
a window sum, an add: :mod:`hw.plan`) runs with lanes over channels: row ``k`` is channel ``k``
and its other lanes hold zero weights. Packed DSP pairs share an activation, so lane column 0
is never packed then.

Members
-------
i : In(stream.Signature(StructLayout))
    ``w`` (``pe * simd`` x signed(weight_width)), ``a`` (``simd`` x signed(act_width)),
    ``first``, ``last``, ``tag``; with ``row_operands``, ``d`` (``pe`` x signed(act_width))
    and ``diag``.
o : Out(stream.Signature(StructLayout))
    ``acc`` (``pe`` x signed(acc_width)) and ``tag``.
"""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import balanced_sum

__all__ = ["MACArray", "shift_add_product"]


def shift_add_product(w, a, w_width, a_width):
    """``w * a`` (both signed) as a sum of shifted partial products: no ``$mul`` for yosys."""
    if w_width > a_width:
        w, a, w_width = a, w, a_width
    if w_width == 1:                       # a 1-bit signed value is 0 or -1
        return Mux(w[0], -a, 0)
    terms = [Mux(w[i], a, 0) << i for i in range(w_width - 1)]
    return balanced_sum(terms) - (Mux(w[w_width - 1], a, 0) << (w_width - 1))


class MACArray(wiring.Component):
    def __init__(self, *, pe, simd, weight_width, act_width, acc_width, tag_width=1,
                 dsp_lanes=None, pack_shift=None, row_operands=False):
        if dsp_lanes is not None and (not isinstance(dsp_lanes, int) or dsp_lanes < 0):
            raise ValueError(f"dsp_lanes must be None or an integer >= 0, not {dsp_lanes!r}")
        if pack_shift is not None and (not isinstance(pack_shift, int) or pack_shift < 2 or
                                       pack_shift + weight_width > 16 or act_width > 16 or
                                       pe < 2):
            raise ValueError(f"pack_shift must be None or S >= 2 with S + weight_width <= 16, "
                             f"act_width <= 16 and pe >= 2, not {pack_shift!r}")
        self.pack_shift = pack_shift
        self.dsp_lanes = pe * simd if dsp_lanes is None else min(dsp_lanes, pe * simd)
        for name, v in (("pe", pe), ("simd", simd), ("weight_width", weight_width),
                        ("act_width", act_width), ("acc_width", acc_width),
                        ("tag_width", tag_width)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self.pe, self.simd = pe, simd
        self.weight_width, self.act_width, self.acc_width = weight_width, act_width, acc_width
        self.tag_width = tag_width
        self.row_operands = bool(row_operands)
        fields = {
            "w": data.ArrayLayout(signed(weight_width), pe * simd),
            "a": data.ArrayLayout(signed(act_width), simd),
            "first": unsigned(1),
            "last": unsigned(1),
            "tag": unsigned(tag_width),
        }
        if self.row_operands:
            fields["d"] = data.ArrayLayout(signed(act_width), pe)
            fields["diag"] = unsigned(1)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout(fields))),
            "o": Out(stream.Signature(data.StructLayout({
                "acc": data.ArrayLayout(signed(acc_width), pe),
                "tag": unsigned(tag_width),
            }))),
        })

    def elaborate(self, platform):
        m = Module()
        pe, simd = self.pe, self.simd
        en = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(en)

        # stage 1: products
        p_valid = Signal()
        p_first = Signal()
        p_last = Signal()
        p_tag = Signal(self.tag_width)
        prod_shape = signed(self.weight_width + self.act_width)
        prods = [Signal(prod_shape, name=f"prod_{k}_{s}") for k in range(pe) for s in range(simd)]
        # plain bit slices: indexing a View per lane is slow to elaborate for thousands of lanes
        W, A = self.weight_width, self.act_width
        w_bits = self.i.payload.w.as_value()
        a_bits = self.i.payload.a.as_value()
        w_lane = [w_bits[j * W:(j + 1) * W].as_signed() for j in range(pe * simd)]
        a_lane = [a_bits[s * A:(s + 1) * A].as_signed() for s in range(simd)]

        def operand(k, s):
            """The activation lane ``(k, s)`` multiplies: the shared one, or row ``k``'s own."""
            if s != 0 or not self.row_operands:
                return a_lane[s]
            d_bits = self.i.payload.d.as_value()
            return Mux(self.i.payload.diag, d_bits[k * A:(k + 1) * A].as_signed(), a_lane[0])
        with m.If(en):
            m.d.sync += [
                p_valid.eq(self.i.valid),
                p_first.eq(self.i.payload.first),
                p_last.eq(self.i.payload.last),
                p_tag.eq(self.i.payload.tag),
            ]
            done = set()
            if self.pack_shift is not None:
                S = self.pack_shift
                pairs = [(k * simd + s, (k + 1) * simd + s, s)
                         for k in range(0, pe - 1, 2) for s in range(simd)
                         if s != 0 or not self.row_operands][:self.dsp_lanes]
                for j0, j1, s in pairs:
                    packed = Signal(signed(16), name=f"wpack_{j0}_{j1}")
                    big = Signal(signed(16 + A), name=f"dsp_{j0}_{j1}")
                    m.d.comb += [packed.eq((w_lane[j1] << S) + w_lane[j0]),
                                 big.eq(packed * a_lane[s])]
                    m.d.sync += [prods[j0].eq(big[:S].as_signed()),
                                 prods[j1].eq(big[S:].as_signed() + big[S - 1])]
                    done |= {j0, j1}
            for k in range(pe):
                for s in range(simd):
                    j = k * simd + s
                    if j in done:
                        continue
                    a = operand(k, s)
                    m.d.sync += prods[j].eq(
                        w_lane[j] * a if j < self.dsp_lanes and self.pack_shift is None
                        else shift_add_product(w_lane[j], a, W, A))

        # stage 2: adder tree + accumulate
        accs = [Signal(signed(self.acc_width), name=f"acc_{k}") for k in range(pe)]
        with m.If(en):
            m.d.sync += self.o.valid.eq(p_valid & p_last)
            with m.If(p_valid):
                m.d.sync += self.o.payload.tag.eq(p_tag)
                for k in range(pe):
                    total = Mux(p_first, 0, accs[k]) + balanced_sum(prods[k * simd:(k + 1) * simd])
                    m.d.sync += [accs[k].eq(total), self.o.payload.acc[k].eq(total)]
        return m
