"""Input loader: raw input beats in, quantized values written where the first stage reads them.

Every accepted beat is quantized (by the input stage :class:`~hw.plan.Plan` chose: a level lookup
ROM, a comparator bank, or nothing when the host sends levels) and, two cycles later, written:

* to the feature RAM, in the layout of :mod:`hw.plan` (channel ``c`` of pixel ``p`` in word
  ``in_base + p * GV + c // V``, lane ``c % V``), as one beat on ``o``; or
* when the first stage is an im2col conv, to one memory per kernel tap ``(y, x)``: at the address
  of every output pixel whose window has the value at tap ``(y, x)``, lane ``c`` (``taps``).
  Values no window reads are not written.

Beats are accepted while ``enable`` is high, until all ``plan.n_in`` of an inference are in;
``clear`` starts over for the next inference.

Members
-------
i : In(stream.Signature(signed(plan.raw_width)))
    Raw input values (or levels, in levels mode), one per beat, in C order of the input.
enable : In(1)
    Accept beats (the accelerator is not computing).
clear : In(1)
    Forget the loaded inference: the next beat is the first value of the next one.
loaded : Out(1)
    Every value of the inference is accepted and written.
o : Out(stream.Signature(feature_write_layout(plan), always_ready=True))
    Feature-RAM writes: ``addr``, ``data`` (the value in every lane), ``en`` (one lane).
    Not present when ``plan.im2col``.
taps : In(WritePort.Signature(...)).array(kh * kw)
    Write ports of the im2col tap memories (``y * kw + x``), each ``lc`` lanes of
    ``plan.tap_width`` bits deep enough for every output pixel. Only when ``plan.im2col``.
"""

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from .devices import BLOCK_RAM
from .images import input_level_image, input_threshold_image
from .plan import Plan
from .threshold import ThresholdUnit

__all__ = ["InputLoader", "feature_write_layout", "tap_port_signature"]


def feature_write_layout(plan: Plan) -> data.StructLayout:
    """One write of the feature RAM: word address, ``V`` lanes of data, lane enables."""
    return data.StructLayout({
        "addr": unsigned(ceil_log2(plan.feature_depth)),
        "data": unsigned(plan.V * plan.feat_width),
        "en": unsigned(plan.V),
    })


def tap_port_signature(plan: Plan) -> WritePort.Signature:
    """The write port of one im2col tap memory (``plan.im2col``): one word per output pixel of
    the first stage, one ``tap_width`` lane per input channel."""
    s0 = plan.stages[0]
    _, ho, wo = s0.conv_geom
    lanes, width = plan.load_geom[0], plan.tap_width
    return WritePort.Signature(addr_width=ceil_log2(ho * wo), shape=unsigned(lanes * width),
                               granularity=width)


