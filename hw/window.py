"""Window generator: walks every stage's loop nest and issues one array operation per cycle.

For each stage of a :class:`hw.plan.Plan`, in order, it runs the loop nest
``oh, ow, g, ky, kx, cg`` (see :mod:`hw.plan`) and emits one command per iteration: which feature-RAM
word to read (sliding k x k windows with stride and zero padding: out-of-bounds taps and channels past
the layer's C are *masked*, i.e. read as the value 0), which weight-ROM word, whether the beat opens or
closes an accumulation, and where the result goes. Between stages it idles ``gap`` cycles so that the
datapath drains before the next stage reads what this one wrote.

Addresses are kept as incremental pointers (no multipliers): the window's top-left tap pointer moves
by ``stride * GV`` per output pixel, the tap pointer by ``GV`` per kx and ``(W - KW + 1) * GV`` per
ky, with ``GV`` words per pixel.

A channelwise stage (``Stage.channelwise``: lanes over channels) reads the word that holds its
PE-channel group ``g`` (``dsub`` selects the group's PE lanes in it) at every tap, with ``inb``
telling whether the tap lies inside the map; an add stage (``Stage.add``) reads its first input
at ``in_base`` on tap ``cg = 0`` and its second at ``in_base2`` on ``cg = 1``.

For the im2col stage (first conv layer with few input channels) ``addr`` is the output pixel index
into the loader's per-tap memories and the mask is computed per lane from the window's (ky, kx, c).

Members
-------
start : In(1)
    Pulse: run all stages.
busy : Out(1)
o : Out(stream.Signature(CommandLayout))
    ``stage``, ``addr`` (feature word or im2col pixel), ``sub`` (SIMD slice of a V-lane word),
    ``chunk`` (im2col chunk), ``mask`` (SIMD lanes), ``dsub`` (PE slice of a V-lane word, for a
    channelwise stage), ``inb`` (the tap is inside the map), ``waddr``, ``group``, ``first``,
    ``last``, ``oaddr`` (output word), ``olane`` (lane offset of the result in that word).
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from .plan import Plan

__all__ = ["WindowGenerator", "command_layout", "tag_layout", "TAG_FIELDS"]

#: The command fields a beat carries through the MAC array (or the max-pool unit) to the write-back.
TAG_FIELDS = ("stage", "group", "oaddr", "olane", "pfirst", "plast", "pskip", "pbaddr")


def command_layout(plan: Plan) -> data.StructLayout:
    stages = plan.stages
    addr_w = bits_for(max(plan.feature_depth, max((s.pixels for s in stages), default=1)))
    w_depth = max((s.loops[0] * s.taps_per_pixel for s in stages), default=1)
    o_depth = max(plan.feature_depth, plan.out_depth, 1)
    return data.StructLayout({
        "stage": unsigned(bits_for(max(len(stages) - 1, 1))),
        "addr": unsigned(addr_w),
        "sub": unsigned(max(1, ceil_log2(plan.V // plan.simd))),
        "chunk": unsigned(bits_for(max((s.loops[3] for s in stages), default=1))),
        "mask": unsigned(plan.simd),
        "dsub": unsigned(max(1, ceil_log2(plan.V // plan.pe))),
        "inb": unsigned(1),
        "waddr": unsigned(bits_for(w_depth)),
        "group": unsigned(bits_for(max((s.loops[0] for s in stages), default=1))),
        "first": unsigned(1),
        "last": unsigned(1),
        "oaddr": unsigned(bits_for(o_depth)),
        "olane": unsigned(bits_for(plan.V)),
        "pfirst": unsigned(1),      # fused pool: first conv pixel of the pooled window
        "plast": unsigned(1),       # fused pool: last one (write the feature RAM)
        "pskip": unsigned(1),       # fused pool: conv pixel outside every pooled window
        "pbaddr": unsigned(bits_for(max(plan.pool_buffer_depth, 1))),
    })


def tag_layout(plan: Plan) -> data.StructLayout:
    """The tag of a beat in the array: :data:`TAG_FIELDS` of its command, same shapes."""
    fields = command_layout(plan).members
    return data.StructLayout({f: fields[f] for f in TAG_FIELDS})


class WindowGenerator(wiring.Component):
    def __init__(self, plan: Plan, *, gap: int):
        if not isinstance(plan, Plan):
            raise TypeError(f"plan must be a Plan, not {plan!r}")
        if not plan.stages:
            raise ValueError("the network has no layers to run")
        if not isinstance(gap, int) or gap < 1:
            raise ValueError(f"gap must be a positive integer, not {gap!r}")
        self.plan, self.gap = plan, gap
        super().__init__({
            "start": In(1),
            "busy": Out(1),
            "o": Out(stream.Signature(command_layout(plan))),
        })

    def elaborate(self, platform):
        m = Module()
        plan, V, simd, pe = self.plan, self.plan.V, self.plan.simd, self.plan.pe
        stages = plan.stages
        ls = ceil_log2(simd)
        sub_sh = ceil_log2(V // simd)      # SIMD slices per V-lane word
        pe_sh = ceil_log2(V // pe)         # PE groups per V-lane word

        stage = Signal(range(max(len(stages), 2)))

        def param(fn, shape=None):
            vals = [int(fn(s)) for s in stages]
            return Array(Const(v, shape) if shape is not None else v for v in vals)[stage]

        NG = param(lambda s: s.loops[0] - 1)
        KH = param(lambda s: s.loops[1] - 1)
        KW = param(lambda s: s.loops[2] - 1)
        NC = param(lambda s: s.loops[3] - 1)
        HO = param(lambda s: s.conv_geom[1] - 1)
        WO = param(lambda s: s.conv_geom[2] - 1)
        FUSED = param(lambda s: s.pool is not None)
        PKH = param(lambda s: (s.pool or (1, 1))[0] - 1)
        PKW = param(lambda s: (s.pool or (1, 1))[1] - 1)
        PHK = param(lambda s: s.out_geom[1] * (s.pool or (1, 1))[0])
        PWK = param(lambda s: s.out_geom[2] * (s.pool or (1, 1))[1])
        PROW = param(lambda s: s.out_geom[2] * s.out_words)
        C_IN = param(lambda s: s.in_geom[0])
        H_IN = param(lambda s: s.in_geom[1])
        W_IN = param(lambda s: s.in_geom[2])
        SH = param(lambda s: s.stride[0])
        SW = param(lambda s: s.stride[1])
        GV = param(lambda s: s.in_words)
        GVO = param(lambda s: s.out_words)
        D_KY = param(lambda s: (s.in_geom[2] - s.loops[2] + 1) * s.in_words)
        D_OW = param(lambda s: s.stride[1] * s.in_words)
        D_OH = param(lambda s: s.stride[0] * s.in_geom[2] * s.in_words)
        IS_POOL = param(lambda s: s.kind == "pool")
        TO_OUT = param(lambda s: s.to_output)
        PIXELS = param(lambda s: s.pixels)

        def ptr0(s):
            return s.in_base - (s.pad_tl[0] * s.in_geom[2] + s.pad_tl[1]) * s.in_words

        big = max(plan.feature_depth, max(abs(ptr0(s)) for s in stages)) * 4 + 16
        ptr_shape = signed(bits_for(big) + 1)

        oh, ow = Signal(range(max(s.conv_geom[1] for s in stages) + 1)), \
            Signal(range(max(s.conv_geom[2] for s in stages) + 1))
        # fused pool: position in the pooled window, pooled column, pooled pointers
        pk = max([max(s.pool) for s in stages if s.pool], default=1)
        poh, pow_ = Signal(range(pk + 1)), Signal(range(pk + 1))
        pbptr = Signal(range(max(plan.pool_buffer_depth, 1) + max(s.loops[0] for s in stages) + 1))
        prow = Signal(range(max(plan.feature_depth, 1) * 2 + 2))
        pptr = Signal(range(max(plan.feature_depth, 1) * 2 + 2))
        g = Signal(range(max(s.loops[0] for s in stages) + 1))
        ky = Signal(range(max(s.loops[1] for s in stages) + 1))
        kx = Signal(range(max(s.loops[2] for s in stages) + 1))
        cg = Signal(range(max(s.loops[3] for s in stages) + 1))
        coord = signed(bits_for(max(max(s.in_geom[1], s.in_geom[2]) * 2 + 8
                                    for s in stages)) + 2)
        ih0, iw0 = Signal(coord), Signal(coord)          # top-left tap of the window
        rptr, wptr, tptr = Signal(ptr_shape), Signal(ptr_shape), Signal(ptr_shape)
        optr = Signal(range(max(plan.feature_depth, 1) * 2 + 2))
        pix = Signal(range(max(s.pixels for s in stages) + 1))
        waddr = Signal.like(self.o.payload.waddr)
        gap = Signal(range(self.gap + 1))
        running = Signal()

        # "counter at its last value" flags, kept in registers: the loop-advance chain (and the
        # enables it drives) then does not go through the per-stage bound muxes and comparators
        cg_l, kx_l, ky_l, g_l, ow_l, oh_l = (Signal(name=f"{n}_last")
                                             for n in ("cg", "kx", "ky", "g", "ow", "oh"))

        def stage_flags(idx):
            def at(fn):
                vals = [int(fn(s)) for s in stages]
                return Const(vals[idx], 1) if isinstance(idx, int) else Array(vals)[idx]
            return [cg_l.eq(at(lambda s: s.loops[3] == 1)), kx_l.eq(at(lambda s: s.loops[2] == 1)),
                    ky_l.eq(at(lambda s: s.loops[1] == 1)), g_l.eq(at(lambda s: s.loops[0] == 1)),
                    ow_l.eq(at(lambda s: s.conv_geom[2] == 1)),
                    oh_l.eq(at(lambda s: s.conv_geom[1] == 1))]

        def load_stage(idx_value, ptr_value, pad_t, pad_l):
            return stage_flags(idx_value) + [
                    oh.eq(0), ow.eq(0), g.eq(0), ky.eq(0), kx.eq(0), cg.eq(0), pix.eq(0),
                    poh.eq(0), pow_.eq(0), pbptr.eq(0),
                    waddr.eq(0), rptr.eq(ptr_value), wptr.eq(ptr_value), tptr.eq(ptr_value),
                    ih0.eq(-pad_t), iw0.eq(-pad_l)]

        PAD_L = param(lambda s: s.pad_tl[1])

        # ---- command (combinational from the counters) -----------------------------------------
        ih = ih0 + ky
        iw = iw0 + kx
        inb = (ih >= 0) & (ih < H_IN) & (iw >= 0) & (iw < W_IN)
        c = self.o.payload
        chan_base = Mux(IS_POOL, g, cg) << ls
        word_sel = Mux(IS_POOL, g, cg)
        mask_regular = Cat(((chan_base + i) < C_IN) & inb for i in range(simd))
        addr = tptr + (word_sel >> sub_sh)
        if any(s.channelwise for s in stages):
            # lanes over channels: the word of PE-channel group g at every tap; an add's tap
            # cg = 1 reads its second input, at in_base2 instead of in_base
            CW = param(lambda s: s.channelwise)
            addr = Mux(CW, tptr + (g >> pe_sh), addr)
            if any(s.add for s in stages):
                DELTA = param(lambda s: s.in_base2 - s.in_base if s.add else 0)
                addr = addr + Mux(cg != 0, DELTA, 0)
            m.d.comb += [c.dsub.eq(g & ((1 << pe_sh) - 1) if pe_sh else 0), c.inb.eq(inb)]
        m.d.comb += [
            c.stage.eq(stage),
            c.addr.eq(addr),
            c.sub.eq(word_sel & ((1 << sub_sh) - 1) if sub_sh else 0),
            c.chunk.eq(cg),
            c.waddr.eq(waddr),
            c.group.eq(g),
            c.first.eq((ky == 0) & (kx == 0) & (cg == 0)),
            c.last.eq(ky_l & kx_l & cg_l),
            c.mask.eq(mask_regular),
        ]
        # output word and lane offset
        with m.If(TO_OUT):
            m.d.comb += [c.oaddr.eq(g * PIXELS + pix), c.olane.eq(0)]
        with m.Elif(FUSED):
            m.d.comb += [c.oaddr.eq(pptr + (g >> pe_sh)),
                         c.olane.eq((g & ((1 << pe_sh) - 1)) * pe if pe_sh else 0)]
        with m.Elif(IS_POOL):
            m.d.comb += [c.oaddr.eq(optr + (g >> sub_sh)),
                         c.olane.eq((g & ((1 << sub_sh) - 1)) << ls if sub_sh else 0)]
        with m.Else():
            m.d.comb += [c.oaddr.eq(optr + (g >> pe_sh)),
                         c.olane.eq((g & ((1 << pe_sh) - 1)) * pe if pe_sh else 0)]

        m.d.comb += [
            c.pfirst.eq((poh == 0) & (pow_ == 0)),
            c.plast.eq((poh == PKH) & (pow_ == PKW)),
            c.pskip.eq((oh >= PHK) | (ow >= PWK)),
            c.pbaddr.eq(pbptr + g),
        ]

        s0 = stages[0]
        if s0.im2col:
            # im2col: address = output pixel, per-lane mask from the window position
            kh, kw = s0.kernel
            cin = s0.in_geom[0]
            row_ok = [(ih0 + y >= 0) & (ih0 + y < s0.in_geom[1]) for y in range(kh)]
            col_ok = [(iw0 + x >= 0) & (iw0 + x < s0.in_geom[2]) for x in range(kw)]
            chunk_masks = []
            for j in range(s0.loops[3]):
                lanes = []
                for i in range(simd):
                    f = j * simd + i
                    if f >= kh * kw * cin:
                        lanes.append(Const(0, 1))
                    else:
                        y, x = divmod(f // cin, kw)
                        lanes.append(row_ok[y] & col_ok[x])
                chunk_masks.append(Cat(*lanes))
            with m.If(stage == 0):
                m.d.comb += [c.addr.eq(pix), c.sub.eq(0),
                             c.mask.eq(Array(chunk_masks)[cg])]

        # ---- sequencing ------------------------------------------------------------------------
        m.d.comb += [self.o.valid.eq(running & (gap == 0)), self.busy.eq(running)]
        with m.If(~running):
            # idle: hold stage 0's initial state, so that ``start`` only has to set ``running``
            # (no enable fan-out from the start condition)
            m.d.sync += [stage.eq(0), gap.eq(0)]
            m.d.sync += load_stage(0, stages[0].in_base -
                                   (stages[0].pad_tl[0] * stages[0].in_geom[2] +
                                    stages[0].pad_tl[1]) * stages[0].in_words,
                                   stages[0].pad_tl[0], stages[0].pad_tl[1])
            with m.If(self.start):
                m.d.sync += running.eq(1)
        with m.Elif(gap != 0):
            with m.If(gap == 1):
                with m.If(stage == len(stages) - 1):
                    m.d.sync += running.eq(0)
                with m.Else():
                    nxt = Signal.like(stage)
                    m.d.comb += nxt.eq(stage + 1)
                    m.d.sync += stage.eq(nxt)
                    m.d.sync += load_stage(nxt, Array(ptr0(s) for s in stages)[nxt],
                                           Array(s.pad_tl[0] for s in stages)[nxt],
                                           Array(s.pad_tl[1] for s in stages)[nxt])
            m.d.sync += gap.eq(gap - 1)
        with m.Elif(self.o.ready):
            m.d.sync += waddr.eq(waddr + 1)
            with m.If(~cg_l):
                m.d.sync += [cg.eq(cg + 1), cg_l.eq(cg + 1 == NC)]
            with m.Else():
                m.d.sync += [cg.eq(0), cg_l.eq(NC == 0)]
                with m.If(~kx_l):
                    m.d.sync += [kx.eq(kx + 1), kx_l.eq(kx + 1 == KW), tptr.eq(tptr + GV)]
                with m.Elif(~ky_l):
                    m.d.sync += [kx.eq(0), kx_l.eq(KW == 0), ky.eq(ky + 1),
                                 ky_l.eq(ky + 1 == KH), tptr.eq(tptr + D_KY)]
                with m.Else():
                    m.d.sync += [kx.eq(0), ky.eq(0), kx_l.eq(KW == 0), ky_l.eq(KH == 0),
                                 tptr.eq(wptr)]
                    with m.If(~g_l):
                        m.d.sync += [g.eq(g + 1), g_l.eq(g + 1 == NG)]
                    with m.Else():
                        m.d.sync += [g.eq(0), g_l.eq(NG == 0), waddr.eq(0), pix.eq(pix + 1),
                                     optr.eq(optr + GVO)]
                        with m.If(~ow_l):
                            m.d.sync += [ow.eq(ow + 1), ow_l.eq(ow + 1 == WO), iw0.eq(iw0 + SW),
                                         wptr.eq(wptr + D_OW), tptr.eq(wptr + D_OW)]
                            with m.If(pow_ != PKW):
                                m.d.sync += pow_.eq(pow_ + 1)
                            with m.Else():
                                m.d.sync += [pow_.eq(0), pbptr.eq(pbptr + NG + 1),
                                             pptr.eq(pptr + GVO)]
                        with m.Elif(~oh_l):
                            m.d.sync += [ow.eq(0), ow_l.eq(WO == 0), oh.eq(oh + 1),
                                         oh_l.eq(oh + 1 == HO), iw0.eq(-PAD_L),
                                         ih0.eq(ih0 + SH), rptr.eq(rptr + D_OH),
                                         wptr.eq(rptr + D_OH), tptr.eq(rptr + D_OH),
                                         pow_.eq(0), pbptr.eq(0)]
                            with m.If(poh != PKH):
                                m.d.sync += [poh.eq(poh + 1), pptr.eq(prow)]
                            with m.Else():
                                m.d.sync += [poh.eq(0), prow.eq(prow + PROW),
                                             pptr.eq(prow + PROW)]
                        with m.Else():
                            m.d.sync += gap.eq(self.gap)
        # output pointer: base of the stage's output map (set when a stage starts)
        with m.If(~running):
            m.d.sync += [optr.eq(stages[0].out_base), prow.eq(stages[0].out_base),
                         pptr.eq(stages[0].out_base)]
        with m.Elif(running & (gap == 1) & (stage != len(stages) - 1)):
            nbase = Array(s.out_base for s in stages)[stage + 1]
            m.d.sync += [optr.eq(nbase), prow.eq(nbase), pptr.eq(nbase)]
        return m
