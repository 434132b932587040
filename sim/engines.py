"""The engines behind ``thresher run --engine``: one function, one output convention.

Every engine returns the model's float32 output (what the ONNX model itself outputs) computed from
the last integer stage, so the files they write are interchangeable and comparable with
``array_equal``. The hardware engines take raw integer inputs (e.g. 0..255 pixels); the host
dequantizes the raw accumulators they return and applies the network's host ops (Softmax, ArgMax,
TopK, ... : ``golden.finish``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..model_tools import golden
from ..model_tools.errors import ThresherError

__all__ = ["ENGINES", "EngineResult", "run_engine"]

ENGINES = ("golden", "rtl", "pysim", "board")


@dataclass
class EngineResult:
    outputs: np.ndarray                     # what the model returns (B, *result_shape): float32,
                                            # int64 after ArgMax / TopK indices (host ops applied)
    integers: np.ndarray                    # the last stage's integers (B, *last_shape)
    engine: str                             # the engine that actually ran
    cycles: np.ndarray | None = None        # per inference, for the hardware engines
    notes: list[str] = field(default_factory=list)


def _input_mode(x: np.ndarray, input_range) -> str:
    """'raw' when the inputs are integers the hardware's own input quantizer takes (e.g. 8-bit
    pixels); otherwise 'levels': the host applies the input quantizer (exact float32 thresholds)
    and the hardware gets the quantized integers."""
    lo, hi = input_range
    raw = np.array_equal(x, np.round(x)) and x.min() >= lo and x.max() <= hi
    return "raw" if raw else "levels"


def run_engine(net, x: np.ndarray, engine: str = "golden", *, pe: int = 8, simd: int = 8,
               trace=None, input_range=(0, 255), port=None, baud=None,
               dsp_lanes=None, built=None) -> EngineResult:
    """Run the raw input batch ``x`` on ``engine``; see the module docstring. The board engine
    talks to ``port`` at ``baud`` (the build's rate, :func:`sim.transport.board_baud`), or to a
    simulated board (``port`` ``"sim"`` / ``"verilator"``), the design of the build ``built``
    describes when given; the simulators build ``Accelerator(pe, simd, dsp_lanes)`` (a build's:
    see :func:`hw.build.built_configuration`)."""
    if engine not in ENGINES:
        raise ThresherError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if engine == "golden":
        if trace:
            raise ThresherError("--trace needs a hardware engine (rtl or pysim)")
        ints = golden.run_integer(net, x)
        return EngineResult(golden.finish(net, ints), ints, "golden")
    x = golden.check_input(net, x)          # shape and NaN checks, same messages as golden
    mode = _input_mode(x, input_range)
    notes = [] if mode == "raw" else [
        f"inputs are not integers in {input_range[0]}..{input_range[1]}: the host applies the "
        "input quantizer and the hardware takes the quantized values"]
    if engine == "board":
        if mode != "raw":
            raise ThresherError(f"the board takes raw integer inputs in {input_range[0]}.."
                                f"{input_range[1]} (like 8-bit pixels)")
        from .host import run_board
        ints, cycles = run_board(net, x.astype(np.int64), port, return_cycles=True, baud=baud,
                                 built=built)
        return EngineResult(golden.finish(net, ints), np.asarray(ints), f"board ({port})",
                            np.asarray(cycles))
    if engine == "rtl":
        from .toolchain import VerilatorError, unavailable_reason
        missing = unavailable_reason()
        if missing is None:
            from .verilator import run_verilator
            try:
                ints, cycles = run_verilator(net, x, pe, simd, input_range=input_range,
                                             trace=trace, input_mode=mode, dsp_lanes=dsp_lanes)
                return EngineResult(golden.finish(net, ints), ints, "rtl (verilator)",
                                    np.asarray(cycles), notes)
            except VerilatorError as e:
                first = str(e).splitlines()[0]
                notes.append(f"{first}; falling back to Amaranth's simulator")
        else:
            notes.append(f"{missing}: falling back to Amaranth's simulator")
    from .run import run_pysim
    parts = []
    if trace:   # the waveform of the first input only, like the Verilator engine
        parts.append(run_pysim(net, x[:1], pe, simd, input_range=input_range, input_mode=mode,
                               vcd=str(trace), dsp_lanes=dsp_lanes))
        x = x[1:]
    if len(x):
        parts.append(run_pysim(net, x, pe, simd, input_range=input_range, input_mode=mode,
                               dsp_lanes=dsp_lanes))
    ints = np.concatenate([np.asarray(p[0]) for p in parts])
    cycles = np.concatenate([np.asarray(p[1]) for p in parts])
    return EngineResult(golden.finish(net, ints), ints, "pysim", cycles, notes)
