"""The integer network: the small, immutable representation every other part of thresher reads.

The fold (``model_tools.fold``) produces it from an imported QONNX model; the golden engine
(``model_tools.golden``), the hardware generator (``hw``) and the simulators (``sim``) consume it.

Semantics (per sample; tensors are NCHW without the batch axis, channel axis first):

* :class:`InputQuantizer` turns the raw model input (float32) into integers by comparing each raw
  value with float32 thresholds (exact for every float32 input: the thresholds are found by
  bisection over float32 of the reference's own pre-processing and quantizer, evaluated in float32).
* :class:`Conv` / :class:`Dense` compute exact integer accumulators
  ``y[c] = sum_k w[c, k] * a[k]`` (a dense layer first flattens its input in C order), zero padding
  meaning an activation *value* of 0. Their optional :class:`Thresholds` turn ``y`` into the next
  integer activation; without one the layer outputs ``y`` itself (the last layer).
* :class:`Conv` with ``groups > 1`` is a grouped convolution (ONNX ``group``; ``groups == Cin``
  is depthwise): output channel ``o`` sees only the ``Cin / groups`` input channels of its group.
* :class:`MaxPool` takes the maximum of integer activation values (padding never wins).
* :class:`AvgPool` computes the exact integer *window sum* of integer activations (padding is the
  value 0); the reference's divisor is folded into its optional :class:`Thresholds` (or into the
  output's :class:`Dequant` scale when it is the last stage), so no division ever happens on
  integers.
* :class:`Add` sums two earlier integer tensors aligned to one scale (``a * 2^ka + b * 2^kb``, one
  shift 0: a residual connection), then its optional :class:`Thresholds` (the quantizer after the add).
* Layers form a graph given in topological order: layer ``i`` reads the output of layer ``i - 1``
  (the input quantizer's for ``i == 0``) unless its ``inputs`` names other earlier layers by index
  (``-1`` is the input quantizer's output). ``inputs=None`` is that default, so a chain network is
  written, saved and hashed as before (:meth:`IntegerNetwork.sources`).
* :class:`Dequant` maps the last stage's integers to the model's float output:
  ``out[c] = scale[c] * v[c] + bias[c]``, then the result is reshaped to ``output_shape``.
* :class:`HostOp` records (``Softmax``, ``LogSoftmax``, ``Sigmoid``, ``ArgMax``, ``TopK``) follow
  on the host, in order, on the dequantized output (``IntegerNetwork.host``); the model's output is
  the last one's (``IntegerNetwork.result_shape``).
* A typed input (``InputQuantizer.input_type``, e.g. ``UINT8`` or ``BIPOLAR``) is already the integer
  level: the input thresholds are the identity on that type's values, and values outside the type
  are refused (:func:`check_typed_input`).

Activation values are the *true* integers of the reference (e.g. -1, 0, +1 for a narrow signed 2-bit
quantizer), ``offset + step * count``; hardware that works on counts folds the offset into the next
layer itself.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple, Union

import numpy as np

from .errors import ThresherError
from .files import atomic_write_bytes

__all__ = [
    "Thresholds", "InputQuantizer", "Conv", "Dense", "MaxPool", "AvgPool", "Add", "Dequant", "IntegerNetwork",
    "Layer", "signed_bits", "HostOp", "HOST_OPS", "input_type_range", "identity_thresholds",
    "check_typed_input", "LAYER_KINDS", "range_text",
]


def signed_bits(lo: int, hi: int) -> int:
    """Bits of a two's-complement signal that holds every integer in ``[lo, hi]``."""
    lo, hi = int(lo), int(hi)
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def _frozen_array(a, dtype) -> np.ndarray:
    a = np.array(a, dtype=dtype)  # a private copy
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Thresholds:
    """A per-channel multi-threshold activation.

    ``count[c] = #{ j : direction[c] * v >= values[c, j] }`` and the output is
    ``offset + step * count``.

    Attributes
    ----------
    values : ndarray, shape (C, L)
        Ascending per row; ``int64`` on accumulators, ``float32`` on the raw input. ``C`` is the
        number of channels, or 1 when one set of thresholds applies to every channel.
    direction : ndarray of int8, shape (C,)
        +1, or -1 for a channel whose scale is negative (compare the negated value).
    offset : int
        The output value for ``count == 0``.
    step : int
        1 for integer quantizers, 2 for bipolar (-1/+1) outputs.
    """

    values: np.ndarray
    direction: np.ndarray
    offset: int
    step: int = 1

    def __post_init__(self):
        dtype = np.float32 if np.asarray(self.values).dtype.kind == "f" else np.int64
        values = _frozen_array(self.values, dtype)
        if values.ndim != 2:
            raise ValueError(f"threshold values must be 2-D (channels, levels), not {values.shape}")
        direction = _frozen_array(self.direction, np.int8)
        if direction.shape != (values.shape[0],) or not np.all(np.abs(direction) == 1):
            raise ValueError(f"direction must be +-1 per channel, not {direction!r}")
        if values.shape[1] and np.any(np.diff(values, axis=1) < 0):
            raise ValueError("threshold values must be ascending along each channel")
        if self.step < 1:
            raise ValueError(f"step must be positive, not {self.step!r}")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "direction", direction)
        object.__setattr__(self, "offset", int(self.offset))
        object.__setattr__(self, "step", int(self.step))

    @property
    def channels(self) -> int:
        return self.values.shape[0]

    @property
    def levels(self) -> int:
        """Number of thresholds per channel (outputs take ``levels + 1`` values)."""
        return self.values.shape[1]

    @property
    def out_range(self) -> tuple[int, int]:
        return self.offset, self.offset + self.step * self.levels

    @property
    def out_signed(self) -> bool:
        return self.offset < 0

    @property
    def out_bits(self) -> int:
        """Bits of the output value (signed if it can be negative)."""
        lo, hi = self.out_range
        return signed_bits(lo, hi) if lo < 0 else max(1, int(hi).bit_length())

    @property
    def count_bits(self) -> int:
        """Bits of the count ``0 .. levels`` that a comparator bank produces."""
        return max(1, int(self.levels).bit_length())

    def apply(self, v: np.ndarray) -> np.ndarray:
        """The activation of ``v`` (B, C, ...) along channel axis 1, as int64 values (the golden
        step every thresholded stage ends with)."""
        out = np.empty(v.shape, dtype=np.int64)
        per_channel = self.channels > 1
        for c in range(v.shape[1] if per_channel else 1):
            sel = (slice(None), c) if per_channel else (slice(None),)
            x = v[sel] * self.direction[c] if self.direction[c] < 0 else v[sel]
            # count of thresholds <= x, i.e. #{j : x >= T[j]} (thresholds ascending)
            count = np.searchsorted(self.values[c], x, side="right")
            out[sel] = self.offset + self.step * count
        return out

    def text(self, acc_lo: np.ndarray, acc_hi: np.ndarray) -> str:
        """``CxL`` for reports, with how many channels compare negated values and how many are
        constant over the per-channel input bounds ``acc_lo .. acc_hi`` (shape (C,) each)."""
        neg = int((self.direction < 0).sum())
        v_lo = np.where(self.direction > 0, acc_lo, -acc_hi)[:, None]
        v_hi = np.where(self.direction > 0, acc_hi, -acc_lo)[:, None]
        const = int(((self.values <= v_lo) | (self.values > v_hi)).all(axis=1).sum()) \
            if self.levels else self.channels
        extras = [f"{neg} neg"] if neg else []
        if const:
            extras.append(f"{const} const")
        return f"{self.channels}x{self.levels}" + (f" ({', '.join(extras)})" if extras else "")


