// Fast convolution (cpu/fast/conv.cpp, oneDNN) vs its reference kernel (cpu/fast/conv_fuse.cpp:
// the ONNX reference Conv + Add + the activation's formula, in NCHW), on many shapes: odd channel
// counts and spatial sizes, strides, dilations, asymmetric and automatic padding, groups and
// depthwise, with and without bias, with each fused post-op, in both layouts. Also the NHWC
// pooling kernels, and the conv passes on resnet/mobilenet-like blocks through the Executor
// (fast path vs pure reference run).
//
// Tolerance: |fast - reference| <= 1e-4 * max(1, max |reference|) per output tensor (fp32; the
// two sum the products in different orders).
#include <dnnl.hpp>
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>

#include "core/parallel.h"
#include "cpu/executor.h"
#include "cpu/fast/conv.h"
#include "executor_checks.h"
#include "graph_builders.h"

using namespace opennpu;
using namespace opennpu::cpu;

namespace {
using test_graph::flt;
using test_graph::ints;
using test_graph::num;
using test_graph::random_tensor;
using test_graph::rel_err;
using test_graph::str;

constexpr double kTol = 1e-4;

struct ConvCase {
  int64_t N, C, H, W, M, KH, KW;
  int64_t group = 1;
  std::vector<int64_t> strides{1, 1}, dil{1, 1}, pads{0, 0, 0, 0};
  std::string auto_pad = "NOTSET";
  bool bias = true, sum = false;
  std::string act{};
  float alpha = 0, beta = 0;
};

std::string describe(const ConvCase& c, bool nhwc) {
  return fmt::format("N{} C{} {}x{} M{} k{}x{} g{} s{}x{} d{}x{} pads[{},{},{},{}] {} bias={} sum={} act='{}' {}", c.N,
                     c.C, c.H, c.W, c.M, c.KH, c.KW, c.group, c.strides[0], c.strides[1], c.dil[0], c.dil[1], c.pads[0],
                     c.pads[1], c.pads[2], c.pads[3], c.auto_pad, c.bias, c.sum, c.act, nhwc ? "NHWC" : "NCHW");
}

// Runs one FusedConv node through the fast kernel and the reference kernel and checks the error
// (<= tol); with expect_impl, also the fast kernel's name after the run (its Winograd path or
// not). Returns the error.
double check_conv(const ConvCase& c, bool nhwc, uint32_t seed, const char* expect_impl = nullptr, double tol = kTol) {
  SCOPED_TRACE(describe(c, nhwc));
  ir::Model m;
  m.opsets[""] = 17;
  m.opsets[kCpuDomain] = 1;
  ir::Graph& g = m.graph;
  g.initializers["W"] = random_tensor({c.M, c.C / c.group, c.KH, c.KW}, seed);
  if (c.bias) g.initializers["B"] = random_tensor({c.M}, seed + 1);
  ir::Node n;
  n.name = "conv";
  n.op_type = "FusedConv";
  n.domain = kCpuDomain;
  n.inputs = {"X", "W", c.bias ? "B" : ""};
  if (c.sum) n.inputs.push_back("Z");
  n.outputs = {"Y"};
  n.attrs["group"] = num(c.group);
  n.attrs["strides"] = ints(c.strides);
  n.attrs["dilations"] = ints(c.dil);
  n.attrs["pads"] = ints(c.pads);
  n.attrs["kernel_shape"] = ints({c.KH, c.KW});
  n.attrs["auto_pad"] = str(c.auto_pad);
  n.attrs["layout"] = str(nhwc ? "NHWC" : "NCHW");
  n.attrs["onnx_opset"] = num(17);
  if (!c.act.empty()) {
    n.attrs["activation"] = str(c.act);
    n.attrs["activation_alpha"] = flt(c.alpha);
    n.attrs["activation_beta"] = flt(c.beta);
  }
  g.nodes.push_back(n);
  Tensor x = random_tensor(nhwc ? Shape{c.N, c.H, c.W, c.C} : Shape{c.N, c.C, c.H, c.W}, seed + 2);
  const Tensor& w = g.initializers["W"];
  const Tensor* b = c.bias ? &g.initializers["B"] : nullptr;
  // Reference first (also gives the output shape for Z).
  KernelContext rc(g.nodes[0], {&x, &w, b}, 1, nullptr);
  fused_conv_reference(rc);
  Tensor z;
  if (c.sum) {
    z = random_tensor(rc.outputs()[0].shape(), seed + 3, -2.f, 2.f);
    KernelContext rc2(g.nodes[0], {&x, &w, b, &z}, 1, nullptr);
    fused_conv_reference(rc2);
    rc.outputs()[0] = rc2.outputs()[0];
  }
  const Tensor& ref = rc.outputs()[0];

  PrepareContext pc(m, g, g.nodes[0]);
  std::string why;
  auto k = fast_registry().prepare(pc, &why);
  if (!k) {
    ADD_FAILURE() << why;
    return INFINITY;
  }
  EXPECT_EQ(k->name(), "onednn_conv");
  std::vector<const Tensor*> ins{&x, &w, b};
  if (c.sum) ins.push_back(&z);
  KernelContext fc(g.nodes[0], ins, 1, nullptr);
  k->run(fc);
  const double err = rel_err(fc.outputs()[0], ref);
  EXPECT_LE(err, tol);
  EXPECT_GT(k->state_bytes(), 0u) << "the fast kernel fell back to the reference (no oneDNN primitive)";
  if (expect_impl) {
    EXPECT_EQ(k->name(), expect_impl);
  }
  return err;
}

std::vector<ConvCase> conv_cases() {
  std::vector<ConvCase> v;
  // Plain, odd sizes, 1x1, 3x3, 5x5, 7x7 stride 2 (resnet stem), rectangular kernels.
  v.push_back({1, 3, 17, 13, 5, 3, 3});
  v.push_back({2, 7, 9, 11, 13, 1, 1});
  v.push_back({1, 16, 8, 8, 32, 1, 1});
  v.push_back({1, 3, 31, 29, 64, 7, 7, 1, {2, 2}, {1, 1}, {3, 3, 3, 3}});
  v.push_back({1, 5, 10, 12, 6, 5, 5, 1, {1, 1}, {1, 1}, {2, 2, 2, 2}});
  v.push_back({1, 4, 9, 9, 3, 1, 3, 1, {1, 1}, {1, 1}, {0, 1, 0, 1}});
  v.push_back({1, 33, 15, 15, 17, 3, 3, 1, {2, 2}, {1, 1}, {1, 1, 1, 1}});
  v.push_back({1, 64, 14, 14, 128, 1, 1, 1, {2, 2}});                      // strided 1x1 (downsample)
  v.push_back({1, 12, 13, 11, 10, 3, 3, 1, {3, 2}, {1, 1}, {0, 1, 2, 0}});  // asymmetric pads/strides
  v.push_back({1, 8, 16, 16, 8, 3, 3, 1, {1, 1}, {2, 2}, {2, 2, 2, 2}});    // dilation 2
  v.push_back({1, 6, 20, 17, 7, 3, 2, 1, {1, 1}, {3, 2}, {1, 0, 3, 2}});    // dilation 3x2, odd pads
  // Auto pad.
  for (const char* ap : {"SAME_UPPER", "SAME_LOWER", "VALID"}) {
    ConvCase c{1, 5, 12, 11, 7, 4, 3, 1, {2, 2}};
    c.auto_pad = ap;
    v.push_back(c);
  }
  // Groups and depthwise (mobilenet: 3x3 stride 1/2, pad 1; odd channel counts).
  v.push_back({1, 12, 10, 10, 18, 3, 3, 3, {1, 1}, {1, 1}, {1, 1, 1, 1}});
  v.push_back({1, 8, 9, 7, 4, 3, 3, 2, {2, 1}, {1, 1}, {1, 0, 1, 2}});
  v.push_back({1, 32, 28, 28, 32, 3, 3, 32, {1, 1}, {1, 1}, {1, 1, 1, 1}});
  v.push_back({1, 24, 15, 15, 24, 3, 3, 24, {2, 2}, {1, 1}, {1, 1, 1, 1}});
  v.push_back({1, 13, 11, 9, 13, 3, 3, 13, {1, 1}, {1, 1}, {1, 1, 1, 1}});
  v.push_back({1, 10, 9, 9, 20, 3, 3, 10, {1, 1}, {1, 1}, {1, 1, 1, 1}});  // depth multiplier 2
  v.push_back({2, 16, 12, 12, 16, 5, 5, 16, {1, 1}, {2, 2}, {4, 4, 4, 4}});
  // Large enough to be split into chunks across threads (>= 0.1 MFLOP; see kMinParallelFlops in conv.cpp).
  v.push_back({1, 64, 30, 29, 64, 3, 3, 1, {1, 1}, {1, 1}, {1, 1, 1, 1}});
  v.push_back({2, 32, 31, 30, 48, 3, 3, 1, {2, 2}, {1, 1}, {0, 1, 2, 1}});
  v.push_back({1, 48, 28, 28, 40, 3, 3, 1, {1, 1}, {2, 2}, {2, 2, 2, 2}});
  v.push_back({1, 64, 40, 40, 128, 1, 1});
  v.push_back({1, 256, 57, 56, 256, 3, 3, 256, {1, 1}, {1, 1}, {1, 1, 1, 1}});
  v.push_back({1, 240, 57, 57, 240, 3, 3, 240, {2, 2}, {1, 1}, {1, 1, 1, 1}});
  v.push_back({1, 3, 97, 96, 64, 7, 7, 1, {2, 2}, {1, 1}, {3, 3, 3, 3}});
  // Pointwise (1x1, stride 1, no padding) convs are split into chunks of pixels over the whole
  // batch (chunks spanning two images with N=2), the others into chunks of output rows; mobilenet
  // sizes at 7x7 / 14x14 (fewer rows than chunks) and odd pixel counts.
  v.push_back({2, 64, 29, 31, 96, 1, 1});
  v.push_back({3, 40, 13, 11, 72, 1, 1});
  v.push_back({1, 160, 7, 7, 960, 1, 1});
  v.push_back({1, 320, 7, 7, 1280, 1, 1});
  v.push_back({1, 576, 14, 14, 96, 1, 1});
  v.push_back({1, 96, 14, 14, 96, 3, 3, 96, {1, 1}, {1, 1}, {1, 1, 1, 1}});
  v.push_back({1, 960, 7, 7, 960, 3, 3, 960, {1, 1}, {1, 1}, {1, 1, 1, 1}});
  v.push_back({1, 144, 56, 56, 144, 3, 3, 144, {2, 2}, {1, 1}, {1, 1, 1, 1}});
  // Every case again without bias, and with each post-op / the residual sum.
  const size_t base = v.size();
  for (size_t i = 0; i < base; ++i) {
    ConvCase c = v[i];
    switch (i % 6) {
      case 0: c.bias = false; break;
      case 1: c.act = "Relu"; break;
      case 2: c.act = "Clip", c.alpha = 0.f, c.beta = 0.5f; break;
      case 3: c.sum = true; break;
      case 4: c.sum = true, c.act = "Relu"; break;
      case 5: c.act = i % 4 == 1 ? "Sigmoid" : (i % 4 == 3 ? "Tanh" : "LeakyRelu"), c.alpha = 0.1f, c.bias = i % 2; break;
    }
    v.push_back(c);
  }
  // Each activation and the sum at least once on a fixed shape.
  for (const char* a : {"Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh"})
    for (bool sum : {false, true}) {
      ConvCase c{1, 9, 7, 8, 11, 3, 3, 1, {1, 1}, {1, 1}, {1, 1, 1, 1}};
      c.act = a, c.sum = sum, c.alpha = std::string(a) == "Clip" ? -0.3f : 0.2f, c.beta = 0.7f;
      v.push_back(c);
    }
  return v;
}

}  // namespace

