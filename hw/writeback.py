"""Write-back: results of the MAC array, the threshold unit and the max-pool unit into memory.

One write port of the feature RAM serves three writers, in this priority (they never meet in a
run; the order only settles the logic):

1. the input loader (``load``), while an inference is loaded;
2. the activations of a MAC stage (``act``, ``pe`` lanes at the tag's ``oaddr`` and ``olane``),
   unless the stage writes the output RAM. For a stage with a fused max pool the activations go
   through a running maximum kept in a one-pooled-row buffer (indexed by the tag's ``pbaddr``),
   and only the last conv pixel of a pooled window writes the feature RAM;
3. the max-pool unit (``pool``, ``simd`` lanes).

The last MAC stage writes the output RAM instead (when ``plan.output_mode == "acc"``): its
activations, or, without an activation, its raw accumulators (from ``acc``).

The pool buffer is read with the tag of the array's output (``acc``), one cycle before the
threshold unit's registered output of the same beat meets it: no cycle is added. The block itself
is combinational; the memories it writes (and the pool buffer it reads) are its caller's.

Members
-------
acc : In(stream.Signature(StructLayout({"acc": ArrayLayout(signed(acc_width), pe), "tag": ...})))
    The MAC array's results, always accepted (``ready`` is high).
act : In(stream.Signature(StructLayout({"value": ArrayLayout(signed(act_width), pe), "tag": ...})))
    The threshold unit's activations, always accepted.
pool : In(stream.Signature(StructLayout({"value": ArrayLayout(signed(act_width), simd), "tag": ...})))
    The max-pool unit's results, always accepted.
load : In(stream.Signature(feature_write_layout(plan), always_ready=True))
    The input loader's writes (not when ``plan.im2col``: the loader writes the tap memories).
feature : In(WritePort.Signature(...))
    The feature RAM's write port (``V`` lanes of ``feat_width`` bits).
out : In(WritePort.Signature(...))
    The output RAM's write port (``pe`` lanes of ``out_width`` bits); only in ``"acc"`` mode.
pbuf_rd, pbuf_wr : In(ReadPort.Signature(...)), In(WritePort.Signature(...))
    The pool buffer's ports (``plan.pool_buffer_depth`` words of ``pe`` lanes of ``feat_width``
    bits; the read port transparent for the write port); only with a fused max pool.

Tags are :func:`hw.window.tag_layout` values, carried as plain bits.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.lib.wiring import In
from amaranth.utils import ceil_log2

from .loader import feature_write_layout
from .plan import Plan
from .window import tag_layout

__all__ = ["WriteBack"]


class WriteBack(wiring.Component):
    def __init__(self, plan: Plan):
        if not isinstance(plan, Plan):
            raise TypeError(f"plan must be a Plan, not {plan!r}")
        if not plan.stages:
            raise ValueError("the network has no layers to write back")
        self.plan = plan
        pe, simd, A, F = plan.pe, plan.simd, plan.act_width, plan.feat_width
        tag = unsigned(tag_layout(plan).size)
        members = {
            "acc": In(stream.Signature(data.StructLayout({
                "acc": data.ArrayLayout(signed(plan.acc_width), pe), "tag": tag}))),
            "act": In(stream.Signature(data.StructLayout({
                "value": data.ArrayLayout(signed(A), pe), "tag": tag}))),
            "pool": In(stream.Signature(data.StructLayout({
                "value": data.ArrayLayout(signed(A), simd), "tag": tag}))),
            "feature": In(WritePort.Signature(addr_width=ceil_log2(plan.feature_depth),
                                              shape=unsigned(plan.V * F), granularity=F)),
        }
        if not plan.im2col:
            members["load"] = In(stream.Signature(feature_write_layout(plan), always_ready=True))
        if plan.output_mode == "acc":
            members["out"] = In(WritePort.Signature(addr_width=ceil_log2(plan.out_depth),
                                                    shape=unsigned(pe * plan.out_width)))
        if plan.pool_buffer_depth:
            pbuf = dict(addr_width=ceil_log2(plan.pool_buffer_depth), shape=unsigned(pe * F))
            members["pbuf_rd"] = In(ReadPort.Signature(**pbuf))
            members["pbuf_wr"] = In(WritePort.Signature(**pbuf))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        pe, simd, V, A, F = plan.pe, plan.simd, plan.V, plan.act_width, plan.feat_width
        stages = plan.stages
        layout = tag_layout(plan)
        m.d.comb += [self.acc.ready.eq(1), self.act.ready.eq(1), self.pool.ready.eq(1)]
        acc_tag = layout(self.acc.payload.tag)
        act_tag = layout(self.act.payload.tag)
        pool_tag = layout(self.pool.payload.tag)
        to_out = Array(Const(s.to_output, 1) for s in stages)

        # fused max pool: running maximum of each pooled pixel in a one-pooled-row buffer
        fused = Array(Const(s.pool is not None, 1) for s in stages)[act_tag.stage]
        values = [self.act.payload.value[k] for k in range(pe)]
        if plan.pool_buffer_depth:
            pb_rd, pb_wr = self.pbuf_rd, self.pbuf_wr
            m.d.comb += pb_rd.addr.eq(acc_tag.pbaddr)
            old = data.View(data.ArrayLayout(signed(F), pe), pb_rd.data)
            pooled = [Signal(signed(A), name=f"pooled_{k}") for k in range(pe)]
            for k in range(pe):
                v = self.act.payload.value[k]
                m.d.comb += pooled[k].eq(Mux(~fused | act_tag.pfirst | (v > old[k]), v, old[k]))
            values = pooled
            m.d.comb += [
                pb_wr.addr.eq(act_tag.pbaddr),
                pb_wr.data.eq(Cat(p[:F] for p in pooled)),
                pb_wr.en.eq(self.act.valid & fused & ~act_tag.pskip & ~act_tag.plast),
            ]

        # the feature RAM's write port
        act_we = self.act.valid & ~to_out[act_tag.stage] & \
            (~fused | (~act_tag.pskip & act_tag.plast))
        act_vals = Cat(v[:F] for v in values)
        pool_vals = Cat(self.pool.payload.value[k][:F] for k in range(simd))
        writers = [] if plan.im2col else [(self.load.valid, self.load.payload.addr,
                                           self.load.payload.data, self.load.payload.en)]
        writers += [
            (act_we, act_tag.oaddr, Cat(act_vals for _ in range(V // pe)),
             ((1 << pe) - 1) << act_tag.olane),
            (self.pool.valid, pool_tag.oaddr, Cat(pool_vals for _ in range(V // simd)),
             ((1 << simd) - 1) << pool_tag.olane),
        ]
        for n, (we, addr, value, en) in enumerate(writers):
            with (m.If if n == 0 else m.Elif)(we):
                m.d.comb += [self.feature.addr.eq(addr), self.feature.data.eq(value),
                             self.feature.en.eq(en)]

        # the output RAM (the last MAC stage)
        if plan.output_mode == "acc":
            if stages[-1].levels >= 1:
                m.d.comb += [
                    self.out.addr.eq(act_tag.oaddr),
                    self.out.data.eq(Cat(self.act.payload.value[k] for k in range(pe))),
                    self.out.en.eq(self.act.valid & to_out[act_tag.stage]),
                ]
            else:
                OW = plan.out_width
                m.d.comb += [
                    self.out.addr.eq(acc_tag.oaddr),
                    self.out.data.eq(Cat(self.acc.payload.acc[k][:OW] for k in range(pe))),
                    self.out.en.eq(self.acc.valid & to_out[acc_tag.stage]),
                ]
        return m