# -- what every kind carries beside its definition: golden step, info row, fingerprint -----------

_ALWAYS = object()      # FingerprintField.unless: never left out


class FingerprintField(NamedTuple):
    """One entry of a kind's fingerprint: the attribute ``name`` (a dataclass field or a property),
    preceded by the name itself when ``tagged``, and left out when its value equals ``unless`` (how
    fields added later with a neutral default kept the hashes of the networks before them)."""

    name: str
    tagged: bool = False
    unless: object = _ALWAYS


class _Fingerprinted:
    """Mixin for a fingerprinted dataclass: ``_FINGERPRINT`` lists, in hashing order, what
    identifies an object of the kind; ``FINGERPRINT_EXCLUDED`` maps every other dataclass field to
    the reason it is left out. A test checks that no field is in neither, so that a new field cannot
    be silently left out of :func:`hw.board.frame.network_hash`."""

    _FINGERPRINT: tuple = ()
    FINGERPRINT_EXCLUDED: dict = {}

    def _fingerprint_head(self) -> tuple:
        """Items hashed before the fields: the kind's name."""
        return (type(self).__name__,)

    @classmethod
    def fingerprint_fields(cls) -> tuple[str, ...]:
        """The names of the fields (and properties) that identify an object of this kind."""
        return tuple(f.name for f in cls._FINGERPRINT)

    def fingerprint(self, index: int | None = None) -> tuple:
        """The items that identify this object, in hashing order: arrays, tuples, numbers, strings,
        ``None``; a :class:`Thresholds` as its values, direction, offset and step. ``index`` is a
        layer's position in its network: ``inputs=None`` and ``(index - 1,)`` both mean the previous
        layer and are both left out (chains hash as before graphs existed)."""
        items = list(self._fingerprint_head())
        for f in self._FINGERPRINT:
            value, unless = getattr(self, f.name), f.unless
            if f.name == "inputs":
                value = (index - 1,) if value is None else tuple(value)
                unless = (index - 1,)
            if unless is not _ALWAYS and value == unless:
                continue
            if f.tagged:
                items.append(f.name)
            if isinstance(value, Thresholds):
                items += [value.values, value.direction, value.offset, value.step]
            else:
                items.append(value)
        return tuple(items)


#: Why a layer's ``name`` is not in its fingerprint.
_NAME_REASON = "a label for reports; renaming a layer does not change what it computes"
#: Why a layer's ``in_range`` is not: it bounds, it does not compute.
_IN_RANGE_REASON = ("a bound on the input values, used to size accumulators; the results do not "
                    "depend on it, and the stages that produce those values are fingerprinted")


def range_text(lo: int, hi: int) -> str:
    """``u2``, ``s14``: the narrowest integer type holding ``[lo, hi]``, as reports show it."""
    bits, signed = bits_for_range(lo, hi)
    return f"{'s' if signed else 'u'}{bits}"


def _stride_text(stride) -> str:
    sh, sw = stride
    return f"{sh}" if sh == sw else f"{sh}x{sw}"


class _Stage(_Fingerprinted):
    """Mixin for an integer layer kind: :meth:`golden` runs ``accumulate`` (the kind's own integer
    function on a batch) and then the optional thresholds; ``arity`` is how many earlier tensors it
    reads."""

    arity = 1

    def golden(self, *inputs: np.ndarray) -> np.ndarray:
        """The stage's output on a batch: each input ``(B, ...)`` is reshaped (C order) to
        ``(B, *in_shape)``, combined by the kind's ``accumulate``, then thresholded if the stage
        has an activation. Integer only (int64)."""
        if len(inputs) != self.arity:
            raise ValueError(f"{self.name}: {len(inputs)} inputs for a {type(self).__name__}")
        args = [np.asarray(a, dtype=np.int64) for a in inputs]
        args = [a.reshape((a.shape[0],) + self.in_shape) for a in args]
        y = self.accumulate(*args)
        return y if self.activation is None else self.activation.apply(y)

    def channel_weights(self) -> np.ndarray | None:
        """For a *channelwise* kind (every output channel reads its own input channel only: a
        depthwise conv, a window sum, an add), its weights per channel and tap, (C, taps), which
        the hardware runs with lanes over channels; None for a kind that mixes channels or has
        no accumulator."""
        return None

    def _accumulator_row(self, kind: str, w_bits: str) -> dict:
        """The ``info`` row of a stage with an accumulator (all but max pooling)."""
        lo, hi = self.acc_range
        t = self.activation
        return {"kind": kind, "w_bits": w_bits,
                "a_bits": range_text(*self.out_range) if t is not None else "-",
                "macs": self.macs, "params": self.params, "acc": f"s{self.acc_bits} [{lo}, {hi}]",
                "thresholds": "- (raw accumulators out)" if t is None
                else t.text(*self.channel_acc_range())}


