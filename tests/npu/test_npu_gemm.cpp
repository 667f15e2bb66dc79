// Bit-exact tests of the NPU's MAC-array layers: Conv (groups, strides, dilations, padding,
// auto_pad, depthwise on the vector unit), ConvTranspose, MatMul (batched, broadcasting, constant
// or activation B) and Gemm (transB, bias).
//
// The accumulation order is part of the engine's definition, so the reference fixes it:
// FP16-rounded inputs and weights, fp32 products, accumulated in ascending k starting from 0.f
// (Conv: k = (c, i, j) row-major within the group, padding contributes 0; ConvTranspose: the
// equivalent stride-1 convolution over the zero-interleaved input with the flipped kernel, i.e.
// c ascending, then kernel row i and column j *descending*, interleaved zeros and padding
// contribute 0), then + bias in fp32 (the compiler keeps biases in fp32), then the fused
// activation, then one rounding to FP16. With an FP16 accumulator every partial sum is rounded.
// Every case runs on several presets (different SRAM sizes, core counts, array shapes, so the
// tiling and the split over cores differ) and with 1 and 2 threads: tiling and threads must not
// change a single bit.
#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "npu_test_util.h"

using namespace npt;

namespace {

enum class Act { None, Relu, Clip6 };

float act_apply(Act a, float v) {
  if (a == Act::Relu) return v > 0.f ? v : 0.f;
  if (a == Act::Clip6) return std::min(std::max(v, 0.f), 6.f);
  return v;
}

// acc <- acc + p in the engine's accumulator.
inline float accumulate(float acc, float p, bool acc16) { return acc16 ? round_f16(acc + p) : acc + p; }

// The configurations every case runs on. Values must be identical on all of them.
std::vector<npu::HardwareConfig> configs() {
  std::vector<npu::HardwareConfig> v;
  for (const char* n : {"ane_m1", "ane_a12", "ane_m4", "systolic_32x32"}) v.push_back(preset(n));
  npu::HardwareConfig small = preset("ane_m1");  // forces N and K tiling and many M tiles
  small.name = "m1_sram16k";
  small.sram.bytes = 16 * 1024;
  v.push_back(small);
  npu::HardwareConfig odd = preset("ane_a12");   // 3 cores, an 8x4 output-stationary array
  odd.name = "odd_3core_8x4_os";
  odd.cores = 3;
  odd.mac.rows = 8;
  odd.mac.cols = 4;
  odd.mac.macs_per_cycle_fp16 = 32;
  odd.mac.dataflow = npu::Dataflow::OS;
  odd.sram.bytes = 48 * 1024;
  v.push_back(odd);
  return v;
}

npu::HardwareConfig fp16_acc_config() {
  npu::HardwareConfig h = preset("ane_m1");
  h.name = "m1_fp16_acc";
  h.mac.accumulator = npu::AccumPrecision::FP16;
  h.sram.bytes = 32 * 1024;
  return h;
}

// Adds the fused activation after node output `t` (its value_info) and names the result "y".
void add_act(Net& net, Act act, const Shape& out, const std::string& t) {
  if (act == Act::None) return;
  net.value(t, out);
  if (act == Act::Relu) net.node("Relu", {t}, {"y"});
  else {
    net.init("c0", tensor({}, {0.f}));
    net.init("c6", tensor({}, {6.f}));
    net.node("Clip", {t, "c0", "c6"}, {"y"});
  }
}

struct Stats {
  int cases = 0;
  int runs = 0;
};

// Runs `net` with `feeds` on every config and with 1 and 2 threads; all must equal `want`
// (computed with an fp32 accumulator). If `want16` is given, also on an FP16-accumulator config.
void check_everywhere(const Net& net, const std::map<std::string, Tensor>& feeds, const std::vector<float>& want,
                      const std::vector<float>* want16, Stats& st, bool all_configs = true) {
  static const auto cfgs = configs();
  int i = 0;
  for (const auto& hw : cfgs) {
    if (!all_configs && i++ > 1) break;
    for (int threads : {2, 1}) {
      if (threads == 1 && &hw != &cfgs[0]) continue;  // thread count checked on one config
      set_num_threads(threads);
      SCOPED_TRACE(fmt::format("{} threads={}", hw.name, threads));
      std::map<std::string, Tensor> out;
      try {
        out = run_npu(net.m, hw, feeds);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "NPU run failed: " << e.what();
        continue;
      }
      EXPECT_TRUE(bit_equal(values(out.at("y")), want, "NPU vs fixed-order reference"));
      ++st.runs;
    }
  }
  set_num_threads(2);
  if (want16) {
    static const auto h16 = fp16_acc_config();
    SCOPED_TRACE(h16.name);
    auto out = run_npu(net.m, h16, feeds);
    EXPECT_TRUE(bit_equal(values(out.at("y")), *want16, "NPU (fp16 accumulator) vs reference"));
    ++st.runs;
  }
  ++st.cases;
}

// ---- Conv ----

struct ConvCase {
  int64_t N, C, H, W, O, group, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
  std::string auto_pad = "NOTSET";
  bool bias = false, kernel_shape_attr = true;
  Act act = Act::None;
  int64_t OH = 0, OW = 0;
  std::string str() const {
    return fmt::format("Conv N{} C{} {}x{} O{} g{} k{}x{} s{}x{} d{}x{} p[{},{},{},{}] {} bias={} ks_attr={} act={}", N, C,
                       H, W, O, group, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, auto_pad, bias, kernel_shape_attr,
                       static_cast<int>(act));
  }
};

// Output size and the begin pads actually used (auto_pad resolved as ONNX defines it).
bool conv_geometry(ConvCase& c) {
  auto ext = [](int64_t k, int64_t d) { return (k - 1) * d + 1; };
  if (c.auto_pad == "SAME_UPPER" || c.auto_pad == "SAME_LOWER") {
    c.OH = (c.H + c.sh - 1) / c.sh;
    c.OW = (c.W + c.sw - 1) / c.sw;
    int64_t th = std::max<int64_t>(0, (c.OH - 1) * c.sh + ext(c.kh, c.dh) - c.H);
    int64_t tw = std::max<int64_t>(0, (c.OW - 1) * c.sw + ext(c.kw, c.dw) - c.W);
    c.pt = c.auto_pad == "SAME_UPPER" ? th / 2 : th - th / 2;
    c.pl = c.auto_pad == "SAME_UPPER" ? tw / 2 : tw - tw / 2;
    c.pb = th - c.pt;
    c.pr = tw - c.pl;
  } else {
    if (c.auto_pad == "VALID") c.pt = c.pl = c.pb = c.pr = 0;
    int64_t eh = c.H + c.pt + c.pb - ext(c.kh, c.dh), ew = c.W + c.pl + c.pr - ext(c.kw, c.dw);
    if (eh < 0 || ew < 0) return false;
    c.OH = eh / c.sh + 1;
    c.OW = ew / c.sw + 1;
  }
  return c.OH >= 1 && c.OW >= 1;
}

std::vector<float> conv_ref(const ConvCase& c, const std::vector<float>& x, const std::vector<float>& w,
                            const std::vector<float>& b, bool acc16) {
  const int64_t Cg = c.C / c.group, Og = c.O / c.group;
  std::vector<float> y(static_cast<size_t>(c.N * c.O * c.OH * c.OW));
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t o = 0; o < c.O; ++o) {
      const int64_t g = o / Og;
      for (int64_t oh = 0; oh < c.OH; ++oh)
        for (int64_t ow = 0; ow < c.OW; ++ow) {
          float acc = 0.f;
          for (int64_t ci = 0; ci < Cg; ++ci)
            for (int64_t i = 0; i < c.kh; ++i)
              for (int64_t j = 0; j < c.kw; ++j) {
                const int64_t ih = oh * c.sh - c.pt + i * c.dh, iw = ow * c.sw - c.pl + j * c.dw;
                const bool in = ih >= 0 && ih < c.H && iw >= 0 && iw < c.W;
                const float xv = in ? x[((n * c.C + g * Cg + ci) * c.H + ih) * c.W + iw] : 0.f;  // padding: 0
                acc = accumulate(acc, xv * w[((o * Cg + ci) * c.kh + i) * c.kw + j], acc16);
              }
          if (!b.empty()) acc = acc + b[o];
          y[((n * c.O + o) * c.OH + oh) * c.OW + ow] = round_f16(act_apply(c.act, acc));
        }
    }
  return y;
}

