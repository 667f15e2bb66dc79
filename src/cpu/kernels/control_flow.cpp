// Control flow: If, Loop and Scan (ai.onnx opsets 1-17). Bodies run through the executor
// (ctx.run_subgraph); values of enclosing graphs are visible to them by name. Loop-carried and
// branch values may be tensors, sequences or optionals (they pass through untouched); scan outputs
// are tensors stacked along a new axis.
#include <algorithm>
#include <string>
#include <vector>

#include "cpu/kernels/seq_util.h"
#include "cpu/util.h"

namespace opennpu::cpu {
namespace {

using sequtil::concat_tensors;
using sequtil::slice_axis;

const ir::Graph& graph_attr(const KernelContext& ctx, const char* name) {
  const ir::Graph* g = ctx.node().attr_g(name);
  if (!g) ctx.fail("missing graph attribute '{}'", name);
  return *g;
}

// A condition: a bool tensor with exactly one element.
bool read_cond(const KernelContext& ctx, const Tensor& t, const char* what) {
  ctx.check(!t.is_sequence() && !t.is_none() && t.dtype() == DType::Bool && t.numel() == 1,
            "{} must be a bool tensor with one element, got {} {}", what, t.is_sequence() ? "sequence" : dtype_name(t.dtype()),
            shape_str(t.shape()));
  return t.data<uint8_t>()[0] != 0;
}

Tensor bool_scalar(bool v) {
  Tensor t(DType::Bool, {});
  t.data<uint8_t>()[0] = v ? 1 : 0;
  return t;
}

// A scan output that got zero iterations: its per-iteration shape is known only from the body's
// declared output type. Unknown dims become 0 (the result is empty either way). The stacking
// axis gets size axis_len (0: no iterations), and `leading` >= 0 adds a leading batch axis.
Tensor empty_scan_output(const KernelContext& ctx, const ir::ValueInfo& vi, int64_t axis, int64_t axis_len = 0,
                         int64_t leading = -1) {
  ctx.check(vi.dtype != DType::Undefined && vi.kind == "tensor",
            "body output '{}' ran zero iterations and declares no tensor type to build an empty result from", vi.name);
  Shape s;
  for (const auto& d : vi.dims) s.push_back(d.known() ? d.value : 0);
  ctx.check(axis >= 0 && axis <= static_cast<int64_t>(s.size()), "scan output axis {} out of range for body output '{}'",
            axis, vi.name);
  s.insert(s.begin() + axis, axis_len);
  if (leading >= 0) s.insert(s.begin(), leading);
  return Tensor(vi.dtype, s);
}

// ---- If -----------------------------------------------------------------------------------------

void if_kernel(KernelContext& ctx) {
  bool c = read_cond(ctx, ctx.input(0), "cond");
  const ir::Graph& g = graph_attr(ctx, c ? "then_branch" : "else_branch");
  std::vector<Tensor> outs = ctx.run_subgraph(g, {});
  ctx.check(outs.size() == ctx.num_outputs(), "{} returns {} values but the node has {} outputs",
            c ? "then_branch" : "else_branch", outs.size(), ctx.num_outputs());
  for (size_t i = 0; i < outs.size(); ++i) ctx.set_output(i, std::move(outs[i]));
}

// ---- Loop ---------------------------------------------------------------------------------------
// Inputs: M (optional trip count), cond (optional), v_initial...; body(iter, cond, v...) ->
// (cond, v..., scan...). Runs while (M absent or i < M) and cond; without either it runs until the
// body's condition turns false (bounded by ctx.max_loop_iterations(), --max-loop-iterations).

void loop_kernel(KernelContext& ctx) {
  const ir::Graph& body = graph_attr(ctx, "body");
  const size_t n_carried = ctx.num_inputs() >= 2 ? ctx.num_inputs() - 2 : 0;
  ctx.check(body.inputs.size() == 2 + n_carried, "body takes {} inputs, expected 2 + {} loop-carried values",
            body.inputs.size(), n_carried);
  ctx.check(body.outputs.size() >= 1 + n_carried, "body returns {} values, expected at least 1 + {}", body.outputs.size(),
            n_carried);
  const size_t n_scan = body.outputs.size() - 1 - n_carried;
  ctx.check(ctx.num_outputs() <= n_carried + n_scan, "node has {} outputs but the body gives {} loop-carried + {} scan",
            ctx.num_outputs(), n_carried, n_scan);

  bool has_m = ctx.has_input(0);
  int64_t M = 0;
  if (has_m) {
    const Tensor& m = ctx.input(0);
    ctx.check(!m.is_sequence() && !m.is_none() && m.dtype() == DType::Int64 && m.numel() == 1,
              "trip count M must be an int64 tensor with one element");
    M = m.get_i64(0);
    ctx.check(M >= 0, "trip count M is negative ({})", M);
  }
  bool cond = ctx.has_input(1) ? read_cond(ctx, ctx.input(1), "cond") : true;

  std::vector<Tensor> carried(n_carried);
  for (size_t k = 0; k < n_carried; ++k)
    carried[k] = ctx.has_input(2 + k) ? ctx.input(2 + k) : Tensor::make_none();  // omitted optional (opset 16)
  std::vector<std::vector<Tensor>> scans(n_scan);

  int64_t i = 0;
  for (; (!has_m || i < M) && cond; ++i) {
    if (i >= ctx.max_loop_iterations())
      ctx.fail("stopped after {} iterations, the limit on Loop iterations (--max-loop-iterations); trip count {}",
               ctx.max_loop_iterations(), has_m ? std::to_string(M) : "not given, and the condition stayed true");
    std::vector<Tensor> ins;
    ins.reserve(2 + n_carried);
    ins.push_back(Tensor::scalar_i64(i));
    ins.push_back(bool_scalar(cond));
    for (auto& v : carried) ins.push_back(v);
    std::vector<Tensor> outs = ctx.run_subgraph(body, ins);
    ctx.check(outs.size() == 1 + n_carried + n_scan, "body returned {} values, expected {}", outs.size(),
              1 + n_carried + n_scan);
    cond = read_cond(ctx, outs[0], "the body's condition output");
    for (size_t k = 0; k < n_carried; ++k) carried[k] = std::move(outs[1 + k]);
    for (size_t k = 0; k < n_scan; ++k) {
      Tensor& s = outs[1 + n_carried + k];
      ctx.check(!s.is_sequence() && !s.is_none(), "scan output {} must be a tensor", k);
      if (!scans[k].empty())
        ctx.check(s.dtype() == scans[k][0].dtype() && s.shape() == scans[k][0].shape(),
                  "scan output {} changed from {} {} to {} {} in iteration {}", k, dtype_name(scans[k][0].dtype()),
                  shape_str(scans[k][0].shape()), dtype_name(s.dtype()), shape_str(s.shape()), i);
      scans[k].push_back(std::move(s));
    }
  }

  for (size_t k = 0; k < n_carried && k < ctx.num_outputs(); ++k) ctx.set_output(k, carried[k]);
  for (size_t k = 0; k < n_scan && n_carried + k < ctx.num_outputs(); ++k) {
    const size_t o = n_carried + k;
    if (scans[k].empty()) ctx.set_output(o, empty_scan_output(ctx, body.outputs[1 + o], 0));
    else ctx.set_output(o, concat_tensors(ctx, scans[k], 0, true));
  }
}

// ---- Scan ---------------------------------------------------------------------------------------

struct ScanSpec {
  size_t n_state = 0, n_in = 0, n_out = 0;
  std::vector<int64_t> in_axes, in_dirs, out_axes, out_dirs;
};

std::vector<int64_t> int_list_attr(const KernelContext& ctx, const char* name, size_t n, int64_t dflt) {
  auto v = ctx.node().attr_ints(name, std::vector<int64_t>(n, dflt));
  ctx.check(v.size() == n, "attribute '{}' has {} entries, expected {}", name, v.size(), n);
  return v;
}

void check_dirs(const KernelContext& ctx, const std::vector<int64_t>& dirs, const char* name) {
  for (int64_t d : dirs) ctx.check(d == 0 || d == 1, "attribute '{}' entries must be 0 or 1, got {}", name, d);
}

// Runs the body `len` times over `states` and scan inputs `xs` (scanned along spec.in_axes);
// returns the final states, and fills `iter_outs[k]` with output k of each iteration in output
// order (reversed for a reverse scan output).
std::vector<Tensor> scan_loop(const KernelContext& ctx, const ir::Graph& body, const ScanSpec& spec,
                              std::vector<Tensor> states, const std::vector<Tensor>& xs, int64_t len,
                              std::vector<std::vector<Tensor>>& iter_outs) {
  iter_outs.assign(spec.n_out, {});
  for (int64_t i = 0; i < len; ++i) {
    std::vector<Tensor> ins = states;
    for (size_t j = 0; j < spec.n_in; ++j) {
      int64_t t = spec.in_dirs[j] ? len - 1 - i : i;
      ins.push_back(slice_axis(xs[j], spec.in_axes[j], t, 1, false));
    }
    std::vector<Tensor> outs = ctx.run_subgraph(body, ins);
    ctx.check(outs.size() == spec.n_state + spec.n_out, "body returned {} values, expected {}", outs.size(),
              spec.n_state + spec.n_out);
    for (size_t k = 0; k < spec.n_state; ++k) states[k] = std::move(outs[k]);
    for (size_t k = 0; k < spec.n_out; ++k) {
      Tensor& s = outs[spec.n_state + k];
      ctx.check(!s.is_sequence() && !s.is_none(), "scan output {} must be a tensor", k);
      if (!iter_outs[k].empty())
        ctx.check(s.dtype() == iter_outs[k][0].dtype() && s.shape() == iter_outs[k][0].shape(),
                  "scan output {} changed shape from {} to {} in iteration {}", k, shape_str(iter_outs[k][0].shape()),
                  shape_str(s.shape()), i);
      iter_outs[k].push_back(std::move(s));
    }
  }
  for (size_t k = 0; k < spec.n_out; ++k)
    if (spec.out_dirs[k]) std::reverse(iter_outs[k].begin(), iter_outs[k].end());
  return states;
}

// Opset 9+: no batch axis; each scan input is scanned along its scan_input_axes entry, each scan
// output stacked along its scan_output_axes entry.
void scan9_kernel(KernelContext& ctx) {
  const ir::Graph& body = graph_attr(ctx, "body");
  ScanSpec sp;
  int64_t m = ctx.node().attr_i("num_scan_inputs", -1);
  ctx.check(m >= 1 && static_cast<size_t>(m) <= ctx.num_inputs(), "attribute num_scan_inputs={} must be in [1, {}]", m,
            ctx.num_inputs());
  sp.n_in = static_cast<size_t>(m);
  sp.n_state = ctx.num_inputs() - sp.n_in;
  ctx.check(body.inputs.size() == sp.n_state + sp.n_in, "body takes {} inputs, expected {} states + {} scan inputs",
            body.inputs.size(), sp.n_state, sp.n_in);
  ctx.check(body.outputs.size() >= sp.n_state, "body returns {} values, fewer than the {} states", body.outputs.size(),
            sp.n_state);
  sp.n_out = body.outputs.size() - sp.n_state;
  ctx.check(ctx.num_outputs() <= sp.n_state + sp.n_out, "node has {} outputs, the body gives {}", ctx.num_outputs(),
            sp.n_state + sp.n_out);
  sp.in_axes = int_list_attr(ctx, "scan_input_axes", sp.n_in, 0);
  sp.in_dirs = int_list_attr(ctx, "scan_input_directions", sp.n_in, 0);
  sp.out_axes = int_list_attr(ctx, "scan_output_axes", sp.n_out, 0);
  sp.out_dirs = int_list_attr(ctx, "scan_output_directions", sp.n_out, 0);
  check_dirs(ctx, sp.in_dirs, "scan_input_directions");
  check_dirs(ctx, sp.out_dirs, "scan_output_directions");

  std::vector<Tensor> states, xs;
  for (size_t i = 0; i < sp.n_state; ++i) states.push_back(ctx.input(i));
  int64_t len = -1;
  for (size_t j = 0; j < sp.n_in; ++j) {
    const Tensor& x = ctx.input(sp.n_state + j);
    ctx.check(!x.is_sequence() && !x.is_none() && x.rank() >= 1, "scan input {} must be a tensor of rank >= 1", j);
    sp.in_axes[j] = normalize_axis(ctx, sp.in_axes[j], x.rank());
    int64_t l = x.dim(sp.in_axes[j]);
    ctx.check(len < 0 || l == len, "scan input {} has length {} along its scan axis, scan input 0 has {}", j, l, len);
    len = l;
    xs.push_back(x);
  }
  std::vector<std::vector<Tensor>> iter_outs;
  std::vector<Tensor> finals = scan_loop(ctx, body, sp, states, xs, len, iter_outs);
  for (size_t k = 0; k < sp.n_state && k < ctx.num_outputs(); ++k) ctx.set_output(k, finals[k]);
  for (size_t k = 0; k < sp.n_out && sp.n_state + k < ctx.num_outputs(); ++k) {
    const ir::ValueInfo& vi = body.outputs[sp.n_state + k];
    // The output rank is the per-iteration rank + 1; negative axes count from its end.
    int64_t rank = iter_outs[k].empty() ? static_cast<int64_t>(vi.dims.size()) : iter_outs[k][0].rank();
    int64_t axis = normalize_axis(ctx, sp.out_axes[k], rank + 1);
    if (iter_outs[k].empty()) ctx.set_output(sp.n_state + k, empty_scan_output(ctx, vi, axis));
    else ctx.set_output(sp.n_state + k, concat_tensors(ctx, iter_outs[k], axis, true));
  }
}

// Opset 8: input 0 is the optional sequence_lens; states and scan inputs carry a leading batch
// axis, scan inputs are scanned along axis 1, and every batch entry runs its own scan of
// sequence_lens[b] steps. Scan outputs are [batch, max_len, ...], zero past an entry's length.
void scan8_kernel(KernelContext& ctx) {
  const ir::Graph& body = graph_attr(ctx, "body");
  ScanSpec sp;
  int64_t m = ctx.node().attr_i("num_scan_inputs", -1);
  ctx.check(m >= 1 && static_cast<size_t>(m) + 1 <= ctx.num_inputs(), "attribute num_scan_inputs={} must be in [1, {}]",
            m, ctx.num_inputs() - 1);
  sp.n_in = static_cast<size_t>(m);
  sp.n_state = ctx.num_inputs() - 1 - sp.n_in;
  ctx.check(body.inputs.size() == sp.n_state + sp.n_in, "body takes {} inputs, expected {} states + {} scan inputs",
            body.inputs.size(), sp.n_state, sp.n_in);
  ctx.check(body.outputs.size() >= sp.n_state, "body returns fewer values than the {} states", sp.n_state);
  sp.n_out = body.outputs.size() - sp.n_state;
  ctx.check(ctx.num_outputs() <= sp.n_state + sp.n_out, "node has {} outputs, the body gives {}", ctx.num_outputs(),
            sp.n_state + sp.n_out);
  sp.in_dirs = int_list_attr(ctx, "directions", sp.n_in, 0);
  check_dirs(ctx, sp.in_dirs, "directions");
  sp.in_axes.assign(sp.n_in, 0);  // after removing the batch axis, the scan axis is 0
  sp.out_dirs.assign(sp.n_out, 0);

  int64_t batch = -1, max_len = -1;
  auto batch_of = [&](const Tensor& t, const char* what, size_t idx, int64_t min_rank) {
    ctx.check(!t.is_sequence() && !t.is_none() && t.rank() >= min_rank, "{} {} must be a tensor of rank >= {}", what, idx,
              min_rank);
    ctx.check(batch < 0 || t.dim(0) == batch, "{} {} has batch size {}, expected {}", what, idx, t.dim(0), batch);
    batch = t.dim(0);
  };
  for (size_t i = 0; i < sp.n_state; ++i) batch_of(ctx.input(1 + i), "state", i, 1);
  for (size_t j = 0; j < sp.n_in; ++j) {
    const Tensor& x = ctx.input(1 + sp.n_state + j);
    batch_of(x, "scan input", j, 2);
    ctx.check(max_len < 0 || x.dim(1) == max_len, "scan input {} has length {}, scan input 0 has {}", j, x.dim(1), max_len);
    max_len = x.dim(1);
  }
  std::vector<int64_t> lens(static_cast<size_t>(batch), max_len);
  if (ctx.has_input(0)) {
    const Tensor& sl = ctx.input(0);
    ctx.check(sl.dtype() == DType::Int64 && sl.shape() == Shape{batch}, "sequence_lens must be int64 [{}], got {} {}", batch,
              dtype_name(sl.dtype()), shape_str(sl.shape()));
    for (int64_t b = 0; b < batch; ++b) {
      lens[static_cast<size_t>(b)] = sl.get_i64(b);
      ctx.check(lens[b] >= 0 && lens[b] <= max_len, "sequence_lens[{}] = {} is outside [0, {}]", b, lens[b], max_len);
    }
  }

  std::vector<std::vector<Tensor>> final_parts(sp.n_state), out_parts(sp.n_out);
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<Tensor> states, xs;
    for (size_t i = 0; i < sp.n_state; ++i) states.push_back(slice_axis(ctx.input(1 + i), 0, b, 1, false));
    for (size_t j = 0; j < sp.n_in; ++j) {
      Tensor x = slice_axis(ctx.input(1 + sp.n_state + j), 0, b, 1, false);
      // Only the first L_b steps belong to this entry (a reverse scan starts at L_b - 1).
      if (lens[b] < max_len) x = slice_axis(x, 0, 0, lens[b], true);
      xs.push_back(x);
    }
    std::vector<std::vector<Tensor>> iter_outs;
    std::vector<Tensor> finals = scan_loop(ctx, body, sp, states, xs, lens[b], iter_outs);
    for (size_t i = 0; i < sp.n_state; ++i) final_parts[i].push_back(finals[i]);
    for (size_t k = 0; k < sp.n_out; ++k) {
      const ir::ValueInfo& vi = body.outputs[sp.n_state + k];
      Tensor stacked = iter_outs[k].empty() ? empty_scan_output(ctx, vi, 0) : concat_tensors(ctx, iter_outs[k], 0, true);
      if (lens[b] < max_len) {  // pad with zeros up to the longest sequence
        Shape pad = stacked.shape();
        pad[0] = max_len - lens[b];
        stacked = concat_tensors(ctx, {stacked, Tensor(stacked.dtype(), pad)}, 0, false);
      }
      out_parts[k].push_back(stacked);
    }
  }
  for (size_t i = 0; i < sp.n_state && i < ctx.num_outputs(); ++i) {
    if (batch == 0) ctx.set_output(i, ctx.input(1 + i));  // no entries: the (empty) states themselves
    else ctx.set_output(i, concat_tensors(ctx, final_parts[i], 0, true));
  }
  for (size_t k = 0; k < sp.n_out && sp.n_state + k < ctx.num_outputs(); ++k) {
    if (batch == 0) ctx.set_output(sp.n_state + k, empty_scan_output(ctx, body.outputs[sp.n_state + k], 0, max_len, 0));
    else ctx.set_output(sp.n_state + k, concat_tensors(ctx, out_parts[k], 0, true));
  }
}

}  // namespace

void register_control_flow(Registry& r) {
  const char* any = "any tensor, sequence or optional";
  // If-1/11/13/16 differ only in which value types branches may return; values pass through.
  r.add({"If", "", 1, 17, any, if_kernel});
  // Loop-1/11/13/16: same semantics; 13 allows sequences and 16 optionals as loop-carried values.
  r.add({"Loop", "", 1, 17, any, loop_kernel});
  r.add({"Scan", "", 8, 8, "any tensor", scan8_kernel});
  r.add({"Scan", "", 9, 17, "any tensor", scan9_kernel});
}

}  // namespace opennpu::cpu
