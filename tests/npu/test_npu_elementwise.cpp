// Bit-exact tests of the NPU functional simulator's vector unit: elementwise ops (with numpy
// broadcasting), BatchNormalization, and the LUT activations.
//
// The reference is written here, independently of the simulator: inputs rounded to FP16
// (round_f16), the op evaluated in fp32, the result rounded to FP16. Every element must match bit
// for bit (NaN matches NaN). The same inputs also go through the CPU reference kernel
// (cpu::registry()) on FP16-rounded float32 inputs, its output rounded to FP16: for these ops that
// is the same arithmetic, so it must match bit for bit too.
// LUT activations (Sigmoid, Tanh, Erf, Exp, Softmax) are the engine's approximation: they must equal
// lut_eval() on the FP16-rounded input, rounded (exactly), and stay within a stated error of the
// exact function (the measured maximum is printed).
#include <algorithm>
#include <cmath>
#include <functional>

#include "npu/sim/lut.h"
#include "npu_test_util.h"

using namespace npt;

namespace {

Shape broadcast(const Shape& a, const Shape& b) {
  Shape o(std::max(a.size(), b.size()), 1);
  for (size_t i = 0; i < o.size(); ++i) {
    int64_t da = i < o.size() - a.size() ? 1 : a[i - (o.size() - a.size())];
    int64_t db = i < o.size() - b.size() ? 1 : b[i - (o.size() - b.size())];
    o[i] = std::max(da, db);
  }
  return o;
}

// x (shape xs) broadcast to `out`, element by element (numpy rules, written out plainly).
std::vector<float> expand(const std::vector<float>& x, const Shape& xs, const Shape& out) {
  const int64_t n = numel(out);
  std::vector<float> r(static_cast<size_t>(n));
  const size_t off = out.size() - xs.size();
  for (int64_t e = 0; e < n; ++e) {
    int64_t rem = e, src = 0, stride = 1;
    for (int64_t d = static_cast<int64_t>(out.size()) - 1; d >= 0; --d) {
      int64_t idx = rem % out[d];
      rem /= out[d];
      if (d >= static_cast<int64_t>(off)) {
        int64_t xd = xs[d - off];
        src += (xd == 1 ? 0 : idx) * stride;
        stride *= xd;
      }
    }
    r[e] = x[src];
  }
  return r;
}

// A random output shape (rank 1-4, small dims, now and then a long one) and operand shapes that
// broadcast to it: dims dropped from the front or set to 1 at random.
Shape random_shape(std::mt19937_64& rng) {
  std::uniform_int_distribution<int> rank(1, 4), dim(1, 9), big(0, 9);
  Shape s(static_cast<size_t>(rank(rng)));
  for (auto& d : s) d = dim(rng);
  if (big(rng) == 0) s[rng() % s.size()] = 100 + static_cast<int64_t>(rng() % 400);
  return s;
}
Shape operand_shape(const Shape& out, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> coin(0, 3);
  Shape s = out;
  size_t drop = coin(rng) == 0 ? rng() % (out.size() + 1) : 0;  // may become rank 0 (a scalar)
  s.erase(s.begin(), s.begin() + static_cast<int64_t>(drop));
  for (auto& d : s) if (coin(rng) == 0) d = 1;
  return s;
}

float ref_binary(const std::string& op, float a, float b) {
  if (op == "Add") return a + b;
  if (op == "Sub") return a - b;
  if (op == "Mul") return a * b;
  if (op == "Div") return a / b;
  // ONNX Max/Min: the larger/smaller value (no NaN inputs are generated for these).
  if (op == "Max") return a < b ? b : a;
  if (op == "Min") return b < a ? b : a;
  throw Error("op " + op);
}

struct Counter {
  int cases = 0, cpu_cases = 0;
};

// One elementwise graph: node `op` over `ins` (names "x0", "x1", ...; `const_mask` bit i makes
// input i an initializer), output "y". Checks NPU == reference, and CPU kernel == reference.
void check_elementwise(const std::string& op, int64_t opset, const std::vector<Shape>& shapes,
                       const std::vector<std::vector<float>>& data, const std::map<std::string, ir::Attribute>& attrs,
                       const std::vector<float>& want, const Shape& out_shape, unsigned const_mask,
                       const std::vector<std::pair<std::string, Tensor>>& extra_consts = {},
                       const npu::HardwareConfig* hw_in = nullptr, int max_cpu_ulps = 0,
                       bool cpu_zero_sign_free = false) {
  Net net(opset);
  std::vector<std::string> names;
  std::map<std::string, Tensor> feeds;
  for (size_t i = 0; i < shapes.size(); ++i) {
    std::string n = fmt::format("x{}", i);
    names.push_back(n);
    Tensor t = tensor(shapes[i], data[i]);
    if (const_mask >> i & 1u) net.init(n, t);
    else { net.input(n, shapes[i]); feeds[n] = t; }
  }
  for (const auto& [n, t] : extra_consts) { names.push_back(n); if (!n.empty()) net.init(n, t); }
  net.output("y", out_shape);
  ir::Node& nd = net.node(op, names, {"y"});
  nd.attrs = attrs;
  static const npu::HardwareConfig m1 = preset("ane_m1");
  const npu::HardwareConfig& hw = hw_in ? *hw_in : m1;
  auto out = run_npu(net.m, hw, feeds);
  const Tensor& y = out.at("y");
  ASSERT_EQ(y.shape(), out_shape);
  EXPECT_TRUE(bit_equal(values(y), want, "NPU vs fp32 reference"));

  // The CPU reference kernel on the FP16-rounded inputs, output rounded to FP16.
  std::vector<Tensor> rin;
  for (size_t i = 0; i < shapes.size(); ++i) rin.push_back(tensor(shapes[i], rounded(data[i])));
  std::vector<const Tensor*> ptrs;
  for (auto& t : rin) ptrs.push_back(&t);
  std::vector<Tensor> extra;
  extra.reserve(extra_consts.size());
  for (const auto& [n, t] : extra_consts) extra.push_back(t);
  for (size_t i = 0; i < extra_consts.size(); ++i) ptrs.push_back(extra_consts[i].first.empty() ? nullptr : &extra[i]);
  auto cpu_out = run_cpu_kernel(nd, ptrs, opset);
  std::vector<float> cpu = rounded(values(cpu_out.at(0)));
  if (cpu_zero_sign_free)  // -0 and +0 are both max(x, 0) for x = -0; the CPU kernel keeps the sign
    for (size_t i = 0; i < cpu.size(); ++i)
      if (cpu[i] == 0.f && want[i] == 0.f) cpu[i] = want[i];
  if (max_cpu_ulps == 0) {
    EXPECT_TRUE(bit_equal(cpu, want, "CPU kernel (fp16-rounded) vs fp32 reference"));
  } else {
    int64_t worst = 0;
    for (size_t i = 0; i < cpu.size(); ++i) worst = std::max(worst, f16_ulps(cpu[i], want[i]));
    EXPECT_LE(worst, max_cpu_ulps) << "CPU kernel vs NPU reference";
  }
}

}  // namespace

