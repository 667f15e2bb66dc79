// Graph helpers: attribute getters with typed errors, topological sort with cycle detection.
#include "ir/graph.h"

#include <algorithm>
#include <functional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

namespace opennpu::ir {

const char* attr_kind_name(Attribute::Kind k) {
  static const char* names[] = {"float", "int", "string", "tensor", "graph", "floats", "ints", "strings", "tensors", "graphs"};
  return names[static_cast<int>(k)];
}

std::string ValueInfo::describe() const {
  std::string s(dtype_name(dtype));
  if (!has_shape) return s + " [?...]";
  s += " [";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ",";
    if (dims[i].known()) s += std::to_string(dims[i].value);
    else if (!dims[i].param.empty()) s += dims[i].param;
    else s += "?";
  }
  return s + "]";
}
bool ValueInfo::fully_static() const {
  return has_shape && std::all_of(dims.begin(), dims.end(), [](const Dim& d) { return d.known(); });
}
Shape ValueInfo::static_shape() const {
  Shape s;
  for (const auto& d : dims) s.push_back(d.value);
  return s;
}

std::string Node::where() const { return fmt::format("node '{}' ({})", name, op_type); }

size_t Node::num_inputs() const {
  size_t n = inputs.size();
  while (n > 0 && inputs[n - 1].empty()) --n;
  return n;
}

namespace {
const Attribute* typed(const Node& node, const std::string& n, Attribute::Kind k) {
  const Attribute* a = node.attr(n);
  if (!a) return nullptr;
  if (a->kind != k)
    throw Error(fmt::format("{}: attribute '{}' must be of type {}, got {}", node.where(), n, attr_kind_name(k),
                            attr_kind_name(a->kind)));
  return a;
}
}  // namespace

int64_t Node::attr_i(const std::string& n, int64_t dflt) const {
  auto* a = typed(*this, n, Attribute::Kind::Int);
  return a ? a->i : dflt;
}
float Node::attr_f(const std::string& n, float dflt) const {
  auto* a = attr(n);
  if (a && a->kind == Attribute::Kind::Int) return static_cast<float>(a->i);  // tolerated by ONNX producers
  a = typed(*this, n, Attribute::Kind::Float);
  return a ? a->f : dflt;
}
std::string Node::attr_s(const std::string& n, const std::string& dflt) const {
  auto* a = typed(*this, n, Attribute::Kind::String);
  return a ? a->s : dflt;
}
std::vector<int64_t> Node::attr_ints(const std::string& n, std::vector<int64_t> dflt) const {
  auto* a = typed(*this, n, Attribute::Kind::Ints);
  return a ? a->ints : dflt;
}
std::vector<float> Node::attr_floats(const std::string& n, std::vector<float> dflt) const {
  auto* a = typed(*this, n, Attribute::Kind::Floats);
  return a ? a->floats : dflt;
}
std::vector<std::string> Node::attr_strings(const std::string& n, std::vector<std::string> dflt) const {
  auto* a = typed(*this, n, Attribute::Kind::Strings);
  return a ? a->strings : dflt;
}
const opennpu::Tensor* Node::attr_t(const std::string& n) const {
  auto* a = typed(*this, n, Attribute::Kind::Tensor);
  return a ? &a->t : nullptr;
}
const Graph* Node::attr_g(const std::string& n) const {
  auto* a = typed(*this, n, Attribute::Kind::Graph);
  return a ? a->g.get() : nullptr;
}

const ValueInfo* Graph::find_value_info(const std::string& n) const {
  for (const auto& v : inputs) if (v.name == n) return &v;
  for (const auto& v : outputs) if (v.name == n) return &v;
  auto it = value_info.find(n);
  return it == value_info.end() ? nullptr : &it->second;
}

namespace {
// Names a subgraph reads that it does not define itself (outer-scope references).
void collect_free_reads(const Graph& g, std::unordered_set<std::string>& out) {
  std::unordered_set<std::string> defined;
  for (const auto& v : g.inputs) defined.insert(v.name);
  for (const auto& [n, _] : g.initializers) defined.insert(n);
  for (const auto& node : g.nodes)
    for (const auto& o : node.outputs) defined.insert(o);
  for (const auto& node : g.nodes) {
    for (const auto& r : node_reads(node))
      if (!r.empty() && !defined.count(r)) out.insert(r);
  }
  for (const auto& v : g.outputs)
    if (!defined.count(v.name)) out.insert(v.name);
}
}  // namespace

