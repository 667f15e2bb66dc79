// The CPU executor's memory plan: buffers come from a pool and are recycled by liveness, so after
// the first prediction of a static-shape model no tensor buffer is allocated; in-place reuse and
// recycling never change a result (checked against the pure reference run, RunOptions.fast =
// false, and across concurrent predictions).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <thread>

#include "core/buffer_pool.h"
#include "core/parallel.h"
#include "cpu/executor.h"
#include "graph_builders.h"

using namespace opennpu;

namespace {

using test_graph::node;
using test_graph::vi;

// A chain with fan-out and a residual: values die at different points, some inputs are read
// twice by one node, one intermediate is also a graph output (must never be reused in place).
ir::Model chain_model() {
  ir::Model m;
  m.opsets[""] = 14;
  auto& g = m.graph;
  g.inputs.push_back(vi("x", {2, 3, 17}));
  g.outputs.push_back(vi("y", {2, 3, 17}));
  g.outputs.push_back(vi("mid", {2, 3, 17}));
  Tensor w(DType::Float32, {17});
  for (int i = 0; i < 17; ++i) w.data<float>()[i] = 0.25f * static_cast<float>(i) - 2.0f;
  g.initializers["w"] = w;
  g.nodes.push_back(node("Relu", {"x"}, {"a"}));
  g.nodes.push_back(node("Add", {"a", "w"}, {"b"}));
  g.nodes.push_back(node("Mul", {"b", "b"}, {"c"}));
  g.nodes.push_back(node("Sigmoid", {"c"}, {"mid"}));
  g.nodes.push_back(node("Sub", {"mid", "a"}, {"d"}));
  g.nodes.push_back(node("Neg", {"d"}, {"e"}));
  g.nodes.push_back(node("Add", {"e", "b"}, {"y"}));
  return m;
}

Tensor random_input(uint32_t seed) {
  Tensor x(DType::Float32, {2, 3, 17});
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-3, 3);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = u(rng);
  return x;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// Bit-identical, except that any NaN equals any NaN (which NaN payload/sign an operation with two
// NaN operands, or inf - inf, returns depends on operand order in the instruction, not on IEEE).
bool same_values(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != DType::Float32 || b.dtype() != DType::Float32) return false;
  for (int64_t i = 0; i < a.numel(); ++i) {
    float x = a.data<float>()[i], y = b.data<float>()[i];
    if (std::isnan(x) && std::isnan(y)) continue;
    if (std::memcmp(&x, &y, sizeof x) != 0) return false;
  }
  return true;
}

}  // namespace

TEST(BufferPool, ReusesFreedBuffersAndKeepsThemAliveForTheirOwners) {
  auto pool = BufferPool::create();
  auto a = pool->get(1000);
  std::memset(a.get(), 7, 1000);
  EXPECT_EQ(pool->allocations(), 1u);
  auto b = pool->get(1000);  // a is still alive: a second buffer
  EXPECT_EQ(pool->allocations(), 2u);
  EXPECT_NE(a.get(), b.get());
  std::byte* pa = a.get();
  a.reset();
  auto c = pool->get(900);  // fits a's freed buffer (not more than twice the size)
  EXPECT_EQ(c.get(), pa);
  EXPECT_EQ(pool->allocations(), 2u);
  auto d = pool->get(100);  // a 1024-byte buffer is free but too large for 100 bytes: new one
  b.reset();
  auto e = pool->get(5000);
  EXPECT_EQ(pool->allocations(), 4u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(e.get()) % 64, 0u);
  // A buffer outliving its pool is freed, not returned (ASan would flag a use after free).
  pool.reset();
  c.reset();
  d.reset();
  e.reset();
}

TEST(ExecutorMemory, NoBufferAllocationAfterFirstPrediction) {
  ir::Model m = chain_model();
  cpu::Executor ex(m);
  Tensor x = random_input(1);
  Tensor y0 = ex.run({{"x", x}}).at("y").clone();  // the run's own buffers all go back to the pool
  const uint64_t after_first = ex.pool().allocations();
  EXPECT_GT(after_first, 0u);
  for (int i = 0; i < 20; ++i) {
    auto out = ex.run({{"x", x}});
    EXPECT_TRUE(same_bits(out.at("y"), y0));
  }
  // The outputs of the earlier runs were dropped, so their buffers were recycled too.
  EXPECT_EQ(ex.pool().allocations(), after_first);
}

TEST(ExecutorMemory, SameResultsAsTheReferenceRunAndInputsUntouched) {
  ir::Model m = chain_model();
  cpu::Executor fast(m);
  cpu::RunOptions ref_opts;
  ref_opts.fast = false;
  cpu::Executor ref(m, ref_opts);
  for (uint32_t seed = 0; seed < 5; ++seed) {
    Tensor x = random_input(seed);
    Tensor x_copy = x.clone();
    auto a = fast.run({{"x", x}});
    auto b = ref.run({{"x", x}});
    EXPECT_TRUE(same_bits(x, x_copy)) << "a feed was overwritten";
    EXPECT_TRUE(same_bits(a.at("y"), b.at("y")));
    EXPECT_TRUE(same_bits(a.at("mid"), b.at("mid")));
    // Independent check of one output by hand: mid = sigmoid((relu(x) + w)^2).
    for (int64_t i = 0; i < x.numel(); ++i) {
      float r = std::max(x.data<float>()[i], 0.0f) + (0.25f * static_cast<float>(i % 17) - 2.0f);
      float want = 1.0f / (1.0f + std::exp(-(r * r)));
      EXPECT_NEAR(a.at("mid").data<float>()[i], want, 1e-6f);
    }
  }
}

