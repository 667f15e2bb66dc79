// cpu/executor.h — runs an ir::Graph on the CPU with the reference/fast kernels.
// Prepare once (resolve every node's kernel, count readers for early freeing), then run many
// times. Values of enclosing graphs are visible to subgraphs through a Scope chain. Inputs are
// checked against the graph's declared dtypes and static dims; symbolic dims must agree across
// inputs. run() is const and thread-safe: all per-run state lives on the stack.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/buffer_pool.h"
#include "cpu/fast/fast.h"
#include "cpu/kernel.h"
#include "ir/graph.h"

namespace opennpu::cpu {

struct GraphFrame;

// Named values visible to a graph: its own `values` (feeds, subgraph inputs), the values of a
// running graph (`frame`, set by the executor: what that graph's nodes produced so far and what
// it reads from outside), then the enclosing scopes.
struct Scope {
  const Scope* parent = nullptr;
  std::unordered_map<std::string, Tensor> values;
  const GraphFrame* frame = nullptr;
  const Tensor* find(const std::string& n) const;
};

struct RunOptions {
  int64_t max_loop_iterations = 1'000'000;  // bound on Loop trip counts (bad-input guard)
  // Fast path: run the CPU graph passes (cpu/fast/fuse.h) on a private copy of the model and use
  // prepared fast kernels (cpu/fast/fast.h) where one accepts a node. Off: every node runs its
  // reference kernel on the graph as given (the oracle; needed when every intermediate value must
  // be observed, e.g. on_value for shape propagation or calibration).
  bool fast = true;
  // Per-node hook (profiling): called after each top-level node with its wall time in seconds.
  std::function<void(const ir::Node&, double)> on_node;
  // Called for every value a top-level node produces (shape propagation, debugging).
  std::function<void(const std::string&, const Tensor&)> on_value;
};

class Executor {
 public:
  // Resolves kernels for every node of g (and subgraphs). Throws Error naming the first node
  // this backend cannot run.
  Executor(const ir::Model& model, RunOptions opts = {});
  // Runs the main graph. `feeds` are checked against the graph inputs.
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& feeds) const;
  // Runs any graph of the model (e.g. a subgraph, or a partition segment) with named feeds;
  // returns the values named in `wanted`.
  std::vector<Tensor> run_graph(const ir::Graph& g, const Scope& scope, const std::vector<std::string>& wanted) const;

  // Checks that every node (recursively) has a kernel; returns the problems found, one per node.
  static std::vector<std::string> unsupported_nodes(const ir::Model& model);

  // The graph this executor actually runs (after the CPU passes when opts.fast).
  const ir::Model& executed_model() const { return *model_; }
  // Per node of executed_model(): the implementation that runs it ("reference" or a fast
  // kernel's name) and, when fast kernels declined it, why.
  struct NodeImpl {
    std::string node, op, impl, why_not_fast;
  };
  std::vector<NodeImpl> implementations() const;
  // CPU passes applied: {pass, rewrites}.
  const std::vector<std::pair<std::string, int>>& passes_applied() const { return passes_; }
  const BufferPool& pool() const { return *pool_; }

 private:
  const ir::Graph& resolve(const ir::Graph& g) const { return &g == orig_graph_ ? model_->graph : g; }
  void prepare_fast(const ir::Graph& g);
  friend struct GraphFrame;
  // Per graph, computed once, so a run does no name lookups: every value a node of the graph
  // produces has a slot (an index into the run's vector of tensors), every other name the graph
  // reads (graph inputs, initializers, values of enclosing graphs) an external index resolved
  // once per run. Per node: its kernel, input and output indices, which inputs it may overwrite
  // (its last reader, produced by a node of this graph, not a graph output, no subgraph on the
  // node; the run adds the dynamic check that the buffer is not shared) and the slots to free
  // after it (values it reads for the last time, outputs nobody reads).
  struct Step {
    const ir::Node* node = nullptr;
    const KernelDef* kernel = nullptr;
    const PreparedKernel* fast = nullptr;
    int64_t opset = 0;
    std::vector<int> in;   // slot >= 0, external e as -(e + 2), -1 = omitted input
    std::vector<int> out;  // slot, -1 = omitted output
    std::vector<bool> may_reuse;
    std::vector<int> free_after;
  };
  struct GraphPlan {
    std::vector<Step> steps;
    std::unordered_map<std::string, int> slot_of, ext_of;
    std::vector<std::string> ext_names;
    std::vector<const Tensor*> ext_init;  // the graph's initializer for an external name, or null
    std::vector<int> ext_lookup;          // externals that are not initializers (looked up per run)
    std::vector<std::string> outputs;     // the graph's output names (the usual `wanted`)
    std::vector<bool> is_output_slot;
  };
  void plan_graph(const ir::Graph& g);
  std::unordered_map<const ir::Graph*, GraphPlan> plans_;
  std::unique_ptr<ir::Model> owned_;  // the CPU-optimised copy when opts.fast
  const ir::Model* model_;
  const ir::Graph* orig_graph_;
  RunOptions opts_;
  std::unordered_map<const ir::Node*, const KernelDef*> kernels_;
  std::unordered_map<const ir::Node*, std::unique_ptr<PreparedKernel>> prepared_;
  std::unordered_map<const ir::Node*, std::string> why_not_fast_;
  std::vector<std::pair<std::string, int>> passes_;
  std::shared_ptr<BufferPool> pool_ = BufferPool::create();
};

// Validates `feeds` against graph inputs (presence, dtype, rank and static dims, consistent
// symbolic dims). Throws an Error listing the expected inputs when one is missing.
void check_feeds(const ir::Graph& g, const std::map<std::string, Tensor>& feeds);

}  // namespace opennpu::cpu
