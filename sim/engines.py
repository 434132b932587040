"""The engines behind ``thresher run --engine``: one function, one output convention.

Every engine returns the model's float32 output (what the ONNX model itself outputs) computed from
the last integer stage, so the files they write are interchangeable and comparable with
``array_equal``. The hardware engines take raw integer inputs (e.g. 0..255 pixels); the host
dequantizes the raw accumulators they return.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from model_tools import golden
from model_tools.errors import ThresherError

__all__ = ["ENGINES", "EngineResult", "run_engine"]

ENGINES = ("golden", "rtl", "pysim", "board")


@dataclass
class EngineResult:
    outputs: np.ndarray                     # float32 (B, *output_shape)
    integers: np.ndarray                    # the last stage's integers (B, *last_shape)
    engine: str                             # the engine that actually ran
    cycles: np.ndarray | None = None        # per inference, for the hardware engines
    notes: list[str] = field(default_factory=list)


def _raw_integers(x: np.ndarray, input_range) -> np.ndarray:
    lo, hi = input_range
    if not np.array_equal(x, np.round(x)) or x.min() < lo or x.max() > hi:
        raise ThresherError(f"the hardware engines take raw integer inputs in {lo}..{hi} (like "
                            f"8-bit pixels); this input holds values {x.min():g}..{x.max():g}"
                            + ("" if np.array_equal(x, np.round(x)) else " that are not integers"))
    return x.astype(np.int64)


def run_engine(net, x: np.ndarray, engine: str = "golden", *, pe: int = 8, simd: int = 8,
               trace=None, input_range=(0, 255), port=None) -> EngineResult:
    """Run the raw input batch ``x`` on ``engine``; see the module docstring."""
    if engine not in ENGINES:
        raise ThresherError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if engine == "golden":
        if trace:
            raise ThresherError("--trace needs a hardware engine (rtl or pysim)")
        ints = golden.run_integer(net, x)
        return EngineResult(golden.dequantize(net, ints), ints, "golden")
    golden._check_input(net, x)              # shape and NaN checks, same messages as golden
    raw = _raw_integers(np.asarray(x, dtype=np.float64), input_range)
    notes = []
    if engine == "board":
        from .host import run_board
        ints, cycles = run_board(net, raw, port, return_cycles=True)
        return EngineResult(golden.dequantize(net, ints), np.asarray(ints), f"board ({port})",
                            np.asarray(cycles))
    if engine == "rtl":
        from . import verilator
        if verilator.available():
            try:
                ints, cycles = verilator.run_verilator(net, raw, pe, simd, input_range=input_range,
                                                       trace=trace)
                return EngineResult(golden.dequantize(net, ints), ints, "rtl (verilator)",
                                    np.asarray(cycles))
            except verilator.VerilatorError as e:
                first = str(e).splitlines()[0]
                notes.append(f"{first}; falling back to Amaranth's simulator")
        else:
            notes.append("verilator-cli not found: falling back to Amaranth's simulator")
    from hw.run import run_pysim
    parts = []
    if trace:   # the waveform of the first input only, like the Verilator engine
        parts.append(run_pysim(net, raw[:1], pe, simd, input_range=input_range, vcd=str(trace)))
        raw = raw[1:]
    if len(raw):
        parts.append(run_pysim(net, raw, pe, simd, input_range=input_range))
    ints = np.concatenate([np.asarray(p[0]) for p in parts])
    cycles = np.concatenate([np.asarray(p[1]) for p in parts])
    return EngineResult(golden.dequantize(net, ints), ints, "pysim", cycles, notes)