TEST(ExecutorMemory, HeldOutputsAreNeverRecycledUnderConcurrentPredictions) {
  ir::Model m = chain_model();
  cpu::Executor ex(m);
  std::vector<Tensor> inputs, expected;
  for (uint32_t s = 0; s < 4; ++s) {
    inputs.push_back(random_input(100 + s));
    expected.push_back(ex.run({{"x", inputs.back()}}).at("y").clone());
  }
  std::vector<std::thread> threads;
  std::vector<int> bad(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::vector<Tensor> held;  // keep outputs alive while other threads allocate
      for (int i = 0; i < 50; ++i) held.push_back(ex.run({{"x", inputs[t]}}).at("y"));
      for (const auto& h : held) bad[t] += !same_bits(h, expected[t]);
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(bad[t], 0) << "thread " << t;
}

// Fast float32 elementwise kernels (cpu/fast/elementwise.cpp) against the reference kernels:
// bit-identical (one IEEE operation per element in both; NaNs compare equal to NaNs), on equal, scalar, inner-broadcast and
// general-broadcast shapes (the latter fall back to the reference at run time), odd sizes,
// either operand order, with NaN/inf/-0 in the data. Each case runs a two-node graph so the
// second node may reuse its dying input in place.
TEST(FastElementwise, BitIdenticalToReference) {
  std::vector<std::pair<Shape, Shape>> shapes = {
      {{7}, {7}}, {{3, 5, 17}, {3, 5, 17}}, {{3, 5, 17}, {}}, {{3, 5, 17}, {1}}, {{3, 5, 17}, {17}},
      {{3, 5, 17}, {5, 17}}, {{3, 5, 17}, {1, 1, 17}}, {{17}, {3, 5, 17}}, {{3, 1, 17}, {3, 5, 1}},
      {{2, 3, 4, 5}, {3, 1, 1}}, {{1, 1}, {4097, 33}}, {{40000}, {40000}}, {{0, 3}, {3}},
      {{5, 20011}, {20011}}, {{100003}, {}}};  // the last ones split over up to 3 threads
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> u(-4, 4);
  auto fill = [&](Tensor& t) {
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
    const float special[] = {NAN, INFINITY, -INFINITY, -0.0f, 0.0f};
    for (int64_t i = 0; i < std::min<int64_t>(t.numel(), 5); ++i) t.data<float>()[(i * 7919) % t.numel()] = special[i];
  };
  for (int threads : {1, 2, 3})
  for (const std::string op : {"Add", "Sub", "Mul", "Div"})
    for (const auto& [sa, sb] : shapes) {
      set_num_threads(threads);
      ir::Model m;
      m.opsets[""] = 14;
      auto& g = m.graph;
      ir::ValueInfo va = vi("a", sa), vb = vi("b", sb);
      g.inputs = {va, vb};
      ir::ValueInfo vy = vi("y", {});
      vy.has_shape = false;
      g.outputs = {vy};
      g.nodes.push_back(node("Neg", {"a"}, {"na"}));  // a dying intermediate: may be reused
      g.nodes.push_back(node(op, {"na", "b"}, {"t"}));
      g.nodes.push_back(node("Relu", {"t"}, {"y"}));
      Tensor a(DType::Float32, sa), b(DType::Float32, sb);
      fill(a);
      fill(b);
      cpu::Executor fast(m);
      cpu::RunOptions ro;
      ro.fast = false;
      cpu::Executor ref(m, ro);
      auto y1 = fast.run({{"a", a}, {"b", b}}).at("y");
      auto y2 = ref.run({{"a", a}, {"b", b}}).at("y");
      EXPECT_TRUE(same_values(y1, y2)) << op << " " << shape_str(sa) << " " << shape_str(sb) << " threads " << threads;
    }
  set_num_threads(1);
}

TEST(FastElementwise, ClipMatchesReference) {
  for (int opset : {6, 13}) {
    ir::Model m;
    m.opsets[""] = opset;
    auto& g = m.graph;
    g.inputs = {vi("x", {3, 1001})};
    g.outputs = {vi("y", {3, 1001})};
    ir::Node n = node("Clip", {"x"}, {"y"});
    if (opset < 11) {
      ir::Attribute lo, hi;
      lo.kind = hi.kind = ir::Attribute::Kind::Float;
      lo.f = -1.5f;
      hi.f = 6.0f;
      n.attrs["min"] = lo;
      n.attrs["max"] = hi;
    } else {
      g.initializers["lo"] = Tensor::scalar_f32(0.0f);
      g.initializers["hi"] = Tensor::scalar_f32(6.0f);
      n.inputs = {"x", "lo", "hi"};
    }
    g.nodes.push_back(n);
    Tensor x(DType::Float32, {3, 1001});
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = 0.01f * static_cast<float>(i - 1500);
    x.data<float>()[5] = NAN;
    cpu::Executor fast(m);
    EXPECT_EQ(fast.implementations().at(0).impl, "fast_elementwise");
    cpu::RunOptions ro;
    ro.fast = false;
    cpu::Executor ref(m, ro);
    EXPECT_TRUE(same_values(fast.run({{"x", x}}).at("y"), ref.run({{"x", x}}).at("y"))) << "opset " << opset;
  }
}
