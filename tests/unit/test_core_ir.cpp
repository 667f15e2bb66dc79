// Unit tests for ir::topo_sort and node_reads: ordering, cycles, undefined values, scoping.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>

#include "ir/graph.h"

using namespace opennpu;
using ir::Graph;
using ir::Node;

namespace {

Node node(const std::string& name, const std::string& op, std::vector<std::string> in, std::vector<std::string> out) {
  Node n;
  n.name = name;
  n.op_type = op;
  n.inputs = std::move(in);
  n.outputs = std::move(out);
  return n;
}

ir::ValueInfo value(const std::string& name) {
  ir::ValueInfo v;
  v.name = name;
  v.dtype = DType::Float32;
  return v;
}

size_t pos(const Graph& g, const std::string& name) {
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (g.nodes[i].name == name) return i;
  ADD_FAILURE() << "node " << name << " missing";
  return 0;
}

std::string error_of(Graph& g, const std::vector<std::string>& outer = {}) {
  try {
    ir::topo_sort(g, outer);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(TopoSort, OrdersProducersFirst) {
  Graph g;
  g.name = "main";
  g.inputs = {value("x")};
  g.outputs = {value("out")};
  g.initializers["w"] = Tensor(DType::Float32, {1});
  // Given in reverse order; a diamond: a -> (b, c) -> d.
  g.nodes = {node("d", "Add", {"b_out", "c_out"}, {"out"}), node("c", "Mul", {"a_out", "w"}, {"c_out"}),
             node("b", "Relu", {"a_out"}, {"b_out"}), node("a", "Relu", {"x"}, {"a_out"})};
  ir::topo_sort(g);
  ASSERT_EQ(g.nodes.size(), 4u);
  EXPECT_LT(pos(g, "a"), pos(g, "b"));
  EXPECT_LT(pos(g, "a"), pos(g, "c"));
  EXPECT_LT(pos(g, "b"), pos(g, "d"));
  EXPECT_LT(pos(g, "c"), pos(g, "d"));
  // Sorting a sorted graph keeps it as it is.
  std::vector<std::string> before;
  for (auto& n : g.nodes) before.push_back(n.name);
  ir::topo_sort(g);
  for (size_t i = 0; i < before.size(); ++i) EXPECT_EQ(g.nodes[i].name, before[i]);
}

TEST(TopoSort, KeepsOriginalOrderOfIndependentNodes) {
  Graph g;
  g.inputs = {value("x")};
  g.outputs = {value("p"), value("q"), value("r")};
  g.nodes = {node("n1", "Relu", {"x"}, {"p"}), node("n2", "Relu", {"x"}, {"q"}), node("n3", "Relu", {"x"}, {"r"})};
  ir::topo_sort(g);
  EXPECT_EQ(g.nodes[0].name, "n1");
  EXPECT_EQ(g.nodes[1].name, "n2");
  EXPECT_EQ(g.nodes[2].name, "n3");
}

TEST(TopoSort, DetectsCycles) {
  Graph g;
  g.name = "loopy";
  g.inputs = {value("x")};
  g.outputs = {value("c")};
  g.nodes = {node("n1", "Add", {"x", "c"}, {"a"}), node("n2", "Relu", {"a"}, {"b"}), node("n3", "Relu", {"b"}, {"c"})};
  std::string e = error_of(g);
  EXPECT_NE(e.find("cycle"), std::string::npos) << e;
  EXPECT_NE(e.find("n2"), std::string::npos) << e;
  // Self-loop.
  Graph s;
  s.inputs = {value("x")};
  s.outputs = {value("y")};
  s.nodes = {node("self", "Add", {"x", "y"}, {"y"})};
  EXPECT_NE(error_of(s).find("cycle"), std::string::npos);
}

TEST(TopoSort, ReportsUndefinedInputs) {
  Graph g;
  g.name = "main";
  g.inputs = {value("x")};
  g.outputs = {value("y")};
  g.nodes = {node("add", "Add", {"x", "ghost"}, {"y"})};
  std::string e = error_of(g);
  EXPECT_NE(e.find("ghost"), std::string::npos) << e;
  EXPECT_NE(e.find("add"), std::string::npos) << e;
  // ... unless an enclosing scope provides it.
  EXPECT_EQ(error_of(g, {"ghost"}), "");
  // Omitted optional inputs ("") are not reads.
  Graph o;
  o.inputs = {value("x")};
  o.outputs = {value("y")};
  o.nodes = {node("clip", "Clip", {"x", "", ""}, {"y"})};
  EXPECT_EQ(error_of(o), "");
}

TEST(TopoSort, ReportsUnproducedOutputsAndDuplicates) {
  Graph g;
  g.inputs = {value("x")};
  g.outputs = {value("nowhere")};
  g.nodes = {node("r", "Relu", {"x"}, {"y"})};
  EXPECT_NE(error_of(g).find("nowhere"), std::string::npos);
  Graph d;
  d.inputs = {value("x")};
  d.outputs = {value("y")};
  d.nodes = {node("r1", "Relu", {"x"}, {"y"}), node("r2", "Relu", {"x"}, {"y"})};
  EXPECT_NE(error_of(d).find("more than once"), std::string::npos);
  Graph shadow;  // a node may not overwrite a graph input
  shadow.inputs = {value("x")};
  shadow.outputs = {value("x")};
  shadow.nodes = {node("r", "Relu", {"x"}, {"x"})};
  EXPECT_NE(error_of(shadow), "");
}

TEST(TopoSort, SubgraphReadsOrderTheirNode) {
  // An If whose branch reads "a" from the outer graph must come after a's producer.
  auto branch = std::make_shared<Graph>();
  branch->name = "then";
  branch->outputs = {value("t")};
  branch->nodes = {node("inner", "Relu", {"a"}, {"t"})};
  Node iff = node("if", "If", {"cond"}, {"y"});
  ir::Attribute at;
  at.kind = ir::Attribute::Kind::Graph;
  at.g = branch;
  iff.attrs["then_branch"] = at;
  at.g = std::make_shared<Graph>(*branch);
  iff.attrs["else_branch"] = at;

  Graph g;
  g.inputs = {value("x"), value("cond")};
  g.outputs = {value("y")};
  g.nodes = {iff, node("make_a", "Relu", {"x"}, {"a"})};
  auto reads = ir::node_reads(g.nodes[0]);
  EXPECT_NE(std::find(reads.begin(), reads.end(), "a"), reads.end());
  ir::topo_sort(g);
  EXPECT_LT(pos(g, "make_a"), pos(g, "if"));

  // A branch reading a value nobody defines is an error.
  Graph bad = g;
  auto bad_branch = std::make_shared<Graph>(*branch);
  bad_branch->nodes[0].inputs = {"undefined_in_branch"};
  bad.nodes[pos(bad, "if")].attrs["then_branch"].g = bad_branch;
  EXPECT_NE(error_of(bad).find("undefined_in_branch"), std::string::npos);
}

TEST(TopoSort, LargeChainDoesNotRecurse) {
  // 200k nodes in a chain, given in reverse: an iterative sort handles it without a deep stack.
  Graph g;
  g.inputs = {value("v0")};
  const int n = 200000;
  g.outputs = {value("v" + std::to_string(n))};
  for (int i = n; i >= 1; --i)
    g.nodes.push_back(node("n" + std::to_string(i), "Relu", {"v" + std::to_string(i - 1)}, {"v" + std::to_string(i)}));
  ir::topo_sort(g);
  EXPECT_EQ(g.nodes.front().name, "n1");
  EXPECT_EQ(g.nodes.back().name, "n" + std::to_string(n));
}
