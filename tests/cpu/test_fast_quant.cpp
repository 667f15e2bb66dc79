// Fast int8 kernels (cpu/fast/quant.cpp: oneDNN QLinearConv / QLinearMatMul / QGemm, vectorised
// QuantizeLinear / DequantizeLinear and requantization) vs the reference kernels
// (cpu/kernels/quant.cpp, quant_gemm.cpp): outputs must be BIT-IDENTICAL (the NPU simulator is
// checked against the same arithmetic). Many shapes: odd sizes, strides, pads, dilations, groups
// and depthwise, uint8/int8 activations with non-zero zero points, per-tensor and per-channel
// weight scales, bias absent/present, saturating outputs, accumulators beyond 2^24 (oneDNN's
// s32 output passes through float32 there; the kernel must recompute them), and the declined
// cases (the reference runs, Executor::implementations() says so).
// On a machine without AVX-512 VNNI the oneDNN kernels decline by design: the tests then check
// that the reference ran and say so on stdout (results are still compared).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "cpu/executor.h"
#include "cpu/fast/fast.h"
#include "cpu/fast/quant.h"
#include "executor_checks.h"
#include "graph_builders.h"

using namespace opennpu;
using namespace opennpu::cpu;

namespace {
using test_graph::flt;
using test_graph::ints;
using test_graph::num;
using test_graph::str;

Tensor q8(DType dt, Shape s, std::mt19937& rng, int lo, int hi) {
  Tensor t(dt, std::move(s));
  std::uniform_int_distribution<int> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (dt == DType::UInt8) t.data<uint8_t>()[i] = static_cast<uint8_t>(u(rng));
    else t.data<int8_t>()[i] = static_cast<int8_t>(u(rng));
  }
  return t;
}
Tensor scalar_q(DType dt, int v) {
  Tensor t(dt, {});
  if (dt == DType::UInt8) t.data<uint8_t>()[0] = static_cast<uint8_t>(v);
  else t.data<int8_t>()[0] = static_cast<int8_t>(v);
  return t;
}
Tensor f32(Shape s, std::vector<float> v) {
  Tensor t(DType::Float32, std::move(s));
  std::memcpy(t.raw(), v.data(), v.size() * sizeof(float));
  return t;
}

bool have_vnni() { return cpu_features().avx512vnni; }

// Runs m on the fast path and on the reference kernels; outputs must be byte-identical, and
// `impl` must have run `count` nodes (or, without VNNI, the reference when impl is a oneDNN one).
void expect_identical(const ir::Model& m, const std::map<std::string, Tensor>& feeds, const std::string& impl,
                      const std::string& what, int count = 1) {
  SCOPED_TRACE(what);
  Executor ref(m, RunOptions{.fast = false});
  Executor fast(m);
  auto r = ref.run(feeds);
  auto f = fast.run(feeds);
  auto f2 = fast.run(feeds);  // cached plans, recycled buffers
  for (const auto& [name, t] : r) {
    for (const auto* got : {&f.at(name), &f2.at(name)}) {
      ASSERT_EQ(got->dtype(), t.dtype());
      ASSERT_EQ(got->shape(), t.shape());
      int64_t bad = 0, first = -1;
      for (size_t i = 0; i < t.nbytes(); ++i)
        if (static_cast<const uint8_t*>(got->raw())[i] != static_cast<const uint8_t*>(t.raw())[i]) {
          if (first < 0) first = static_cast<int64_t>(i);
          ++bad;
        }
      EXPECT_EQ(bad, 0) << "of " << t.nbytes() << " bytes differ, first at byte " << first;
    }
  }
  // The oneDNN integer GEMM/conv kernels need VNNI; without it their nodes run the reference.
  const bool vnni_kernel = impl == "onednn_qconv" || impl == "onednn_qmatmul" || impl == "onednn_qgemm";
  const bool declined = vnni_kernel && !have_vnni();
  int n = 0;
  for (const auto& i : fast.implementations())
    n += declined ? (i.impl == "reference" && (i.op == "QLinearConv" || i.op == "QLinearMatMul" || i.op == "QGemm"))
                  : i.impl == impl;
  EXPECT_EQ(n, count) << "nodes run by " << (declined ? "reference" : impl);
  if (declined) std::printf("[ note ] no AVX-512 VNNI: %s declined by design, reference ran\n", impl.c_str());
}