// NHWC runs one primitive per chunk of output rows (or of pixels, 1x1 convs), the chunks handed
// out to the threads: 1 thread (one chunk), 2 and 3 threads (chunks with top padding, none, bottom
// padding; more chunks than some outputs have rows).
TEST(FastConv, MatchesReferenceNHWC) {
  for (int threads : {1, 2, 3}) {
    SCOPED_TRACE(fmt::format("{} threads", threads));
    set_num_threads(threads);
    uint32_t seed = 1;
    for (const auto& c : conv_cases()) check_conv(c, true, seed += 10);
  }
  set_num_threads(0);
}

TEST(FastConv, MatchesReferenceNCHW) {
  uint32_t seed = 5;
  for (const auto& c : conv_cases()) check_conv(c, false, seed += 10);
}

TEST(FastConv, DeclinesWhatItCannotRun) {
  ir::Model m;
  m.opsets[kCpuDomain] = 1;
  ir::Graph& g = m.graph;
  ir::Node n;
  n.name = "conv";
  n.op_type = "FusedConv";
  n.domain = kCpuDomain;
  n.inputs = {"X", "W"};  // W not a constant: declined
  n.outputs = {"Y"};
  g.nodes.push_back(n);
  std::string why;
  EXPECT_FALSE(fast_registry().prepare(PrepareContext(m, g, g.nodes[0]), &why));
  EXPECT_NE(why.find("weights"), std::string::npos) << why;
}