def _pad(a: np.ndarray, pads, value) -> np.ndarray:
    """(B, C, H, W) padded by ``pads`` (top, left, bottom, right) with ``value``."""
    top, left, bottom, right = pads
    if not any(pads):
        return a
    return np.pad(a, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def _windows(a: np.ndarray, kernel, stride) -> np.ndarray:
    """(B, C, H, W) -> (B, C, Ho, Wo, kh, kw) view of every window."""
    kh, kw = kernel
    sh, sw = stride
    win = np.lib.stride_tricks.sliding_window_view(a, (kh, kw), axis=(2, 3))
    return win[:, :, ::sh, ::sw]


# -- typed inputs ----------------------------------------------------------------------------------

_TYPE_RE = re.compile(r"(U?)INT([1-9][0-9]*)")
#: Widest INTn / UINTn input: an identity quantizer has 2^n - 1 thresholds.
MAX_INPUT_TYPE_BITS = 16


def input_type_range(name: str) -> tuple[int, int]:
    """``(lo, hi)`` of an integer input type: ``BIPOLAR`` (-1, +1 only), ``BINARY``, ``UINTn``,
    ``INTn`` (qonnx/FINN ``DataType`` names); :class:`ThresherError` for anything else."""
    name = str(name).upper()
    if name == "BIPOLAR":
        return -1, 1
    if name == "BINARY":
        return 0, 1
    m = _TYPE_RE.fullmatch(name)
    if m is None or not 1 <= int(m.group(2)) <= MAX_INPUT_TYPE_BITS:
        raise ThresherError(f"input type {name}: give BIPOLAR, BINARY, UINTn or INTn "
                            f"(n from 1 to {MAX_INPUT_TYPE_BITS})")
    bits = int(m.group(2))
    return (0, (1 << bits) - 1) if m.group(1) else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def identity_thresholds(name: str) -> "Thresholds":
    """float32 input thresholds with ``level(x) = x`` for every value ``x`` of the type (exact:
    integer thresholds ``lo + 1 .. hi`` are float32-exact up to 2^24; BIPOLAR: one at 0, step 2)."""
    lo, hi = input_type_range(name)
    if str(name).upper() == "BIPOLAR":
        return Thresholds(np.zeros((1, 1), np.float32), [1], -1, 2)
    return Thresholds(np.arange(lo + 1, hi + 1, dtype=np.float32)[None, :], [1], lo, 1)


def check_typed_input(name: str, x: np.ndarray) -> None:
    """:class:`ThresherError` naming the first value of ``x`` that is not of the input type."""
    lo, hi = input_type_range(name)
    x = np.asarray(x)
    bad = (x != np.round(x)) | (x < lo) | (x > hi)
    if str(name).upper() == "BIPOLAR":
        bad |= x == 0
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        want = "-1 or +1" if str(name).upper() == "BIPOLAR" else f"an integer in {lo}..{hi}"
        raise ThresherError(f"input value {float(x[index]):g} at index {index} is not of the model's "
                            f"input type {str(name).upper()} ({want})")


@dataclass(frozen=True, eq=False)
class InputQuantizer(_Fingerprinted):
    """Raw model input (float32) to integer activations, by float32 thresholds.

    The thresholds apply per channel (axis 0 of ``in_shape``) or to every value (C == 1). The
    integer tensor is then reshaped to ``out_shape`` (the model may flatten before quantizing).

    ``input_type`` (e.g. ``"UINT8"``, ``"BIPOLAR"``) marks a model that starts with no quantizer
    and whose input is already integer levels of that type; the thresholds are then the identity
    (:func:`identity_thresholds`) and other raw values are refused. ``None``: a float input.
    """

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    thresholds: Thresholds
    input_type: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "in_shape", tuple(int(d) for d in self.in_shape))
        object.__setattr__(self, "out_shape", tuple(int(d) for d in self.out_shape))
        if self.thresholds.values.dtype != np.float32:
            raise ValueError("input thresholds are float32 values on the raw input")
        if self.input_type is not None:
            object.__setattr__(self, "input_type", str(self.input_type).upper())
            input_type_range(self.input_type)      # a known type name

    @property
    def out_range(self) -> tuple[int, int]:
        return self.thresholds.out_range

    _FINGERPRINT = (FingerprintField("in_shape"), FingerprintField("out_shape"),
                    FingerprintField("thresholds"), FingerprintField("input_type", tagged=True))

    def _fingerprint_head(self) -> tuple:
        return ()

    def integer_thresholds(self, lo: int, hi: int) -> Thresholds:
        """The same quantizer for raw inputs known to be integers in ``[lo, hi]`` (e.g. 0..255 pixels).

        ``x >= t`` for an integer ``x`` is ``x >= ceil(t)``; thresholds are clamped into the range of
        ``direction * x`` plus one, so that the result is exact for every integer in range.
        """
        t = self.thresholds
        values = np.empty(t.values.shape, dtype=np.int64)
        for c in range(t.channels):
            d = int(t.direction[c])
            vlo, vhi = (lo, hi) if d > 0 else (-hi, -lo)
            with np.errstate(invalid="ignore"):
                ceil = np.ceil(t.values[c].astype(np.float64))
            ceil = np.where(np.isneginf(ceil), vlo, np.where(np.isposinf(ceil), vhi + 1, ceil))
            values[c] = np.clip(ceil, vlo, vhi + 1).astype(np.int64)
        return Thresholds(values, t.direction, t.offset, t.step)