struct QConvCase {
  int64_t N, C, H, W, M, KH, KW, group = 1;
  std::vector<int64_t> strides{1, 1}, dil{1, 1}, pads{0, 0, 0, 0};
  std::string auto_pad = "NOTSET";
  DType xdt = DType::UInt8, ydt = DType::UInt8;
  int x_zp = 0, y_zp = 0;
  bool per_channel = true, bias = true;
  float y_scale = 0.f;  // 0: chosen so the outputs spread over the range; tiny: saturation
  bool extreme = false;  // x at its extreme, w = +-127: accumulators beyond 2^24
  int w_zp = 0;          // non-zero: declined
};

ir::Model qconv_model(const QConvCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  ir::Model m;
  m.opsets[""] = 13;
  auto& g = m.graph;
  const int64_t Cg = c.C / c.group;
  Tensor w = c.extreme ? Tensor(DType::Int8, {c.M, Cg, c.KH, c.KW}) : q8(DType::Int8, {c.M, Cg, c.KH, c.KW}, rng, -127, 127);
  if (c.extreme)
    for (int64_t i = 0; i < w.numel(); ++i) w.data<int8_t>()[i] = (i % 7 == 3) ? 126 : (c.xdt == DType::Int8 ? -127 : 127);
  g.initializers["w"] = w;
  g.initializers["xs"] = Tensor::scalar_f32(0.02f);
  g.initializers["xz"] = scalar_q(c.xdt, c.x_zp);
  std::vector<float> ws(static_cast<size_t>(c.per_channel ? c.M : 1));
  std::uniform_real_distribution<float> us(0.002f, 0.02f);
  for (auto& s : ws) s = us(rng);
  g.initializers["ws"] = c.per_channel ? f32({c.M}, ws) : Tensor::scalar_f32(ws[0]);
  Tensor wz(DType::Int8, {c.M});
  for (int64_t i = 0; i < c.M; ++i) wz.data<int8_t>()[i] = static_cast<int8_t>(i == c.M - 1 ? c.w_zp : 0);
  g.initializers["wz"] = wz;
  // Output scale: about 3 sigma of acc * 0.02 * 0.01 spread over 256 levels.
  const double sigma = 74.0 * 73.0 * std::sqrt(double(Cg * c.KH * c.KW)) * 0.02 * 0.011;
  g.initializers["ys"] = Tensor::scalar_f32(c.y_scale > 0 ? c.y_scale : static_cast<float>(6 * sigma / 256));
  g.initializers["yz"] = scalar_q(c.ydt, c.y_zp);
  std::vector<std::string> in{"x", "xs", "xz", "w", "ws", "wz", "ys", "yz"};
  if (c.bias) {
    Tensor b(DType::Int32, {c.M});
    std::uniform_int_distribution<int32_t> ub(-20000, 20000);
    for (int64_t i = 0; i < c.M; ++i) b.data<int32_t>()[i] = ub(rng);
    if (c.M > 1) b.data<int32_t>()[1] = std::numeric_limits<int32_t>::max() - 5;  // acc + bias wraps
    if (c.extreme) {
      // x is constant (see check_qconv): an interior output's acc is x * sum(w[m]). B = -acc + a
      // small offset makes acc + B small there, so an accumulator rounded through float32 (off by
      // up to 8) would change the output (y_scale is chosen for a multiplier near 1).
      const int xv = c.xdt == DType::UInt8 ? 255 : -128;
      for (int64_t mm = 0; mm < c.M; ++mm) {
        int64_t sw = 0;
        for (int64_t i = 0; i < Cg * c.KH * c.KW; ++i) sw += w.data<int8_t>()[mm * Cg * c.KH * c.KW + i];
        b.data<int32_t>()[mm] = static_cast<int32_t>(-(xv - c.x_zp) * sw + (mm % 9) - 4);
      }
    }
    g.initializers["b"] = b;
    in.push_back("b");
  }
  g.inputs.push_back(test_graph::vi("x", c.xdt, {c.N, c.C, c.H, c.W}));
  auto n = test_graph::node("QLinearConv", in, {"y"});
  n.attrs["strides"] = ints(c.strides);
  n.attrs["dilations"] = ints(c.dil);
  if (c.auto_pad == "NOTSET") n.attrs["pads"] = ints(c.pads);
  else n.attrs["auto_pad"] = str(c.auto_pad);
  n.attrs["group"] = num(c.group);
  g.nodes.push_back(n);
  g.outputs.push_back(test_graph::vi("y", c.ydt, {}));
  g.outputs.back().has_shape = false;
  return m;
}

