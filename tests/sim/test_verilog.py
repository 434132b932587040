"""The Verilog that Verilator gets (sim/verilog.py): stable text, and Yosys' constant
``always @*`` blocks made ``always_comb``."""

from thresher.sim.verilog import to_verilog, verilator_source
from verilator_standin import RunningSum


def test_verilog_is_deterministic_and_has_no_source_locations():
    """The cache key is the Verilog: same design, same text; another design, another text."""
    v1 = to_verilog(RunningSum(n=5, hang_on=42))
    v2 = to_verilog(RunningSum(n=5, hang_on=43))
    assert v1 != v2 and v1 == to_verilog(RunningSum(n=5, hang_on=42))
    assert "(* src =" not in v1


def test_constant_always_star_blocks_become_always_comb():
    """Yosys' ``always @* x[5] = 1'h1;`` never runs in Verilator (ALWNEVER): rewritten."""
    text = ("module t(output reg [7:0] x, input [1:0] a);\n"
            "  always @*\n    x[5] = 1'h1;\n"
            "  always @*\n    x[3:2] = 2'sh3;\n"
            "  always @*\n    x[1:0] = a;\n"
            "  always @* begin\n    x[4] = 1'h0;\n  end\n"
            "endmodule\n")
    fixed = verilator_source(text)
    assert fixed.count("always_comb\n    x[5] = 1'h1;") == 1
    assert fixed.count("always_comb\n    x[3:2] = 2'sh3;") == 1
    assert "always @*\n    x[1:0] = a;" in fixed          # reads a variable: left alone
    assert "always @* begin" in fixed
