"""``report.html``: the demo's report as a page with plots (inline SVG, no plotting library).

Pictures a person would rather look at than read: the network as a graph (a box per stage, an
arrow per input it reads, skip connections drawn aside), cycles per layer against the MAC bound,
resource use against the board, and the confusion matrix; plus the headline numbers and the
per-layer table. :func:`render_network` is the graph and table page for any model (``thresher
info MODEL --html FILE``).
"""

from __future__ import annotations

import html
from pathlib import Path

from ...model_tools.files import atomic_write_bytes

__all__ = ["render", "write", "render_network", "write_network", "network_graph"]

_BLUE, _GREY, _ORANGE, _RED = "#2f6db5", "#b9c2cc", "#e08a1e", "#c0392b"


def _esc(x) -> str:
    return html.escape(str(x))


def _row_sources(rows: list[dict]) -> list[list[int]]:
    """Which rows each row reads (``source_rows`` of :func:`model_tools.report.layer_rows`); a
    report written before rows carried it is a chain: each row reads the one before."""
    return [list(r["source_rows"]) if "source_rows" in r else ([i - 1] if i else [])
            for i, r in enumerate(rows)]


def network_graph(rows: list[dict]) -> str:
    """The network as an SVG graph: one box per row of ``layer_rows`` (name, kind, output shape,
    MACs), one arrow per input a stage reads. Stages are placed top to bottom by their longest
    path from the input, side by side when equally deep (a downsampling shortcut beside its
    branch); an arrow that skips levels (a residual connection) is drawn as an orange curve to the
    right, so it does not cross the boxes it passes."""
    sources = _row_sources(rows)
    level = []
    for i, src in enumerate(sources):
        level.append(1 + max((level[j] for j in src), default=-1))
    by_level: dict[int, list[int]] = {}
    for i, lv in enumerate(level):
        by_level.setdefault(lv, []).append(i)
    box_w, box_h, gap_x, gap_y, margin = 240, 50, 30, 34, 16
    widest = max(len(v) for v in by_level.values())
    skips = sum(level[i] - level[j] > 1 for i, src in enumerate(sources) for j in src)
    lane = 16                                   # horizontal room per skip curve
    inner = widest * box_w + (widest - 1) * gap_x
    width = margin * 2 + inner + (lane * (skips + 1) if skips else 0)
    height = margin * 2 + len(by_level) * box_h + (len(by_level) - 1) * gap_y
    pos = {}
    for lv, members in by_level.items():
        row_w = len(members) * box_w + (len(members) - 1) * gap_x
        x0 = margin + (inner - row_w) / 2
        for k, i in enumerate(members):
            pos[i] = (x0 + k * (box_w + gap_x), margin + lv * (box_h + gap_y))
    out = [f'<svg class="graph" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
           f'height="{height:.0f}" role="img" aria-label="network graph" font-size="12">',
           '<defs><marker id="thresher-arrow" viewBox="0 0 10 10" refX="10" refY="5" '
           'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
           '<path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>']
    edges = []
    skip_no = 0
    right = margin + inner
    for i, src in enumerate(sources):
        tx, ty = pos[i]
        for j in src:
            sx, sy = pos[j]
            name = f'{_esc(rows[j]["layer"])} -&gt; {_esc(rows[i]["layer"])}'
            if level[i] - level[j] > 1:         # a skip: out to the right, down, back in
                skip_no += 1
                x = right + lane * skip_no
                d = (f"M {sx + box_w:.1f} {sy + box_h / 2:.1f} C {x:.1f} {sy + box_h / 2:.1f} "
                     f"{x:.1f} {ty + box_h / 2:.1f} {tx + box_w:.1f} {ty + box_h / 2:.1f}")
                colour, cls = _ORANGE, "edge skip"
            else:
                d = (f"M {sx + box_w / 2:.1f} {sy + box_h:.1f} L {tx + box_w / 2:.1f} {ty:.1f}")
                colour, cls = "#555", "edge"
            edges.append(f'<path class="{cls}" data-from="{j}" data-to="{i}" d="{d}" fill="none" '
                         f'stroke="{colour}" stroke-width="1.5" marker-end="url(#thresher-arrow)">'
                         f'<title>{name}</title></path>')
    out += edges
    for i, r in enumerate(rows):
        x, y = pos[i]
        fill = "#eef3fa" if r.get("macs") else "#f6f6f6"
        macs = f'{r["macs"]:,} MACs' if isinstance(r.get("macs"), int) else ""
        params = f', {r["params"]:,} params' if r.get("params") else ""
        out.append(f'<g class="node" data-row="{i}"><rect x="{x:.1f}" y="{y:.1f}" width="{box_w}" '
                   f'height="{box_h}" rx="5" fill="{fill}" stroke="{_BLUE}"/>'
                   f'<text x="{x + 8:.1f}" y="{y + 18:.1f}" font-weight="600">'
                   f'{_esc(r["layer"])}<tspan font-weight="400" fill="#444"> {_esc(r["kind"])}'
                   f'</tspan></text>'
                   f'<text x="{x + 8:.1f}" y="{y + 37:.1f}" fill="#555" font-size="11">'
                   f'{_esc(r["out"])}  {macs}{params}</text></g>')
    out.append("</svg>")
    return "".join(out)


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