void check_qconv(const QConvCase& c, const std::string& what, const std::string& impl = "onednn_qconv") {
  for (uint32_t seed : {1u, 2u}) {
    ir::Model m = qconv_model(c, seed);
    std::mt19937 rng(seed + 100);
    Tensor x = c.xdt == DType::UInt8 ? q8(c.xdt, {c.N, c.C, c.H, c.W}, rng, 0, 255) : q8(c.xdt, {c.N, c.C, c.H, c.W}, rng, -128, 127);
    if (c.extreme)
      for (int64_t i = 0; i < x.numel(); ++i) {
        if (c.xdt == DType::UInt8) x.data<uint8_t>()[i] = 255;
        else x.data<int8_t>()[i] = -128;
      }
    expect_identical(m, {{"x", x}}, impl, what + " seed " + std::to_string(seed));
  }
}

}  // namespace

TEST(FastQuant, QLinearConvShapes) {
  using D = DType;
  std::vector<std::pair<std::string, QConvCase>> cases = {
      {"1x1", {1, 16, 14, 14, 24, 1, 1}},
      {"3x3 pad 1", {1, 8, 9, 11, 16, 3, 3, 1, {1, 1}, {1, 1}, {1, 1, 1, 1}}},
      {"3x3 stride 2 pad odd", {1, 5, 13, 7, 7, 3, 3, 1, {2, 2}, {1, 1}, {1, 0, 0, 1}}},
      {"first layer C3", {1, 3, 32, 32, 16, 3, 3, 1, {2, 2}, {1, 1}, {1, 1, 1, 1}}},
      {"5x3 dilation 2", {1, 6, 15, 12, 10, 5, 3, 1, {1, 1}, {2, 2}, {2, 1, 2, 1}}},
      {"depthwise", {1, 32, 17, 17, 32, 3, 3, 32, {1, 1}, {1, 1}, {1, 1, 1, 1}}},
      {"depthwise stride 2", {1, 24, 16, 15, 24, 3, 3, 24, {2, 2}, {1, 1}, {1, 1, 1, 1}}},
      {"depthwise multiplier 2", {1, 8, 10, 10, 16, 3, 3, 8, {1, 1}, {1, 1}, {1, 1, 1, 1}}},
      {"groups 4", {1, 16, 9, 9, 20, 3, 3, 4, {1, 1}, {1, 1}, {1, 1, 1, 1}}},
      {"batch 3", {3, 7, 8, 9, 5, 3, 3, 1, {1, 2}, {1, 1}, {0, 1, 2, 0}}},
      {"SAME_UPPER", {1, 4, 10, 7, 6, 4, 4, 1, {2, 2}, {1, 1}, {}, "SAME_UPPER"}},
      {"SAME_LOWER", {1, 4, 10, 7, 6, 4, 4, 1, {2, 2}, {1, 1}, {}, "SAME_LOWER"}},
      {"VALID", {1, 4, 10, 7, 6, 3, 2, 1, {1, 1}, {1, 1}, {}, "VALID"}},
      {"big enough for 2 chunks", {1, 32, 40, 40, 64, 3, 3, 1, {1, 1}, {1, 1}, {1, 1, 1, 1}}},
  };
  for (auto [name, c] : cases) {
    for (D xdt : {D::UInt8, D::Int8})
      for (D ydt : {D::UInt8, D::Int8}) {
        c.xdt = xdt;
        c.ydt = ydt;
        c.x_zp = xdt == D::UInt8 ? 131 : -7;
        c.y_zp = ydt == D::UInt8 ? 120 : -128;
        c.per_channel = (c.C + c.M) % 2 == 0;
        c.bias = c.M % 2 == 0;
        check_qconv(c, name + (xdt == D::UInt8 ? " x u8" : " x s8") + (ydt == D::UInt8 ? " y u8" : " y s8"));
      }
  }
}

TEST(FastQuant, QLinearConvZeroPointsBiasScales) {
  QConvCase c{1, 12, 9, 9, 18, 3, 3, 1, {1, 1}, {1, 1}, {1, 1, 1, 1}};
  for (int xz : {0, 1, 128, 255})
    for (bool pc : {false, true})
      for (bool b : {false, true}) {
        c.x_zp = xz;
        c.per_channel = pc;
        c.bias = b;
        check_qconv(c, "x_zp " + std::to_string(xz) + (pc ? " per-channel" : " per-tensor") + (b ? " bias" : ""));
      }
}

TEST(FastQuant, QLinearConvSaturates) {
  QConvCase c{1, 16, 8, 8, 16, 3, 3, 1, {1, 1}, {1, 1}, {1, 1, 1, 1}};
  c.y_scale = 1e-4f;  // nearly every output saturates
  for (DType ydt : {DType::UInt8, DType::Int8}) {
    c.ydt = ydt;
    c.y_zp = ydt == DType::UInt8 ? 3 : 100;
    check_qconv(c, "saturating");
  }
}

