// Fast MatMul / Gemm / FusedMatMul (cpu/fast/matmul.cpp) and the transformer passes and kernels
// (cpu/fast/transformer.cpp) against the reference: each graph runs once with RunOptions.fast =
// false (every node by its reference kernel, no passes) and once with the fast path, and the test
// also checks that the fast kernel or the pass really ran (so a silent fallback cannot pass).
// Tolerances (float32): |fast - ref| <= 1e-4 * max(1, max|ref|) for GEMM-based outputs (different
// summation order over K <= 3072), 2e-5 relative for Softmax/LayerNorm/Gelu.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/parallel.h"
#include "cpu/executor.h"
#include "graph_builders.h"
#include "cpu/fast/fast.h"
#include "cpu/fast/fuse.h"
#include "cpu/fast/matmul.h"

using namespace opennpu;

namespace {

using test_graph::node;
using test_graph::vi;

Tensor rnd(Shape s, uint32_t seed, float lo = -1, float hi = 1) {
  Tensor t(DType::Float32, s);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
  return t;
}

Tensor scalar(float v) {
  Tensor t(DType::Float32, Shape{});
  t.data<float>()[0] = v;
  return t;
}

void set_f(ir::Node& n, const std::string& k, float v) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::Float;
  a.f = v;
  n.attrs[k] = a;
}
void set_i(ir::Node& n, const std::string& k, int64_t v) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::Int;
  a.i = v;
  n.attrs[k] = a;
}
void set_ints(ir::Node& n, const std::string& k, std::vector<int64_t> v) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::Ints;
  a.ints = std::move(v);
  n.attrs[k] = a;
}

// Max |a-b| relative to max(1, max|b|).
double rel_err(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  if (a.shape() != b.shape()) return 1e30;
  double scale = 1, err = 0;
  for (int64_t i = 0; i < b.numel(); ++i) scale = std::max(scale, std::fabs((double)b.data<float>()[i]));
  for (int64_t i = 0; i < b.numel(); ++i) {
    double x = a.data<float>()[i], y = b.data<float>()[i];
    if (std::isnan(x) != std::isnan(y)) return 1e30;
    if (!std::isnan(x)) err = std::max(err, std::fabs(x - y));
  }
  return err / scale;
}

struct Result {
  std::map<std::string, Tensor> ref, fast;
  std::vector<cpu::Executor::NodeImpl> impls;
  std::vector<std::pair<std::string, int>> passes;
};

Result run_both(const ir::Model& m, const std::map<std::string, Tensor>& feeds) {
  Result r;
  cpu::RunOptions ro;
  ro.fast = false;
  cpu::Executor ref(m, ro);
  r.ref = ref.run(feeds);
  cpu::Executor fast(m);
  r.fast = fast.run(feeds);
  r.impls = fast.implementations();
  r.passes = fast.passes_applied();
  return r;
}

int rewrites(const Result& r, const std::string& pass) {
  for (const auto& [p, n] : r.passes)
    if (p == pass) return n;
  return -1;
}

bool ran(const Result& r, const std::string& op, const std::string& impl_prefix) {
  for (const auto& i : r.impls)
    if (i.op == op && i.impl.rfind(impl_prefix, 0) == 0) return true;
  return false;
}

std::string impls_str(const Result& r) {
  std::string s;
  for (const auto& i : r.impls) s += i.op + "=" + i.impl + (i.why_not_fast.empty() ? "" : "(" + i.why_not_fast + ")") + " ";
  return s;
}

ir::Model matmul_model(Shape a, Shape w, uint32_t seed) {
  ir::Model m;
  m.opsets[""] = 14;
  m.graph.inputs.push_back(vi("a", a));
  m.graph.outputs.push_back(ir::ValueInfo{"y", DType::Float32});
  m.graph.initializers["w"] = rnd(w, seed);
  m.graph.nodes.push_back(node("MatMul", {"a", "w"}, {"y"}));
  return m;
}

}  // namespace