def _check_window_shape(layer, channels: int) -> None:
    """ValueError unless ``layer.out_shape`` is what its kernel, stride and pads give (floor)."""
    _, h, w = layer.in_shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = layer.kernel, layer.stride, layer.pads
    want = (channels, (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1)
    if min(sh, sw) < 1 or tuple(layer.out_shape) != want or min(want[1:]) < 1:
        raise ValueError(f"{layer.name}: input {layer.in_shape}, kernel {layer.kernel}, stride "
                         f"{layer.stride}, pads {layer.pads} give {want}, not {layer.out_shape}")


def _set_inputs(layer) -> None:
    """Normalise ``layer.inputs`` (``None``: the previous layer) to a tuple of ints."""
    if layer.inputs is not None:
        object.__setattr__(layer, "inputs", tuple(int(i) for i in layer.inputs))
        if any(i < -1 for i in layer.inputs):
            raise ValueError(f"{layer.name}: input indices must be -1 (the input) or a layer index, "
                             f"not {layer.inputs}")


class _Accumulating(_Stage):
    """Mixin for a kind that computes integer accumulators (MAC layers, window sums, adds): from
    its exact per-channel bounds ``channel_acc_range()``, the accumulator's range and bits, and
    the range of what it outputs (its thresholds' levels, or the accumulators themselves)."""

    @property
    def acc_range(self) -> tuple[int, int]:
        """Worst-case accumulator range over all channels and inputs in range (0 included)."""
        lo, hi = self.channel_acc_range()
        return int(min(lo.min(), 0)), int(max(hi.max(), 0))

    @property
    def acc_bits(self) -> int:
        return signed_bits(*self.acc_range)

    @property
    def out_range(self) -> tuple[int, int]:
        return self.activation.out_range if self.activation is not None else self.acc_range


@dataclass(frozen=True, eq=False)
class _MACLayer(_Accumulating):
    """Common part of :class:`Conv` and :class:`Dense`."""

    name: str
    weights: np.ndarray
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    in_range: tuple[int, int]
    weight_bits: int
    activation: Thresholds | None

    def _check(self):
        object.__setattr__(self, "weights", _frozen_array(self.weights, np.int64))
        object.__setattr__(self, "in_shape", tuple(int(d) for d in self.in_shape))
        object.__setattr__(self, "out_shape", tuple(int(d) for d in self.out_shape))
        object.__setattr__(self, "in_range", (int(self.in_range[0]), int(self.in_range[1])))
        if self.activation is not None and self.activation.channels not in (1, self.out_channels):
            raise ValueError(f"{self.name}: {self.activation.channels} threshold channels "
                             f"for {self.out_channels} outputs")

    @property
    def out_channels(self) -> int:
        return self.weights.shape[0]

    @property
    def fan_in(self) -> int:
        return int(np.prod(self.weights.shape[1:]))

    @property
    def bipolar_weights(self) -> bool:
        return self.weight_bits == 1

    def _term_range(self, padded: bool) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.in_range
        if padded:
            lo, hi = min(lo, 0), max(hi, 0)
        w = self.weights.reshape(self.out_channels, -1)
        return np.minimum(w * lo, w * hi), np.maximum(w * lo, w * hi)

    def channel_acc_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact worst-case accumulator bounds per output channel, shape (C,) each."""
        tlo, thi = self._term_range(self._padded)
        return tlo.sum(axis=1), thi.sum(axis=1)

    @property
    def params(self) -> int:
        return int(self.weights.size)

    @property
    def macs(self) -> int:
        return int(np.prod(self.out_shape)) * self.fan_in

    FINGERPRINT_EXCLUDED = {
        "name": _NAME_REASON,
        "in_range": _IN_RANGE_REASON,
        "weight_bits": "the declared weight width; the weights themselves are fingerprinted, and a "
                       "width changes how they are stored, not what the layer computes",
    }

    def _weight_text(self) -> str:
        return "bipolar" if self.bipolar_weights else f"s{self.weight_bits}"


@dataclass(frozen=True, eq=False)
class Conv(_MACLayer):
    """A kh x kw convolution on a (C, H, W) integer tensor, optionally grouped.

    ``weights`` has shape (Cout, Cin / groups, kh, kw) as in ONNX; ``pads`` is (top, left, bottom,
    right); kernels, strides and pads need not be square or symmetric. With ``groups = G`` the
    input and output channels are split into ``G`` equal consecutive groups and output channel
    ``o`` (of group ``g = o // (Cout / G)``) sums over input channels
    ``g * Cin / G .. (g + 1) * Cin / G - 1`` only (``G == Cin``: depthwise).
    """

    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    groups: int = 1
    inputs: tuple[int, ...] | None = None

    def __post_init__(self):
        self._check()
        _set_inputs(self)
        object.__setattr__(self, "stride", tuple(int(s) for s in self.stride))
        object.__setattr__(self, "pads", tuple(int(p) for p in self.pads))
        object.__setattr__(self, "groups", int(self.groups))
        if self.weights.ndim != 4 or len(self.in_shape) != 3:
            raise ValueError(f"{self.name}: conv weights must be 4-D and input (C, H, W)")
        g = self.groups
        if g < 1 or self.in_shape[0] % g or self.out_channels % g or \
                self.weights.shape[1] * g != self.in_shape[0]:
            raise ValueError(f"{self.name}: weights {self.weights.shape} with groups={g} do not "
                             f"match input {self.in_shape}")
        _check_window_shape(self, self.out_channels)

    _FINGERPRINT = (FingerprintField("in_shape"), FingerprintField("out_shape"),
                    FingerprintField("inputs", tagged=True), FingerprintField("weights"),
                    FingerprintField("activation"), FingerprintField("stride"),
                    FingerprintField("pads"), FingerprintField("kernel"),
                    FingerprintField("groups", tagged=True, unless=1))

    def accumulate(self, a: np.ndarray) -> np.ndarray:
        """Integer convolution, (B, Cin, H, W) -> accumulators (B, Cout, Ho, Wo); a grouped
        convolution contracts each group's input channels with its own output channels only."""
        win = _windows(_pad(a, self.pads, 0), self.kernel, self.stride)
        ho, wo = self.out_shape[1:]
        win = win[:, :, :ho, :wo]
        g = self.groups
        cin_g, cout_g = self.in_shape[0] // g, self.out_channels // g
        parts = []
        for k in range(g):
            # (B, Cin/g, Ho, Wo, kh, kw) x (Cout/g, Cin/g, kh, kw) -> (B, Ho, Wo, Cout/g)
            parts.append(np.tensordot(win[:, k * cin_g:(k + 1) * cin_g],
                                      self.weights[k * cout_g:(k + 1) * cout_g],
                                      axes=([1, 4, 5], [1, 2, 3])))
        y = parts[0] if g == 1 else np.concatenate(parts, axis=3)
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2))

    def describe(self) -> dict:
        """The ``info`` row: kind ``Conv 3x3/1`` (kernel / stride), ``depthwise`` or ``groups G``."""
        (kh, kw) = self.kernel
        kind = f"Conv {kh}x{kw}/{_stride_text(self.stride)}"
        if self.groups == self.in_shape[0] and self.groups > 1:
            kind += " depthwise"
        elif self.groups > 1:
            kind += f" groups {self.groups}"
        return self._accumulator_row(kind, self._weight_text())

    @property
    def kernel(self) -> tuple[int, int]:
        return self.weights.shape[2], self.weights.shape[3]

    @property
    def _padded(self) -> bool:
        return any(self.pads)

    @property
    def depthwise(self) -> bool:
        """One input channel per output channel, each its own (``groups == Cin == Cout``)."""
        return self.groups > 1 and self.groups == self.in_shape[0] == self.out_channels

    def channel_weights(self) -> np.ndarray | None:
        """A depthwise convolution's weights per channel and tap, (C, kh * kw) in (ky, kx)
        order; None for any other convolution (it mixes channels)."""
        if not self.depthwise:
            return None
        return self.weights.reshape(self.out_channels, -1)

    def dense_weights(self) -> np.ndarray:
        """The same convolution with ``groups = 1``: (Cout, Cin, kh, kw), the weights of other
        groups' input channels zero. Equal results, but ``groups`` times the MACs."""
        if self.groups == 1:
            return self.weights
        cout, cin_g, kh, kw = self.weights.shape
        cout_g = cout // self.groups
        full = np.zeros((cout, cin_g * self.groups, kh, kw), dtype=np.int64)
        for o in range(cout):
            g = o // cout_g
            full[o, g * cin_g:(g + 1) * cin_g] = self.weights[o]
        return full


