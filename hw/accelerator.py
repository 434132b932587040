"""The accelerator top: one PE x SIMD engine run stage by stage over on-chip feature maps (overlay).

Port contract (stable; the Amaranth simulator driver :mod:`hw.run` and the Verilator driver in
``sim/`` use exactly these names; in Verilog they appear as ``i__valid``, ``i__payload`` ...):

Members
-------
i : In(stream.Signature(signed(raw_width)))
    Raw input integers (e.g. 8-bit pixels), one per beat, in C order of ``network.input_shape``.
    Accepted (``i.ready`` high) while the accelerator is not computing and fewer than ``n_in`` values
    of the next inference have arrived. Each is quantized on arrival by the input stage (a level
    lookup ROM or comparators, chosen by :class:`~hw.plan.Plan`). With ``input_mode="levels"`` the
    beats are the quantized levels (``golden.quantize_input`` on the host) and pass unchanged.
o : Out(stream.Signature(signed(out_width)))
    The last stage's integers (``golden.run_integer``), one per beat, in C order of
    ``network.last_shape``; back-pressure through ``o.ready`` is honoured.
start : In(1)
    Pulse (one cycle, while ``busy`` is low): run one inference. Input beats may be streamed before
    or after ``start``; computation begins once all ``n_in`` have arrived.
busy : Out(1)
    High from the cycle after ``start`` until ``done``.
done : Out(1)
    One-cycle pulse after the last output beat was accepted.
cycles : Out(32)
    Cycles of the last inference, counted from ``start`` to ``done`` (load time included only if
    the input was streamed after ``start``).

Attributes
----------
plan : hw.plan.Plan
    Geometry, widths and the cycle model (``plan.predict_cycles()``).
n_in, n_out : int
    Beats per inference on ``i`` and ``o``.

Datapath (see ``docs/architecture.md``): input loader (quantizer) -> feature RAM (or the im2col tap
memories of the first conv) -> :class:`~hw.window.WindowGenerator` commands -> feature read ->
:class:`~hw.mac_array.MACArray` -> threshold ROM read -> :class:`~hw.threshold.ThresholdUnit`
-> feature RAM write (or :class:`~hw.maxpool.MaxPoolUnit` for pool stages); the last MAC stage writes
the output RAM, which is streamed out in C order.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.utils import bits_for, ceil_log2

from model_tools.errors import ThresherError

from .core import core_signature
from .images import input_level_image, input_threshold_image, threshold_image, weight_image
from .mac_array import MACArray
from .maxpool import MaxPoolUnit
from .plan import GAP_CYCLES, Plan
from .threshold import ThresholdUnit
from .window import WindowGenerator

__all__ = ["Accelerator"]

# yosys maps small memories (and every ROM) to logic unless asked: ask for block RAM
# (iCE40 SB_RAM40_4K, ECP5 DP16KD) for everything that holds weights, thresholds or feature maps,
# unless it is so shallow that logic is cheaper (memory_style).
BLOCK_RAM = {"ram_style": "block", "rom_style": "block"}
LOGIC = {"ram_style": "logic", "rom_style": "logic"}

#: Products narrower than this stay in LUTs (a DSP for a 2 x 2-bit product is a waste); wider ones
#: go to at most ``dsp_lanes`` DSP blocks.
DSP_MIN_PRODUCT_BITS = 11
#: Default DSP budget of the MAC array: the iCE40 UP5K's 8 SB_MAC16.
DSP_LANES = 8
#: Logic cells one block RAM is worth (UP5K: 5,280 LCs / 30 EBRs).
LC_PER_BRAM = 176


def bram_blocks(width, depth):
    """iCE40 4-kbit EBRs for a width x depth memory, best aspect ratio."""
    return min(-(-width // w) * -(-depth // d) for w, d in ((16, 256), (8, 512), (4, 1024),
                                                            (2, 2048)))


def pack_shift(plan):
    """Smallest S such that two of ``plan``'s products fit one 16 x 16 DSP (see
    :class:`hw.mac_array.MACArray`), or None: every product ``w * a`` of the network lies in
    ``[-2^(S-1), 2^(S-1))`` and ``w1 * 2^S + w0`` fits 16 signed bits."""
    wlo, whi = plan.weight_range
    alo, ahi = plan.mac_act_range
    corners = [wlo * alo, wlo * ahi, whi * alo, whi * ahi]
    plo, phi = min(corners), max(corners)
    if plan.act_width > 16:
        return None
    for S in range(2, 16):
        if -(1 << (S - 1)) <= plo and phi < (1 << (S - 1)):
            if -(1 << 15) <= wlo * (1 << S) + wlo and whi * (1 << S) + whi < (1 << 15):
                return S
            return None
    return None


def prenegate_thresholds(width, words, *, pe, levels, cmp_width):
    """A threshold ROM image (:func:`hw.images.threshold_image`) for
    ``ThresholdUnit(prenegated=True)``: every threshold ``T`` of a negative lane becomes ``1 - T``
    (``-acc >= T`` iff ``not (acc >= 1 - T)``). The clamped thresholds lie in ``[-M, M + 1]`` with
    ``M < 2^(cmp_width - 2)``, so ``1 - T`` fits; out-of-range values are clamped to the extreme
    that keeps the comparison's (constant) outcome."""
    cw, mask = cmp_width, (1 << cmp_width) - 1
    lane_bits = 1 + levels * cw
    hi, lo = (1 << (cw - 1)) - 1, -(1 << (cw - 1))
    out = []
    for word in words:
        new = word
        for k in range(pe):
            base = k * lane_bits
            if not (word >> base) & 1:
                continue
            for j in range(levels):
                sh = base + 1 + j * cw
                t = (word >> sh) & mask
                t -= (1 << cw) if t >> (cw - 1) else 0
                v = min(max(1 - t, lo), hi)
                new = (new & ~(mask << sh)) | ((v & mask) << sh)
        out.append(new)
    return width, out


