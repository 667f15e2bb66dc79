// cpu/fast/transformer.cpp — transformer graph passes and fast kernels for the CPU backend.
//
// Passes (on the Executor's private copy, cpu/fast/fuse.h), in this order:
//   fuse_layernorm    ReduceMean(x) / Sub / Pow 2 / ReduceMean / Add eps / Sqrt / Div [/ Mul gamma
//                     / Add beta] (LayerNorm as exported decomposed) -> opennpu.cpu LayerNorm
//   fuse_matmul_bias  MatMul(A, W const 2-D) + Add(bias const [N]) -> opennpu.cpu FusedMatMul
//   fuse_gelu         y * 0.5 * (1 + Erf(y / sqrt 2)) (torch's exact GELU, either Mul order) ->
//                     FusedMatMul activation=Gelu when y is a FusedMatMul/MatMul output read only by
//                     the pattern, else opennpu.cpu Gelu
// Each fused op has a reference kernel here that is literally the composition of the reference
// ops it replaces (so the executor can always fall back and tests compare against it).
//
// Fast kernels: LayerNorm (and ONNX LayerNormalization on the last axis), Softmax on the last
// axis, Gelu — vectorised with AVX-512 or AVX2 chosen at run time (cpu_features()). exp is a
// degree-6 polynomial after range reduction (|r| <= ln2/2): relative error <= 2e-7 for x in
// [-87, 88] (tests/cpu/test_fast_matmul checks 5e-7 through softmax). The standalone Gelu uses
// std::erf per element; the GELU folded into FusedMatMul is oneDNN's eltwise_gelu_erf post-op
// (checked against the ONNX-op composition to 1e-4 of the output scale).
#include <immintrin.h>

// GCC 12 warns inside its own AVX-512 intrinsic headers (_mm512_undefined_ps) on masked ops.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <cmath>
#include <cstring>

#include "core/parallel.h"
#include "core/target_clones.h"
#include "cpu/fast/fast.h"
#include "cpu/fast/fuse.h"
#include "cpu/kernel.h"

