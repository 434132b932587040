"""Import a QONNX model (as Brevitas exports it) into a flat list of float-domain operations.

The file is cleaned with qonnx's own ``cleanup_model`` (never rewritten by hand), then the graph is
walked once from its input to its output. The result, :class:`ImportedModel`, is a topologically
ordered list of small records (``Quantize``, ``Elementwise``, ``BatchNorm``, ``Relu``, ``MatMulOp``,
``ConvOp``, ``MaxPoolOp``, ``AvgPoolOp``, ``ReshapeOp``, ``AddOp``) whose constants are numpy arrays:
weights are already split into integers and scales (:class:`QuantConst`). Most models are a linear
chain; a tensor may also feed several nodes and an ``Add`` of two computed tensors joins two
branches (residual connections), recorded in ``ImportedModel.inputs``. :mod:`model_tools.fold` turns that chain into the integer
network. Anything outside the supported set is a :class:`ThresherError` naming the node.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Union

import numpy as np

from .errors import ThresherError
from .ir import HostOp, input_type_range

SUPPORTED_OPS = (
    "Quant", "IntQuant", "BipolarQuant", "Conv", "MatMul", "Gemm", "BatchNormalization", "Relu",
    "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean (over H and W)", "Trunc",
    "Reshape", "Flatten", "Transpose (of constants)", "Mul", "Div", "Add", "Sub",
    "Pad (zeros, into a Conv)",
    "Add of two computed tensors (residual)",
    "Softmax", "LogSoftmax", "Sigmoid", "ArgMax", "TopK",
)

#: Ops the host applies after the last layer's dequantization (``ir.HostOp``).
HOST_OP_TYPES = ("Softmax", "LogSoftmax", "Sigmoid", "ArgMax", "TopK")

ROUNDING = {
    "ROUND": np.round, "HALF_EVEN": np.round, "ROUND_TO_ZERO": np.fix, "DOWN": np.fix,
    "FLOOR": np.floor, "CEIL": np.ceil,
    "UP": lambda x: np.sign(x) * np.ceil(np.abs(x)),
    "HALF_UP": lambda x: np.sign(x) * np.floor(np.abs(x) + 0.5),
    "HALF_DOWN": lambda x: np.sign(x) * np.ceil(np.abs(x) - 0.5),
}


# -- the records ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Quantize:
    """QONNX ``Quant``/``IntQuant``/``BipolarQuant`` on activations.

    ``level(x)`` gives the integer the reference produces: ``round(clip(x / scale + zero_point))``
    (zero point is always 0 here); bipolar quantizers give -1/+1 with ``x >= 0 -> +1``.
    """

    node: str
    scale: np.ndarray       # float32, broadcastable to the tensor
    bits: int
    signed: bool
    narrow: bool
    rounding: str
    bipolar: bool           # BipolarQuant, or a signed 1-bit Quant (qonnx executes both as sign)
    sign_of_input: bool = False   # BipolarQuant takes the sign of x itself, Quant of x / scale

    @property
    def q_min(self) -> int:
        if self.bipolar:
            return -1
        if not self.signed:
            return 0
        return -(1 << (self.bits - 1)) + (1 if self.narrow else 0)

    @property
    def q_max(self) -> int:
        if self.bipolar:
            return 1
        if self.signed:
            return (1 << (self.bits - 1)) - 1
        return (1 << self.bits) - (2 if self.narrow else 1)

    @property
    def step(self) -> int:
        return 2 if self.bipolar else 1

    def level(self, x: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """The reference's integer level of ``x`` (dtype of ``x`` kept, as qonnx computes it)."""
        if self.bipolar:
            y = x if self.sign_of_input else x / scale
            return np.where(y >= 0, 1, -1).astype(x.dtype)
        y = x / scale
        y = np.where(y > self.q_max, x.dtype.type(self.q_max), y)
        y = np.where(y < self.q_min, x.dtype.type(self.q_min), y)
        return ROUNDING[self.rounding](y)


@dataclass(frozen=True)
class Elementwise:
    """``Mul``/``Div``/``Add``/``Sub`` with a constant; ``const_first`` for ``c - x`` and ``c / x``."""

    node: str
    op: str
    const: np.ndarray
    const_first: bool = False

    def apply(self, x: np.ndarray, const: np.ndarray) -> np.ndarray:
        a, b = (const, x) if self.const_first else (x, const)
        return {"Mul": np.multiply, "Div": np.divide, "Add": np.add, "Sub": np.subtract}[self.op](a, b)


