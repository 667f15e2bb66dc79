// FusedConvDw (cpu/fast/conv_dw.cpp): a conv (1x1, or a general KxK one like mobilenet_v2's stem)
// and the depthwise 3x3 conv after it (and the 1x1 projection after that) as one op.
//  - The fast kernel (banded oneDNN primitives) vs the reference kernel (the reference FusedConv
//    kernels in sequence) on many shapes: channel counts that are not multiples of 16, odd
//    spatial sizes, stride 1 and 2, batch 1 and 2, with and without bias, each activation, at 1
//    and 2 threads; first convs 1x1 (stride 1 and 2) and KxK (3x3 stride 1 / 2 / 3, 5x5, 2x2,
//    3x1; symmetric, asymmetric and no padding; bottom padding used or not); implementations()
//    shows the fused kernel ran.
//  - The pass (fuse_conv_dw) on ONNX graphs Conv 1x1 (+Clip) -> depthwise Conv 3x3 (+Clip), and
//    the stem pattern Conv 3x3 stride 2 (+Clip) -> depthwise (+Clip) -> 1x1: through the Executor
//    (fast path vs the pure reference run of the ONNX graph), what it fuses and what it leaves
//    (small or unknown intermediate shapes, an intermediate read twice, a residual, a 5x5 or
//    padded-differently depthwise conv, a grouped / dilated / auto_pad SAME / over-padded first
//    conv).
//
// Tolerance: |fast - reference| <= 1e-4 * max(1, max |reference|) per output (fp32; the kernels
// sum the products in different orders).
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <random>
#include <thread>

#include "core/parallel.h"
#include "cpu/executor.h"
#include "cpu/fast/conv.h"
#include "executor_checks.h"
#include "graph_builders.h"

using namespace opennpu;
using namespace opennpu::cpu;
using test_graph::vi;

