"""``report.html``: the demo's report as a page with plots (inline SVG, no plotting library).

Three pictures a person would rather look at than read: cycles per layer against the MAC bound,
resource use against the board, and the confusion matrix; plus the headline numbers and the
per-layer table.
"""

from __future__ import annotations

import html
from pathlib import Path

from ...model_tools.files import atomic_write_bytes

__all__ = ["render", "write"]

_BLUE, _GREY, _ORANGE, _RED = "#2f6db5", "#b9c2cc", "#e08a1e", "#c0392b"


def _esc(x) -> str:
    return html.escape(str(x))


def _bars_per_layer(layers: list[dict]) -> str:
    """Grouped bars: the MAC bound and the measured/predicted cycles of each layer."""
    if not layers:
        return "<p>(no hardware stages)</p>"
    width, height, left, bottom = 640, 260, 60, 60
    top = max(max(l["cycles"], l["bound"]) for l in layers) or 1
    slot = (width - left - 10) / len(layers)
    bar = min(28.0, slot / 2.6)
    out = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="cycles per layer">']
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        y = height - bottom - frac * (height - bottom - 20)
        out.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
                   f'{int(top * frac):,}</text>')
    for i, l in enumerate(layers):
        x0 = left + i * slot + (slot - 2 * bar) / 2
        for j, (key, colour) in enumerate((("bound", _GREY), ("cycles", _BLUE))):
            h = l[key] / top * (height - bottom - 20)
            out.append(f'<rect x="{x0 + j * bar:.1f}" y="{height - bottom - h:.1f}" width="{bar - 2:.1f}" '
                       f'height="{h:.1f}" fill="{colour}"><title>{_esc(l["name"])}: {key} '
                       f'{l[key]:,}</title></rect>')
        out.append(f'<text x="{x0 + bar:.1f}" y="{height - bottom + 14}" text-anchor="middle" '
                   f'font-size="11">{_esc(l["name"])}</text>')
        out.append(f'<text x="{x0 + bar:.1f}" y="{height - bottom + 28}" text-anchor="middle" '
                   f'font-size="10" fill="#555">{l["macs"]:,} MACs</text>')
    out.append(f'<rect x="{left}" y="{height - 18}" width="10" height="10" fill="{_GREY}"/>'
               f'<text x="{left + 14}" y="{height - 9}" font-size="11">MAC bound '
               f'ceil(MACs / (PE x SIMD))</text>'
               f'<rect x="{left + 230}" y="{height - 18}" width="10" height="10" fill="{_BLUE}"/>'
               f'<text x="{left + 244}" y="{height - 9}" font-size="11">cycles</text></svg>')
    return "".join(out)


def _resource_bars(utilization: dict) -> str:
    """Horizontal bars: used / available for each resource nextpnr reports (used ones first)."""
    main = ("ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_DSP", "ICESTORM_SPRAM", "TRELLIS_COMB",
            "TRELLIS_FF", "DP16KD", "MULT18X18D")
    rows = [(k, v["used"], v["available"]) for k, v in utilization.items()
            if v.get("available") and (v["used"] or k in main)]
    rows.sort(key=lambda r: -r[1] / r[2])
    if not rows:
        return "<p>(no build)</p>"
    width, row_h, left = 640, 24, 150
    height = row_h * len(rows) + 10
    out = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="resource use">']
    for i, (name, used, avail) in enumerate(rows):
        y = 5 + i * row_h
        frac = used / avail
        colour = _RED if frac > 0.95 else _ORANGE if frac > 0.8 else _BLUE
        span = width - left - 160
        out.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" font-size="12">'
                   f'{_esc(name)}</text>')
        out.append(f'<rect x="{left}" y="{y + 3}" width="{span}" height="{row_h - 8}" fill="#eee"/>')
        out.append(f'<rect x="{left}" y="{y + 3}" width="{span * min(frac, 1):.1f}" '
                   f'height="{row_h - 8}" fill="{colour}"/>')
        out.append(f'<text x="{left + span + 8}" y="{y + 15}" font-size="12">{used:,} / {avail:,} '
                   f'({frac:.0%})</text>')
    out.append("</svg>")
    return "".join(out)