_STYLE = """<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; min-width: 200px; }
.k { color: #666; font-size: 12px; } .v { font-size: 18px; font-weight: 600; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border-bottom: 1px solid #eee; padding: 3px 10px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.row { display: flex; gap: 30px; flex-wrap: wrap; align-items: flex-start; }
</style>"""

_LAYER_COLUMNS = [("layer", "layer"), ("kind", "kind"), ("from", "from"), ("in", "in"),
                  ("out", "out"), ("w_bits", "weights"), ("a_bits", "act out"), ("macs", "MACs"),
                  ("params", "params"), ("acc", "accumulator"), ("thresholds", "thresholds")]


def _cards(headline) -> str:
    return "".join(f'<div class="card"><div class="k">{_esc(k)}</div><div class="v">{_esc(v)}'
                   f'</div></div>' for k, v in headline)


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
    cards = _cards(headline)
    layer_cols = _LAYER_COLUMNS
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>thresher report: {_esc(report['model'])}</title>
{_STYLE}</head><body>
<h1>thresher: {_esc(report['model'])}</h1>
<div class="cards">{cards}</div>
<h2>Network</h2>
{network_graph(report['layers'])}
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


def render_network(net) -> str:
    """The page for any integer network: headline numbers, the graph and the per-layer table (what
    ``thresher info`` prints), without hardware or accuracy results."""
    from ...model_tools.report import layer_rows, network_summary
    rows, summary = layer_rows(net), network_summary(net)
    shape = "x".join(map(str, net.input_shape)) + " -> " + "x".join(map(str, net.result_shape))
    headline = [("input -> output", shape), ("layers", f"{summary['layers']:,}"),
                ("MACs per inference", f"{summary['macs']:,}"),
                ("weights", f"{summary['params']:,} ({summary['weight_bits_total'] / 1024:.1f} kbit)"),
                ("widest accumulator", f"{summary['max_acc_bits']} bits"),
                ("wiring", "chain" if net.is_chain else "graph (skip connections in orange)")]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>thresher: {_esc(net.name)}</title>
{_STYLE}</head><body>
<h1>thresher: {_esc(net.name)}</h1>
<div class="cards">{_cards(headline)}</div>
<h2>Network</h2>
{network_graph(rows)}
<h2>Layers</h2>
{_table(rows, _LAYER_COLUMNS)}
</body></html>
"""


def write_network(net, path) -> Path:
    """Write :func:`render_network` of ``net`` to ``path``."""
    path = Path(path)
    atomic_write_bytes(path, render_network(net).encode())
    return path
