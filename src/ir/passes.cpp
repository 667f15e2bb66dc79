#include "ir/passes.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

namespace opennpu::ir {

const std::vector<PassInfo>& pass_list() {
  static const std::vector<PassInfo> l = {
      {"fold_shapes", "Shape/Size of statically shaped values become constants"},
      {"fold_constants", "evaluate nodes whose inputs are all constant; Constant nodes become initializers"},
      {"fold_conv_batchnorm", "fold inference BatchNormalization into the preceding Conv's weights and bias"},
      {"remove_dead_nodes", "drop nodes and initializers that no graph output depends on"},
  };
  return l;
}

namespace {
const std::set<std::string> kNonFoldable = {"If", "Loop", "Scan", "RandomUniform", "RandomNormal", "RandomUniformLike",
                                            "RandomNormalLike", "Bernoulli", "Multinomial", "Dropout"};

std::unordered_map<std::string, int> reader_counts(const Graph& g) {
  std::unordered_map<std::string, int> c;
  for (const auto& n : g.nodes)
    for (const auto& r : node_reads(n)) c[r]++;
  for (const auto& o : g.outputs) c[o.name] += 1 << 20;
  return c;
}
}  // namespace

int fold_constants(Graph& g, const NodeEvaluator& eval, int64_t max_bytes) {
  int changes = 0;
  std::unordered_set<std::string> graph_inputs;
  for (const auto& v : g.inputs) graph_inputs.insert(v.name);
  std::vector<Node> kept;
  for (auto& n : g.nodes) {
    bool foldable = n.domain.empty() && !kNonFoldable.count(n.op_type) && !n.outputs.empty();
    for (const auto& [_, a] : n.attrs)
      if (a.kind == Attribute::Kind::Graph || a.kind == Attribute::Kind::Graphs) foldable = false;
    std::vector<const Tensor*> ins;
    for (const auto& i : n.inputs) {
      if (i.empty()) { ins.push_back(nullptr); continue; }
      auto it = g.initializers.find(i);
      // An initializer that is also a graph input can be overridden at run time: not constant.
      if (it == g.initializers.end() || graph_inputs.count(i)) { foldable = false; break; }
      ins.push_back(&it->second);
    }
    if (foldable) {
      std::vector<Tensor> outs;
      try { outs = eval(n, ins); } catch (const Error&) { foldable = false; }
      int64_t bytes = 0;
      for (auto& t : outs) bytes += static_cast<int64_t>(t.nbytes());
      if (foldable && outs.size() == n.outputs.size() && bytes <= max_bytes) {
        for (size_t k = 0; k < outs.size(); ++k)
          if (!n.outputs[k].empty()) g.initializers[n.outputs[k]] = outs[k];
        ++changes;
        continue;
      }
    }
    kept.push_back(std::move(n));
  }
  g.nodes = std::move(kept);
  return changes;
}

int fold_shapes(Graph& g) {
  int changes = 0;
  std::unordered_set<std::string> graph_inputs;
  for (const auto& v : g.inputs) graph_inputs.insert(v.name);
  auto static_shape = [&](const std::string& v, Shape& out) -> bool {
    auto it = g.initializers.find(v);
    if (it != g.initializers.end() && !graph_inputs.count(v)) { out = it->second.shape(); return true; }
    const ValueInfo* vi = g.find_value_info(v);
    if (!vi || !vi->fully_static() || vi->kind != "tensor") return false;
    out = vi->static_shape();
    return true;
  };
  std::vector<Node> kept;
  for (auto& n : g.nodes) {
    Shape s;
    if (n.domain.empty() && (n.op_type == "Shape" || n.op_type == "Size") && !n.inputs.empty() && !n.outputs.empty() &&
        static_shape(n.inputs[0], s)) {
      Tensor t;
      if (n.op_type == "Size") {
        t = Tensor::scalar_i64(checked_numel(s));
      } else {
        const int64_t r = static_cast<int64_t>(s.size());
        int64_t start = n.attr_i("start", 0), end = n.attr_i("end", r);
        if (start < 0) start += r;
        if (end < 0) end += r;
        start = std::clamp<int64_t>(start, 0, r);
        end = std::clamp<int64_t>(end, start, r);
        t = Tensor(DType::Int64, {end - start});
        for (int64_t i = start; i < end; ++i) t.data<int64_t>()[i - start] = s[i];
      }
      g.initializers[n.outputs[0]] = t;
      ++changes;
      continue;
    }
    kept.push_back(std::move(n));
  }
  g.nodes = std::move(kept);
  return changes;
}

int remove_dead_nodes(Graph& g) {
  int changes = 0;
  std::unordered_set<std::string> live;
  for (const auto& o : g.outputs) live.insert(o.name);
  std::vector<bool> keep(g.nodes.size(), false);
  for (int64_t i = static_cast<int64_t>(g.nodes.size()) - 1; i >= 0; --i) {
    const Node& n = g.nodes[i];
    bool needed = false;
    for (const auto& o : n.outputs) needed |= !o.empty() && live.count(o);
    if (!needed) { ++changes; continue; }
    keep[i] = true;
    for (const auto& r : node_reads(n)) live.insert(r);
  }
  std::vector<Node> kept;
  for (size_t i = 0; i < g.nodes.size(); ++i) if (keep[i]) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
  std::unordered_set<std::string> inputs;
  for (const auto& v : g.inputs) inputs.insert(v.name);
  for (auto it = g.initializers.begin(); it != g.initializers.end();) {
    if (!live.count(it->first) && !inputs.count(it->first)) { it = g.initializers.erase(it); ++changes; }
    else ++it;
  }
  return changes;
}

int fold_conv_batchnorm(Graph& g) {
  int changes = 0;
  auto readers = reader_counts(g);
  std::unordered_map<std::string, size_t> producer;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (const auto& o : g.nodes[i].outputs) producer[o] = i;
  std::unordered_set<std::string> graph_inputs;
  for (const auto& v : g.inputs) graph_inputs.insert(v.name);
  auto constant = [&](const std::string& n) -> Tensor* {
    if (n.empty() || graph_inputs.count(n)) return nullptr;
    auto it = g.initializers.find(n);
    return it == g.initializers.end() || it->second.dtype() != DType::Float32 ? nullptr : &it->second;
  };
  std::vector<bool> drop(g.nodes.size(), false);
  for (size_t bi = 0; bi < g.nodes.size(); ++bi) {
    Node& bn = g.nodes[bi];
    if (bn.op_type != "BatchNormalization" || !bn.domain.empty() || bn.inputs.size() < 5) continue;
    if (bn.attr_i("training_mode", 0) != 0) continue;
    if (std::count_if(bn.outputs.begin(), bn.outputs.end(), [](const std::string& s) { return !s.empty(); }) != 1) continue;
    auto pit = producer.find(bn.inputs[0]);
    if (pit == producer.end()) continue;
    Node& conv = g.nodes[pit->second];
    if (conv.op_type != "Conv" || !conv.domain.empty() || readers[bn.inputs[0]] != 1) continue;
    Tensor* w = constant(conv.inputs.size() > 1 ? conv.inputs[1] : "");
    Tensor* b = conv.has_input(2) ? constant(conv.inputs[2]) : nullptr;
    if (!w || (conv.has_input(2) && !b) || w->rank() < 3) continue;
    Tensor *scale = constant(bn.inputs[1]), *bias = constant(bn.inputs[2]), *mean = constant(bn.inputs[3]),
           *var = constant(bn.inputs[4]);
    if (!scale || !bias || !mean || !var) continue;
    const int64_t co = w->dim(0);
    if (scale->numel() != co || bias->numel() != co || mean->numel() != co || var->numel() != co) continue;
    const float eps = bn.attr_f("epsilon", 1e-5f);
    const int64_t per = w->numel() / std::max<int64_t>(co, 1);
    Tensor nw = w->clone();
    Tensor nb(DType::Float32, {co});
    for (int64_t c = 0; c < co; ++c) {
      const float s = scale->data<float>()[c] / std::sqrt(var->data<float>()[c] + eps);
      for (int64_t k = 0; k < per; ++k) nw.data<float>()[c * per + k] *= s;
      const float b0 = b ? b->data<float>()[c] : 0.f;
      nb.data<float>()[c] = (b0 - mean->data<float>()[c]) * s + bias->data<float>()[c];
    }
    std::string wname = conv.name + "/bn_folded_W", bname = conv.name + "/bn_folded_B";
    g.initializers[wname] = nw;
    g.initializers[bname] = nb;
    conv.inputs.resize(3);
    conv.inputs[1] = wname;
    conv.inputs[2] = bname;
    conv.outputs[0] = bn.outputs[0];
    drop[bi] = true;
    ++changes;
  }
  std::vector<Node> kept;
  for (size_t i = 0; i < g.nodes.size(); ++i) if (!drop[i]) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
  if (changes) remove_dead_nodes(g);
  return changes;
}

}  // namespace opennpu::ir