TEST(FastMatMul, ConstantWeightManyShapesAndThreadCounts) {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{1, 1}, {1, 1}},         {{3, 5}, {5, 7}},          {{17, 33}, {33, 65}},       {{128, 64}, {64, 128}},
      {{1, 768}, {768, 768}},   {{2, 7, 31}, {31, 19}},    {{2, 3, 4, 17}, {17, 1}},   {{31}, {31, 9}},
      {{128, 1, 96}, {96, 200}}, {{5, 0, 8}, {8, 3}},      {{100, 300}, {300, 257}},   {{64, 3072}, {3072, 48}},
  };
  uint32_t seed = 1;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const auto& [a, w] : cases) {
      auto m = matmul_model(a, w, seed++);
      auto r = run_both(m, {{"a", rnd(a, seed++)}});
      SCOPED_TRACE(shape_str(a) + " x " + shape_str(w) + " threads " + std::to_string(threads));
      EXPECT_TRUE(ran(r, "MatMul", "onednn_matmul_packed")) << impls_str(r);
      EXPECT_LE(rel_err(r.fast.at("y"), r.ref.at("y")), 1e-4);
    }
  }
  set_num_threads(1);
}

TEST(FastMatMul, DynamicWeightOrBatchedWeightFallsBackToReference) {
  ir::Model m;
  m.opsets[""] = 14;
  m.graph.inputs.push_back(vi("a", {2, 5, 6}));
  m.graph.inputs.push_back(vi("b", {2, 6, 3}));
  m.graph.outputs.push_back(ir::ValueInfo{"y", DType::Float32});
  m.graph.nodes.push_back(node("MatMul", {"a", "b"}, {"y"}));
  auto r = run_both(m, {{"a", rnd({2, 5, 6}, 1)}, {"b", rnd({2, 6, 3}, 2)}});
  EXPECT_TRUE(ran(r, "MatMul", "reference"));
  EXPECT_LE(rel_err(r.fast.at("y"), r.ref.at("y")), 1e-6);
  // An initializer that is also a graph input may be overridden by a feed: not a constant.
  auto m2 = matmul_model({4, 8}, {8, 5}, 3);
  m2.graph.inputs.push_back(vi("w", {8, 5}));
  Tensor w2 = rnd({8, 5}, 9);
  auto r2 = run_both(m2, {{"a", rnd({4, 8}, 4)}, {"w", w2}});
  EXPECT_TRUE(ran(r2, "MatMul", "reference"));
  EXPECT_LE(rel_err(r2.fast.at("y"), r2.ref.at("y")), 1e-6);
}

TEST(FastMatMul, WrongInnerDimensionIsAClearError) {
  auto m = matmul_model({4, 8}, {8, 5}, 3);
  m.graph.inputs[0] = vi("a", {4, 9});
  cpu::Executor fast(m);
  try {
    fast.run({{"a", rnd({4, 9}, 1)}});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("inner dimensions differ"), std::string::npos) << e.what();
  }
}

TEST(FastGemm, TransBAlphaBetaAndBiasShapes) {
  struct Case {
    int64_t M, K, N;
    bool tb;
    float alpha, beta;
    Shape c;  // empty vector with c_none = no C
    bool c_none;
  };
  const std::vector<Case> cases = {
      {1, 768, 768, true, 1, 1, {768}, false}, {128, 64, 96, false, 1, 1, {1, 96}, false},
      {7, 13, 5, true, 0.5f, 2, {}, false},    {33, 17, 9, false, 2, 0.25f, {1}, false},
      {5, 8, 3, true, 1, 1, {}, true},         {64, 100, 1, false, -1, 1, {1, 1}, false},
  };
  uint32_t seed = 100;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const auto& c : cases) {
      ir::Model m;
      m.opsets[""] = 13;
      m.graph.inputs.push_back(vi("a", {c.M, c.K}));
      m.graph.outputs.push_back(ir::ValueInfo{"y", DType::Float32});
      m.graph.initializers["b"] = rnd(c.tb ? Shape{c.N, c.K} : Shape{c.K, c.N}, seed++);
      ir::Node g = node("Gemm", {"a", "b"}, {"y"});
      if (!c.c_none) {
        m.graph.initializers["c"] = rnd(c.c, seed++);
        g.inputs.push_back("c");
      }
      set_i(g, "transB", c.tb);
      set_f(g, "alpha", c.alpha);
      set_f(g, "beta", c.beta);
      m.graph.nodes.push_back(g);
      auto r = run_both(m, {{"a", rnd({c.M, c.K}, seed++)}});
      SCOPED_TRACE(std::to_string(c.M) + "x" + std::to_string(c.K) + "x" + std::to_string(c.N));
      EXPECT_TRUE(ran(r, "Gemm", "onednn_gemm_packed")) << impls_str(r);
      EXPECT_LE(rel_err(r.fast.at("y"), r.ref.at("y")), 1e-4);
    }
  }
  set_num_threads(1);
}

