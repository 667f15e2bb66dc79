// cpu/kernel.h — the contract between the CPU executor and its kernels.
// A kernel is a plain function over a KernelContext: it reads inputs (nullptr for an omitted
// optional input), reads attributes from the node, allocates and fills its outputs. Kernels are
// stateless; the executor owns the values. Each kernel file exposes one register_*() function
// that adds its KernelDefs (op, domain, opset range, dtypes it takes) to the registry; the list in
// register_all() in registry.cpp is the whole backend. docs/ops.md is generated from the same list.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ir/graph.h"
#include "opennpu/tensor.h"

namespace opennpu::cpu {

class KernelContext;
using KernelFn = void (*)(KernelContext&);

// Runs a subgraph (If/Loop/Scan body) with the given inputs; values of enclosing graphs
// remain visible by name. Provided by the executor.
using SubgraphRunner = std::function<std::vector<Tensor>(const ir::Graph&, const std::vector<Tensor>&)>;

class KernelContext {
 public:
  KernelContext(const ir::Node& node, std::vector<const Tensor*> inputs, int64_t opset, SubgraphRunner run)
      : node_(node), inputs_(std::move(inputs)), outputs_(node.outputs.size()), opset_(opset), run_(std::move(run)) {}

  const ir::Node& node() const { return node_; }
  int64_t opset() const { return opset_; }
  size_t num_inputs() const { return inputs_.size(); }
  size_t num_outputs() const { return outputs_.size(); }
  bool has_input(size_t i) const { return i < inputs_.size() && inputs_[i] != nullptr; }
  // Required input: throws a clear error when it is missing.
  const Tensor& input(size_t i) const;
  const Tensor* optional_input(size_t i) const { return has_input(i) ? inputs_[i] : nullptr; }
  // Whether output i is wanted by the graph (omitted optional outputs have empty names).
  bool output_wanted(size_t i) const { return i < node_.outputs.size() && !node_.outputs[i].empty(); }
  // Allocates output i (zeroed) and returns it.
  Tensor& alloc_output(size_t i, DType dtype, Shape shape);
  // Sets output i to an existing tensor (may share the input's buffer, e.g. Reshape/Identity).
  void set_output(size_t i, Tensor t);
  std::vector<Tensor>& outputs() { return outputs_; }

  std::vector<Tensor> run_subgraph(const ir::Graph& g, const std::vector<Tensor>& inputs) const { return run_(g, inputs); }

  // Throws Error prefixed with the node ("node 'x' (Conv): ...").
  template <class... A>
  [[noreturn]] void fail(fmt::format_string<A...> f, A&&... a) const {
    throw Error(node_.where() + ": " + fmt::format(f, std::forward<A>(a)...));
  }
  template <class... A>
  void check(bool cond, fmt::format_string<A...> f, A&&... a) const {
    if (!cond) fail(f, std::forward<A>(a)...);
  }

 private:
  const ir::Node& node_;
  std::vector<const Tensor*> inputs_;
  std::vector<Tensor> outputs_;
  int64_t opset_;
  SubgraphRunner run_;
};

struct KernelDef {
  std::string op;
  std::string domain;  // "" = ai.onnx
  int since = 1;       // opset range this kernel implements, inclusive
  int until = 17;
  std::string dtypes;  // human summary for docs/ops.md, e.g. "float, double, int32, int64"
  KernelFn fn = nullptr;
};

class Registry {
 public:
  void add(KernelDef def) { defs_.push_back(std::move(def)); }
  // The kernel for (domain, op) at the given opset of that domain, or nullptr.
  const KernelDef* find(const std::string& domain, const std::string& op, int64_t opset) const;
  // Why find() failed, for error messages ("unknown op", "opset 18 beyond supported 1-17").
  std::string why_not(const std::string& domain, const std::string& op, int64_t opset) const;
  const std::vector<KernelDef>& all() const { return defs_; }

 private:
  std::vector<KernelDef> defs_;
};

// The process-wide registry with every kernel of this build.
const Registry& registry();

// Registration functions, one per kernel file (see registry.cpp).
void register_elementwise(Registry& r);
void register_math(Registry& r);
void register_nn(Registry& r);
void register_pool(Registry& r);
void register_reduce(Registry& r);
void register_loss(Registry& r);
void register_tensor_ops(Registry& r);
void register_indexing(Registry& r);
void register_rnn(Registry& r);
void register_control_flow(Registry& r);
void register_sequence(Registry& r);
void register_quant(Registry& r);
void register_misc(Registry& r);

}  // namespace opennpu::cpu
