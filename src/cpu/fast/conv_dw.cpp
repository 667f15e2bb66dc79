// cpu/fast/conv_dw.cpp — a conv and the depthwise 3x3 conv reading its output, in one op
// (mobilenet's 1x1 "expand" conv and the depthwise conv after it; or its 3x3 stride-2 stem and
// features.1's depthwise conv), optionally with the 1x1 "projection" conv reading the depthwise
// output (and its residual Add).
//
// Op (domain opennpu.cpu, created only by the pass below, layout NHWC):
//   FusedConvDw(X, W1, B1?, W2, B2?, W3?, B3?, Z?)
//     D = FusedConv_dw(FusedConv_pw(X, W1, B1), W2, B2); Y = W3 ? FusedConv_pj(D, W3, B3, Z) : D
//     pw_*: the attributes of the first FusedConv (any kernel size, strides, explicit pads
//           smaller than the kernel (or auto_pad VALID), dilations 1, group 1, activation "" |
//           Relu | Clip, no residual; the 1x1 expand convs: stride 1, no padding); dw_*: those of the depthwise FusedConv (3x3, group =
//           channels, pads 1, stride 1 or 2, same activations, no residual); pj_*: those of the
//           projection 1x1 FusedConv (stride 1, no padding, group 1, same activations, residual Z
//           allowed); onnx_opset.
//   Reference kernel: the reference FusedConv kernels in sequence (fused_conv_reference).
//
// Why: the 1x1 conv expands the channels 6x and the depthwise conv reads that tensor back once
// (mobilenet_v2's features.2: a 112x112x96 = 4.8 MB tensor per image). The fast kernel computes
// it band by band: a band of 1x1-conv output rows into a small buffer that stays in the core's
// L2 cache, then the depthwise conv's output rows that need only those rows (the last one or two
// rows are kept for the next band). Both steps are oneDNN primitives (brgconv_1x1, brdgmm_dw on
// AVX-512) on row ranges of the NHWC tensors, with the activations as post-ops. With a
// projection, each band's depthwise output rows go to a second small buffer and the projection
// writes the band's output rows from it (residual: the output starts as Z, a sum post-op).
//
// oneDNN's own fusion (post_ops::append_dw) was measured first (oneDNN 2.6, NHWC f32, 1 thread):
// its fused jit_1x1 kernel (picked for 56x56 and larger) gives wrong results (60% of the outputs
// off, by up to 6 on a Clip(0, 6) output) and reads out of bounds (segfaults with the library
// scratchpad); in nChw16c it is right but only 0.95-0.99x the two convs' time; for 28x28 and
// smaller it runs the two primitives one after the other (ref_fused_convolution, 1.00-1.05x).
//
// Where it pays: banding saves the intermediate tensor's trip through L3/memory but costs a
// primitive execution per band and smaller, less efficient kernels. Measured (standalone, 1
// thread, oneDNN primitives, warm caches vs caches flushed with 40 MB between runs): 112x112x96
// stride 2: 0.96-1.09x warm, 0.54-0.63x cold; 56x56x144 stride 1: 1.06-1.08x warm, 0.63-0.83x
// cold; 28x28x192: 1.07-1.10x warm, 0.95-1.09x cold. So the pass fuses only when the intermediate
// tensor of one image is at least kMinFuseBytes (larger than the L2 cache) and its shape is known
// (static shapes); elsewhere the two FusedConv nodes stay as they are. In mobilenet_v2 (3 pairs
// fused: features.2-4), `opennpu bench` with and without the pass alternated in one run (24
// rounds, load ~1-2 on 2 cores): 1 thread 0.955x, 2 threads 0.955x the latency; profile: features.2
// 0.90 -> 0.65 ms, features.3 0.69 -> 0.48 ms. Fusing every pair (threshold 0, 16 pairs) or from
// 400 KB (9 pairs) measured no better (0.97-1.0x of this). A lone block run over and over (all in
// L3) gains nothing (1.00-1.08x at 1 thread): the win is the model's caches, not the kernel.
// Taking in the projection conv too (kProject): whole model vs without it 0.95-1.02x at 1 thread,
// 0.94-1.00x at 2 (two A/B runs, 24 and 30 rounds: within the noise, not worse); profile, blocks
// features.2-4 summed over 5 runs each: median 1.97 ms with it, 2.64 ms without.
//
// The first conv in general (KxK, strides, pads; not only 1x1): each band computes the first-conv
// rows [from, hi) it needs from the input rows they read, [from*sh - pt, (hi-1)*sh - pt + KH)
// clipped to the image, with the part of the padding that band sees (top rows: the top pads;
// last rows: what the bottom pads still cover), so the top / middle / bottom bands are distinct
// primitives (oneDNN's primitive cache shares the identical middle ones). mobilenet_v2's stem
// (3x3 stride 2 pad 1, 3 -> 32 channels, 224x224 -> 112x112: a 1.6 MB intermediate) with
// features.1 (depthwise 32 + projection 32 -> 16) is then one FusedConvDw of 4 bands of 34 rows
// (oneDNN picks brgconv for the stem rows, brdgmm_dw, brgconv_1x1). Measured (1 thread, load 3-5
// on 2 cores): alone, the three convs run over and over (all in cache) 0.49 ms fused vs 0.475
// unfused: the band primitives are as fast as the whole-image ones (stem rows 0.066-0.069 ms per
// 34-row band vs 0.219 ms whole; dw and projection likewise), nothing to win warm; in the model,
// `opennpu bench` with and without it alternated in one run (median of the per-round ratios /
// ratio of the medians; load 3-5 on 2 cores): 24 rounds of 30 predictions: 1 thread 0.988x /
// 0.983x, 2 threads 0.974x / 0.973x; 40 rounds: 0.971x / 0.979x, 0.954x / 0.957x; 40 rounds:
// 0.965x / 0.980x, 0.975x / 0.978x (about 0.15 ms of 7.8 at 1 thread); profile, the stem's nodes summed (12 runs
// each): median 0.63 ms fused vs 0.69 ms. Band sizes (kBandBytes, whole model, 1 thread): 512 KB
// (kept), 768 KB, 1 MB, 1.5 MB within 0-2% of each other (30 rounds), 256 KB ~4% slower (16). Not done: reading the
// NCHW graph input directly (oneDNN's jit nchw -> nChw16c stem kernel is 7% faster and would
// save the input Transpose, but the depthwise / projection would then run on blocked tensors and
// need a reorder back to NHWC: ~0.03 ms of 7.5 to win).
//
// Threads: the output rows are split into one contiguous part per opennpu thread (each part
// computes the 1x1 rows it needs, so one or two rows on each side of a cut are computed twice),
// handed out by parallel_tasks like FastConv's chunks (conv.cpp); every primitive runs on one
// OpenMP thread, so set_num_threads(N) bounds the threads computing.
#include <dnnl.hpp>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "core/parallel.h"
#include "cpu/fast/conv.h"
#include "cpu/fast/onednn_util.h"