// At most 4 declared rows (a classifier at batch 1), on an AVX-512 machine: the matrix-vector
// kernel, output columns split over the threads; odd K (masked tail) and N (tail columns). A run
// with more rows than declared still gives the right answer (oneDNN, packed on first use).
TEST(FastGemm, FewRowsRunTheMatrixVectorKernel) {
  struct Case {
    int64_t M, K, N;
    bool tb;
    float alpha;
    bool bias;
  };
  const std::vector<Case> cases = {
      {1, 1280, 1000, true, 1, true}, {1, 17, 5, true, 1, false},  {2, 33, 131, false, 1, true},
      {4, 100, 257, true, 0.5f, true}, {3, 16, 64, false, 2, false}, {1, 3000, 77, false, 1, true},
      {1, 1, 1, true, 1, true},        {1, 512, 4099, true, -1, true},
  };
  const bool avx512 = cpu::cpu_features().avx512f;
  uint32_t seed = 300;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    for (const auto& c : cases) {
      ir::Model m;
      m.opsets[""] = 13;
      m.graph.inputs.push_back(vi("a", {c.M, c.K}));
      m.graph.outputs.push_back(vi("y", {c.M, c.N}));
      m.graph.initializers["b"] = rnd(c.tb ? Shape{c.N, c.K} : Shape{c.K, c.N}, seed++);
      ir::Node g = node("Gemm", {"a", "b"}, {"y"});
      if (c.bias) {
        m.graph.initializers["c"] = rnd({c.N}, seed++);
        g.inputs.push_back("c");
      }
      set_i(g, "transB", c.tb);
      set_f(g, "alpha", c.alpha);
      m.graph.nodes.push_back(g);
      SCOPED_TRACE(std::to_string(c.M) + "x" + std::to_string(c.K) + "x" + std::to_string(c.N) + " threads " +
                   std::to_string(threads));
      auto r = run_both(m, {{"a", rnd({c.M, c.K}, seed++)}});
      EXPECT_TRUE(ran(r, "Gemm", avx512 ? "gemv_avx512" : "onednn_gemm_packed")) << impls_str(r);
      EXPECT_LE(rel_err(r.fast.at("y"), r.ref.at("y")), 1e-4);
    }
  }
  // More rows than the hint at run time (a dynamic batch): the same object packs the weight for
  // oneDNN on first use. Checked against a double-precision loop.
  for (bool tb : {false, true}) {
    const int64_t K = 37, N = 45;
    const Tensor w = rnd(tb ? Shape{N, K} : Shape{K, N}, 11);
    std::vector<float> bias(N);
    for (int64_t j = 0; j < N; ++j) bias[j] = 0.01f * j;
    std::string why;
    auto mm = cpu::PackedMatMul::create(w, tb, 1.5f, bias.data(), {cpu::Activation::Relu}, 1, &why);
    ASSERT_TRUE(mm) << why;
    EXPECT_EQ(mm->gemv(), avx512);
    for (int64_t rows : {1, 4, 6, 40}) {
      const Tensor a = rnd({rows, K}, 12 + rows);
      std::vector<float> y(rows * N);
      mm->run(a.data<float>(), rows, y.data());
      double err = 0;
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double acc = bias[j];
          for (int64_t k = 0; k < K; ++k)
            acc += 1.5 * a.data<float>()[i * K + k] * w.data<float>()[tb ? j * K + k : k * N + j];
          err = std::max(err, std::fabs(std::max(acc, 0.0) - y[i * N + j]));
        }
      EXPECT_LE(err, 1e-4) << "rows " << rows << " transB " << tb;
    }
  }
  // MatMul and FusedMatMul with Relu/Gelu (through the pass) at one row.
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    auto m = matmul_model({1, 1, 300}, {300, 200}, 7);
    m.graph.outputs[0] = vi("y", {1, 1, 200});
    auto r = run_both(m, {{"a", rnd({1, 1, 300}, 8)}});
    EXPECT_TRUE(ran(r, "MatMul", avx512 ? "gemv_avx512" : "onednn_matmul_packed")) << impls_str(r);
    EXPECT_LE(rel_err(r.fast.at("y"), r.ref.at("y")), 1e-4);
  }
  set_num_threads(1);
}