// ---------------------------------------------------------------------------------------------
// Winograd (conv.cpp: NHWC 3x3 stride-1 group-1 convs with >= 32 input and output channels and
// no activation or Relu, on oneDNN's wino 2x3 / 4x3 kernels): resnet channel counts and ones that
// are not a multiple of 16 (blocked layout padded), 7x7 to 56x56, batch 2, Relu and the residual
// sum, both ways of splitting (output rows; output channels when the weights outweigh an image
// plane), 1 to 3 threads. The test binary expects the Winograd path unless OPENNPU_CPU_WINOGRAD=0
// (ctest runs it both ways: fast_conv and fast_conv_no_winograd).
//
// Tolerance: Winograd computes the conv through transformed tiles (F(2,3) / F(4,3) with larger
// transform constants), so it rounds somewhat more than a direct conv. Measured on these cases,
// max |fast - reference| / max(1, max |reference|) (the reference is fp32 too, so this includes
// its own rounding): Winograd 2.6e-6, the direct kernel (OPENNPU_CPU_WINOGRAD=0) 1.9e-6. Bound
// 2e-5 (~8x margin), tighter than kTol so that a less accurate kernel would be noticed.
namespace {
// Whether oneDNN has a Winograd kernel on this machine (its f32 wino kernels need AVX-512):
// asked directly, not through the code under test.
bool onednn_has_winograd() {
  using dnnl::memory;
  const memory::dims src{1, 64, 14, 14}, wei{64, 64, 3, 3};
  const memory::desc s(src, memory::data_type::f32, memory::format_tag::any);
  const memory::desc w(wei, memory::data_type::f32, memory::format_tag::any);
  try {
    dnnl::engine eng(dnnl::engine::kind::cpu, 0);
    dnnl::convolution_forward::primitive_desc pd(
        {dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_winograd, s, w, s, {1, 1}, {1, 1}, {1, 1}},
        eng);
    return std::strstr(pd.impl_info_str(), "wino") != nullptr;
  } catch (const dnnl::error&) {
    return false;
  }
}
// The fast kernel must take the Winograd path where oneDNN has it, unless OPENNPU_CPU_WINOGRAD=0.
bool winograd_expected() {
  static const bool has = [] {
    const bool h = onednn_has_winograd();
    if (!h) std::printf("note: oneDNN has no Winograd kernel on this CPU: the direct kernel is expected\n");
    return h;
  }();
  const char* e = std::getenv("OPENNPU_CPU_WINOGRAD");
  return has && !(e && std::string(e) == "0");
}
constexpr double kWinoTol = 2e-5;
}  // namespace