namespace opennpu::cpu {

namespace {

// The pass fuses when the first conv's output for one image is at least this large (L2 is 1 MB a
// core on the machines measured; smaller intermediates stay in L2 unfused and banding only adds
// primitive executions).
constexpr int64_t kMinFuseBytes = 1 << 20;
// Bytes of first-conv output rows a band aims to hold (the buffer stays within L2 next to the
// weights).
constexpr int64_t kBandBytes = 512 << 10;
// Whether the pass also takes in the 1x1 projection conv reading the depthwise conv's output.
constexpr bool kProject = true;

bool is_cpu_conv(const ir::Node& n) { return n.op_type == "FusedConv" && n.domain == kCpuDomain; }

bool simple_activation(const ir::Node& n) {
  const std::string a = n.attr_s("activation", "");
  return a.empty() || a == "Relu" || a == "Clip";
}

bool all_equal(const std::vector<int64_t>& v, int64_t x) {
  return std::all_of(v.begin(), v.end(), [x](int64_t e) { return e == x; });
}

const Tensor* const_f32(const ir::Graph& g, const std::unordered_set<std::string>& graph_inputs, const std::string& n) {
  if (n.empty() || graph_inputs.count(n)) return nullptr;
  auto it = g.initializers.find(n);
  return it == g.initializers.end() || it->second.dtype() != DType::Float32 ? nullptr : &it->second;
}

// Bytes of one image of NHWC value v when its shape is known: the layout pass names the NHWC copy
// of an ONNX value "<name>#nhwc[_k]", whose (NCHW) shape the model's value_info may hold.
int64_t image_bytes(const ir::Graph& g, const std::string& v) {
  const ir::ValueInfo* vi = g.find_value_info(v);
  if (!vi) {
    const auto pos = v.rfind("#nhwc");
    if (pos == std::string::npos) return -1;
    vi = g.find_value_info(v.substr(0, pos));
  }
  if (!vi || !vi->fully_static()) return -1;
  const Shape s = vi->static_shape();
  if (s.size() != 4) return -1;
  return s[1] * s[2] * s[3] * 4;
}

// The 1x1 conv the pass accepts: NHWC FusedConv, weights [M, C, 1, 1], stride 1, no padding,
// group 1, no residual, activation none/Relu/Clip.
bool pointwise_ok(const ir::Graph& g, const std::unordered_set<std::string>& gi, const ir::Node& a, bool residual_ok = false) {
  if (!is_cpu_conv(a) || a.attr_s("layout", "NCHW") != "NHWC" || a.outputs.size() != 1) return false;
  if (!residual_ok && a.inputs.size() > 3 && !a.inputs[3].empty()) return false;
  const Tensor* w = a.inputs.size() > 1 ? const_f32(g, gi, a.inputs[1]) : nullptr;
  if (!w || w->rank() != 4 || w->dim(2) != 1 || w->dim(3) != 1) return false;
  if (a.inputs.size() > 2 && !a.inputs[2].empty()) {
    const Tensor* b = const_f32(g, gi, a.inputs[2]);
    if (!b || b->rank() != 1 || b->dim(0) != w->dim(0)) return false;
  }
  const std::string ap = a.attr_s("auto_pad", "NOTSET");
  return (ap == "NOTSET" || ap == "VALID") && a.attr_i("group", 1) == 1 && all_equal(a.attr_ints("strides"), 1) &&
         all_equal(a.attr_ints("dilations"), 1) && all_equal(a.attr_ints("pads"), 0) && simple_activation(a);
}

// Pads of a conv in the pass's / kernel's terms: {top, left, bottom, right} (auto_pad NOTSET or
// VALID only; empty pads are zeros). False when not of that form.
bool explicit_pads(const std::string& auto_pad, const std::vector<int64_t>& pads, std::vector<int64_t>& out) {
  if (auto_pad == "VALID" || pads.empty()) {
    if (auto_pad != "VALID" && auto_pad != "NOTSET") return false;
    out = {0, 0, 0, 0};
    return true;
  }
  if (auto_pad != "NOTSET" || pads.size() != 4) return false;
  out = {pads[0], pads[1], pads[2], pads[3]};
  return std::all_of(out.begin(), out.end(), [](int64_t p) { return p >= 0; });
}

// The first conv the pass accepts in general: NHWC FusedConv, weights [M, C, KH, KW], group 1,
// dilations 1, strides >= 1, explicit pads each smaller than the kernel (so every output row
// reads at least one input row), no residual, activation none/Relu/Clip (the 1x1 expand convs,
// and e.g. mobilenet_v2's stem: 3x3 stride 2 pads 1).
bool first_conv_ok(const ir::Graph& g, const std::unordered_set<std::string>& gi, const ir::Node& a) {
  if (!is_cpu_conv(a) || a.attr_s("layout", "NCHW") != "NHWC" || a.outputs.size() != 1) return false;
  if (a.inputs.size() > 3 && !a.inputs[3].empty()) return false;
  const Tensor* w = a.inputs.size() > 1 ? const_f32(g, gi, a.inputs[1]) : nullptr;
  if (!w || w->rank() != 4) return false;
  if (a.inputs.size() > 2 && !a.inputs[2].empty()) {
    const Tensor* b = const_f32(g, gi, a.inputs[2]);
    if (!b || b->rank() != 1 || b->dim(0) != w->dim(0)) return false;
  }
  std::vector<int64_t> pads;
  if (!explicit_pads(a.attr_s("auto_pad", "NOTSET"), a.attr_ints("pads"), pads)) return false;
  if (pads[0] >= w->dim(2) || pads[2] >= w->dim(2) || pads[1] >= w->dim(3) || pads[3] >= w->dim(3)) return false;
  const auto st = a.attr_ints("strides");
  if (!st.empty() && (st.size() != 2 || st[0] < 1 || st[1] < 1)) return false;
  return a.attr_i("group", 1) == 1 && all_equal(a.attr_ints("dilations"), 1) && simple_activation(a);
}

// The depthwise conv: NHWC FusedConv, weights [M, 1, 3, 3], group M, pads 1, stride 1 or 2 (both
// dims), no residual, activation none/Relu/Clip.
bool depthwise_ok(const ir::Graph& g, const std::unordered_set<std::string>& gi, const ir::Node& b, int64_t M) {
  if (!is_cpu_conv(b) || b.attr_s("layout", "NCHW") != "NHWC" || b.outputs.size() != 1) return false;
  if (b.inputs.size() > 3 && !b.inputs[3].empty()) return false;
  const Tensor* w = b.inputs.size() > 1 ? const_f32(g, gi, b.inputs[1]) : nullptr;
  if (!w || w->rank() != 4 || w->dim(0) != M || w->dim(1) != 1 || w->dim(2) != 3 || w->dim(3) != 3) return false;
  if (b.inputs.size() > 2 && !b.inputs[2].empty()) {
    const Tensor* bb = const_f32(g, gi, b.inputs[2]);
    if (!bb || bb->rank() != 1 || bb->dim(0) != M) return false;
  }
  const auto st = b.attr_ints("strides");
  if (st.size() != 2 || st[0] != st[1] || (st[0] != 1 && st[0] != 2)) return false;
  const auto pads = b.attr_ints("pads");
  if (pads.size() != 4 || !all_equal(pads, 1)) return false;
  return b.attr_s("auto_pad", "NOTSET") == "NOTSET" && b.attr_i("group", 1) == M &&
         all_equal(b.attr_ints("dilations"), 1) && simple_activation(b);
}

// One of the two convs as a FusedConv node (the attributes with `prefix`, inputs renamed).
ir::Node sub_conv(const ir::Node& n, const std::string& prefix, const std::string& what) {
  ir::Node s;
  s.name = n.name + " (" + what + ")";
  s.op_type = "FusedConv";
  s.domain = kCpuDomain;
  s.inputs = {"X", "W", "B"};
  s.outputs = {"Y"};
  for (const auto& [k, v] : n.attrs)
    if (k.rfind(prefix, 0) == 0) s.attrs[k.substr(prefix.size())] = v;
  if (auto it = n.attrs.find("onnx_opset"); it != n.attrs.end()) s.attrs["onnx_opset"] = it->second;
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Reference kernel.

void fused_conv_dw_reference(KernelContext& ctx) {
  const ir::Node& node = ctx.node();
  ctx.check(ctx.num_inputs() >= 4 && ctx.has_input(3), "FusedConvDw needs inputs X, W1, B1?, W2, B2?");
  const ir::Node pw = sub_conv(node, "pw_", "1x1"), dw = sub_conv(node, "dw_", "depthwise");
  KernelContext c1(pw, {&ctx.input(0), &ctx.input(1), ctx.optional_input(2)}, ctx.opset(), nullptr);
  fused_conv_reference(c1);
  const Tensor mid = std::move(c1.outputs()[0]);
  KernelContext c2(dw, {&mid, &ctx.input(3), ctx.optional_input(4)}, ctx.opset(), nullptr);
  fused_conv_reference(c2);
  if (!ctx.has_input(5)) return ctx.set_output(0, std::move(c2.outputs()[0]));
  const ir::Node pj = sub_conv(node, "pj_", "projection");
  const Tensor d = std::move(c2.outputs()[0]);
  KernelContext c3(pj, {&d, &ctx.input(5), ctx.optional_input(6), ctx.optional_input(7)}, ctx.opset(), nullptr);
  fused_conv_reference(c3);
  ctx.set_output(0, std::move(c3.outputs()[0]));
}

void register_conv_dw_fused(Registry& r) { r.add({"FusedConvDw", kCpuDomain, 1, 1, "float", fused_conv_dw_reference}); }

// ---------------------------------------------------------------------------------------------
// Pass.

int fuse_conv_dw(ir::Model& m, int64_t min_bytes, bool project, bool any_first) {
  ir::Graph& g = m.graph;
  std::unordered_set<std::string> gi, outputs;
  for (const auto& v : g.inputs) gi.insert(v.name);
  for (const auto& v : g.outputs) outputs.insert(v.name);
  std::unordered_map<std::string, std::vector<size_t>> readers;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (const auto& r : ir::node_reads(g.nodes[i])) readers[r].push_back(i);
  std::vector<bool> drop(g.nodes.size(), false);
  int rewrites = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (drop[i]) continue;
    const ir::Node& a = g.nodes[i];
    if (any_first ? !first_conv_ok(g, gi, a) : !pointwise_ok(g, gi, a)) continue;
    const std::string& mid = a.outputs[0];
    auto rit = readers.find(mid);
    if (outputs.count(mid) || rit == readers.end() || rit->second.size() != 1) continue;
    const size_t j = rit->second[0];
    if (j <= i || drop[j]) continue;
    const ir::Node& b = g.nodes[j];
    const int64_t M = g.initializers.at(a.inputs[1]).dim(0);
    if (b.inputs.empty() || b.inputs[0] != mid || !depthwise_ok(g, gi, b, M)) continue;
    if (min_bytes > 0) {
      const int64_t bytes = image_bytes(g, mid);
      if (bytes < min_bytes) continue;  // unknown (-1) or small: the two convs stay
    }
    // The projection: a 1x1 conv (residual allowed) that alone reads the depthwise conv's output.
    long c = -1;
    if (project) {
      auto cit = readers.find(b.outputs[0]);
      if (!outputs.count(b.outputs[0]) && cit != readers.end() && cit->second.size() == 1 && cit->second[0] > j &&
          !drop[cit->second[0]]) {
        const ir::Node& cn = g.nodes[cit->second[0]];
        if (pointwise_ok(g, gi, cn, true) && cn.inputs[0] == b.outputs[0] &&
            g.initializers.at(cn.inputs[1]).dim(1) == M && (cn.inputs.size() < 4 || cn.inputs[3] != cn.inputs[0]))
          c = static_cast<long>(cit->second[0]);
      }
    }
    ir::Node f;
    f.name = a.name + " + " + b.name;
    f.op_type = "FusedConvDw";
    f.domain = kCpuDomain;
    const auto in = [](const ir::Node& n, size_t k) { return n.inputs.size() > k ? n.inputs[k] : std::string(); };
    f.inputs = {a.inputs[0], a.inputs[1], in(a, 2), b.inputs[1], in(b, 2)};
    f.outputs = b.outputs;
    for (const auto& [k, v] : a.attrs)
      if (k != "onnx_opset") f.attrs["pw_" + k] = v;
    for (const auto& [k, v] : b.attrs)
      if (k != "onnx_opset") f.attrs["dw_" + k] = v;
    if (auto it = a.attrs.find("onnx_opset"); it != a.attrs.end()) f.attrs["onnx_opset"] = it->second;
    size_t at = j;  // at the last fused node's place: its other inputs exist there
    if (c >= 0) {
      const ir::Node& cn = g.nodes[static_cast<size_t>(c)];
      f.name += " + " + cn.name;
      for (size_t k : {1u, 2u, 3u}) f.inputs.push_back(in(cn, k));
      while (!f.inputs.empty() && f.inputs.back().empty()) f.inputs.pop_back();
      f.outputs = cn.outputs;
      for (const auto& [k, v] : cn.attrs)
        if (k != "onnx_opset") f.attrs["pj_" + k] = v;
      drop[j] = true;
      at = static_cast<size_t>(c);
    }
    g.nodes[at] = std::move(f);
    drop[i] = true;
    ++rewrites;
  }
  std::vector<ir::Node> kept;
  kept.reserve(g.nodes.size());
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!drop[i]) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
  return rewrites;
}

namespace {
int fuse_conv_dw_default(ir::Model& m) { return fuse_conv_dw(m, kMinFuseBytes, kProject, true); }
}  // namespace

void add_conv_dw_passes(std::vector<CpuPass>& p) { p.push_back({"fuse_conv_dw", fuse_conv_dw_default}); }

// ---------------------------------------------------------------------------------------------
// Fast kernel.

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using ddt = memory::data_type;
using dims = memory::dims;
using onednn::engine;
using onednn::thread_state;
using onednn::ThreadState;

// Per-thread aligned buffers for the bands (unaligned rows made the depthwise conv 20-30% slower):
// first-conv rows; depthwise output rows (with a projection).
float* band_buffer(int k, size_t floats) {
  static thread_local onednn::AlignedBuffer b[2];
  return reinterpret_cast<float*>(b[k].get(floats * sizeof(float)));
}

class FastConvDw final : public PreparedKernel {
 public:
  struct Step {
    dnnl::convolution_forward prim;
    memory::desc src, dst, scratch_desc;
    std::shared_ptr<memory> weights;
    size_t scratch = 0;
  };
  // Output rows [r0, r1) need first-conv rows [lo, hi); rows [lo, from) are already in the
  // buffer (the previous band's last rows, moved to its front), rows [from, hi) are computed from
  // input rows [in0, in1) (with the padding rows the band sees at the image's top / bottom).
  struct Band {
    int64_t r0 = 0, r1 = 0, lo = 0, hi = 0, from = 0, in0 = 0;
    Step pw, dw, pj;  // pj: the projection (when there is one), depthwise rows -> output rows
  };
  struct Plan {
    bool ok = false;
    Shape y_shape;
    std::vector<std::vector<Band>> parts;  // one per thread: contiguous output rows
    int64_t buf_rows = 0, x_image = 0, y_image = 0, row = 0;  // row: floats in one first-conv output row
    int64_t C = 0, W = 0, OW = 0, M = 0, P = 0;  // W: input width; P: output channels
    int64_t buf2 = 0;                            // floats of the depthwise-output band buffer
  };

