// cpu/kernels/seq_util.h — block copies shared by the control-flow and sequence kernels: cut a
// tensor along one axis (Scan inputs, SplitToSequence) and join tensors along one axis, either an
// existing one or a new one (Loop/Scan outputs, ConcatFromSequence). Dtype-agnostic: elements are
// moved as bytes, string tensors element by element.
#pragma once
#include <cstring>
#include <vector>

#include "cpu/kernel.h"

namespace opennpu::cpu::sequtil {

inline int64_t prod(const Shape& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to; ++i) p *= s[i];
  return p;
}

// Copies n elements from src[si..] to dst[di..] (same dtype).
inline void copy_elems(const Tensor& src, int64_t si, Tensor& dst, int64_t di, int64_t n) {
  if (n <= 0) return;
  if (src.dtype() == DType::String) {
    for (int64_t k = 0; k < n; ++k) dst.strings()[static_cast<size_t>(di + k)] = src.strings()[static_cast<size_t>(si + k)];
    return;
  }
  const size_t es = dtype_size(src.dtype());
  std::memcpy(static_cast<std::byte*>(dst.raw()) + static_cast<size_t>(di) * es,
              static_cast<const std::byte*>(src.raw()) + static_cast<size_t>(si) * es, static_cast<size_t>(n) * es);
}

// t[..., start:start+len, ...] along `axis` (0 <= axis < rank, range checked by the caller);
// with keep_dim = false and len = 1 the axis is removed.
inline Tensor slice_axis(const Tensor& t, int64_t axis, int64_t start, int64_t len, bool keep_dim) {
  const Shape& s = t.shape();
  const size_t a = static_cast<size_t>(axis);
  const int64_t outer = prod(s, 0, a), inner = prod(s, a + 1, s.size()), dim = s[a];
  Shape out = s;
  if (keep_dim) out[a] = len;
  else out.erase(out.begin() + axis);
  Tensor r(t.dtype(), out);
  for (int64_t o = 0; o < outer; ++o) copy_elems(t, (o * dim + start) * inner, r, o * len * inner, len * inner);
  return r;
}

// Joins `parts` along `axis` of the result. new_axis: every part has the same shape and a new
// dimension of size parts.size() is inserted at `axis` (0 <= axis <= rank); otherwise the parts
// agree except along `axis` (0 <= axis < rank). Axis ranges are the caller's to check.
inline Tensor concat_tensors(const KernelContext& ctx, const std::vector<Tensor>& parts, int64_t axis, bool new_axis) {
  ctx.check(!parts.empty(), "nothing to concatenate");
  const Tensor& f = parts[0];
  const size_t a = static_cast<size_t>(axis);
  Shape out = f.shape();
  if (new_axis) out.insert(out.begin() + axis, 0);
  else out[a] = 0;
  for (size_t k = 0; k < parts.size(); ++k) {
    const Tensor& p = parts[k];
    ctx.check(!p.is_sequence() && !p.is_none(), "element {} is not a tensor", k);
    ctx.check(p.dtype() == f.dtype(), "element {} has dtype {}, element 0 has {}", k, dtype_name(p.dtype()),
              dtype_name(f.dtype()));
    bool same = p.rank() == f.rank();
    for (size_t d = 0; same && d < f.shape().size(); ++d) same = p.shape()[d] == f.shape()[d] || (!new_axis && d == a);
    ctx.check(same, "element {} has shape {}, incompatible with element 0's {}{}", k, shape_str(p.shape()),
              shape_str(f.shape()), new_axis ? " (stacking needs equal shapes)" : "");
    out[a] += new_axis ? 1 : p.shape()[a];
  }
  Tensor r(f.dtype(), out);
  const int64_t outer = prod(out, 0, a);
  int64_t pos = 0;
  for (int64_t o = 0; o < outer; ++o)
    for (const auto& p : parts) {
      const int64_t chunk = prod(p.shape(), a, p.shape().size());
      copy_elems(p, o * chunk, r, pos, chunk);
      pos += chunk;
    }
  return r;
}

}  // namespace opennpu::cpu::sequtil
