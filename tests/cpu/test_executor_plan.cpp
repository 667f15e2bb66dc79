// The CPU executor's run plan: values live in per-run slots resolved once per graph, names from
// outside a graph (inputs, initializers, values of enclosing graphs) are resolved once per run.
// These tests pin the name semantics the plan must keep: subgraphs (If, Loop) read values and
// initializers of the enclosing graph by name, feeds override initializers of the same name,
// run_graph returns intermediate values it is asked for (never overwritten in place nor freed),
// outputs nobody reads do not disturb the results. Every expected value is computed here by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <memory>

#include "core/parallel.h"
#include "cpu/executor.h"
#include "graph_builders.h"

using namespace opennpu;
using test_graph::node;
using test_graph::vi;

namespace {

Tensor vec(std::vector<float> v) {
  Tensor t(DType::Float32, {static_cast<int64_t>(v.size())});
  for (size_t i = 0; i < v.size(); ++i) t.data<float>()[i] = v[i];
  return t;
}

Tensor scalar_bool(bool b) {
  Tensor t(DType::Bool, {});
  t.data<bool>()[0] = b;
  return t;
}

Tensor scalar_i64(int64_t v) {
  Tensor t(DType::Int64, {});
  t.data<int64_t>()[0] = v;
  return t;
}

ir::Attribute graph_attr(std::shared_ptr<ir::Graph> g) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::Graph;
  a.g = std::move(g);
  return a;
}

const std::vector<float> kX = {1.5f, -2.0f, 0.25f, 3.0f};
const std::vector<float> kC = {0.5f, 1.0f, -1.0f, 2.0f};
constexpr float kK = 3.0f;

// a = x + c; y = If(cond) { a * k (k: the branch's own initializer) } else { a - x };
// s = Loop(3) { acc + a } from x; z = -a (a is read again after the subgraphs).
ir::Model subgraph_model() {
  ir::Model m;
  m.opsets[""] = 13;
  auto& g = m.graph;
  g.inputs.push_back(vi("x", {4}));
  g.inputs.push_back(vi("cond", DType::Bool, {}));
  g.outputs.push_back(vi("y", {4}));
  g.outputs.push_back(vi("s", {4}));
  g.outputs.push_back(vi("z", {4}));
  g.initializers["c"] = vec(kC);
  g.initializers["trip"] = scalar_i64(3);
  g.initializers["go"] = scalar_bool(true);
  g.nodes.push_back(node("Add", {"x", "c"}, {"a"}));

  auto then_g = std::make_shared<ir::Graph>();
  then_g->name = "then";
  then_g->initializers["k"] = vec({kK, kK, kK, kK});
  then_g->nodes.push_back(node("Mul", {"a", "k"}, {"t"}));
  then_g->outputs.push_back(vi("t", {4}));
  auto else_g = std::make_shared<ir::Graph>();
  else_g->name = "else";
  else_g->nodes.push_back(node("Sub", {"a", "x"}, {"e"}));
  else_g->outputs.push_back(vi("e", {4}));
  ir::Node nif = node("If", {"cond"}, {"y"});
  nif.attrs["then_branch"] = graph_attr(then_g);
  nif.attrs["else_branch"] = graph_attr(else_g);
  g.nodes.push_back(std::move(nif));

  auto body = std::make_shared<ir::Graph>();
  body->name = "body";
  body->inputs.push_back(vi("i", DType::Int64, {}));
  body->inputs.push_back(vi("cin", DType::Bool, {}));
  body->inputs.push_back(vi("acc", {4}));
  body->nodes.push_back(node("Identity", {"cin"}, {"cout"}));
  body->nodes.push_back(node("Add", {"acc", "a"}, {"acc_out"}));
  body->outputs.push_back(vi("cout", DType::Bool, {}));
  body->outputs.push_back(vi("acc_out", {4}));
  ir::Node loop = node("Loop", {"trip", "go", "x"}, {"s"});
  loop.attrs["body"] = graph_attr(body);
  g.nodes.push_back(std::move(loop));
  g.nodes.push_back(node("Neg", {"a"}, {"z"}));
  return m;
}

