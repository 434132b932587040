"""Run the accelerator in Amaranth's simulator: what ``thresher run --engine rtl`` calls.

``run_pysim(network, x, pe, simd)`` builds :class:`hw.accelerator.Accelerator` for ``network``,
streams every sample of the integer batch ``x`` through its ports exactly as a host would (input
beats, ``start``, output beats, ``done``) and returns the outputs, shaped like
``golden.run_integer(network, x)``, with the cycle counter read after each inference.
"""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from ..model_tools import golden
from ..model_tools.errors import ThresherError

from ..hw.accelerator import Accelerator
from .streamsim import stream_put

__all__ = ["run_pysim", "drive", "host_input"]


async def drive(ctx, dut, samples, outputs, cycles):
    """Testbench body: run every sample (a flat int sequence) through ``dut``; append results."""
    for sample in samples:
        for v in sample:
            await stream_put(ctx, dut.i, int(v))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        out = []
        ctx.set(dut.o.ready, 1)
        while len(out) < dut.n_out:
            await ctx.tick()
            if ctx.get(dut.o.valid):
                out.append(ctx.get(dut.o.payload))
        # the remaining cycles until done
        while not ctx.get(dut.done):
            await ctx.tick()
        cycles.append(ctx.get(dut.cycles))
        outputs.append(out)


def host_input(network, x, *, input_range=(0, 255), input_mode="raw") -> np.ndarray:
    """The beats a host streams for the batch ``x`` (B, *network.input_shape): (B, n_in) int64.

    ``"raw"``: ``x`` must hold integers in ``input_range`` (quantized by the hardware).
    ``"levels"``: any raw input (floats included), quantized here by ``golden.quantize_input``.
    """
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[1:] != tuple(network.input_shape):
        raise ThresherError(f"input has shape {x.shape}; the model expects (batch, "
                            f"{', '.join(map(str, network.input_shape))})")
    if input_mode == "levels":
        return golden.quantize_input(network, x).reshape(x.shape[0], -1).astype(np.int64)
    if input_mode != "raw":
        raise ThresherError(f"input_mode must be 'raw' or 'levels', not {input_mode!r}")
    if x.dtype.kind not in "iub" and not np.array_equal(x, np.round(x)):
        raise ThresherError(f"the hardware takes integer raw inputs in {input_range[0]}.."
                            f"{input_range[1]} (e.g. 0..255 pixels; input_mode='levels' quantizes "
                            "other inputs on the host)")
    x = x.astype(np.int64)
    lo, hi = input_range
    if x.size and (x.min() < lo or x.max() > hi):
        raise ThresherError(f"input values {x.min()}..{x.max()} outside input_range {input_range}")
    return x.reshape(x.shape[0], -1)


def run_pysim(network, x, pe: int = 8, simd: int = 8, *, input_range=(0, 255), fuse_pools=True,
              input_mode="raw", input_stage="auto", vcd=None, dsp_lanes=None):
    """Simulate the accelerator on the batch ``x`` (B, *network.input_shape).

    ``input_mode="raw"`` (default): ``x`` holds raw integers in ``input_range``, quantized by the
    hardware. ``"levels"``: ``x`` is any raw input (e.g. floats in [0, 1]); the host quantizes it
    with ``golden.quantize_input`` and streams the levels (see :func:`host_input`).

    Returns ``(outputs, cycles)``: int64 array (B, *network.last_shape) and the list of per-inference
    cycle counts (``start`` to ``done``, input streamed before ``start``).
    """
    beats = host_input(network, x, input_range=input_range, input_mode=input_mode)
    options = {} if dsp_lanes is None else {"dsp_lanes": dsp_lanes}
    dut = Accelerator(network, pe=pe, simd=simd, input_range=input_range, fuse_pools=fuse_pools,
                      input_mode=input_mode, input_stage=input_stage, **options)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    outputs, cycles = [], []

    async def testbench(ctx):
        await drive(ctx, dut, beats, outputs, cycles)

    sim.add_testbench(testbench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    out = np.array(outputs, dtype=np.int64).reshape((beats.shape[0],) + tuple(network.last_shape))
    return out, cycles