namespace {
using test_graph::flt;
using test_graph::ints;
using test_graph::num;
using test_graph::random_tensor;
using test_graph::rel_err;
using test_graph::str;

constexpr double kTol = 1e-4;

// The Executor's options for the pure reference run (no passes, reference kernels only).
RunOptions reference_only() {
  RunOptions o;
  o.fast = false;
  return o;
}

using test_graph::count_impl;
int count_op(const Executor& ex, const std::string& op) {
  int n = 0;
  for (const auto& nd : ex.executed_model().graph.nodes) n += nd.op_type == op;
  return n;
}

// Fuses f (already through the conv passes) at threshold 0, expects exactly one FusedConvDw and
// no FusedConv left, and checks the fused model against `want` with reference kernels only and
// with the fast ones (which must run the fused kernel).
void fuse_once_and_check(ir::Model& f, const std::map<std::string, Tensor>& feeds, const Tensor& want,
                         const std::string& what) {
  SCOPED_TRACE(what);
  ASSERT_EQ(fuse_conv_dw(f, 0), 1);
  int fused = 0, convs = 0;
  for (const auto& n : f.graph.nodes) {
    fused += n.op_type == "FusedConvDw";
    convs += n.op_type == "FusedConv";
  }
  EXPECT_EQ(fused, 1);
  EXPECT_EQ(convs, 0);
  EXPECT_LE(rel_err(Executor(f, reference_only()).run(feeds).at("y"), want), kTol);
  Executor ex(f);
  EXPECT_EQ(count_impl(ex, "onednn_conv_dw"), 1);
  EXPECT_LE(rel_err(ex.run(feeds).at("y"), want), kTol);
}

struct Case {
  int64_t N, C, H, W, M, S;
  bool bias1 = true, bias2 = true;
  std::string act1 = "Clip", act2 = "Clip";
  int64_t P = 0;  // projection 1x1 conv to P channels (0: none)
  bool residual = false, bias3 = true;
  std::string act3{};
  // The first conv: kernel, strides, pads (top, left, bottom, right); 1x1 by default.
  int64_t KH1 = 1, KW1 = 1, SH1 = 1, SW1 = 1;
  std::vector<int64_t> pads1{0, 0, 0, 0};
  int64_t H1() const { return (H + pads1[0] + pads1[2] - KH1) / SH1 + 1; }
  int64_t W1() const { return (W + pads1[1] + pads1[3] - KW1) / SW1 + 1; }
  int64_t OH() const { return (H1() - 1) / S + 1; }
  int64_t OW() const { return (W1() - 1) / S + 1; }
};

std::string describe(const Case& c) {
  return fmt::format(
      "N{} C{} {}x{} first conv {}x{} stride {}x{} pads {},{},{},{} M{} stride {} bias {}/{} act '{}'/'{}' projection P{} residual {} "
      "bias {} act '{}'",
      c.N, c.C, c.H, c.W, c.KH1, c.KW1, c.SH1, c.SW1, c.pads1[0], c.pads1[1], c.pads1[2], c.pads1[3], c.M, c.S, c.bias1, c.bias2, c.act1, c.act2,
      c.P, c.residual, c.bias3, c.act3);
}

void set_act(ir::Node& n, const std::string& prefix, const std::string& act) {
  if (act.empty()) return;
  n.attrs[prefix + "activation"] = str(act);
  n.attrs[prefix + "activation_alpha"] = flt(0.f);
  n.attrs[prefix + "activation_beta"] = flt(act == "Clip" ? 6.f : 0.f);
}

// A model of one FusedConvDw node on an NHWC input (what the pass creates).
ir::Model fused_model(const Case& c, uint32_t seed) {
  ir::Model m;
  m.opsets[""] = 17;
  m.opsets[kCpuDomain] = 1;
  ir::Graph& g = m.graph;
  const int64_t OH = c.OH(), OW = c.OW();
  g.inputs.push_back(vi("X", {c.N, c.H, c.W, c.C}));
  g.outputs.push_back(vi("Y", {c.N, OH, OW, c.P ? c.P : c.M}));
  if (c.residual) g.inputs.push_back(vi("Z", {c.N, OH, OW, c.P}));
  g.initializers["W1"] = random_tensor({c.M, c.C, c.KH1, c.KW1}, seed, -0.5f, 0.5f);
  g.initializers["W2"] = random_tensor({c.M, 1, 3, 3}, seed + 1, -0.5f, 0.5f);
  if (c.bias1) g.initializers["B1"] = random_tensor({c.M}, seed + 2);
  if (c.bias2) g.initializers["B2"] = random_tensor({c.M}, seed + 3);
  ir::Node n;
  n.name = "pw+dw";
  n.op_type = "FusedConvDw";
  n.domain = kCpuDomain;
  n.inputs = {"X", "W1", c.bias1 ? "B1" : "", "W2", c.bias2 ? "B2" : ""};
  n.outputs = {"Y"};
  n.attrs["onnx_opset"] = num(17);
  n.attrs["pw_kernel_shape"] = ints({c.KH1, c.KW1});
  n.attrs["pw_strides"] = ints({c.SH1, c.SW1});
  n.attrs["pw_pads"] = ints(c.pads1);
  n.attrs["pw_group"] = num(1);
  n.attrs["pw_layout"] = str("NHWC");
  n.attrs["dw_kernel_shape"] = ints({3, 3});
  n.attrs["dw_strides"] = ints({c.S, c.S});
  n.attrs["dw_pads"] = ints({1, 1, 1, 1});
  n.attrs["dw_group"] = num(c.M);
  n.attrs["dw_layout"] = str("NHWC");
  set_act(n, "pw_", c.act1);
  set_act(n, "dw_", c.act2);
  if (c.P) {
    g.initializers["W3"] = random_tensor({c.P, c.M, 1, 1}, seed + 4, -0.5f, 0.5f);
    if (c.bias3) g.initializers["B3"] = random_tensor({c.P}, seed + 6);
    n.inputs.push_back("W3");
    n.inputs.push_back(c.bias3 ? "B3" : "");
    if (c.residual) n.inputs.push_back("Z");
    n.attrs["pj_kernel_shape"] = ints({1, 1});
    n.attrs["pj_layout"] = str("NHWC");
    set_act(n, "pj_", c.act3);
  }
  g.nodes.push_back(n);
  return m;
}

}  // namespace

