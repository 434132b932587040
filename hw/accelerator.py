"""The accelerator top: one PE x SIMD engine run stage by stage over on-chip feature maps (overlay).

The ports follow :func:`hw.core.core_signature` (the Amaranth simulator driver :mod:`sim.run`, the
Verilator driver and the board's protocol engine use exactly these names; in Verilog they appear
as ``i__valid``, ``i__payload`` ...).

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

Parameters
----------
network : IntegerNetwork
pe, simd : int
    Array shape: output channels and input elements per cycle (powers of two).
input_range, input_mode, input_stage, fuse_pools
    As for :class:`~hw.plan.Plan`.
dsp_lanes : int
    At most this many multiplier lanes go to DSP blocks (products narrower than
    ``devices.DSP_MIN_PRODUCT_BITS`` never do).
dsp_pack : bool
    Let one DSP compute two lanes when the network's ranges allow it (:func:`pack_shift`).

Attributes
----------
plan : hw.plan.Plan
    Geometry, widths and the cycle model (``plan.predict_cycles()``).
n_in, n_out : int
    Beats per inference on ``i`` and ``o``.

Datapath (see ``docs/architecture.md``)::

    i -> InputLoader -> feature RAM (or the im2col tap memories of the first conv)
    WindowGenerator commands -> feature / tap read -> MACArray -> ThresholdUnit -> WriteBack
                                                   -> MaxPoolUnit ------------> WriteBack
    WriteBack -> feature RAM, or the output RAM of the last MAC stage -> OutputStreamer -> o

Sequencing is a state machine: ``Idle`` (loading allowed) -> ``start`` -> ``Load`` (until every
input value is written) -> ``Run`` (the window generator walks every stage) -> ``Output`` (the
streamer sends the results) -> ``Idle``.

Pipeline, for Fmax: the command is registered before the feature read (``cmd1``) and again with
the operands in front of the array (``cmd2``, ``a2``); the weight ROM is read one cycle after the
feature RAM so its word arrives with the registered activations; the threshold ROM is read with
the tag of the beat in the array's adder stage, so its word arrives with the accumulators; the
thresholds of negative lanes are stored negated (:func:`hw.images.threshold_image`), so the
threshold unit never negates an accumulator.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory

from ..model_tools.errors import ThresherError

from .core import core_signature
from .devices import BLOCK_RAM, DSP_LANES, DSP_MIN_PRODUCT_BITS, memory_style
from .images import threshold_image, weight_image
from .loader import InputLoader
from .mac_array import MACArray
from .maxpool import MaxPoolUnit
from .plan import GAP_CYCLES, Plan
from .streamer import OutputStreamer
from .threshold import ThresholdUnit
from .window import WindowGenerator, tag_layout
from .writeback import WriteBack

__all__ = ["Accelerator", "pack_shift"]


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
        F, T, stages = plan.feat_width, plan.tap_width, plan.stages
        tags = tag_layout(plan)

        m.submodules.loader = loader = InputLoader(plan)
        m.submodules.gen = gen = WindowGenerator(plan, gap=GAP_CYCLES)
        channelwise = any(s.channelwise for s in stages)
        m.submodules.mac = mac = MACArray(pe=pe, simd=simd, weight_width=plan.weight_width,
                                          act_width=A, acc_width=plan.acc_width,
                                          tag_width=tags.size, dsp_lanes=self.dsp_lanes,
                                          pack_shift=self.pack_shift, row_operands=channelwise)
        m.submodules.pool = pool = MaxPoolUnit(lanes=simd, width=A, tag_width=tags.size)
        m.submodules.thr = thr = ThresholdUnit(lanes=pe, acc_width=plan.acc_width,
                                               cmp_width=plan.cmp_width,
                                               levels=max(plan.levels, 1), out_width=A,
                                               tag_width=tags.size, prenegated=True)
        m.submodules.writeback = wb = WriteBack(plan)
        m.submodules.output = out = OutputStreamer(plan)

        # ---- memories: feature RAM (V lanes x F bits, two regions), tap memories, output RAM,
        # pool buffer (the running maxima of a fused pool) ------------------------------------
        m.submodules.fmem = fmem = Memory(shape=unsigned(V * F), depth=plan.feature_depth, init=[],
                                          attrs=BLOCK_RAM)
        f_rd = fmem.read_port()
        wiring.connect(m, wb.feature, fmem.write_port(granularity=F))
        tap_ports = []
        if plan.im2col:
            _, ho, wo = stages[0].conv_geom
            kh, kw = stages[0].kernel
            for j, port in enumerate(loader.taps):
                m.submodules[f"tap_{j // kw}_{j % kw}"] = mem = Memory(
                    shape=unsigned(plan.load_geom[0] * T), depth=ho * wo, init=[], attrs=BLOCK_RAM)
                wiring.connect(m, port, mem.write_port(granularity=T))
                tap_ports.append(mem.read_port())
        else:
            wiring.connect(m, loader.o, wb.load)
        if plan.output_mode == "acc":
            width = pe * plan.out_width
            m.submodules.omem = omem = Memory(
                shape=unsigned(width), depth=plan.out_depth, init=[],
                attrs=memory_style(width, plan.out_depth, rom=False))
            wiring.connect(m, wb.out, omem.write_port())
            wiring.connect(m, out.rd, omem.read_port())
        else:
            m.d.comb += out.rd.data.eq(f_rd.data)
        if plan.pool_buffer_depth:
            m.submodules.pbuf = pbuf = Memory(shape=unsigned(pe * F),
                                              depth=plan.pool_buffer_depth, init=[])
            pb_wr = pbuf.write_port()
            wiring.connect(m, wb.pbuf_rd, pbuf.read_port(transparent_for=(pb_wr,)))
            wiring.connect(m, wb.pbuf_wr, pb_wr)

        # ---- streams between the blocks -----------------------------------------------------
        wiring.connect(m, wiring.flipped(self.i), loader.i)
        wiring.connect(m, mac.o, wb.acc)
        wiring.connect(m, thr.o, wb.act)
        wiring.connect(m, pool.o, wb.pool)
        wiring.connect(m, out.o, wiring.flipped(self.o))

        # ---- compute: command -> (cmd1) feature read -> (cmd2) operands -> array / pool -------
        cmd = gen.o.payload
        m.d.comb += gen.o.ready.eq(1)
        cmd1, cmd2 = Signal.like(cmd), Signal.like(cmd)
        v1, v2 = Signal(), Signal()
        m.d.sync += [cmd1.eq(cmd), v1.eq(gen.o.valid), cmd2.eq(cmd1), v2.eq(v1)]
        m.d.comb += f_rd.addr.eq(cmd.addr)
        for rp in tap_ports:
            m.d.comb += rp.addr.eq(cmd.addr)
        w_lanes = self._weights(m, cmd1, cmd2)
        a2 = Signal(data.ArrayLayout(signed(A), simd))
        m.d.sync += a2.eq(self._activations(m, f_rd, tap_ports, cmd1))

        is_pool = Array(Const(s.kind == "pool", 1) for s in stages)[cmd2.stage]
        tag2 = Signal(tags)
        m.d.comb += [getattr(tag2, f).eq(getattr(cmd2, f)) for f in tags.members]
        m.d.comb += [
            mac.i.valid.eq(v2 & ~is_pool),
            mac.i.payload.w.eq(w_lanes),
            mac.i.payload.a.eq(a2),
            mac.i.payload.first.eq(cmd2.first),
            mac.i.payload.last.eq(cmd2.last),
            mac.i.payload.tag.eq(tag2),
            pool.i.valid.eq(v2 & is_pool),
            pool.i.payload.a.eq(a2),
            pool.i.payload.valid.eq(cmd2.mask),
            pool.i.payload.first.eq(cmd2.first),
            pool.i.payload.last.eq(cmd2.last),
            pool.i.payload.tag.eq(tag2),
        ]
        if channelwise:
            # lanes over channels: PE channels of the word straight to the PE rows
            d2 = Signal(data.ArrayLayout(signed(A), pe))
            m.d.sync += d2.eq(self._row_activations(m, f_rd, cmd1))
            m.d.comb += [mac.i.payload.d.eq(d2),
                         mac.i.payload.diag.eq(
                             Array(Const(s.channelwise, 1) for s in stages)[cmd2.stage])]
        self._thresholds(m, thr, mac.o, tag2)

        # ---- phases -----------------------------------------------------------------------------
        count = Signal(32)
        m.d.sync += self.done.eq(0)
        with m.If(self.busy):
            m.d.sync += count.eq(count + 1)
        with m.FSM() as fsm:
            with m.State("Idle"):
                m.d.comb += loader.enable.eq(1)
                with m.If(self.start):
                    m.d.sync += count.eq(1)
                    m.next = "Load"
            with m.State("Load"):
                # until every input value is written: one cycle if it came before start
                m.d.comb += loader.enable.eq(1)
                with m.If(loader.loaded):
                    m.d.comb += gen.start.eq(1)
                    m.next = "Run"
            with m.State("Run"):
                with m.If(~gen.busy):
                    m.d.comb += out.start.eq(1)
                    m.next = "Output"
            with m.State("Output"):
                if plan.output_mode == "feature":    # the streamer reads the feature RAM
                    m.d.comb += [f_rd.addr.eq(out.rd.addr), f_rd.en.eq(out.rd.en)]
                with m.If(out.done):
                    m.d.comb += loader.clear.eq(1)
                    m.d.sync += [self.done.eq(1), self.cycles.eq(count)]
                    m.next = "Idle"
        m.d.comb += self.busy.eq(~fsm.ongoing("Idle"))
        return m

    def _weights(self, m, cmd1, cmd2):
        """The weight ROM (every MAC stage's image, stacked), read with ``cmd1``; returns the
        decoded ``pe * simd`` weights of ``cmd2``'s beat."""
        plan = self.plan
        stages, pe, simd = plan.stages, plan.pe, plan.simd
        mac_stages = [s for s in stages if s.kind == "mac"]
        # one ROM for all stages: fewer, fuller block RAMs than one ROM per stage
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
        # the registered activations (cmd2) at no register cost
        m.d.comb += w_rd.addr.eq(cmd1.waddr +
                                 Array(wbase.get(s.index, 0) for s in stages)[cmd1.stage])
        w_lanes = Signal(data.ArrayLayout(signed(plan.weight_width), pe * simd))
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
        return w_lanes

    def _activations(self, m, f_rd, tap_ports, cmd1):
        """The ``simd`` activations of ``cmd1``'s beat: its SIMD slice of the feature word (or
        its chunk of the im2col window), masked lanes zero."""
        plan = self.plan
        simd, A, F, T = plan.simd, plan.act_width, plan.feat_width, plan.tap_width
        raw_lanes = Signal(data.ArrayLayout(signed(A), simd))
        feat_lanes = Signal(data.ArrayLayout(signed(F), simd))
        nsub = plan.V // simd
        m.d.comb += feat_lanes.eq(Array(f_rd.data[k * simd * F:(k + 1) * simd * F]
                                        for k in range(nsub))[cmd1.sub])
        for k in range(simd):
            m.d.comb += raw_lanes[k].eq(feat_lanes[k])          # sign extension F -> A
        if plan.im2col:
            s0 = plan.stages[0]
            cin = s0.in_geom[0]
            window = []
            for rp in tap_ports:
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
        a_lanes = Signal(data.ArrayLayout(signed(A), simd))
        for k in range(simd):
            m.d.comb += a_lanes[k].eq(Mux(cmd1.mask[k], raw_lanes[k], 0))
        return a_lanes

    def _row_activations(self, m, f_rd, cmd1):
        """The ``pe`` activations of ``cmd1``'s beat for a channelwise stage, one per PE row:
        the PE-channel slice ``dsub`` of the feature word, all zero when the tap lies in the
        padding (channels past C meet zero weights)."""
        plan = self.plan
        pe, A, F = plan.pe, plan.act_width, plan.feat_width
        slices = [f_rd.data[k * pe * F:(k + 1) * pe * F] for k in range(plan.V // pe)]
        word = Signal(pe * F)
        m.d.comb += word.eq(Array(slices)[cmd1.dsub] if len(slices) > 1 else slices[0])
        d_lanes = Signal(data.ArrayLayout(signed(A), pe))
        for k in range(pe):
            m.d.comb += d_lanes[k].eq(Mux(cmd1.inb, word[k * F:(k + 1) * F].as_signed(), 0))
        return d_lanes

    def _thresholds(self, m, thr, acc, tag2):
        """Feed the threshold unit from the array's output ``acc``, with the word of the
        threshold ROM (every activated stage's image, stacked) for the beat's group."""
        plan = self.plan
        stages, pe, cw, L = plan.stages, plan.pe, plan.cmp_width, max(plan.levels, 1)
        tag = tag_layout(plan)(acc.payload.tag)
        act_stages = [s for s in stages if s.kind == "mac" and s.levels >= 1]
        images = {s.index: threshold_image(plan, s, prenegated=True) for s in act_stages}
        tbase, twords = {}, []
        for s in act_stages:
            tbase[s.index] = len(twords)
            twords += images[s.index][1]
        if act_stages:
            twidth = max(w for w, _ in images.values())
            m.submodules.trom = trom = Memory(
                shape=unsigned(twidth), depth=len(twords), init=twords,
                attrs=memory_style(twidth, len(twords), rom=True))
            t_rd = trom.read_port()
            # read with the (group, stage) of the beat in the array's adder stage, i.e. of
            # acc.payload.tag on the next cycle (the array's product stage always advances:
            # acc.ready is 1), so the word arrives with the accumulators
            t_group, t_stage = Signal.like(tag2.group), Signal.like(tag2.stage)
            m.d.sync += [t_group.eq(tag2.group), t_stage.eq(tag2.stage)]
            m.d.comb += t_rd.addr.eq(t_group +
                                     Array(tbase.get(s.index, 0) for s in stages)[t_stage])
        has_act = Array(Const(s.kind == "mac" and s.levels >= 1, 1) for s in stages)[tag.stage]
        m.d.comb += [thr.i.valid.eq(acc.valid & has_act), thr.i.payload.acc.eq(acc.payload.acc),
                     thr.i.payload.tag.eq(acc.payload.tag)]
        # one layout for every stage (hw.images.threshold_image): the slots go straight to the
        # comparators; only the offset and step are the stage's
        if act_stages:
            d, lane_bits = t_rd.data, 1 + L * cw
            for k in range(pe):
                base = k * lane_bits
                m.d.comb += thr.i.payload.neg[k].eq(d[base])
                for j in range(L):
                    m.d.comb += thr.i.payload.thr[k][j].eq(
                        d[base + 1 + j * cw:base + 1 + (j + 1) * cw].as_signed())
        with m.Switch(tag.stage):
            for s in act_stages:
                with m.Case(s.index):
                    m.d.comb += [thr.i.payload.offset.eq(s.offset),
                                 thr.i.payload.step.eq(s.step)]