TEST(NpuElementwise, BinaryOpsWithBroadcastingAreBitExact) {
  std::mt19937_64 rng(20240611);
  int cases = 0;
  for (const std::string op : {"Add", "Sub", "Mul", "Div", "Max", "Min"}) {
    for (int c = 0; c < 60; ++c) {
      const bool minmax = op == "Max" || op == "Min";
      const int nin = minmax && c % 4 == 3 ? 3 : 2;  // Max/Min are variadic
      Shape out0 = random_shape(rng);
      std::vector<Shape> shapes;
      for (int i = 0; i < nin; ++i) shapes.push_back(operand_shape(out0, rng));
      if (c % 10 == 0) shapes[0] = out0;  // at least one full-size operand now and then
      Shape out = shapes[0];
      for (int i = 1; i < nin; ++i) out = broadcast(out, shapes[i]);
      std::vector<std::vector<float>> data;
      for (int i = 0; i < nin; ++i) data.push_back(random_values(numel(shapes[i]), rng));
      // Reference: fold left over the inputs in fp32 on FP16-rounded values, round the result.
      std::vector<float> acc = expand(rounded(data[0]), shapes[0], out);
      for (int i = 1; i < nin; ++i) {
        auto b = expand(rounded(data[i]), shapes[i], out);
        for (size_t e = 0; e < acc.size(); ++e) acc[e] = ref_binary(op, acc[e], b[e]);
      }
      for (auto& v : acc) v = round_f16(v);
      std::string desc = fmt::format("{} case {}:", op, c);
      for (auto& s : shapes) desc += " " + shape_str(s);
      SCOPED_TRACE(desc);
      unsigned const_mask = (c % 5 == 4) ? 2u : 0u;  // second operand as a constant now and then
      check_elementwise(op, 17, shapes, data, {}, acc, out, const_mask);
      ++cases;
    }
  }
  std::printf("binary elementwise: %d random cases, NPU and CPU kernel bit-identical to the fp32 reference\n", cases);
}