// Accumulators beyond 2^24 (oneDNN rounds them through float32; the kernel recomputes them).
TEST(FastQuant, QLinearConvHugeAccumulators) {
  for (DType xdt : {DType::UInt8, DType::Int8})
   for (int zp : {0, 1}) {
    QConvCase c{1, 600, 5, 5, 20, 3, 3, 1, {1, 1}, {1, 1}, {1, 1, 1, 1}};
    c.xdt = xdt;
    c.x_zp = xdt == DType::UInt8 ? zp : -zp;  // oneDNN's zero-point path converts through float32
    c.extreme = true;
    c.y_scale = 0.02f * 0.01f;  // multiplier 0.2 .. 2 (see qconv_model)
    check_qconv(c, std::string("huge acc x ") + (xdt == DType::UInt8 ? "u8" : "s8"));
    c.bias = false;
    c.y_scale = 0.5f;
    check_qconv(c, "huge acc, saturating");
  }
}

TEST(FastQuant, QLinearConvDeclines) {
  QConvCase c{1, 8, 6, 6, 8, 3, 3, 1, {1, 1}, {1, 1}, {1, 1, 1, 1}};
  c.w_zp = 3;  // non-zero weight zero point: the reference handles it
  check_qconv(c, "w_zp != 0", "reference");
  // The reason is reported.
  ir::Model m = qconv_model(c, 1);
  Executor ex(m);
  bool found = false;
  for (const auto& i : ex.implementations())
    if (i.op == "QLinearConv") found = i.why_not_fast.find(have_vnni() ? "w_zero_point" : "VNNI") != std::string::npos;
  EXPECT_TRUE(found);
}

namespace {

ir::Model qmatmul_model(bool gemm, DType adt, DType ydt, int a_zp, int y_zp, Shape a_shape, int64_t N, bool per_col,
                        bool bias, bool ta, bool tb, float alpha, uint32_t seed, int b_zp = 0, float y_scale = 0.f) {
  std::mt19937 rng(seed);
  ir::Model m;
  m.opsets[""] = 13;
  m.opsets["com.microsoft"] = 1;
  auto& g = m.graph;
  const int64_t K = ta ? a_shape[0] : a_shape.back();
  g.initializers["b"] = tb ? q8(DType::Int8, {N, K}, rng, -127, 127) : q8(DType::Int8, {K, N}, rng, -127, 127);
  g.initializers["as"] = Tensor::scalar_f32(0.03f);
  g.initializers["az"] = scalar_q(adt, a_zp);
  std::vector<float> bs(static_cast<size_t>(per_col ? N : 1));
  std::uniform_real_distribution<float> us(0.002f, 0.02f);
  for (auto& s : bs) s = us(rng);
  g.initializers["bs"] = per_col ? f32({N}, bs) : Tensor::scalar_f32(bs[0]);
  g.initializers["bz"] = scalar_q(DType::Int8, b_zp);
  const double sigma = 74.0 * 73.0 * std::sqrt(double(K)) * 0.03 * 0.011;
  g.initializers["ys"] = Tensor::scalar_f32(y_scale > 0 ? y_scale : static_cast<float>(6 * sigma / 256));
  g.initializers["yz"] = scalar_q(ydt, y_zp);
  g.inputs.push_back(test_graph::vi("a", adt, a_shape));
  ir::Node n;
  if (gemm) {
    std::vector<std::string> in{"a", "as", "az", "b", "bs", "bz", bias ? "c" : "", "ys", "yz"};
    if (bias) {
      Tensor c(DType::Int32, {N});
      std::uniform_int_distribution<int32_t> ub(-30000, 30000);
      for (int64_t i = 0; i < N; ++i) c.data<int32_t>()[i] = ub(rng);
      g.initializers["c"] = c;
    }
    n = test_graph::node("QGemm", in, {"y"});
    n.domain = "com.microsoft";
    n.attrs["transA"] = num(ta);
    n.attrs["transB"] = num(tb);
    n.attrs["alpha"] = flt(alpha);
  } else {
    n = test_graph::node("QLinearMatMul", {"a", "as", "az", "b", "bs", "bz", "ys", "yz"}, {"y"});
  }
  g.nodes.push_back(n);
  g.outputs.push_back(test_graph::vi("y", ydt, {}));
  g.outputs.back().has_shape = false;
  return m;
}

}  // namespace