std::vector<std::string> node_reads(const Node& n) {
  std::vector<std::string> r;
  for (const auto& i : n.inputs) if (!i.empty()) r.push_back(i);
  for (const auto& [_, a] : n.attrs) {
    std::unordered_set<std::string> free;
    if (a.kind == Attribute::Kind::Graph && a.g) collect_free_reads(*a.g, free);
    if (a.kind == Attribute::Kind::Graphs) for (auto& g : a.graphs) if (g) collect_free_reads(*g, free);
    std::vector<std::string> sorted(free.begin(), free.end());
    std::sort(sorted.begin(), sorted.end());
    r.insert(r.end(), sorted.begin(), sorted.end());
  }
  return r;
}

void topo_sort(Graph& g, const std::vector<std::string>& outer_scope) {
  std::unordered_set<std::string> available(outer_scope.begin(), outer_scope.end());
  for (const auto& v : g.inputs) available.insert(v.name);
  for (const auto& [n, _] : g.initializers) available.insert(n);

  std::unordered_map<std::string, size_t> producer;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (const auto& o : g.nodes[i].outputs) {
      if (o.empty()) continue;
      if (producer.count(o) || (available.count(o) && !std::count(outer_scope.begin(), outer_scope.end(), o)))
        throw Error(fmt::format("{}: output '{}' is defined more than once in graph '{}'", g.nodes[i].where(), o, g.name));
      producer[o] = i;
    }

  const size_t n = g.nodes.size();
  std::vector<std::vector<size_t>> deps(n);
  for (size_t i = 0; i < n; ++i) {
    for (const auto& r : node_reads(g.nodes[i])) {
      auto it = producer.find(r);
      if (it != producer.end()) deps[i].push_back(it->second);
      else if (!available.count(r))
        throw Error(fmt::format("{}: input '{}' is not produced by any node, graph input or initializer of graph '{}'",
                                g.nodes[i].where(), r, g.name));
    }
  }
  // Iterative DFS (no recursion: graphs can be huge); keeps the original order where possible.
  std::vector<int> state(n, 0);  // 0 new, 1 on stack, 2 done
  std::vector<size_t> order;
  order.reserve(n);
  for (size_t root = 0; root < n; ++root) {
    if (state[root]) continue;
    std::vector<std::pair<size_t, size_t>> stack{{root, 0}};
    state[root] = 1;
    while (!stack.empty()) {
      auto& [v, k] = stack.back();
      if (k < deps[v].size()) {
        size_t d = deps[v][k++];
        if (state[d] == 1) {
          std::string cyc;
          for (auto& [s, _] : stack) cyc += "'" + g.nodes[s].name + "' ";
          throw Error(fmt::format("graph '{}' has a cycle through nodes {}", g.name, cyc));
        }
        if (state[d] == 0) { state[d] = 1; stack.push_back({d, 0}); }
      } else {
        state[v] = 2;
        order.push_back(v);
        stack.pop_back();
      }
    }
  }
  std::vector<Node> sorted;
  sorted.reserve(n);
  for (size_t i : order) sorted.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(sorted);

  for (const auto& o : g.outputs)
    if (!producer.count(o.name) && !available.count(o.name))
      throw Error(fmt::format("graph '{}': output '{}' is not produced by any node", g.name, o.name));

  // Subgraphs see everything visible here.
  std::vector<std::string> scope(available.begin(), available.end());
  for (const auto& [name, _] : producer) scope.push_back(name);
  for (auto& node : g.nodes)
    for (auto& [_, a] : node.attrs) {
      if (a.kind == Attribute::Kind::Graph && a.g) topo_sort(*a.g, scope);
      if (a.kind == Attribute::Kind::Graphs) for (auto& sg : a.graphs) if (sg) topo_sort(*sg, scope);
    }
}

}  // namespace opennpu::ir