void run_conv_case(ConvCase c, std::mt19937_64& rng, Stats& st, bool awkward) {
  ASSERT_TRUE(conv_geometry(c));
  SCOPED_TRACE(c.str());
  const int64_t Cg = c.C / c.group;
  auto x = random_values(c.N * c.C * c.H * c.W, rng, 2.f, false, awkward);
  auto w = random_values(c.O * Cg * c.kh * c.kw, rng, 1.f, false, false);
  std::vector<float> b;
  if (c.bias) b = random_values(c.O, rng, 1.f, false, false);
  Net net(17);
  Shape xs{c.N, c.C, c.H, c.W}, ys{c.N, c.O, c.OH, c.OW};
  net.input("x", xs);
  net.init("w", tensor({c.O, Cg, c.kh, c.kw}, w));
  std::vector<std::string> ins{"x", "w"};
  if (c.bias) { net.init("b", tensor({c.O}, b)); ins.push_back("b"); }
  net.output("y", ys);
  ir::Node& n = net.node("Conv", ins, {c.act == Act::None ? "y" : "t"});
  if (c.kernel_shape_attr) n.attrs["kernel_shape"] = attr_ints({c.kh, c.kw});
  n.attrs["strides"] = attr_ints({c.sh, c.sw});
  n.attrs["dilations"] = attr_ints({c.dh, c.dw});
  if (c.group != 1) n.attrs["group"] = attr_i(c.group);
  if (c.auto_pad == "NOTSET") n.attrs["pads"] = attr_ints({c.pt, c.pl, c.pb, c.pr});
  else n.attrs["auto_pad"] = attr_s(c.auto_pad);
  add_act(net, c.act, ys, "t");
  auto want = conv_ref(c, rounded(x), rounded(w), b, false);
  auto want16 = conv_ref(c, rounded(x), rounded(w), b, true);
  const bool depthwise = c.group > 1 && c.group == c.C;  // on the vector unit: fp32 acc always
  check_everywhere(net, {{"x", tensor(xs, x)}}, want, depthwise ? nullptr : &want16, st);
}

}  // namespace

