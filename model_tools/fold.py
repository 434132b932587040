"""The fold: an imported float model -> an exact :class:`IntegerNetwork` (integer weights, and
batch-norm plus the quantized activation merged into per-channel integer thresholds).

Every MAC layer's integer accumulator ``y`` is followed in the float model by a chain of monotone
elementwise operations (scale, bias, batch-norm, scalar Mul/Div/Add/Sub, ReLU, quantizers) that ends
in the quantizer producing the next integer activation. That chain is a monotone step function of
``y``, so it is fully described by one threshold per output level and channel. The thresholds are
found by bisection over the integers, evaluating the reference chain itself (in float64, in the
graph's own order, with the quantizer's own rounding mode), never by a float ``ceil`` of a float
division: exactness on ties is inherited from the reference instead of approximated.

The input quantizer is handled the same way over float32 (the raw input is float32 and the
pre-processing is evaluated in float32, exactly as qonnx's executor does), so the input thresholds
are exact for every float32 input.

A graph with residual adds is cut into chains at its branch points (a tensor read by several ops,
or by an ``Add``); each chain folds as above, and every branch point must be an integer tensor (the
output of a quantizer). An ``Add`` of two integer tensors with scales ``s_a``, ``s_b`` becomes an
:class:`~model_tools.ir.Add` layer when the scales are equal or differ by a power of two; its
thresholds come from the reference's own float32 computation ``a * s_a + b * s_b`` (and the chain
after it) evaluated for *every* pair of input values, checked to depend on the integer sum only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .errors import ThresherError
from .importer import (AddOp, AvgPoolOp, BatchNorm, ConvOp, Elementwise, ImportedModel, MatMulOp,
                       MaxPoolOp, Quantize, ReshapeOp, Relu)
from .ir import (Add, AvgPool, Conv, Dense, Dequant, HostOp, InputQuantizer, IntegerNetwork, MaxPool,
                 Thresholds, identity_thresholds, input_type_range, signed_bits)

__all__ = ["fold"]

_MAC_OPS = (ConvOp, MatMulOp)
_AFFINE_OPS = (Elementwise, BatchNorm)


# -- per-channel constants ---------------------------------------------------------------------

def _per_channel(const: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    """A constant broadcast against one sample (1, *shape) -> its value per channel (axis 0), (C,)."""
    const = np.asarray(const, dtype=np.float64)
    try:
        full = np.broadcast_to(const, (1,) + tuple(shape))[0]
    except ValueError:
        raise ThresherError(f"{where}: constant of shape {const.shape} does not broadcast to the "
                            f"tensor {tuple(shape)}") from None
    flat = full.reshape(full.shape[0], -1) if full.ndim > 1 else full.reshape(-1, 1)
    if np.any(flat != flat[:, :1]):
        raise ThresherError(f"{where}: constant varies within a channel; only per-tensor or "
                            "per-channel constants are supported")
    return flat[:, 0].copy()


def _sign(op, shape) -> np.ndarray:
    """Per-channel sign (+1, -1, 0) of how an elementwise op maps its input (ReLU, quantizers: +1)."""
    channels = shape[0]
    if isinstance(op, Elementwise):
        if op.op in ("Add", "Sub"):
            return np.full(channels, -1.0 if (op.op == "Sub" and op.const_first) else 1.0)
        return np.sign(_per_channel(op.const, shape, op.node))
    if isinstance(op, BatchNorm):
        return np.sign(_per_channel(op.gamma.reshape(-1, *([1] * (len(shape) - 1))), shape, op.node))
    return np.ones(channels)


# -- evaluating a chain of elementwise ops, vectorised over (C, N) candidate values ------------------

@dataclass(frozen=True)
class _Chain:
    """Elementwise ops on a (C, ...) tensor, ending in ``last`` (the quantizer whose level we read)."""

    ops: tuple
    last: Quantize | None
    relu_after: bool            # a ReLU after the last quantizer: level = max(level, 0)
    shape: tuple[int, ...]

    def _pc(self, const, where, dtype):
        return _per_channel(const, self.shape, where).astype(dtype)[:, None]

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Levels of the reference for values ``x`` of shape (C, N), computed in ``x``'s dtype."""
        dtype = x.dtype
        for op in self.ops:
            if isinstance(op, Elementwise):
                x = op.apply(x, self._pc(op.const, op.node, dtype))
            elif isinstance(op, BatchNorm):
                shaped = (-1,) + (1,) * (len(self.shape) - 1)
                mean, var, gamma, beta = (self._pc(a.reshape(shaped), op.node, dtype)
                                          for a in (op.mean, op.var, op.gamma, op.beta))
                x = (x - mean) / np.sqrt(var + dtype.type(op.eps)) * gamma + beta
            elif isinstance(op, Relu):
                x = np.maximum(x, dtype.type(0))
            elif isinstance(op, Quantize):
                scale = self._pc(op.scale, op.node, dtype)
                x = op.level(x, scale) * scale
            # MaxPoolOp: deferred past the quantizer by the caller (checked to be valid)
        level = self.last.level(x, self._pc(self.last.scale, self.last.node, dtype))
        if self.relu_after:
            level = np.maximum(level, 0)
        return level

    def direction(self) -> np.ndarray:
        sign = np.ones(self.shape[0])
        for op in self.ops:
            if not isinstance(op, MaxPoolOp):
                sign = sign * _sign(op, self.shape)
        return sign


def _targets(q: Quantize, channels: int) -> tuple[np.ndarray, int, int]:
    """Levels to find thresholds for: ``offset + step * j`` for j = 1..L, as a (C, L) array."""
    levels = (q.q_max - q.q_min) // q.step
    targets = q.q_min + q.step * np.arange(1, levels + 1)
    return np.broadcast_to(targets, (channels, levels)).copy(), q.q_min, q.step


