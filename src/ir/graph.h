// ir/graph.h — the in-memory model: a Graph of Nodes that read and write named Values.
// Values are named as in ONNX (a node output, a graph input or an initializer); an empty name is
// an omitted optional input/output. Subgraphs (If/Loop/Scan bodies) are Graph attributes and may
// read values of enclosing graphs by name. The importer fills this from protobuf; passes rewrite
// it; backends read it. Nothing here depends on a backend or on protobuf.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "opennpu/tensor.h"

namespace opennpu::ir {

struct Graph;

struct Attribute {
  enum class Kind : uint8_t { Float, Int, String, Tensor, Graph, Floats, Ints, Strings, Tensors, Graphs };
  Kind kind = Kind::Int;
  float f = 0;
  int64_t i = 0;
  std::string s;
  opennpu::Tensor t;
  std::shared_ptr<ir::Graph> g;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;
  std::vector<opennpu::Tensor> tensors;
  std::vector<std::shared_ptr<ir::Graph>> graphs;
};
const char* attr_kind_name(Attribute::Kind k);

// A dimension: a known size, a named symbol ("batch"), or unknown (value < 0, empty param).
struct Dim {
  int64_t value = -1;
  std::string param;
  bool known() const { return value >= 0; }
};

struct ValueInfo {
  std::string name;
  DType dtype = DType::Undefined;
  bool has_shape = false;  // false: rank unknown
  std::vector<Dim> dims;
  // "tensor", "sequence" (of tensors with dtype/dims above), "optional" (of a tensor),
  // "optional_sequence".
  std::string kind = "tensor";
  std::string describe() const;  // "float32 [1,3,'N',?]"
  bool fully_static() const;
  Shape static_shape() const;  // requires fully_static()
};

struct Node {
  std::string name;  // never empty after import (synthesised as "<op>_<index>" when missing)
  std::string op_type;
  std::string domain;  // "" for ai.onnx
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::map<std::string, Attribute> attrs;

  bool has_attr(const std::string& n) const { return attrs.count(n) != 0; }
  const Attribute* attr(const std::string& n) const {
    auto it = attrs.find(n);
    return it == attrs.end() ? nullptr : &it->second;
  }
  // Typed getters; throw Error (naming node, op and attribute) on a wrong kind.
  int64_t attr_i(const std::string& n, int64_t dflt) const;
  float attr_f(const std::string& n, float dflt) const;
  std::string attr_s(const std::string& n, const std::string& dflt) const;
  std::vector<int64_t> attr_ints(const std::string& n, std::vector<int64_t> dflt = {}) const;
  std::vector<float> attr_floats(const std::string& n, std::vector<float> dflt = {}) const;
  std::vector<std::string> attr_strings(const std::string& n, std::vector<std::string> dflt = {}) const;
  const opennpu::Tensor* attr_t(const std::string& n) const;
  const Graph* attr_g(const std::string& n) const;
  // "node 'conv1' (Conv)": prefix for error messages.
  std::string where() const;
  // Number of leading inputs actually given (trailing omitted ones do not count).
  size_t num_inputs() const;
  bool has_input(size_t i) const { return i < inputs.size() && !inputs[i].empty(); }
};

struct Graph {
  std::string name;
  std::vector<Node> nodes;  // topologically ordered after import / passes
  std::vector<ValueInfo> inputs;
  std::vector<ValueInfo> outputs;
  std::map<std::string, opennpu::Tensor> initializers;
  std::map<std::string, ValueInfo> value_info;  // inferred types/shapes of intermediate values

  const ValueInfo* find_value_info(const std::string& n) const;
  bool is_initializer(const std::string& n) const { return initializers.count(n) != 0; }
};

struct Model {
  int64_t ir_version = 0;
  std::map<std::string, int64_t> opsets;  // domain ("" = ai.onnx) -> version
  std::string producer;
  std::string path;  // file it was loaded from (for messages)
  Graph graph;
  int64_t opset(const std::string& domain = "") const {
    auto it = opsets.find(domain);
    return it == opsets.end() ? 0 : it->second;
  }
};

// Sorts nodes so that every node follows the producers of its inputs. Values produced by no node
// must be graph inputs, initializers or names in `outer_scope`; anything else is an Error naming
// the node and the value. A cycle is an Error listing nodes on it. Recurses into subgraphs.
void topo_sort(Graph& g, const std::vector<std::string>& outer_scope = {});

// Names every node reads, including values subgraphs read from enclosing scopes.
std::vector<std::string> node_reads(const Node& n);

}  // namespace opennpu::ir