TEST(NpuGemm, ConvIsBitExactOnEveryPreset) {
  std::mt19937_64 rng(1234);
  Stats st;
  std::uniform_int_distribution<int> d12(1, 2), d13(1, 3), d15(1, 5), d02(0, 2), d8(1, 8), coin(0, 3);
  for (int i = 0; i < 70; ++i) {
    ConvCase c{};
    c.N = d12(rng);
    int gsel = static_cast<int>(rng() % 6);
    int64_t Cg = d8(rng), Og = d8(rng);
    if (i % 10 == 9) { Cg = 20 + rng() % 50; Og = 16 + rng() % 60; }  // bigger: multi-core splits, K tiling
    c.group = gsel < 3 ? 1 : gsel < 5 ? d13(rng) + 1 : 0;
    if (c.group == 0) {  // depthwise (group == C), channel multiplier 1-2
      c.C = d8(rng) + 1;
      c.group = c.C;
      c.O = c.C * d12(rng);
    } else {
      c.C = Cg * c.group;
      c.O = Og * c.group;
    }
    c.kh = d15(rng); c.kw = d15(rng);
    c.sh = d13(rng); c.sw = d13(rng);
    c.dh = d12(rng); c.dw = d12(rng);
    c.pt = d02(rng); c.pl = d02(rng); c.pb = d02(rng); c.pr = d02(rng);
    int ap = static_cast<int>(rng() % 8);
    c.auto_pad = ap == 0 ? "SAME_UPPER" : ap == 1 ? "SAME_LOWER" : ap == 2 ? "VALID" : "NOTSET";
    c.H = 1 + rng() % 14; c.W = 1 + rng() % 14;
    if (i % 10 == 9) { c.H = 10 + rng() % 20; c.W = 10 + rng() % 20; }
    c.bias = coin(rng) != 0;
    c.act = static_cast<Act>(rng() % 3);
    if (!conv_geometry(c)) { --i; continue; }
    run_conv_case(c, rng, st, i % 5 == 0);
  }
  std::printf("Conv: %d random cases, %d NPU runs, all bit-identical to the fixed-order reference\n", st.cases, st.runs);
}