def _bisect(level, lo: np.ndarray, hi: np.ndarray, targets: np.ndarray):
    """Per element, the smallest key in ``[lo, hi]`` whose ``level(key) >= target`` (``level`` is
    monotone non-decreasing). Returns ``(always, never, key)``: ``always`` where even ``lo``
    reaches the target, ``never`` where not even ``hi`` does (``key`` is meaningful elsewhere)."""
    always = level(lo) >= targets
    never = level(hi) < targets
    active = ~(always | never)
    # invariant on active elements: level(lo) < target <= level(hi)
    while ((hi - lo > 1) & active).any():
        mid = lo + (hi - lo) // 2
        up = level(mid) >= targets
        hi = np.where(active & up, mid, hi)
        lo = np.where(active & ~up, mid, lo)
    return always, never, hi


def _kept_levels(always: np.ndarray, never: np.ndarray) -> slice:
    """The levels worth a comparator: drop those always passed (leading) or never passed
    (trailing) in every channel; the caller adds the dropped leading ones to the offset."""
    first = 0
    while first < always.shape[1] and always[:, first].all():
        first += 1
    last = always.shape[1]
    while last > first and never[:, last - 1].all():
        last -= 1
    return slice(first, last)


def _integer_thresholds(chain: _Chain, y_lo: np.ndarray, y_hi: np.ndarray, scale: np.ndarray,
                        bias: np.ndarray, value=None) -> Thresholds:
    """Thresholds on integer accumulators ``y`` in ``[y_lo, y_hi]`` (per channel) of
    ``chain(scale * y + bias)``, by bisection per channel and level. ``value(y)`` (y int64 (C, L))
    replaces ``scale * y + bias`` where the reference computes the chain's input otherwise (an
    average: the window sum divided in float32)."""
    channels = len(y_lo)
    sign = chain.direction()
    direction = np.where(sign < 0, -1, 1).astype(np.int64)
    targets, offset, step = _targets(chain.last, channels)
    d = direction[:, None]
    v_lo = np.where(direction > 0, y_lo, -y_hi)[:, None]
    v_hi = np.where(direction > 0, y_hi, -y_lo)[:, None]

    def level(v):                                   # v: int64 (C, L) in the compared domain
        if value is not None:
            return chain.evaluate(value(d * v))
        y = (d * v).astype(np.float64) * scale[:, None]
        return chain.evaluate(y if bias is None else y + bias[:, None])

    always, never, first_up = _bisect(level, np.broadcast_to(v_lo, targets.shape).copy(),
                                      np.broadcast_to(v_hi, targets.shape).copy(), targets)
    # thresholds clamped into [v_lo, v_hi + 1]: exact for every reachable accumulator
    values = np.where(always, v_lo, np.where(never, v_hi + 1, first_up))
    kept = _kept_levels(always, never)
    return Thresholds(values[:, kept], direction, offset + step * kept.start, step)


# float32 ordering keys, for bisection over every float32 value
_F32_INF_KEY = int(np.float32(np.inf).view(np.int32))


def _f32_from_key(key: np.ndarray) -> np.ndarray:
    bits = np.where(key >= 0, key, (-key - 1) | np.int64(-(1 << 31)))
    return bits.astype(np.int64).astype(np.int32).view(np.float32)


def _input_thresholds(chain: _Chain) -> Thresholds:
    """Thresholds on raw float32 inputs, exact for every float32 value (NaN means never)."""
    channels = chain.shape[0]
    sign = chain.direction()
    direction = np.where(sign < 0, -1, 1).astype(np.int64)
    targets, offset, step = _targets(chain.last, channels)
    d = direction[:, None].astype(np.float32)

    def level(key):
        return chain.evaluate(d * _f32_from_key(key))

    lo = np.full(targets.shape, -_F32_INF_KEY - 1, dtype=np.int64)
    hi = np.full(targets.shape, _F32_INF_KEY, dtype=np.int64)
    with np.errstate(all="ignore"):
        always, never, first_up = _bisect(level, lo, hi, targets)
    values = np.where(always, -np.inf, np.where(never, np.nan, _f32_from_key(first_up)))
    kept = _kept_levels(always, never)
    return Thresholds(values[:, kept].astype(np.float32), direction, offset + step * kept.start,
                      step)


#: Largest (channels x input pairs) grid an Add's thresholds are computed on.
_ADD_GRID_LIMIT = 1 << 23