@dataclass(frozen=True)
class BatchNorm:
    """ONNX ``BatchNormalization`` (inference): ``(x - mean) / sqrt(var + eps) * gamma + beta``."""

    node: str
    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float


@dataclass(frozen=True)
class Relu:
    node: str


@dataclass(frozen=True)
class QuantConst:
    """A quantized constant: ``value = ints * scale`` elementwise (both of the tensor's shape)."""

    ints: np.ndarray        # int64
    scale: np.ndarray       # float64, same shape
    bits: int
    bipolar: bool


@dataclass(frozen=True)
class MatMulOp:
    """``x @ W (+ bias)`` with ``W`` (K, N) quantized; Gemm's alpha/beta/transB already applied."""

    node: str
    weight: QuantConst
    bias: np.ndarray | None   # float64 (N,), in the output's units


@dataclass(frozen=True)
class ConvOp:
    node: str
    weight: QuantConst      # (Cout, Cin / groups, kh, kw)
    bias: np.ndarray | None
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]   # top, left, bottom, right
    groups: int = 1                   # ONNX ``group``: Cin for depthwise


@dataclass(frozen=True)
class MaxPoolOp:
    node: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]
    ceil_mode: bool = False


@dataclass(frozen=True)
class TruncQuant(Quantize):
    """QONNX ``Trunc`` (Brevitas ``TruncAvgPool2d``'s export) as a quantizer: qonnx's ``trunc``
    computed step by step: ``round(x / in_scale)`` (round half to even), divided by the power of
    two ``2^round(log2(scale / in_scale))``, clipped to the output type, then rounded with the
    node's rounding mode (``FLOOR``: the exact floor-and-shift); ``scale`` is the output scale."""

    in_scale: np.ndarray = None

    def level(self, x: np.ndarray, scale: np.ndarray) -> np.ndarray:
        dtype = x.dtype
        in_scale = np.asarray(self.in_scale).astype(dtype)
        y = np.round(x / in_scale)
        shift = (2 ** np.round(np.log2(np.asarray(self.scale).astype(dtype) / in_scale))
                 ).astype(dtype)
        y = y / shift
        y = np.where(y > self.q_max, dtype.type(self.q_max), y)
        y = np.where(y < self.q_min, dtype.type(self.q_min), y)
        return ROUNDING[self.rounding](y)


@dataclass(frozen=True)
class AvgPoolOp:
    """``AveragePool`` / ``GlobalAveragePool`` / ``ReduceMean`` over (H, W): the mean of each
    window, dividing by ``divisor`` (the window size: padding counted, or no padding at all).
    ``flatten``: the output drops its (1, 1) spatial axes (``ReduceMean`` with keepdims=0)."""

    node: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]
    divisor: int
    flatten: bool = False


@dataclass(frozen=True)
class ReshapeOp:
    node: str
    shape: tuple[int, ...]   # the new per-sample shape (batch axis removed)


@dataclass(frozen=True)
class AddOp:
    """ONNX ``Add`` of two computed tensors (a residual connection); its operands are the ops named by
    ``ImportedModel.inputs``, in the node's input order."""

    node: str


Op = Union[Quantize, Elementwise, BatchNorm, Relu, MatMulOp, ConvOp, MaxPoolOp, AvgPoolOp, ReshapeOp,
           AddOp, HostOp]


@dataclass(frozen=True)
class ImportedModel:
    """A model as a topologically ordered list of operations on per-sample tensors.

    ``inputs``: for each op, the indices of the ops whose outputs it reads (-1: the model input), or
    ``None`` for a linear chain (each op reads the previous one). ``input_type``: the graph input's
    integer ``finn_datatype`` (``UINT8``, ``BIPOLAR``, ...; or the one given with
    ``--input-type``), ``None`` for a float input. ``output_shape`` is the shape of the graph's
    first output (after any host ops, ``HostOp`` records at the end of ``ops``), the output of the
    last op.
    """

    name: str
    input_shape: tuple[int, ...]     # per sample (batch axis removed)
    output_shape: tuple[int, ...]
    ops: tuple[Op, ...]
    input_type: str | None = None
    inputs: tuple[tuple[int, ...], ...] | None = None


# -- loading ---------------------------------------------------------------------------------------

