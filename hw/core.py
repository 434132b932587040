"""The port contract every core behind a host link or a simulator harness has.

``i``: raw input values, one per beat (C order); ``o``: the last stage's values, one per beat;
``start`` (one-cycle pulse while idle), ``busy``, ``done`` (one-cycle pulse after the last output
beat) and ``cycles`` (start to done of the last inference). ``hw.Accelerator``, the board's
stand-in core and the Verilator harness all rely on exactly these names.
"""

from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["core_signature"]


def core_signature(in_shape, out_shape) -> wiring.Signature:
    """The core signature with input payload ``in_shape`` and output payload ``out_shape``."""
    return wiring.Signature({
        "i": In(stream.Signature(in_shape)),
        "o": Out(stream.Signature(out_shape)),
        "start": In(1),
        "busy": Out(1),
        "done": Out(1),
        "cycles": Out(32),
    })
