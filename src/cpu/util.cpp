#include "cpu/util.h"

#include <algorithm>

namespace opennpu::cpu {

Shape broadcast_shapes(const std::vector<Shape>& shapes, const std::string& who) {
  size_t rank = 0;
  for (const auto& s : shapes) rank = std::max(rank, s.size());
  Shape out(rank, 1);
  for (const auto& s : shapes) {
    for (size_t i = 0; i < s.size(); ++i) {
      int64_t& o = out[rank - s.size() + i];
      int64_t d = s[i];
      if (d == o || d == 1) continue;
      if (o == 1) { o = d; continue; }
      std::string all;
      for (const auto& x : shapes) all += shape_str(x) + " ";
      throw Error(fmt::format("{}: shapes {}cannot be broadcast together", who, all));
    }
  }
  return out;
}

std::vector<int64_t> strides_of(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (int64_t i = static_cast<int64_t>(s.size()) - 2; i >= 0; --i) st[i] = st[i + 1] * s[i + 1];
  return st;
}

std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
  std::vector<int64_t> st(out.size(), 0);
  auto own = strides_of(in);
  size_t off = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) st[off + i] = in[i] == 1 ? 0 : own[i];
  return st;
}

int64_t normalize_axis(const KernelContext& ctx, int64_t axis, int64_t rank) {
  int64_t a = axis < 0 ? axis + rank : axis;
  ctx.check(a >= 0 && a < std::max<int64_t>(rank, 1), "axis {} is out of range for rank {}", axis, rank);
  return a;
}

BroadcastIter::BroadcastIter(const Shape& out, std::vector<std::vector<int64_t>> in_strides)
    : shape_(out), strides_(std::move(in_strides)), idx_(out.size(), 0), off_(strides_.size(), 0) {}

void BroadcastIter::next() {
  for (int64_t d = static_cast<int64_t>(shape_.size()) - 1; d >= 0; --d) {
    if (++idx_[d] < shape_[d]) {
      for (size_t k = 0; k < strides_.size(); ++k) off_[k] += strides_[k][d];
      return;
    }
    for (size_t k = 0; k < strides_.size(); ++k) off_[k] -= strides_[k][d] * (shape_[d] - 1);
    idx_[d] = 0;
  }
}

}  // namespace opennpu::cpu
