// Sequence and optional ops (ai.onnx opsets 11-17): SequenceConstruct/Empty/At/Insert/Erase/
// Length, SplitToSequence, ConcatFromSequence, SequenceMap, Optional, OptionalHasElement,
// OptionalGetElement.
//
// Value model (see opennpu/tensor.h): a sequence is a Tensor with is_sequence() holding its items
// and dtype() = the element type; an optional that holds a value *is* that value (a tensor or a
// sequence); an empty optional is Tensor::make_none(). Sequence values are immutable: every op
// builds a new item list (items share their buffers, so this copies no tensor data).
#include <string>
#include <vector>

#include "cpu/kernels/seq_util.h"
#include "cpu/util.h"

namespace opennpu::cpu {
namespace {

using sequtil::concat_tensors;
using sequtil::slice_axis;

const Tensor& seq_input(const KernelContext& ctx, size_t i) {
  const Tensor& t = ctx.input(i);
  ctx.check(t.is_sequence(), "input {} must be a sequence", i);
  return t;
}

void check_tensor(const KernelContext& ctx, const Tensor& t, size_t i) {
  ctx.check(!t.is_sequence() && !t.is_none(), "input {} must be a tensor", i);
}

// A position input: an int32/int64 scalar; negative values count from the back. Valid range
// [-n, n-1], or [-n, n] when inserting (n = append).
int64_t read_position(const KernelContext& ctx, const Tensor& p, int64_t n, bool inserting) {
  ctx.check(!p.is_sequence() && !p.is_none() && (p.dtype() == DType::Int32 || p.dtype() == DType::Int64) && p.numel() == 1,
            "position must be an int32 or int64 scalar");
  int64_t pos = p.get_i64(0);
  int64_t hi = inserting ? n : n - 1;
  ctx.check(pos >= -n && pos <= hi, "position {} is out of range [{}, {}] for a sequence of {} items", pos, -n, hi, n);
  return pos < 0 ? pos + n : pos;
}

void sequence_construct(KernelContext& ctx) {
  ctx.check(ctx.num_inputs() >= 1, "needs at least one input");
  std::vector<Tensor> items;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const Tensor& t = ctx.input(i);
    check_tensor(ctx, t, i);
    ctx.check(t.dtype() == ctx.input(0).dtype(), "input {} has dtype {}, input 0 has {} (a sequence has one element type)",
              i, dtype_name(t.dtype()), dtype_name(ctx.input(0).dtype()));
    items.push_back(t);
  }
  ctx.set_output(0, Tensor::make_sequence(ctx.input(0).dtype(), std::move(items)));
}

void sequence_empty(KernelContext& ctx) {
  // dtype is a TensorProto.DataType; default float.
  int64_t onnx_type = ctx.node().attr_i("dtype", 1);
  DType dt;
  try {
    dt = dtype_from_onnx(static_cast<int>(onnx_type));
  } catch (const Error& e) {
    ctx.fail("attribute 'dtype': {}", e.what());
  }
  ctx.set_output(0, Tensor::make_sequence(dt, {}));
}

void sequence_at(KernelContext& ctx) {
  const Tensor& s = seq_input(ctx, 0);
  const auto& items = s.sequence();
  int64_t pos = read_position(ctx, ctx.input(1), static_cast<int64_t>(items.size()), false);
  ctx.set_output(0, items[static_cast<size_t>(pos)]);
}

void sequence_insert(KernelContext& ctx) {
  const Tensor& s = seq_input(ctx, 0);
  const Tensor& t = ctx.input(1);
  check_tensor(ctx, t, 1);
  std::vector<Tensor> items = s.sequence();
  // An empty sequence of unknown element type takes the type of its first item.
  DType dt = s.dtype() == DType::Undefined && items.empty() ? t.dtype() : s.dtype();
  ctx.check(t.dtype() == dt, "cannot insert a {} tensor into a sequence of {}", dtype_name(t.dtype()), dtype_name(dt));
  int64_t n = static_cast<int64_t>(items.size());
  int64_t pos = ctx.has_input(2) ? read_position(ctx, ctx.input(2), n, true) : n;
  items.insert(items.begin() + pos, t);
  ctx.set_output(0, Tensor::make_sequence(dt, std::move(items)));
}

void sequence_erase(KernelContext& ctx) {
  const Tensor& s = seq_input(ctx, 0);
  std::vector<Tensor> items = s.sequence();
  int64_t n = static_cast<int64_t>(items.size());
  ctx.check(n > 0, "cannot erase from an empty sequence");
  int64_t pos = ctx.has_input(1) ? read_position(ctx, ctx.input(1), n, false) : n - 1;
  items.erase(items.begin() + pos);
  ctx.set_output(0, Tensor::make_sequence(s.dtype(), std::move(items)));
}

void sequence_length(KernelContext& ctx) {
  const Tensor& s = seq_input(ctx, 0);
  ctx.set_output(0, Tensor::scalar_i64(static_cast<int64_t>(s.sequence().size())));
}

void split_to_sequence(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  check_tensor(ctx, x, 0);
  ctx.check(x.rank() >= 1, "input must have rank >= 1, got a scalar");
  const int64_t axis = normalize_axis(ctx, ctx.node().attr_i("axis", 0), x.rank());
  const int64_t keepdims = ctx.node().attr_i("keepdims", 1);
  ctx.check(keepdims == 0 || keepdims == 1, "attribute 'keepdims' must be 0 or 1, got {}", keepdims);
  const int64_t dim = x.dim(axis);

  std::vector<int64_t> sizes;
  bool keep = true;
  if (!ctx.has_input(1)) {
    // No split: pieces of size 1, with the axis dropped unless keepdims.
    sizes.assign(static_cast<size_t>(dim), 1);
    keep = keepdims == 1;
  } else {
    const Tensor& sp = ctx.input(1);
    ctx.check(!sp.is_sequence() && !sp.is_none() && (sp.dtype() == DType::Int32 || sp.dtype() == DType::Int64),
              "split must be an int32 or int64 tensor");
    ctx.check(sp.rank() <= 1, "split must be a scalar or 1-D, got shape {}", shape_str(sp.shape()));
    if (sp.rank() == 0) {
      // Chunks of `split`; the last one takes the remainder.
      int64_t c = sp.get_i64(0);
      ctx.check(c > 0, "split must be positive, got {}", c);
      for (int64_t at = 0; at < dim; at += c) sizes.push_back(std::min(c, dim - at));
    } else {
      int64_t sum = 0;
      for (int64_t v : sp.to_i64_vector()) {
        ctx.check(v >= 0, "split sizes must be non-negative, got {}", v);
        sum += v;
        ctx.check(sum <= dim, "split sizes add up to more than the dimension {} of axis {}", dim, axis);
        sizes.push_back(v);
      }
      ctx.check(sum == dim, "split sizes add up to {}, but axis {} has size {}", sum, axis, dim);
    }
  }
  std::vector<Tensor> items;
  int64_t at = 0;
  for (int64_t s : sizes) {
    items.push_back(slice_axis(x, axis, at, s, keep));
    at += s;
  }
  ctx.set_output(0, Tensor::make_sequence(x.dtype(), std::move(items)));
}

void concat_from_sequence(KernelContext& ctx) {
  const Tensor& s = seq_input(ctx, 0);
  const auto& items = s.sequence();
  ctx.check(ctx.node().has_attr("axis"), "attribute 'axis' is required");
  const int64_t new_axis = ctx.node().attr_i("new_axis", 0);
  ctx.check(new_axis == 0 || new_axis == 1, "attribute 'new_axis' must be 0 or 1, got {}", new_axis);
  ctx.check(!items.empty(), "cannot concatenate an empty sequence");
  const int64_t rank = items[0].rank();
  ctx.check(new_axis == 1 || rank >= 1, "cannot concatenate scalars without new_axis=1");
  // With new_axis the result has one more dimension, and the axis may point past the last one.
  const int64_t axis = normalize_axis(ctx, ctx.node().attr_i("axis", 0), rank + new_axis);
  ctx.set_output(0, concat_tensors(ctx, items, axis, new_axis == 1));
}

// SequenceMap: runs the body once per element of input 0. Additional inputs that are sequences
// contribute their i-th element (they must have the same length), tensors are passed whole.
// Body output k of each run becomes element i of output sequence k.
void sequence_map(KernelContext& ctx) {
  const ir::Graph* body = ctx.node().attr_g("body");
  if (!body) ctx.fail("missing graph attribute 'body'");
  const Tensor& s = seq_input(ctx, 0);
  const size_t n = s.sequence().size();
  ctx.check(body->inputs.size() == ctx.num_inputs(), "body takes {} inputs, the node has {}", body->inputs.size(),
            ctx.num_inputs());
  ctx.check(body->outputs.size() == ctx.num_outputs(), "body returns {} values, the node has {} outputs",
            body->outputs.size(), ctx.num_outputs());
  for (size_t j = 1; j < ctx.num_inputs(); ++j) {
    const Tensor& a = ctx.input(j);
    ctx.check(!a.is_none(), "input {} must be a tensor or a sequence", j);
    if (a.is_sequence())
      ctx.check(a.sequence().size() == n, "input {} is a sequence of {} items, input 0 has {}", j, a.sequence().size(), n);
  }
  std::vector<std::vector<Tensor>> outs(ctx.num_outputs());
  for (size_t i = 0; i < n; ++i) {
    std::vector<Tensor> ins{s.sequence()[i]};
    for (size_t j = 1; j < ctx.num_inputs(); ++j) {
      const Tensor& a = ctx.input(j);
      ins.push_back(a.is_sequence() ? a.sequence()[i] : a);
    }
    std::vector<Tensor> r = ctx.run_subgraph(*body, ins);
    ctx.check(r.size() == outs.size(), "body returned {} values, expected {}", r.size(), outs.size());
    for (size_t k = 0; k < r.size(); ++k) {
      ctx.check(!r[k].is_sequence() && !r[k].is_none(), "body output {} must be a tensor", k);
      if (!outs[k].empty())
        ctx.check(r[k].dtype() == outs[k][0].dtype(), "body output {} changed dtype from {} to {}", k,
                  dtype_name(outs[k][0].dtype()), dtype_name(r[k].dtype()));
      outs[k].push_back(std::move(r[k]));
    }
  }
  for (size_t k = 0; k < outs.size(); ++k) {
    // Element type: from the values, or the body's declared type for an empty input sequence.
    DType dt = outs[k].empty() ? body->outputs[k].dtype : outs[k][0].dtype();
    ctx.set_output(k, Tensor::make_sequence(dt, std::move(outs[k])));
  }
}

// Optional: wraps its input (an optional holding a value is that value), or makes an empty
// optional when the input is omitted. The element type of an empty optional is not carried.
void optional_kernel(KernelContext& ctx) {
  if (ctx.has_input(0)) {
    const Tensor& t = ctx.input(0);
    ctx.check(!t.is_none(), "input must be a tensor or a sequence, not an optional");
    ctx.set_output(0, t);
    return;
  }
  ctx.check(ctx.node().has_attr("type"), "attribute 'type' is required when the input is omitted");
  const ir::Attribute* type = ctx.node().attr("type");
  bool of_sequence = type && type->kind == ir::Attribute::Kind::String && type->s.rfind("sequence", 0) == 0;
  ctx.set_output(0, Tensor::make_none(of_sequence));
}

void optional_has_element(KernelContext& ctx) {
  Tensor out(DType::Bool, {});
  out.data<uint8_t>()[0] = ctx.input(0).is_none() ? 0 : 1;
  ctx.set_output(0, out);
}

void optional_get_element(KernelContext& ctx) {
  const Tensor& t = ctx.input(0);
  ctx.check(!t.is_none(), "the optional input is empty");
  ctx.set_output(0, t);
}

}  // namespace

void register_sequence(Registry& r) {
  const char* all = "all tensor types";
  r.add({"SequenceConstruct", "", 11, 17, all, sequence_construct});
  r.add({"SequenceEmpty", "", 11, 17, all, sequence_empty});
  r.add({"SequenceAt", "", 11, 17, all, sequence_at});
  r.add({"SequenceInsert", "", 11, 17, all, sequence_insert});
  r.add({"SequenceErase", "", 11, 17, all, sequence_erase});
  r.add({"SequenceLength", "", 11, 17, all, sequence_length});
  r.add({"SplitToSequence", "", 11, 17, all, split_to_sequence});
  r.add({"ConcatFromSequence", "", 11, 17, all, concat_from_sequence});
  r.add({"SequenceMap", "", 17, 17, all, sequence_map});
  r.add({"Optional", "", 15, 17, "optional of any tensor or sequence type", optional_kernel});
  r.add({"OptionalHasElement", "", 15, 17, "optional of any tensor or sequence type", optional_has_element});
  r.add({"OptionalGetElement", "", 15, 17, "optional of any tensor or sequence type", optional_get_element});
}

}  // namespace opennpu::cpu
