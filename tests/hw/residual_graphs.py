"""Random hand-built residual IR graphs for the RTL tests (numpy only).

``graph_network(seed, in_shape, spec)`` with ``spec`` a list of layers, each reading the previous
one unless it names its source (``src``: a layer index, -1 the input quantizer's output):
``("conv", cout, k, stride, pad[, src])``, ``("dense", cout[, src])``, ``("pool", k, stride[, src])``
(max) and ``("add", a, b[, shifts[, act]])`` (``act=False``: no thresholds, only as the last layer).
The last MAC layer gets no activation unless it is an add with ``act=True``. Weights are 2..4-bit,
activations of the kinds of :mod:`model_tools.netgen` (bipolar, narrow signed, unsigned).
"""

from __future__ import annotations

import numpy as np

from thresher.model_tools.ir import (Add, Conv, Dense, Dequant, InputQuantizer, IntegerNetwork,
                                     MaxPool, Thresholds)
from thresher.model_tools.netgen import ACT_KINDS, _act_params, _activation


def _add_thresholds(rng, add):
    """Thresholds spread over the add's sums (per channel direction ``d``: around ``d`` times
    the middle of the range), so that its output varies."""
    lo, hi = add.acc_range
    levels, offset, step = _act_params(str(rng.choice(ACT_KINDS)))
    c = add.out_channels
    d = rng.choice([-1, 1], size=c)
    mid = (lo + hi) / 2
    vals = np.round(rng.normal(mid, max(1.0, (hi - lo) / 4), size=(c, levels)) * d[:, None])
    return Thresholds(np.sort(vals.astype(np.int64), axis=1), d, offset, step)


def graph_network(seed, in_shape, spec, *, name="graph"):
    rng = np.random.default_rng(seed)
    levels, offset, step = _act_params(str(rng.choice(ACT_KINDS[2:])))
    tq = np.sort(rng.uniform(-5, 260, size=(1, levels))).astype(np.float32)
    inq = InputQuantizer(tuple(in_shape), tuple(in_shape), Thresholds(tq, [1], offset, step))
    shapes = {-1: tuple(in_shape)}
    ranges = {-1: (offset, offset + step * levels)}
    layers = []
    for i, s in enumerate(spec):
        last = i == len(spec) - 1
        kind = s[0]
        if kind == "add":
            a, b = s[1], s[2]
            shifts = tuple(s[3]) if len(s) > 3 else (0, 0)
            act = s[4] if len(s) > 4 else True
            shape = shapes[a]
            common = dict(name=f"add{i}", in_shape=shape, out_shape=shape, inputs=(a, b),
                          in_ranges=(ranges[a], ranges[b]), shifts=shifts)
            layer = Add(**common)
            if act:
                layer = Add(**common, activation=_add_thresholds(rng, layer))
            layers.append(layer)
            shapes[i], ranges[i] = shape, layer.out_range
            continue
        src = i - 1
        if kind == "pool":
            _, k, st = s[:3]
            src = s[3] if len(s) > 3 else src
            C, H, W = shapes[src]
            out = (C, (H - k) // st + 1, (W - k) // st + 1)
            layers.append(MaxPool(f"pool{i}", shapes[src], out, (k, k), (st, st),
                                  in_range=ranges[src], inputs=None if src == i - 1 else (src,)))
            shapes[i], ranges[i] = out, ranges[src]
            continue
        if kind == "conv":
            _, cout, k, st, pad = s[:5]
            src = s[5] if len(s) > 5 else src
        else:
            _, cout = s[:2]
            src = s[2] if len(s) > 2 else src
        wb = int(rng.choice((2, 3, 4)))
        wlo, whi = -(1 << (wb - 1)), (1 << (wb - 1)) - 1
        shape, rng_in = shapes[src], ranges[src]
        if kind == "conv":
            C, H, W = shape
            w = rng.integers(wlo, whi + 1, size=(cout, C, k, k))
            out = (cout, (H + 2 * pad - k) // st + 1, (W + 2 * pad - k) // st + 1)
        else:
            w = rng.integers(wlo, whi + 1, size=(cout, int(np.prod(shape))))
            out = (cout,)
        common = dict(name=f"{kind}{i}", weights=w, in_shape=shape, out_shape=out,
                      in_range=rng_in, weight_bits=wb, activation=None,
                      inputs=None if src == i - 1 else (src,))

        def make(**kw):
            return Conv(**common, **kw, stride=(st, st), pads=(pad,) * 4) if kind == "conv" \
                else Dense(**common, **kw)
        layer = make()
        if not last:
            lo, hi = layer.acc_range
            amax = max(abs(rng_in[0]), abs(rng_in[1]), 1)
            spread = np.sqrt(w[0].size) * max(1.0, np.abs(w).mean()) * amax / 2
            common["activation"] = _activation(rng, str(rng.choice(ACT_KINDS)), cout, spread,
                                               max(-lo, hi))
            layer = make()
        layers.append(layer)
        shapes[i], ranges[i] = out, layer.out_range
    c = shapes[len(spec) - 1][0]
    return IntegerNetwork(inq, tuple(layers), Dequant(np.ones(c), np.zeros(c)),
                          shapes[len(spec) - 1], name=name)