TEST(FastGemm, UnsupportedFormsRunTheReference) {
  // transA = 1, and C of shape [M, N] (not a per-column bias).
  for (int variant = 0; variant < 2; ++variant) {
    ir::Model m;
    m.opsets[""] = 13;
    Shape a = variant == 0 ? Shape{6, 4} : Shape{4, 6};
    m.graph.inputs.push_back(vi("a", a));
    m.graph.outputs.push_back(ir::ValueInfo{"y", DType::Float32});
    m.graph.initializers["b"] = rnd({6, 5}, 1);
    m.graph.initializers["c"] = rnd({4, 5}, 2);
    ir::Node g = node("Gemm", {"a", "b", "c"}, {"y"});
    if (variant == 0) set_i(g, "transA", 1);
    m.graph.nodes.push_back(g);
    auto r = run_both(m, {{"a", rnd(a, 3)}});
    EXPECT_TRUE(ran(r, "Gemm", "reference")) << impls_str(r);
    EXPECT_LE(rel_err(r.fast.at("y"), r.ref.at("y")), 1e-6);
  }
}

// x -> MatMul(W) -> Add(bias) -> gelu as torch 1.13 exports it (optionally the 0.5 first).
ir::Model mlp_model(int64_t rows, int64_t K, int64_t N, bool half_first, bool extra_reader, uint32_t seed) {
  ir::Model m;
  m.opsets[""] = 14;
  auto& g = m.graph;
  g.inputs.push_back(vi("x", {1, rows, K}));
  g.outputs.push_back(ir::ValueInfo{"y", DType::Float32});
  g.initializers["w"] = rnd({K, N}, seed);
  g.initializers["bias"] = rnd({N}, seed + 1);
  g.initializers["sqrt2"] = scalar(1.4142135381698608f);
  g.initializers["one"] = scalar(1.0f);
  g.initializers["half"] = scalar(0.5f);
  g.nodes.push_back(node("MatMul", {"x", "w"}, {"mm"}));
  g.nodes.push_back(node("Add", {"bias", "mm"}, {"h"}));
  g.nodes.push_back(node("Div", {"h", "sqrt2"}, {"d"}));
  g.nodes.push_back(node("Erf", {"d"}, {"e"}));
  g.nodes.push_back(node("Add", {"e", "one"}, {"a1"}));
  if (half_first) {
    g.nodes.push_back(node("Mul", {"h", "half"}, {"hh"}));
    g.nodes.push_back(node("Mul", {"hh", "a1"}, {"y"}));
  } else {
    g.nodes.push_back(node("Mul", {"h", "a1"}, {"m1"}));
    g.nodes.push_back(node("Mul", {"m1", "half"}, {"y"}));
  }
  if (extra_reader) g.outputs.push_back(ir::ValueInfo{"h", DType::Float32});
  return m;
}