namespace {
struct Unary {
  std::string op;
  int64_t opset;
  bool positive;  // input domain
  std::function<std::map<std::string, ir::Attribute>(std::mt19937_64&)> attrs;
  std::function<float(float, const std::map<std::string, ir::Attribute>&)> fn;  // fp32 reference
};
float fattr(const std::map<std::string, ir::Attribute>& a, const std::string& n, float d) {
  auto it = a.find(n);
  return it == a.end() ? d : it->second.f;
}
}  // namespace

TEST(NpuElementwise, UnaryOpsAreBitExact) {
  auto none = [](std::mt19937_64&) { return std::map<std::string, ir::Attribute>{}; };
  std::uniform_real_distribution<float> u(0.f, 1.f);
  const std::vector<Unary> ops = {
      {"Relu", 14, false, none, [](float x, auto&) { return x > 0.f ? x : 0.f; }},
      {"LeakyRelu", 16, false,
       [&](std::mt19937_64& r) {
         std::map<std::string, ir::Attribute> a;
         if (r() % 2) a["alpha"] = attr_f(u(r));  // default 0.01 otherwise
         return a;
       },
       [](float x, auto& a) { return x < 0.f ? fattr(a, "alpha", 0.01f) * x : x; }},
      {"Neg", 13, false, none, [](float x, auto&) { return -x; }},
      {"Abs", 13, false, none, [](float x, auto&) { return std::fabs(x); }},
      {"Sqrt", 13, true, none, [](float x, auto&) { return std::sqrt(x); }},
      {"Sqrt", 13, false, none, [](float x, auto&) { return std::sqrt(x); }},  // negatives give NaN
      {"Reciprocal", 13, false, none, [](float x, auto&) { return 1.f / x; }},
      {"HardSigmoid", 6, false,
       [&](std::mt19937_64& r) {
         std::map<std::string, ir::Attribute> a;
         if (r() % 2) { a["alpha"] = attr_f(u(r)); a["beta"] = attr_f(u(r)); }
         return a;
       },
       [](float x, auto& a) {
         return std::max(0.f, std::min(1.f, fattr(a, "alpha", 0.2f) * x + fattr(a, "beta", 0.5f)));
       }},
      // ONNX: HardSwish(x) = x * max(0, min(1, alpha*x + beta)), alpha = 1/6, beta = 0.5.
      {"HardSwish", 14, false, none,
       [](float x, auto&) { return x * std::max(0.f, std::min(1.f, (1.f / 6.f) * x + 0.5f)); }},
  };
  std::mt19937_64 rng(77);
  int cases = 0;
  for (const auto& U : ops) {
    for (int c = 0; c < 40; ++c) {
      Shape s = random_shape(rng);
      auto x = random_values(numel(s), rng, 4.f, U.positive);
      auto attrs = U.attrs(rng);
      std::vector<float> want;
      for (float v : rounded(x)) want.push_back(round_f16(U.fn(v, attrs)));
      SCOPED_TRACE(fmt::format("{} case {}: {}", U.op, c, shape_str(s)));
      check_elementwise(U.op, U.opset, {s}, {x}, attrs, want, s, 0, {}, nullptr, 0, U.op == "Relu");
      ++cases;
    }
  }
  std::printf("unary elementwise: %d random cases bit-identical (NPU and CPU kernel)\n", cases);
}