namespace opennpu::cpu {

namespace {

constexpr float kSqrt2 = 1.41421356237309504880f;

// ---- reference composition helpers ------------------------------------------------------------

ir::Attribute attr_ints(std::vector<int64_t> v) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::Ints;
  a.ints = std::move(v);
  return a;
}

// Runs the reference kernel of ONNX op `op` (opset 13) on the given inputs; returns output 0.
Tensor ref(const KernelContext& outer, const std::string& op, std::vector<const Tensor*> ins,
           std::map<std::string, ir::Attribute> attrs = {}) {
  const KernelDef* k = registry().find("", op, 13);
  if (!k) outer.fail("no reference kernel for {}", op);
  ir::Node n;
  n.name = outer.node().name + "/" + op;
  n.op_type = op;
  for (size_t i = 0; i < ins.size(); ++i) n.inputs.push_back("in" + std::to_string(i));
  n.outputs = {"y"};
  n.attrs = std::move(attrs);
  KernelContext ctx(n, std::move(ins), 13, nullptr);
  k->fn(ctx);
  return ctx.outputs()[0];
}

Tensor scalar_f(float v) {
  Tensor t(DType::Float32, Shape{});
  t.data<float>()[0] = v;
  return t;
}

Tensor ref_gelu(const KernelContext& c, const Tensor& y) {
  Tensor s2 = scalar_f(kSqrt2), one = scalar_f(1.0f), half = scalar_f(0.5f);
  Tensor d = ref(c, "Div", {&y, &s2});
  Tensor e = ref(c, "Erf", {&d});
  Tensor a = ref(c, "Add", {&e, &one});
  Tensor m = ref(c, "Mul", {&y, &a});
  return ref(c, "Mul", {&m, &half});
}

// FusedMatMul(A, B, bias?) activation: MatMul, Add bias, then Relu or Gelu.
void FusedMatMulRef(KernelContext& ctx) {
  Tensor y = ref(ctx, "MatMul", {&ctx.input(0), &ctx.input(1)});
  if (const Tensor* b = ctx.optional_input(2)) y = ref(ctx, "Add", {&y, b});
  const std::string act = ctx.node().attr_s("activation", "");
  if (act == "Relu") y = ref(ctx, "Relu", {&y});
  else if (act == "Gelu") y = ref_gelu(ctx, y);
  else if (!act.empty()) ctx.fail("unknown activation '{}'", act);
  ctx.set_output(0, y);
}

// Gelu(x) = x * 0.5 * (1 + erf(x / sqrt 2)) as the ONNX ops compute it.
void GeluRef(KernelContext& ctx) { ctx.set_output(0, ref_gelu(ctx, ctx.input(0))); }

// LayerNorm(x, gamma?, beta?) epsilon over the last axis, as the decomposed export computes it.
void LayerNormRef(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  std::map<std::string, ir::Attribute> ax{{"axes", attr_ints({-1})}};
  Tensor two = scalar_f(2.0f), eps = scalar_f(ctx.node().attr_f("epsilon", 1e-5f));
  Tensor m = ref(ctx, "ReduceMean", {&x}, ax);
  Tensor d = ref(ctx, "Sub", {&x, &m});
  Tensor p = ref(ctx, "Pow", {&d, &two});
  Tensor v = ref(ctx, "ReduceMean", {&p}, ax);
  Tensor ve = ref(ctx, "Add", {&v, &eps});
  Tensor s = ref(ctx, "Sqrt", {&ve});
  Tensor y = ref(ctx, "Div", {&d, &s});
  if (const Tensor* g = ctx.optional_input(1)) y = ref(ctx, "Mul", {&y, g});
  if (const Tensor* b = ctx.optional_input(2)) y = ref(ctx, "Add", {&y, b});
  ctx.set_output(0, y);
}

// ---- passes -------------------------------------------------------------------------------------

// The initializer `name` when it is a true constant (not overridable by a feed), else null.
const Tensor* const_init(const ir::Graph& g, const std::string& name) {
  auto it = g.initializers.find(name);
  if (it == g.initializers.end()) return nullptr;
  for (const auto& in : g.inputs)
    if (in.name == name) return nullptr;
  return &it->second;
}

bool const_scalar(const ir::Graph& g, const std::string& name, float* v) {
  const Tensor* t = const_init(g, name);
  if (!t || t->dtype() != DType::Float32 || t->numel() != 1) return false;
  *v = t->data<float>()[0];
  return true;
}

// Readers of each value (node indices), recomputed per pass.
struct Uses {
  std::map<std::string, std::vector<int>> readers;
  std::map<std::string, int> producer;
  const ir::Graph& g;
  explicit Uses(const ir::Graph& graph) : g(graph) {
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      for (const auto& r : ir::node_reads(g.nodes[i])) readers[r].push_back(static_cast<int>(i));
      for (const auto& o : g.nodes[i].outputs)
        if (!o.empty()) producer[o] = static_cast<int>(i);
    }
  }
  bool is_output(const std::string& v) const {
    for (const auto& o : g.outputs)
      if (o.name == v) return true;
    return false;
  }
  // The single node reading v (and v is no graph output), or -1.
  int only_reader(const std::string& v) const {
    auto it = readers.find(v);
    if (it == readers.end() || it->second.size() != 1 || is_output(v)) return -1;
    return it->second[0];
  }
  const std::vector<int>& of(const std::string& v) const {
    static const std::vector<int> none;
    auto it = readers.find(v);
    return it == readers.end() ? none : it->second;
  }
  int prod(const std::string& v) const {
    auto it = producer.find(v);
    return it == producer.end() ? -1 : it->second;
  }
};

bool is_op(const ir::Node& n, const char* op) { return n.op_type == op && (n.domain.empty() || n.domain == "ai.onnx"); }

// For a binary node n reading v, the other input.
std::string other_input(const ir::Node& n, const std::string& v) {
  if (n.inputs.size() != 2) return "";
  if (n.inputs[0] == v) return n.inputs[1];
  if (n.inputs[1] == v) return n.inputs[0];
  return "";
}