TEST(TransformerPasses, MatMulBiasGeluFusesIntoOneFusedMatMul) {
  for (bool half_first : {false, true})
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      auto m = mlp_model(37, 48, 80, half_first, false, 7);
      auto r = run_both(m, {{"x", rnd({1, 37, 48}, 8, -3, 3)}});
      EXPECT_EQ(rewrites(r, "fuse_matmul_bias"), 1);
      EXPECT_EQ(rewrites(r, "fuse_gelu"), 1);
      ASSERT_EQ(r.impls.size(), 1u) << impls_str(r);
      EXPECT_TRUE(ran(r, "opennpu.cpu.FusedMatMul", "onednn_matmul_packed")) << impls_str(r);
      EXPECT_LE(rel_err(r.fast.at("y"), r.ref.at("y")), 1e-4);
    }
  set_num_threads(1);
}

TEST(TransformerPasses, GeluWhoseInputIsAlsoReadElsewhereBecomesAGeluNode) {
  auto m = mlp_model(9, 16, 24, false, true, 11);
  auto r = run_both(m, {{"x", rnd({1, 9, 16}, 12, -3, 3)}});
  EXPECT_EQ(rewrites(r, "fuse_gelu"), 1);
  EXPECT_TRUE(ran(r, "opennpu.cpu.Gelu", "fast_gelu")) << impls_str(r);
  EXPECT_TRUE(ran(r, "opennpu.cpu.FusedMatMul", "onednn_matmul_packed")) << impls_str(r);
  EXPECT_LE(rel_err(r.fast.at("y"), r.ref.at("y")), 1e-4);
  EXPECT_LE(rel_err(r.fast.at("h"), r.ref.at("h")), 1e-4);
}

ir::Model layernorm_model(Shape x, bool affine, uint32_t seed) {
  ir::Model m;
  m.opsets[""] = 14;
  auto& g = m.graph;
  g.inputs.push_back(vi("x", x));
  g.outputs.push_back(ir::ValueInfo{"y", DType::Float32});
  g.initializers["two"] = scalar(2.0f);
  g.initializers["eps"] = scalar(1e-5f);
  g.initializers["gamma"] = rnd({x.back()}, seed, 0.5f, 1.5f);
  g.initializers["beta"] = rnd({x.back()}, seed + 1);
  auto rm = [&](const std::string& in, const std::string& out) {
    ir::Node n = node("ReduceMean", {in}, {out});
    set_ints(n, "axes", {-1});
    return n;
  };
  g.nodes.push_back(rm("x", "mean"));
  g.nodes.push_back(node("Sub", {"x", "mean"}, {"d"}));
  g.nodes.push_back(node("Pow", {"d", "two"}, {"p"}));
  g.nodes.push_back(rm("p", "var"));
  g.nodes.push_back(node("Add", {"var", "eps"}, {"ve"}));
  g.nodes.push_back(node("Sqrt", {"ve"}, {"s"}));
  g.nodes.push_back(node("Div", {"d", "s"}, {affine ? "n" : "y"}));
  if (affine) {
    g.nodes.push_back(node("Mul", {"n", "gamma"}, {"gn"}));
    g.nodes.push_back(node("Add", {"gn", "beta"}, {"y"}));
  }
  return m;
}

TEST(TransformerPasses, DecomposedLayerNormFusesAndMatches) {
  for (Shape x : {Shape{1, 128, 768}, Shape{3, 5}, Shape{2, 7, 1}, Shape{4, 33}, Shape{1, 1, 1000}})
    for (bool affine : {true, false}) {
      auto m = layernorm_model(x, affine, 5);
      auto r = run_both(m, {{"x", rnd(x, 6, -4, 6)}});
      SCOPED_TRACE(shape_str(x));
      EXPECT_EQ(rewrites(r, "fuse_layernorm"), 1);
      ASSERT_EQ(r.impls.size(), 1u) << impls_str(r);
      EXPECT_TRUE(ran(r, "opennpu.cpu.LayerNorm", "fast_layernorm")) << impls_str(r);
      EXPECT_LE(rel_err(r.fast.at("y"), r.ref.at("y")), 2e-5);
    }
}