def memory_style(width, depth, *, rom):
    """``BLOCK_RAM`` or ``LOGIC`` attributes, whichever costs fewer logic cells.

    A ROM bit in LUT4s costs about ``2 * ceil(depth / 16) - 1`` (LUTs + mux tree), a RAM bit in logic
    a flip-flop and its share of the read mux; a block RAM costs :data:`LC_PER_BRAM`. Shallow wide
    images (the threshold ROM: 184 bits x 6 words took 12 EBRs) go to logic.
    """
    per_bit = 2 * -(-depth // 16) - 1 if rom else 1.5 * depth
    return LOGIC if width * per_bit < bram_blocks(width, depth) * LC_PER_BRAM else BLOCK_RAM


class Accelerator(wiring.Component):
    def __init__(self, network, *, pe=8, simd=8, input_range=(0, 255), fuse_pools=True,
                 input_mode="raw", input_stage="auto", dsp_lanes=DSP_LANES, dsp_pack=True):
        self.plan = plan = Plan(network, pe, simd, input_range, fuse_pools=fuse_pools,
                                input_mode=input_mode, input_stage=input_stage)
        if not plan.stages:
            raise ThresherError("the network has no layers; nothing to put in hardware")
        self.network, self.pe, self.simd = network, pe, simd
        if not isinstance(dsp_lanes, int) or dsp_lanes < 0:
            raise ValueError(f"dsp_lanes must be an integer >= 0, not {dsp_lanes!r}")
        wide = plan.weight_width + plan.act_width >= DSP_MIN_PRODUCT_BITS
        self.dsp_lanes = min(dsp_lanes, pe * simd) if wide else 0
        self.pack_shift = pack_shift(plan) if dsp_pack and self.dsp_lanes and pe >= 2 else None
        self.n_in, self.n_out = plan.n_in, plan.n_out
        super().__init__(core_signature(signed(plan.raw_width), signed(plan.out_width)))

    # ------------------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        V, simd, pe, A = plan.V, plan.simd, plan.pe, plan.act_width
        F, T = plan.feat_width, plan.tap_width
        stages = plan.stages
        s0 = stages[0]

        # ---- feature RAM: V lanes x F bits, two regions -------------------------------------
        m.submodules.fmem = fmem = Memory(shape=unsigned(V * F), depth=plan.feature_depth, init=[],
                                          attrs=BLOCK_RAM)
        f_wr = fmem.write_port(granularity=F)
        f_rd = fmem.read_port()

        # ---- phase control ---------------------------------------------------------------------
        m.submodules.gen = gen = WindowGenerator(plan, gap=GAP_CYCLES)
        busy = Signal()
        loaded = Signal(range(plan.n_in + 1))
        full = Signal()                  # == (loaded == n_in), kept as a flag (timing)
        inflight = Signal(2)             # loader beats in its 2-cycle pipeline
        running = Signal()
        out_phase = Signal()
        count = Signal(32)
        m.d.comb += self.busy.eq(busy)
        m.d.sync += self.done.eq(0)
        with m.If(busy):
            m.d.sync += count.eq(count + 1)

        # ---- input loader ----------------------------------------------------------------------
        # accepted beat -> (2 cycles) -> q_valid / q_value, whatever the input stage
        accept = ~running & ~out_phase & ~full
        m.d.comb += self.i.ready.eq(accept)
        take = self.i.valid & accept
        with m.If(take):
            m.d.sync += [loaded.eq(loaded + 1), full.eq(loaded == plan.n_in - 1)]
        m.d.sync += inflight.eq(Cat(take, inflight[0]))
        q_valid = Signal()
        q_value = Signal(signed(A))
        loader_reset = []
        if plan.input_stage == "none":
            # levels mode: the host quantized; register twice to keep the loader's latency
            lvl = Signal(signed(A))
            lvl_v = Signal()
            m.d.sync += [lvl.eq(self.i.payload), lvl_v.eq(take),
                         q_value.eq(lvl), q_valid.eq(lvl_v)]
        else:
            tq = plan.in_thresholds
            per_q = plan.n_in // tq.channels
            qn = Signal(range(per_q + 1))
            qc = Signal(range(tq.channels + 1))
            loader_reset += [qc.eq(0), qn.eq(0)]
            with m.If(take):
                with m.If(qn == per_q - 1):
                    m.d.sync += [qn.eq(0), qc.eq(qc + 1)]
                with m.Else():
                    m.d.sync += qn.eq(qn + 1)
        if plan.input_stage == "rom":
            # lookup ROM: level count of every (channel, raw value), read at raw - lo
            lwidth, lwords = input_level_image(plan)
            m.submodules.in_lrom = in_lrom = Memory(shape=unsigned(lwidth), depth=len(lwords),
                                                    init=lwords, attrs=BLOCK_RAM)
            in_lrd = in_lrom.read_port()
            span = plan.input_range[1] - plan.input_range[0] + 1
            raw = self.i.payload - plan.input_range[0]
            if tq.channels > 1:
                qbase = Signal(range(len(lwords) + 1))
                loader_reset.append(qbase.eq(0))
                with m.If(take & (qn == per_q - 1)):
                    m.d.sync += qbase.eq(qbase + span)
                m.d.comb += in_lrd.addr.eq(qbase + raw)
            else:
                m.d.comb += in_lrd.addr.eq(raw)
            lrd_v = Signal()
            m.d.sync += [lrd_v.eq(take), q_valid.eq(lrd_v),
                         q_value.eq(tq.offset + tq.step * in_lrd.data)]
        elif plan.input_stage == "compare":
            in_cw = plan.raw_width + 1
            twidth, twords = input_threshold_image(plan)
            m.submodules.in_trom = in_trom = Memory(shape=unsigned(twidth), depth=len(twords),
                                                    init=twords)
            in_trd = in_trom.read_port()
            m.submodules.in_thr = in_thr = ThresholdUnit(
                lanes=1, acc_width=plan.raw_width, cmp_width=in_cw, levels=max(tq.levels, 1),
                out_width=A)
            raw_r = Signal(signed(plan.raw_width))
            raw_v = Signal()
            m.d.comb += in_trd.addr.eq(qc)
            m.d.sync += [raw_r.eq(self.i.payload), raw_v.eq(take)]
            never = (1 << (in_cw - 1)) - 1
            m.d.comb += [
                in_thr.i.valid.eq(raw_v),
                in_thr.i.payload.acc[0].eq(raw_r),
                in_thr.i.payload.neg[0].eq(in_trd.data[0]),
                in_thr.i.payload.offset.eq(tq.offset),
                in_thr.i.payload.step.eq(tq.step),
                in_thr.o.ready.eq(1),
            ]
            for j in range(max(tq.levels, 1)):
                m.d.comb += in_thr.i.payload.thr[0][j].eq(
                    in_trd.data[1 + j * in_cw:1 + (j + 1) * in_cw].as_signed()
                    if j < tq.levels else never)
            m.d.comb += [q_valid.eq(in_thr.o.valid), q_value.eq(in_thr.o.payload.value[0])]

        # loader write side: where quantized value number n goes
        lc, lh, lw = plan.load_geom
        ld_c = Signal(range(lc + 1))
        ld_p = Signal(range(lh * lw + 1))
        ld_ptr = Signal(range(max(plan.feature_depth, 1) + lh * lw * s0.in_words + 2))
        loader_we = Signal()
        loader_addr = Signal.like(f_wr.addr)
        loader_data = Signal(V * F)
        loader_en = Signal(V)
        tap_ports = []
        loader_reset += [ld_c.eq(0), ld_p.eq(0), ld_ptr.eq(0)]
        if plan.im2col:
            kh, kw = s0.kernel
            sh, sw = s0.stride
            pt, pl = s0.pad_tl
            _, ho, wo = s0.conv_geom
            ld_h = Signal(range(lh + 1))
            ld_w = Signal(range(lw + 1))
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

            loader_reset += reset_rows() + reset_cols() + [ld_h.eq(0), ld_w.eq(0)]
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
                    mem = Memory(shape=unsigned(lc * T), depth=ho * wo, init=[], attrs=BLOCK_RAM)
                    m.submodules[f"tap_{y}_{x}"] = mem
                    wp = mem.write_port(granularity=T)
                    rp = mem.read_port()
                    ok = ((hr[y] == 0) & (hq[y] >= 0) & (hq[y] < ho) &
                          (wr[x] == 0) & (wq[x] >= 0) & (wq[x] < wo))
                    m.d.comb += [
                        wp.addr.eq(hq[y] * wo + wq[x]),
                        wp.data.eq(Cat(q_value[:T] for _ in range(lc))),
                        wp.en.eq(Mux(q_valid & ok, 1 << ld_c, 0)),
                    ]
                    tap_ports.append(rp)
        else:
            with m.If(q_valid):
                with m.If(ld_p != lh * lw - 1):
                    m.d.sync += [ld_p.eq(ld_p + 1), ld_ptr.eq(ld_ptr + s0.in_words)]
                with m.Else():
                    m.d.sync += [ld_p.eq(0), ld_ptr.eq(0), ld_c.eq(ld_c + 1)]
            lsv = ceil_log2(V)
            m.d.comb += [
                loader_we.eq(q_valid),
                loader_addr.eq(s0.in_base + ld_ptr + (ld_c >> lsv)),
                loader_data.eq(Cat(q_value[:F] for _ in range(V))),
                loader_en.eq(1 << (ld_c & (V - 1))),
            ]

        # ---- compute: command -> read ------------------------------------------------------
        cmd = gen.o.payload
        m.d.comb += gen.o.ready.eq(1)
        cmd1 = Signal.like(cmd)
        v1 = Signal()
        m.d.sync += [cmd1.eq(cmd), v1.eq(gen.o.valid)]

        # one weight ROM for all MAC stages (stage images stacked; fewer, fuller block RAMs than
        # one ROM per stage), read by command
        mac_stages = [s for s in stages if s.kind == "mac"]
        images = {s.index: weight_image(plan, s) for s in mac_stages}
        wbase, words = {}, []
        for s in mac_stages:
            wbase[s.index] = len(words)
            words += images[s.index][1]
        wwidth = max(w for w, _ in images.values())
        m.submodules.wrom = wrom = Memory(shape=unsigned(wwidth), depth=len(words), init=words,
                                          attrs=memory_style(wwidth, len(words), rom=True))
        w_rd = wrom.read_port()
        # read one cycle later than the feature RAM (address from cmd1): the weights arrive with
        # the registered activations (t2) at no register cost
        m.d.comb += w_rd.addr.eq(cmd1.waddr +
                                 Array(wbase.get(s.index, 0) for s in stages)[cmd1.stage])
        tdata = {}
        # decoded weights for the array, by stage
        WB = plan.weight_width
        w_lanes = Signal(data.ArrayLayout(signed(WB), pe * simd))
        # t1 -> t2: lane select and mask registered in front of the array (cmd2, a2)
        cmd2 = Signal.like(cmd)
        v2 = Signal()
        m.d.sync += [cmd2.eq(cmd1), v2.eq(v1)]
        # one decoder per distinct (width, bipolar) format; stages select among them. Pool
        # stages never reach the array (mac.i.valid low), so they take any of them: no zero
        # default, and no stage mux at all when every MAC stage stores its weights alike
        formats = []
        for s in mac_stages:
            if (s.weight_width, s.bipolar) not in [f for f, _ in formats]:
                formats.append(((s.weight_width, s.bipolar), []))
            [idx for f, idx in formats if f == (s.weight_width, s.bipolar)][0].append(s.index)

        def decode(ww, bipolar):
            d = w_rd.data
            return [Mux(d[k * ww], 1, -1) if bipolar else d[k * ww:(k + 1) * ww].as_signed()
                    for k in range(pe * simd)]

        if len(formats) == 1:
            for k, v in enumerate(decode(*formats[0][0])):
                m.d.comb += w_lanes[k].eq(v)
        else:
            with m.Switch(cmd2.stage):
                for n, ((ww, bipolar), idx) in enumerate(formats):
                    with (m.Default() if n == len(formats) - 1 else m.Case(*idx)):
                        for k, v in enumerate(decode(ww, bipolar)):
                            m.d.comb += w_lanes[k].eq(v)

        # activations (SIMD lanes) of this beat
        a_lanes = Signal(data.ArrayLayout(signed(A), simd))
        raw_lanes = Signal(data.ArrayLayout(signed(A), simd))
        feat_lanes = Signal(data.ArrayLayout(signed(F), simd))
        m.d.comb += f_rd.addr.eq(cmd.addr)
        nsub = V // simd
        m.d.comb += feat_lanes.eq(Array(f_rd.data[k * simd * F:(k + 1) * simd * F]
                                        for k in range(nsub))[cmd1.sub])
        for k in range(simd):
            m.d.comb += raw_lanes[k].eq(feat_lanes[k])          # sign extension F -> A
        if plan.im2col:
            kh, kw = s0.kernel
            cin = s0.in_geom[0]
            window = []
            for rp in tap_ports:
                m.d.comb += rp.addr.eq(cmd.addr)
                window += [rp.data[c * T:(c + 1) * T].as_signed() for c in range(cin)]
            nchunks = s0.loops[3]
            ext = []
            for j, v in enumerate(window):
                e = Signal(signed(A), name=f"win_{j}")
                m.d.comb += e.eq(v)
                ext.append(e)
            window = ext + [Const(0, A)] * (nchunks * simd - len(ext))
            chunks = Array(Cat(*window[j * simd:(j + 1) * simd]) for j in range(nchunks))
            with m.If(cmd1.stage == 0):
                m.d.comb += raw_lanes.eq(chunks[cmd1.chunk])
        a2 = Signal.like(a_lanes)
        for k in range(simd):
            m.d.comb += a_lanes[k].eq(Mux(cmd1.mask[k], raw_lanes[k], 0))
        m.d.sync += a2.eq(a_lanes)

        is_pool = Array(Const(s.kind == "pool", 1) for s in stages)[cmd2.stage]

        # tag carried through the array: stage, group, output address and lane
        tag_fields = ("stage", "group", "oaddr", "olane", "pfirst", "plast", "pskip", "pbaddr")
        tag_layout = data.StructLayout({f: getattr(cmd, f).shape() for f in tag_fields})
        tag_w = tag_layout.size
        tag2 = Signal(tag_layout)
        m.d.comb += [getattr(tag2, f).eq(getattr(cmd2, f)) for f in tag_fields]

        m.submodules.mac = mac = MACArray(pe=pe, simd=simd, weight_width=WB, act_width=A,
                                          acc_width=plan.acc_width, tag_width=tag_w,
                                          dsp_lanes=self.dsp_lanes, pack_shift=self.pack_shift)
        m.d.comb += [
            mac.i.valid.eq(v2 & ~is_pool),
            mac.i.payload.w.eq(w_lanes),
            mac.i.payload.a.eq(a2),
            mac.i.payload.first.eq(cmd2.first),
            mac.i.payload.last.eq(cmd2.last),
            mac.i.payload.tag.eq(tag2),
            mac.o.ready.eq(1),
        ]
        m.submodules.pool = pool = MaxPoolUnit(lanes=simd, width=A, tag_width=tag_w)
        m.d.comb += [
            pool.i.valid.eq(v2 & is_pool),
            pool.i.payload.a.eq(a2),
            pool.i.payload.valid.eq(cmd2.mask),
            pool.i.payload.first.eq(cmd2.first),
            pool.i.payload.last.eq(cmd2.last),
            pool.i.payload.tag.eq(tag2),
            pool.o.ready.eq(1),
        ]

        # ---- accumulators -> thresholds ------------------------------------------------------
        # the threshold ROM is read with the tag of the beat in the array's adder stage, so its
        # word arrives with the accumulators (no register stage between array and comparators)
        acc_r = mac.o.payload.acc
        tag_r = tag_layout(mac.o.payload.tag)
        acc_v = mac.o.valid
        L = max(plan.levels, 1)
        cw = plan.cmp_width
        m.submodules.thr = thr = ThresholdUnit(lanes=pe, acc_width=plan.acc_width, cmp_width=cw,
                                               levels=L, out_width=A, tag_width=tag_w,
                                               prenegated=True)
        never = (1 << (cw - 1)) - 1
        lowest = -(1 << (cw - 1))
        act_stages = [s for s in mac_stages if s.levels >= 1]
        timages = {s.index: prenegate_thresholds(*threshold_image(plan, s), pe=pe,
                                                 levels=s.levels, cmp_width=cw)
                   for s in act_stages}
        tbase, twords = {}, []
        for s in act_stages:
            tbase[s.index] = len(twords)
            twords += timages[s.index][1]
        if act_stages:
            twidth = max(w for w, _ in timages.values())
            m.submodules.trom = trom = Memory(
                shape=unsigned(twidth), depth=len(twords), init=twords,
                attrs=memory_style(twidth, len(twords), rom=True))
            t_rd = trom.read_port()
            # (group, stage) of the beat in the array's adder stage, i.e. of o.payload.tag on the
            # next cycle (the array's product stage always advances: mac.o.ready is 1)
            t_group, t_stage = Signal.like(tag2.group), Signal.like(tag2.stage)
            m.d.sync += [t_group.eq(tag2.group), t_stage.eq(tag2.stage)]
            m.d.comb += t_rd.addr.eq(t_group +
                                     Array(tbase.get(s.index, 0) for s in stages)[t_stage])
            tdata = {s.index: t_rd.data for s in act_stages}
        has_act = Array(Const(s.kind == "mac" and s.levels >= 1, 1) for s in stages)[tag_r.stage]
        m.d.comb += [thr.i.valid.eq(acc_v & has_act), thr.i.payload.acc.eq(acc_r),
                     thr.i.payload.tag.eq(tag_r), thr.o.ready.eq(1)]
        with m.Switch(tag_r.stage):
            for s in act_stages:
                with m.Case(s.index):
                    d, lane_bits = tdata[s.index], 1 + s.levels * cw
                    m.d.comb += [thr.i.payload.offset.eq(s.offset),
                                 thr.i.payload.step.eq(s.step)]
                    for k in range(pe):
                        base = k * lane_bits
                        m.d.comb += thr.i.payload.neg[k].eq(d[base])
                        for j in range(L):
                            # unused slots: a comparison that never counts, in either direction
                            m.d.comb += thr.i.payload.thr[k][j].eq(
                                d[base + 1 + j * cw:base + 1 + (j + 1) * cw].as_signed()
                                if j < s.levels else Mux(d[base], lowest, never))
            with m.Default():
                for k in range(pe):
                    for j in range(L):
                        m.d.comb += thr.i.payload.thr[k][j].eq(never)

        # ---- write back ------------------------------------------------------------------------
        to_out = Array(Const(s.to_output, 1) for s in stages)
        # feature RAM write port: loader, MAC results (pe lanes) or pool results (simd lanes)
        t_tag = Signal(tag_layout)
        p_tag = Signal(tag_layout)
        m.d.comb += [t_tag.eq(thr.o.payload.tag), p_tag.eq(pool.o.payload.tag)]
        # fused max pool: running maximum of each pooled pixel in a one-pooled-row buffer
        fused = Array(Const(s.pool is not None, 1) for s in stages)[t_tag.stage]
        values = [thr.o.payload.value[k] for k in range(pe)]
        if plan.pool_buffer_depth:
            m.submodules.pbuf = pbuf = Memory(shape=unsigned(pe * F),
                                              depth=plan.pool_buffer_depth, init=[])
            pb_wr = pbuf.write_port()
            pb_rd = pbuf.read_port(transparent_for=(pb_wr,))
            m.d.comb += pb_rd.addr.eq(tag_r.pbaddr)
            old = data.View(data.ArrayLayout(signed(F), pe), pb_rd.data)
            pooled = [Signal(signed(A), name=f"pooled_{k}") for k in range(pe)]
            for k in range(pe):
                v = thr.o.payload.value[k]
                m.d.comb += pooled[k].eq(Mux(~fused | t_tag.pfirst | (v > old[k]), v, old[k]))
            values = pooled
            m.d.comb += [pb_wr.addr.eq(t_tag.pbaddr), pb_wr.data.eq(Cat(p[:F] for p in pooled)),
                         pb_wr.en.eq(thr.o.valid & fused & ~t_tag.pskip & ~t_tag.plast)]
        mac_we = thr.o.valid & ~to_out[t_tag.stage] & (~fused | (~t_tag.pskip & t_tag.plast))
        with m.If(loader_we):
            m.d.comb += [f_wr.addr.eq(loader_addr), f_wr.data.eq(loader_data),
                         f_wr.en.eq(loader_en)]
        with m.Elif(mac_we):
            vals = Cat(v[:F] for v in values)
            m.d.comb += [f_wr.addr.eq(t_tag.oaddr),
                         f_wr.data.eq(Cat(vals for _ in range(V // pe))),
                         f_wr.en.eq(((1 << pe) - 1) << t_tag.olane)]
        with m.Elif(pool.o.valid):
            vals = Cat(pool.o.payload.value[k][:F] for k in range(simd))
            m.d.comb += [f_wr.addr.eq(p_tag.oaddr),
                         f_wr.data.eq(Cat(vals for _ in range(V // simd))),
                         f_wr.en.eq(((1 << simd) - 1) << p_tag.olane)]

        # output RAM (last MAC stage): pe lanes of out_width
        OW = plan.out_width
        if plan.output_mode == "acc":
            last = stages[-1]
            m.submodules.omem = omem = Memory(shape=unsigned(pe * OW), depth=plan.out_depth,
                                              init=[], attrs=memory_style(pe * OW, plan.out_depth,
                                                                          rom=False))
            o_wr = omem.write_port()
            o_rd = omem.read_port()
            if last.levels >= 1:
                m.d.comb += [o_wr.addr.eq(t_tag.oaddr),
                             o_wr.data.eq(Cat(thr.o.payload.value[k] for k in range(pe))),
                             o_wr.en.eq(thr.o.valid & to_out[t_tag.stage])]
            else:
                m.d.comb += [o_wr.addr.eq(tag_r.oaddr),
                             o_wr.data.eq(Cat(acc_r[k][:OW] for k in range(pe))),
                             o_wr.en.eq(acc_v & to_out[tag_r.stage])]

        # ---- output streaming --------------------------------------------------------------------
        oc, oh_, ow_ = plan.out_geom
        npix = oh_ * ow_
        rd_c = Signal(range(oc + 1))
        rd_p = Signal(range(npix + 1))
        rd_left = Signal(range(plan.n_out + 1))
        o_valid = Signal()
        sel = Signal(range(max(V, pe)))
        fetch = out_phase & (rd_left != 0) & (~o_valid | self.o.ready)
        if plan.output_mode == "acc":
            gbase = Signal(range(plan.out_depth + npix + 1))
            m.d.comb += [o_rd.addr.eq(gbase + rd_p), o_rd.en.eq(fetch | ~out_phase)]
            lanes = Array(o_rd.data[k * OW:(k + 1) * OW] for k in range(pe))
            m.d.comb += self.o.payload.eq(lanes[sel])
            next_base = Mux((rd_c & (pe - 1)) == pe - 1, gbase + npix, gbase) if pe > 1 \
                else gbase + npix
        else:
            gv = stages[-1].out_words if stages else 1
            gbase = Signal(range(plan.feature_depth + 1))
            ptr = Signal(range(plan.feature_depth + npix * gv + 1))
            with m.If(out_phase):
                m.d.comb += [f_rd.addr.eq(plan.out_base + ptr + (rd_c >> ceil_log2(V))),
                             f_rd.en.eq(fetch)]
            lanes = Array(f_rd.data[k * F:(k + 1) * F] for k in range(V))
            sel_val = Signal(F)
            m.d.comb += [sel_val.eq(lanes[sel]), self.o.payload.eq(sel_val.as_signed())]
        m.d.comb += self.o.valid.eq(o_valid)
        with m.If(self.o.ready & o_valid):
            m.d.sync += o_valid.eq(0)
        with m.If(fetch):
            m.d.sync += [o_valid.eq(1), rd_left.eq(rd_left - 1)]
            if plan.output_mode == "acc":
                m.d.sync += sel.eq(rd_c & (pe - 1))
                with m.If(rd_p != npix - 1):
                    m.d.sync += rd_p.eq(rd_p + 1)
                with m.Else():
                    m.d.sync += [rd_p.eq(0), rd_c.eq(rd_c + 1), gbase.eq(next_base)]
            else:
                m.d.sync += sel.eq(rd_c & (V - 1))
                with m.If(rd_p != npix - 1):
                    m.d.sync += [rd_p.eq(rd_p + 1), ptr.eq(ptr + gv)]
                with m.Else():
                    m.d.sync += [rd_p.eq(0), ptr.eq(0), rd_c.eq(rd_c + 1)]

        # ---- phases ----------------------------------------------------------------------------
        waiting = Signal()
        m.d.comb += gen.start.eq(0)
        with m.If(~busy):
            with m.If(self.start):
                m.d.sync += [busy.eq(1), waiting.eq(1), count.eq(1)]
        with m.Elif(waiting):
            with m.If(full & (inflight == 0) & ~q_valid):
                m.d.comb += gen.start.eq(1)
                m.d.sync += [waiting.eq(0), running.eq(1)]
        with m.Elif(running):
            with m.If(~gen.busy & ~gen.start):
                m.d.sync += [running.eq(0), out_phase.eq(1), rd_left.eq(plan.n_out),
                             rd_c.eq(0), rd_p.eq(0), gbase.eq(0)]
                if plan.output_mode == "feature":
                    m.d.sync += ptr.eq(0)
        with m.Elif(out_phase):
            with m.If((rd_left == 0) & (~o_valid | self.o.ready)):
                m.d.sync += [out_phase.eq(0), busy.eq(0), self.done.eq(1), loaded.eq(0), full.eq(0),
                             self.cycles.eq(count)] + loader_reset
        return m
