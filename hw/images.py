"""ROM images (lists of Python ints) for the engine's weight and threshold memories (numpy only).

Words are packed little-endian by lane: lane ``k`` occupies bits ``[k * width, (k + 1) * width)``.

* Weight ROM of a MAC stage: one word per (g, ky, kx, cg) in loop order (see :mod:`hw.plan`), lanes
  ``pe * SIMD + s`` holding ``w[g * PE + pe, tap, input element]``; zero outside the layer (bipolar
  weights are 1 bit, 1 meaning +1, 0 meaning -1; their padding is masked by the activations).
  A channelwise stage holds channel ``g * PE + pe``'s weight of the word's tap in lane
  ``pe * SIMD`` and zeros elsewhere.
* Threshold ROM of a MAC stage with an activation: one word per output group ``g``; lane ``pe`` is
  ``[direction bit (1 = negative), T_0, ..., T_{L-1}]`` with ``cmp_width``-bit thresholds clamped
  into ``[-M, M + 1]``, ``M`` the stage's accumulator bound (clamping is exact: a threshold below
  every reachable value is always passed, one above is never). ``prenegated=True`` stores ``1 - T``
  in the lanes of negative direction, the form :class:`hw.threshold.ThresholdUnit` compares
  without negating the accumulator (``-acc >= T`` is ``not (acc >= 1 - T)``); ``1 - T`` stays in
  ``[-M, M + 1]``.
* Input threshold ROM: one word per input-quantizer channel, the same lane format.
* Input level ROM (``plan.input_stage == "rom"``): one word per (quantizer channel ``c``, raw value
  ``r``) at ``c * (hi - lo + 1) + r - lo``, holding the unsigned count ``#{j : d * r >= T_j}``; the
  level is ``offset + step * count``. Exact for every integer in ``input_range``.
"""

from __future__ import annotations

import numpy as np

from .plan import Plan, Stage

__all__ = ["pack", "weight_image", "threshold_image", "input_threshold_image", "input_level_image",
           "flat_weights"]


def pack(values, width: int) -> int:
    """Pack integers (two's complement, ``width`` bits each) into one Python int, lane 0 lowest."""
    word, mask = 0, (1 << width) - 1
    for k, v in enumerate(np.asarray(values, dtype=object).ravel()):
        word |= (int(v) & mask) << (k * width)
    return word


def flat_weights(plan: Plan, stage: Stage) -> np.ndarray:
    """Weights as (Cout, taps, elements per tap) in the stage's lane order, int64."""
    layer = stage.layer
    C, H, W = stage.in_geom
    w = np.asarray(layer.weights, dtype=np.int64).reshape(layer.out_channels, C,
                                                          *stage.kernel)
    w = w.transpose(0, 2, 3, 1)                      # (Cout, kh, kw, Cin)
    if stage.im2col:
        return w.reshape(layer.out_channels, 1, -1)   # one "tap": the whole (ky, kx, c) window
    return w.reshape(layer.out_channels, stage.kernel[0] * stage.kernel[1], C)


def weight_lanes(plan: Plan, stage: Stage) -> np.ndarray:
    """``stage``'s weights as its ROM holds them: one row per word in the order the array reads
    them (group, tap, channel group), one column per lane (pe, simd); padding is 0 and bipolar
    weights are their bits (+1 -> 1, -1 -> 0)."""
    pe, simd = plan.pe, plan.simd
    ng, kh, kw, nc = stage.loops
    if stage.channelwise:
        # lanes over channels: row k is channel g * PE + k, its weight for the beat's tap in
        # lane (k, 0); every other lane 0. Word (g, t): t the tap, (ky, kx) or the add's input
        cw = stage.weights
        taps = kh * kw * nc
        full = np.zeros((ng * pe, taps), dtype=np.int64)
        full[:cw.shape[0]] = cw
        lanes = np.zeros((ng, taps, pe, simd), dtype=np.int64)
        lanes[:, :, :, 0] = full.reshape(ng, pe, taps).transpose(0, 2, 1)
        return lanes.reshape(ng * taps, pe * simd)
    w = flat_weights(plan, stage)
    cout, taps, elems = w.shape
    full = np.zeros((ng * pe, taps, nc * simd), dtype=np.int64)
    full[:cout, :, :elems] = w
    if stage.bipolar:
        full = (full > 0).astype(np.int64)
    # (g, pe, tap, cg, s) -> (g, tap, cg, pe, s)
    full = full.reshape(ng, pe, taps, nc, simd).transpose(0, 2, 3, 1, 4)
    return full.reshape(ng * taps * nc, pe * simd)