TEST(FastConv, WinogradMatchesReference) {
  const char* impl = winograd_expected() ? "onednn_conv_wino" : "onednn_conv";
  std::vector<ConvCase> v;
  const std::vector<int64_t> pad1{1, 1, 1, 1};
  // {N, C, H, W, M}: resnet50's four stages, then odd channel counts / sizes, C != M.
  for (auto [N, C, H, M] : std::vector<std::array<int64_t, 4>>{
           {1, 64, 56, 64}, {1, 128, 28, 128}, {1, 256, 14, 256}, {1, 512, 7, 512}, {2, 64, 28, 64},
           {2, 40, 17, 40}, {1, 33, 23, 47}, {2, 48, 9, 96}, {1, 96, 12, 32}, {1, 32, 7, 32}}) {
    ConvCase c{N, C, H, H + 3, M, 3, 3, 1, {1, 1}, {1, 1}, pad1};
    v.push_back(c);
  }
  const size_t base = v.size();
  for (size_t i = 0; i < base; ++i) {
    ConvCase c = v[i];
    switch (i % 4) {
      case 0: c.act = "Relu"; break;
      case 1: c.sum = true, c.act = "Relu"; break;
      case 2: c.sum = true, c.bias = false; break;
      case 3: c.act = "Relu", c.bias = false; break;
    }
    v.push_back(c);
  }
  // No padding, and one-sided padding (the chunks' own padding differs from the conv's).
  v.push_back({1, 64, 20, 18, 64, 3, 3, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}});
  v.push_back({2, 64, 15, 16, 80, 3, 3, 1, {1, 1}, {1, 1}, {1, 0, 0, 1}});
  double worst = 0;
  for (int threads : {1, 2, 3}) {
    SCOPED_TRACE(fmt::format("{} threads", threads));
    set_num_threads(threads);
    uint32_t seed = 100;
    for (const auto& c : v) worst = std::max(worst, check_conv(c, true, seed += 10, impl, kWinoTol));
  }
  set_num_threads(0);
  std::printf("Winograd: max error %.3g x output scale over %zu cases x 3 thread counts\n", worst, v.size());
}

// Convs the Winograd path leaves to the direct kernel: activations its kernels refuse (Clip,
// Sigmoid, LeakyRelu with a slope), strides / dilations / kernel sizes / padding it does not
// cover, groups, fewer than 32 channels, and NCHW.
TEST(FastConv, WinogradOnlyWhereItApplies) {
  const std::vector<int64_t> pad1{1, 1, 1, 1};
  std::vector<ConvCase> v;
  for (const char* a : {"Clip", "Sigmoid", "LeakyRelu"}) {
    ConvCase c{1, 64, 14, 14, 64, 3, 3, 1, {1, 1}, {1, 1}, pad1};
    c.act = a, c.alpha = 0.1f, c.beta = 6.f;
    v.push_back(c);
  }
  v.push_back({1, 64, 14, 14, 64, 3, 3, 1, {2, 2}, {1, 1}, pad1});             // stride 2
  v.push_back({1, 64, 14, 14, 64, 3, 3, 1, {1, 1}, {2, 2}, {2, 2, 2, 2}});     // dilation 2
  v.push_back({1, 64, 14, 14, 64, 5, 5, 1, {1, 1}, {1, 1}, {2, 2, 2, 2}});     // 5x5
  v.push_back({1, 64, 14, 14, 64, 3, 3, 2, {1, 1}, {1, 1}, pad1});             // groups
  v.push_back({1, 24, 14, 14, 64, 3, 3, 1, {1, 1}, {1, 1}, pad1});             // C < 32
  v.push_back({1, 64, 14, 14, 17, 3, 3, 1, {1, 1}, {1, 1}, pad1});             // M < 32
  // Padding 2 (refused by the wino kernels); at the bottom only: the row chunks above it are
  // accepted, then the last refused, so the whole conv falls back to the direct kernel.
  v.push_back({1, 64, 14, 14, 64, 3, 3, 1, {1, 1}, {1, 1}, {2, 2, 2, 2}});
  v.push_back({1, 32, 20, 20, 32, 3, 3, 1, {1, 1}, {1, 1}, {0, 1, 2, 1}});
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    uint32_t seed = 300;
    for (const auto& c : v) check_conv(c, true, seed += 10, "onednn_conv");
    check_conv(v[0], false, seed, "onednn_conv");  // NCHW
    ConvCase relu{1, 64, 14, 14, 64, 3, 3, 1, {1, 1}, {1, 1}, pad1};
    relu.act = "Relu";
    check_conv(relu, false, seed + 1, "onednn_conv");
  }
  set_num_threads(0);
}

