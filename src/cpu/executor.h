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

#include "cpu/kernel.h"
#include "ir/graph.h"

namespace opennpu::cpu {

struct Scope {
  const Scope* parent = nullptr;
  std::unordered_map<std::string, Tensor> values;
  const Tensor* find(const std::string& n) const;
};

struct RunOptions {
  int64_t max_loop_iterations = 1'000'000;  // bound on Loop trip counts (bad-input guard)
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

 private:
  const KernelDef* kernel_for(const ir::Node& n) const;
  const ir::Model& model_;
  RunOptions opts_;
  std::unordered_map<const ir::Node*, const KernelDef*> kernels_;
};

// Validates `feeds` against graph inputs (presence, dtype, rank and static dims, consistent
// symbolic dims). Throws an Error listing the expected inputs when one is missing.
void check_feeds(const ir::Graph& g, const std::map<std::string, Tensor>& feeds);

}  // namespace opennpu::cpu