@dataclass(frozen=True, eq=False)
class Dense(_MACLayer):
    """A fully connected layer: ``weights`` (Cout, Cin) on the C-order flattening of the input."""

    inputs: tuple[int, ...] | None = None

    def __post_init__(self):
        self._check()
        _set_inputs(self)
        if self.weights.ndim != 2 or self.weights.shape[1] != int(np.prod(self.in_shape)):
            raise ValueError(f"{self.name}: dense weights {self.weights.shape} do not match input "
                             f"{self.in_shape}")

    _padded = False

    _FINGERPRINT = (FingerprintField("in_shape"), FingerprintField("out_shape"),
                    FingerprintField("inputs", tagged=True), FingerprintField("weights"),
                    FingerprintField("activation"))

    def accumulate(self, a: np.ndarray) -> np.ndarray:
        """Integer matrix-vector product on the C-order flattening of each sample."""
        return a.reshape(a.shape[0], -1) @ self.weights.T

    def describe(self) -> dict:
        """The ``info`` row: kind ``Dense``."""
        return self._accumulator_row("Dense", self._weight_text())


@dataclass(frozen=True, eq=False)
class MaxPool(_Stage):
    """Max pooling of integer activation values; ``pads`` (top, left, bottom, right) never win."""

    name: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    in_range: tuple[int, int] = (0, 0)
    inputs: tuple[int, ...] | None = None

    def __post_init__(self):
        for f in ("in_shape", "out_shape", "kernel", "stride", "pads", "in_range"):
            object.__setattr__(self, f, tuple(int(d) for d in getattr(self, f)))
        _set_inputs(self)

    @property
    def out_range(self) -> tuple[int, int]:
        return self.in_range

    macs = 0
    params = 0
    activation = None

    _FINGERPRINT = (FingerprintField("in_shape"), FingerprintField("out_shape"),
                    FingerprintField("inputs", tagged=True), FingerprintField("stride"),
                    FingerprintField("pads"), FingerprintField("kernel"))
    FINGERPRINT_EXCLUDED = {"name": _NAME_REASON, "in_range": _IN_RANGE_REASON}

    def accumulate(self, a: np.ndarray) -> np.ndarray:
        """Max pooling of integer activations; padding is the dtype's minimum, so it never wins."""
        win = _windows(_pad(a, self.pads, np.iinfo(np.int64).min), self.kernel, self.stride)
        ho, wo = self.out_shape[1:]
        return win[:, :, :ho, :wo].max(axis=(4, 5))

    def describe(self) -> dict:
        """The ``info`` row: kind ``MaxPool 2x2``; no weights, accumulator or thresholds."""
        return {"kind": f"MaxPool {self.kernel[0]}x{self.kernel[1]}", "w_bits": "-",
                "a_bits": range_text(*self.out_range), "macs": 0, "params": 0, "acc": "-",
                "thresholds": "-"}


class _Weightless:
    """Mixin for a kind with no stored weights (a window sum's implicit weights are all 1, an
    add's are its shifts): no weight bits, no parameters."""

    weight_bits = 0
    bipolar_weights = False
    params = 0