def _add_thresholds(chain: _Chain, where: str, ranges, scales, shifts) -> Thresholds:
    """Thresholds on the aligned integer sum ``S = a * 2^ka + b * 2^kb`` of an add.

    The reference computes ``float32(a * s_a) + float32(b * s_b)`` in float32 (each operand is its
    quantizer's dequantized output), then ``chain``. That is evaluated for every pair ``(a, b)`` of
    the two inputs' ranges; the levels must depend on ``S`` alone (float rounding could make two
    splits of one sum differ: refused, naming the node) and be monotone in ``direction * S``. The
    thresholds are then read off exactly: the smallest reachable ``S`` reaching each level.
    """
    channels = chain.shape[0]
    sign = chain.direction()
    direction = np.where(sign < 0, -1, 1).astype(np.int64)
    targets, offset, step = _targets(chain.last, channels)
    (alo, ahi), (blo, bhi) = ranges
    ka, kb = shifts
    a = np.arange(alo, ahi + 1, dtype=np.int64)
    b = np.arange(blo, bhi + 1, dtype=np.int64)
    n = a.size * b.size
    if channels * n > _ADD_GRID_LIMIT:
        raise ThresherError(f"{where}: inputs of {a.size} and {b.size} values on {channels} channels "
                            "are too many pairs to check the add exactly (at most "
                            f"{_ADD_GRID_LIMIT:,} channel-pairs)")
    total = ((a[:, None] << ka) + (b[None, :] << kb)).ravel()
    s_a, s_b = (np.asarray(x, dtype=np.float32)[:, None] for x in scales)
    fa = a.astype(np.float32)[None, :] * s_a                      # (C, |a|)
    fb = b.astype(np.float32)[None, :] * s_b                      # (C, |b|)
    value = (fa[:, :, None] + fb[:, None, :]).reshape(channels, n)
    levels = chain.evaluate(value)
    order = np.argsort(total, kind="stable")
    keys, starts = np.unique(total[order], return_index=True)
    levels = levels[:, order]
    lo = np.minimum.reduceat(levels, starts, axis=1)
    hi = np.maximum.reduceat(levels, starts, axis=1)
    if np.any(lo != hi):
        c, j = (int(i) for i in np.argwhere(lo != hi)[0])
        raise ThresherError(f"{where}: the reference's float32 sum gives levels {lo[c, j]:g} and "
                            f"{hi[c, j]:g} for one integer sum {keys[j]} (channel {c}): its rounding "
                            "depends on how the sum is split, so no exact integer add exists")
    levels_l = targets.shape[1]
    values = np.empty((channels, levels_l), dtype=np.int64)
    always = np.empty((channels, levels_l), dtype=bool)
    never = np.empty((channels, levels_l), dtype=bool)
    for c in range(channels):
        v, f = direction[c] * keys, lo[c]
        if direction[c] < 0:
            v, f = v[::-1], f[::-1]
        if np.any(np.diff(f) < 0):
            raise ThresherError(f"{where}: the quantizer after the add is not monotone in the sum "
                                f"(channel {c})")
        idx = np.searchsorted(f, targets[c], side="left")     # first reachable sum reaching it
        always[c], never[c] = idx == 0, idx == len(v)
        values[c] = np.where(never[c], v[-1] + 1, v[np.minimum(idx, len(v) - 1)])
    kept = _kept_levels(always, never)
    return Thresholds(values[:, kept], direction, offset + step * kept.start, step)


def _channel_scales(scale, shape, where) -> np.ndarray:
    """A tensor's scale (one, or one per channel) as float64 per channel, (C,)."""
    scale = np.asarray(scale, dtype=np.float64)
    if scale.size == 1:
        return np.full(shape[0], float(scale.ravel()[0]))
    return _per_channel(scale.reshape(-1, *([1] * (len(shape) - 1))), shape, where)


def _alignment(s_a: np.ndarray, s_b: np.ndarray, where: str) -> tuple[int, int]:
    """Left shifts ``(ka, kb)`` that bring two inputs of an add to the finer scale: ``(0, 0)`` for
    equal scales, ``(k, 0)`` when ``s_a = 2^k * s_b`` in every channel, ``(0, k)`` the other way."""
    ratio = s_a / s_b
    if np.all(ratio == 1.0):
        return 0, 0
    mant, exp = np.frexp(ratio)
    if np.all(mant == 0.5) and np.all(exp == exp[0]):
        k = int(exp[0]) - 1
        return (k, 0) if k > 0 else (0, -k)
    raise ThresherError(f"{where}: adds tensors with scales {s_a[:4].tolist()} and "
                        f"{s_b[:4].tolist()} (ratio {ratio[:4].tolist()}); thresher adds integers "
                        "exactly only when the scales are equal or differ by one power of two")


# -- the fold --------------------------------------------------------------------------------------

def _quantizer_chain(ops, last_q: int, what: str, shape):
    """The float chain from an integer stage (``what``: an add, an average pool) to its quantizer
    ``ops[last_q]``: only scalar/per-channel arithmetic, batch-norm and ReLU may come between.
    Returns ``(chain, quantizer, the ops after it)``."""
    chain_ops = tuple(ops[:last_q])
    for x in chain_ops:
        if not isinstance(x, (Elementwise, BatchNorm, Relu, Quantize)):
            raise ThresherError(f"node {x.node}: {type(x).__name__} between {what} and its "
                                "quantizer is not supported")
    q, after = ops[last_q], ops[last_q + 1:]
    relu_after = bool(after) and isinstance(after[0], Relu)
    return _Chain(chain_ops, q, relu_after, shape), q, after