class InputLoader(wiring.Component):
    def __init__(self, plan: Plan):
        if not isinstance(plan, Plan):
            raise TypeError(f"plan must be a Plan, not {plan!r}")
        if not plan.stages:
            raise ValueError("the network has no layers to load the input of")
        self.plan = plan
        members = {
            "i": In(stream.Signature(signed(plan.raw_width))),
            "enable": In(1),
            "clear": In(1),
            "loaded": Out(1),
        }
        if plan.im2col:
            kh, kw = plan.stages[0].kernel
            members["taps"] = In(tap_port_signature(plan)).array(kh * kw)
        else:
            members["o"] = Out(stream.Signature(feature_write_layout(plan), always_ready=True))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        V, A, F = plan.V, plan.act_width, plan.feat_width
        s0 = plan.stages[0]

        # -- accepting beats ---------------------------------------------------------------------
        count = Signal(range(plan.n_in + 1))
        full = Signal()                  # == (count == n_in), kept as a flag (timing)
        inflight = Signal(2)             # beats in the two-cycle quantizer pipeline
        accept = self.enable & ~full
        m.d.comb += self.i.ready.eq(accept)
        take = self.i.valid & accept
        with m.If(take):
            m.d.sync += [count.eq(count + 1), full.eq(count == plan.n_in - 1)]
        m.d.sync += inflight.eq(Cat(take, inflight[0]))
        restart = [count.eq(0), full.eq(0)]

        # -- quantizing: an accepted beat -> (2 cycles) -> q_valid / q_value ---------------------
        q_valid = Signal()
        q_value = Signal(signed(A))
        m.d.comb += self.loaded.eq(full & (inflight == 0) & ~q_valid)
        if plan.input_stage == "none":
            # levels mode: the host quantized; registered twice to keep the pipeline's latency
            lvl = Signal(signed(A))
            lvl_v = Signal()
            m.d.sync += [lvl.eq(self.i.payload), lvl_v.eq(take),
                         q_value.eq(lvl), q_valid.eq(lvl_v)]
        else:
            # the quantizer channel of the beat: qc, and qn beats of it so far
            tq = plan.in_thresholds
            per_q = plan.n_in // tq.channels
            qn = Signal(range(per_q + 1))
            qc = Signal(range(tq.channels + 1))
            restart += [qc.eq(0), qn.eq(0)]
            with m.If(take):
                with m.If(qn == per_q - 1):
                    m.d.sync += [qn.eq(0), qc.eq(qc + 1)]
                with m.Else():
                    m.d.sync += qn.eq(qn + 1)
        if plan.input_stage == "rom":
            # lookup ROM: the level count of every (channel, raw value), read at raw - lo
            lwidth, lwords = input_level_image(plan)
            m.submodules.level_rom = level_rom = Memory(shape=unsigned(lwidth), depth=len(lwords),
                                                        init=lwords, attrs=BLOCK_RAM)
            level_rd = level_rom.read_port()
            span = plan.input_range[1] - plan.input_range[0] + 1
            raw = self.i.payload - plan.input_range[0]
            if tq.channels > 1:
                qbase = Signal(range(len(lwords) + 1))
                restart.append(qbase.eq(0))
                with m.If(take & (qn == per_q - 1)):
                    m.d.sync += qbase.eq(qbase + span)
                m.d.comb += level_rd.addr.eq(qbase + raw)
            else:
                m.d.comb += level_rd.addr.eq(raw)
            level_v = Signal()
            m.d.sync += [level_v.eq(take), q_valid.eq(level_v),
                         q_value.eq(tq.offset + tq.step * level_rd.data)]
        elif plan.input_stage == "compare":
            # comparator bank: the channel's thresholds from a ROM, one compare per level
            cw = plan.raw_width + 1
            twidth, twords = input_threshold_image(plan)
            m.submodules.threshold_rom = trom = Memory(shape=unsigned(twidth), depth=len(twords),
                                                       init=twords)
            trd = trom.read_port()
            levels = max(tq.levels, 1)
            m.submodules.quantizer = quantizer = ThresholdUnit(
                lanes=1, acc_width=plan.raw_width, cmp_width=cw, levels=levels, out_width=A)
            raw_r = Signal(signed(plan.raw_width))
            raw_v = Signal()
            m.d.comb += trd.addr.eq(qc)
            m.d.sync += [raw_r.eq(self.i.payload), raw_v.eq(take)]
            never = (1 << (cw - 1)) - 1
            m.d.comb += [
                quantizer.i.valid.eq(raw_v),
                quantizer.i.payload.acc[0].eq(raw_r),
                quantizer.i.payload.neg[0].eq(trd.data[0]),
                quantizer.i.payload.offset.eq(tq.offset),
                quantizer.i.payload.step.eq(tq.step),
                quantizer.o.ready.eq(1),
            ]
            for j in range(levels):
                m.d.comb += quantizer.i.payload.thr[0][j].eq(
                    trd.data[1 + j * cw:1 + (j + 1) * cw].as_signed() if j < tq.levels else never)
            m.d.comb += [q_valid.eq(quantizer.o.valid), q_value.eq(quantizer.o.payload.value[0])]

        # -- writing: where quantized value number n goes -----------------------------------------
        lc, lh, lw = plan.load_geom
        ld_c = Signal(range(lc + 1))
        restart.append(ld_c.eq(0))
        if plan.im2col:
            restart += self._im2col_writes(m, q_valid, q_value, ld_c)
        else:
            ld_p = Signal(range(lh * lw + 1))
            ld_ptr = Signal(range(max(plan.feature_depth, 1) + lh * lw * s0.in_words + 2))
            restart += [ld_p.eq(0), ld_ptr.eq(0)]
            with m.If(q_valid):
                with m.If(ld_p != lh * lw - 1):
                    m.d.sync += [ld_p.eq(ld_p + 1), ld_ptr.eq(ld_ptr + s0.in_words)]
                with m.Else():
                    m.d.sync += [ld_p.eq(0), ld_ptr.eq(0), ld_c.eq(ld_c + 1)]
            m.d.comb += [
                self.o.valid.eq(q_valid),
                self.o.payload.addr.eq(s0.in_base + ld_ptr + (ld_c >> ceil_log2(V))),
                self.o.payload.data.eq(Cat(q_value[:F] for _ in range(V))),
                self.o.payload.en.eq(1 << (ld_c & (V - 1))),
            ]

        with m.If(self.clear):
            m.d.sync += restart
        return m

    def _im2col_writes(self, m, q_valid, q_value, ld_c):
        """Drive the tap ports; returns the assignments that restart the walk."""
        plan = self.plan
        s0, T = plan.stages[0], plan.tap_width
        lc, lh, lw = plan.load_geom
        kh, kw = s0.kernel
        sh, sw = s0.stride
        pt, pl = s0.pad_tl
        _, ho, wo = s0.conv_geom
        ld_h = Signal(range(lh + 1))
        ld_w = Signal(range(lw + 1))
        # for the input pixel (ld_h, ld_w) and tap y: ld_h + pt - y = hq * sh + hr, so the output
        # row is hq if hr == 0 (and 0 <= hq < ho); likewise wq, wr per tap x
        qrange = signed(bits_for(max(lh, lw, ho, wo) + max(pt, pl, kh, kw) + 2) + 2)
        hq = [Signal(qrange, name=f"hq{y}", init=(pt - y) // sh) for y in range(kh)]
        hr = [Signal(range(sh), name=f"hr{y}", init=(pt - y) % sh) for y in range(kh)]
        wq = [Signal(qrange, name=f"wq{x}", init=(pl - x) // sw) for x in range(kw)]
        wr = [Signal(range(sw), name=f"wr{x}", init=(pl - x) % sw) for x in range(kw)]

        def reset_rows():     # back to the first row's (quotient, remainder) per tap
            return [s.eq(s.init) for s in hq + hr]

        def reset_cols():
            return [s.eq(s.init) for s in wq + wr]

        def step(q, r, s):
            return [q.eq(q + 1), r.eq(0)] if s == 1 else \
                [r.eq(Mux(r == s - 1, 0, r + 1)), q.eq(Mux(r == s - 1, q + 1, q))]

        with m.If(q_valid):
            with m.If(ld_w != lw - 1):
                m.d.sync += [ld_w.eq(ld_w + 1)]
                for x in range(kw):
                    m.d.sync += step(wq[x], wr[x], sw)
            with m.Else():
                m.d.sync += [ld_w.eq(0)] + reset_cols()
                with m.If(ld_h != lh - 1):
                    m.d.sync += ld_h.eq(ld_h + 1)
                    for y in range(kh):
                        m.d.sync += step(hq[y], hr[y], sh)
                with m.Else():
                    m.d.sync += [ld_h.eq(0), ld_c.eq(ld_c + 1)] + reset_rows()
        for y in range(kh):
            for x in range(kw):
                port = self.taps[y * kw + x]
                ok = ((hr[y] == 0) & (hq[y] >= 0) & (hq[y] < ho) &
                      (wr[x] == 0) & (wq[x] >= 0) & (wq[x] < wo))
                m.d.comb += [
                    port.addr.eq(hq[y] * wo + wq[x]),
                    port.data.eq(Cat(q_value[:T] for _ in range(lc))),
                    port.en.eq(Mux(q_valid & ok, 1 << ld_c, 0)),
                ]
        return reset_rows() + reset_cols() + [ld_h.eq(0), ld_w.eq(0)]