@dataclass(frozen=True, eq=False)
class AvgPool(_Weightless, _Accumulating):
    """Average pooling as an exact integer window sum, per channel.

    ``y[c, oh, ow] = sum over the kh x kw window of a[c, ...]`` with zero padding (``pads`` top,
    left, bottom, right): an integer. The reference divides ``y`` by ``divisor`` (the window size,
    padding counted: ONNX ``count_include_pad=1``, or a window with no padding) and quantizes; that
    division and the quantizer are folded into ``activation`` (thresholds on ``y``), found by
    bisection over the reference's own float computation. Without an activation (the last stage)
    the stage outputs ``y`` and the divisor is in the output's :class:`Dequant` scale.

    ``divisor`` is recorded for reports; the integer computation never divides. Its MACs are the
    additions of the window sum (``kh * kw`` per output), it has no parameters.
    """

    name: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]
    in_range: tuple[int, int]
    divisor: int
    activation: Thresholds | None = None
    inputs: tuple[int, ...] | None = None

    def __post_init__(self):
        for f in ("in_shape", "out_shape", "kernel", "stride", "pads", "in_range"):
            object.__setattr__(self, f, tuple(int(d) for d in getattr(self, f)))
        object.__setattr__(self, "divisor", int(self.divisor))
        _set_inputs(self)
        if len(self.in_shape) != 3 or len(self.out_shape) != 3 or \
                self.out_shape[0] != self.in_shape[0]:
            raise ValueError(f"{self.name}: average pooling maps (C, H, W) to (C, Ho, Wo), not "
                             f"{self.in_shape} -> {self.out_shape}")
        if self.activation is not None and self.activation.channels not in (1, self.out_channels):
            raise ValueError(f"{self.name}: {self.activation.channels} threshold channels "
                             f"for {self.out_channels} outputs")
        _check_window_shape(self, self.in_shape[0])

    @property
    def out_channels(self) -> int:
        return self.in_shape[0]

    @property
    def fan_in(self) -> int:
        return self.kernel[0] * self.kernel[1]

    @property
    def groups(self) -> int:
        return self.in_shape[0]


    def channel_weights(self) -> np.ndarray:
        """The window sum's implicit weights per channel and tap: all 1, (C, kh * kw)."""
        return np.ones((self.out_channels, self.fan_in), dtype=np.int64)

    def dense_weights(self) -> np.ndarray:
        """The window sum as a plain convolution: (C, C, kh, kw), 1 on the channel diagonal."""
        c = self.in_shape[0]
        w = np.zeros((c, c) + self.kernel, dtype=np.int64)
        w[np.arange(c), np.arange(c)] = 1
        return w

    def channel_acc_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact worst-case window-sum bounds per channel (padding contributes 0)."""
        lo, hi = self.in_range
        if any(self.pads):
            lo, hi = min(lo, 0), max(hi, 0)
        n, c = self.fan_in, self.out_channels
        return np.full(c, n * lo, dtype=np.int64), np.full(c, n * hi, dtype=np.int64)

    @property
    def macs(self) -> int:
        return int(np.prod(self.out_shape)) * self.fan_in

    _FINGERPRINT = (FingerprintField("in_shape"), FingerprintField("out_shape"),
                    FingerprintField("inputs", tagged=True), FingerprintField("activation"),
                    FingerprintField("stride"), FingerprintField("pads"),
                    FingerprintField("kernel"), FingerprintField("groups", tagged=True, unless=1),
                    FingerprintField("divisor", tagged=True))
    FINGERPRINT_EXCLUDED = {"name": _NAME_REASON, "in_range": _IN_RANGE_REASON}

    def accumulate(self, a: np.ndarray) -> np.ndarray:
        """Integer window sums (zero padding), (B, C, H, W) -> (B, C, Ho, Wo)."""
        win = _windows(_pad(a, self.pads, 0), self.kernel, self.stride)
        ho, wo = self.out_shape[1:]
        return win[:, :, :ho, :wo].sum(axis=(4, 5))

    def describe(self) -> dict:
        """The ``info`` row: kind ``AvgPool 2x2/2 /4`` (kernel / stride, and the divisor that its
        thresholds fold in)."""
        (kh, kw) = self.kernel
        return self._accumulator_row(f"AvgPool {kh}x{kw}/{_stride_text(self.stride)} "
                                     f"/{self.divisor}", "-")


@dataclass(frozen=True, eq=False)
class Add(_Weightless, _Accumulating):
    """The integer sum of two earlier tensors of one shape, aligned to one scale (a residual add).

    ``y = a * 2^shifts[0] + b * 2^shifts[1]`` elementwise, ``a`` and ``b`` the outputs of the layers
    ``inputs[0]`` and ``inputs[1]`` (reshaped to ``in_shape``). The reference adds ``a * s_a`` and
    ``b * s_b``; equal scales give shifts (0, 0), a ratio ``s_a / s_b = 2^k`` shifts the coarser
    input left by ``|k|`` so that ``y`` counts steps of the finer scale. The quantizer after the add
    (and any batch-norm, ReLU, scaling before it) is folded into ``activation``: thresholds on ``y``.
    Without an activation (the last stage) ``y`` is output and the finer scale is in the
    :class:`Dequant`.

    ``in_ranges`` are the two inputs' value ranges; the accumulator range is exact: the sum of the
    two shifted ranges. Its MACs are the additions (one per output value), it has no parameters.
    """

    name: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    inputs: tuple[int, ...]
    in_ranges: tuple[tuple[int, int], tuple[int, int]]
    shifts: tuple[int, int] = (0, 0)
    activation: Thresholds | None = None

    def __post_init__(self):
        for f in ("in_shape", "out_shape", "shifts"):
            object.__setattr__(self, f, tuple(int(d) for d in getattr(self, f)))
        object.__setattr__(self, "in_ranges",
                           tuple((int(lo), int(hi)) for lo, hi in self.in_ranges))
        if self.inputs is None or len(tuple(self.inputs)) != 2:
            raise ValueError(f"{self.name}: an add names exactly two input layers, not {self.inputs}")
        _set_inputs(self)
        if len(self.in_ranges) != 2 or len(self.shifts) != 2 or min(self.shifts) != 0 or \
                max(self.shifts) > 32:
            raise ValueError(f"{self.name}: two input ranges and two shifts (one of them 0) needed, "
                             f"not {self.in_ranges}, {self.shifts}")
        if self.in_shape != self.out_shape:
            raise ValueError(f"{self.name}: an add keeps its shape, not {self.in_shape} -> "
                             f"{self.out_shape}")
        if self.activation is not None and self.activation.channels not in (1, self.out_channels):
            raise ValueError(f"{self.name}: {self.activation.channels} threshold channels "
                             f"for {self.out_channels} outputs")

    @property
    def out_channels(self) -> int:
        return self.in_shape[0]

    fan_in = 2

    def channel_weights(self) -> np.ndarray:
        """The add's implicit weights per channel and input: ``(2^ka, 2^kb)``, (C, 2)."""
        ka, kb = self.shifts
        return np.tile(np.array([1 << ka, 1 << kb], dtype=np.int64), (self.out_channels, 1))

    def channel_acc_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact bounds of the aligned sum per channel: the sum of both shifted input ranges."""
        (alo, ahi), (blo, bhi) = self.in_ranges
        ka, kb = self.shifts
        lo, hi = (alo << ka) + (blo << kb), (ahi << ka) + (bhi << kb)
        c = self.out_channels
        return np.full(c, lo, dtype=np.int64), np.full(c, hi, dtype=np.int64)

    @property
    def macs(self) -> int:
        return int(np.prod(self.out_shape))

    arity = 2
    _FINGERPRINT = (FingerprintField("in_shape"), FingerprintField("out_shape"),
                    FingerprintField("inputs", tagged=True),
                    FingerprintField("shifts", tagged=True, unless=(0, 0)),
                    FingerprintField("activation"))
    FINGERPRINT_EXCLUDED = {
        "name": _NAME_REASON,
        "in_ranges": "bounds on the two inputs, used to size the sum; the results do not depend "
                     "on them, and the stages that produce the inputs are fingerprinted",
    }

    def accumulate(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The aligned integer sum ``a * 2^ka + b * 2^kb`` of two (B, *in_shape) tensors."""
        ka, kb = self.shifts
        return (a << ka) + (b << kb)

    def describe(self) -> dict:
        """The ``info`` row: kind ``Add``, ``Add (a<<k)`` or ``Add (b<<k)`` (the shifted input)."""
        ka, kb = self.shifts
        kind = "Add" + (f" (a<<{ka})" if ka else f" (b<<{kb})" if kb else "")
        return self._accumulator_row(kind, "-")


Layer = Union[Conv, Dense, MaxPool, AvgPool, Add]
#: Every integer layer kind (what :data:`Layer` names), for code that iterates the kinds.
LAYER_KINDS = (Conv, Dense, MaxPool, AvgPool, Add)