TEST(NpuElementwise, ClipIsBitExact) {
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> u(-3.f, 3.f);
  for (int c = 0; c < 40; ++c) {
    Shape s = random_shape(rng);
    auto x = random_values(numel(s), rng);
    // Bounds: both, only min, only max (opset 13 inputs; the NPU rounds them to FP16 as it does
    // every operand), or the opset-6 attributes.
    float lo = std::min(u(rng), u(rng)), hi = lo + std::fabs(u(rng));
    int mode = c % 4;
    float rlo = mode == 2 ? -INFINITY : round_f16(lo), rhi = mode == 1 ? INFINITY : round_f16(hi);
    std::vector<float> want;
    for (float v : rounded(x)) want.push_back(round_f16(std::min(std::max(v, rlo), rhi)));
    SCOPED_TRACE(fmt::format("Clip case {} mode {}: {} [{}, {}]", c, mode, shape_str(s), lo, hi));
    if (mode == 3) {
      std::map<std::string, ir::Attribute> a{{"min", attr_f(round_f16(lo))}, {"max", attr_f(round_f16(hi))}};
      check_elementwise("Clip", 6, {s}, {x}, a, want, s, 0);
    } else {
      std::vector<std::pair<std::string, Tensor>> b;
      b.push_back({mode == 2 ? "" : "lo", tensor({}, {round_f16(lo)})});
      if (mode != 1) b.push_back({"hi", tensor({}, {round_f16(hi)})});
      check_elementwise("Clip", 13, {s}, {x}, {}, want, s, 0, b);
    }
  }
}

TEST(NpuElementwise, BatchNormalizationIsBitExact) {
  // The engine folds BN to y = x*a + b per channel with a = scale/sqrt(var+eps), b = bias - mean*a,
  // computed in fp32 from the FP16-rounded parameters (every operand is stored as FP16).
  std::mt19937_64 rng(99);
  std::uniform_int_distribution<int> rank(2, 4), dim(1, 7);
  std::uniform_real_distribution<float> u(-2.f, 2.f), pos(0.05f, 3.f);
  for (int c = 0; c < 50; ++c) {
    Shape s(static_cast<size_t>(rank(rng)));
    for (auto& d : s) d = dim(rng);
    if (c % 7 == 0) s[0] = 2, s[1] = 40;
    const int64_t C = s[1], inner = numel(s) / (s[0] * C);
    auto x = random_values(numel(s), rng);
    std::vector<float> sc(C), bi(C), mean(C), var(C);
    for (int64_t i = 0; i < C; ++i) { sc[i] = u(rng); bi[i] = u(rng); mean[i] = u(rng); var[i] = pos(rng); }
    float eps = c % 2 ? 1e-5f : 1e-3f * (1 + c % 5);
    auto rx = rounded(x), rs = rounded(sc), rb = rounded(bi), rm = rounded(mean), rv = rounded(var);
    std::vector<float> want(rx.size());
    for (int64_t e = 0; e < numel(s); ++e) {
      int64_t ch = (e / inner) % C;
      float a = rs[ch] / std::sqrt(rv[ch] + eps);
      float b = rb[ch] - rm[ch] * a;
      want[e] = round_f16(rx[e] * a + b);
    }
    std::map<std::string, ir::Attribute> attrs{{"epsilon", attr_f(eps)}};
    std::vector<std::pair<std::string, Tensor>> params = {{"scale", tensor({C}, rs)}, {"bias", tensor({C}, rb)},
                                                          {"mean", tensor({C}, rm)}, {"var", tensor({C}, rv)}};
    SCOPED_TRACE(fmt::format("BatchNormalization case {}: {}", c, shape_str(s)));
    // The CPU kernel computes (x - mean) / sqrt(var + eps) * scale + bias: a different rounding
    // sequence, so it may differ from the folded form by an FP16 ulp or two (measured below).
    check_elementwise("BatchNormalization", 15, {s}, {x}, attrs, want, s, 0, params, nullptr, 4);
  }
}