// ---------------------------------------------------------------------------------------------
// NHWC pooling vs its reference (the ONNX op in NCHW).

namespace {

void check_pool(const std::string& op, Shape x_nhwc, std::map<std::string, ir::Attribute> attrs, bool expect_fast,
                uint32_t seed) {
  SCOPED_TRACE(op + " " + shape_str(x_nhwc));
  ir::Model m;
  m.opsets[""] = 17;
  m.opsets[kCpuDomain] = 1;
  ir::Node n;
  n.name = "pool";
  n.op_type = op;
  n.domain = kCpuDomain;
  n.inputs = {"X"};
  n.outputs = {"Y"};
  n.attrs = std::move(attrs);
  n.attrs["layout"] = str("NHWC");
  n.attrs["onnx_opset"] = num(17);
  m.graph.nodes.push_back(n);
  const ir::Node& node = m.graph.nodes[0];
  Tensor x = random_tensor(x_nhwc, seed, -3.f, 3.f);
  KernelContext rc(node, {&x}, 1, nullptr);
  nhwc_pool_reference(rc);
  std::string why;
  auto k = fast_registry().prepare(PrepareContext(m, m.graph, node), &why);
  if (!expect_fast) {
    EXPECT_FALSE(k) << "expected a decline";
    return;
  }
  ASSERT_TRUE(k) << why;
  KernelContext fc(node, {&x}, 1, nullptr);
  k->run(fc);
  EXPECT_LE(rel_err(fc.outputs()[0], rc.outputs()[0]), kTol);
}

}  // namespace

TEST(FastPool, MatchesReference) {
  uint32_t s = 100;
  check_pool("MaxPool", {1, 112, 112, 64}, {{"kernel_shape", ints({3, 3})}, {"strides", ints({2, 2})}, {"pads", ints({1, 1, 1, 1})}}, true, ++s);
  check_pool("MaxPool", {2, 9, 11, 5}, {{"kernel_shape", ints({2, 3})}, {"strides", ints({1, 2})}, {"pads", ints({0, 1, 1, 0})}}, true, ++s);
  check_pool("MaxPool", {1, 10, 10, 3}, {{"kernel_shape", ints({3, 3})}, {"auto_pad", str("SAME_UPPER")}, {"strides", ints({2, 2})}}, true, ++s);
  check_pool("AveragePool", {1, 13, 7, 6}, {{"kernel_shape", ints({3, 3})}, {"pads", ints({1, 1, 1, 1})}}, true, ++s);
  check_pool("AveragePool", {1, 13, 7, 6},
             {{"kernel_shape", ints({3, 3})}, {"pads", ints({1, 1, 1, 1})}, {"count_include_pad", num(1)}}, true, ++s);
  check_pool("GlobalAveragePool", {1, 7, 7, 37}, {}, true, ++s);
  check_pool("GlobalAveragePool", {2, 1, 1, 5}, {}, true, ++s);
  check_pool("GlobalMaxPool", {3, 5, 6, 17}, {}, true, ++s);
  check_pool("MaxPool", {1, 9, 9, 4}, {{"kernel_shape", ints({2, 2})}, {"strides", ints({2, 2})}, {"ceil_mode", num(1)}}, false, ++s);
}

// ---------------------------------------------------------------------------------------------
// The passes, through the Executor: fast path vs the pure reference run on the ONNX graph.

namespace {

using test_graph::vi;

struct Builder {
  ir::Model m;
  uint32_t seed = 7;
  Builder() { m.opsets[""] = 13; }
  ir::Node& node(const std::string& op, std::vector<std::string> in, std::vector<std::string> out) {
    m.graph.nodes.push_back(test_graph::node(op, std::move(in), std::move(out)));
    return m.graph.nodes.back();
  }
  void conv(const std::string& x, const std::string& y, int64_t C, int64_t M, int64_t k, int64_t stride, int64_t group = 1) {
    const std::string w = y + "_W", b = y + "_B";
    m.graph.initializers[w] = random_tensor({M, C / group, k, k}, ++seed, -0.3f, 0.3f);
    m.graph.initializers[b] = random_tensor({M}, ++seed, -0.1f, 0.1f);
    auto& n = node("Conv", {x, w, b}, {y});
    n.attrs["strides"] = ints({stride, stride});
    n.attrs["pads"] = ints({k / 2, k / 2, k / 2, k / 2});
    n.attrs["group"] = num(group);
  }
  void clip6(const std::string& x, const std::string& y) {
    m.graph.initializers[y + "_lo"] = Tensor::scalar_f32(0.f);
    m.graph.initializers[y + "_hi"] = Tensor::scalar_f32(6.f);
    node("Clip", {x, y + "_lo", y + "_hi"}, {y});
  }
};

void expect_fast_equals_reference(const ir::Model& m, const std::map<std::string, Tensor>& feeds, const std::string& what) {
  Executor ref(m, RunOptions{.fast = false});
  Executor fast(m);
  auto r = ref.run(feeds);
  auto f = fast.run(feeds);
  auto f2 = fast.run(feeds);  // cached primitives, recycled buffers
  ASSERT_EQ(r.size(), f.size());
  for (const auto& [name, t] : r) {
    SCOPED_TRACE(what + ": output " + name);
    EXPECT_LE(rel_err(f.at(name), t), kTol);
    EXPECT_LE(rel_err(f2.at(name), t), kTol);
  }
}

using test_graph::count_impl;

}  // namespace

