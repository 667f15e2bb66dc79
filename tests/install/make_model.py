# Writes a tiny ONNX model (y = Relu(MatMul(x[2,3], W[3,4]) + b[4])) to argv[1].
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4) - 6, name="W")
b = numpy_helper.from_array(np.full(4, 0.5, dtype=np.float32), name="b")
graph = helper.make_graph(
    [helper.make_node("MatMul", ["x", "W"], ["xw"]),
     helper.make_node("Add", ["xw", "b"], ["s"]),
     helper.make_node("Relu", ["s"], ["y"])],
    "install_example",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
    initializer=[w, b])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