class _Folder:
    def __init__(self, model: ImportedModel):
        self.model = model
        self.ops = list(model.ops)
        # the host ops (Softmax, ArgMax, TopK, ...) end the chain; the importer keeps them there
        self.host = []
        while self.ops and isinstance(self.ops[-1], HostOp):
            self.host.insert(0, self.ops.pop())
        self.pos = 0
        self.layers: list = []
        # an average with no quantizer after it, waiting to be folded into the next Dense's weights:
        # (op, its input shape, its output shape, its input's value range)
        self.pending_avg = None

    def peek(self):
        return self.ops[self.pos] if self.pos < len(self.ops) else None

    def take_segment(self) -> list:
        """Ops up to (not including) the next MAC op or the end."""
        start = self.pos
        while self.pos < len(self.ops) and not isinstance(self.ops[self.pos], _MAC_OPS):
            self.pos += 1
        return self.ops[start:self.pos]

    def chains(self) -> list[tuple[list[int], bool]]:
        """The ops cut into chains at branch points, in topological order of their first op.

        Each chain is ``(op indices, ends at the output)``: its first op reads a branch point (or
        is an add, or reads the model input), each later op reads its predecessor only, and only
        that predecessor reads it. A linear model is one chain. Every branch point must be an
        integer tensor (a quantizer's output, possibly max-pooled or reshaped).
        """
        n = len(self.ops)
        sources = self.model.inputs
        sources = [(k - 1,) for k in range(n)] if sources is None else list(sources[:n])
        readers: dict[int, list[int]] = {}
        for k, src in enumerate(sources):
            for j in src:
                readers.setdefault(j, []).append(k)

        def successor(k):
            r = readers.get(k, [])
            return r[0] if len(r) == 1 and not isinstance(self.ops[r[0]], AddOp) else None

        heads = [k for k in range(n)
                 if not (len(sources[k]) == 1 and sources[k][0] >= 0 and
                         successor(sources[k][0]) == k)]
        chains = []
        for h in heads:
            chain = [h]
            while successor(chain[-1]) is not None:
                chain.append(successor(chain[-1]))
            chains.append((chain, n - 1 in chain))
        self.sources = sources
        for chain, last in chains:
            if not last:
                self.check_branch_point(chain, readers[chain[-1]])
        return chains

    def check_branch_point(self, chain, readers):
        """A ThresherError, naming the add (or the readers), unless the chain's output is integer."""
        for k in reversed(chain):
            op = self.ops[k]
            if isinstance(op, Quantize):
                return
            if not isinstance(op, (Relu, ReshapeOp, MaxPoolOp)):
                break
        else:       # only pass-through ops: integer when what the chain reads is
            src = self.sources[chain[0]][0]
            if src >= 0 or self.model.input_type is not None:
                return
        op = self.ops[chain[-1]]
        adds = [self.ops[r] for r in readers if isinstance(self.ops[r], AddOp)]
        what = f"node {adds[0].node}: the add's input" if adds else \
            "the tensor read by " + ", ".join(f"node {self.ops[r].node}" for r in readers)
        raise ThresherError(f"{what} from node {op.node} ({type(op).__name__}) is not the output of "
                            "a quantizer; branches and residual adds must join integer tensors "
                            "(quantize both operands, e.g. with a shared quantizer)")

    def fold(self) -> IntegerNetwork:
        in_shape = self.model.input_shape
        all_ops = self.ops
        states = {}         # op index -> (shape, scale, value range, index of its layer)
        dequant, out_layer = None, -1
        for c, (chain, last) in enumerate(self.chains()):
            self.ops, self.pos, self.last_chain = [all_ops[k] for k in chain], 0, last
            start = len(self.layers)
            head = all_ops[chain[0]]
            if c == 0:
                if self.sources[chain[0]] != (-1,):
                    raise ThresherError(f"node {head.node}: the model must start from its input")
                input_q, shape, scale, value_range = self.fold_input(in_shape)
                source = -1
            elif isinstance(head, AddOp):
                self.pos = 1
                shape, scale, value_range, dequant = self.fold_add(
                    head, [states[j] for j in self.sources[chain[0]]])
                source = None
            else:
                shape, scale, value_range, source = states[self.sources[chain[0]][0]]
                segment = self.take_segment()
                shape, scale, value_range, dequant = self.after_quant(
                    segment, shape, scale, value_range, last and self.pos >= len(self.ops))
            while self.pos < len(self.ops):
                mac = self.ops[self.pos]
                self.pos += 1
                segment = self.take_segment()
                final = last and self.pos >= len(self.ops)
                shape, scale, value_range, dequant = self.fold_mac(mac, segment, shape, scale,
                                                                   value_range, final)
            if source is not None and len(self.layers) > start and source != start - 1:
                self.layers[start] = dataclasses.replace(self.layers[start], inputs=(source,))
            out_layer = len(self.layers) - 1 if len(self.layers) > start else source
            states[chain[-1]] = (shape, scale, value_range, out_layer)
        self.ops = all_ops
        if not self.layers or not any(isinstance(x, (Conv, Dense)) for x in self.layers):
            raise ThresherError(f"{self.model.name}: no Conv/MatMul/Gemm layer found")
        if out_layer != len(self.layers) - 1 or dequant is None:
            raise ThresherError(f"{self.model.name}: the model's output must be its last layer's "
                                "output")
        out_shape = self.host[0].in_shape if self.host else self.model.output_shape
        if int(np.prod(out_shape)) != int(np.prod(shape)):
            raise ThresherError(f"{self.model.name}: output shape {out_shape} does not match the "
                                f"last layer's {shape}")
        return IntegerNetwork(input_q, tuple(self.layers), dequant, out_shape,
                              name=self.model.name, host=tuple(self.host))

    def fold_add(self, op: AddOp, inputs):
        """An add of two integer tensors (``inputs``: their ``(shape, scale, range, layer)``) and
        the ops after it up to the next MAC layer: an :class:`Add` layer whose thresholds are the
        quantizer after the sum (:func:`_add_thresholds`). Returns ``(shape, scale, value_range,
        dequant)`` like :meth:`fold_mac`."""
        where = f"node {op.node}"
        (shape, s_a, r_a, i_a), (shape_b, s_b, r_b, i_b) = inputs
        if tuple(shape) != tuple(shape_b):
            raise ThresherError(f"{where}: adds tensors of shapes {shape} and {shape_b}")
        shape = tuple(shape)
        s_a, s_b = _channel_scales(s_a, shape, where), _channel_scales(s_b, shape, where)
        shifts = _alignment(s_a, s_b, where)
        fine = s_b if shifts[0] else s_a
        segment = self.take_segment()
        final = self.last_chain and self.pos >= len(self.ops)
        args = dict(name=op.node, in_shape=shape, out_shape=shape, inputs=(i_a, i_b),
                    in_ranges=(r_a, r_b), shifts=shifts)
        last_q = max((i for i, x in enumerate(segment) if isinstance(x, Quantize)), default=None)
        if last_q is None:
            if final and not any(isinstance(x, (AvgPoolOp, MaxPoolOp)) for x in segment):
                layer = Add(**args)
                self.layers.append(layer)
                return shape, None, layer.acc_range, Dequant(*self.affine_tail(segment, shape, fine,
                                                                               None))
            raise ThresherError(f"{where}: the sum reaches the next layer without a quantizer "
                                "(an add must be followed by a quantizer, or end the model)")
        chain, q, after = _quantizer_chain(segment, last_q, "an add", shape)
        thresholds = _add_thresholds(chain, where, (r_a, r_b), (s_a, s_b), shifts)
        self.layers.append(Add(**args, activation=thresholds))
        q_scale = _per_channel(q.scale, shape, q.node)
        next_scale = q.scale if q.scale.size == 1 else q_scale
        return self.after_quant(after, shape, next_scale, thresholds.out_range, final)

    # input: [Reshape | scalar Mul/Div/Add/Sub]* Quant, then Relu/MaxPool/Reshape until a MAC op
    def fold_input(self, in_shape):
        """Everything before the first MAC layer: [Reshape | scalar op | Quant | ReLU | MaxPool]*.

        The last quantizer there defines the first integer tensor; the ops before it (scalar
        pre-processing, earlier quantizers, ReLU) are its float32 chain, bisected over float32.
        """
        segment = self.take_segment()
        cut = next((i for i, op in enumerate(segment) if isinstance(op, AvgPoolOp)), len(segment))
        last_q = max((i for i, op in enumerate(segment[:cut]) if isinstance(op, Quantize)),
                     default=None)
        if last_q is None and self.model.input_type is not None:
            return self.fold_typed_input(in_shape, segment)
        if last_q is None:
            first = segment[0] if segment else (self.ops[0] if self.ops else None)
            raise ThresherError(
                f"{'node ' + first.node if first else self.model.name}: the model must start with "
                "a quantizer (a Reshape and scalar Mul/Div/Add/Sub may come before it), or its "
                "input must be typed: give --input-type (e.g. UINT8, INT4, BIPOLAR) if the raw "
                "input is already integers")
        quant = segment[last_q]
        quantizers = [op for op in segment[:last_q + 1] if isinstance(op, Quantize)]
        per_tensor = all(q.scale.size == 1 for q in quantizers)
        shape, pools = tuple(in_shape), []
        chain_ops = []
        for op in segment[:last_q]:
            if isinstance(op, ReshapeOp):
                if not per_tensor:
                    raise ThresherError(f"node {op.node}: a Reshape before a per-channel input "
                                        "quantizer is not supported")
                shape = op.shape
            elif isinstance(op, MaxPoolOp):
                pools.append((op, len(chain_ops)))
            elif (isinstance(op, Elementwise) and op.const.size == 1) or \
                    isinstance(op, (Quantize, Relu)):
                chain_ops.append(op)
            else:
                raise ThresherError(
                    f"node {op.node}: only a Reshape, scalar Mul/Div/Add/Sub, quantizers and ReLU "
                    f"may come before the first layer; found {type(op).__name__}")
        after = segment[last_q + 1:]
        relu_after = bool(after) and isinstance(after[0], Relu)
        chain = _Chain(tuple(chain_ops), quant, relu_after, (1,) if per_tensor else shape)
        thresholds = _input_thresholds(chain)
        input_q = InputQuantizer(in_shape, shape, thresholds)
        value_range = thresholds.out_range
        for op, position in pools:   # max pools inside the chain move after the quantizer
            self.check_pool_movable(op, chain_ops[position:], chain.shape)
            shape = self.add_pool(op, shape, value_range)
        shape, scale, value_range, _ = self.after_quant(after, shape, quant.scale, value_range,
                                                        final=False)
        return input_q, shape, scale, value_range

    def fold_typed_input(self, in_shape, segment):
        """No quantizer first, the input typed (``UINT8``, ``BIPOLAR``, ...): the raw values are the
        integer levels (scale 1), the input quantizer is the identity on the type's values. Before
        the first layer: Reshape, MaxPool, scalar positive Mul/Div (a scale), ReLU on unsigned."""
        name = self.model.input_type
        lo, hi = input_type_range(name)
        scale = np.float32(1.0)
        rest = []
        for op in segment:
            if isinstance(op, (ReshapeOp, MaxPoolOp, AvgPoolOp)) or \
                    any(isinstance(r, AvgPoolOp) for r in rest):
                rest.append(op)         # after an average: its own chain (after_quant checks it)
            elif isinstance(op, Elementwise) and op.op in ("Mul", "Div") and op.const.size == 1 \
                    and float(op.const.ravel()[0]) > 0 and not op.const_first:
                c = np.float32(op.const.ravel()[0])
                scale = scale * c if op.op == "Mul" else scale / c
            elif isinstance(op, Relu) and lo >= 0:
                pass            # the identity on unsigned levels
            else:
                raise ThresherError(
                    f"node {op.node}: on a typed ({name}) input with no quantizer, only a Reshape, "
                    "MaxPool, a positive scalar Mul/Div and ReLU (on unsigned types) may come "
                    f"before the first layer; found {type(op).__name__}")
        input_q = InputQuantizer(in_shape, in_shape, identity_thresholds(name), name)
        value_range = input_q.out_range
        return (input_q,) + self.after_quant(rest, tuple(in_shape), np.asarray([scale], np.float32),
                                             value_range, final=False)[:3]

    def check_pool_movable(self, pool: MaxPoolOp, rest, shape):
        """Max commutes with the rest of the chain only where that rest is non-decreasing."""
        sign = np.ones(shape[0])
        for op in rest:
            if not isinstance(op, MaxPoolOp):
                sign = sign * _sign(op, shape)
        if np.any(sign < 0):
            raise ThresherError(f"node {pool.node}: max pooling before a negative scale cannot be "
                                "moved past the quantizer")

    def post_quant_ops(self, ops, shape, value_range, final):
        """MaxPool and Reshape after a quantizer become MaxPool layers and shape changes."""
        tail = []
        for op in ops:
            if isinstance(op, MaxPoolOp):
                if tail:
                    raise ThresherError(f"node {op.node}: max pooling after the output's affine "
                                        "operations is not supported")
                shape = self.add_pool(op, shape, value_range)
            elif isinstance(op, ReshapeOp):
                if int(np.prod(op.shape)) != int(np.prod(shape)):
                    raise ThresherError(f"node {op.node}: reshape {shape} -> {op.shape} changes "
                                        "the number of values")
                shape = op.shape
            elif isinstance(op, Relu):
                if tail:
                    raise ThresherError(f"node {op.node}: ReLU after the output's scaling is not "
                                        "supported")
            elif final and isinstance(op, _AFFINE_OPS):
                tail.append(op)
            else:
                raise ThresherError(f"node {op.node}: {type(op).__name__} after a quantizer and "
                                    "before the next layer is not supported")
        return shape, tail

    def add_pool(self, op: MaxPoolOp, shape, value_range):
        if len(shape) != 3:
            raise ThresherError(f"node {op.node}: max pooling needs a (C, H, W) tensor, got {shape}")
        c, h, w = shape
        (kh, kw), (sh, sw), (pt, pl, pb, pr) = op.kernel, op.stride, op.pads
        ho, wo = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
        if ho < 1 or wo < 1:
            raise ThresherError(f"node {op.node}: kernel {op.kernel} larger than the input {shape}")
        if op.ceil_mode:
            # one more window where it still starts inside the input or its leading padding
            # (ONNX/PyTorch rule); its missing rows/columns are padding, which never wins
            if (h + pt + pb - kh) % sh and ho * sh < h + pt:
                ho += 1
            if (w + pl + pr - kw) % sw and wo * sw < w + pl:
                wo += 1
            pb = max(pb, (ho - 1) * sh + kh - h - pt)
            pr = max(pr, (wo - 1) * sw + kw - w - pl)
        out = (c, ho, wo)
        self.layers.append(MaxPool(op.node, shape, out, op.kernel, op.stride, (pt, pl, pb, pr),
                                   value_range))
        return out

    def fold_mac(self, mac, segment, shape, scale, value_range, final):
        where = f"node {mac.node}"
        s_a = np.asarray(scale, dtype=np.float64)
        if s_a.size != 1:
            raise ThresherError(f"{where}: its input has per-channel scales; a layer's input must "
                                "have one scale per tensor")
        s_a = float(s_a.ravel()[0])
        w = mac.weight
        pending, self.pending_avg = self.pending_avg, None
        if pending is not None and not isinstance(mac, MatMulOp):
            raise ThresherError(f"node {pending[0].node}: an average pool feeding the convolution "
                                f"{mac.node} without a quantizer in between is not supported "
                                "(only into a MatMul/Gemm, or with a quantizer after it)")
        if isinstance(mac, MatMulOp):
            if len(shape) != 1:  # a MatMul on (C, H, W) would be a batched product, not a layer
                raise ThresherError(f"{where}: MatMul/Gemm on a {len(shape)}-D tensor {shape}; "
                                    "flatten first")
            if w.ints.shape[0] != shape[0]:
                raise ThresherError(f"{where}: weights {w.ints.shape} do not match input {shape}")
            ints, s_w = w.ints.T, w.scale.T                       # (Cout, Cin)
            if pending is not None:                               # the average in the weights
                ints, shape = self.compose_avg(pending, where, ints)
                value_range = pending[3]
        else:
            if len(shape) != 3 or w.ints.shape[1] * mac.groups != shape[0] or \
                    w.ints.shape[0] % mac.groups:
                raise ThresherError(f"{where}: weights {w.ints.shape} (group={mac.groups}) do not "
                                    f"match input {shape}")
            ints, s_w = w.ints, w.scale
        cout = ints.shape[0]
        s_flat = s_w.reshape(cout, -1)
        if np.any(s_flat != s_flat[:, :1]):
            raise ThresherError(f"{where}: weight scales vary along the input axis; only per-tensor "
                                "or per-output-channel weight scales are supported")
        s_w = s_flat[:, 0]
        if w.bipolar:
            weight_bits = 1
        else:
            weight_bits = signed_bits(min(int(ints.min()), 0), max(int(ints.max()), 0))
        if isinstance(mac, MatMulOp):
            out_shape = (cout,)
            layer_args = dict(name=mac.node, weights=ints, in_shape=shape, out_shape=out_shape,
                              in_range=value_range, weight_bits=weight_bits)
            kind = Dense
        else:
            _, h, wd = shape
            kh, kw = ints.shape[2:]
            (sh, sw), (pt, pl, pb, pr) = mac.stride, mac.pads
            ho, wo = (h + pt + pb - kh) // sh + 1, (wd + pl + pr - kw) // sw + 1
            if ho < 1 or wo < 1:
                raise ThresherError(f"{where}: kernel {(kh, kw)} larger than the input {shape}")
            out_shape = (cout, ho, wo)
            layer_args = dict(name=mac.node, weights=ints, in_shape=shape, out_shape=out_shape,
                              in_range=value_range, weight_bits=weight_bits, stride=mac.stride,
                              pads=mac.pads, groups=mac.groups)
            kind = Conv
        bias = None if mac.bias is None else _per_channel(
            mac.bias.reshape(-1, *([1] * (len(out_shape) - 1))), out_shape, where)
        z_scale = s_w * s_a
        probe = kind(**layer_args, activation=None)
        y_lo, y_hi = probe.channel_acc_range()

        # the layer's own quantizer: the last one before any average pool (what follows an
        # average is that average's chain, folded by fold_avg)
        cut = next((i for i, op in enumerate(segment) if isinstance(op, AvgPoolOp)), len(segment))
        last_q = max((i for i, op in enumerate(segment[:cut]) if isinstance(op, Quantize)),
                     default=None)
        if last_q is None and cut < len(segment) and (cut > 0 or not final):
            raise ThresherError(f"node {segment[cut].node}: average pooling of values that are not "
                                "quantized (no quantizer between the layer and the average) is "
                                "supported only right after the model's last layer")
        if last_q is None:
            if not final:
                raise ThresherError(f"{where}: its output reaches the next layer without a "
                                    "quantizer")
            self.layers.append(probe)
            if cut < len(segment):      # the last layer's accumulators averaged: a window sum
                avg = segment[0]
                if any(avg.pads):
                    raise ThresherError(f"node {avg.node}: a padded average of the last layer's "
                                        "float output adds the bias unevenly; not supported")
                shape, _, rng, dequant = self.fold_avg(avg, segment[1:], out_shape,
                                                       np.ones(cout), probe.acc_range, True)
                a, b = (z_scale * dequant.scale, dequant.bias) if bias is None else \
                    self.affine_tail(segment[1:], shape if len(shape) == 3 else out_shape,
                                     z_scale / avg.divisor, bias)
                self.layers[-1] = AvgPool(avg.node, out_shape, self.layers[-1].out_shape,
                                          avg.kernel, avg.stride, avg.pads, probe.acc_range,
                                          avg.divisor)
                return shape, None, rng, Dequant(a, b)
            scale_c, bias_c = self.affine_tail(segment, out_shape, z_scale, bias)
            return out_shape, None, probe.acc_range, Dequant(scale_c, bias_c)

        chain_ops = tuple(segment[:last_q])
        for op in chain_ops:
            if isinstance(op, ReshapeOp):
                raise ThresherError(f"node {op.node}: a Reshape between a layer and its quantizer "
                                    "is not supported")
        after = segment[last_q + 1:]
        relu_after = bool(after) and isinstance(after[0], Relu)
        chain = _Chain(chain_ops, segment[last_q], relu_after, out_shape)
        thresholds = _integer_thresholds(chain, y_lo, y_hi, z_scale, bias)
        layer = kind(**layer_args, activation=thresholds)
        self.layers.append(layer)
        value_range = thresholds.out_range
        # max pools inside the chain move after the quantizer: valid when everything after them is
        # non-decreasing per channel (then max commutes with the rest of the chain)
        shape = out_shape
        for i, op in enumerate(chain_ops):
            if isinstance(op, MaxPoolOp):
                self.check_pool_movable(op, chain_ops[i + 1:], out_shape)
                shape = self.add_pool(op, shape, value_range)
        q = segment[last_q]
        q_scale = _per_channel(q.scale, out_shape, q.node)
        next_scale = q.scale if q.scale.size == 1 else q_scale
        return self.after_quant(after, shape, next_scale, value_range, final)

    def after_quant(self, ops, shape, scale, value_range, final):
        """The ops after a quantizer up to the next MAC layer: MaxPool / Reshape (``post_quant_ops``)
        and average pools (``fold_avg``). Returns ``(shape, scale, value_range, dequant)``, the
        dequantization only when ``final``."""
        i = next((k for k, op in enumerate(ops) if isinstance(op, AvgPoolOp)), None)
        if i is None:
            shape, tail = self.post_quant_ops(ops, shape, value_range, final)
            dequant = None
            if final:
                # reshapes are not layers: the last stage keeps its own channels
                stage = self.layers[-1].out_shape if self.layers else shape
                pc = _per_channel(np.asarray(scale).reshape(-1, *([1] * (len(stage) - 1))),
                                  stage, "output") if np.asarray(scale).size > 1 else \
                    np.full(stage[0], float(np.asarray(scale).ravel()[0]))
                dequant = Dequant(*self.affine_tail(tail, stage, pc, None))
            return shape, scale, value_range, dequant
        shape, _ = self.post_quant_ops(ops[:i], shape, value_range, final=False)
        return self.fold_avg(ops[i], ops[i + 1:], shape, scale, value_range, final)

    def fold_avg(self, op: AvgPoolOp, rest, shape, scale, value_range, final):
        """An average pool on integer activations (scale ``s[c]`` per channel).

        With a quantizer after it (the last one before the next layer; only elementwise ops,
        batch-norm and ReLU between): an :class:`AvgPool` layer whose thresholds act on the integer
        window sum ``S``, found by bisection over ``S`` of the reference's chain evaluated in
        float32 on ``float32(S) * s[c] / divisor`` (the mean as qonnx's float32 executor computes
        it from the sum), so the divisor is folded into the thresholds. Without a quantizer: at the
        end of the model an :class:`AvgPool` without thresholds (``S`` out; ``s[c] / divisor`` in
        the dequantization), before a MatMul/Gemm folded into its weights (:meth:`compose_avg`);
        anything else (e.g. a Conv next) is refused, naming the node.
        """
        where = f"node {op.node}"
        if len(shape) != 3:
            raise ThresherError(f"{where}: average pooling needs a (C, H, W) tensor, got {shape}")
        c, h, w = shape
        (kh, kw), (sh, sw), (pt, pl, pb, pr) = op.kernel, op.stride, op.pads
        out = (c, (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1)
        if min(out[1:]) < 1:
            raise ThresherError(f"{where}: kernel {op.kernel} larger than the input {shape}")
        s_c = _per_channel(np.asarray(scale, dtype=np.float64).reshape(
            -1, *([1] * (len(shape) - 1))), shape, where)
        probe = AvgPool(op.node, shape, out, op.kernel, op.stride, op.pads, value_range,
                        op.divisor)
        after_shape = (c,) if op.flatten else out
        last_q = max((k for k, x in enumerate(rest) if isinstance(x, Quantize)), default=None)
        if last_q is None:
            for x in rest:
                if isinstance(x, (MaxPoolOp, AvgPoolOp)):
                    raise ThresherError(f"node {x.node}: pooling after an average without a "
                                        "quantizer in between is not supported")
            if final:
                self.layers.append(probe)
                scale_c, bias_c = self.affine_tail(rest, out, s_c / op.divisor, None)
                return after_shape, None, probe.acc_range, Dequant(scale_c, bias_c)
            if any(not isinstance(x, ReshapeOp) for x in rest):
                bad = next(x for x in rest if not isinstance(x, ReshapeOp))
                raise ThresherError(f"node {bad.node}: {type(bad).__name__} between an average "
                                    "pool and the next layer, without a quantizer, is not "
                                    "supported")
            if np.any(s_c != s_c[0]):
                raise ThresherError(f"{where}: an average of per-channel scaled activations "
                                    "feeding a layer directly has no single input scale")
            self.pending_avg = (op, shape, out, value_range)
            flat = after_shape
            for x in rest:
                flat = x.shape
            return flat, np.asarray([s_c[0] / op.divisor]), probe.acc_range, None
        chain, q, after = _quantizer_chain(rest, last_q, "an average pool", out)
        s32 = s_c.astype(np.float32)[:, None]
        div32 = np.float32(op.divisor)

        def mean(total):                 # the reference's float32 mean of a window summing to S
            return (total.astype(np.float32) * s32) / div32

        y_lo, y_hi = probe.channel_acc_range()
        thresholds = _integer_thresholds(chain, y_lo, y_hi, None, None, value=mean)
        self.layers.append(AvgPool(op.node, shape, out, op.kernel, op.stride, op.pads,
                                   value_range, op.divisor, thresholds))
        q_scale = _per_channel(q.scale, out, q.node)
        next_scale = q.scale if q.scale.size == 1 else q_scale
        return self.after_quant(after, after_shape, next_scale, thresholds.out_range, final)

    def compose_avg(self, pending, where, ints):
        """A pending average pool (no quantizer after it) folded into the next dense layer:
        ``W'[o, c, y, x] = sum of W[o, c, i, j] over the pooled positions (i, j) whose window
        covers input pixel (y, x)`` (padding covers nothing). Exact: the layer's accumulator is
        then ``sum W' * a``, the window sums' weighted total, and its input scale ``s / divisor``.
        Returns the new weights (Cout, C * H * W) and input shape (C, H, W)."""
        op, in_shape, out, _ = pending
        c, h, w = in_shape
        _, ho, wo = out
        cout = ints.shape[0]
        if ints.shape[1] != c * ho * wo:
            raise ThresherError(f"{where}: weights {ints.shape} do not match the average pool "
                                f"{op.node}'s output {out}")
        wp = ints.reshape(cout, c, ho, wo)
        full = np.zeros((cout, c, h, w), dtype=np.int64)
        (kh, kw), (sh, sw), (pt, pl, _, _) = op.kernel, op.stride, op.pads
        for i in range(ho):
            for j in range(wo):
                y0, x0 = i * sh - pt, j * sw - pl
                ys, xs = slice(max(y0, 0), min(y0 + kh, h)), slice(max(x0, 0), min(x0 + kw, w))
                full[:, :, ys, xs] += wp[:, :, i, j][:, :, None, None]
        return full.reshape(cout, -1), in_shape

    def affine_tail(self, ops, shape, scale, bias):
        """Compose per-channel affine ops into ``out = a * v + b`` (float64, per channel)."""
        a = np.array(scale, dtype=np.float64)
        b = np.zeros_like(a) if bias is None else np.array(bias, dtype=np.float64)
        reshaped = False
        for op in ops:
            if isinstance(op, ReshapeOp):
                if int(np.prod(op.shape)) != int(np.prod(shape)):
                    raise ThresherError(f"node {op.node}: reshape changes the number of values")
                reshaped = True
                continue
            if reshaped and (not isinstance(op, Elementwise) or op.const.size != 1):
                raise ThresherError(f"node {op.node}: only scalar operations may follow a reshape "
                                    "of the last layer's output")
            if isinstance(op, Elementwise):
                c = _per_channel(op.const, shape, op.node)
                if op.op == "Mul":
                    a, b = a * c, b * c
                elif op.op == "Div":
                    a, b = a / c, b / c
                elif op.op == "Add":
                    b = b + c
                elif op.const_first:
                    a, b = -a, c - b
                else:
                    b = b - c
            elif isinstance(op, BatchNorm):
                k = op.gamma / np.sqrt(op.var + op.eps)
                a, b = a * k, (b - op.mean) * k + op.beta
            else:
                raise ThresherError(f"node {op.node}: {type(op).__name__} after the last layer is "
                                    "not supported (only scaling, bias and batch-norm)")
        return a, b


def fold(model: ImportedModel) -> IntegerNetwork:
    """Fold an imported model into an exact integer network (pure function)."""
    return _Folder(model).fold()
