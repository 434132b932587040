"""Verilator's lint on generated Verilog (sim/lint.py, sim/harness/lint_waivers.vlt): clean with
the documented waivers, and still reporting what the waivers do not cover."""

import pytest

from thresher.sim.lint import LINT_WAIVERS, generated_waivers, lint
from verilator_standin import DeadRegister, RunningSum


def test_lint_clean_with_documented_waivers():
    result = lint(RunningSum(n=5, hang_on=42))
    assert result.ok, result.output
    assert not lint(RunningSum(n=5, hang_on=42), waivers=None).ok   # the waivers do matter
    waivers = LINT_WAIVERS.read_text()
    for line in waivers.splitlines():       # every waiver comes with its reason just above it
        if line.startswith("lint_off"):
            before = waivers[:waivers.index(line)].rstrip().splitlines()[-1]
            assert before.startswith("//") or before.startswith("lint_off"), line


def test_lint_still_reports_unused_registers():
    result = lint(DeadRegister())
    assert not result.ok
    assert any("UNUSEDSIGNAL" in w and "forgotten" in w for w in result.warnings), result.output


def test_generated_waivers():
    """Alias wires (assigned, not ports, not Yosys' $ names) and zero-width nets, per module."""
    text = ("module a(input x, output y);\n"
            "  wire alias;\n"
            "  wire \\$1 ;\n"
            "  wire [-1:0] empty;\n"
            "  assign alias = x;\n"
            "  assign \\$1  = x;\n"
            "  assign y = alias;\n"
            "endmodule\n"
            "module b(input x);\n"
            "  wire alias;\n"
            "endmodule\n")
    assert generated_waivers(text) == [(2, "UNUSEDSIGNAL", "alias"), (4, None, "empty")]


@pytest.mark.slow
def test_lint_clean_on_tfc():
    """The default model's accelerator (lint only: no build)."""
    from paths import TFC
    from thresher import model_tools
    from thresher.hw.accelerator import Accelerator
    net = model_tools.load_model(str(TFC))
    result = lint(Accelerator(net, pe=8, simd=8), name="thresher_accelerator")
    assert result.ok, result.output