@dataclass(frozen=True, eq=False)
class Dequant:
    """The host-side float output: ``scale[c] * v + bias[c]`` on channel axis 0 (float64, (C,))."""

    scale: np.ndarray
    bias: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "scale", _frozen_array(self.scale, np.float64))
        object.__setattr__(self, "bias", _frozen_array(self.bias, np.float64))
        if self.scale.shape != self.bias.shape or self.scale.ndim != 1:
            raise ValueError("dequant scale and bias must be 1-D and of equal length")


# -- host-side tails after Dequant ------------------------------------------------------------------

def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x, axis):
    m = x - x.max(axis=axis, keepdims=True)
    return m - np.log(np.exp(m).sum(axis=axis, keepdims=True))


def _sigmoid(x, axis):
    return 1.0 / (1.0 + np.exp(-x))


def _argmax(x, op):
    if op.select_last_index:
        flipped = np.flip(x, axis=op.axis)
        idx = x.shape[op.axis] - 1 - flipped.argmax(axis=op.axis)
    else:
        idx = x.argmax(axis=op.axis)
    idx = idx.astype(np.int64)
    return np.expand_dims(idx, op.axis) if op.keepdims else idx


def _topk(x, op):
    # ONNX/onnxruntime order: by value, equal values by ascending index (a stable sort)
    order = np.argsort(-x if op.largest else x, axis=op.axis, kind="stable")
    idx = np.take(order, np.arange(op.k), axis=op.axis).astype(np.int64)
    return np.take_along_axis(x, idx, axis=op.axis) if op.output == 0 else idx


def _float(fn):
    """An elementwise/normalising op: computed in float64 on its float32 input, float32 out."""
    def apply(x, op):
        shape = x.shape
        x = np.asarray(x, dtype=np.float64)
        if op.flatten:      # opset < 13 Softmax/LogSoftmax: the axes from ``axis`` on, as one
            x = x.reshape(shape[:op.axis] + (-1,))
        return fn(x, op.axis).reshape(shape).astype(np.float32)
    return apply


#: The host ops and their golden numpy functions, ``f(x, op)`` on a batch ``(B, *op.in_shape)``.
HOST_OPS = {
    "Softmax": _float(_softmax),
    "LogSoftmax": _float(_log_softmax),
    "Sigmoid": _float(_sigmoid),
    "ArgMax": _argmax,
    "TopK": _topk,
}