  FastConvDw(const PrepareContext& pc, KernelFn ref) : ref_(ref) {
    W1_ = *pc.constant(1);
    if (const Tensor* b = pc.constant(2)) B1_ = *b;
    W2_ = *pc.constant(3);
    if (const Tensor* b = pc.constant(4)) B2_ = *b;
    S_ = pc.attr_ints("dw_strides")[0];
    if (const auto st = pc.attr_ints("pw_strides"); st.size() == 2) sh_ = st[0], sw_ = st[1];
    explicit_pads(pc.attr_s("pw_auto_pad", "NOTSET"), pc.attr_ints("pw_pads"), pads1_);
    pw_act_ = pc.attr_s("pw_activation", "");
    dw_act_ = pc.attr_s("dw_activation", "");
    pw_a_ = pc.attr_f("pw_activation_alpha", 0.f), pw_b_ = pc.attr_f("pw_activation_beta", 0.f);
    dw_a_ = pc.attr_f("dw_activation_alpha", 0.f), dw_b_ = pc.attr_f("dw_activation_beta", 0.f);
    if (pc.node().has_input(5)) {
      has_pj_ = true;
      W3_ = *pc.constant(5);
      if (const Tensor* b = pc.constant(6)) B3_ = *b;
      has_z_ = pc.node().has_input(7);
      pj_act_ = pc.attr_s("pj_activation", "");
      pj_a_ = pc.attr_f("pj_activation_alpha", 0.f), pj_b_ = pc.attr_f("pj_activation_beta", 0.f);
    }
  }