// Removes the marked nodes and puts each replacement at its anchor's position.
void rewrite(ir::Graph& g, const std::vector<bool>& dead, std::map<int, ir::Node>& repl) {
  std::vector<ir::Node> out;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (auto it = repl.find(static_cast<int>(i)); it != repl.end()) out.push_back(std::move(it->second));
    else if (!dead[i]) out.push_back(std::move(g.nodes[i]));
  }
  g.nodes = std::move(out);
}

// What a fusion pass collects while it walks the graph: the nodes to remove and the replacement
// nodes, each keyed by the index of the node whose position it takes (its anchor).
struct Fusions {
  std::vector<bool> dead;
  std::map<int, ir::Node> repl;
  int count = 0;
  explicit Fusions(const ir::Graph& g) : dead(g.nodes.size(), false) {}
  // Whether one of `nodes` is already removed or replaced by an earlier match.
  bool taken(const std::vector<int>& nodes) const {
    for (int k : nodes)
      if (dead[k] || repl.count(k)) return true;
    return false;
  }
  // Removes `nodes` and puts `f` at the position of `anchor`.
  void replace(const std::vector<int>& nodes, int anchor, ir::Node f) {
    for (int k : nodes) dead[k] = true;
    repl[anchor] = std::move(f);
    ++count;
  }
  // Rewrites g; returns the number of fusions.
  int apply(ir::Graph& g) {
    if (count) rewrite(g, dead, repl);
    return count;
  }
};

// A node of the opennpu.cpu domain.
ir::Node cpu_node(std::string name, const char* op, std::vector<std::string> inputs, std::vector<std::string> outputs) {
  ir::Node n;
  n.name = std::move(name);
  n.op_type = op;
  n.domain = kCpuDomain;
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  return n;
}

bool reduce_last_axis(const ir::Graph& g, const ir::Node& n) {
  if (!is_op(n, "ReduceMean") || n.inputs.size() != 1 || n.attr_i("keepdims", 1) != 1) return false;
  auto axes = n.attr_ints("axes");
  if (axes.size() != 1) return false;
  if (axes[0] == -1) return true;
  const ir::ValueInfo* vi = g.find_value_info(n.inputs[0]);
  return vi && vi->has_shape && axes[0] == static_cast<int64_t>(vi->dims.size()) - 1;
}

