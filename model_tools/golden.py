"""The golden engine: runs an :class:`~model_tools.ir.IntegerNetwork` with integer arithmetic only.

Everything inside the layer loop is int64 numpy (vectorised over the batch); float appears only in
the input quantizer's comparisons with float32 thresholds and in the host-side dequantization of the
last stage. The hardware must reproduce :func:`run_integer` bit for bit.
"""

from __future__ import annotations

import numpy as np

from .errors import ThresherError
from .ir import IntegerNetwork, Thresholds, check_typed_input

__all__ = ["run", "run_integer", "quantize_input", "check_input", "forward", "apply_thresholds", "dequantize",
           "host_tail", "finish"]


def apply_thresholds(t: Thresholds, v: np.ndarray) -> np.ndarray:
    """Multi-threshold activation of ``v`` (B, C, ...) along channel axis 1; returns int64 values
    (:meth:`Thresholds.apply <model_tools.ir.Thresholds.apply>`)."""
    return t.apply(v)


def quantize_input(net: IntegerNetwork, x: np.ndarray) -> np.ndarray:
    """Raw float input (B, *input_shape) to the integer tensor (B, *input.out_shape)."""
    x = np.asarray(x, dtype=np.float32)
    q = apply_thresholds(net.input.thresholds, x)
    return q.reshape((x.shape[0],) + net.input.out_shape)


def forward(net: IntegerNetwork, q: np.ndarray, *, keep: bool = False):
    """Run the integer layers on quantized input ``q``; with ``keep`` return every stage's output.

    Each layer runs its own golden step (``layer.golden``, beside its kind in ``model_tools.ir``).
    The layers form a graph in topological order (:meth:`IntegerNetwork.sources`); a tensor is
    dropped once its last reader has run (unless ``keep``), so a chain holds one tensor at a time.
    """
    q = np.asarray(q, dtype=np.int64)
    last_use = {}
    for i in range(len(net.layers)):
        for j in net.sources(i):
            last_use[j] = i
    live = {-1: q}
    stages = []
    a = q
    for i, layer in enumerate(net.layers):
        srcs = net.sources(i)
        args = [live[j] for j in srcs]      # reshapes between layers are free (C order)
        if not keep:
            for j in set(srcs):
                if last_use[j] == i:
                    del live[j]
        a = layer.golden(*args)
        if keep:
            stages.append(a)
        live[i] = a
    return stages if keep else a


def check_input(net: IntegerNetwork, x) -> np.ndarray:
    """A numeric batch in the model's input shape without NaN, as float32 (ThresherError if not)."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise ThresherError(f"input has dtype {x.dtype}; expected numbers")
    if x.shape[1:] != net.input_shape:
        want = "(batch, " + ", ".join(map(str, net.input_shape)) + ")"
        raise ThresherError(f"input has shape {x.shape}; the model expects {want}")
    x = x.astype(np.float32)
    if np.isnan(x).any():
        first = tuple(int(i) for i in np.argwhere(np.isnan(x))[0])
        raise ThresherError(f"input contains NaN (first at index {first})")
    if net.input.input_type is not None:
        check_typed_input(net.input.input_type, x)
    return x


def run_integer(net: IntegerNetwork, x: np.ndarray) -> np.ndarray:
    """Raw input batch -> the last stage's integers (B, *net.last_shape): what the hardware returns."""
    x = check_input(net, x)
    return forward(net, quantize_input(net, x))


def dequantize(net: IntegerNetwork, v: np.ndarray) -> np.ndarray:
    """The last stage's integers (B, *net.last_shape) -> the model's float32 output."""
    v = np.asarray(v)
    shape = (1, -1) + (1,) * (v.ndim - 2)
    scale = net.output.scale.reshape(shape)
    bias = net.output.bias.reshape(shape)
    out = scale * v.astype(np.float64) + bias
    return out.astype(np.float32).reshape((v.shape[0],) + net.output_shape)


def host_tail(net: IntegerNetwork, out: np.ndarray) -> np.ndarray:
    """The host ops (``net.host``: Softmax, ArgMax, ...) on the dequantized output, in order."""
    for op in net.host:
        out = op.apply(out)
    return out


def finish(net: IntegerNetwork, v: np.ndarray) -> np.ndarray:
    """The last stage's integers -> what the model returns: :func:`dequantize`, then the host ops
    (float32, or int64 indices for ArgMax / TopK's indices output)."""
    return host_tail(net, dequantize(net, v))


def run(net: IntegerNetwork, x: np.ndarray) -> np.ndarray:
    """Raw input batch (B, *input_shape) -> the model's output (B, *net.result_shape): float32, or
    int64 when the model ends in ArgMax (or returns TopK's indices)."""
    return finish(net, run_integer(net, x))