@dataclass(frozen=True, eq=False)
class HostOp(_Fingerprinted):
    """One operation the host applies after :class:`Dequant` (see :data:`HOST_OPS`).

    Attributes
    ----------
    kind : str
        ``Softmax``, ``LogSoftmax``, ``Sigmoid``, ``ArgMax`` or ``TopK``.
    in_shape, out_shape : tuple of int
        Per sample (batch axis removed).
    axis : int
        Axis of a batch ``(B, *in_shape)`` (ONNX's own axis, made non-negative; never 0).
    keepdims, select_last_index : bool
        ``ArgMax``'s attributes.
    k, largest : int, bool
        ``TopK``'s; ``output`` is the output the model returns: 0 the values, 1 the indices.
    flatten : bool
        ``Softmax``/``LogSoftmax`` before opset 13: normalise over all axes from ``axis`` on.
    """

    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    axis: int = 1
    keepdims: bool = True
    select_last_index: bool = False
    k: int = 1
    largest: bool = True
    output: int = 0
    flatten: bool = False

    def __post_init__(self):
        if self.kind not in HOST_OPS:
            raise ValueError(f"unknown host op {self.kind!r}; known: {', '.join(HOST_OPS)}")
        for f in ("in_shape", "out_shape"):
            object.__setattr__(self, f, tuple(int(d) for d in getattr(self, f)))
        for f in ("axis", "k", "output"):
            object.__setattr__(self, f, int(getattr(self, f)))
        for f in ("keepdims", "select_last_index", "largest", "flatten"):
            object.__setattr__(self, f, bool(getattr(self, f)))
        if not 1 <= self.axis <= len(self.in_shape):
            raise ValueError(f"{self.kind}: axis {self.axis} is not a per-sample axis of "
                             f"{self.in_shape}")

    _FINGERPRINT = tuple(FingerprintField(name) for name in (
        "kind", "in_shape", "out_shape", "axis", "keepdims", "select_last_index", "k", "largest",
        "output", "flatten"))

    def _fingerprint_head(self) -> tuple:
        return ("host",)

    @property
    def integer_output(self) -> bool:
        """Whether the op returns int64 indices (ArgMax, TopK's indices) instead of float32."""
        return self.kind == "ArgMax" or (self.kind == "TopK" and self.output == 1)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The golden function on a batch ``(B, *in_shape)``."""
        return HOST_OPS[self.kind](x, self)

    def describe(self) -> str:
        """Its attributes, as ``thresher info`` shows them."""
        if self.kind == "ArgMax":
            return f"axis {self.axis}, keepdims {int(self.keepdims)}"
        if self.kind == "TopK":
            return (f"axis {self.axis}, k {self.k}, {'largest' if self.largest else 'smallest'}, "
                    f"returns {'values' if self.output == 0 else 'indices'}")
        if self.kind == "Sigmoid":
            return "elementwise"
        return f"axis {self.axis}" + (" (flattened)" if self.flatten else "")


@dataclass(frozen=True, eq=False)
class IntegerNetwork:
    """A whole folded network: input quantizer, integer layers, host-side dequantization, then the
    host ops ``host`` (applied in order to the dequantized output)."""

    input: InputQuantizer
    layers: tuple[Layer, ...]
    output: Dequant
    output_shape: tuple[int, ...]
    name: str = "network"
    host: tuple[HostOp, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "output_shape", tuple(int(d) for d in self.output_shape))
        object.__setattr__(self, "host", tuple(self.host))
        shape = self.output_shape
        for op in self.host:
            if op.in_shape != shape:
                raise ValueError(f"host op {op.kind} takes {op.in_shape}, gets {shape}")
            shape = op.out_shape
        for i, layer in enumerate(self.layers):
            srcs = self.sources(i)
            if any(not -1 <= j < i for j in srcs):
                raise ValueError(f"{layer.name}: inputs {srcs} are not earlier layers (or -1, the "
                                 "input): layers must be in topological order")
            if len(srcs) != layer.arity:
                raise ValueError(f"{layer.name}: {len(srcs)} inputs for a {type(layer).__name__}")
            for j in srcs:
                shape = self.input.out_shape if j < 0 else self.layers[j].out_shape
                if int(np.prod(shape)) != int(np.prod(layer.in_shape)):
                    raise ValueError(f"{layer.name}: input {j} of shape {shape} does not fit "
                                     f"{layer.in_shape}")

    def sources(self, i: int) -> tuple[int, ...]:
        """Indices of the layers whose outputs layer ``i`` reads (-1: the input quantizer's output);
        ``(i - 1,)`` unless the layer names its ``inputs``."""
        inputs = getattr(self.layers[i], "inputs", None)
        return (i - 1,) if inputs is None else tuple(inputs)

    #: Network fields that :meth:`fingerprint` leaves out, and why.
    FINGERPRINT_EXCLUDED = {
        "output": "the host-side float scale and bias of the last stage's integers: the board "
                  "returns the integers and the host dequantizes them itself",
        "output_shape": "the host's reshape of the dequantized output; the last stage's shape is "
                        "fingerprinted",
        "name": "a label; renaming a network does not change what it computes",
    }

    @classmethod
    def fingerprint_fields(cls) -> tuple[str, ...]:
        """The fields that identify a network (each by its own fingerprint)."""
        return ("input", "layers", "host")

    def fingerprint(self) -> tuple:
        """The items that identify the network, in hashing order: the input quantizer's, each
        layer's (with its wiring) and each host op's (:func:`hw.board.frame.network_hash` hashes
        them)."""
        items = list(self.input.fingerprint())
        for i, layer in enumerate(self.layers):
            items += layer.fingerprint(i)
        for op in self.host:
            items += op.fingerprint()
        return tuple(items)

    @property
    def is_chain(self) -> bool:
        """Whether every layer reads the previous one (no branches, no adds)."""
        return all(self.sources(i) == (i - 1,) for i in range(len(self.layers)))

    @property
    def result_shape(self) -> tuple[int, ...]:
        """Per-sample shape of what the model returns (after the host ops)."""
        return self.host[-1].out_shape if self.host else self.output_shape

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.input.in_shape

    @property
    def last_shape(self) -> tuple[int, ...]:
        """Shape of the last integer stage's output (before dequantization and reshape)."""
        return self.layers[-1].out_shape if self.layers else self.input.out_shape

    @property
    def last_range(self) -> tuple[int, int]:
        return self.layers[-1].out_range if self.layers else self.input.out_range

    @property
    def mac_layers(self) -> tuple[Conv | Dense, ...]:
        return tuple(layer for layer in self.layers if isinstance(layer, (Conv, Dense)))

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    # -- serialisation: network.json (structure) + network.npz (arrays) ---------------------------

    def save(self, directory) -> None:
        """Write ``network.json`` and ``network.npz`` into ``directory`` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}

        def put(key, array):
            arrays[key] = np.asarray(array)
            return key

        def thresholds(prefix, t):
            if t is None:
                return None
            return {"values": put(prefix + ".values", t.values),
                    "direction": put(prefix + ".direction", t.direction),
                    "offset": t.offset, "step": t.step}

        layers = []
        for i, layer in enumerate(self.layers):
            entry = {"kind": type(layer).__name__}
            for f in fields(layer):
                value = getattr(layer, f.name)
                if f.name == "weights":
                    entry[f.name] = put(f"layer{i}.weights", value)
                elif f.name == "activation":
                    entry[f.name] = thresholds(f"layer{i}.activation", value)
                elif f.name == "inputs" and value is None:
                    continue        # the previous layer: chain networks are written as before
                elif f.name == "in_ranges":
                    entry[f.name] = [list(r) for r in value]
                else:
                    entry[f.name] = list(value) if isinstance(value, tuple) else value
            layers.append(entry)
        doc = {
            "format": "thresher-integer-network", "version": 1, "name": self.name,
            "input": {"in_shape": list(self.input.in_shape), "out_shape": list(self.input.out_shape),
                      "thresholds": thresholds("input", self.input.thresholds),
                      "input_type": self.input.input_type},
            "layers": layers,
            "output": {"scale": put("output.scale", self.output.scale),
                       "bias": put("output.bias", self.output.bias)},
            "output_shape": list(self.output_shape),
            "host": [{f.name: (list(v) if isinstance(v, tuple) else v)
                      for f in fields(op) for v in [getattr(op, f.name)]} for op in self.host],
        }
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(directory / "network.npz", buffer.getvalue())
        atomic_write_bytes(directory / "network.json", json.dumps(doc, indent=1).encode())

    @classmethod
    def load(cls, directory) -> "IntegerNetwork":
        """Read what :meth:`save` wrote."""
        directory = Path(directory)
        try:
            doc = json.loads((directory / "network.json").read_text())
            with np.load(directory / "network.npz") as npz:
                arrays = {k: npz[k] for k in npz.files}
            if doc.get("format") != "thresher-integer-network":
                raise ValueError("not a thresher integer network")

            def thresholds(d):
                if d is None:
                    return None
                return Thresholds(arrays[d["values"]], arrays[d["direction"]], d["offset"], d["step"])

            kinds = {kind.__name__: kind for kind in LAYER_KINDS}
            layers = []
            for entry in doc["layers"]:
                entry = dict(entry)
                kind = kinds[entry.pop("kind")]
                if "weights" in entry:
                    entry["weights"] = arrays[entry["weights"]]
                if "activation" in entry:
                    entry["activation"] = thresholds(entry["activation"])
                layers.append(kind(**entry))
            inp = doc["input"]
            return cls(
                input=InputQuantizer(inp["in_shape"], inp["out_shape"], thresholds(inp["thresholds"]),
                                     inp.get("input_type")),
                layers=tuple(layers),
                output=Dequant(arrays[doc["output"]["scale"]], arrays[doc["output"]["bias"]]),
                output_shape=doc["output_shape"], name=doc.get("name", "network"),
                host=tuple(HostOp(**op) for op in doc.get("host", [])))
        except (OSError, ValueError, KeyError, TypeError, ThresherError) as e:
            raise ThresherError(f"{directory}: not a readable thresher network ({e})") from None


def bits_for_range(lo: int, hi: int) -> tuple[int, bool]:
    """(bits, signed) of the narrowest integer type holding ``[lo, hi]``."""
    if lo >= 0:
        return max(1, int(hi).bit_length()), False
    return signed_bits(lo, hi), True