int fuse_layernorm(ir::Model& m) {
  ir::Graph& g = m.graph;
  Uses u(g);
  Fusions fx(g);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const ir::Node& rm = g.nodes[i];
    if (fx.dead[i] || !reduce_last_axis(g, rm)) continue;
    const std::string& x = rm.inputs[0];
    const std::string& mean = rm.outputs[0];
    int isub = u.only_reader(mean);
    if (isub < 0 || !is_op(g.nodes[isub], "Sub") || g.nodes[isub].inputs[0] != x || g.nodes[isub].inputs[1] != mean) continue;
    const std::string& d = g.nodes[isub].outputs[0];
    const auto& dr = u.of(d);
    if (dr.size() != 2 || u.is_output(d)) continue;
    int ipow = -1, idiv = -1;
    for (int r : dr) {
      if (is_op(g.nodes[r], "Pow") && g.nodes[r].inputs[0] == d) ipow = r;
      if (is_op(g.nodes[r], "Div") && g.nodes[r].inputs[0] == d) idiv = r;
    }
    float c;
    if (ipow < 0 || idiv < 0 || !const_scalar(g, g.nodes[ipow].inputs[1], &c) || c != 2.0f) continue;
    int irm2 = u.only_reader(g.nodes[ipow].outputs[0]);
    if (irm2 < 0 || !reduce_last_axis(g, g.nodes[irm2])) continue;
    int iadd = u.only_reader(g.nodes[irm2].outputs[0]);
    if (iadd < 0 || !is_op(g.nodes[iadd], "Add")) continue;
    float eps;
    if (!const_scalar(g, other_input(g.nodes[iadd], g.nodes[irm2].outputs[0]), &eps)) continue;
    int isqrt = u.only_reader(g.nodes[iadd].outputs[0]);
    if (isqrt < 0 || !is_op(g.nodes[isqrt], "Sqrt")) continue;
    if (u.only_reader(g.nodes[isqrt].outputs[0]) != idiv || g.nodes[idiv].inputs[1] != g.nodes[isqrt].outputs[0]) continue;
    std::vector<int> nodes{static_cast<int>(i), isub, ipow, irm2, iadd, isqrt, idiv};
    std::string out = g.nodes[idiv].outputs[0], gamma, beta;
    auto rank1_f32 = [&](const std::string& v) {
      const Tensor* t = const_init(g, v);
      return t && t->dtype() == DType::Float32 && t->rank() == 1;
    };
    int imul = u.only_reader(out);
    if (imul >= 0 && is_op(g.nodes[imul], "Mul") && rank1_f32(other_input(g.nodes[imul], out))) {
      gamma = other_input(g.nodes[imul], out);
      nodes.push_back(imul);
      out = g.nodes[imul].outputs[0];
      int ib = u.only_reader(out);
      if (ib >= 0 && is_op(g.nodes[ib], "Add") && rank1_f32(other_input(g.nodes[ib], out))) {
        beta = other_input(g.nodes[ib], out);
        nodes.push_back(ib);
        out = g.nodes[ib].outputs[0];
      }
    }
    if (fx.taken(nodes)) continue;
    ir::Node ln = cpu_node(g.nodes[isub].name + "/LayerNorm", "LayerNorm", {x, gamma, beta}, {out});
    while (!ln.inputs.empty() && ln.inputs.back().empty()) ln.inputs.pop_back();
    ir::Attribute e;
    e.kind = ir::Attribute::Kind::Float;
    e.f = eps;
    ln.attrs["epsilon"] = e;
    fx.replace(nodes, *std::max_element(nodes.begin(), nodes.end()), std::move(ln));
  }
  return fx.apply(g);
}

int fuse_matmul_bias(ir::Model& m) {
  ir::Graph& g = m.graph;
  Uses u(g);
  Fusions fx(g);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const ir::Node& mm = g.nodes[i];
    if (!is_op(mm, "MatMul") || mm.inputs.size() != 2) continue;
    const Tensor* W = const_init(g, mm.inputs[1]);
    if (!W || W->dtype() != DType::Float32 || W->rank() != 2) continue;
    int ia = u.only_reader(mm.outputs[0]);
    if (ia < 0 || !is_op(g.nodes[ia], "Add") || fx.dead[ia]) continue;
    const std::string bias = other_input(g.nodes[ia], mm.outputs[0]);
    const Tensor* B = const_init(g, bias);
    if (!B || B->dtype() != DType::Float32 || B->rank() != 1 || B->dim(0) != W->dim(1)) continue;
    fx.replace({static_cast<int>(i), ia}, ia,
               cpu_node(mm.name + "/FusedMatMul", "FusedMatMul", {mm.inputs[0], mm.inputs[1], bias}, {g.nodes[ia].outputs[0]}));
  }
  return fx.apply(g);
}