TEST(FastConvDw, KernelMatchesReference) {
  std::vector<Case> cases = {
      {1, 16, 112, 112, 96, 2},  // mobilenet_v2 features.2
      {1, 24, 56, 56, 144, 1},   // features.3
      {1, 24, 56, 56, 144, 2},   // features.4
      {1, 32, 28, 28, 192, 1},
      {2, 13, 17, 15, 37, 1},    // odd everything, batch 2
      {2, 13, 17, 15, 37, 2},
      {1, 7, 9, 11, 20, 2},
      {1, 5, 1, 1, 3, 1},        // one pixel
      {1, 5, 2, 3, 17, 2},
      {2, 40, 30, 29, 120, 1},
      {1, 17, 61, 63, 100, 2},   // odd height, stride 2, several bands
      {1, 8, 200, 3, 24, 1},     // tall and narrow
      {1, 8, 201, 5, 24, 2},
      {1, 9, 23, 301, 200, 1},   // wide rows: bands of one output row (two rows kept)
      {2, 6, 20, 150, 333, 2},   // wide rows, stride 2: one row kept per band
  };
  // Variants: no bias, Relu / no activation.
  const size_t base = cases.size();
  for (size_t i = 0; i < base; i += 3) {
    Case c = cases[i];
    c.bias1 = false, c.act1 = "Relu", c.act2 = "";
    cases.push_back(c);
    c.bias2 = false, c.bias1 = true, c.act1 = "", c.act2 = "Relu";
    cases.push_back(c);
  }
  // With the projection 1x1 conv (output channels not multiples of 16), with and without the
  // residual, bias and activation.
  for (size_t i = 0; i < base; ++i) {
    Case c = cases[i];
    c.P = i % 2 ? 24 : 13;
    c.act2 = i % 3 ? "Clip" : "Relu";
    c.residual = i % 2 == 0;
    c.bias3 = i % 4 != 1;
    c.act3 = i % 5 == 0 ? "Relu" : "";
    cases.push_back(c);
  }
  // A general first conv (group 1): {N, C, H, W, M, S, KH1, KW1, SH1, SW1, pads1, P}.
  struct First {
    int64_t N, C, H, W, M, S, KH1, KW1, SH1, SW1;
    std::vector<int64_t> pads1;
    int64_t P;
  };
  const std::vector<First> firsts = {
      {1, 3, 224, 224, 32, 1, 3, 3, 2, 2, {1, 1, 1, 1}, 16},  // mobilenet_v2's stem + features.1
      {2, 3, 37, 41, 21, 1, 3, 3, 2, 2, {1, 1, 1, 1}, 0},     // odd sizes, batch 2
      {1, 5, 30, 29, 19, 2, 3, 3, 1, 1, {1, 1, 1, 1}, 7},     // 3x3 stride 1, depthwise stride 2
      {2, 7, 25, 23, 33, 1, 3, 3, 1, 1, {0, 0, 0, 0}, 0},     // no padding
      {1, 6, 40, 38, 20, 1, 3, 3, 2, 2, {0, 1, 1, 0}, 12},    // asymmetric pads
      {1, 3, 50, 47, 24, 2, 5, 5, 2, 2, {2, 2, 2, 2}, 0},     // 5x5
      {1, 4, 33, 35, 18, 1, 3, 1, 2, 1, {1, 0, 1, 0}, 9},     // 3x1, strides 2x1
      {2, 5, 26, 31, 17, 1, 2, 2, 2, 2, {0, 0, 0, 0}, 0},     // 2x2 stride 2 (even kernel)
      {1, 3, 31, 32, 16, 1, 3, 3, 3, 3, {1, 1, 1, 1}, 5},     // stride 3
      {1, 4, 15, 401, 200, 1, 3, 3, 2, 2, {1, 1, 1, 1}, 0},   // wide rows: bands of one output row
      {1, 3, 120, 61, 40, 2, 3, 3, 2, 2, {1, 1, 1, 1}, 24},   // several bands, stride 2 twice
      {1, 6, 45, 43, 30, 1, 1, 1, 2, 2, {0, 0, 0, 0}, 8},     // 1x1 stride 2 (stride > kernel)
  };
  const std::vector<std::array<std::string, 3>> acts = {{"Clip", "Clip", ""}, {"Relu", "", "Relu"}, {"", "Relu", "Clip"}};
  for (size_t i = 0; i < firsts.size(); ++i) {
    const First& f = firsts[i];
    for (size_t v = 0; v < 2; ++v) {  // the activations below, and with / without bias
      Case c{f.N, f.C, f.H, f.W, f.M, f.S};
      c.KH1 = f.KH1, c.KW1 = f.KW1, c.SH1 = f.SH1, c.SW1 = f.SW1, c.pads1 = f.pads1;
      const auto& a = acts[(i + v) % acts.size()];
      c.act1 = a[0], c.act2 = a[1], c.act3 = a[2];
      c.bias1 = v == 0 || i % 2, c.bias2 = v == 0 || i % 2 == 0, c.bias3 = v == 0;
      c.P = v == 0 ? f.P : (f.P ? 0 : 13);  // with and without the projection
      c.residual = c.P && i % 3 == 0;
      cases.push_back(c);
    }
  }
  uint32_t seed = 11;
  for (const Case& c : cases) {
    seed += 10;
    ir::Model m = fused_model(c, seed);
    std::map<std::string, Tensor> feeds{{"X", random_tensor({c.N, c.H, c.W, c.C}, seed + 5, -2.f, 2.f)}};
    if (c.residual) feeds["Z"] = random_tensor({c.N, c.OH(), c.OW(), c.P}, seed + 7, -3.f, 3.f);
    const Tensor want = Executor(m, reference_only()).run(feeds).at("Y");
    for (int threads : {1, 2}) {
      SCOPED_TRACE(describe(c) + fmt::format(", {} threads", threads));
      set_num_threads(threads);
      Executor ex(m);
      EXPECT_EQ(count_impl(ex, "onednn_conv_dw"), 1);
      const Tensor got = ex.run(feeds).at("Y");
      const Tensor again = ex.run(feeds).at("Y");  // cached plan, reused buffers
      EXPECT_LE(rel_err(got, want), kTol);
      EXPECT_LE(rel_err(again, want), kTol);
    }
  }
  set_num_threads(0);
}

