#include "cpu/executor.h"

#include <chrono>
#include <unordered_set>

#include <fmt/format.h>

namespace opennpu::cpu {

const Tensor* Scope::find(const std::string& n) const {
  for (const Scope* s = this; s; s = s->parent) {
    auto it = s->values.find(n);
    if (it != s->values.end()) return &it->second;
  }
  return nullptr;
}

namespace {
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
    for (const auto& [_, a] : n.attrs) {
      if (a.kind == ir::Attribute::Kind::Graph && a.g) collect_kernels(m, *a.g, out, problems);
      if (a.kind == ir::Attribute::Kind::Graphs)
        for (const auto& sg : a.graphs) if (sg) collect_kernels(m, *sg, out, problems);
    }
  }
}
}  // namespace

Executor::Executor(const ir::Model& model, RunOptions opts) : model_(model), opts_(std::move(opts)) {
  collect_kernels(model_, model_.graph, kernels_, nullptr);
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

std::vector<Tensor> Executor::run_graph(const ir::Graph& g, const Scope& scope, const std::vector<std::string>& wanted) const {
  // Count readers so intermediate values are freed after their last use.
  std::unordered_map<std::string, int> readers;
  for (const auto& n : g.nodes)
    for (const auto& r : ir::node_reads(n)) readers[r]++;
  for (const auto& w : wanted) readers[w] += 1 << 20;  // keep graph outputs

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

  for (const auto& n : g.nodes) {
    std::vector<const Tensor*> ins(n.inputs.size(), nullptr);
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      if (n.inputs[i].empty()) continue;
      ins[i] = local.find(n.inputs[i]);
      if (!ins[i]) throw Error(fmt::format("{}: input '{}' has no value", n.where(), n.inputs[i]));
    }
    const KernelDef* k = kernel_for(n);
    int64_t opset = model_.opset(n.domain == "ai.onnx" ? "" : n.domain);
    KernelContext ctx(n, std::move(ins), opset, runner);
    auto t0 = std::chrono::steady_clock::now();
    k->fn(ctx);
    if (opts_.on_node && &g == &model_.graph)
      opts_.on_node(n, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    for (size_t i = 0; i < n.outputs.size(); ++i) {
      if (n.outputs[i].empty()) continue;
      if (ctx.outputs()[i].empty_value()) throw Error(fmt::format("{}: kernel did not produce output {}", n.where(), i));
      if (opts_.on_value && &g == &model_.graph) opts_.on_value(n.outputs[i], ctx.outputs()[i]);
      local.values[n.outputs[i]] = std::move(ctx.outputs()[i]);
    }
    for (const auto& r : ir::node_reads(n)) {
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
  check_feeds(model_.graph, feeds);
  Scope root;
  for (const auto& [k, v] : feeds) root.values.emplace(k, v);
  std::vector<std::string> wanted;
  for (const auto& o : model_.graph.outputs) wanted.push_back(o.name);
  auto vals = run_graph(model_.graph, root, wanted);
  std::map<std::string, Tensor> out;
  for (size_t i = 0; i < wanted.size(); ++i) out[wanted[i]] = vals[i];
  return out;
}

}  // namespace opennpu::cpu