// One large elementwise layer on presets whose tiling and core split differ: identical values.
TEST(NpuElementwise, ValuesDoNotDependOnPresetOrTiling) {
  std::mt19937_64 rng(3);
  Shape a{3, 129, 301}, b{129, 1};
  auto x0 = random_values(numel(a), rng), x1 = random_values(numel(b), rng);
  auto ea = rounded(x0), eb = expand(rounded(x1), b, a);
  std::vector<float> want(ea.size());
  for (size_t i = 0; i < want.size(); ++i) want[i] = round_f16(ea[i] * eb[i]);
  npu::HardwareConfig tiny = preset("ane_m1");
  tiny.sram.bytes = 8192;  // many small tiles
  tiny.cores = 3;
  for (const auto* hwn : {"ane_m1", "ane_a12", "systolic_32x32", "tiny"}) {
    npu::HardwareConfig hw = std::string(hwn) == "tiny" ? tiny : preset(hwn);
    SCOPED_TRACE(hwn);
    check_elementwise("Mul", 17, {a, b}, {x0, x1}, {}, want, a, 0, {}, &hw);
  }
}

// ---- LUT activations ----------------------------------------------------------------------

namespace {
double exact(const std::string& fn, double x) {
  if (fn == "sigmoid") return 1.0 / (1.0 + std::exp(-x));
  if (fn == "tanh") return std::tanh(x);
  if (fn == "erf") return std::erf(x);
  return std::exp(x);
}
}  // namespace

// Every one of the 65536 FP16 inputs through Sigmoid/Tanh/Erf/Exp on the NPU: exactly
// round_f16(lut_eval(fn, x)); and within the stated tolerance of the exact function.
TEST(NpuLut, ActivationsEqualLutAndStayCloseToExact) {
  std::vector<float> all;
  for (uint32_t h = 0; h < 65536; ++h) all.push_back(f16_bits_to_f32(static_cast<uint16_t>(h)));
  const Shape s{256, 256};
  struct Tol { std::string op, fn; double abs_tol, rel_tol; };
  // Tolerances (absolute for the bounded functions over all inputs, relative for exp where its
  // result is a normal FP16 number): the LUT's linear interpolation error (256 segments) plus the
  // rounding of its FP16 samples and of the result. Measured maxima are printed below.
  const std::vector<Tol> tols = {{"Sigmoid", "sigmoid", 1.5e-3, 0},
                                 {"Tanh", "tanh", 2e-3, 0},
                                 {"Erf", "erf", 2e-3, 0},
                                 {"Exp", "exp", 0, 4e-3}};
  for (const auto& t : tols) {
    Net net(17);
    net.input("x", s);
    net.output("y", s);
    net.node(t.op, {"x"}, {"y"});
    auto out = run_npu(net.m, preset("ane_m1"), {{"x", tensor(s, all)}});
    auto y = values(out.at("y"));
    std::vector<float> want;
    for (float v : all) want.push_back(round_f16(npu::lut_eval(t.fn, v)));
    EXPECT_TRUE(bit_equal(y, want, t.op + " vs round_f16(lut_eval)"));
    double worst = 0, worst_x = 0;
    for (size_t i = 0; i < all.size(); ++i) {
      float x = all[i];
      if (!std::isfinite(x)) continue;
      double e = exact(t.fn, x), err;
      if (t.fn == "exp") {
        if (e < 6.2e-5 || e > 65504) continue;  // FP16 subnormal or overflow: relative error meaningless
        err = std::fabs(y[i] - e) / e;
      } else {
        err = std::fabs(y[i] - e);
      }
      if (err > worst) { worst = err; worst_x = x; }
    }
    const double tol = t.fn == "exp" ? t.rel_tol : t.abs_tol;
    std::printf("LUT %-8s max %s error over all FP16 inputs: %.3g (at x = %g), tolerance %.3g\n", t.op.c_str(),
                t.fn == "exp" ? "relative" : "absolute", worst, worst_x, tol);
    EXPECT_LE(worst, tol) << t.op << " at x = " << worst_x;
    // Saturation and NaN.
    EXPECT_TRUE(std::isnan(y[0x7E00]));  // a quiet NaN input stays NaN
  }
}

