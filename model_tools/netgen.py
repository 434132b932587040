"""Random small IntegerNetworks for hardware tests and `thresher verify` (built from the IR dataclasses).

``random_network(rng, in_shape, spec)`` with ``spec`` a list of
``("conv", cout, k, stride, pad)``, ``("gconv", cout, k, stride, pad, groups)`` (grouped;
``groups == cin`` depthwise), ``("pool", k, stride)`` (max), ``("avgpool", k, stride[, pad])``
(zero padding counted in the divisor ``k * k``), ``("dense", cout)``; the last MAC layer (or
average pool) gets no activation.

Residual graphs: each of these reads the previous layer unless one more element names its source
(a layer index, -1 the input quantizer's output; ``avgpool`` then with its pad), and
``("add", a, b[, shifts[, act]])`` adds the outputs of the earlier layers ``a`` and ``b`` (equal
shapes), ``shifts`` a power-of-two alignment ``(ka, 0)`` or ``(0, kb)`` (default ``(0, 0)``); an
add gets thresholds spread over its sums unless ``act`` is false (raw sums out: the last layer
only). ``input_kinds`` (default ``act_kinds``) are the input quantizer's kinds, ``input_direction``
fixes its direction (default: drawn).

``variety`` (default 0.25): a ``"conv"`` with a k > 1 window becomes, with probability
``variety / 2``, an average pool over the same window (stride and pads kept, channels unchanged),
and otherwise, with probability ``variety``, a grouped conv when its input and output channels share
a divisor (depthwise, or depthwise with a channel multiplier, when possible, half the time). Both
still run as MAC stages on the overlay, so the stage kinds of the spec (and the fusion of its max
pools) do not change; ``thresher verify --random`` exercises them this way. ``variety=0`` draws
exactly the networks of the plain spec (and no random numbers for the choice). Weights are random at a random width (1 = bipolar +-1 .. 8 bits); activations
are bipolar, narrow signed or unsigned with thresholds spread around the accumulator's typical
values, random directions, some constant channels and some repeated (tied) thresholds.
"""

from __future__ import annotations

import numpy as np

from .ir import (Add, AvgPool, Conv, Dense, Dequant, InputQuantizer, IntegerNetwork, MaxPool,
                 Thresholds)

ACT_KINDS = ("bipolar", "signed2", "unsigned2", "unsigned3", "signed3")


def _act_params(kind):
    if kind == "bipolar":
        return 1, -1, 2
    bits = int(kind[-1])
    if kind.startswith("signed"):
        n = (1 << (bits - 1)) - 1
        return 2 * n, -n, 1          # narrow signed: -n..n
    return (1 << bits) - 1, 0, 1


def random_thresholds(rng, channels, levels, center, spread, bound, *, const_frac=0.15):
    vals = np.sort(np.round(rng.normal(center, spread, size=(channels, levels))), axis=1)
    vals = vals.astype(np.int64)
    direction = rng.choice([-1, 1], size=channels)
    for c in range(channels):
        if levels > 1 and rng.random() < 0.3:           # ties: repeated thresholds
            j = rng.integers(0, levels - 1)
            vals[c, j + 1] = vals[c, j]
        if rng.random() < const_frac:                    # constant channel
            vals[c] = (bound + 1 + rng.integers(0, 3)) if rng.random() < 0.5 else \
                (-bound - 2 - rng.integers(0, 3))
    return Thresholds(np.sort(vals, axis=1), direction, 0, 1)


def _activation(rng, kind, channels, y_spread, bound, center=0):
    levels, offset, step = _act_params(kind)
    t = random_thresholds(rng, channels, levels, center, max(1.0, y_spread), bound)
    return Thresholds(t.values, t.direction, offset, step)


def _draw_groups(rng, cin, cout, variety) -> int:
    """1, or (with probability ``variety``) a common divisor > 1 of ``cin`` and ``cout``."""
    if variety <= 0 or rng.random() >= variety:
        return 1
    common = [g for g in range(2, min(cin, cout) + 1) if cin % g == 0 and cout % g == 0]
    if not common:
        return 1
    if cout % cin == 0 and rng.random() < 0.5:
        return cin                                       # depthwise (channel multiplier)
    return int(rng.choice(common))