TEST(TransformerPasses, LayerNormWithAnIntermediateReadElsewhereIsNotFused) {
  auto m = layernorm_model({2, 16}, true, 5);
  m.graph.outputs.push_back(ir::ValueInfo{"var", DType::Float32});
  auto r = run_both(m, {{"x", rnd({2, 16}, 6)}});
  EXPECT_EQ(rewrites(r, "fuse_layernorm"), 0);
  EXPECT_LE(rel_err(r.fast.at("y"), r.ref.at("y")), 1e-6);
}

TEST(FastSoftmax, LastAxisManySizesAndInfinities) {
  for (int64_t n : {1, 5, 16, 17, 128, 1000}) {
    ir::Model m;
    m.opsets[""] = 13;
    m.graph.inputs.push_back(vi("x", {3, 7, n}));
    m.graph.outputs.push_back(ir::ValueInfo{"y", DType::Float32});
    m.graph.nodes.push_back(node("Softmax", {"x"}, {"y"}));
    Tensor x = rnd({3, 7, n}, 3, -30, 30);
    x.data<float>()[0] = -INFINITY;                           // masked position
    for (int64_t j = 0; j < n; ++j) x.data<float>()[n + j] = -1e30f;  // a row of huge negatives
    auto r = run_both(m, {{"x", x}});
    SCOPED_TRACE(n);
    EXPECT_TRUE(ran(r, "Softmax", "fast_softmax")) << impls_str(r);
    EXPECT_LE(rel_err(r.fast.at("y"), r.ref.at("y")), 2e-6);
  }
}

TEST(FastSoftmax, ExpPolynomialErrorBound) {
  // Softmax of [x, 0]: y0 = exp(x) / (exp(x) + 1) checks exp over its whole range (rel 2e-7 stated).
  ir::Model m;
  m.opsets[""] = 13;
  const int64_t R = 20001;
  m.graph.inputs.push_back(vi("x", {R, 2}));
  m.graph.outputs.push_back(ir::ValueInfo{"y", DType::Float32});
  m.graph.nodes.push_back(node("Softmax", {"x"}, {"y"}));
  Tensor x(DType::Float32, {R, 2});
  for (int64_t i = 0; i < R; ++i) {
    x.data<float>()[2 * i] = -87.0f + 87.0f * static_cast<float>(i) / (R - 1);
    x.data<float>()[2 * i + 1] = 0;
  }
  auto r = run_both(m, {{"x", x}});
  double worst = 0;
  for (int64_t i = 0; i < R; ++i) {
    double e = std::exp(static_cast<double>(x.data<float>()[2 * i]));
    double want = e / (e + 1);
    worst = std::max(worst, std::fabs(r.fast.at("y").data<float>()[2 * i] - want) / want);
  }
  EXPECT_LE(worst, 5e-7);
}

TEST(FastLayerNorm, OnnxLayerNormalizationLastAxisFastOtherAxesReference) {
  for (int64_t axis : {-1, 1, 2}) {
    ir::Model m;
    m.opsets[""] = 17;
    Shape x{2, 5, 37};
    m.graph.inputs.push_back(vi("x", x));
    m.graph.outputs.push_back(ir::ValueInfo{"y", DType::Float32});
    Shape ws = axis == 1 ? Shape{5, 37} : Shape{37};
    m.graph.initializers["s"] = rnd(ws, 1, 0.5f, 1.5f);
    m.graph.initializers["b"] = rnd(ws, 2);
    ir::Node n = node("LayerNormalization", {"x", "s", "b"}, {"y"});
    set_i(n, "axis", axis);
    set_f(n, "epsilon", 1e-3f);
    m.graph.nodes.push_back(n);
    auto r = run_both(m, {{"x", rnd(x, 3, -5, 5)}});
    SCOPED_TRACE(axis);
    EXPECT_TRUE(ran(r, "LayerNormalization", axis == 1 ? "reference" : "fast_layernorm")) << impls_str(r);
    EXPECT_LE(rel_err(r.fast.at("y"), r.ref.at("y")), 2e-5);
  }
}