// Depthwise convolutions (the vector unit) must honour the weight shape when the optional
// kernel_shape attribute is absent (ONNX infers it from W).
TEST(NpuGemm, DepthwiseConvWithoutKernelShapeAttribute) {
  std::mt19937_64 rng(8);
  Stats st;
  for (auto [kh, kw] : {std::pair<int64_t, int64_t>{3, 3}, {3, 1}, {1, 3}, {2, 5}}) {
    ConvCase c{};
    c.N = 1; c.C = 4; c.group = 4; c.O = 8; c.H = 7; c.W = 6;
    c.kh = kh; c.kw = kw; c.sh = c.sw = 1; c.dh = c.dw = 1; c.pt = c.pl = c.pb = c.pr = 1;
    c.kernel_shape_attr = false;
    run_conv_case(c, rng, st, false);
  }
}

namespace {

struct ConvTCase {
  int64_t N, C, H, W, O, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, oph, opw;
  bool bias = false;
  Act act = Act::None;
  int64_t OH = 0, OW = 0;
  std::string str() const {
    return fmt::format("ConvTranspose N{} C{} {}x{} O{} k{}x{} s{}x{} d{}x{} p[{},{},{},{}] op[{},{}] bias={} act={}", N,
                       C, H, W, O, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, oph, opw, bias, static_cast<int>(act));
  }
};

// y[n,o,oh,ow] = sum over c, i, j of x[n,c,ih,iw] * w[c,o,i,j] where oh = ih*sh - pt + i*dh (and the
// same for w), summed in the equivalent convolution's order: c ascending, i and j descending.
std::vector<float> convt_ref(const ConvTCase& c, const std::vector<float>& x, const std::vector<float>& w,
                             const std::vector<float>& b, bool acc16) {
  std::vector<float> y(static_cast<size_t>(c.N * c.O * c.OH * c.OW));
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t o = 0; o < c.O; ++o)
      for (int64_t oh = 0; oh < c.OH; ++oh)
        for (int64_t ow = 0; ow < c.OW; ++ow) {
          float acc = 0.f;
          for (int64_t ci = 0; ci < c.C; ++ci)
            for (int64_t i = c.kh - 1; i >= 0; --i)
              for (int64_t j = c.kw - 1; j >= 0; --j) {
                const int64_t th = oh + c.pt - i * c.dh, tw = ow + c.pl - j * c.dw;  // = ih*sh, iw*sw
                const bool in = th >= 0 && tw >= 0 && th % c.sh == 0 && tw % c.sw == 0 && th / c.sh < c.H &&
                                tw / c.sw < c.W;
                const float xv = in ? x[((n * c.C + ci) * c.H + th / c.sh) * c.W + tw / c.sw] : 0.f;
                acc = accumulate(acc, xv * w[((ci * c.O + o) * c.kh + i) * c.kw + j], acc16);
              }
          if (!b.empty()) acc = acc + b[o];
          y[((n * c.O + o) * c.OH + oh) * c.OW + ow] = round_f16(act_apply(c.act, acc));
        }
  return y;
}

}  // namespace

