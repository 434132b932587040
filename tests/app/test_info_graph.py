"""The network's wiring in ``thresher info`` (the ``from`` / ``to`` columns and the skip
connections of a graph network) and as a picture: ``thresher info MODEL --html FILE`` and the demo's
report.html draw an SVG graph with one box per stage and one arrow per input a stage reads, checked
here by parsing the SVG, for chains and for residual networks."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter

from thresher.model_tools.ir import HostOp, IntegerNetwork
from thresher.model_tools.load import load_model
from thresher.model_tools.report import layer_rows
from thresher.sim.app import report_html
from thresher.sim.app.cli import main

from test_residual_cli import residual_net


def _with_host(net: IntegerNetwork) -> IntegerNetwork:
    """``net`` followed by a Softmax and an ArgMax on the host (two more boxes, two more arrows)."""
    shape = net.output_shape
    host = (HostOp("Softmax", shape, shape), HostOp("ArgMax", shape, (1,)))
    return IntegerNetwork(net.input, net.layers, net.output, shape, net.name, host)


def _graph(page: str) -> ET.Element:
    """The graph's SVG element of an HTML page (there is exactly one)."""
    found = re.findall(r'<svg class="graph".*?</svg>', page, re.S)
    assert len(found) == 1, f"{len(found)} graphs"
    return ET.fromstring(found[0])


def _expected_edges(net: IntegerNetwork) -> Counter:
    """(from row, to row) per input each stage reads: rows are the input, the layers, the host ops."""
    edges = Counter((j + 1, i + 1) for i in range(len(net.layers)) for j in net.sources(i))
    for k in range(len(net.host)):
        row = 1 + len(net.layers) + k
        edges[(row - 1, row)] += 1
    return edges


def _levels(net: IntegerNetwork) -> list[int]:
    """Longest path from the input, per row (what places a box, and makes an arrow a skip)."""
    level = [0]
    for i in range(len(net.layers)):
        level.append(1 + max(level[j + 1] for j in net.sources(i)))
    for _ in net.host:
        level.append(level[-1] + 1)
    return level


def _check_graph(svg: ET.Element, net: IntegerNetwork) -> None:
    nodes = svg.findall(".//g[@class='node']")
    names = ["input"] + [layer.name for layer in net.layers] + ["host"] * len(net.host)
    assert [int(n.get("data-row")) for n in nodes] == list(range(len(names)))
    assert all(len(n.findall("rect")) == 1 for n in nodes)        # one box per stage
    for node, name, row in zip(nodes, names, layer_rows(net)):
        text = "".join(node.itertext())
        assert name in text and row["kind"] in text and row["out"] in text
        assert f"{row['macs']:,} MACs" in text
    edges = [p for p in svg.iter("path") if (p.get("class") or "").startswith("edge")]
    got = Counter((int(p.get("data-from")), int(p.get("data-to"))) for p in edges)
    assert got == _expected_edges(net)                             # one arrow per edge
    assert all(p.get("marker-end") for p in edges)
    level = _levels(net)
    for p in edges:
        a, b = int(p.get("data-from")), int(p.get("data-to"))
        assert ("skip" in p.get("class").split()) == (level[b] - level[a] > 1), (a, b)


def _info_html(tmp_path, capsys, model) -> tuple[str, str]:
    path = tmp_path / "net.html"
    code = main(["info", str(model), "--html", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"wrote {path}" in out
    return out, path.read_text()


def test_chain_graph_and_table(tmp_path, capsys):
    net = load_model("default")
    out, page = _info_html(tmp_path, capsys, "default")
    svg = _graph(page)
    _check_graph(svg, net)
    assert not [p for p in svg.iter("path") if "skip" in (p.get("class") or "").split()]
    header = out.splitlines()[0].split()
    assert "from" in header and "to" not in header               # a chain's table is unchanged
    assert "skips and branches" not in out


def test_residual_graph_shows_the_skip(tmp_path, capsys):
    net = residual_net()
    net.save(tmp_path / "net")
    out, page = _info_html(tmp_path, capsys, tmp_path / "net")
    svg = _graph(page)
    _check_graph(svg, net)
    skips = [p for p in svg.iter("path") if "skip" in (p.get("class") or "").split()]
    assert skips, "the residual connection is drawn as a skip"
    # the info table: who feeds whom, by name, both ways
    header = out.splitlines()[0]
    assert header.split()[header.split().index("from") + 1] == "to"
    start = {col: header.index(f" {col} ") + 1 for col in ("from", "to", "in")}

    def cell(line, col, end):
        return line[start[col]:start[end]].strip()

    names = {-1: "input", **{i: layer.name for i, layer in enumerate(net.layers)}}
    readers = {j: [names[i] for i in range(len(net.layers)) if j in net.sources(i)] for j in names}
    for j, name in names.items():
        line = next(l for l in out.splitlines() if l.split()[:1] == [name])
        assert cell(line, "to", "in") == (", ".join(readers[j]) or "-")
        assert cell(line, "from", "to") == (", ".join(names[k] for k in net.sources(j))
                                            if j >= 0 else "-")
    wiring = [f"{names[j]} -> {names[i]}" for i in range(len(net.layers)) for j in net.sources(i)
              if j != i - 1]
    assert wiring and f"skips and branches: {', '.join(wiring)}" in out


def test_host_ops_are_boxes_after_the_last_layer(tmp_path, capsys):
    net = _with_host(residual_net())
    _check_graph(_graph(report_html.render_network(net)), net)


def test_html_goes_to_a_checked_path_before_any_work(tmp_path, capsys):
    code = main(["info", "default", "--html", str(tmp_path / "missing" / "net.html")])
    out, err = capsys.readouterr()
    assert code == 2 and "no such directory" in err and out == ""


def _demo_report(net) -> dict:
    """The parts of the demo's report.json that report.html needs, for ``net``."""
    return {"model": net.name, "test_images": 3, "accuracy": {"float": 1.0, "integer": 1.0},
            "confusion": [[1, 0], [0, 2]], "layers": layer_rows(net)}


def test_demo_report_page_draws_the_graph():
    for net in (residual_net(), _with_host(residual_net())):
        _check_graph(_graph(report_html.render(_demo_report(net))), net)


def test_demo_report_written_before_the_wiring_was_recorded_is_a_chain():
    """report.json files from before ``source_rows`` existed still render: as a chain."""
    net = residual_net()
    report = _demo_report(net)
    for row in report["layers"]:
        del row["source_rows"]
    svg = _graph(report_html.render(report))
    edges = [(int(p.get("data-from")), int(p.get("data-to"))) for p in svg.iter("path")
             if (p.get("class") or "").startswith("edge")]
    assert edges == [(i, i + 1) for i in range(len(report["layers"]) - 1)]
    assert [int(n.get("data-row")) for n in svg.findall(".//g[@class='node']")] == \
        list(range(len(report["layers"])))