// ResNet-like: stem conv + relu, max pool, a bottleneck with a projection shortcut and one with
// an identity shortcut (Add + Relu), global average pool, flatten, gemm.
TEST(ConvPasses, ResNetBlockFusesAndMatches) {
  Builder b;
  auto& g = b.m.graph;
  g.inputs.push_back(vi("x", {1, 3, 32, 32}));
  g.outputs.push_back(vi("y", {1, 10}));
  b.conv("x", "c0", 3, 16, 7, 2);
  b.node("Relu", {"c0"}, {"r0"});
  auto& mp = b.node("MaxPool", {"r0"}, {"p0"});
  mp.attrs["kernel_shape"] = ints({3, 3});
  mp.attrs["strides"] = ints({2, 2});
  mp.attrs["pads"] = ints({1, 1, 1, 1});
  // Bottleneck 1 (projection shortcut).
  b.conv("p0", "a1", 16, 8, 1, 1);
  b.node("Relu", {"a1"}, {"a1r"});
  b.conv("a1r", "a2", 8, 8, 3, 1);
  b.node("Relu", {"a2"}, {"a2r"});
  b.conv("a2r", "a3", 8, 32, 1, 1);
  b.conv("p0", "sc", 16, 32, 1, 1);
  b.node("Add", {"a3", "sc"}, {"s1"});
  b.node("Relu", {"s1"}, {"o1"});
  // Bottleneck 2 (identity shortcut, Add operands the other way round).
  b.conv("o1", "b1", 32, 8, 1, 1);
  b.node("Relu", {"b1"}, {"b1r"});
  b.conv("b1r", "b2", 8, 8, 3, 2 - 1);
  b.node("Relu", {"b2"}, {"b2r"});
  b.conv("b2r", "b3", 8, 32, 1, 1);
  b.node("Add", {"o1", "b3"}, {"s2"});
  b.node("Relu", {"s2"}, {"o2"});
  b.node("GlobalAveragePool", {"o2"}, {"gap"});
  b.node("Flatten", {"gap"}, {"flat"});
  g.initializers["fc_W"] = random_tensor({10, 32}, 99);
  auto& gemm = b.node("Gemm", {"flat", "fc_W"}, {"y"});
  gemm.attrs["transB"] = num(1);

  std::map<std::string, Tensor> feeds{{"x", random_tensor({1, 3, 32, 32}, 5)}};
  expect_fast_equals_reference(b.m, feeds, "resnet block");
  Executor ex(b.m);
  std::map<std::string, int> applied(ex.passes_applied().begin(), ex.passes_applied().end());
  EXPECT_EQ(applied["fuse_conv_activation"], 8);
  EXPECT_GE(applied["conv_layout_nhwc"], 8 + 2);  // 8 convs + max pool + global average pool
  int fused = 0, adds = 0, relus = 0, transposes = 0;
  for (const auto& n : ex.executed_model().graph.nodes) {
    fused += n.op_type == "FusedConv";
    adds += n.op_type == "Add";
    relus += n.op_type == "Relu";
    transposes += n.op_type == "Transpose";
  }
  EXPECT_EQ(fused, 8);
  EXPECT_EQ(adds, 0) << "both residual Adds fused (sum post-op)";
  EXPECT_EQ(relus, 0) << "every Relu fused";
  EXPECT_EQ(transposes, 2) << "NHWC from the input to the global pool: one transpose in, one out";
  EXPECT_EQ(count_impl(ex, "onednn_conv"), 8);
  EXPECT_EQ(count_impl(ex, "onednn_pool"), 2);
  EXPECT_EQ(count_impl(ex, "onednn_reorder"), 2);

  // Concurrent predictions on one executor (shared primitive cache, per-thread streams and
  // scratchpads) give the reference results.
  auto want = Executor(b.m, RunOptions{.fast = false}).run(feeds).at("y");
  for (const auto& t : test_graph::concurrent_outputs(ex, feeds, "y", 4)) EXPECT_LE(rel_err(t, want), kTol);
}

