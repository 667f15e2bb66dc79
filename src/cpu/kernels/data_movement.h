// cpu/kernels/data_movement.h — helpers shared by the data-movement and indexing kernels
// (tensor_ops.cpp, indexing.cpp). Pure data movement never looks at values, so it works on every
// dtype by copying raw bytes (dtype_size of them; strings by value). Most shape ops (Slice, Pad,
// Transpose, Expand, Tile, DepthToSpace, ...) are one "separable gather": every output dim d has a
// table giving, for each output coordinate, the source offset it contributes (or "pad"), and an
// output element reads the source at the sum of its per-dim offsets. Also here: reading index and
// shape tensors with the validation every kernel must do.
#pragma once
#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "core/parallel.h"
#include "cpu/util.h"

namespace opennpu::cpu::dm {

// Copies elements between two tensors of the same dtype, by raw bytes (strings by value).
class ElemCopy {
 public:
  ElemCopy(const Tensor& src, Tensor& dst) : es_(dtype_size(dst.dtype())) {
    if (dst.dtype() == DType::String) {
      ss_ = src.strings().data();
      ds_ = dst.strings().data();
    } else {
      s_ = static_cast<const std::byte*>(src.raw());
      d_ = static_cast<std::byte*>(dst.raw());
    }
  }
  // dst[di] = src[si]
  void one(int64_t di, int64_t si) const {
    switch (es_) {  // fixed-size memcpy compiles to a single load/store
      case 1: d_[di] = s_[si]; break;
      case 2: std::memcpy(d_ + 2 * di, s_ + 2 * si, 2); break;
      case 4: std::memcpy(d_ + 4 * di, s_ + 4 * si, 4); break;
      case 8: std::memcpy(d_ + 8 * di, s_ + 8 * si, 8); break;
      default: ds_[di] = ss_[si]; break;  // String (dtype_size 0)
    }
  }
  // dst[di .. di+n) = src[si .. si+n)
  void run(int64_t di, int64_t si, int64_t n) const {
    if (n <= 0) return;
    if (es_ == 0) std::copy(ss_ + si, ss_ + si + n, ds_ + di);
    else std::memmove(d_ + es_ * di, s_ + es_ * si, es_ * static_cast<size_t>(n));
  }

 private:
  size_t es_;
  const std::byte* s_ = nullptr;
  std::byte* d_ = nullptr;
  const std::string* ss_ = nullptr;
  std::string* ds_ = nullptr;
};

// Marks an output coordinate that has no source element (padding).
inline constexpr int64_t kPad = std::numeric_limits<int64_t>::min();

// out[i0..ik] = src[sum_d offs[d][i_d]], or *fill (a one-element tensor of out's dtype; nullptr:
// leave the zero/empty value) when any offs[d][i_d] is kPad. offs[d].size() must be out.dim(d);
// every non-pad sum must be a valid element index of src (callers build offs from validated data).
inline void gather_separable(const Tensor& src, Tensor& out, const std::vector<std::vector<int64_t>>& offs,
                             const Tensor* fill = nullptr) {
  const int64_t n = out.numel();
  if (n == 0) return;
  const size_t rank = out.shape().size();
  const int64_t inner = rank ? out.shape().back() : 1;
  const int64_t rows = n / inner;
  static const std::vector<int64_t> kZero{0};
  const std::vector<int64_t>& last = rank ? offs[rank - 1] : kZero;
  // A contiguous last dim (Slice with step 1, Concat-like copies) copies whole rows at once.
  bool contiguous = last[0] != kPad;
  for (int64_t j = 1; j < inner && contiguous; ++j) contiguous = last[j] == last[0] + j;
  ElemCopy copy(src, out);
  std::optional<ElemCopy> fill_copy;
  if (fill) fill_copy.emplace(*fill, out);
  parallel_for(rows, [&](int64_t r0, int64_t r1) {
    std::vector<int64_t> idx(rank ? rank - 1 : 0);
    for (int64_t r = r0; r < r1; ++r) {
      int64_t base = 0, rem = r;
      bool pad = false;
      for (size_t d = idx.size(); d-- > 0;) {
        const int64_t dim = out.shape()[d];
        const int64_t o = offs[d][rem % dim];
        rem /= dim;
        if (o == kPad) pad = true;
        else base += o;
      }
      const int64_t dst = r * inner;
      if (!pad && contiguous) { copy.run(dst, base + last[0], inner); continue; }
      for (int64_t j = 0; j < inner; ++j) {
        if (pad || last[j] == kPad) {
          if (fill_copy) fill_copy->one(dst + j, 0);
        } else {
          copy.one(dst + j, base + last[j]);
        }
      }
    }
  }, std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1)));
}