int fuse_gelu(ir::Model& m) {
  ir::Graph& g = m.graph;
  Uses u(g);
  Fusions fx(g);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const ir::Node& dv = g.nodes[i];
    float c;
    if (!is_op(dv, "Div") || dv.inputs.size() != 2 || !const_scalar(g, dv.inputs[1], &c) || std::fabs(c - kSqrt2) > 1e-6f)
      continue;
    const std::string y = dv.inputs[0];
    int ierf = u.only_reader(dv.outputs[0]);
    if (ierf < 0 || !is_op(g.nodes[ierf], "Erf")) continue;
    int iadd = u.only_reader(g.nodes[ierf].outputs[0]);
    if (iadd < 0 || !is_op(g.nodes[iadd], "Add") || !const_scalar(g, other_input(g.nodes[iadd], g.nodes[ierf].outputs[0]), &c) ||
        c != 1.0f)
      continue;
    const std::string a = g.nodes[iadd].outputs[0];
    int im1 = u.only_reader(a);
    if (im1 < 0 || !is_op(g.nodes[im1], "Mul")) continue;
    std::vector<int> nodes{static_cast<int>(i), ierf, iadd, im1};
    std::string m1in = other_input(g.nodes[im1], a), out;
    if (m1in == y) {  // (y * (1 + erf)) * 0.5
      int im2 = u.only_reader(g.nodes[im1].outputs[0]);
      if (im2 < 0 || !is_op(g.nodes[im2], "Mul") ||
          !const_scalar(g, other_input(g.nodes[im2], g.nodes[im1].outputs[0]), &c) || c != 0.5f)
        continue;
      nodes.push_back(im2);
      out = g.nodes[im2].outputs[0];
    } else {  // (y * 0.5) * (1 + erf)
      int ih = u.prod(m1in);
      if (ih < 0 || !is_op(g.nodes[ih], "Mul") || u.only_reader(m1in) != im1 || other_input(g.nodes[ih], y).empty() ||
          !const_scalar(g, other_input(g.nodes[ih], y), &c) || c != 0.5f)
        continue;
      nodes.push_back(ih);
      out = g.nodes[im1].outputs[0];
    }
    // The producer of y takes the activation when the pattern is y's only reader (Div and one Mul).
    if (fx.taken(nodes)) continue;
    int anchor = *std::max_element(nodes.begin(), nodes.end());
    int ip = u.prod(y);
    const bool fold = ip >= 0 && !fx.taken({ip}) && u.of(y).size() == 2 && !u.is_output(y) &&
                      ((g.nodes[ip].op_type == "FusedMatMul" && g.nodes[ip].domain == kCpuDomain &&
                        g.nodes[ip].attr_s("activation", "").empty()) ||
                       (is_op(g.nodes[ip], "MatMul") && const_init(g, g.nodes[ip].inputs[1]) &&
                        const_init(g, g.nodes[ip].inputs[1])->rank() == 2 &&
                        const_init(g, g.nodes[ip].inputs[1])->dtype() == DType::Float32));
    ir::Node f;
    if (fold) {
      f = g.nodes[ip];
      if (is_op(f, "MatMul")) {
        f.op_type = "FusedMatMul";
        f.domain = kCpuDomain;
        f.name += "/FusedMatMul";
      }
      fx.dead[ip] = true;
    } else {
      f = cpu_node(dv.name + "/Gelu", "Gelu", {y}, {});
    }
    ir::Attribute act;
    act.kind = ir::Attribute::Kind::String;
    act.s = "Gelu";
    if (fold) f.attrs["activation"] = act;
    f.outputs = {out};
    fx.replace(nodes, anchor, std::move(f));
  }
  return fx.apply(g);
}

// ---- fast kernels -------------------------------------------------------------------------------

// Output 0 as a float32 tensor of X's shape (X is input 0): input 0's buffer when the executor
// lets the kernel reuse it, else a new uninitialised one.
Tensor& output_like_input0(KernelContext& ctx, const Tensor& X) {
  return ctx.input_reusable(0) ? ctx.reuse_input_as_output(0, 0, X.shape())
                               : ctx.alloc_output(0, DType::Float32, X.shape(), KernelContext::Init::Uninit);
}

// exp for x <= 88.7 (inputs below -87.3 give ~1e-38 rather than 0 / denormals).
__attribute__((target("avx512f"))) inline __m512 exp512(__m512 x) {
  // (constant first: min/max return the second operand on NaN, so NaN propagates)
  x = _mm512_max_ps(_mm512_set1_ps(-87.3f), _mm512_min_ps(_mm512_set1_ps(88.7f), x));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

__attribute__((target("avx2,fma"))) inline __m256 exp256(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-87.3f), _mm256_min_ps(_mm256_set1_ps(88.7f), x));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.f / 720);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  // 2^n for n in [-126, 128): (n + 127) << 23; n = 128 (x near 88.7) is split as 2 * 2^(n-1).
  __m256i ni = _mm256_cvtps_epi32(n);
  __m256i hi = _mm256_srli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(1)), 1);  // ceil(n/2) >= -62
  __m256i lo = _mm256_sub_epi32(ni, hi);
  __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(hi, _mm256_set1_epi32(127)), 23));
  __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(lo, _mm256_set1_epi32(127)), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

