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

namespace opennpu {
class BufferPool;
}

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
  // The executor's per-node path: `outputs` (cleared and resized here) and `reusable` are buffers
  // it hands in and takes back with release(), so running a node allocates no vectors.
  KernelContext(const ir::Node& node, std::vector<const Tensor*>&& inputs, std::vector<Tensor>&& outputs,
                std::vector<bool>&& reusable, int64_t opset, SubgraphRunner run)
      : node_(node), inputs_(std::move(inputs)), outputs_(std::move(outputs)), opset_(opset), run_(std::move(run)),
        reusable_(std::move(reusable)) {
    outputs_.clear();
    outputs_.resize(node.outputs.size());
  }
  void release(std::vector<const Tensor*>& inputs, std::vector<Tensor>& outputs, std::vector<bool>& reusable) {
    inputs = std::move(inputs_);
    outputs = std::move(outputs_);
    reusable = std::move(reusable_);
  }

  const ir::Node& node() const { return node_; }
  int64_t opset() const { return opset_; }
  // Bound on Loop iterations (RunOptions::max_loop_iterations, set by the executor).
  int64_t max_loop_iterations() const { return max_loop_iterations_; }
  void set_max_loop_iterations(int64_t n) { max_loop_iterations_ = n; }
  size_t num_inputs() const { return inputs_.size(); }
  size_t num_outputs() const { return outputs_.size(); }
  bool has_input(size_t i) const { return i < inputs_.size() && inputs_[i] != nullptr; }
  // Required input: throws a clear error when it is missing.
  const Tensor& input(size_t i) const;
  const Tensor* optional_input(size_t i) const { return has_input(i) ? inputs_[i] : nullptr; }
  // Whether output i is wanted by the graph (omitted optional outputs have empty names).
  bool output_wanted(size_t i) const { return i < node_.outputs.size() && !node_.outputs[i].empty(); }
  // Allocates output i and returns it: zeroed by default; Init::Uninit for kernels that write
  // every element (fast kernels), which saves a pass over memory. Served from the executor's
  // buffer pool when there is one.
  enum class Init { Zero, Uninit };
  Tensor& alloc_output(size_t i, DType dtype, Shape shape, Init init = Init::Zero);
  // Sets output i to an existing tensor (may share the input's buffer, e.g. Reshape/Identity).
  void set_output(size_t i, Tensor t);
  std::vector<Tensor>& outputs() { return outputs_; }

  // In-place execution. input_reusable(i): the executor found that this node is the last reader
  // of input i, nothing else shares its buffer, and it is not a graph input, initializer or graph
  // output — so the kernel may overwrite it. reuse_input_as_output(i, o) makes output o share
  // input i's buffer (same dtype and numel required) and returns it for writing; a kernel that
  // does this must read each element of input i before writing the same element.
  bool input_reusable(size_t i) const { return i < reusable_.size() && reusable_[i] && has_input(i); }
  Tensor& reuse_input_as_output(size_t i, size_t o, Shape shape);

  // Set by the executor.
  void set_pool(BufferPool* pool) { pool_ = pool; }
  void set_reusable(std::vector<bool> r) { reusable_ = std::move(r); }

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
  int64_t max_loop_iterations_ = 1'000'000;
  BufferPool* pool_ = nullptr;
  std::vector<bool> reusable_;
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
void register_quant_gemm(Registry& r);
void register_misc(Registry& r);

}  // namespace opennpu::cpu