void expect_vec(const Tensor& t, const std::vector<float>& want, const char* what) {
  ASSERT_EQ(t.numel(), static_cast<int64_t>(want.size())) << what;
  for (size_t i = 0; i < want.size(); ++i) EXPECT_FLOAT_EQ(t.data<float>()[i], want[i]) << what << "[" << i << "]";
}

}  // namespace

TEST(ExecutorPlan, SubgraphsReadOuterValuesAndInitializersByName) {
  ir::Model m = subgraph_model();
  for (bool fast : {true, false}) {
    cpu::RunOptions o;
    o.fast = fast;
    cpu::Executor ex(m, o);
    for (int rep = 0; rep < 3; ++rep) {
      for (bool cond : {true, false}) {
        auto out = ex.run({{"x", vec(kX)}, {"cond", scalar_bool(cond)}});
        std::vector<float> y(4), s(4), z(4);
        for (size_t i = 0; i < 4; ++i) {
          const float a = kX[i] + kC[i];
          y[i] = cond ? a * kK : a - kX[i];
          s[i] = kX[i] + a + a + a;
          z[i] = -a;
        }
        expect_vec(out.at("y"), y, cond ? "then" : "else");
        expect_vec(out.at("s"), s, "loop");
        expect_vec(out.at("z"), z, "neg");
      }
    }
  }
}

TEST(ExecutorPlan, FeedOverridesInitializerOfTheSameName) {
  ir::Model m;
  m.opsets[""] = 13;
  m.graph.inputs.push_back(vi("x", {4}));
  m.graph.inputs.push_back(vi("w", {4}));  // optional: the initializer is its default
  m.graph.initializers["w"] = vec(kC);
  m.graph.outputs.push_back(vi("y", {4}));
  m.graph.nodes.push_back(node("Mul", {"x", "w"}, {"y"}));
  cpu::Executor ex(m);
  std::vector<float> want(4), fed(4);
  for (size_t i = 0; i < 4; ++i) {
    want[i] = kX[i] * kC[i];
    fed[i] = kX[i] * 2.0f;
  }
  expect_vec(ex.run({{"x", vec(kX)}}).at("y"), want, "default");
  expect_vec(ex.run({{"x", vec(kX)}, {"w", vec({2, 2, 2, 2})}}).at("y"), fed, "fed");
  expect_vec(ex.run({{"x", vec(kX)}}).at("y"), want, "default again");
}

TEST(ExecutorPlan, WantedIntermediatesAreReturnedIntact) {
  // b = relu(x); c = -b could overwrite b in place (its last reader) unless b is wanted.
  ir::Model m;
  m.opsets[""] = 13;
  m.graph.inputs.push_back(vi("x", {4}));
  m.graph.outputs.push_back(vi("y", {4}));
  m.graph.nodes.push_back(node("Relu", {"x"}, {"b"}));
  m.graph.nodes.push_back(node("Neg", {"b"}, {"c"}));
  m.graph.nodes.push_back(node("Exp", {"c"}, {"d"}));
  m.graph.nodes.push_back(node("Add", {"d", "c"}, {"y"}));
  for (bool fast : {true, false}) {
    cpu::RunOptions o;
    o.fast = fast;
    cpu::Executor ex(m, o);
    for (int rep = 0; rep < 3; ++rep) {
      cpu::Scope scope;
      scope.values.emplace("x", vec(kX));
      // The caller's graph (not the executor's optimised copy) names the graph to run.
      auto outs = ex.run_graph(m.graph, scope, {"b", "y", "c", "x"});
      ASSERT_EQ(outs.size(), 4u);
      std::vector<float> b(4), y(4), c(4);
      for (size_t i = 0; i < 4; ++i) {
        b[i] = std::max(kX[i], 0.0f);
        c[i] = -b[i];
        y[i] = std::exp(c[i]) + c[i];
      }
      expect_vec(outs[0], b, "b");
      expect_vec(outs[1], y, "y");
      expect_vec(outs[2], c, "c");
      expect_vec(outs[3], kX, "x");
      // The usual outputs only.
      expect_vec(ex.run({{"x", vec(kX)}}).at("y"), y, "run");
    }
    cpu::Scope scope;
    scope.values.emplace("x", vec(kX));
    EXPECT_THROW(ex.run_graph(m.graph, scope, {"nope"}), Error);
  }
}