def _add_thresholds(rng, add, act_kinds=None):
    """Thresholds spread over an add's sums (per channel direction ``d``: around ``d`` times the
    middle of the range), so that its output varies."""
    lo, hi = add.acc_range
    levels, offset, step = _act_params(str(rng.choice(act_kinds or ACT_KINDS)))
    c = add.out_channels
    d = rng.choice([-1, 1], size=c)
    mid = (lo + hi) / 2
    vals = np.round(rng.normal(mid, max(1.0, (hi - lo) / 4), size=(c, levels)) * d[:, None])
    return Thresholds(np.sort(vals.astype(np.int64), axis=1), d, offset, step)


#: the length of each kind's entry without its optional source index (``avgpool``: with its pad)
_SRC_AT = {"conv": 5, "gconv": 6, "pool": 3, "avgpool": 4, "dense": 2}


def random_network(rng, in_shape=(1, 8, 8), spec=(("conv", 8, 3, 1, 1), ("dense", 10)), *,
                   weight_bits=None, act_kinds=None, input_levels=None, raw_range=(0, 255),
                   name="random", variety=0.25, input_kinds=None, input_direction=None):
    rng = np.random.default_rng(rng)
    lo_raw, hi_raw = raw_range
    # input quantizer: float32 thresholds on the raw value
    kind = rng.choice(input_kinds or act_kinds or ACT_KINDS) if input_levels is None else None
    if input_levels is None:
        levels, offset, step = _act_params(kind)
    else:
        levels, offset, step = input_levels, 0, 1
    tq = np.sort(rng.uniform(lo_raw - 5, hi_raw + 5, size=(1, levels))).astype(np.float32)
    direction = rng.choice([-1, 1], size=1) if input_direction is None else [input_direction]
    inq = InputQuantizer(tuple(in_shape), tuple(in_shape),
                         Thresholds(tq, direction, offset, step))
    shapes = {-1: tuple(in_shape)}
    ranges = {-1: (offset, offset + step * levels)}
    chain = not any(s[0] == "add" for s in spec)
    layers = []
    for i, s in enumerate(spec):
        s = tuple(s)
        last = i == len(spec) - 1
        if s[0] == "add":
            a, b = int(s[1]), int(s[2])
            shifts = tuple(s[3]) if len(s) > 3 else (0, 0)
            with_act = s[4] if len(s) > 4 else True
            common = dict(name=f"add{i}", in_shape=shapes[a], out_shape=shapes[a], inputs=(a, b),
                          in_ranges=(ranges[a], ranges[b]), shifts=shifts)
            layer = Add(**common)
            if with_act:
                layer = Add(**common, activation=_add_thresholds(rng, layer, act_kinds))
            layers.append(layer)
            shapes[i], ranges[i] = layer.out_shape, layer.out_range
            continue
        n = _SRC_AT[s[0]]
        src = int(s[n]) if len(s) > n else i - 1
        s = s[:n]
        inputs = None if src == i - 1 else (src,)
        shape, rng_in = shapes[src], ranges[src]
        if s[0] == "conv" and s[2] > 1 and variety > 0 and rng.random() < variety / 2 \
                and (chain or s[1] == shape[0]):    # in a graph: only when the shape is kept
            s = ("avgpool",) + tuple(s[2:])       # the same window, channels kept: still a MAC stage
        if s[0] == "pool":
            _, k, st = s
            C, H, W = shape
            out = (C, (H - k) // st + 1, (W - k) // st + 1)
            layers.append(MaxPool(f"pool{i}", shape, out, (k, k), (st, st), in_range=rng_in,
                                  inputs=inputs))
            shapes[i], ranges[i] = out, rng_in
            continue
        if s[0] == "avgpool":           # the window sum, thresholds around its typical values
            _, k, st, pad = (tuple(s) + (0,))[:4]
            C, H, W = shape
            out = (C, (H + 2 * pad - k) // st + 1, (W + 2 * pad - k) // st + 1)
            pads = (pad,) * 4                    # count_include_pad: the divisor stays k * k
            layer = AvgPool(f"avg{i}", shape, out, (k, k), (st, st), pads, rng_in, k * k,
                            inputs=inputs)
            if not last:
                lo, hi = layer.acc_range
                act = _activation(rng, rng.choice(act_kinds or ACT_KINDS), C,
                                  k * max(1.0, (rng_in[1] - rng_in[0]) / 2), max(-lo, hi),
                                  center=k * k * (rng_in[0] + rng_in[1]) / 2)
                layer = AvgPool(f"avg{i}", shape, out, (k, k), (st, st), pads, rng_in, k * k, act,
                                inputs=inputs)
            layers.append(layer)
            shapes[i], ranges[i] = out, layer.out_range
            continue
        wb = int(rng.choice(weight_bits or (1, 2, 3, 4, 8)))
        if wb == 1:
            wlo, whi = -1, 1
        else:
            wlo, whi = -(1 << (wb - 1)), (1 << (wb - 1)) - 1
        groups = 1
        if s[0] == "gconv":
            _, cout, k, st, pad, groups = s
        elif s[0] == "conv":
            _, cout, k, st, pad = s
            groups = _draw_groups(rng, shape[0], cout, variety)
        if s[0] in ("conv", "gconv"):
            C, H, W = shape
            w = rng.integers(wlo, whi + 1, size=(cout, C // groups, k, k))
            out = (cout, (H + 2 * pad - k) // st + 1, (W + 2 * pad - k) // st + 1)
        else:
            _, cout = s
            w = rng.integers(wlo, whi + 1, size=(cout, int(np.prod(shape))))
            out = (cout,)
        if wb == 1:
            w = np.where(w >= 0, 1, -1)
        amax = max(abs(rng_in[0]), abs(rng_in[1]))
        fan = int(np.prod(w.shape[1:]))
        spread = np.sqrt(fan) * max(1.0, np.abs(w).mean()) * max(1.0, amax) / 2
        common = dict(name=f"l{i}", weights=w, in_shape=shape, out_shape=out, in_range=rng_in,
                      weight_bits=wb, activation=None, inputs=inputs)
        layer = Conv(**common, stride=(st, st), pads=(pad,) * 4, groups=groups) \
            if s[0] != "dense" else Dense(**common)
        if not last:
            lo, hi = layer.acc_range
            act = _activation(rng, rng.choice(act_kinds or ACT_KINDS), cout, spread,
                              max(-lo, hi))
            common["activation"] = act
            layer = Conv(**common, stride=(st, st), pads=(pad,) * 4, groups=groups) \
                if s[0] != "dense" else Dense(**common)
        layers.append(layer)
        shapes[i], ranges[i] = out, layer.out_range
    shape = shapes[len(spec) - 1]
    last_c = shape[0]
    return IntegerNetwork(inq, tuple(layers), Dequant(np.ones(last_c), np.zeros(last_c)),
                          shape, name=name)


def random_input(rng, net, batch, raw_range=(0, 255)):
    rng = np.random.default_rng(rng)
    return rng.integers(raw_range[0], raw_range[1] + 1, size=(batch,) + net.input_shape)


def small_cnn(seed: int, *, macs=(15_000, 65_000), weight_kbit=(0.3, 32.0)) -> IntegerNetwork:
    """A random small CNN of the kind users bring to an iCE40 board: a 1- or 3-channel 8-bit
    image, 1-3 convolutions (1x1 or 3x3, 4-32 channels, a 2x2 max pool after some), a dense
    classifier; 2-8-bit weights, 2-4-bit activations; drawn again until its MACs and weight bits
    fall in the given ranges. The same seed gives the same network. Builds and the resource
    model are measured on a spread of these."""
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        cin = int(rng.choice([1, 3]))
        size = int(rng.choice([8, 10, 12, 16]))
        spec, h = [], size
        for _ in range(int(rng.integers(1, 4))):
            k = int(rng.choice([1, 3]))
            spec.append(("conv", int(rng.choice([4, 8, 12, 16, 24, 32])), k, 1, k // 2))
            if h >= 4 and rng.random() < 0.5:
                spec.append(("pool", 2, 2))
                h //= 2
        spec.append(("dense", int(rng.integers(2, 11))))
        wbits = tuple(int(b) for b in rng.choice(range(2, 9), size=2))
        acts = tuple(str(a) for a in rng.choice(["unsigned2", "unsigned3", "unsigned4",
                                                 "signed2", "signed3", "signed4"], size=2))
        net = random_network(int(rng.integers(1 << 31)), (cin, size, size), spec,
                             weight_bits=wbits, act_kinds=acts, input_levels=255,
                             name=f"small_cnn_{seed}", variety=0)
        kbit = sum(l.params * l.weight_bits for l in net.mac_layers) / 1024
        if macs[0] <= net.macs <= macs[1] and weight_kbit[0] <= kbit <= weight_kbit[1]:
            return net
    raise ValueError(f"no network in {macs} MACs and {weight_kbit} kbit for seed {seed}")