TEST(NpuGemm, ConvTransposeIsBitExactOnEveryPreset) {
  std::mt19937_64 rng(4321);
  Stats st;
  std::uniform_int_distribution<int> d12(1, 2), d13(1, 3), d14(1, 4), d02(0, 2), d8(1, 8);
  for (int i = 0; i < 55; ++i) {
    ConvTCase c{};
    c.N = d12(rng); c.C = d8(rng); c.O = d8(rng);
    if (i % 10 == 9) { c.C = 20 + rng() % 40; c.O = 20 + rng() % 40; }
    c.H = 1 + rng() % 8; c.W = 1 + rng() % 8;
    c.kh = d14(rng); c.kw = d14(rng);
    c.sh = d13(rng); c.sw = d13(rng);
    c.dh = d12(rng); c.dw = d12(rng);
    c.pt = d02(rng); c.pl = d02(rng); c.pb = d02(rng); c.pr = d02(rng);
    // output_padding must be smaller than the stride or the dilation.
    c.oph = static_cast<int64_t>(rng() % std::max(c.sh, c.dh));
    c.opw = static_cast<int64_t>(rng() % std::max(c.sw, c.dw));
    c.OH = c.sh * (c.H - 1) + c.oph + (c.kh - 1) * c.dh + 1 - c.pt - c.pb;
    c.OW = c.sw * (c.W - 1) + c.opw + (c.kw - 1) * c.dw + 1 - c.pl - c.pr;
    if (c.OH < 1 || c.OW < 1) { --i; continue; }
    c.bias = rng() % 2;
    c.act = static_cast<Act>(rng() % 3);
    SCOPED_TRACE(c.str());
    auto x = random_values(c.N * c.C * c.H * c.W, rng, 2.f, false, i % 5 == 0);
    auto w = random_values(c.C * c.O * c.kh * c.kw, rng, 1.f, false, false);
    std::vector<float> b;
    if (c.bias) b = random_values(c.O, rng, 1.f, false, false);
    Net net(17);
    Shape xs{c.N, c.C, c.H, c.W}, ys{c.N, c.O, c.OH, c.OW};
    net.input("x", xs);
    net.init("w", tensor({c.C, c.O, c.kh, c.kw}, w));
    std::vector<std::string> ins{"x", "w"};
    if (c.bias) { net.init("b", tensor({c.O}, b)); ins.push_back("b"); }
    net.output("y", ys);
    ir::Node& n = net.node("ConvTranspose", ins, {c.act == Act::None ? "y" : "t"});
    n.attrs["kernel_shape"] = attr_ints({c.kh, c.kw});
    n.attrs["strides"] = attr_ints({c.sh, c.sw});
    n.attrs["dilations"] = attr_ints({c.dh, c.dw});
    n.attrs["pads"] = attr_ints({c.pt, c.pl, c.pb, c.pr});
    if (c.oph || c.opw) n.attrs["output_padding"] = attr_ints({c.oph, c.opw});
    add_act(net, c.act, ys, "t");
    auto want = convt_ref(c, rounded(x), rounded(w), b, false);
    auto want16 = convt_ref(c, rounded(x), rounded(w), b, true);
    check_everywhere(net, {{"x", tensor(xs, x)}}, want, &want16, st);
  }
  std::printf("ConvTranspose: %d random cases, %d NPU runs, all bit-identical\n", st.cases, st.runs);
}