// The reference kernel is the composition of the two reference FusedConv kernels (checked here
// against the ONNX graph it replaces, so the kernel test above compares against the right thing).
TEST(FastConvDw, PassOnSmallShapesMatchesOnnxGraph) {
  for (int64_t S : {1, 2}) {
    ir::Model m;
    m.opsets[""] = 13;
    auto& g = m.graph;
    g.inputs.push_back(vi("x", {2, 5, 9, 7}));
    g.outputs.push_back(vi("y", {2, 11, (9 - 1) / S + 1, (7 - 1) / S + 1}));
    g.initializers["w1"] = random_tensor({11, 5, 1, 1}, 1);
    g.initializers["b1"] = random_tensor({11}, 2);
    g.initializers["w2"] = random_tensor({11, 1, 3, 3}, 3);
    g.initializers["lo"] = Tensor::scalar_f32(0.f);
    g.initializers["hi"] = Tensor::scalar_f32(6.f);
    g.nodes.push_back(test_graph::node("Conv", {"x", "w1", "b1"}, {"e"}));
    g.nodes.push_back(test_graph::node("Clip", {"e", "lo", "hi"}, {"er"}));
    auto dw = test_graph::node("Conv", {"er", "w2"}, {"d"});
    dw.attrs["group"] = num(11);
    dw.attrs["pads"] = ints({1, 1, 1, 1});
    dw.attrs["strides"] = ints({S, S});
    g.nodes.push_back(dw);
    g.nodes.push_back(test_graph::node("Relu", {"d"}, {"y"}));
    std::map<std::string, Tensor> feeds{{"x", random_tensor({2, 5, 9, 7}, 4, -3.f, 3.f)}};
    const Tensor want = Executor(m, reference_only()).run(feeds).at("y");

    ir::Model f = m;
    f.opsets[kCpuDomain] = 1;
    fuse_conv_activation(f);
    conv_layout_nhwc(f);
    EXPECT_EQ(fuse_conv_dw(f, 1 << 20), 0) << "shape of the intermediate unknown: not fused";
    fuse_once_and_check(f, feeds, want, "stride " + std::to_string(S));
  }
}