// Softmax of rows of length n, in place allowed (y may equal x).
__attribute__((target("avx512f"))) void softmax_rows_avx512(const float* x, float* y, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    __m512 mx = _mm512_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(xr + j));
    __mmask16 tail = static_cast<__mmask16>((1u << (n - j)) - 1);
    if (j < n) mx = _mm512_mask_max_ps(mx, tail, mx, _mm512_maskz_loadu_ps(tail, xr + j));
    const float m = _mm512_reduce_max_ps(mx);
    const __m512 vm = _mm512_set1_ps(m);
    __m512 sum = _mm512_setzero_ps();
    for (j = 0; j + 16 <= n; j += 16) {
      __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(xr + j), vm));
      _mm512_storeu_ps(yr + j, e);
      sum = _mm512_add_ps(sum, e);
    }
    if (j < n) {
      __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, xr + j), vm));
      _mm512_mask_storeu_ps(yr + j, tail, e);
      sum = _mm512_mask_add_ps(sum, tail, sum, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (j = 0; j + 16 <= n; j += 16) _mm512_storeu_ps(yr + j, _mm512_mul_ps(_mm512_loadu_ps(yr + j), inv));
    if (j < n) _mm512_mask_storeu_ps(yr + j, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, yr + j), inv));
  }
}

__attribute__((target("avx2,fma"))) void softmax_rows_avx2(const float* x, float* y, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    __m256 mx = _mm256_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(xr + j));
    float mv[8];
    _mm256_storeu_ps(mv, mx);
    float m = -INFINITY;
    for (float v : mv) m = std::max(m, v);
    for (int64_t k = j; k < n; ++k) m = std::max(m, xr[k]);
    const __m256 vm = _mm256_set1_ps(m);
    __m256 sum = _mm256_setzero_ps();
    for (j = 0; j + 8 <= n; j += 8) {
      __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(xr + j), vm));
      _mm256_storeu_ps(yr + j, e);
      sum = _mm256_add_ps(sum, e);
    }
    float sv[8];
    _mm256_storeu_ps(sv, sum);
    double s = 0;
    for (float v : sv) s += v;
    for (int64_t k = j; k < n; ++k) s += (yr[k] = std::exp(xr[k] - m));
    const float inv = static_cast<float>(1.0 / s);
    const __m256 vi = _mm256_set1_ps(inv);
    for (j = 0; j + 8 <= n; j += 8) _mm256_storeu_ps(yr + j, _mm256_mul_ps(_mm256_loadu_ps(yr + j), vi));
    for (int64_t k = j; k < n; ++k) yr[k] *= inv;
  }
}

void softmax_rows_scalar(const float* x, float* y, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    float m = -INFINITY;
    for (int64_t j = 0; j < n; ++j) m = std::max(m, xr[j]);
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += (yr[j] = std::exp(xr[j] - m));
    const float inv = static_cast<float>(1.0 / s);
    for (int64_t j = 0; j < n; ++j) yr[j] *= inv;
  }
}

void softmax_rows(const float* x, float* y, int64_t rows, int64_t n) {
  const auto& f = cpu_features();
  if (f.avx512f) softmax_rows_avx512(x, y, rows, n);
  else if (f.avx2 && f.fma) softmax_rows_avx2(x, y, rows, n);
  else softmax_rows_scalar(x, y, rows, n);
}

