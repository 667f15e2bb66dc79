// cpu/util.h — small helpers shared by reference kernels: dtype dispatch, broadcasting,
// axis normalisation and strides. Kept header-light: templates here are tiny.
#pragma once
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/half.h"
#include "cpu/kernel.h"

namespace opennpu::cpu {

template <class T> struct Tag { using type = T; };

// Calls f(Tag<T>{}) with the C++ type of dtype t. Half and BFloat16 convert to/from float.
template <class F>
void dispatch_numeric(DType t, F&& f, const char* who = "kernel") {
  switch (t) {
    case DType::Float32: f(Tag<float>{}); break;
    case DType::Float64: f(Tag<double>{}); break;
    case DType::Float16: f(Tag<Half>{}); break;
    case DType::BFloat16: f(Tag<BFloat16>{}); break;
    case DType::Int8: f(Tag<int8_t>{}); break;
    case DType::Int16: f(Tag<int16_t>{}); break;
    case DType::Int32: f(Tag<int32_t>{}); break;
    case DType::Int64: f(Tag<int64_t>{}); break;
    case DType::UInt8: f(Tag<uint8_t>{}); break;
    case DType::UInt16: f(Tag<uint16_t>{}); break;
    case DType::UInt32: f(Tag<uint32_t>{}); break;
    case DType::UInt64: f(Tag<uint64_t>{}); break;
    case DType::Bool: f(Tag<bool>{}); break;
    default: throw Error(fmt::format("{}: unsupported dtype {}", who, dtype_name(t)));
  }
}
// Floats only (float16, bfloat16, float32, float64).
template <class F>
void dispatch_float(DType t, F&& f, const char* who = "kernel") {
  switch (t) {
    case DType::Float32: f(Tag<float>{}); break;
    case DType::Float64: f(Tag<double>{}); break;
    case DType::Float16: f(Tag<Half>{}); break;
    case DType::BFloat16: f(Tag<BFloat16>{}); break;
    default: throw Error(fmt::format("{}: expected a floating-point tensor, got {}", who, dtype_name(t)));
  }
}

// Value type to compute in: float for Half/BFloat16, T otherwise.
template <class T> using compute_t = std::conditional_t<std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>, float, T>;
template <class T> inline T from_compute(compute_t<T> v) { return T(v); }

// Numpy-style multidirectional broadcast; throws Error naming `who` if incompatible.
Shape broadcast_shapes(const std::vector<Shape>& shapes, const std::string& who);
// Row-major strides of shape.
std::vector<int64_t> strides_of(const Shape& s);
// Strides of `in` broadcast to `out` (0 where broadcast); `in` right-aligned to `out`.
std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out);
// Normalises a possibly negative axis into [0, rank) or throws (names the node).
int64_t normalize_axis(const KernelContext& ctx, int64_t axis, int64_t rank);

// Iterates all indices of `out` in row-major order, maintaining one linear offset per input.
// Usage: BroadcastIter it(out, {strides_a, strides_b}); for (i...) { it.offset(0); ...; it.next(); }
class BroadcastIter {
 public:
  BroadcastIter(const Shape& out, std::vector<std::vector<int64_t>> in_strides);
  int64_t offset(size_t k) const { return off_[k]; }
  void next();
 private:
  Shape shape_;
  std::vector<std::vector<int64_t>> strides_;
  std::vector<int64_t> idx_, off_;
};

}  // namespace opennpu::cpu