// Through the Executor's own passes: mobilenet-like block with shapes known (value_info, as the
// model loader fills it), an intermediate over the pass's threshold (1 MB per image).
namespace {

struct Block {
  ir::Model m;
  uint32_t seed = 40;
  Block() { m.opsets[""] = 13; }
  void add(const std::string& op, std::vector<std::string> in, std::vector<std::string> out) {
    m.graph.nodes.push_back(test_graph::node(op, std::move(in), std::move(out)));
  }
  ir::Node& last() { return m.graph.nodes.back(); }
  void known(const std::string& v, Shape s) { m.graph.value_info[v] = vi(v, s); }
  void conv(const std::string& x, const std::string& y, int64_t C, int64_t M, int64_t k, int64_t stride, int64_t group,
            int64_t pad) {
    m.graph.initializers[y + "_W"] = random_tensor({M, C / group, k, k}, ++seed, -0.3f, 0.3f);
    m.graph.initializers[y + "_B"] = random_tensor({M}, ++seed, -0.1f, 0.1f);
    add("Conv", {x, y + "_W", y + "_B"}, {y});
    last().attrs["strides"] = ints({stride, stride});
    last().attrs["pads"] = ints({pad, pad, pad, pad});
    last().attrs["group"] = num(group);
  }
  void clip6(const std::string& x, const std::string& y) {
    m.graph.initializers[y + "_lo"] = Tensor::scalar_f32(0.f);
    m.graph.initializers[y + "_hi"] = Tensor::scalar_f32(6.f);
    add("Clip", {x, y + "_lo", y + "_hi"}, {y});
  }
};

// x [N, C, H, W] -> 1x1 to M + Clip -> depthwise 3x3 (stride S, pad dwpad, kernel dwk) + Clip.
Block expand_dw(int64_t N, int64_t C, int64_t H, int64_t W, int64_t M, int64_t S, int64_t dwk = 3, int64_t dwpad = 1) {
  Block b;
  const int64_t OH = (H + 2 * dwpad - dwk) / S + 1, OW = (W + 2 * dwpad - dwk) / S + 1;
  b.m.graph.inputs.push_back(vi("x", {N, C, H, W}));
  b.m.graph.outputs.push_back(vi("y", {N, M, OH, OW}));
  b.conv("x", "e", C, M, 1, 1, 1, 0);
  b.clip6("e", "er");
  b.conv("er", "d", M, M, dwk, S, M, dwpad);
  b.clip6("d", "y");
  b.known("e", {N, M, H, W});
  b.known("er", {N, M, H, W});
  b.known("d", {N, M, OH, OW});
  return b;
}

void expect_fast_equals_reference(const ir::Model& m, const Shape& xs, const std::string& what) {
  std::map<std::string, Tensor> feeds{{"x", random_tensor(xs, 9, -2.f, 2.f)}};
  const Tensor want = Executor(m, reference_only()).run(feeds).at("y");
  for (int threads : {1, 2}) {
    SCOPED_TRACE(what + fmt::format(", {} threads", threads));
    set_num_threads(threads);
    Executor ex(m);
    EXPECT_LE(rel_err(ex.run(feeds).at("y"), want), kTol);
    EXPECT_LE(rel_err(ex.run(feeds).at("y"), want), kTol);
  }
  set_num_threads(0);
}

}  // namespace

TEST(FastConvDw, ExecutorFusesLargeIntermediates) {
  struct Shp {
    int64_t N, C, H, W, M, S;
  };
  // Intermediates of 1.04-4.8 MB per image (over the 1 MB threshold).
  for (const Shp& s : {Shp{1, 16, 112, 112, 96, 2}, Shp{2, 24, 57, 55, 88, 1}, Shp{1, 13, 61, 59, 75, 2}}) {
    Block b = expand_dw(s.N, s.C, s.H, s.W, s.M, s.S);
    const std::string what = fmt::format("{}x{}x{} -> {} stride {}", s.C, s.H, s.W, s.M, s.S);
    expect_fast_equals_reference(b.m, {s.N, s.C, s.H, s.W}, what);
    Executor ex(b.m);
    EXPECT_EQ(count_op(ex, "FusedConvDw"), 1) << what;
    EXPECT_EQ(count_op(ex, "FusedConv"), 0) << what;
    EXPECT_EQ(count_impl(ex, "onednn_conv_dw"), 1) << what;
  }
  // Concurrent predictions on one executor (shared plans and weights, per-thread band buffers).
  Block b = expand_dw(1, 16, 112, 112, 96, 2);
  std::map<std::string, Tensor> feeds{{"x", random_tensor({1, 16, 112, 112}, 12, -2.f, 2.f)}};
  const Tensor want = Executor(b.m, reference_only()).run(feeds).at("y");
  set_num_threads(2);
  Executor ex(b.m);
  for (const auto& t : test_graph::concurrent_outputs(ex, feeds, "y", 4)) EXPECT_LE(rel_err(t, want), kTol);
  set_num_threads(0);
}

