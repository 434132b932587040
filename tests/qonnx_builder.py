"""Hand-built QONNX graphs for tests: exact control over every parameter, which Brevitas exports
do not give (constructed ties, zero gammas, epsilon 0, broken attributes)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class GraphBuilder:
    """Appends nodes to a linear chain; ``build(path)`` writes the model."""

    def __init__(self, input_shape, name="test"):
        self.nodes, self.inits = [], []
        self.input_shape = tuple(input_shape)
        self.tensor = "x"
        self.count = 0
        self.name = name

    def const(self, value, dtype=np.float32) -> str:
        self.count += 1
        name = f"c{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op, inputs, domain="", **attrs) -> str:
        self.count += 1
        out = f"t{self.count}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{self.count}",
                                           domain=domain, **attrs))
        return out

    def quant_tensor(self, tensor, scale, bits, signed=True, narrow=False, rounding="ROUND"):
        return self.node("Quant", [tensor, self.const(scale), self.const(0.0), self.const(bits)],
                         domain="qonnx.custom_op.general", signed=int(signed), narrow=int(narrow),
                         rounding_mode=rounding)

    def apply(self, op, *consts, **attrs):
        """``tensor <- op(tensor, *consts)``."""
        self.tensor = self.node(op, [self.tensor, *consts], **attrs)
        return self

    def quant(self, scale, bits, signed=True, narrow=False, rounding="ROUND"):
        self.tensor = self.quant_tensor(self.tensor, scale, bits, signed, narrow, rounding)
        return self

    def bipolar(self, scale=1.0):
        self.tensor = self.node("BipolarQuant", [self.tensor, self.const(scale)],
                                domain="qonnx.custom_op.general")
        return self

    def matmul(self, w_int, w_scale, bits, signed=True, narrow=False):
        """``x @ Quant(w_int * w_scale)``; ``w_scale`` broadcast like (1, N) for per-channel."""
        w = np.asarray(w_int, np.float32) * np.asarray(w_scale, np.float32)
        wq = self.quant_tensor(self.const(w), w_scale, bits, signed, narrow)
        self.tensor = self.node("MatMul", [self.tensor, wq])
        return self

    def conv(self, w_int, w_scale, bits, bias=None, strides=(1, 1), pads=(0, 0, 0, 0)):
        w = np.asarray(w_int, np.float32) * np.asarray(w_scale, np.float32)
        wq = self.quant_tensor(self.const(w), w_scale, bits)
        inputs = [self.tensor, wq] + ([self.const(bias)] if bias is not None else [])
        self.tensor = self.node("Conv", inputs, kernel_shape=list(np.shape(w_int)[2:]),
                                strides=list(strides), pads=list(pads))
        return self

    def batchnorm(self, gamma, beta, mean, var, eps=0.0):
        self.tensor = self.node("BatchNormalization",
                                [self.tensor] + [self.const(a) for a in (gamma, beta, mean, var)],
                                epsilon=float(eps))
        return self

    def topk(self, k, axis=-1, largest=1, outputs=(0, 1)):
        """``TopK``; ``outputs``: which of (values 0, indices 1) become graph outputs, in order."""
        self.count += 1
        names = [f"t{self.count}_values", f"t{self.count}_indices"]
        self.nodes.append(helper.make_node("TopK", [self.tensor, self.const([k], np.int64)], names,
                                           name=f"TopK_{self.count}", axis=axis, largest=largest))
        self.tensor = [names[i] for i in outputs]
        return self

    def build(self, path, output_shape=None, input_type=None, opset=13):
        """Write the model; ``input_type`` (e.g. ``"UINT8"``) annotates the input's finn_datatype."""
        inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(self.input_shape))
        tensors = self.tensor if isinstance(self.tensor, list) else [self.tensor]
        integer = {o for n in self.nodes if n.op_type == "ArgMax" for o in n.output}
        outs = [helper.make_tensor_value_info(
                    t, TensorProto.INT64 if t.endswith("_indices") or t in integer
                    else TensorProto.FLOAT, output_shape) for t in tensors]
        graph = helper.make_graph(self.nodes, self.name, [inp], outs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                        helper.make_opsetid("qonnx.custom_op.general", 1)])
        if input_type is not None:
            model.graph.quantization_annotation.append(onnx.TensorAnnotation(
                tensor_name="x", quant_parameter_tensor_names=[
                    onnx.StringStringEntryProto(key="finn_datatype", value=input_type)]))
        onnx.save(model, str(path))
        return path


def execute(path, x: np.ndarray) -> np.ndarray:
    """qonnx's own executor on the whole batch (the hand-built graphs take any batch size)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model
    model = cleanup_model(ModelWrapper(str(path)))
    return execute_onnx(model, {model.graph.input[0].name: x.astype(np.float32)})[
        model.graph.output[0].name]