def load_onnx(path, *, input_type: str | None = None) -> ImportedModel:
    """Read, clean (qonnx ``cleanup_model``) and import a QONNX file.

    ``input_type`` (``UINT8``, ``INT4``, ``BIPOLAR``, ...) declares the raw input's integer type,
    overriding the graph input's ``finn_datatype`` annotation.
    """
    path = Path(path)
    if input_type is not None:
        input_type = str(input_type).upper()
        input_type_range(input_type)        # a ThresherError for an unknown name
    if not path.is_file():
        raise ThresherError(f"{path}: no such model file")
    import onnx
    try:
        model = onnx.load(str(path))
    except Exception as e:  # onnx raises DecodeError, ValueError, ... for broken files
        raise ThresherError(f"{path}: not a readable ONNX file ({type(e).__name__})") from None
    if not model.graph.node:
        raise ThresherError(f"{path}: the ONNX graph has no nodes")
    for node in model.graph.node:
        # the same op under qonnx 1.0's new name; cleanup_model's constant folding protects only
        # "Quant", and would otherwise fold weight quantizers away into float initializers
        if node.op_type == "IntQuant":
            node.op_type = "Quant"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from qonnx.core.modelwrapper import ModelWrapper
            from qonnx.util.cleanup import cleanup_model
            wrapper = cleanup_model(ModelWrapper(model))
        except ThresherError:
            raise
        except Exception as e:
            raise ThresherError(f"{path}: qonnx could not clean up the model "
                                f"({type(e).__name__}: {e})") from None
    return _Walker(wrapper, path.name, input_type).walk()


def _attr(node, name, default=None):
    import onnx
    for a in node.attribute:
        if a.name == name:
            v = onnx.helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _where(node) -> str:
    return f"node {node.name or '(unnamed)'} ({node.op_type})"