TEST(FastQuant, QLinearMatMulAndQGemm) {
  using D = DType;
  int k = 0;
  for (D adt : {D::UInt8, D::Int8})
    for (D ydt : {D::UInt8, D::Int8})
      for (int shape = 0; shape < 3; ++shape) {
        ++k;
        const Shape a = shape == 0 ? Shape{1, 37} : shape == 1 ? Shape{13, 64} : Shape{2, 3, 5, 29};
        const int64_t N = shape == 0 ? 1000 : shape == 1 ? 17 : 33;
        const int a_zp = adt == D::UInt8 ? 77 * (k % 2) : -9, y_zp = ydt == D::UInt8 ? 128 : -3;
        std::mt19937 rng(k);
        Tensor at = q8(adt, a, rng, adt == D::UInt8 ? 0 : -128, adt == D::UInt8 ? 255 : 127);
        const std::string what = "case " + std::to_string(k);
        expect_identical(qmatmul_model(false, adt, ydt, a_zp, y_zp, a, N, k % 2 == 0, false, false, false, 1.f, k),
                         {{"a", at}}, "onednn_qmatmul", "QLinearMatMul " + what);
        if (a.size() == 2) {
          for (bool ta : {false, true})
            for (bool tb : {false, true}) {
              Shape as = ta ? Shape{a[1], a[0]} : a;
              Tensor at2 = q8(adt, as, rng, adt == D::UInt8 ? 0 : -128, adt == D::UInt8 ? 255 : 127);
              expect_identical(qmatmul_model(true, adt, ydt, a_zp, y_zp, as, N, k % 2 == 1, (k + ta) % 2 == 0, ta, tb,
                                             tb ? 0.75f : 1.f, k),
                               {{"a", at2}}, "onednn_qgemm", "QGemm " + what + (ta ? " transA" : "") + (tb ? " transB" : ""));
            }
        }
      }
}

TEST(FastQuant, QMatMulHugeAccumulatorsAndDeclines) {
  // K = 1200, a = 255, b = +-127: |acc| ~ 3.9e7 > 2^24.
  ir::Model m = qmatmul_model(true, DType::UInt8, DType::UInt8, 0, 128, {3, 1200}, 40, true, true, false, false, 1.f, 5,
                              0, 20.f);
  auto& b = m.graph.initializers["b"];
  for (int64_t i = 0; i < b.numel(); ++i) b.data<int8_t>()[i] = i % 13 == 0 ? 126 : 127;
  Tensor a(DType::UInt8, {3, 1200});
  for (int64_t i = 0; i < a.numel(); ++i) a.data<uint8_t>()[i] = i % 17 == 0 ? 254 : 255;
  // C = -acc(row 0) + small: row 0's acc + C is small, so an accumulator rounded through float32
  // (off by up to 8) would change the output; mult = 0.03 * b_s / y_s is about 1.
  auto& c = m.graph.initializers["c"];
  for (int64_t j = 0; j < 40; ++j) {
    int64_t acc = 0;
    for (int64_t k = 0; k < 1200; ++k) acc += int64_t{a.data<uint8_t>()[k]} * b.data<int8_t>()[k * 40 + j];
    c.data<int32_t>()[j] = static_cast<int32_t>(-acc + (j % 50) - 25);
  }
  m.graph.initializers["ys"] = Tensor::scalar_f32(0.03f * 0.01f);
  expect_identical(m, {{"a", a}}, "onednn_qgemm", "QGemm huge acc");
  // Non-zero b zero point: declined.
  std::mt19937 rng(3);
  Tensor a2 = q8(DType::UInt8, {4, 9}, rng, 0, 255);
  expect_identical(qmatmul_model(false, DType::UInt8, DType::UInt8, 5, 9, {4, 9}, 6, false, false, false, false, 1.f, 2, 4),
                   {{"a", a2}}, "reference", "QLinearMatMul b_zp != 0");
}

