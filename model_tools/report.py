"""Per-layer summaries of an integer network, as rows of text for tables and as JSON-ready dicts."""

from __future__ import annotations

from .ir import Conv, Dense, IntegerNetwork, bits_for_range

__all__ = ["layer_rows", "format_table", "network_summary", "table_columns", "skip_connections"]


def _shape(s) -> str:
    return "x".join(str(d) for d in s)


def _bits(lo, hi) -> str:
    bits, signed = bits_for_range(lo, hi)
    return f"{'s' if signed else 'u'}{bits}"


def _source_names(net: IntegerNetwork) -> list[str]:
    """A readable name per stage index (``-1``: ``input``): the layer's name, with ``#index``
    added where two stages share a name, so the ``from`` column never points at two stages."""
    names = [layer.name for layer in net.layers]
    seen = {}
    for n in ["input"] + names:
        seen[n] = seen.get(n, 0) + 1
    return [n if seen[n] == 1 else f"{n}#{i}" for i, n in enumerate(names)]


def layer_rows(net: IntegerNetwork) -> list[dict]:
    """One dict per stage (the input quantizer first, the host ops last) with what a user wants to
    see; each layer's own columns come from its kind (``layer.describe()``). ``from`` names the
    stages a layer reads (``input``: the input quantizer), ``to`` those that read it, and
    ``source_rows`` gives the same wiring as indices into the returned list (for drawing the
    graph; a host op reads the row before it)."""
    t = net.input.thresholds
    typed = net.input.input_type
    names = _source_names(net)
    readers = {j: [] for j in range(-1, len(net.layers))}
    for i in range(len(net.layers)):
        for j in dict.fromkeys(net.sources(i)):
            readers[j].append(i)

    def to(j):
        return ", ".join(names[i] for i in readers[j]) or "-"

    rows = [{
        "layer": "input", "kind": f"{typed} (no quantizer)" if typed else "Quant",
        "in": _shape(net.input.in_shape),
        "from": "-", "to": to(-1), "source_rows": [], "out": _shape(net.input.out_shape),
        "w_bits": "-", "a_bits": _bits(*t.out_range), "macs": 0, "params": 0, "acc": "-",
        "thresholds": (f"identity ({t.levels} on the raw {typed} value)" if typed
                       else f"{t.channels}x{t.levels} (float32 on raw input)"),
    }]
    for i, layer in enumerate(net.layers):
        srcs = net.sources(i)
        rows.append({"layer": layer.name, "from": ", ".join("input" if j < 0 else names[j]
                                                           for j in srcs),
                     "to": to(i), "source_rows": [j + 1 for j in srcs],
                     "in": _shape(layer.in_shape), "out": _shape(layer.out_shape),
                     **layer.describe()})
    for op in net.host:     # after the dequantization, on the host
        rows.append({"layer": "host", "kind": op.kind, "from": "-", "to": "-",
                     "source_rows": [len(rows) - 1], "in": _shape(op.in_shape),
                     "out": _shape(op.out_shape), "w_bits": "-",
                     "a_bits": "int64" if op.integer_output else "float32", "macs": 0,
                     "params": 0, "acc": "-", "thresholds": op.describe()})
    return rows


_COLUMNS = [("layer", "layer"), ("kind", "kind"), ("from", "from"), ("in", "in"), ("out", "out"),
            ("w_bits", "weights"), ("a_bits", "act out"), ("macs", "MACs"), ("params", "params"),
            ("acc", "accumulator"), ("thresholds", "thresholds")]


def table_columns(net: IntegerNetwork) -> list[tuple[str, str]]:
    """The table's columns for ``net``: a graph network also shows ``to`` (which stages read each
    one) beside ``from``, so both ends of a skip connection show it; a chain's table is as before."""
    if net.is_chain:
        return list(_COLUMNS)
    at = [key for key, _ in _COLUMNS].index("from") + 1
    return _COLUMNS[:at] + [("to", "to")] + _COLUMNS[at:]


def skip_connections(net: IntegerNetwork) -> list[str]:
    """``input -> add`` for each input a layer reads that is not the layer just before it (a
    residual connection or a branch), by name; empty for a chain."""
    names = _source_names(net)
    return [f"{'input' if j < 0 else names[j]} -> {names[i]}"
            for i in range(len(net.layers)) for j in dict.fromkeys(net.sources(i)) if j != i - 1]


def format_table(rows: list[dict], columns=_COLUMNS) -> str:
    """A plain aligned text table (numbers right-aligned)."""
    head = [title for _, title in columns]
    body = [[f"{r[key]:,}" if isinstance(r[key], int) else str(r[key]) for key, _ in columns]
            for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    numeric = [all(isinstance(r[key], int) for r in rows) for key, _ in columns]

    def line(cells):
        return "  ".join(c.rjust(w) if n else c.ljust(w)
                         for c, w, n in zip(cells, widths, numeric)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), rule] + [line(b) for b in body])


def network_summary(net: IntegerNetwork) -> dict:
    """Totals for reports."""
    mac_layers = net.mac_layers
    return {
        "name": net.name,
        "input_shape": list(net.input_shape),
        "output_shape": list(net.result_shape),
        "layers": len(net.layers),
        "macs": net.macs,
        "params": sum(layer.params for layer in mac_layers),
        "weight_bits_total": sum(layer.params * layer.weight_bits for layer in mac_layers),
        "max_acc_bits": max(layer.acc_bits for layer in mac_layers),
        "dense": sum(isinstance(layer, Dense) for layer in net.layers),
        "conv": sum(isinstance(layer, Conv) for layer in net.layers),
    }