TEST(ExecutorPlan, UnreadOutputsDoNotDisturbResults) {
  // TopK's indices are never read; Split's second half is never read.
  ir::Model m;
  m.opsets[""] = 13;
  m.graph.inputs.push_back(vi("x", {4}));
  m.graph.outputs.push_back(vi("y", {2}));
  Tensor k(DType::Int64, {1});
  k.data<int64_t>()[0] = 4;
  m.graph.initializers["k"] = k;
  m.graph.nodes.push_back(node("TopK", {"x", "k"}, {"v", "idx"}));
  m.graph.nodes.push_back(node("Split", {"v"}, {"lo", "hi"}));
  m.graph.nodes.push_back(node("Abs", {"lo"}, {"y"}));
  cpu::Executor ex(m);
  uint64_t allocs = 0;
  for (int rep = 0; rep < 4; ++rep) {
    auto out = ex.run({{"x", vec(kX)}});
    expect_vec(out.at("y"), {3.0f, 1.5f}, "y");  // the two largest of x, by magnitude here
    if (rep == 1) allocs = ex.pool().allocations();
    if (rep > 1) EXPECT_EQ(ex.pool().allocations(), allocs);
  }
}

namespace {
int process_threads() {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) n += e.is_directory() ? 1 : 0;
  return n;
}
}  // namespace

// At set_num_threads(1) a run computes on the calling thread only: no OpenMP worker may be
// started (oneDNN primitives built at the first run used to take OpenMP's default, all cores,
// and their workers then spun after every region; 3 input channels make oneDNN pick a reorder that
// fixes its thread count when built). Needs a machine with 2+ cores to fail.
TEST(ExecutorPlan, OneThreadRunStartsNoOtherThread) {
  ir::Model m;
  m.opsets[""] = 13;
  auto& g = m.graph;
  g.inputs.push_back(vi("x", {1, 3, 128, 128}));
  g.outputs.push_back(vi("y", {1, 8, 128, 128}));
  Tensor w1(DType::Float32, {8, 3, 1, 1}), w2(DType::Float32, {8, 1, 3, 3}), w3(DType::Float32, {8, 8, 1, 1});
  for (Tensor* w : {&w1, &w2, &w3})
    for (int64_t i = 0; i < w->numel(); ++i) w->data<float>()[i] = 0.01f * static_cast<float>(i % 13) - 0.05f;
  g.initializers["w1"] = w1;
  g.initializers["w2"] = w2;
  g.initializers["w3"] = w3;
  g.nodes.push_back(node("Conv", {"x", "w1"}, {"a"}));
  g.nodes.push_back(node("Relu", {"a"}, {"b"}));
  ir::Node dw = node("Conv", {"b", "w2"}, {"c"});
  ir::Attribute grp;
  grp.kind = ir::Attribute::Kind::Int;
  grp.i = 8;
  dw.attrs["group"] = grp;
  ir::Attribute pads;
  pads.kind = ir::Attribute::Kind::Ints;
  pads.ints = {1, 1, 1, 1};
  dw.attrs["pads"] = pads;
  g.nodes.push_back(std::move(dw));
  g.nodes.push_back(node("Relu", {"c"}, {"d"}));
  g.nodes.push_back(node("Conv", {"d", "w3"}, {"e"}));
  g.nodes.push_back(node("Add", {"e", "a"}, {"y"}));
  Tensor x(DType::Float32, {1, 3, 128, 128});
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = 0.001f * static_cast<float>(i % 101);
  const int saved = num_threads();
  set_num_threads(1);
  const int before = process_threads();
  cpu::Executor fast(m);
  cpu::RunOptions ro;
  ro.fast = false;
  cpu::Executor ref(m, ro);
  for (int rep = 0; rep < 3; ++rep) {
    Tensor a = fast.run({{"x", x}}).at("y"), b = ref.run({{"x", x}}).at("y");
    for (int64_t i = 0; i < a.numel(); ++i) ASSERT_NEAR(a.data<float>()[i], b.data<float>()[i], 1e-5f) << i;
  }
  EXPECT_EQ(process_threads(), before) << "a 1-thread run started another thread";
  set_num_threads(saved);
}