// A one-element tensor of dtype t holding v (numeric dtypes; a string tensor gets "").
inline Tensor scalar_of(DType t, double v) {
  Tensor s(t, {});
  if (t == DType::String) return s;
  dispatch_numeric(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    *s.data<T>() = from_compute<T>(static_cast<compute_t<T>>(v));
  });
  return s;
}

// The values of an integer (int32/int64, or any integer dtype when any_int) tensor, for index,
// axis and shape inputs. `what` names the input in the error.
inline std::vector<int64_t> read_ints(const KernelContext& ctx, const Tensor& t, const char* what,
                                      bool any_int = false) {
  const bool ok = any_int ? dtype_is_integer(t.dtype()) : (t.dtype() == DType::Int64 || t.dtype() == DType::Int32);
  ctx.check(ok, "input '{}' must be {}, got {}", what, any_int ? "an integer tensor" : "int32 or int64",
            dtype_name(t.dtype()));
  return t.to_i64_vector();
}

// A shape given as a 1-D int64 tensor (Reshape, Expand, ConstantOfShape, Tile repeats).
inline Shape read_shape_input(const KernelContext& ctx, const Tensor& t, const char* what) {
  ctx.check(t.dtype() == DType::Int64, "input '{}' must be int64, got {}", what, dtype_name(t.dtype()));
  ctx.check(t.rank() == 1, "input '{}' must be 1-D, got shape {}", what, shape_str(t.shape()));
  return t.to_i64_vector();
}

// A scalar (or one-element) input read as int64 / double.
inline int64_t read_scalar_i64(const KernelContext& ctx, const Tensor& t, const char* what) {
  ctx.check(t.numel() == 1, "input '{}' must hold exactly one value, got shape {}", what, shape_str(t.shape()));
  ctx.check(t.dtype() != DType::String, "input '{}' must be numeric", what);
  return t.get_i64(0);
}

// Normalises axes into [0, rank), rejecting out-of-range and repeated ones.
inline std::vector<int64_t> normalize_axes(const KernelContext& ctx, const std::vector<int64_t>& axes, int64_t rank) {
  std::vector<int64_t> out;
  for (int64_t a : axes) {
    const int64_t n = a < 0 ? a + rank : a;
    ctx.check(n >= 0 && n < rank, "axis {} is out of range for rank {}", a, rank);
    ctx.check(std::find(out.begin(), out.end(), n) == out.end(), "axis {} is repeated", a);
    out.push_back(n);
  }
  return out;
}

// An index read from input `input` (at flat position `pos`) along an axis of size `dim`; negative
// ones count from the end. Anything outside [-dim, dim) is an error naming the input, position and
// value, never an out-of-bounds access.
inline int64_t checked_index(const KernelContext& ctx, int64_t i, int64_t dim, const char* input, int64_t pos) {
  if (i < -dim || i >= dim)
    ctx.fail("'{}' value {} at position {} is out of range for an axis of size {}", input, i, pos, dim);
  return i < 0 ? i + dim : i;
}

}  // namespace opennpu::cpu::dm
