#include "cpu/executor.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <unordered_set>

#include <fmt/format.h>

#include "core/parallel.h"
#include "cpu/fast/fuse.h"

namespace opennpu::cpu {

// The values of one running graph, for name lookups from its subgraphs (and its wanted outputs).
struct GraphFrame {
  const Executor::GraphPlan* plan;
  const std::vector<Tensor>* slots;
  const std::vector<const Tensor*>* ext;
  const Tensor* find(const std::string& n) const {
    if (auto it = plan->slot_of.find(n); it != plan->slot_of.end()) {
      const Tensor& t = (*slots)[static_cast<size_t>(it->second)];
      if (!t.empty_value()) return &t;
    }
    if (auto it = plan->ext_of.find(n); it != plan->ext_of.end()) return (*ext)[static_cast<size_t>(it->second)];
    return nullptr;
  }
};

const Tensor* Scope::find(const std::string& n) const {
  for (const Scope* s = this; s; s = s->parent) {
    if (!s->values.empty()) {
      auto it = s->values.find(n);
      if (it != s->values.end()) return &it->second;
    }
    if (s->frame)
      if (const Tensor* t = s->frame->find(n)) return t;
  }
  return nullptr;
}

namespace {
// A run's vectors, recycled per thread (a stack, for subgraph runs inside a run), so a
// steady-state run allocates none of them.
struct RunScratch {
  std::vector<const Tensor*> ext, ins;
  std::vector<Tensor> slots, outs;
  std::vector<bool> reusable;
};
class ScratchLease {
 public:
  ScratchLease() {
    auto& free = pool();
    if (free.empty()) s_ = std::make_unique<RunScratch>();
    else {
      s_ = std::move(free.back());
      free.pop_back();
    }
  }
  ~ScratchLease() {
    // Values die here (their buffers go back to the BufferPool); the vectors keep their storage.
    s_->slots.clear();
    s_->outs.clear();
    s_->ext.clear();
    s_->ins.clear();
    auto& free = pool();
    if (free.size() < 8) free.push_back(std::move(s_));
  }
  RunScratch& operator*() { return *s_; }