def weight_image(plan: Plan, stage: Stage) -> tuple[int, list[int]]:
    """(bits per word, words) of ``stage``'s weight ROM."""
    width = stage.weight_width
    return width * plan.pe * plan.simd, [pack(row, width) for row in weight_lanes(plan, stage)]


def _threshold_lanes(values, direction, channels, cmp_width, bound_m):
    lo, hi = -bound_m, bound_m + 1
    t = np.clip(np.asarray(values, dtype=np.int64), lo, hi)
    if t.shape[0] == 1 and channels > 1:
        t = np.repeat(t, channels, axis=0)
        direction = np.repeat(np.asarray(direction), channels)
    return t, np.asarray(direction)


def _lane_word(t_row, d, cmp_width):
    mask = (1 << cmp_width) - 1
    word = 1 if d < 0 else 0
    for j, v in enumerate(t_row):
        word |= (int(v) & mask) << (1 + j * cmp_width)
    return word


def threshold_image(plan: Plan, stage: Stage, *, prenegated: bool = False
                    ) -> tuple[int, list[int]]:
    """(bits per word, words) of ``stage``'s threshold ROM (``stage.levels >= 1``).

    Every stage's word has the plan's layout: ``plan.pe`` lanes of ``1 + plan.levels * cw``
    bits (the direction bit, then the slots). A stage with fewer levels fills its spare slots
    with a threshold no comparison counts (the largest value; with ``prenegated``, the
    smallest on a negative lane, whose comparison is inverted). So slot ``j`` of lane ``k``
    sits at one place for every stage and the accelerator wires it straight to comparator
    ``(k, j)``: a per-stage layout would put a multiplexer in front of every comparator bit,
    which on a network mixing 4- and 6-bit activations costs more logic than the comparators.
    """
    act = stage.layer.activation
    pe, L, cw = plan.pe, plan.levels, plan.cmp_width
    ng = stage.loops[0]
    m = max(-stage.acc_bound[0], stage.acc_bound[1])
    t, d = _threshold_lanes(act.values, act.direction, stage.layer.out_channels, cw, m)
    if prenegated:
        t = np.where(d[:, None] < 0, 1 - t, t)
    never, lowest = (1 << (cw - 1)) - 1, -(1 << (cw - 1))
    spare = L - t.shape[1]
    if spare:
        fill = np.where((d < 0) & prenegated, lowest, never)[:, None]
        t = np.concatenate([t, np.repeat(fill, spare, axis=1)], axis=1)
    lane_bits = 1 + L * cw
    words = []
    for g in range(ng):
        word = 0
        for k in range(pe):
            c = min(g * pe + k, t.shape[0] - 1)      # padding lanes repeat the last channel
            word |= _lane_word(t[c], d[c], cw) << (k * lane_bits)
        words.append(word)
    return pe * lane_bits, words


def input_threshold_image(plan: Plan) -> tuple[int, list[int]]:
    """(bits per word, words) of the input quantizer's threshold ROM, one word per channel."""
    t = plan.in_thresholds
    cw = plan.raw_width + 1
    m = max(-plan.input_range[0], plan.input_range[1])
    vals = np.clip(t.values, -m, m + 1)
    return 1 + t.levels * cw, [_lane_word(vals[c], t.direction[c], cw) for c in range(t.channels)]


def input_level_image(plan: Plan) -> tuple[int, list[int]]:
    """(bits per word, words) of the input quantizer's lookup ROM (see the module docstring)."""
    t = plan.in_thresholds
    lo, hi = plan.input_range
    raw = np.arange(lo, hi + 1, dtype=np.int64)
    words = []
    for c in range(t.channels):
        x = raw * int(t.direction[c])
        count = (x[:, None] >= t.values[c][None, :]).sum(axis=1)
        words += count.tolist()
    return plan.level_width, [int(w) for w in words]
