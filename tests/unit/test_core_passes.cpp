// Unit tests for ir passes: fold_constants, remove_dead_nodes, fold_conv_batchnorm.
// The Conv+BN fold is checked two ways: against a direct convolution written here (always), and
// end to end through cpu::Executor before/after the pass (once Conv and BatchNormalization
// kernels are registered; skipped with a message until then).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "cpu/executor.h"
#include "ir/passes.h"

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

ir::ValueInfo value(const std::string& name, Shape shape = {}) {
  ir::ValueInfo v;
  v.name = name;
  v.dtype = DType::Float32;
  v.has_shape = !shape.empty();
  for (int64_t d : shape) v.dims.push_back(ir::Dim{d, ""});
  return v;
}

Tensor filled(Shape s, std::mt19937& rng, float lo, float hi) {
  Tensor t(DType::Float32, std::move(s));
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
  return t;
}

Tensor vec(std::vector<float> v) {
  Tensor t(DType::Float32, {static_cast<int64_t>(v.size())});
  for (size_t i = 0; i < v.size(); ++i) t.data<float>()[i] = v[i];
  return t;
}

// Elementwise Add/Mul of same-shape float tensors: enough of an evaluator to test folding
// without depending on the CPU kernels.
std::vector<Tensor> eval_simple(const Node& n, const std::vector<const Tensor*>& in) {
  if (n.op_type != "Add" && n.op_type != "Mul") throw Error("cannot evaluate " + n.op_type);
  Tensor out(DType::Float32, in[0]->shape());
  for (int64_t i = 0; i < out.numel(); ++i) {
    float a = in[0]->data<float>()[i], b = in[1]->data<float>()[i];
    out.data<float>()[i] = n.op_type == "Add" ? a + b : a * b;
  }
  return {out};
}

}  // namespace

TEST(FoldConstants, FoldsConstantChainsOnly) {
  Graph g;
  g.inputs = {value("x", {3})};
  g.outputs = {value("y", {3})};
  g.initializers["c1"] = vec({1, 2, 3});
  g.initializers["c2"] = vec({10, 20, 30});
  g.nodes = {node("k", "Add", {"c1", "c2"}, {"k"}),   // constant
             node("k2", "Mul", {"k", "c1"}, {"k2"}),  // constant once k is folded
             node("y", "Add", {"x", "k2"}, {"y"})};   // reads the graph input: stays
  EXPECT_EQ(ir::fold_constants(g, eval_simple), 2);
  ASSERT_EQ(g.nodes.size(), 1u);
  EXPECT_EQ(g.nodes[0].name, "y");
  ASSERT_TRUE(g.is_initializer("k2"));
  EXPECT_EQ(g.initializers["k2"].data<float>()[2], (3 + 30) * 3);
  EXPECT_EQ(ir::fold_constants(g, eval_simple), 0);  // re-runnable: nothing left
}

TEST(FoldConstants, LeavesOverridableNondeterministicAndFailingNodes) {
  Graph g;
  g.inputs = {value("x", {3}), value("c1", {3})};  // c1 is an initializer AND an input: overridable
  g.outputs = {value("a"), value("r"), value("s"), value("t")};
  g.initializers["c1"] = vec({1, 2, 3});
  g.initializers["c2"] = vec({1, 1, 1});
  g.nodes = {node("a", "Add", {"c1", "c2"}, {"a"}),
             node("r", "RandomUniformLike", {"c2"}, {"r"}),
             node("s", "Sub", {"c2", "c2"}, {"s"}),  // the evaluator cannot do Sub: kept, not an error
             node("t", "Add", {"c2", "c2"}, {"t"})};
  EXPECT_EQ(ir::fold_constants(g, eval_simple), 1);
  EXPECT_EQ(g.nodes.size(), 3u);
  EXPECT_TRUE(g.is_initializer("t"));
  // Outputs larger than max_bytes stay as nodes.
  Graph big;
  big.outputs = {value("k")};
  big.initializers["c"] = Tensor(DType::Float32, {1024});
  big.nodes = {node("k", "Add", {"c", "c"}, {"k"})};
  EXPECT_EQ(ir::fold_constants(big, eval_simple, 1024), 0);
  EXPECT_EQ(ir::fold_constants(big, eval_simple, 4096), 1);
}