  static std::unique_ptr<PreparedKernel> prepare(const PrepareContext& pc, std::string* why) {
    const ir::Node& n = pc.node();
    const Tensor* w1 = pc.constant(1);
    const Tensor* w2 = pc.constant(3);
    if (!w1 || !w2 || w1->dtype() != DType::Float32 || w2->dtype() != DType::Float32 || w1->rank() != 4 || w2->rank() != 4)
      return *why = "weights not constant float32 4-D tensors", nullptr;
    const int64_t M = w1->dim(0);
    if (w2->dim(0) != M || w2->dim(1) != 1 || w2->dim(2) != 3 || w2->dim(3) != 3 || w1->dim(2) < 1 || w1->dim(3) < 1)
      return *why = "weights not [M, C, KH, KW] and [M, 1, 3, 3]", nullptr;
    for (size_t k : {2u, 4u})
      if (n.has_input(k)) {
        const Tensor* b = pc.constant(k);
        if (!b || b->dtype() != DType::Float32 || b->rank() != 1 || b->dim(0) != M)
          return *why = "bias not a constant float32 [M]", nullptr;
      }
    if (n.has_input(5)) {  // the projection
      const Tensor* w3 = pc.constant(5);
      if (!w3 || w3->dtype() != DType::Float32 || w3->rank() != 4 || w3->dim(1) != M || w3->dim(2) != 1 || w3->dim(3) != 1)
        return *why = "projection weights not a constant float32 [P, M, 1, 1]", nullptr;
      if (n.has_input(6)) {
        const Tensor* b = pc.constant(6);
        if (!b || b->dtype() != DType::Float32 || b->rank() != 1 || b->dim(0) != w3->dim(0))
          return *why = "projection bias not a constant float32 [P]", nullptr;
      }
      if (pc.attr_i("pj_group", 1) != 1 || pc.attr_s("pj_layout", "NCHW") != "NHWC" ||
          !all_equal(pc.attr_ints("pj_strides"), 1) || !all_equal(pc.attr_ints("pj_dilations"), 1) ||
          !all_equal(pc.attr_ints("pj_pads"), 0))
        return *why = "projection not a plain NHWC 1x1 conv", nullptr;
      const std::string ap = pc.attr_s("pj_auto_pad", "NOTSET");
      if (ap != "NOTSET" && ap != "VALID") return *why = "projection auto_pad", nullptr;
    } else if (n.has_input(6) || n.has_input(7)) {
      return *why = "projection bias / residual without projection weights", nullptr;
    }
    // What the pass guarantees, checked again (a hand-made node may differ).
    const auto st = pc.attr_ints("dw_strides");
    if (st.size() != 2 || st[0] != st[1] || (st[0] != 1 && st[0] != 2)) return *why = "depthwise stride not 1 or 2", nullptr;
    if (pc.attr_ints("dw_pads") != std::vector<int64_t>{1, 1, 1, 1}) return *why = "depthwise pads not 1", nullptr;
    if (pc.attr_i("dw_group", 1) != M || pc.attr_i("pw_group", 1) != 1) return *why = "groups", nullptr;
    if (pc.attr_s("pw_layout", "NCHW") != "NHWC" || pc.attr_s("dw_layout", "NCHW") != "NHWC")
      return *why = "layout not NHWC", nullptr;
    for (const char* a : {"pw_dilations", "dw_dilations"})
      if (!all_equal(pc.attr_ints(a), 1)) return *why = std::string(a) + " not 1", nullptr;
    const auto st1 = pc.attr_ints("pw_strides");
    if (!st1.empty() && (st1.size() != 2 || st1[0] < 1 || st1[1] < 1)) return *why = "first conv strides", nullptr;
    std::vector<int64_t> pads1;
    if (!explicit_pads(pc.attr_s("pw_auto_pad", "NOTSET"), pc.attr_ints("pw_pads"), pads1))
      return *why = "first conv auto_pad / pads", nullptr;
    if (pads1[0] >= w1->dim(2) || pads1[2] >= w1->dim(2) || pads1[1] >= w1->dim(3) || pads1[3] >= w1->dim(3))
      return *why = "first conv padded by the kernel size or more", nullptr;
    if (pc.attr_s("dw_auto_pad", "NOTSET") != "NOTSET") return *why = "auto_pad", nullptr;
    for (const char* a : {"pw_activation", "dw_activation", "pj_activation"}) {
      const std::string act = pc.attr_s(a, "");
      if (!act.empty() && act != "Relu" && act != "Clip") return *why = "activation " + act, nullptr;
    }
    const KernelDef* ref = reference_of(pc);
    if (!ref) return *why = "no reference kernel", nullptr;
    return std::make_unique<FastConvDw>(pc, ref->fn);
  }