TEST(FastQuant, QuantizeDequantizeLinear) {
  // Ties, NaN, +-inf, huge values, denormals, both signs; u8 and s8; an odd length.
  std::vector<float> v;
  const float scale = 0.25f;
  for (int i = -700; i <= 700; ++i) v.push_back(i * 0.125f);  // exact ties at .5 steps after / 0.25
  for (float s : {1e30f, -1e30f, 1e-40f, -1e-40f, 0.f, -0.f}) v.push_back(s);
  v.push_back(std::numeric_limits<float>::infinity());
  v.push_back(-std::numeric_limits<float>::infinity());
  v.push_back(std::nanf(""));
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.f, 40.f);
  for (int i = 0; i < 1001; ++i) v.push_back(nd(rng));
  for (DType dt : {DType::UInt8, DType::Int8})
    for (int zp : {0, 3, -128, 255}) {
      if (dt == DType::Int8 && zp > 127) continue;
      if (dt == DType::UInt8 && zp < 0) continue;
      ir::Model m;
      m.opsets[""] = 13;
      m.graph.initializers["s"] = Tensor::scalar_f32(scale);
      m.graph.initializers["z"] = scalar_q(dt, zp);
      m.graph.inputs.push_back(test_graph::vi("x", {static_cast<int64_t>(v.size())}));
      m.graph.nodes.push_back(test_graph::node("QuantizeLinear", {"x", "s", "z"}, {"q"}));
      m.graph.nodes.push_back(test_graph::node("DequantizeLinear", {"q", "s", "z"}, {"d"}));
      m.graph.outputs.push_back(test_graph::vi("q", dt, {static_cast<int64_t>(v.size())}));
      m.graph.outputs.push_back(test_graph::vi("d", {static_cast<int64_t>(v.size())}));
      expect_identical(m, {{"x", f32({static_cast<int64_t>(v.size())}, v)}}, "fast_quantize",
                       "Q/DQ zp " + std::to_string(zp));
      EXPECT_EQ(test_graph::count_impl(Executor(m), "fast_dequantize"), 1);
      // The scalar fallback (machines without AVX-512) against core/quant.h directly.
      std::vector<uint8_t> out(v.size());
      fastq::quantize(v.data(), static_cast<int64_t>(v.size()), scale, zp, quant::qrange(dt), dt == DType::UInt8,
                      out.data(), true);
      for (size_t i = 0; i < v.size(); ++i) {
        const int32_t want = quant::quantize(v[i], scale, zp, quant::qrange(dt));
        const int32_t got = dt == DType::UInt8 ? int32_t{out[i]} : int32_t{static_cast<int8_t>(out[i])};
        ASSERT_EQ(got, want) << "x=" << v[i];
      }
    }
}

// The vector requantization against core/quant.h on edge values: INT32 extremes, wrapping bias,
// ties, tiny and huge multipliers; the 2^24 flag.
TEST(FastQuant, RequantizeLoop) {
  std::mt19937 rng(4);
  const int n = 16 * 40 + 7;
  std::vector<int32_t> acc(n), bias(n);
  std::vector<float> mult(n);
  std::uniform_int_distribution<int32_t> ua(-3'000'000, 3'000'000);
  std::uniform_real_distribution<float> um(-12.f, 2.f);
  for (int i = 0; i < n; ++i) {
    acc[i] = ua(rng);
    bias[i] = ua(rng);
    mult[i] = std::exp2(um(rng));
  }
  acc[0] = std::numeric_limits<int32_t>::min();
  acc[1] = std::numeric_limits<int32_t>::max();
  bias[1] = 10;  // wraps
  acc[2] = 5, bias[2] = 0, mult[2] = 0.5f;  // tie 2.5 -> 2
  acc[3] = 7, bias[3] = 0, mult[3] = 0.5f;  // tie 3.5 -> 4
  acc[4] = -5, bias[4] = 0, mult[4] = 0.5f;  // tie -2.5 -> -2
  acc[5] = 1 << 24, bias[5] = 0;
  for (bool is_u8 : {true, false})
    for (int32_t zp : {0, 100, -128, 255}) {
      const quant::QRange r = is_u8 ? quant::QRange{0, 255} : quant::QRange{-128, 127};
      if (zp < r.lo || zp > r.hi) continue;
      for (bool scalar : {false, true}) {
        std::vector<uint8_t> out(n);
        // Chunks of several lengths exercise the masked tails.
        bool flag_all = false;
        for (int off = 0; off < n;) {
          const int len = std::min(n - off, 1 + (off * 7) % 37);
          bool want_flag = false;
          for (int i = off; i < off + len; ++i) want_flag |= acc[i] >= (1 << 24) || acc[i] <= -(1 << 24);
          const bool got_flag = fastq::requantize(acc.data() + off, bias.data() + off, mult.data() + off, len, zp, r,
                                                  is_u8, out.data() + off, scalar);
          EXPECT_EQ(got_flag, want_flag) << "chunk at " << off;
          flag_all |= got_flag;
          off += len;
        }
        EXPECT_TRUE(flag_all);
        for (int i = 0; i < n; ++i) {
          const int32_t want = quant::requantize(acc[i], bias[i], mult[i], zp, r);
          const int32_t got = is_u8 ? int32_t{out[i]} : int32_t{static_cast<int8_t>(out[i])};
          ASSERT_EQ(got, want) << "i=" << i << " acc=" << acc[i] << " scalar=" << scalar;
        }
      }
    }
}