namespace {

// C[b] = A[b] * B[b] over broadcast batch dims, k ascending.
std::vector<float> matmul_ref(const Shape& as, const Shape& bs, const Shape& ys, const std::vector<float>& a,
                              const std::vector<float>& b, const std::vector<float>& bias, Act act, bool acc16) {
  const int64_t M = as[as.size() - 2], K = as.back(), N = bs.back();
  const size_t r = ys.size() - 2;
  Shape ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
  while (ab.size() < r) ab.insert(ab.begin(), 1);
  while (bb.size() < r) bb.insert(bb.begin(), 1);
  int64_t batches = 1;
  for (size_t d = 0; d < r; ++d) batches *= ys[d];
  std::vector<float> y(static_cast<size_t>(batches * M * N));
  for (int64_t bi = 0; bi < batches; ++bi) {
    // Batch index -> offsets in A and B (a dim of size 1 repeats).
    int64_t rem = bi, ao = 0, bo = 0, astr = 1, bstr = 1;
    for (int64_t d = static_cast<int64_t>(r) - 1; d >= 0; --d) {
      int64_t idx = rem % ys[d];
      rem /= ys[d];
      ao += (ab[d] == 1 ? 0 : idx) * astr;
      bo += (bb[d] == 1 ? 0 : idx) * bstr;
      astr *= ab[d];
      bstr *= bb[d];
    }
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        float acc = 0.f;
        for (int64_t k = 0; k < K; ++k) acc = accumulate(acc, a[(ao * M + m) * K + k] * b[(bo * K + k) * N + n], acc16);
        if (!bias.empty()) acc = acc + bias[n];
        y[(bi * M + m) * N + n] = round_f16(act_apply(act, acc));
      }
  }
  return y;
}

}  // namespace

TEST(NpuGemm, MatMulBatchedBroadcastIsBitExactOnEveryPreset) {
  std::mt19937_64 rng(555);
  Stats st;
  for (int i = 0; i < 60; ++i) {
    int64_t M = 1 + rng() % 40, K = 1 + rng() % 40, N = 1 + rng() % 40;
    if (i % 8 == 7) { M = 50 + rng() % 200; K = 100 + rng() % 500; N = 30 + rng() % 200; }
    // Batch dims (rank 0-2), each side independently 1 or the full size, or missing.
    size_t r = rng() % 3;
    Shape batch(r);
    for (auto& d : batch) d = 1 + rng() % 3;
    Shape ab = batch, bb = batch;
    for (auto& d : ab) { if (rng() % 3 == 0) d = 1; }
    for (auto& d : bb) { if (rng() % 3 == 0) d = 1; }
    if (rng() % 4 == 0 && !ab.empty()) ab.erase(ab.begin());
    if (rng() % 4 == 0 && !bb.empty()) bb.erase(bb.begin());
    Shape as = ab, bs = bb;
    as.push_back(M); as.push_back(K);
    bs.push_back(K); bs.push_back(N);
    Shape ys;
    {
      size_t rr = std::max(ab.size(), bb.size());
      Shape pa = ab, pb = bb;
      while (pa.size() < rr) pa.insert(pa.begin(), 1);
      while (pb.size() < rr) pb.insert(pb.begin(), 1);
      for (size_t d = 0; d < rr; ++d) ys.push_back(std::max(pa[d], pb[d]));
      ys.push_back(M); ys.push_back(N);
    }
    const bool b_const = rng() % 2;
    const Act act = static_cast<Act>(rng() % 3);
    SCOPED_TRACE(fmt::format("MatMul case {}: {} x {} -> {} B {} act {}", i, shape_str(as), shape_str(bs), shape_str(ys),
                             b_const ? "constant" : "input", static_cast<int>(act)));
    auto a = random_values(numel(as), rng, 2.f, false, i % 6 == 0);
    auto b = random_values(numel(bs), rng, 1.f, false, false);
    Net net(17);
    net.input("a", as);
    std::map<std::string, Tensor> feeds{{"a", tensor(as, a)}};
    if (b_const) net.init("b", tensor(bs, b));
    else { net.input("b", bs); feeds["b"] = tensor(bs, b); }
    net.output("y", ys);
    net.node("MatMul", {"a", "b"}, {act == Act::None ? "y" : "t"});
    add_act(net, act, ys, "t");
    auto want = matmul_ref(as, bs, ys, rounded(a), rounded(b), {}, act, false);
    auto want16 = matmul_ref(as, bs, ys, rounded(a), rounded(b), {}, act, true);
    check_everywhere(net, feeds, want, &want16, st);
  }
  std::printf("MatMul: %d random cases, %d NPU runs, all bit-identical\n", st.cases, st.runs);
}