TEST(RemoveDeadNodes, DropsUnreadNodesAndInitializers) {
  Graph g;
  g.inputs = {value("x")};
  g.outputs = {value("y")};
  g.initializers["w"] = vec({1});
  g.initializers["unused"] = vec({2});
  g.nodes = {node("live1", "Relu", {"x"}, {"a"}), node("dead1", "Relu", {"a"}, {"d1"}),
             node("dead2", "Add", {"d1", "w"}, {"d2"}), node("live2", "Add", {"a", "w"}, {"y"})};
  int changes = ir::remove_dead_nodes(g);
  EXPECT_EQ(changes, 3);  // two nodes + one initializer
  ASSERT_EQ(g.nodes.size(), 2u);
  EXPECT_EQ(g.nodes[0].name, "live1");
  EXPECT_EQ(g.nodes[1].name, "live2");
  EXPECT_TRUE(g.is_initializer("w"));
  EXPECT_FALSE(g.is_initializer("unused"));
  EXPECT_EQ(ir::remove_dead_nodes(g), 0);
}

TEST(RemoveDeadNodes, KeepsValuesReadBySubgraphs) {
  auto branch = std::make_shared<Graph>();
  branch->outputs = {value("t")};
  branch->nodes = {node("inner", "Relu", {"outer_val"}, {"t"})};
  Node iff = node("if", "If", {"cond"}, {"y"});
  ir::Attribute at;
  at.kind = ir::Attribute::Kind::Graph;
  at.g = branch;
  iff.attrs["then_branch"] = at;
  iff.attrs["else_branch"] = at;
  Graph g;
  g.inputs = {value("x"), value("cond")};
  g.outputs = {value("y")};
  g.nodes = {node("producer", "Relu", {"x"}, {"outer_val"}), iff};
  EXPECT_EQ(ir::remove_dead_nodes(g), 0);
  EXPECT_EQ(g.nodes.size(), 2u);
}

namespace {

constexpr int64_t N = 2, CI = 3, H = 6, W = 5, CO = 4, K = 3;

// Direct 2-D convolution, stride 1, pad 1, NCHW / OIHW, in double.
std::vector<double> conv_ref(const Tensor& x, const Tensor& w, const Tensor* b) {
  std::vector<double> y(N * CO * H * W);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < CO; ++o)
      for (int64_t i = 0; i < H; ++i)
        for (int64_t j = 0; j < W; ++j) {
          double s = b ? b->data<float>()[o] : 0.0;
          for (int64_t c = 0; c < CI; ++c)
            for (int64_t ki = 0; ki < K; ++ki)
              for (int64_t kj = 0; kj < K; ++kj) {
                int64_t ii = i + ki - 1, jj = j + kj - 1;
                if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                s += static_cast<double>(x.data<float>()[((n * CI + c) * H + ii) * W + jj]) *
                     w.data<float>()[((o * CI + c) * K + ki) * K + kj];
              }
          y[((n * CO + o) * H + i) * W + j] = s;
        }
  return y;
}

struct ConvBn {
  ir::Model model;
  Tensor x;
};

ConvBn make_conv_bn(bool with_bias) {
  std::mt19937 rng(42);
  ConvBn cb;
  ir::Model& m = cb.model;
  m.opsets[""] = 14;
  Graph& g = m.graph;
  g.name = "conv_bn";
  g.inputs = {value("x", {N, CI, H, W})};
  g.outputs = {value("y", {N, CO, H, W})};
  g.initializers["W"] = filled({CO, CI, K, K}, rng, -1, 1);
  if (with_bias) g.initializers["B"] = filled({CO}, rng, -0.5f, 0.5f);
  g.initializers["scale"] = filled({CO}, rng, 0.5f, 2);
  g.initializers["bias"] = filled({CO}, rng, -1, 1);
  g.initializers["mean"] = filled({CO}, rng, -0.5f, 0.5f);
  g.initializers["var"] = filled({CO}, rng, 0.25f, 3);
  Node conv = node("conv", "Conv", with_bias ? std::vector<std::string>{"x", "W", "B"} : std::vector<std::string>{"x", "W"},
                   {"c"});
  ir::Attribute pads;
  pads.kind = ir::Attribute::Kind::Ints;
  pads.ints = {1, 1, 1, 1};
  conv.attrs["pads"] = pads;
  Node bn = node("bn", "BatchNormalization", {"c", "scale", "bias", "mean", "var"}, {"y"});
  ir::Attribute eps;
  eps.kind = ir::Attribute::Kind::Float;
  eps.f = 1e-3f;
  bn.attrs["epsilon"] = eps;
  g.nodes = {conv, bn};
  cb.x = filled({N, CI, H, W}, rng, -1, 1);
  return cb;
}

