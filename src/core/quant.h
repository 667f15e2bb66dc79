// core/quant.h — the exact scalar arithmetic of 8-bit linear quantization, shared by the CPU
// reference kernels (cpu/kernels/quant.cpp, the oracle) and the NPU simulator (npu/sim), which
// must agree bit for bit and may not depend on each other.
//
//   round_half_even(v)   v rounded to the nearest integer, ties to the even one, computed with
//                        floor() and an exact subtraction (not nearbyint, whose result would
//                        depend on the current rounding mode).
//   saturate(q)          q clamped to [qmin, qmax] of the output type (uint8 [0,255], int8
//                        [-128,127]); +-inf saturate to the bounds. NaN has no quantized value;
//                        we define it to map to the zero point (the code for real 0).
//   quantize(x)          saturate(round_half_even(x / scale) + zero_point), the division done in
//                        float32 (x / scale, not x * (1/scale), as ONNX writes it).
//   dequantize(q)        float32(q - zero_point) * scale, the subtraction in int32 (exact).
//   requantize(acc)      multiplier = float32(float32(s_a * s_b) / s_y);
//                        y = saturate(round_half_even(float32(acc + bias) * multiplier) + y_zp),
//                        acc + bias in int32 wrapping modulo 2^32 (as a hardware accumulator does).
//
// Every function is a single float32 operation per step with no multiply-add pair the compiler
// could contract into an FMA (quantize_value's argument is evaluated by the caller; both users
// compile without FMA or with -ffp-contract=off), so results do not depend on the target ISA.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "opennpu/tensor.h"

namespace opennpu::quant {

inline float round_half_even(float v) {
  if (!std::isfinite(v)) return v;
  float r = std::floor(v);
  float d = v - r;  // exact: v and floor(v) are within 1 of each other with the same exponent range
  if (d > 0.5f || (d == 0.5f && std::fmod(r, 2.0f) != 0.0f)) r += 1.0f;
  return r;
}

// Representable range of an 8-bit quantized type.
struct QRange {
  int32_t lo, hi;
};
inline QRange qrange(DType t) { return t == DType::Int8 ? QRange{-128, 127} : QRange{0, 255}; }

// saturate(round_half_even(v) + zp) into [r.lo, r.hi]; NaN -> zp.
inline int32_t quantize_value(float v, int32_t zp, QRange r) {
  if (std::isnan(v)) return zp;
  double q = static_cast<double>(round_half_even(v)) + zp;  // double: no overflow, inf stays inf
  q = std::clamp(q, static_cast<double>(r.lo), static_cast<double>(r.hi));
  return static_cast<int32_t>(q);
}

// QuantizeLinear of one float32 value.
inline int32_t quantize(float x, float scale, int32_t zp, QRange r) { return quantize_value(x / scale, zp, r); }

// DequantizeLinear of one value.
inline float dequantize(int32_t q, int32_t zp, float scale) { return static_cast<float>(q - zp) * scale; }

// The requantization multiplier of an integer product sum: float32(float32(s_a * s_b) / s_y).
inline float requant_multiplier(float s_a, float s_b, float s_y) { return (s_a * s_b) / s_y; }

// int32 addition wrapping modulo 2^32 (signed overflow is undefined in C++; unsigned is not).
inline int32_t wrap_add(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
}

// saturate(round_half_even(float32(acc + bias) * mult) + y_zp).
inline int32_t requantize(int32_t acc, int32_t bias, float mult, int32_t y_zp, QRange r) {
  return quantize_value(static_cast<float>(wrap_add(acc, bias)) * mult, y_zp, r);
}

}  // namespace opennpu::quant