TEST(NpuGemm, GemmTransBBiasIsBitExactOnEveryPreset) {
  std::mt19937_64 rng(777);
  Stats st;
  for (int i = 0; i < 60; ++i) {
    int64_t M = 1 + rng() % 50, K = 1 + rng() % 70, N = 1 + rng() % 50;
    if (i % 8 == 7) { M = 1 + rng() % 64; K = 256 + rng() % 800; N = 100 + rng() % 500; }  // a classifier head
    const bool tb = rng() % 2;
    const int bias_kind = static_cast<int>(rng() % 4);  // none, [N], [1,N], scalar [1]
    const Act act = static_cast<Act>(rng() % 3);
    SCOPED_TRACE(fmt::format("Gemm case {}: M{} K{} N{} transB={} bias={} act={}", i, M, K, N, tb, bias_kind,
                             static_cast<int>(act)));
    auto a = random_values(M * K, rng, 2.f, false, i % 6 == 0);
    auto b = random_values(K * N, rng, 1.f, false, false);  // stored [K,N] or [N,K] (transB)
    std::vector<float> bias;
    Net net(17);
    net.input("a", {M, K});
    Shape bshape = tb ? Shape{N, K} : Shape{K, N};
    net.init("b", tensor(bshape, b));
    std::vector<std::string> ins{"a", "b"};
    if (bias_kind) {
      Shape cs = bias_kind == 1 ? Shape{N} : bias_kind == 2 ? Shape{1, N} : Shape{1};
      auto cv = random_values(numel(cs), rng, 1.f, false, false);
      net.init("c", tensor(cs, cv));
      ins.push_back("c");
      for (int64_t n = 0; n < N; ++n) bias.push_back(cv[numel(cs) == 1 ? 0 : n]);
    }
    net.output("y", {M, N});
    ir::Node& nd = net.node("Gemm", ins, {act == Act::None ? "y" : "t"});
    if (tb) nd.attrs["transB"] = attr_i(1);
    add_act(net, act, {M, N}, "t");
    // B as [K,N] for the reference.
    std::vector<float> bkn(static_cast<size_t>(K * N));
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n) bkn[k * N + n] = tb ? b[n * K + k] : b[k * N + n];
    auto want = matmul_ref({M, K}, {K, N}, {M, N}, rounded(a), rounded(bkn), bias, act, false);
    auto want16 = matmul_ref({M, K}, {K, N}, {M, N}, rounded(a), rounded(bkn), bias, act, true);
    check_everywhere(net, {{"a", tensor({M, K}, a)}}, want, &want16, st);
  }
  std::printf("Gemm: %d random cases, %d NPU runs, all bit-identical\n", st.cases, st.runs);
}

// Gemm whose B is an activation (not an initializer): the compiler must either lower it
// correctly or leave it on the CPU with a reason; it must never crash.
TEST(NpuGemm, GemmWithActivationBIsHandled) {
  std::mt19937_64 rng(9);
  const int64_t M = 5, K = 7, N = 3;
  Net net(17);
  net.input("a", {M, K});
  net.input("b", {K, N});
  net.output("y", {M, N});
  net.node("Gemm", {"a", "b"}, {"y"});
  npu::Program p;
  ASSERT_NO_THROW(p = npu::compile(net.m, preset("ane_m1")));
  ASSERT_EQ(p.placements.size(), 1u);
  if (!p.placements[0].npu) {
    EXPECT_FALSE(p.placements[0].reason.empty());
    std::printf("Gemm with a non-constant B stays on the CPU: %s\n", p.placements[0].reason.c_str());
    return;
  }
  auto a = random_values(M * K, rng, 2.f, false, false), b = random_values(K * N, rng, 1.f, false, false);
  auto out = run_npu(net.m, preset("ane_m1"), {{"a", tensor({M, K}, a)}, {"b", tensor({K, N}, b)}});
  EXPECT_TRUE(bit_equal(values(out.at("y")), matmul_ref({M, K}, {K, N}, {M, N}, rounded(a), rounded(b), {}, Act::None, false)));
}
