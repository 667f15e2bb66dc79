#include "cpu/executor.h"

#include <omp.h>

#include <chrono>
#include <unordered_set>

#include <fmt/format.h>

#include "core/parallel.h"
#include "cpu/fast/fuse.h"

namespace opennpu::cpu {

const Tensor* Scope::find(const std::string& n) const {
  for (const Scope* s = this; s; s = s->parent) {
    auto it = s->values.find(n);
    if (it != s->values.end()) return &it->second;
  }
  return nullptr;
}

namespace {
// Calls fn on every subgraph (If branches, Loop/Scan bodies) of node n.
template <class F>
void for_each_subgraph(const ir::Node& n, F&& fn) {
  for (const auto& [_, a] : n.attrs) {
    if (a.kind == ir::Attribute::Kind::Graph && a.g) fn(*a.g);
    if (a.kind == ir::Attribute::Kind::Graphs)
      for (const auto& sg : a.graphs) if (sg) fn(*sg);
  }
}

void collect_kernels(const ir::Model& m, const ir::Graph& g, std::unordered_map<const ir::Node*, const KernelDef*>& out,
                     std::vector<std::string>* problems) {
  for (const auto& n : g.nodes) {
    int64_t opset = m.opset(n.domain == "ai.onnx" ? "" : n.domain);
    const KernelDef* k = registry().find(n.domain == "ai.onnx" ? "" : n.domain, n.op_type, opset);
    if (!k) {
      std::string why = n.where() + ": " + registry().why_not(n.domain == "ai.onnx" ? "" : n.domain, n.op_type, opset);
      if (!problems) throw Error(why);
      problems->push_back(why);
    }
    out[&n] = k;
    for_each_subgraph(n, [&](const ir::Graph& sg) { collect_kernels(m, sg, out, problems); });
  }
}
}  // namespace

Executor::Executor(const ir::Model& model, RunOptions opts)
    : model_(&model), orig_graph_(&model.graph), opts_(std::move(opts)) {
  if (opts_.fast) {
    // A private copy (initializer buffers are shared, not copied) that the CPU passes rewrite.
    owned_ = std::make_unique<ir::Model>(model);
    owned_->opsets[kCpuDomain] = 1;
    passes_ = optimize_for_cpu(*owned_);
    model_ = owned_.get();
  }
  collect_kernels(*model_, model_->graph, kernels_, nullptr);
  plan_graph(model_->graph);
  if (opts_.fast) prepare_fast(model_->graph);
}

void Executor::plan_graph(const ir::Graph& g) {
  GraphPlan& p = plans_[&g];
  std::unordered_map<std::string, int> produced_at;
  for (size_t ni = 0; ni < g.nodes.size(); ++ni) {
    const auto& n = g.nodes[ni];
    p.reads.push_back(ir::node_reads(n));
    for (const auto& r : p.reads.back()) p.readers[r]++;
    for (const auto& o : n.outputs) if (!o.empty()) produced_at[o] = static_cast<int>(ni);
    for_each_subgraph(n, [&](const ir::Graph& sg) { plan_graph(sg); });
  }
  std::unordered_map<std::string, int> seen;  // reads so far
  for (size_t ni = 0; ni < g.nodes.size(); ++ni) {
    const auto& n = g.nodes[ni];
    bool has_subgraph = false;
    for_each_subgraph(n, [&](const ir::Graph&) { has_subgraph = true; });
    std::vector<bool> reuse(n.inputs.size(), false);
    for (const auto& r : p.reads[ni]) seen[r]++;
    for (size_t i = 0; i < n.inputs.size() && !has_subgraph; ++i) {
      const std::string& v = n.inputs[i];
      if (v.empty() || !produced_at.count(v) || g.is_initializer(v)) continue;
      bool is_output = false;
      for (const auto& o : g.outputs) is_output |= o.name == v;
      reuse[i] = !is_output && seen[v] == p.readers[v];  // no node after this one reads v
    }
    p.may_reuse.push_back(std::move(reuse));
  }
}

void Executor::prepare_fast(const ir::Graph& g) {
  for (const auto& n : g.nodes) {
    PrepareContext pc(*model_, g, n);
    std::string why;
    auto k = fast_registry().prepare(pc, &why);
    if (k) prepared_[&n] = std::move(k);
    else if (!why.empty()) why_not_fast_[&n] = why;
    for_each_subgraph(n, [&](const ir::Graph& sg) { prepare_fast(sg); });
  }
}

std::vector<Executor::NodeImpl> Executor::implementations() const {
  std::vector<NodeImpl> out;
  for (const auto& n : model_->graph.nodes) {
    NodeImpl ni{n.name, (n.domain.empty() || n.domain == "ai.onnx" ? "" : n.domain + ".") + n.op_type, "reference", ""};
    if (auto it = prepared_.find(&n); it != prepared_.end()) ni.impl = it->second->name();
    if (auto it = why_not_fast_.find(&n); it != why_not_fast_.end()) ni.why_not_fast = it->second;
    out.push_back(std::move(ni));
  }
  return out;
}

std::vector<std::string> Executor::unsupported_nodes(const ir::Model& model) {
  std::unordered_map<const ir::Node*, const KernelDef*> tmp;
  std::vector<std::string> problems;
  collect_kernels(model, model.graph, tmp, &problems);
  return problems;
}

const KernelDef* Executor::kernel_for(const ir::Node& n) const {
  auto it = kernels_.find(&n);
  if (it == kernels_.end() || !it->second) throw Error(n.where() + ": no kernel resolved");
  return it->second;
}

void check_feeds(const ir::Graph& g, const std::map<std::string, Tensor>& feeds) {
  auto expected = [&] {
    std::string s;
    for (const auto& in : g.inputs)
      if (!g.is_initializer(in.name)) s += fmt::format("\n  {}: {}", in.name, in.describe());
    return s;
  };
  std::map<std::string, int64_t> symbols;
  for (const auto& in : g.inputs) {
    auto it = feeds.find(in.name);
    if (it == feeds.end()) {
      if (g.is_initializer(in.name)) continue;  // an initializer doubles as the default
      throw Error(fmt::format("missing input '{}'; the model expects:{}", in.name, expected()));
    }
    const Tensor& t = it->second;
    if (in.kind != "tensor") {
      bool ok = in.kind == "sequence" ? t.is_sequence() : (t.is_none() || in.kind == "optional" || t.is_sequence());
      if (!ok) throw Error(fmt::format("input '{}' must be a {}", in.name, in.kind));
      continue;
    }
    if (t.is_sequence() || t.is_none()) throw Error(fmt::format("input '{}' must be a tensor", in.name));
    if (in.dtype != DType::Undefined && t.dtype() != in.dtype)
      throw Error(fmt::format("input '{}' has dtype {}, the model expects {}", in.name, dtype_name(t.dtype()), in.describe()));
    if (!in.has_shape) continue;
    if (t.rank() != static_cast<int64_t>(in.dims.size()))
      throw Error(fmt::format("input '{}' has shape {}, the model expects {}", in.name, shape_str(t.shape()), in.describe()));
    for (size_t d = 0; d < in.dims.size(); ++d) {
      const auto& dim = in.dims[d];
      if (dim.known() && dim.value != t.dim(d))
        throw Error(fmt::format("input '{}' has shape {}, the model expects {}", in.name, shape_str(t.shape()), in.describe()));
      if (!dim.known() && !dim.param.empty()) {
        auto [sit, fresh] = symbols.emplace(dim.param, t.dim(d));
        if (!fresh && sit->second != t.dim(d))
          throw Error(fmt::format("input '{}' dimension '{}' is {} but another input bound it to {}", in.name, dim.param,
                                  t.dim(d), sit->second));
      }
    }
  }
  for (const auto& [name, _] : feeds) {
    bool known = false;
    for (const auto& in : g.inputs) known |= in.name == name;
    if (!known) throw Error(fmt::format("'{}' is not an input of the model; the model expects:{}", name, expected()));
  }
}

std::vector<Tensor> Executor::run_graph(const ir::Graph& graph, const Scope& scope, const std::vector<std::string>& wanted) const {
  const ir::Graph& g = resolve(graph);
  const bool top = &g == &model_->graph;
  auto pit = plans_.find(&g);
  if (pit == plans_.end()) throw Error(fmt::format("graph '{}' is not part of the model this executor prepared", g.name));
  const GraphPlan& plan = pit->second;
  // Count readers so intermediate values are freed after their last use.
  std::unordered_map<std::string, int> readers = plan.readers;
  for (const auto& w : wanted) readers[w] += 1 << 20;  // keep the wanted values

  Scope local;
  local.parent = &scope;
  for (const auto& [name, t] : g.initializers)
    if (!scope.values.count(name)) local.values.emplace(name, t);  // feeds override initializers

  SubgraphRunner runner = [&](const ir::Graph& sg, const std::vector<Tensor>& ins) {
    Scope sub;
    sub.parent = &local;
    if (ins.size() > sg.inputs.size())
      throw Error(fmt::format("subgraph '{}' takes {} inputs, got {}", sg.name, sg.inputs.size(), ins.size()));
    for (size_t i = 0; i < ins.size(); ++i) sub.values[sg.inputs[i].name] = ins[i];
    std::vector<std::string> outs;
    for (const auto& o : sg.outputs) outs.push_back(o.name);
    return run_graph(sg, sub, outs);
  };

  for (size_t ni = 0; ni < g.nodes.size(); ++ni) {
    const ir::Node& n = g.nodes[ni];
    std::vector<const Tensor*> ins(n.inputs.size(), nullptr);
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      if (n.inputs[i].empty()) continue;
      ins[i] = local.find(n.inputs[i]);
      if (!ins[i]) throw Error(fmt::format("{}: input '{}' has no value", n.where(), n.inputs[i]));
    }
    const KernelDef* k = kernel_for(n);
    int64_t opset = model_->opset(n.domain == "ai.onnx" ? "" : n.domain);
    // In place: an input this node reads for the last time, produced in this graph (not a feed,
    // an outer value or an initializer), not a graph output, sharing its buffer with nothing.
    std::vector<bool> reusable(ins.size(), false);
    for (size_t i = 0; i < ins.size(); ++i) {
      if (!ins[i] || !plan.may_reuse[ni][i] || readers[n.inputs[i]] >= (1 << 20)) continue;
      auto lv = local.values.find(n.inputs[i]);
      reusable[i] = lv != local.values.end() && &lv->second == ins[i] && ins[i]->buffer_use_count() == 1;
    }
    KernelContext ctx(n, std::move(ins), opset, runner);
    ctx.set_max_loop_iterations(opts_.max_loop_iterations);
    ctx.set_pool(pool_.get());
    ctx.set_reusable(std::move(reusable));
    auto t0 = std::chrono::steady_clock::now();
    if (auto pk = prepared_.find(&n); pk != prepared_.end()) pk->second->run(ctx);
    else k->fn(ctx);
    if (opts_.on_node && top)
      opts_.on_node(n, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    for (size_t i = 0; i < n.outputs.size(); ++i) {
      if (n.outputs[i].empty()) continue;
      if (ctx.outputs()[i].empty_value()) throw Error(fmt::format("{}: kernel did not produce output {}", n.where(), i));
      if (opts_.on_value && top) opts_.on_value(n.outputs[i], ctx.outputs()[i]);
      local.values[n.outputs[i]] = std::move(ctx.outputs()[i]);
    }
    for (const auto& r : plan.reads[ni]) {
      auto it = readers.find(r);
      if (it != readers.end() && --it->second == 0) local.values.erase(r);
    }
  }
  std::vector<Tensor> result;
  for (const auto& w : wanted) {
    const Tensor* t = local.find(w);
    if (!t) throw Error(fmt::format("graph '{}': output '{}' was not computed", g.name, w));
    result.push_back(*t);
  }
  return result;
}

std::map<std::string, Tensor> Executor::run(const std::map<std::string, Tensor>& feeds) const {
  check_feeds(model_->graph, feeds);
  // OpenMP's thread count is per calling thread and starts at the number of cores. oneDNN bakes
  // it into some primitives when they are created (reorders), and fast kernels create theirs at
  // the first run of a shape: set it to this run's share first, so no primitive is built for more
  // threads than set_num_threads() allows (a 1-thread run otherwise started an OpenMP worker that
  // spun after every such region, taking a second core).
  omp_set_num_threads(in_parallel_region() ? 1 : num_threads());
  Scope root;
  for (const auto& [k, v] : feeds) root.values.emplace(k, v);
  std::vector<std::string> wanted;
  for (const auto& o : model_->graph.outputs) wanted.push_back(o.name);
  auto vals = run_graph(model_->graph, root, wanted);
  std::map<std::string, Tensor> out;
  for (size_t i = 0; i < wanted.size(); ++i) out[wanted[i]] = vals[i];
  return out;
}

}  // namespace opennpu::cpu