 private:
  static std::vector<std::unique_ptr<RunScratch>>& pool() {
    thread_local std::vector<std::unique_ptr<RunScratch>> free;
    return free;
  }
  std::unique_ptr<RunScratch> s_;
};

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
  if (opts_.fast) prepare_fast(model_->graph);
  plan_graph(model_->graph);
}

void Executor::plan_graph(const ir::Graph& g) {
  GraphPlan& p = plans_[&g];
  for (const auto& o : g.outputs) p.outputs.push_back(o.name);
  // Slots: every value a node produces (topo_sort guarantees one producer per name).
  for (const auto& n : g.nodes)
    for (const auto& o : n.outputs)
      if (!o.empty() && !p.slot_of.count(o)) p.slot_of.emplace(o, static_cast<int>(p.slot_of.size()));
  auto ext_index = [&](const std::string& v) {
    auto [it, fresh] = p.ext_of.emplace(v, static_cast<int>(p.ext_names.size()));
    if (fresh) {
      p.ext_names.push_back(v);
      auto ini = g.initializers.find(v);
      p.ext_init.push_back(ini == g.initializers.end() ? nullptr : &ini->second);
      if (ini == g.initializers.end()) p.ext_lookup.push_back(it->second);
    }
    return it->second;
  };
  // Every initializer is visible by name (a graph output, a subgraph's outer read).
  for (const auto& [name, _] : g.initializers)
    if (!p.slot_of.count(name)) ext_index(name);
  p.is_output_slot.assign(p.slot_of.size(), false);
  for (const auto& o : g.outputs)
    if (auto it = p.slot_of.find(o.name); it != p.slot_of.end()) p.is_output_slot[static_cast<size_t>(it->second)] = true;

  std::vector<std::vector<std::string>> reads(g.nodes.size());
  std::unordered_map<std::string, int> readers, last_reader;
  for (size_t ni = 0; ni < g.nodes.size(); ++ni) {
    reads[ni] = ir::node_reads(g.nodes[ni]);
    for (const auto& r : reads[ni]) {
      readers[r]++;
      last_reader[r] = static_cast<int>(ni);
      if (!p.slot_of.count(r)) ext_index(r);
    }
  }
  std::unordered_map<std::string, int> seen;  // reads so far
  p.steps.resize(g.nodes.size());
  for (size_t ni = 0; ni < g.nodes.size(); ++ni) {
    const auto& n = g.nodes[ni];
    Step& st = p.steps[ni];
    st.node = &n;
    auto k = kernels_.find(&n);
    if (k == kernels_.end() || !k->second) throw Error(n.where() + ": no kernel resolved");
    st.kernel = k->second;
    if (auto f = prepared_.find(&n); f != prepared_.end()) st.fast = f->second.get();
    st.opset = model_->opset(n.domain == "ai.onnx" ? "" : n.domain);
    bool has_subgraph = false;
    for_each_subgraph(n, [&](const ir::Graph& sg) {
      has_subgraph = true;
      plan_graph(sg);
    });
    for (const auto& r : reads[ni]) seen[r]++;
    st.may_reuse.assign(n.inputs.size(), false);
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const std::string& v = n.inputs[i];
      if (v.empty()) {
        st.in.push_back(-1);
        continue;
      }
      auto sl = p.slot_of.find(v);
      if (sl == p.slot_of.end()) {
        st.in.push_back(-(p.ext_of.at(v) + 2));
        continue;
      }
      st.in.push_back(sl->second);
      st.may_reuse[i] = !has_subgraph && !p.is_output_slot[static_cast<size_t>(sl->second)] && seen[v] == readers[v];
    }
    for (const auto& o : n.outputs) {
      st.out.push_back(o.empty() ? -1 : p.slot_of.at(o));
      // An output nobody reads (and not a graph output) is freed right after the node.
      if (!o.empty() && !readers.count(o) && !p.is_output_slot[static_cast<size_t>(p.slot_of.at(o))])
        st.free_after.push_back(p.slot_of.at(o));
    }
    for (const auto& r : reads[ni]) {
      auto sl = p.slot_of.find(r);
      if (sl == p.slot_of.end() || last_reader[r] != static_cast<int>(ni) || p.is_output_slot[static_cast<size_t>(sl->second)])
        continue;
      if (std::find(st.free_after.begin(), st.free_after.end(), sl->second) == st.free_after.end())
        st.free_after.push_back(sl->second);
    }
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
  if (top) {
    // OpenMP's thread count is per calling thread and starts at the number of cores. oneDNN bakes
    // it into some primitives when they are created (reorders), and fast kernels create theirs at
    // the first run of a shape: set it to this run's share first, so no primitive is built for more
    // threads than set_num_threads() allows (a 1-thread run otherwise started an OpenMP worker that
    // spun after every such region, taking a second core).
    omp_set_num_threads(in_parallel_region() ? 1 : num_threads());
  }

  // External values: the scope's own values override initializers (feeds), other names come
  // from the enclosing scopes.
  ScratchLease lease;
  RunScratch& rs = *lease;
  std::vector<const Tensor*>& ext = rs.ext;
  ext.assign(plan.ext_init.begin(), plan.ext_init.end());
  for (const auto& [name, t] : scope.values)
    if (auto it = plan.ext_of.find(name); it != plan.ext_of.end()) ext[static_cast<size_t>(it->second)] = &t;
  for (int e : plan.ext_lookup)
    if (!ext[static_cast<size_t>(e)]) ext[static_cast<size_t>(e)] = scope.find(plan.ext_names[static_cast<size_t>(e)]);
  std::vector<Tensor>& slots = rs.slots;
  slots.clear();
  slots.resize(plan.slot_of.size());
  GraphFrame frame{&plan, &slots, &ext};
  Scope local;
  local.parent = &scope;
  local.frame = &frame;

  // Values wanted besides the graph outputs are kept (not freed, not overwritten).
  std::vector<bool> keep;
  if (wanted != plan.outputs) {
    keep = plan.is_output_slot;
    for (const auto& w : wanted)
      if (auto it = plan.slot_of.find(w); it != plan.slot_of.end()) keep[static_cast<size_t>(it->second)] = true;
  }
  const std::vector<bool>& kept = keep.empty() ? plan.is_output_slot : keep;

  SubgraphRunner runner = [&](const ir::Graph& sg, const std::vector<Tensor>& ins) {
    Scope sub;
    sub.parent = &local;
    if (ins.size() > sg.inputs.size())
      throw Error(fmt::format("subgraph '{}' takes {} inputs, got {}", sg.name, sg.inputs.size(), ins.size()));
    for (size_t i = 0; i < ins.size(); ++i) sub.values[sg.inputs[i].name] = ins[i];
    const auto sp = plans_.find(&resolve(sg));
    if (sp != plans_.end()) return run_graph(sg, sub, sp->second.outputs);
    std::vector<std::string> outs;
    for (const auto& o : sg.outputs) outs.push_back(o.name);
    return run_graph(sg, sub, outs);
  };

  // Per-node vectors, handed to each KernelContext and taken back (no allocation per node).
  std::vector<const Tensor*>& ins = rs.ins;
  std::vector<Tensor>& outs = rs.outs;
  std::vector<bool>& reusable = rs.reusable;
  for (const Step& st : plan.steps) {
    const ir::Node& n = *st.node;
    ins.assign(st.in.size(), nullptr);
    reusable.assign(st.in.size(), false);
    for (size_t i = 0; i < st.in.size(); ++i) {
      const int x = st.in[i];
      if (x == -1) continue;
      if (x >= 0) {
        const Tensor& t = slots[static_cast<size_t>(x)];
        ins[i] = t.empty_value() ? local.find(n.inputs[i]) : &t;
        // In place: this node reads the value for the last time, it is not kept, and nothing
        // else shares its buffer.
        reusable[i] = ins[i] == &t && st.may_reuse[i] && !kept[static_cast<size_t>(x)] && t.buffer_use_count() == 1;
      } else {
        ins[i] = ext[static_cast<size_t>(-x - 2)];
      }
      if (!ins[i]) throw Error(fmt::format("{}: input '{}' has no value", n.where(), n.inputs[i]));
    }
    KernelContext ctx(n, std::move(ins), std::move(outs), std::move(reusable), st.opset, runner);
    ctx.set_max_loop_iterations(opts_.max_loop_iterations);
    ctx.set_pool(pool_.get());
    if (opts_.on_node && top) {
      auto t0 = std::chrono::steady_clock::now();
      if (st.fast) st.fast->run(ctx);
      else st.kernel->fn(ctx);
      opts_.on_node(n, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    } else {
      if (st.fast) st.fast->run(ctx);
      else st.kernel->fn(ctx);
    }
    for (size_t i = 0; i < st.out.size(); ++i) {
      if (st.out[i] < 0) continue;
      if (ctx.outputs()[i].empty_value()) throw Error(fmt::format("{}: kernel did not produce output {}", n.where(), i));
      if (opts_.on_value && top) opts_.on_value(n.outputs[i], ctx.outputs()[i]);
      slots[static_cast<size_t>(st.out[i])] = std::move(ctx.outputs()[i]);
    }
    ctx.release(ins, outs, reusable);
    for (int sl : st.free_after)
      if (!kept[static_cast<size_t>(sl)]) slots[static_cast<size_t>(sl)] = Tensor();
  }
  std::vector<Tensor> result;
  result.reserve(wanted.size());
  for (const auto& w : wanted) {
    const Tensor* t = local.find(w);
    if (!t) throw Error(fmt::format("graph '{}': output '{}' was not computed", g.name, w));
    result.push_back(*t);
  }
  return result;
}

std::map<std::string, Tensor> Executor::run(const std::map<std::string, Tensor>& feeds) const {
  check_feeds(model_->graph, feeds);
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