  std::string name() const override { return "onednn_conv_dw"; }
  size_t state_bytes() const override {
    std::lock_guard<std::mutex> lk(mu_);
    size_t b = 0;
    for (const auto& [d, m] : weights_) b += d.get_size();
    return b;
  }

  void run(KernelContext& ctx) const override {
    const Tensor& x = ctx.input(0);
    if (x.dtype() != DType::Float32 || x.rank() != 4 || x.dim(0) == 0 || x.dim(3) != W1_.dim(1) || x.numel() == 0)
      return ref_(ctx);
    const int threads = in_parallel_region() ? 1 : num_threads();
    std::shared_ptr<const Plan> p = plan(x.shape(), threads);
    if (!p->ok) return ref_(ctx);
    Tensor* y = nullptr;
    if (has_z_) {  // residual: the output starts as Z (sum post-op), in Z's buffer when allowed
      const Tensor& z = ctx.input(7);
      if (z.dtype() != DType::Float32 || z.shape() != p->y_shape) return ref_(ctx);
      // (mobilenet's residual blocks read their input twice: the executor then offers it for
      // reuse, but later bands still read X's rows; sum_output copies Z then)
      y = &sum_output(ctx, 7, x, p->y_shape);
    } else {
      y = &ctx.alloc_output(0, DType::Float32, p->y_shape, KernelContext::Init::Uninit);
    }
    const float* xp = x.data<float>();
    float* yp = y->data<float>();
    const float* b1 = B1_.empty_value() ? nullptr : B1_.data<float>();
    const float* b2 = B2_.empty_value() ? nullptr : B2_.data<float>();
    const float* b3 = B3_.empty_value() ? nullptr : B3_.data<float>();
    const memory::desc bias({p->M}, ddt::f32, tag::x), bias3({p->P}, ddt::f32, tag::x);
    const int64_t np = static_cast<int64_t>(p->parts.size());
    auto exec = [&](int64_t task) {
      const auto& bands = p->parts[static_cast<size_t>(task % np)];
      const int64_t n = task / np;
      ThreadState& ts = thread_state();
      float* buf = band_buffer(0, static_cast<size_t>(p->buf_rows * p->row));
      float* buf2 = has_pj_ ? band_buffer(1, static_cast<size_t>(p->buf2)) : nullptr;
      const float* xi = xp + n * p->x_image;
      float* yi = yp + n * p->y_image;
      omp_set_num_threads(1);
      auto run_step = [&](const Step& s, const void* src, void* dst, const float* b, const memory::desc& bd) {
        memory ms(s.src, engine(), const_cast<void*>(src)), md(s.dst, engine(), dst);
        std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, *s.weights}, {DNNL_ARG_DST, md}};
        if (b) args.emplace(DNNL_ARG_BIAS, memory(bd, engine(), const_cast<float*>(b)));
        if (s.scratch) args.emplace(DNNL_ARG_SCRATCHPAD, memory(s.scratch_desc, engine(), ts.scratchpad(s.scratch)));
        s.prim.execute(ts.stream, args);
        ts.stream.wait();
      };
      int64_t held_lo = 0;  // the 1x1 row at the buffer's front
      for (const Band& bd : bands) {
        if (bd.from > bd.lo) {  // keep rows [lo, from) of the previous band: move them to the front
          if (bd.lo != held_lo)
            std::memmove(buf, buf + (bd.lo - held_lo) * p->row, static_cast<size_t>((bd.from - bd.lo) * p->row) * sizeof(float));
        }
        if (bd.hi > bd.from) run_step(bd.pw, xi + bd.in0 * p->W * p->C, buf + (bd.from - bd.lo) * p->row, b1, bias);
        held_lo = bd.lo;
        float* yrows = yi + bd.r0 * p->OW * p->P;
        if (!has_pj_) {
          run_step(bd.dw, buf, yrows, b2, bias);
        } else {
          run_step(bd.dw, buf, buf2, b2, bias);
          run_step(bd.pj, buf2, yrows, b3, bias3);
        }
      }
    };
    const int64_t tasks = x.dim(0) * np;
    if (tasks == 1 || threads == 1) {
      for (int64_t t = 0; t < tasks; ++t) exec(t);
      return;
    }
    parallel_tasks(tasks, exec);
  }

 private:
  std::shared_ptr<const Plan> plan(const Shape& xs, int threads) const {
    std::lock_guard<std::mutex> lk(mu_);
    auto key = std::make_pair(xs, threads);
    if (auto it = plans_.find(key); it != plans_.end()) return it->second;
    auto p = std::make_shared<Plan>();
    omp_set_num_threads(1);  // primitives run single-threaded (see conv.cpp, FastConv::plan)
    try {
      build(xs, threads, *p);
    } catch (const dnnl::error&) {
      p->ok = false;
    }
    plans_[key] = p;
    return p;
  }

  enum class Kind { Pointwise, Depthwise, Projection };
  // A step's conv on row ranges: strides st, padding pl (top, left) and pr (bottom, right).
  Step make_step(const memory::desc& src, const memory::desc& dst, Kind kind, const dims& st, const dims& pl,
                 const dims& pr) const {
    Step s;
    s.src = src, s.dst = dst;
    const bool dwk = kind == Kind::Depthwise;
    const int64_t M = W1_.dim(0), C = W1_.dim(1);
    const Tensor& w = kind == Kind::Pointwise ? W1_ : dwk ? W2_ : W3_;
    const Tensor& b = kind == Kind::Pointwise ? B1_ : dwk ? B2_ : B3_;
    const int64_t O = w.dim(0);
    const dims wd = dwk ? dims{M, 1, 1, 3, 3} : kind == Kind::Pointwise ? dims{O, C, w.dim(2), w.dim(3)} : dims{O, M, 1, 1};
    memory::desc wany(wd, ddt::f32, tag::any), bias({O}, ddt::f32, tag::x);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (kind == Kind::Pointwise) attr.set_post_ops(onednn::conv_post_ops(pw_act_, pw_a_, pw_b_, false));
    else if (kind == Kind::Depthwise) attr.set_post_ops(onednn::conv_post_ops(dw_act_, dw_a_, dw_b_, false));
    else attr.set_post_ops(onednn::conv_post_ops(pj_act_, pj_a_, pj_b_, has_z_));
    const bool has_b = !b.empty_value();
    const auto prop = dnnl::prop_kind::forward_inference;
    const auto alg = dnnl::algorithm::convolution_direct;
    const dims dl{0, 0};
    auto d = has_b ? dnnl::convolution_forward::desc(prop, alg, src, wany, bias, dst, st, dl, pl, pr)
                   : dnnl::convolution_forward::desc(prop, alg, src, wany, dst, st, dl, pl, pr);
    dnnl::convolution_forward::primitive_desc pd(d, attr, engine());
    if (is_reference_impl(pd.impl_info_str())) throw dnnl::error(dnnl_unimplemented, "reference implementation");
    s.prim = dnnl::convolution_forward(pd);
    s.scratch_desc = pd.scratchpad_desc();
    s.scratch = s.scratch_desc.get_size();
    s.weights = weights_for(pd.weights_desc(), wd, w, dwk ? tag::goihw : tag::oihw);
    return s;
  }

  void build(const Shape& xs, int threads, Plan& p) const {
    const int64_t N = xs[0], H = xs[1], Wd = xs[2], C = xs[3], M = W1_.dim(0), S = S_;
    const int64_t KH = W1_.dim(2), KW = W1_.dim(3), pt1 = pads1_[0], pl1 = pads1_[1], pb1 = pads1_[2], pr1 = pads1_[3];
    if (H + pt1 + pb1 < KH || Wd + pl1 + pr1 < KW) return;  // no output: the reference kernel says why
    const int64_t H1 = (H + pt1 + pb1 - KH) / sh_ + 1, W1 = (Wd + pl1 + pr1 - KW) / sw_ + 1;  // first conv's output
    const int64_t OH = (H1 - 1) / S + 1, OW = (W1 - 1) / S + 1;  // depthwise 3x3, pads 1
    try {
      if (static_cast<uint64_t>(checked_numel({N, H1, W1, M})) > max_tensor_bytes() / sizeof(float)) return;
    } catch (const Error&) {
      return;
    }
    const int64_t P = has_pj_ ? W3_.dim(0) : M;
    p.C = C, p.W = Wd, p.OW = OW, p.M = M, p.P = P;
    p.row = W1 * M;
    p.x_image = H * Wd * C;
    p.y_image = OH * OW * P;
    p.y_shape = {N, OH, OW, P};
    // Output rows per band: about kBandBytes of first-conv rows (at least one output row).
    const int64_t rows_in = std::max<int64_t>(3, kBandBytes / std::max<int64_t>(1, p.row * 4));
    const int64_t br = std::max<int64_t>(1, (rows_in - 3) / S + 1);
    const int64_t T = std::min<int64_t>(threads, OH);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t q0 = OH * t / T, q1 = OH * (t + 1) / T;
      if (q1 == q0) continue;
      std::vector<Band> bands;
      int64_t held_hi = -1;
      for (int64_t r0 = q0; r0 < q1; r0 += br) {
        Band bd;
        bd.r0 = r0, bd.r1 = std::min(q1, r0 + br);
        const int64_t lo = bd.r0 * S - 1, hi = (bd.r1 - 1) * S - 1 + 3;
        const int64_t pt = std::max<int64_t>(0, -lo), pb = std::max<int64_t>(0, hi - H1);
        bd.lo = std::max<int64_t>(lo, 0), bd.hi = std::min(hi, H1);
        bd.from = held_hi > bd.lo ? held_hi : bd.lo;
        if (bd.hi > bd.from) {
          // First-conv rows [from, hi) read input rows [a, b), the part outside the image padding.
          const int64_t a = bd.from * sh_ - pt1, b = (bd.hi - 1) * sh_ - pt1 + KH;
          bd.in0 = std::max<int64_t>(a, 0);
          const int64_t in1 = std::min(b, H);
          bd.pw = make_step(memory::desc({1, C, in1 - bd.in0, Wd}, ddt::f32, tag::nhwc),
                            memory::desc({1, M, bd.hi - bd.from, W1}, ddt::f32, tag::nhwc), Kind::Pointwise, {sh_, sw_},
                            {bd.in0 - a, pl1}, {b - in1, pr1});
        }
        const memory::desc drows({1, M, bd.r1 - bd.r0, OW}, ddt::f32, tag::nhwc);
        bd.dw = make_step(memory::desc({1, M, bd.hi - bd.lo, W1}, ddt::f32, tag::nhwc), drows, Kind::Depthwise, {S, S},
                          {pt, 1}, {pb, 1});
        if (has_pj_) {
          bd.pj = make_step(drows, memory::desc({1, P, bd.r1 - bd.r0, OW}, ddt::f32, tag::nhwc), Kind::Projection, {1, 1},
                            {0, 0}, {0, 0});
          p.buf2 = std::max(p.buf2, (bd.r1 - bd.r0) * OW * M);
        }
        p.buf_rows = std::max(p.buf_rows, bd.hi - bd.lo);
        held_hi = bd.hi;
        bands.push_back(std::move(bd));
      }
      p.parts.push_back(std::move(bands));
    }
    p.ok = true;
  }

  // The weights w in layout wd, reordered once per layout (callers hold mu_).
  std::shared_ptr<memory> weights_for(const memory::desc& wd, const dims& wdims, const Tensor& w, tag plain_tag) const {
    for (const auto& [desc, mem] : weights_)
      if (desc == wd && mem.first == &w) return mem.second;
    auto mem = std::make_shared<memory>(wd, engine());
    memory::desc plain(wdims, ddt::f32, plain_tag);
    memory src(plain, engine(), const_cast<void*>(w.raw()));
    dnnl::stream s(engine());
    dnnl::reorder(src, *mem).execute(s, src, *mem);
    s.wait();
    weights_.emplace_back(wd, std::make_pair(&w, mem));
    return mem;
  }

  KernelFn ref_;
  Tensor W1_, B1_, W2_, B2_, W3_, B3_;
  int64_t S_ = 1;
  int64_t sh_ = 1, sw_ = 1;                // the first conv's strides
  std::vector<int64_t> pads1_{0, 0, 0, 0};  // and pads (top, left, bottom, right)
  bool has_pj_ = false, has_z_ = false;
  std::string pw_act_, dw_act_, pj_act_;
  float pw_a_ = 0, pw_b_ = 0, dw_a_ = 0, dw_b_ = 0, pj_a_ = 0, pj_b_ = 0;
  mutable std::mutex mu_;
  mutable std::map<std::pair<Shape, int>, std::shared_ptr<const Plan>> plans_;
  mutable std::vector<std::pair<memory::desc, std::pair<const Tensor*, std::shared_ptr<memory>>>> weights_;
};

}  // namespace

void register_fast_conv_dw(FastRegistry& r) { r.add({"FusedConvDw", kCpuDomain, "onednn_conv_dw", FastConvDw::prepare}); }

}  // namespace opennpu::cpu