// MaxPool in int8 models: on uint8/int8 tensors, and on float32 right after a DequantizeLinear;
// a float MaxPool not fed by a DQ is not taken.
TEST(FastQuant, MaxPool) {
  struct P {
    Shape x;
    std::vector<int64_t> k, s, pads;
    std::string auto_pad = "NOTSET";
  };
  const std::vector<P> cases = {{{1, 64, 112, 112}, {3, 3}, {2, 2}, {1, 1, 1, 1}},
                                {{2, 5, 9, 7}, {2, 3}, {1, 2}, {0, 1, 1, 0}},
                                {{1, 3, 10, 11}, {3, 3}, {2, 2}, {}, "SAME_UPPER"},
                                {{1, 4, 8, 8}, {2, 2}, {2, 2}, {0, 0, 0, 0}}};
  int k = 0;
  for (const auto& c : cases)
    for (DType dt : {DType::UInt8, DType::Int8}) {
      std::mt19937 rng(++k);
      Tensor x = q8(dt, c.x, rng, dt == DType::UInt8 ? 0 : -128, dt == DType::UInt8 ? 255 : 127);
      for (bool via_dq : {false, true}) {
        ir::Model m;
        m.opsets[""] = 13;
        m.graph.inputs.push_back(test_graph::vi("x", dt, c.x));
        std::string pin = "x";
        if (via_dq) {
          m.graph.initializers["s"] = Tensor::scalar_f32(0.037f);
          m.graph.initializers["z"] = scalar_q(dt, dt == DType::UInt8 ? 128 : -5);
          m.graph.nodes.push_back(test_graph::node("DequantizeLinear", {"x", "s", "z"}, {"xf"}));
          pin = "xf";
        }
        auto n = test_graph::node("MaxPool", {pin}, {"y"});
        n.attrs["kernel_shape"] = ints(c.k);
        n.attrs["strides"] = ints(c.s);
        if (c.auto_pad == "NOTSET") n.attrs["pads"] = ints(c.pads);
        else n.attrs["auto_pad"] = str(c.auto_pad);
        m.graph.nodes.push_back(n);
        m.graph.outputs.push_back(test_graph::vi("y", via_dq ? DType::Float32 : dt, {}));
        m.graph.outputs.back().has_shape = false;
        expect_identical(m, {{"x", x}}, "onednn_qmaxpool", "MaxPool case " + std::to_string(k) + (via_dq ? " float after DQ" : ""));
      }
    }
  // A float MaxPool fed by a graph input: not taken by this kernel.
  ir::Model m;
  m.opsets[""] = 13;
  m.graph.inputs.push_back(test_graph::vi("x", {1, 2, 6, 6}));
  auto n = test_graph::node("MaxPool", {"x"}, {"y"});
  n.attrs["kernel_shape"] = ints({2, 2});
  m.graph.nodes.push_back(n);
  m.graph.outputs.push_back(test_graph::vi("y", {1, 2, 5, 5}));
  Tensor x(DType::Float32, {1, 2, 6, 6});
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>((i * 37) % 11) - 5.f;
  Executor ex(m);
  ex.run({{"x", x}});  // runs (reference)
  for (const auto& i : ex.implementations()) EXPECT_NE(i.impl, "onednn_qmaxpool");
}

