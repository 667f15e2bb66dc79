#include "npu/sim/lut.h"

#include <array>
#include <cmath>
#include <map>
#include <mutex>

#include "core/half.h"
#include "opennpu/errors.h"

namespace opennpu::npu {

namespace {
struct Table {
  LutSpec spec;
  std::array<float, kLutSegments + 1> y;
};

double ref_fn(const std::string& fn, double x) {
  if (fn == "sigmoid") return 1.0 / (1.0 + std::exp(-x));
  if (fn == "tanh") return std::tanh(x);
  if (fn == "erf") return std::erf(x);
  if (fn == "exp") return std::exp(x);
  if (fn == "gelu") return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
  throw Error("no LUT model for activation '" + fn + "'");
}

const std::map<std::string, LutSpec>& specs() {
  // Ranges: where the function still changes at FP16 precision. exp saturates to +inf above
  // ln(65504) = 11.09 and to 0 below -17 (smallest FP16 subnormal is 6e-8).
  static const std::map<std::string, LutSpec> s = {
      {"sigmoid", {-12.f, 12.f, 0.f, 1.f}},
      {"tanh", {-6.f, 6.f, -1.f, 1.f}},
      {"erf", {-4.f, 4.f, -1.f, 1.f}},
      {"exp", {-17.f, 11.09375f, 0.f, INFINITY}},
      {"gelu", {-6.f, 6.f, 0.f, NAN}},
  };
  return s;
}

const Table& table(const std::string& fn) {
  static std::mutex mu;
  static std::map<std::string, Table> tables;
  std::lock_guard<std::mutex> lk(mu);
  auto it = tables.find(fn);
  if (it != tables.end()) return it->second;
  auto sit = specs().find(fn);
  if (sit == specs().end()) throw Error("no LUT model for activation '" + fn + "'");
  Table t;
  t.spec = sit->second;
  for (int i = 0; i <= kLutSegments; ++i) {
    double x = t.spec.lo + (static_cast<double>(t.spec.hi) - t.spec.lo) * i / kLutSegments;
    // The table stores FP16 samples. A finite sample that rounds past the FP16 range (exp at
    // hi = 11.09375 is 65535.9, which rounds to inf) saturates to the largest finite FP16 value:
    // an inf endpoint would make the whole last segment inf, although exp(x) < 65504 there.
    float y = round_f16(static_cast<float>(ref_fn(fn, x)));
    if (std::isinf(y)) y = std::copysign(65504.f, y);
    t.y[i] = y;
  }
  return tables.emplace(fn, t).first->second;
}
}  // namespace

const LutSpec& lut_spec(const std::string& fn) { return table(fn).spec; }

float lut_eval(const std::string& fn, float x) {
  const Table& t = table(fn);
  if (std::isnan(x)) return x;
  if (x <= t.spec.lo) return t.spec.below;
  if (x >= t.spec.hi) return std::isnan(t.spec.above) ? x : t.spec.above;
  float pos = (x - t.spec.lo) * (static_cast<float>(kLutSegments) / (t.spec.hi - t.spec.lo));
  int i = static_cast<int>(pos);
  if (i >= kLutSegments) i = kLutSegments - 1;
  float f = pos - static_cast<float>(i);
  return t.y[i] + (t.y[i + 1] - t.y[i]) * f;
}

}  // namespace opennpu::npu