// LayerNorm of rows of length n: (x - mean) / sqrt(var + eps) * g + b, g/b of length n or 1 (or null).
OPENNPU_TARGET_CLONES
void layernorm_rows(const float* x, float* y, int64_t rows, int64_t n, float eps, const float* g, int64_t gn,
                    const float* b, int64_t bn) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    float acc[16] = {0};
    int64_t j = 0;
    for (; j + 16 <= n; j += 16)
      for (int k = 0; k < 16; ++k) acc[k] += xr[j + k];
    float s = 0;
    for (int k = 0; k < 16; ++k) s += acc[k];
    for (; j < n; ++j) s += xr[j];
    const float mean = s / static_cast<float>(n);
    float acc2[16] = {0};
    for (j = 0; j + 16 <= n; j += 16)
      for (int k = 0; k < 16; ++k) {
        float d = xr[j + k] - mean;
        acc2[k] += d * d;
      }
    float v = 0;
    for (int k = 0; k < 16; ++k) v += acc2[k];
    for (; j < n; ++j) v += (xr[j] - mean) * (xr[j] - mean);
    const float sd = std::sqrt(v / static_cast<float>(n) + eps);
    const float inv = 1.0f / sd;
    if (g && gn == n && b && bn == n) {
      for (j = 0; j < n; ++j) yr[j] = (xr[j] - mean) * inv * g[j] + b[j];
    } else {
      for (j = 0; j < n; ++j) {
        float t = (xr[j] - mean) * inv;
        if (g) t *= g[gn == 1 ? 0 : j];
        if (b) t += b[bn == 1 ? 0 : j];
        yr[j] = t;
      }
    }
  }
}

// Rows per parallel task so that each task has some work.
int64_t row_grain(int64_t n) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1)); }

class LayerNormKernel final : public PreparedKernel {
 public:
  LayerNormKernel(float eps, bool onnx) : eps_(eps), onnx_(onnx) {}
  void run(KernelContext& ctx) const override {
    const Tensor& X = ctx.input(0);
    ctx.check(X.dtype() == DType::Float32 && X.rank() >= 1, "X must be float32 of rank >= 1, got {} {}",
              dtype_name(X.dtype()), shape_str(X.shape()));
    const int64_t n = X.dim(X.rank() - 1), rows = n ? X.numel() / n : 0;
    const Tensor* G = ctx.optional_input(1);
    const Tensor* B = ctx.optional_input(2);
    for (const Tensor* t : {G, B})
      if (t) ctx.check(t->dtype() == DType::Float32 && t->rank() == 1 && (t->numel() == n || (!onnx_ && t->numel() == 1)),
                       "scale/bias must be float32 [{}], got {}", n, shape_str(t->shape()));
    Tensor& Y = output_like_input0(ctx, X);
    const float* x = X.data<float>();
    float* y = Y.data<float>();
    const float* g = G ? G->data<float>() : nullptr;
    const float* b = B ? B->data<float>() : nullptr;
    const int64_t gn = G ? G->numel() : 0, bn = B ? B->numel() : 0;
    parallel_for(rows, [&](int64_t lo, int64_t hi) { layernorm_rows(x + lo * n, y + lo * n, hi - lo, n, eps_, g, gn, b, bn); },
                 row_grain(n));
  }
  std::string name() const override { return onnx_ ? "fast_layernorm" : "fast_layernorm_fused"; }

 private:
  float eps_;
  bool onnx_;
};

std::unique_ptr<PreparedKernel> prepare_layernorm(const PrepareContext& pc, std::string* why) {
  return std::make_unique<LayerNormKernel>(pc.attr_f("epsilon", 1e-5f), false);
}

// ONNX LayerNormalization (opset 17) on the last axis, float32, only output Y wanted.
std::unique_ptr<PreparedKernel> prepare_onnx_layernorm(const PrepareContext& pc, std::string* why) {
  if (pc.attr_i("axis", -1) != -1) {
    const ir::ValueInfo* vi = pc.input_info(0);
    if (!vi || !vi->has_shape || pc.attr_i("axis", -1) != static_cast<int64_t>(vi->dims.size()) - 1) {
      *why = "axis is not the last";
      return nullptr;
    }
  }
  if (pc.attr_i("stash_type", 1) != 1) { *why = "stash_type != float"; return nullptr; }
  for (size_t i = 1; i < pc.node().outputs.size(); ++i)
    if (!pc.node().outputs[i].empty()) { *why = "Mean/InvStdDev outputs wanted"; return nullptr; }
  return std::make_unique<LayerNormKernel>(pc.attr_f("epsilon", 1e-5f), true);
}

