"""Output streamer: the last stage's values, read from memory, one per beat in C order.

After ``start`` it reads the result map through a memory read port and sends its
``plan.n_out`` values on ``o``, channel by channel and, within a channel, pixel by pixel (the C
order of ``network.last_shape``), honouring back-pressure. Where it reads depends on
``plan.output_mode``:

* ``"acc"`` (the last stage is a MAC stage): the output RAM, ``pe`` lanes of ``out_width`` bits,
  output group ``g`` of pixel ``p`` in word ``g * pixels + p``;
* ``"feature"`` (the last stage is a pool stage): the feature RAM region the last stage wrote,
  ``V`` lanes of ``feat_width`` bits in the layout of :mod:`hw.plan` (sign-extended on ``o``).

A fetch is issued whenever the output register is free or being emptied, so with ``o.ready``
always high the values leave one per cycle, the first on the second cycle after ``start``.

Members
-------
start : In(1)
    Pulse: stream one inference's outputs (while ``busy`` is low).
busy : Out(1)
    High from the cycle after ``start`` through the cycle of ``done``.
done : Out(1)
    High on the one cycle the last beat is accepted.
o : Out(stream.Signature(signed(plan.out_width)))
    The values.
rd : In(ReadPort.Signature(...))
    The read port of the memory the values are in. ``en`` is low only while a fetched value waits
    for ``o.ready`` (so the port holds it); the address is meaningful while ``busy``.
"""

from amaranth import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .plan import Plan

__all__ = ["OutputStreamer"]


class OutputStreamer(wiring.Component):
    def __init__(self, plan: Plan):
        if not isinstance(plan, Plan):
            raise TypeError(f"plan must be a Plan, not {plan!r}")
        if not plan.stages:
            raise ValueError("the network has no layers to stream the output of")
        self.plan = plan
        if plan.output_mode == "acc":
            self.lanes, self.lane_width, depth = plan.pe, plan.out_width, plan.out_depth
        else:
            self.lanes, self.lane_width, depth = plan.V, plan.feat_width, plan.feature_depth
        super().__init__({
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "o": Out(stream.Signature(signed(plan.out_width))),
            "rd": In(ReadPort.Signature(addr_width=ceil_log2(depth),
                                        shape=unsigned(self.lanes * self.lane_width))),
        })

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        pe, V, W = plan.pe, plan.V, self.lane_width
        oc, oh, ow = plan.out_geom
        npix = oh * ow
        rd_c = Signal(range(oc + 1))               # channel
        rd_p = Signal(range(npix + 1))             # pixel in the channel
        rd_left = Signal(range(plan.n_out + 1))    # beats still to fetch
        sel = Signal(range(max(V, pe)))            # lane of the fetched word
        o_valid = Signal()
        busy = self.busy
        fetch = busy & (rd_left != 0) & (~o_valid | self.o.ready)
        m.d.comb += [self.rd.en.eq(fetch | ~busy),
                     self.done.eq(busy & (rd_left == 0) & (~o_valid | self.o.ready))]
        lanes = Array(self.rd.data[k * W:(k + 1) * W] for k in range(self.lanes))
        restart = [rd_left.eq(plan.n_out), rd_c.eq(0), rd_p.eq(0)]
        if plan.output_mode == "acc":
            # output group g = c // pe of pixel p in word g * npix + p, lane c % pe
            gbase = Signal(range(plan.out_depth + npix + 1))
            restart.append(gbase.eq(0))
            m.d.comb += [self.rd.addr.eq(gbase + rd_p), self.o.payload.eq(lanes[sel])]
            next_base = Mux((rd_c & (pe - 1)) == pe - 1, gbase + npix, gbase) if pe > 1 \
                else gbase + npix
            lane, step, at_end = rd_c & (pe - 1), [], [gbase.eq(next_base)]
        else:
            # channel c of pixel p in word out_base + p * GV + c // V, lane c % V
            gv = plan.stages[-1].out_words
            ptr = Signal(range(plan.feature_depth + npix * gv + 1))
            restart.append(ptr.eq(0))
            m.d.comb += self.rd.addr.eq(plan.out_base + ptr + (rd_c >> ceil_log2(V)))
            value = Signal(W)
            m.d.comb += [value.eq(lanes[sel]), self.o.payload.eq(value.as_signed())]
            lane, step, at_end = rd_c & (V - 1), [ptr.eq(ptr + gv)], [ptr.eq(0)]

        m.d.comb += self.o.valid.eq(o_valid)
        with m.If(self.o.ready & o_valid):
            m.d.sync += o_valid.eq(0)
        with m.If(fetch):
            m.d.sync += [o_valid.eq(1), rd_left.eq(rd_left - 1), sel.eq(lane)]
            with m.If(rd_p != npix - 1):
                m.d.sync += [rd_p.eq(rd_p + 1)] + step
            with m.Else():
                m.d.sync += [rd_p.eq(0), rd_c.eq(rd_c + 1)] + at_end

        with m.If(self.start):
            m.d.sync += [busy.eq(1)] + restart
        with m.Elif(self.done):
            m.d.sync += busy.eq(0)
        return m