// ResNet basic block at 64 channels (resnet18/34's: 3x3 conv + Relu, 3x3 conv + residual Add +
// Relu), batch 2, through the Executor at 1 and 2 threads: both convs take the Winograd path
// (unless OPENNPU_CPU_WINOGRAD=0), and concurrent predictions on one executor (per-thread blocked
// buffers) give the reference results.
TEST(ConvPasses, ResNetBasicBlockWinograd) {
  Builder b;
  auto& g = b.m.graph;
  g.inputs.push_back(vi("x", {2, 64, 20, 20}));
  g.outputs.push_back(vi("y", {2, 64, 20, 20}));
  b.conv("x", "c1", 64, 64, 3, 1);
  b.node("Relu", {"c1"}, {"r1"});
  b.conv("r1", "c2", 64, 64, 3, 1);
  b.node("Add", {"c2", "x"}, {"s"});
  b.node("Relu", {"s"}, {"y"});
  std::map<std::string, Tensor> feeds{{"x", random_tensor({2, 64, 20, 20}, 11)}};
  auto want = Executor(b.m, RunOptions{.fast = false}).run(feeds).at("y");
  for (int threads : {1, 2}) {
    SCOPED_TRACE(fmt::format("{} threads", threads));
    set_num_threads(threads);
    Executor ex(b.m);
    EXPECT_LE(rel_err(ex.run(feeds).at("y"), want), kWinoTol);
    EXPECT_EQ(count_impl(ex, winograd_expected() ? "onednn_conv_wino" : "onednn_conv"), 2);
    for (const auto& t : test_graph::concurrent_outputs(ex, feeds, "y", 3)) EXPECT_LE(rel_err(t, want), kWinoTol);
  }
  set_num_threads(0);
}

// MobileNetV2-like: conv + Clip(0, 6), depthwise + Clip, projection conv + residual Add without
// activation; an intermediate that is also a graph output (must stay observable, unfused).
TEST(ConvPasses, MobileNetBlockFusesAndMatches) {
  Builder b;
  auto& g = b.m.graph;
  g.inputs.push_back(vi("x", {1, 8, 15, 15}));
  g.outputs.push_back(vi("y", {1, 8, 15, 15}));
  g.outputs.push_back(vi("e", {1, 24, 15, 15}));
  b.conv("x", "e", 8, 24, 1, 1);  // also a graph output: Clip is not fused into it
  b.clip6("e", "er");
  b.conv("er", "d", 24, 24, 3, 1, 24);
  b.clip6("d", "dr");
  b.conv("dr", "p", 24, 8, 1, 1);
  b.node("Add", {"x", "p"}, {"y"});
  std::map<std::string, Tensor> feeds{{"x", random_tensor({1, 8, 15, 15}, 6, -2.f, 2.f)}};
  expect_fast_equals_reference(b.m, feeds, "mobilenet block");
  Executor ex(b.m);
  int fused = 0, clips = 0, adds = 0;
  for (const auto& n : ex.executed_model().graph.nodes) {
    fused += n.op_type == "FusedConv";
    clips += n.op_type == "Clip";
    adds += n.op_type == "Add";
  }
  EXPECT_EQ(fused, 3);
  EXPECT_EQ(clips, 1) << "the Clip after the graph-output conv stays (in NHWC)";
  EXPECT_EQ(adds, 0);
  EXPECT_EQ(count_impl(ex, "onednn_conv"), 3);
}

// A broadcasting Add (Z is a per-channel [C,1,1] constant) is not a residual: never a sum post-op
// with a wrong shape; results stay right.
TEST(ConvPasses, BroadcastAddStaysCorrect) {
  Builder b;
  auto& g = b.m.graph;
  g.inputs.push_back(vi("x", {1, 4, 9, 9}));
  g.outputs.push_back(vi("y", {1, 6, 9, 9}));
  b.conv("x", "c", 4, 6, 3, 1);
  g.initializers["k"] = random_tensor({6, 1, 1}, 3);
  b.node("Add", {"c", "k"}, {"a"});
  b.node("Relu", {"a"}, {"y"});
  expect_fast_equals_reference(b.m, {{"x", random_tensor({1, 4, 9, 9}, 8)}}, "broadcast add");
}

// A residual around a single conv (y = Relu(Conv(x) + x)): the conv's input is also its sum
// operand, so its buffer must not become the output while row chunks still read it; at 1-2
// threads, both through the NHWC layout pass and a 3x3 conv large enough to be chunked.
TEST(ConvPasses, ResidualOfItsOwnInput) {
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (int64_t hw : {9, 40}) {
      Builder b;
      auto& g = b.m.graph;
      g.inputs.push_back(vi("x", {1, 16, hw, hw}));
      g.outputs.push_back(vi("y", {1, 16, hw, hw}));
      b.conv("x", "c", 16, 16, 3, 1);
      b.node("Add", {"c", "x"}, {"a"});
      b.node("Relu", {"a"}, {"y"});
      expect_fast_equals_reference(b.m, {{"x", random_tensor({1, 16, hw, hw}, 11)}},
                                   "conv + own input, " + std::to_string(hw) + "x" + std::to_string(hw));
    }
  }
  set_num_threads(1);
}