// The pass qconv_layout_nhwc on a mobilenet/resnet-like int8 graph (as fuse_qdq leaves a quantized
// model): float input -> Q -> QLinearConv -> QLinearConv (depthwise) -> DQ -> MaxPool -> Q ->
// QLinearConv, a residual DQ + DQ -> Add -> Relu -> Q, an intermediate value that is also a graph
// output, and a GlobalAveragePool at the end. Fast path (NHWC runs) vs reference: byte-identical.
TEST(FastQuant, LayoutPassChain) {
  std::mt19937 rng(11);
  ir::Model m;
  m.opsets[""] = 13;
  auto& g = m.graph;
  auto scal = [&](const std::string& n, float v) { g.initializers[n] = Tensor::scalar_f32(v); };
  auto zp = [&](const std::string& n, int v) { g.initializers[n] = scalar_q(DType::Int8, v); };
  scal("s_in", 0.02f);
  zp("z_in", 3);
  int k = 0;
  // A QLinearConv x -> y (int8 in/out), weights per channel, bias.
  auto qconv = [&](const std::string& x, const std::string& y, int64_t C, int64_t M, int64_t ks, int64_t stride,
                   int64_t group, const std::string& xs, const std::string& xz, float ys) {
    const std::string p = "c" + std::to_string(++k);
    g.initializers[p + "w"] = q8(DType::Int8, {M, C / group, ks, ks}, rng, -127, 127);
    std::vector<float> ws(static_cast<size_t>(M));
    for (auto& s : ws) s = 0.002f + 0.001f * static_cast<float>(rng() % 10);
    g.initializers[p + "ws"] = f32({M}, ws);
    g.initializers[p + "wz"] = Tensor(DType::Int8, {M});
    scal(p + "ys", ys);
    zp(p + "yz", -10);
    Tensor b(DType::Int32, {M});
    for (int64_t i = 0; i < M; ++i) b.data<int32_t>()[i] = static_cast<int32_t>(rng() % 2001) - 1000;
    g.initializers[p + "b"] = b;
    auto n = test_graph::node("QLinearConv", {x, xs, xz, p + "w", p + "ws", p + "wz", p + "ys", p + "yz", p + "b"}, {y});
    n.attrs["strides"] = ints({stride, stride});
    n.attrs["pads"] = ints({ks / 2, ks / 2, ks / 2, ks / 2});
    n.attrs["group"] = num(group);
    g.nodes.push_back(n);
    return std::make_pair(p + "ys", p + "yz");
  };
  g.inputs.push_back(test_graph::vi("x", {1, 3, 20, 20}));
  g.nodes.push_back(test_graph::node("QuantizeLinear", {"x", "s_in", "z_in"}, {"xq"}));
  auto [s1, z1] = qconv("xq", "y1", 3, 16, 3, 2, 1, "s_in", "z_in", 0.05f);
  auto [s2, z2] = qconv("y1", "y2", 16, 16, 3, 1, 16, s1, z1, 0.05f);
  g.nodes.push_back(test_graph::node("DequantizeLinear", {"y2", s2, z2}, {"d2"}));
  auto mp = test_graph::node("MaxPool", {"d2"}, {"p2"});
  mp.attrs["kernel_shape"] = ints({3, 3});
  mp.attrs["strides"] = ints({1, 1});
  mp.attrs["pads"] = ints({1, 1, 1, 1});
  g.nodes.push_back(mp);
  g.nodes.push_back(test_graph::node("QuantizeLinear", {"p2", s2, z2}, {"q2"}));
  auto [s3, z3] = qconv("q2", "y3", 16, 16, 1, 1, 1, s2, z2, 0.05f);
  // Residual: DQ(y3) + DQ(q2) -> Relu -> Q.
  g.nodes.push_back(test_graph::node("DequantizeLinear", {"y3", s3, z3}, {"d3"}));
  g.nodes.push_back(test_graph::node("DequantizeLinear", {"q2", s2, z2}, {"d2b"}));
  g.nodes.push_back(test_graph::node("Add", {"d3", "d2b"}, {"sum"}));
  g.nodes.push_back(test_graph::node("Relu", {"sum"}, {"r"}));
  scal("s_r", 0.06f);
  zp("z_r", -128);
  g.nodes.push_back(test_graph::node("QuantizeLinear", {"r", "s_r", "z_r"}, {"qr"}));
  auto [s4, z4] = qconv("qr", "y4", 16, 24, 3, 2, 1, "s_r", "z_r", 0.08f);
  g.nodes.push_back(test_graph::node("DequantizeLinear", {"y4", s4, z4}, {"d4"}));
  g.nodes.push_back(test_graph::node("GlobalAveragePool", {"d4"}, {"gap"}));
  g.outputs.push_back(test_graph::vi("gap", {1, 24, 1, 1}));
  g.outputs.push_back(test_graph::vi("y3", DType::Int8, {1, 16, 10, 10}));  // intermediate, NCHW
  std::normal_distribution<float> nd(0.f, 1.f);
  Tensor x(DType::Float32, {1, 3, 20, 20});
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = nd(rng);
  expect_identical(m, {{"x", x}}, "onednn_qconv", "int8 chain", 4);
  Executor ex(m);
  int transposes = 0, pass_rewrites = 0, maxpool = 0;
  for (const auto& i : ex.implementations()) {
    transposes += i.op == "Transpose";
    maxpool += i.impl == "onednn_qmaxpool";
  }
  for (const auto& [name, n] : ex.passes_applied()) pass_rewrites += name == "qconv_layout_nhwc" ? n : 0;
  if (have_vnni()) {
    EXPECT_GT(pass_rewrites, 10);
    EXPECT_EQ(maxpool, 1);
    // In: the quantized input; out: y3 (a graph output) and DQ(y4) before the pooling.
    EXPECT_EQ(transposes, 3);
  } else {
    EXPECT_EQ(pass_rewrites, 0);
  }
}