TEST(FastConvDw, ExecutorLeavesOtherPairs) {
  // Intermediate under the threshold (28x28x192 = 0.6 MB): stays two convs.
  {
    Block b = expand_dw(1, 32, 28, 28, 192, 1);
    Executor ex(b.m);
    EXPECT_EQ(count_op(ex, "FusedConvDw"), 0);
    EXPECT_EQ(count_impl(ex, "onednn_conv"), 2);
  }
  // Shape unknown (no value_info).
  {
    Block b = expand_dw(1, 16, 64, 64, 96, 2);
    b.m.graph.value_info.clear();
    Executor ex(b.m);
    EXPECT_EQ(count_op(ex, "FusedConvDw"), 0);
  }
  // 5x5 depthwise, and a 3x3 depthwise with pads 0: not this fusion.
  for (auto [k, pad] : {std::pair<int64_t, int64_t>{5, 2}, {3, 0}}) {
    Block b = expand_dw(1, 16, 64, 64, 96, 1, k, pad);
    expect_fast_equals_reference(b.m, {1, 16, 64, 64}, fmt::format("dw {}x{} pad {}", k, k, pad));
    Executor ex(b.m);
    EXPECT_EQ(count_op(ex, "FusedConvDw"), 0) << k << " " << pad;
  }
  // The intermediate is also read by another node (here a graph output): not fused.
  {
    Block b = expand_dw(1, 16, 64, 64, 96, 1);
    b.m.graph.outputs.push_back(vi("er", {1, 96, 64, 64}));
    std::map<std::string, Tensor> feeds{{"x", random_tensor({1, 16, 64, 64}, 3)}};
    Executor ex(b.m);
    EXPECT_EQ(count_op(ex, "FusedConvDw"), 0);
    auto got = ex.run(feeds);
    auto want = Executor(b.m, reference_only()).run(feeds);
    EXPECT_LE(rel_err(got.at("er"), want.at("er")), kTol);
    EXPECT_LE(rel_err(got.at("y"), want.at("y")), kTol);
  }
  // A residual Add after the depthwise conv (a sum post-op): not fused, still right.
  {
    Block b = expand_dw(1, 16, 64, 64, 96, 1);
    auto& g = b.m.graph;
    g.nodes.pop_back();  // the last Clip: the depthwise conv's output gets the Add
    g.initializers["z"] = random_tensor({1, 96, 64, 64}, 8);
    b.add("Add", {"d", "z"}, {"y"});
    expect_fast_equals_reference(b.m, {1, 16, 64, 64}, "residual");
    Executor ex(b.m);
    EXPECT_EQ(count_op(ex, "FusedConvDw"), 0);
  }
}