// The layout conversions: NCHW <-> NHWC Transpose (exact: a copy), other perms declined.
TEST(FastLayoutTranspose, MatchesReferenceAndDeclinesOtherPerms) {
  for (auto perm : {std::vector<int64_t>{0, 2, 3, 1}, std::vector<int64_t>{0, 3, 1, 2}, std::vector<int64_t>{0, 2, 1, 3}}) {
    ir::Model m;
    m.opsets[""] = 17;
    ir::Node n;
    n.name = "t";
    n.op_type = "Transpose";
    n.inputs = {"X"};
    n.outputs = {"Y"};
    n.attrs["perm"] = ints(perm);
    m.graph.nodes.push_back(n);
    const ir::Node& node = m.graph.nodes[0];
    std::string why;
    auto k = fast_registry().prepare(PrepareContext(m, m.graph, node), &why);
    if (perm[1] == 2 && perm[2] == 1) {
      EXPECT_FALSE(k);
      continue;
    }
    ASSERT_TRUE(k) << why;
    // Large images are split into row chunks over the threads (odd row counts, batches, fewer
    // rows than threads).
    for (int threads : {1, 2, 3}) {
      set_num_threads(threads);
      for (Shape s : {Shape{2, 5, 7, 3}, Shape{1, 3, 224, 224}, Shape{1, 1, 1, 2048}, Shape{3, 17, 29, 41},
                      Shape{2, 64, 7, 40}, Shape{1, 4096, 2, 3}}) {
        Tensor x = random_tensor(s, 3);
        KernelContext rc(node, {&x}, 17, nullptr);
        registry().find("", "Transpose", 17)->fn(rc);
        KernelContext fc(node, {&x}, 17, nullptr);
        k->run(fc);
        EXPECT_EQ(rel_err(fc.outputs()[0], rc.outputs()[0]), 0.0) << shape_str(s) << ", " << threads << " threads";
        // The int8 CPU path's uint8 / int8 tensors (the same reorder on bytes).
        for (DType dt : {DType::UInt8, DType::Int8}) {
          Tensor q(dt, s);
          auto* qb = static_cast<uint8_t*>(q.raw());
          for (int64_t i = 0; i < q.numel(); ++i) qb[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
          KernelContext rq(node, {&q}, 17, nullptr);
          registry().find("", "Transpose", 17)->fn(rq);
          KernelContext fq(node, {&q}, 17, nullptr);
          k->run(fq);
          const Tensor &a = fq.outputs()[0], &b = rq.outputs()[0];
          ASSERT_EQ(a.dtype(), dt);
          ASSERT_EQ(a.shape(), b.shape());
          EXPECT_EQ(std::memcmp(a.raw(), b.raw(), static_cast<size_t>(a.numel())), 0)
              << dtype_name(dt) << " " << shape_str(s) << ", " << threads << " threads";
        }
      }
    }
    set_num_threads(0);
  }
}

// ---------------------------------------------------------------------------------------------
// parallel_tasks (core/parallel.h), which the NHWC convs use to hand out their chunks: every index
// exactly once, at most num_threads() threads, nested calls serial, exceptions carried back, and
// back-to-back regions mixed with parallel_for (a worker waking late into the next region, of
// either kind) neither hang nor lose work.
TEST(ParallelTasks, EveryIndexOnceOnAtMostNThreads) {
  for (int threads : {1, 2, 3, 4}) {
    set_num_threads(threads);
    for (int64_t n : {1, 2, 3, 7, 100, 1001}) {
      SCOPED_TRACE(fmt::format("{} threads, n={}", threads, n));
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::mutex mu;
      std::set<std::thread::id> ids;
      parallel_tasks(n, [&](int64_t i) {
        hits[static_cast<size_t>(i)].fetch_add(1);
        std::lock_guard<std::mutex> lk(mu);
        ids.insert(std::this_thread::get_id());
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "index " << i;
      EXPECT_LE(ids.size(), static_cast<size_t>(threads));
      EXPECT_LE(ids.size(), static_cast<size_t>(n));
    }
  }
  set_num_threads(0);
}

TEST(ParallelTasks, NestedSerialExceptionsAndMixedRegions) {
  set_num_threads(3);
  // Nested: the inner region runs on the thread of the outer task.
  std::atomic<int> inner_other_thread{0}, inner_total{0};
  parallel_tasks(6, [&](int64_t) {
    const auto me = std::this_thread::get_id();
    parallel_tasks(5, [&](int64_t) {
      inner_total.fetch_add(1);
      if (std::this_thread::get_id() != me) inner_other_thread.fetch_add(1);
    });
  });
  EXPECT_EQ(inner_total.load(), 30);
  EXPECT_EQ(inner_other_thread.load(), 0);
  // An exception in a task reaches the caller; the pool keeps working afterwards.
  EXPECT_THROW(parallel_tasks(50, [](int64_t i) { if (i == 37) throw std::runtime_error("task 37"); }),
               std::runtime_error);
  // Many short regions of both kinds back to back.
  int64_t sum_tasks = 0, sum_for = 0;
  for (int r = 0; r < 2000; ++r) {
    std::atomic<int64_t> a{0}, b{0};
    const int64_t n = 1 + r % 5;
    parallel_tasks(n, [&](int64_t i) { a.fetch_add(i + 1); });
    parallel_for(n, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) b.fetch_add(i + 1);
    });
    sum_tasks += a.load() - n * (n + 1) / 2;
    sum_for += b.load() - n * (n + 1) / 2;
  }
  EXPECT_EQ(sum_tasks, 0);
  EXPECT_EQ(sum_for, 0);
  set_num_threads(0);
}