def _pads2d(node, pads):
    pads = list(pads or [0, 0, 0, 0])
    if len(pads) != 4:
        raise ThresherError(f"{_where(node)}: only 2-D pads are supported, got {pads}")
    if _attr(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise ThresherError(f"{_where(node)}: auto_pad={_attr(node, 'auto_pad')} is not supported; "
                            "export with explicit pads")
    return pads[0], pads[1], pads[2], pads[3]


class _Walker:
    """One pass over the cleaned graph from its input to its output."""

    def __init__(self, wrapper, name, input_type=None):
        self.input_type = input_type
        self.model = wrapper
        self.graph = wrapper.graph
        self.name = name
        self.producers = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    # constants -------------------------------------------------------------------------------

    def is_const(self, name) -> bool:
        if self.model.get_initializer(name) is not None:
            return True
        node = self.producers.get(name)
        if node is None:
            return False
        if node.op_type in ("Quant", "IntQuant", "BipolarQuant", "Transpose", "Constant",
                            "Reshape", "Identity"):
            return all(self.is_const(i) for i in node.input if i)
        return False

    def const(self, name, node) -> np.ndarray:
        """A float constant (a quantized one is returned dequantized)."""
        init = self.model.get_initializer(name)
        if init is not None:
            return np.asarray(init)
        q = self.quant_const(name, node)
        return q.ints * q.scale

    def quant_const(self, name, user) -> QuantConst:
        """Split a constant into integers and scales; plain float constants are an error."""
        init = self.model.get_initializer(name)
        if init is not None:
            raise ThresherError(f"{_where(user)}: weights '{name}' are not quantized (no Quant node "
                                "in front of them); thresher needs integer weights")
        node = self.producers[name]
        if node.op_type == "Transpose":
            q = self.quant_const(node.input[0], user)
            perm = _attr(node, "perm") or list(reversed(range(q.ints.ndim)))
            return QuantConst(q.ints.transpose(perm), q.scale.transpose(perm), q.bits, q.bipolar)
        if node.op_type in ("Reshape", "Identity"):
            q = self.quant_const(node.input[0], user)
            if node.op_type == "Identity":
                return q
            shape = tuple(int(s) for s in self.model.get_initializer(node.input[1]))
            return QuantConst(q.ints.reshape(shape), q.scale.reshape(shape), q.bits, q.bipolar)
        if node.op_type in ("Quant", "IntQuant", "BipolarQuant"):
            value = np.asarray(self.const(node.input[0], node), dtype=np.float32)
            quant = self.quantizer(node, max_bits=32)
            scale = np.broadcast_to(self.const(node.input[1], node).astype(np.float32), value.shape)
            ints = quant.level(value, scale)
            return QuantConst(ints.astype(np.int64), scale.astype(np.float64),
                              1 if quant.bipolar else quant.bits, quant.bipolar)
        raise ThresherError(f"{_where(node)}: constant produced by {node.op_type} is not supported")

    # quantizers ---------------------------------------------------------------------------------

    def quantizer(self, node, max_bits: int = 16) -> Quantize:
        """A quantizer's parameters; constants (weights, biases) may be up to 32 bits wide."""
        where = _where(node)
        if node.op_type == "BipolarQuant":
            scale = self.scale(node)
            return Quantize(node.name, scale, 1, True, False, "ROUND", True, sign_of_input=True)
        if len(node.input) < 4:
            raise ThresherError(f"{where}: expected 4 inputs (x, scale, zero point, bit width)")
        scale = self.scale(node)
        zero = self.const(node.input[2], node)
        if np.any(zero != 0):
            raise ThresherError(f"{where}: non-zero zero points are not supported")
        bits = np.asarray(self.const(node.input[3], node), dtype=np.float64)
        if bits.size != 1 or not np.isfinite(bits).all() or bits.item() != math.floor(bits.item()) \
                or not 1 <= bits.item() <= max_bits:
            raise ThresherError(f"{where}: bit width must be an integer from 1 to {max_bits}, "
                                f"not {bits.ravel().tolist()}")
        bits = int(bits.item())
        signed = bool(_attr(node, "signed", 1))
        narrow = bool(_attr(node, "narrow", 0))
        rounding = str(_attr(node, "rounding_mode", "ROUND")).upper()
        if rounding not in ROUNDING:
            raise ThresherError(f"{where}: rounding mode {rounding} is not supported "
                                f"({', '.join(ROUNDING)})")
        if bits == 1 and not signed and narrow:
            raise ThresherError(f"{where}: an unsigned narrow 1-bit quantizer has no levels")
        return Quantize(node.name, scale, bits, signed, narrow, rounding, bits == 1 and signed)

    def scale(self, node) -> np.ndarray:
        scale = np.asarray(self.const(node.input[1], node), dtype=np.float32)
        if scale.size == 0 or not np.isfinite(scale).all() or np.any(scale <= 0):
            raise ThresherError(f"{_where(node)}: scales must be finite and positive, "
                                f"got {scale.ravel()[:4].tolist()}")
        return scale

    # the walk -----------------------------------------------------------------------------------

    def walk(self) -> ImportedModel:
        g = self.graph
        inputs = [i for i in g.input if self.model.get_initializer(i.name) is None]
        # several outputs only from the last node (TopK's values and indices): the first is matched
        last = self.producers.get(g.output[0].name) if g.output else None
        if len(inputs) != 1 or not g.output or \
                any(o.name not in (last.output if last else ()) for o in g.output[1:]):
            raise ThresherError(f"{self.name}: expected one input and one output, found "
                                f"{len(inputs)} and {len(g.output)}")
        in_shape = tuple(self.model.get_tensor_shape(inputs[0].name) or ())
        out_shape = tuple(self.model.get_tensor_shape(g.output[0].name) or ())
        if not in_shape or any(not isinstance(d, int) or d < 1 for d in in_shape):
            raise ThresherError(f"{self.name}: the input needs a fixed shape, got {in_shape}")
        input_type = self.input_type
        if input_type is None:
            declared = self.model.get_tensor_datatype(inputs[0].name)
            name = getattr(declared, "name", str(declared))
            if name not in ("FLOAT32", "FLOAT16"):
                try:
                    input_type_range(name)
                except ThresherError:
                    raise ThresherError(f"{self.name}: input datatype {name} is not supported "
                                        "(BIPOLAR, BINARY, UINTn, INTn or float)") from None
                input_type = name
        ops, sources = [], []
        host_node = None        # the first host op (Softmax, ...): only host ops may follow it
        producer = {inputs[0].name: -1}     # computed tensor -> index of the op making it
        pending_pads = {}                   # a Pad's output -> its (top, left, bottom, right)
        end = g.output[0].name
        for node in g.node:         # ONNX graphs are topologically sorted (qonnx keeps them so)
            data = [i for i in node.input if i and not self.is_const(i)]
            if not data or end in producer:
                continue            # constants (weight quantizers, ...), or past the output
            if any(i not in producer for i in data):
                missing = next(i for i in data if i not in producer)
                raise ThresherError(f"{_where(node)}: reads '{missing}', which is not computed from "
                                    "the model input before it")
            if len(data) > 1 and (node.op_type != "Add" or len(data) != 2):
                raise ThresherError(f"{_where(node)}: combines {len(data)} computed tensors; only "
                                    "an Add of two (a residual connection) is supported")
            if len(data) == 1 and data[0] == inputs[0].name and \
                    len(self.consumers.get(data[0], [])) > 1:
                users = ", ".join(_where(u)[5:] for u in self.consumers[data[0]])
                raise ThresherError(f"{self.name}: the raw input feeds {users}; it must go through "
                                    "one quantizer before it branches")
            if node.op_type == "Pad":     # zero padding folded into the Conv reading it
                pending_pads[node.output[0]] = self.pad(node)
                producer[node.output[0]] = producer[data[0]]
                continue
            src = tuple(producer[i] for i in data)
            if host_node is not None and node.op_type not in HOST_OP_TYPES:
                raise ThresherError(
                    f"{_where(host_node)}: {host_node.op_type} is supported only at the end of the "
                    f"model (only {', '.join(HOST_OP_TYPES)} may follow it, not {node.op_type}); "
                    f"supported: {', '.join(SUPPORTED_OPS)}")
            if node.op_type in HOST_OP_TYPES:
                if src != (len(ops) - 1,) or len(self.consumers.get(data[0], [])) != 1:
                    raise ThresherError(f"{_where(node)}: {node.op_type} is supported only as a "
                                        "chain at the end of the model")
                host_node = host_node or node
                output = list(node.output).index(end) if end in node.output else 0
                ops.append(self.host_op(node, data[0], output))
                out = node.output[output]
            elif len(data) == 2:
                shapes = [self.model.get_tensor_shape(i) for i in data]
                if shapes[0] != shapes[1]:
                    raise ThresherError(f"{_where(node)}: adds tensors of shapes {shapes[0]} and "
                                        f"{shapes[1]}; broadcasting two computed tensors is not "
                                        "supported")
                ops.append(AddOp(node.name))
                out = node.output[0]
            else:
                op = self.op(node, data[0])
                if data[0] in pending_pads:
                    op = replace(op, pads=tuple(a + b for a, b in
                                                zip(op.pads, pending_pads[data[0]])))
                ops.append(op)
                out = node.output[0]
            sources.append(src)
            producer[out] = len(ops) - 1
        if end not in producer:
            raise ThresherError(f"{self.name}: the output '{end}' is not computed from the input")
        if producer[end] != len(ops) - 1 or producer[end] < 0:
            raise ThresherError(f"{self.name}: the output '{end}' is not the last operation")
        # every op must lead to the output (no dangling branches)
        needed = {len(ops) - 1}
        for k in range(len(ops) - 1, -1, -1):
            if k in needed:
                needed.update(j for j in sources[k] if j >= 0)
        unused = [k for k in range(len(ops)) if k not in needed]
        if unused:
            raise ThresherError(f"node {getattr(ops[unused[0]], 'node', '?')}: its output does not reach the model's "
                                "output")
        chain = all(src == (k - 1,) for k, src in enumerate(sources))
        return ImportedModel(self.name, in_shape[1:], out_shape[1:], tuple(ops), input_type,
                             None if chain else tuple(sources))

    def pad(self, node) -> tuple[int, int, int, int]:
        """A ``Pad`` with zeros on H and W whose only reader is a ``Conv`` (as PyTorch's
        ``ZeroPad2d`` exports Keras-style asymmetric 'same' padding): the Conv pads with zeros itself,
        so the two are the Conv with the pads added, exactly. Anything else is refused."""
        where = _where(node)
        users = self.consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "Conv" or users[0].input[0] != node.output[0]:
            raise ThresherError(f"{where}: Pad is supported only as zero padding read by one Conv")
        mode = _attr(node, "mode", "constant")
        if mode != "constant":
            raise ThresherError(f"{where}: Pad mode {mode} is not supported (only constant zeros)")
        pads = _attr(node, "pads")
        value = _attr(node, "value", 0.0)
        if len(node.input) > 1 and node.input[1]:
            pads = np.asarray(self.const(node.input[1], node)).ravel().tolist()
        if len(node.input) > 2 and node.input[2]:
            value = np.asarray(self.const(node.input[2], node)).ravel()
            value = value.item() if value.size == 1 else value.tolist()
        if len(node.input) > 3 and node.input[3]:
            raise ThresherError(f"{where}: Pad with an axes input is not supported")
        if not isinstance(value, (int, float)) or value != 0:
            raise ThresherError(f"{where}: Pad value {value} is not supported (only zeros)")
        pads = [int(p) for p in (pads or [])]
        if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
            raise ThresherError(f"{where}: only non-negative padding of H and W is supported, "
                                f"got pads {pads}")
        return pads[2], pads[3], pads[6], pads[7]

    def host_op(self, node, tensor, output) -> HostOp:
        """Softmax, LogSoftmax, Sigmoid, ArgMax, TopK: applied by the host after the last layer."""
        where = _where(node)
        in_shape = self.model.get_tensor_shape(tensor)
        out_shape = self.model.get_tensor_shape(node.output[output])
        for s in (in_shape, out_shape):
            if not s or any(not isinstance(d, int) or d < 1 for d in s):
                raise ThresherError(f"{where}: shapes {in_shape} -> {out_shape} are not fixed")
        t = node.op_type
        opset = next((o.version for o in self.model.model.opset_import if o.domain in ("", "ai.onnx")),
                     13)
        default_axis = {"Softmax": -1 if opset >= 13 else 1, "LogSoftmax": -1 if opset >= 13 else 1,
                        "ArgMax": 0, "TopK": -1, "Sigmoid": 1}[t]
        axis = int(_attr(node, "axis", default_axis))
        axis = axis + len(in_shape) if axis < 0 else axis
        if not 1 <= axis < len(in_shape):
            raise ThresherError(f"{where}: axis {_attr(node, 'axis', default_axis)} is the batch "
                                "axis (or out of range); only per-sample axes are supported")
        kw = dict(kind=t, in_shape=in_shape[1:], out_shape=out_shape[1:], axis=axis)
        if t in ("Softmax", "LogSoftmax"):
            kw["flatten"] = opset < 13 and axis < len(in_shape) - 1
        elif t == "ArgMax":
            kw["keepdims"] = bool(_attr(node, "keepdims", 1))
            kw["select_last_index"] = bool(_attr(node, "select_last_index", 0))
        elif t == "TopK":
            if len(node.input) > 1 and node.input[1]:
                k = np.asarray(self.const(node.input[1], node)).ravel()
            else:
                k = np.asarray([_attr(node, "k", -1)])
            if k.size != 1 or not 1 <= int(k[0]) <= in_shape[axis]:
                raise ThresherError(f"{where}: k must be one constant from 1 to {in_shape[axis]}, "
                                    f"not {k.tolist()}")
            if not _attr(node, "sorted", 1):
                raise ThresherError(f"{where}: sorted=0 (an unspecified order) is not supported")
            kw.update(k=int(k[0]), largest=bool(_attr(node, "largest", 1)), output=output)
        try:
            return HostOp(**kw)
        except ValueError as e:
            raise ThresherError(f"{where}: {e}") from None

    def op(self, node, tensor) -> Op:
        t = node.op_type
        where = _where(node)
        if t in ("Quant", "IntQuant", "BipolarQuant"):
            return self.quantizer(node)
        if t in ("Mul", "Div", "Add", "Sub"):
            i = 0 if node.input[0] != tensor else 1
            const = np.asarray(self.const(node.input[i], node), dtype=np.float32)
            if not np.isfinite(const).all():
                raise ThresherError(f"{where}: constant operand is not finite")
            if t == "Div" and np.any(const == 0):
                raise ThresherError(f"{where}: division by zero")
            if i == 0 and t == "Div":
                raise ThresherError(f"{where}: constant / tensor is not supported")
            return Elementwise(node.name, t, const, const_first=(i == 0))
        if t == "BatchNormalization":
            gamma, beta, mean, var = (np.asarray(self.const(n, node), dtype=np.float64)
                                      for n in node.input[1:5])
            eps = float(_attr(node, "epsilon", 1e-5))
            for label, a in (("scale", gamma), ("bias", beta), ("mean", mean), ("variance", var)):
                if not np.isfinite(a).all():
                    raise ThresherError(f"{where}: batch-norm {label} contains NaN or infinity")
            if np.any(var < 0):
                c = int(np.argmax(var < 0))
                raise ThresherError(f"{where}: negative batch-norm variance {var[c]} in channel {c}")
            if np.any(var + eps <= 0):
                raise ThresherError(f"{where}: batch-norm variance + epsilon is not positive")
            return BatchNorm(node.name, gamma, beta, mean, var, eps)
        if t == "Relu":
            return Relu(node.name)
        if t == "MatMul":
            weight = self.quant_const(node.input[1], node)
            if weight.ints.ndim != 2:
                raise ThresherError(f"{where}: weights must be 2-D, got {weight.ints.shape}")
            return MatMulOp(node.name, weight, None)
        if t == "Gemm":
            if _attr(node, "transA", 0):
                raise ThresherError(f"{where}: transA=1 is not supported")
            weight = self.quant_const(node.input[1], node)
            if _attr(node, "transB", 0):
                weight = QuantConst(weight.ints.T, weight.scale.T, weight.bits, weight.bipolar)
            alpha, beta = float(_attr(node, "alpha", 1.0)), float(_attr(node, "beta", 1.0))
            if alpha != 1.0:
                weight = QuantConst(weight.ints, weight.scale * alpha, weight.bits, weight.bipolar)
            bias = None
            if len(node.input) > 2 and node.input[2]:
                bias = beta * np.asarray(self.const(node.input[2], node), dtype=np.float64)
            return MatMulOp(node.name, weight, bias)
        if t == "Conv":
            weight = self.quant_const(node.input[1], node)
            if weight.ints.ndim != 4:
                raise ThresherError(f"{where}: only 2-D convolutions are supported")
            groups = int(_attr(node, "group", 1))
            cin = (self.model.get_tensor_shape(tensor) or [0, 0])[1]
            cout = weight.ints.shape[0]
            if groups < 1 or cout % groups or (isinstance(cin, int) and
                                               weight.ints.shape[1] * groups != cin):
                raise ThresherError(f"{where}: group={groups} does not match weights "
                                    f"{weight.ints.shape} on {cin} input channels")
            if any(d != 1 for d in (_attr(node, "dilations") or [1, 1])):
                raise ThresherError(f"{where}: dilated convolution is not supported")
            bias = None
            if len(node.input) > 2 and node.input[2]:
                bias = np.asarray(self.const(node.input[2], node), dtype=np.float64)
            stride = tuple(_attr(node, "strides") or [1, 1])
            return ConvOp(node.name, weight, bias, stride, _pads2d(node, _attr(node, "pads")),
                          groups)
        if t == "MaxPool":
            if any(d != 1 for d in (_attr(node, "dilations") or [1, 1])):
                raise ThresherError(f"{where}: dilated max pooling is not supported")
            if len(node.output) > 1 and node.output[1]:
                raise ThresherError(f"{where}: max-pool indices output is not supported")
            kernel = tuple(_attr(node, "kernel_shape"))
            if len(kernel) != 2:
                raise ThresherError(f"{where}: only 2-D max pooling is supported")
            stride = tuple(_attr(node, "strides") or (1, 1))     # ONNX's default, not the kernel
            return MaxPoolOp(node.name, kernel, stride, _pads2d(node, _attr(node, "pads")),
                             bool(_attr(node, "ceil_mode", 0)))
        if t in ("AveragePool", "GlobalAveragePool", "ReduceMean"):
            return self.average(node, tensor)
        if t == "Trunc":
            return self.trunc(node)
        if t in ("Reshape", "Flatten"):
            shape = self.model.get_tensor_shape(node.output[0])
            if not shape or any(not isinstance(d, int) or d < 1 for d in shape):
                raise ThresherError(f"{where}: output shape {shape} is not fixed")
            return ReshapeOp(node.name, tuple(shape[1:]))
        raise ThresherError(f"{where}: unsupported operation {t}; supported: "
                            f"{', '.join(SUPPORTED_OPS)}")

    def _average_input_shape(self, node, tensor):
        shape = self.model.get_tensor_shape(tensor)
        if not shape or len(shape) != 4 or any(not isinstance(d, int) or d < 1 for d in shape):
            raise ThresherError(f"{_where(node)}: average pooling needs a fixed (N, C, H, W) input, "
                                f"got {shape}")
        return shape

    def average(self, node, tensor) -> AvgPoolOp:
        """``AveragePool`` (ONNX padding semantics), ``GlobalAveragePool``, ``ReduceMean`` over exactly
        the axes (2, 3). Refused: a divisor that varies with the position (``count_include_pad=0``
        with padding, ``ceil_mode`` windows hanging over the edge), dilations, other axes."""
        where, t = _where(node), node.op_type
        _, _, h, w = self._average_input_shape(node, tensor)
        if t == "GlobalAveragePool":
            return AvgPoolOp(node.name, (h, w), (1, 1), (0, 0, 0, 0), h * w)
        if t == "ReduceMean":
            axes = _attr(node, "axes")
            if axes is None and len(node.input) > 1 and node.input[1]:
                axes = np.asarray(self.const(node.input[1], node)).ravel().tolist()
            if axes is None:
                raise ThresherError(f"{where}: a mean over all axes (the batch too) is not supported")
            axes = sorted(int(a) % 4 for a in axes)
            if axes != [2, 3]:
                raise ThresherError(f"{where}: only a mean over H and W (axes 2, 3) is supported, "
                                    f"not axes {axes}")
            return AvgPoolOp(node.name, (h, w), (1, 1), (0, 0, 0, 0), h * w,
                             flatten=not _attr(node, "keepdims", 1))
        kernel = tuple(_attr(node, "kernel_shape") or ())
        if len(kernel) != 2:
            raise ThresherError(f"{where}: only 2-D average pooling is supported")
        if any(d != 1 for d in (_attr(node, "dilations") or [1, 1])):
            raise ThresherError(f"{where}: dilated average pooling is not supported")
        stride = tuple(_attr(node, "strides") or (1, 1))
        pads = _pads2d(node, _attr(node, "pads"))
        kh, kw = kernel
        (sh, sw), (pt, pl, pb, pr) = stride, pads
        if any(pads) and not _attr(node, "count_include_pad", 0):
            raise ThresherError(f"{where}: count_include_pad=0 with padding divides border windows by "
                                "fewer values than inner ones; thresher supports one divisor per "
                                "layer (count_include_pad=1, or no padding)")
        if _attr(node, "ceil_mode", 0) and ((h + pt + pb - kh) % sh or (w + pl + pr - kw) % sw):
            raise ThresherError(f"{where}: ceil_mode=1 adds windows that hang over the edge, with a "
                                "smaller divisor; not supported (export with ceil_mode=0)")
        return AvgPoolOp(node.name, kernel, stride, pads, kh * kw)

    def trunc(self, node) -> TruncQuant:
        """QONNX ``Trunc`` (v2 inputs: x, scale, zero point, input bit width, output scale, output
        bit width; v1 without the output scale: ``scale`` is then the input's)."""
        where = _where(node)
        if len(node.input) not in (5, 6):
            raise ThresherError(f"{where}: expected 5 or 6 inputs, got {len(node.input)}")
        in_scale = self.scale(node)
        zero = self.const(node.input[2], node)
        if np.any(zero != 0):
            raise ThresherError(f"{where}: non-zero zero points are not supported")
        if len(node.input) == 6:
            out_scale = np.asarray(self.const(node.input[4], node), dtype=np.float32)
            bits = self.const(node.input[5], node)
        else:
            raise ThresherError(f"{where}: Trunc without an output scale (QONNX v1) is not supported")
        bits = np.asarray(bits, dtype=np.float64)
        if bits.size != 1 or bits.item() != math.floor(bits.item()) or not 1 <= bits.item() <= 16:
            raise ThresherError(f"{where}: output bit width must be an integer from 1 to 16")
        if out_scale.size == 0 or not np.isfinite(out_scale).all() or np.any(out_scale <= 0):
            raise ThresherError(f"{where}: output scales must be finite and positive")
        rounding = str(_attr(node, "rounding_mode", "FLOOR")).upper()
        if rounding not in ROUNDING:
            raise ThresherError(f"{where}: rounding mode {rounding} is not supported")
        signed, narrow = bool(_attr(node, "signed", 1)), bool(_attr(node, "narrow", 0))
        if int(bits.item()) == 1 and signed:
            raise ThresherError(f"{where}: a signed 1-bit Trunc is not supported")
        return TruncQuant(node.name, out_scale, int(bits.item()), signed, narrow, rounding, False,
                          in_scale=in_scale)