// The projection 1x1 conv after the depthwise conv joins the fused op (with its residual Add,
// mobilenet_v2's blocks with a shortcut). The block input is produced by a node (Relu) so that
// the executor offers it for reuse at the fused node, which reads it twice (X and Z): the kernel
// must not write its output over it.
TEST(FastConvDw, ExecutorFusesProjection) {
  struct Shp {
    int64_t N, C, H, W, M, S, P;
    bool residual;
  };
  for (const Shp& s : {Shp{1, 24, 56, 56, 144, 1, 24, true}, Shp{2, 13, 57, 55, 90, 1, 13, true},
                       Shp{1, 24, 56, 56, 144, 2, 32, false}, Shp{1, 16, 112, 112, 96, 2, 24, false}}) {
    const std::string what = fmt::format("{}x{}x{} -> {} stride {} -> {} residual {}", s.C, s.H, s.W, s.M, s.S, s.P, s.residual);
    Block b;
    const int64_t OH = (s.H - 1) / s.S + 1, OW = (s.W - 1) / s.S + 1;
    auto& g = b.m.graph;
    g.inputs.push_back(vi("x", {s.N, s.C, s.H, s.W}));
    g.outputs.push_back(vi("y", {s.N, s.P, OH, OW}));
    b.add("Relu", {"x"}, {"xr"});
    b.conv("xr", "e", s.C, s.M, 1, 1, 1, 0);
    b.clip6("e", "er");
    b.conv("er", "d", s.M, s.M, 3, s.S, s.M, 1);
    b.clip6("d", "dr");
    b.conv("dr", s.residual ? "p" : "y", s.M, s.P, 1, 1, 1, 0);
    if (s.residual) b.add("Add", {"p", "xr"}, {"y"});
    for (const char* v : {"xr"}) b.known(v, {s.N, s.C, s.H, s.W});
    for (const char* v : {"e", "er"}) b.known(v, {s.N, s.M, s.H, s.W});
    for (const char* v : {"d", "dr"}) b.known(v, {s.N, s.M, OH, OW});
    b.known("p", {s.N, s.P, OH, OW});
    expect_fast_equals_reference(b.m, {s.N, s.C, s.H, s.W}, what);
    Executor ex(b.m);
    EXPECT_EQ(count_op(ex, "FusedConvDw"), 1) << what;
    EXPECT_EQ(count_op(ex, "FusedConv"), 0) << what;
    EXPECT_EQ(count_op(ex, "Add"), 0) << what;
    EXPECT_EQ(count_impl(ex, "onednn_conv_dw"), 1) << what;
  }
  // The depthwise output also read by another node: the projection stays a FusedConv.
  Block b = expand_dw(1, 16, 64, 64, 96, 1);
  auto& g = b.m.graph;
  b.conv("y", "p", 96, 24, 1, 1, 1, 0);
  g.outputs = {vi("p", {1, 24, 64, 64}), vi("y", {1, 96, 64, 64})};
  Executor ex(b.m);
  EXPECT_EQ(count_op(ex, "FusedConvDw"), 1);
  EXPECT_EQ(count_op(ex, "FusedConv"), 1);
  std::map<std::string, Tensor> feeds{{"x", random_tensor({1, 16, 64, 64}, 21)}};
  auto got = ex.run(feeds);
  auto want = Executor(b.m, reference_only()).run(feeds);
  EXPECT_LE(rel_err(got.at("p"), want.at("p")), kTol);
  EXPECT_LE(rel_err(got.at("y"), want.at("y")), kTol);
}

// mobilenet_v2's stem: Conv 3x3 stride 2 pads 1 (3 -> M) + Clip -> depthwise 3x3 (stride S) + Clip
// -> 1x1 projection to P; shapes known. StemFirst: the first conv's kernel, stride, pads, group,
// dilation, auto_pad.
namespace {

struct StemFirst {
  int64_t k = 3, stride = 2, pad = 1, group = 1, dilation = 1;
  std::string auto_pad{};
};

Block stem(int64_t N, int64_t C, int64_t H, int64_t W, int64_t M, int64_t S, int64_t P, const StemFirst& f = {}) {
  Block b;
  const int64_t ek = (f.k - 1) * f.dilation + 1;
  const bool same = !f.auto_pad.empty();  // SAME_*: ceil(size / stride)
  const int64_t H1 = same ? (H + f.stride - 1) / f.stride : (H + 2 * f.pad - ek) / f.stride + 1;
  const int64_t W1 = same ? (W + f.stride - 1) / f.stride : (W + 2 * f.pad - ek) / f.stride + 1;
  const int64_t OH = (H1 - 1) / S + 1, OW = (W1 - 1) / S + 1;
  auto& g = b.m.graph;
  g.inputs.push_back(vi("x", {N, C, H, W}));
  g.outputs.push_back(vi("y", {N, P, OH, OW}));
  b.conv("x", "s", C, M, f.k, f.stride, f.group, f.pad);
  if (f.dilation != 1) b.last().attrs["dilations"] = ints({f.dilation, f.dilation});
  if (!f.auto_pad.empty()) {
    b.last().attrs.erase("pads");
    b.last().attrs["auto_pad"] = str(f.auto_pad);
  }
  b.clip6("s", "sr");
  b.conv("sr", "d", M, M, 3, S, M, 1);
  b.clip6("d", "dr");
  b.conv("dr", "y", M, P, 1, 1, 1, 0);
  for (const char* v : {"s", "sr"}) b.known(v, {N, M, H1, W1});
  for (const char* v : {"d", "dr"}) b.known(v, {N, M, OH, OW});
  return b;
}

}  // namespace

