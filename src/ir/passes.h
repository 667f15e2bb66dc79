// ir/passes.h — named, re-runnable graph rewrites. Each pass takes a Graph and returns how many
// changes it made, so tests can assert before/after and a driver can log what happened.
// Passes that need to evaluate nodes (constant folding) receive an evaluator from the caller:
// ir never depends on a backend.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace opennpu::ir {

// Evaluates one node on constant inputs; returns its outputs (one per node output).
using NodeEvaluator = std::function<std::vector<Tensor>(const Node&, const std::vector<const Tensor*>&)>;

// Replaces nodes whose inputs are all initializers/constants (and that are deterministic, not
// control flow) by initializers. Constant nodes become initializers.
int fold_constants(Graph& g, const NodeEvaluator& eval, int64_t max_bytes = 64ll << 20);
// Replaces Shape/Size of values whose shape is statically known (value_info) by constants, so
// shape arithmetic (Shape -> Gather -> Concat -> Reshape) folds away on static models.
int fold_shapes(Graph& g);
// Removes nodes whose outputs nobody reads (graph outputs are kept), and unused initializers.
int remove_dead_nodes(Graph& g);
// Folds an inference BatchNormalization that follows a Conv (whose output it alone reads) into
// the Conv's weights and bias. Requires constant Conv weights/bias and BN parameters (float32).
int fold_conv_batchnorm(Graph& g);
// Rewrites QDQ patterns (DequantizeLinear inputs -> Conv/MatMul/Gemm -> QuantizeLinear) into
// QLinearConv / QLinearMatMul / com.microsoft QGemm where the integer op represents them exactly
// (ir/passes_qdq.cpp). Takes the Model: a QGemm needs the com.microsoft opset. Run it before
// fold_constants, which would fold the weights' DequantizeLinear into float initializers.
int fuse_qdq(Model& m);

struct PassInfo {
  std::string name;
  std::string summary;
};
const std::vector<PassInfo>& pass_list();

}  // namespace opennpu::ir
