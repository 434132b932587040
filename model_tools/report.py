"""Per-layer summaries of an integer network, as rows of text for tables and as JSON-ready dicts."""

from __future__ import annotations

import numpy as np

from .ir import Add, AvgPool, Conv, Dense, IntegerNetwork, MaxPool, bits_for_range

__all__ = ["layer_rows", "format_table", "network_summary"]


def _shape(s) -> str:
    return "x".join(str(d) for d in s)


def _bits(lo, hi) -> str:
    bits, signed = bits_for_range(lo, hi)
    return f"{'s' if signed else 'u'}{bits}"


def _threshold_text(layer) -> str:
    t = layer.activation
    if t is None:
        return "- (raw accumulators out)"
    neg = int((t.direction < 0).sum())
    lo, hi = layer.channel_acc_range()
    v_lo = np.where(t.direction > 0, lo, -hi)[:, None]
    v_hi = np.where(t.direction > 0, hi, -lo)[:, None]
    const = int(((t.values <= v_lo) | (t.values > v_hi)).all(axis=1).sum()) if t.levels else t.channels
    text = f"{t.channels}x{t.levels}"
    extras = [f"{neg} neg"] if neg else []
    if const:
        extras.append(f"{const} const")
    return text + (f" ({', '.join(extras)})" if extras else "")


def _kind(layer) -> str:
    """``Conv 3x3/1``, ``Conv 3x3/1 depthwise``, ``Conv 3x3/1 groups 2``, ``AvgPool 2x2/2 /4``
    (kernel / stride; an average pool's divisor, which its thresholds fold in), ``Dense``."""
    if isinstance(layer, Dense):
        return "Dense"
    if isinstance(layer, Add):
        ka, kb = layer.shifts
        return "Add" + (f" (a<<{ka})" if ka else f" (b<<{kb})" if kb else "")
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    stride = f"{sh}" if sh == sw else f"{sh}x{sw}"
    if isinstance(layer, AvgPool):
        return f"AvgPool {kh}x{kw}/{stride} /{layer.divisor}"
    kind = f"Conv {kh}x{kw}/{stride}"
    if layer.groups == layer.in_shape[0] and layer.groups > 1:
        return kind + " depthwise"
    return kind + (f" groups {layer.groups}" if layer.groups > 1 else "")


def layer_rows(net: IntegerNetwork) -> list[dict]:
    """One dict per stage (the input quantizer first) with what a user wants to see; ``from``
    names the stages each layer reads (``input``: the input quantizer)."""
    t = net.input.thresholds
    typed = net.input.input_type
    rows = [{
        "layer": "input", "kind": f"{typed} (no quantizer)" if typed else "Quant",
        "in": _shape(net.input.in_shape),
        "from": "-", "out": _shape(net.input.out_shape), "w_bits": "-", "a_bits": _bits(*t.out_range),
        "macs": 0, "params": 0, "acc": "-",
        "thresholds": (f"identity ({t.levels} on the raw {typed} value)" if typed
                       else f"{t.channels}x{t.levels} (float32 on raw input)"),
    }]
    for i, layer in enumerate(net.layers):
        source = ", ".join("input" if j < 0 else net.layers[j].name for j in net.sources(i))
        if isinstance(layer, MaxPool):
            rows.append({"layer": layer.name, "kind": f"MaxPool {layer.kernel[0]}x{layer.kernel[1]}",
                         "from": source, "in": _shape(layer.in_shape), "out": _shape(layer.out_shape),
                         "w_bits": "-", "a_bits": _bits(*layer.out_range), "macs": 0, "params": 0,
                         "acc": "-", "thresholds": "-"})
            continue
        kind = _kind(layer)
        lo, hi = layer.acc_range
        rows.append({
            "layer": layer.name, "kind": kind, "from": source, "in": _shape(layer.in_shape),
            "out": _shape(layer.out_shape),
            "w_bits": "-" if isinstance(layer, (AvgPool, Add)) else
            "bipolar" if layer.bipolar_weights else f"s{layer.weight_bits}",
            "a_bits": _bits(*layer.out_range) if layer.activation is not None else "-",
            "macs": layer.macs, "params": layer.params,
            "acc": f"s{layer.acc_bits} [{lo}, {hi}]", "thresholds": _threshold_text(layer),
        })
    for op in net.host:     # after the dequantization, on the host
        rows.append({"layer": "host", "kind": op.kind, "from": "-", "in": _shape(op.in_shape),
                     "out": _shape(op.out_shape), "w_bits": "-",
                     "a_bits": "int64" if op.integer_output else "float32", "macs": 0,
                     "params": 0, "acc": "-", "thresholds": op.describe()})
    return rows


_COLUMNS = [("layer", "layer"), ("kind", "kind"), ("from", "from"), ("in", "in"), ("out", "out"),
            ("w_bits", "weights"), ("a_bits", "act out"), ("macs", "MACs"), ("params", "params"),
            ("acc", "accumulator"), ("thresholds", "thresholds")]


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