// The reference composition with a general first conv against the ONNX graph it replaces, and
// the pass's choice of first convs (any_first).
TEST(FastConvDw, StemPassOnSmallShapesMatchesOnnxGraph) {
  for (int64_t S : {1, 2}) {
    Block b = stem(2, 3, 19, 16, 10, S, 6);
    std::map<std::string, Tensor> feeds{{"x", random_tensor({2, 3, 19, 16}, 4, -3.f, 3.f)}};
    const Tensor want = Executor(b.m, reference_only()).run(feeds).at("y");
    ir::Model f = b.m;
    f.opsets[kCpuDomain] = 1;
    fuse_conv_activation(f);
    conv_layout_nhwc(f);
    ir::Model only_1x1 = f;
    EXPECT_EQ(fuse_conv_dw(only_1x1, 0, true, false), 0) << "a 3x3 first conv with any_first = false: not fused";
    EXPECT_EQ(fuse_conv_dw(f, 1 << 20), 0) << "intermediate under the threshold: not fused";
    fuse_once_and_check(f, feeds, want, "stride " + std::to_string(S));
  }
}

TEST(FastConvDw, ExecutorFusesStem) {
  struct Shp {
    int64_t N, C, H, W, M, S, P, k, stride, pad;
  };
  // Intermediates of 1.2-1.6 MB per image.
  for (const Shp& s : {Shp{1, 3, 224, 224, 32, 1, 16, 3, 2, 1}, Shp{2, 3, 181, 203, 32, 1, 16, 3, 2, 1},
                       Shp{1, 3, 100, 90, 40, 2, 24, 3, 1, 1}, Shp{1, 5, 170, 161, 45, 1, 11, 5, 2, 2}}) {
    const std::string what = fmt::format("{}x{}x{} -> {}x{} stride {} pad {} -> {} -> dw stride {} -> {}", s.C, s.H, s.W,
                                         s.k, s.k, s.stride, s.pad, s.M, s.S, s.P);
    Block b = stem(s.N, s.C, s.H, s.W, s.M, s.S, s.P, StemFirst{s.k, s.stride, s.pad});
    expect_fast_equals_reference(b.m, {s.N, s.C, s.H, s.W}, what);
    Executor ex(b.m);
    EXPECT_EQ(count_op(ex, "FusedConvDw"), 1) << what;
    EXPECT_EQ(count_op(ex, "FusedConv"), 0) << what;
    EXPECT_EQ(count_impl(ex, "onednn_conv_dw"), 1) << what;
  }
}

TEST(FastConvDw, ExecutorLeavesOtherFirstConvs) {
  struct Leave {
    std::string what;
    StemFirst f;
    int64_t C, H;
  };
  for (const Leave& l : {Leave{"grouped first conv", {3, 2, 1, 2, 1}, 4, 224}, Leave{"dilated first conv", {3, 2, 2, 1, 2}, 3, 224},
                         Leave{"auto_pad SAME_UPPER", {3, 2, 0, 1, 1, "SAME_UPPER"}, 3, 224},
                         Leave{"1x1 first conv padded by 1", {1, 2, 1, 1, 1}, 3, 222},
                         Leave{"intermediate under the threshold (0.4 MB)", {3, 2, 1, 1, 1}, 3, 112}}) {
    Block b = stem(1, l.C, l.H, l.H, 32, 1, 16, l.f);
    expect_fast_equals_reference(b.m, {1, l.C, l.H, l.H}, l.what);
    Executor ex(b.m);
    EXPECT_EQ(count_op(ex, "FusedConvDw"), 0) << l.what;
  }
}