def _confusion(matrix: list[list[int]]) -> str:
    n = len(matrix)
    cell, left, top = 34, 40, 42
    size = left + n * cell + 10
    peak = max(max(row) for row in matrix) or 1
    out = [f'<svg viewBox="0 0 {size} {size + 10}" width="{size}" height="{size + 10}" role="img" '
           f'aria-label="confusion matrix">',
           f'<text x="{left + n * cell / 2}" y="14" text-anchor="middle" font-size="12">predicted'
           f'</text>']
    for i, row in enumerate(matrix):
        out.append(f'<text x="{left - 8}" y="{top + i * cell + cell / 2 + 4}" text-anchor="end" '
                   f'font-size="12">{i}</text>')
        out.append(f'<text x="{left + i * cell + cell / 2}" y="{top - 4}" text-anchor="middle" '
                   f'font-size="12">{i}</text>')
        for j, v in enumerate(row):
            shade = v / peak
            fill = f"rgba(47,109,181,{0.08 + 0.92 * shade:.2f})" if i == j else \
                (f"rgba(192,57,43,{0.25 + 0.75 * shade:.2f})" if v else "#fafafa")
            ink = "#fff" if shade > 0.5 else "#222"
            out.append(f'<rect x="{left + j * cell}" y="{top + i * cell}" width="{cell - 1}" '
                       f'height="{cell - 1}" fill="{fill}"><title>true {i}, predicted {j}: {v}'
                       f'</title></rect>')
            if v:
                out.append(f'<text x="{left + j * cell + cell / 2}" y="{top + i * cell + cell / 2 + 4}" '
                           f'text-anchor="middle" font-size="11" fill="{ink}">{v}</text>')
    out.append("</svg>")
    return "".join(out)


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{_esc(t)}</th>" for _, t in columns)
    body = "".join("<tr>" + "".join(
        f'<td class="{"num" if isinstance(r.get(k), (int, float)) else ""}">'
        f'{f"{r[k]:,}" if isinstance(r.get(k), int) else _esc(r.get(k, ""))}</td>'
        for k, _ in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(report: dict) -> str:
    """The page for a demo report (the dict written to report.json)."""
    acc = report["accuracy"]
    build = report.get("build") or {}
    headline = [
        ("test images", f"{report['test_images']:,}"),
        ("accuracy: float / integer / RTL",
         " / ".join(f"{acc[k]:.2%}" if acc.get(k) is not None else "-"
                    for k in ("float", "integer", "rtl"))),
        ("RTL class = float class", f"{report.get('agreement_rtl_vs_float', 0):.2%}"
         if report.get("agreement_rtl_vs_float") is not None else "-"),
        ("cycles per inference (MAC bound)",
         f"{report.get('cycles_per_inference', 0):,} ({report.get('mac_bound_cycles', 0):,})"
         if report.get("cycles_per_inference") else "-"),
        ("board / Fmax", f"{report.get('board', '-')} / "
         + (f"{report['fmax_mhz']:.1f} MHz" if report.get("fmax_mhz") else "-")),
        ("inferences per second", f"{build['inferences_per_s']:,.0f}"
         if build.get("inferences_per_s") else "-"),
    ]
    cards = "".join(f'<div class="card"><div class="k">{_esc(k)}</div><div class="v">{_esc(v)}</div>'
                    f'</div>' for k, v in headline)
    layer_cols = [("layer", "layer"), ("kind", "kind"), ("in", "in"), ("out", "out"),
                  ("w_bits", "weights"), ("a_bits", "act out"), ("macs", "MACs"),
                  ("acc", "accumulator"), ("thresholds", "thresholds")]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>thresher report: {_esc(report['model'])}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 2em; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 10px; }}
.card {{ border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; min-width: 200px; }}
.k {{ color: #666; font-size: 12px; }} .v {{ font-size: 18px; font-weight: 600; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ border-bottom: 1px solid #eee; padding: 3px 10px; text-align: left; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.row {{ display: flex; gap: 30px; flex-wrap: wrap; align-items: flex-start; }}
</style></head><body>
<h1>thresher: {_esc(report['model'])}</h1>
<div class="cards">{cards}</div>
<h2>Cycles per layer against the MAC bound (PE={_esc(build.get('pe', '-'))},
SIMD={_esc(build.get('simd', '-'))})</h2>
{_bars_per_layer(report.get('layer_cycles', []))}
<div class="row">
<div><h2>Resources on {_esc(report.get('board', '-'))} ({_esc(build.get('device', ''))})</h2>
{_resource_bars(build.get('utilization', {}))}</div>
<div><h2>Confusion matrix (integer network, true label by row)</h2>
{_confusion(report['confusion'])}</div>
</div>
<h2>Layers</h2>
{_table(report['layers'], layer_cols)}
</body></html>
"""


def write(report: dict, path) -> Path:
    path = Path(path)
    atomic_write_bytes(path, render(report).encode())
    return path