TEST(NpuLut, SoftmaxEqualsLutReferenceAndIsCloseToExact) {
  std::mt19937_64 rng(11);
  double worst = 0;
  for (int c = 0; c < 40; ++c) {
    Shape s = random_shape(rng);
    const int64_t r = static_cast<int64_t>(s.size());
    int64_t axis = static_cast<int64_t>(rng() % s.size());
    if (rng() % 2) axis -= r;  // negative axes too
    auto x = random_values(numel(s), rng, 6.f, false, false);
    auto rx = rounded(x);
    // opset 13: softmax along one axis. Reference: m = max, e_i = round(lut_exp(x_i - m)),
    // sum in fp32 in ascending i, y_i = round(e_i / sum).
    const int64_t a = axis < 0 ? axis + r : axis;
    int64_t outer = 1, len = s[a], inner = 1;
    for (int64_t d = 0; d < a; ++d) outer *= s[d];
    for (int64_t d = a + 1; d < r; ++d) inner *= s[d];
    std::vector<float> want(rx.size());
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t in = 0; in < inner; ++in) {
        auto at = [&](int64_t i) { return (o * len + i) * inner + in; };
        float mx = -INFINITY;
        for (int64_t i = 0; i < len; ++i) mx = std::max(mx, rx[at(i)]);
        float sum = 0;
        std::vector<float> e(len);
        double esum = 0;
        for (int64_t i = 0; i < len; ++i) { e[i] = round_f16(npu::lut_eval("exp", rx[at(i)] - mx)); sum += e[i]; }
        for (int64_t i = 0; i < len; ++i) esum += std::exp(static_cast<double>(rx[at(i)]) - mx);
        for (int64_t i = 0; i < len; ++i) {
          want[at(i)] = round_f16(e[i] / sum);
          worst = std::max(worst, std::fabs(want[at(i)] - std::exp(static_cast<double>(rx[at(i)]) - mx) / esum));
        }
      }
    Net net(13);
    net.input("x", s);
    net.output("y", s);
    net.node("Softmax", {"x"}, {"y"}).attrs["axis"] = attr_i(axis);
    SCOPED_TRACE(fmt::format("Softmax case {}: {} axis {}", c, shape_str(s), axis));
    auto out = run_npu(net.m, preset("ane_m1"), {{"x", tensor(s, x)}});
    EXPECT_TRUE(bit_equal(values(out.at("y")), want, "Softmax vs LUT reference"));
  }
  std::printf("Softmax: max absolute error vs exact softmax (of the FP16 inputs): %.3g (tolerance 2e-3)\n", worst);
  EXPECT_LE(worst, 2e-3);
}