class SoftmaxKernel final : public PreparedKernel {
 public:
  explicit SoftmaxKernel(const KernelDef* ref) : ref_(ref) {}
  void run(KernelContext& ctx) const override {
    const Tensor& X = ctx.input(0);
    int64_t axis = ctx.node().attr_i("axis", ctx.opset() < 13 ? 1 : -1);
    if (axis < 0) axis += X.rank();
    // Only float32 over the last axis here; anything else (and every error) by the reference.
    if (X.dtype() != DType::Float32 || X.rank() < 1 || axis != X.rank() - 1 || X.numel() == 0) { ref_->fn(ctx); return; }
    const int64_t n = X.dim(X.rank() - 1), rows = X.numel() / n;
    Tensor& Y = output_like_input0(ctx, X);
    const float* x = X.data<float>();
    float* y = Y.data<float>();
    parallel_for(rows, [&](int64_t lo, int64_t hi) { softmax_rows(x + lo * n, y + lo * n, hi - lo, n); }, row_grain(n));
  }
  std::string name() const override {
    return cpu_features().avx512f ? "fast_softmax_avx512" : cpu_features().avx2 ? "fast_softmax_avx2" : "fast_softmax";
  }

 private:
  const KernelDef* ref_;
};

std::unique_ptr<PreparedKernel> prepare_softmax(const PrepareContext& pc, std::string* why) {
  const KernelDef* k = registry().find("", "Softmax", pc.opset());
  if (!k) { *why = "no reference kernel at this opset"; return nullptr; }
  return std::make_unique<SoftmaxKernel>(k);
}

class GeluKernel final : public PreparedKernel {
 public:
  void run(KernelContext& ctx) const override {
    const Tensor& X = ctx.input(0);
    if (X.dtype() != DType::Float32) { GeluRef(ctx); return; }
    Tensor& Y = output_like_input0(ctx, X);
    const float* x = X.data<float>();
    float* y = Y.data<float>();
    parallel_for(X.numel(), [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) y[i] = x[i] * (1.0f + std::erf(x[i] / kSqrt2)) * 0.5f;
    }, 4096);
  }
  std::string name() const override { return "fast_gelu"; }
};

std::unique_ptr<PreparedKernel> prepare_gelu(const PrepareContext&, std::string*) { return std::make_unique<GeluKernel>(); }

}  // namespace

void register_fast_transformer(FastRegistry& r) {
  r.add({"LayerNorm", kCpuDomain, "fast_layernorm", prepare_layernorm});
  r.add({"LayerNormalization", "", "fast_layernorm", prepare_onnx_layernorm});
  r.add({"Softmax", "", "fast_softmax", prepare_softmax});
  r.add({"Gelu", kCpuDomain, "fast_gelu", prepare_gelu});
}

// Reference kernels of the fused ops (registered in the normal Registry, see registry.cpp).
void register_fused_transformer(Registry& r) {
  r.add({"FusedMatMul", kCpuDomain, 1, 1, "float (MatMul + Add bias + Relu/Gelu)", FusedMatMulRef});
  r.add({"Gelu", kCpuDomain, 1, 1, "float (x * 0.5 * (1 + Erf(x / sqrt 2)))", GeluRef});
  r.add({"LayerNorm", kCpuDomain, 1, 1, "float (decomposed LayerNorm over the last axis)", LayerNormRef});
}

void add_transformer_passes(std::vector<CpuPass>& p) {
  p.push_back({"fuse_layernorm", fuse_layernorm});
  p.push_back({"fuse_matmul_bias", fuse_matmul_bias});
  p.push_back({"fuse_gelu", fuse_gelu});
}

}  // namespace opennpu::cpu