// BN(conv(x)) computed directly from the unfolded graph's initializers.
std::vector<double> conv_bn_ref(const Graph& g, const Tensor& x) {
  auto& in = g.initializers;
  const Tensor* b = g.is_initializer("B") ? &in.at("B") : nullptr;
  std::vector<double> y = conv_ref(x, in.at("W"), b);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < CO; ++o) {
      double s = in.at("scale").data<float>()[o] / std::sqrt(static_cast<double>(in.at("var").data<float>()[o]) + 1e-3);
      for (int64_t p = 0; p < H * W; ++p) {
        double& v = y[(n * CO + o) * H * W + p];
        v = (v - in.at("mean").data<float>()[o]) * s + in.at("bias").data<float>()[o];
      }
    }
  return y;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, double rel) {
  ASSERT_EQ(got.size(), want.size());
  double scale = 0;
  for (double v : want) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], rel * std::max(scale, 1e-30)) << "element " << i;
}

std::vector<double> as_doubles(const Tensor& t) {
  std::vector<double> v(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = t.data<float>()[i];
  return v;
}

}  // namespace

TEST(FoldConvBatchnorm, FoldedConvEqualsConvThenBn) {
  for (bool with_bias : {true, false}) {
    ConvBn cb = make_conv_bn(with_bias);
    const std::vector<double> want = conv_bn_ref(cb.model.graph, cb.x);
    Graph& g = cb.model.graph;
    EXPECT_EQ(ir::fold_conv_batchnorm(g), 1);
    ASSERT_EQ(g.nodes.size(), 1u);
    const Node& conv = g.nodes[0];
    EXPECT_EQ(conv.op_type, "Conv");
    EXPECT_EQ(conv.outputs[0], "y");
    ASSERT_EQ(conv.inputs.size(), 3u);
    // BN parameters are gone; only the folded weights remain (plus nothing unused).
    EXPECT_FALSE(g.is_initializer("scale"));
    EXPECT_FALSE(g.is_initializer("var"));
    const Tensor& w = g.initializers.at(conv.inputs[1]);
    const Tensor& b = g.initializers.at(conv.inputs[2]);
    expect_close(conv_ref(cb.x, w, &b), want, 1e-5);
    EXPECT_EQ(ir::fold_conv_batchnorm(g), 0);
  }
}

TEST(FoldConvBatchnorm, LeavesUnsafePatternsAlone) {
  {  // the conv output has a second reader: folding would change what it sees
    ConvBn cb = make_conv_bn(true);
    cb.model.graph.outputs.push_back(value("c"));
    EXPECT_EQ(ir::fold_conv_batchnorm(cb.model.graph), 0);
  }
  {  // training mode BN uses batch statistics
    ConvBn cb = make_conv_bn(true);
    ir::Attribute tm;
    tm.kind = ir::Attribute::Kind::Int;
    tm.i = 1;
    cb.model.graph.nodes[1].attrs["training_mode"] = tm;
    EXPECT_EQ(ir::fold_conv_batchnorm(cb.model.graph), 0);
  }
  {  // weights fed at run time are not constants
    ConvBn cb = make_conv_bn(true);
    cb.model.graph.inputs.push_back(value("W"));
    EXPECT_EQ(ir::fold_conv_batchnorm(cb.model.graph), 0);
  }
}

TEST(FoldConvBatchnorm, ExecutorAgreesBeforeAndAfter) {
  for (const char* op : {"Conv", "BatchNormalization"})
    if (!cpu::registry().find("", op, 14))
      GTEST_SKIP() << "the CPU backend has no " << op << " kernel yet; the direct-convolution check above covers the pass";
  for (bool with_bias : {true, false}) {
    ConvBn cb = make_conv_bn(with_bias);
    const std::vector<double> want = conv_bn_ref(cb.model.graph, cb.x);
    std::vector<double> before, after;
    {
      cpu::Executor ex(cb.model);
      before = as_doubles(ex.run({{"x", cb.x}}).at("y"));
    }
    EXPECT_EQ(ir::fold_conv_batchnorm(cb.model.graph), 1);
    {
      cpu::Executor ex(cb.model);
      after = as_doubles(ex.run({{"x", cb.x}}).at("y"));
    }
    expect_close(before, want, 1e-5);
    expect_close(after, before, 1e-5);
  }
}
