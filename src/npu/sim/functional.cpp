// Functional simulation: the values the engine computes. See simulator.h.
//
// GEMM layers execute task by task: each MAC task accumulates its [m0,m1) x [n0,n1) tile over its
// [k0,k1) range in ascending k order, into accumulators of the declared precision that live until
// the task with last_k stores the tile (bias, fused activation, FP16 rounding). Vector and Move
// layers are deterministic per element or per row, so their tasks' row split cannot change a
// value; they are evaluated per layer.
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include <fmt/format.h>

#include "core/half.h"
#include "core/parallel.h"
#include "core/quant.h"
#include "core/target_clones.h"
#include "npu/sim/lut.h"
#include "npu/sim/simulator.h"

namespace opennpu::npu {

namespace {

using Buf = std::vector<float>;

struct Val {
  Shape shape;
  std::shared_ptr<Buf> data;  // FP16-exact values
};

inline float st(float x) { return round_f16(x); }  // "store as FP16"

int64_t numel(const Shape& s) { return std::accumulate(s.begin(), s.end(), int64_t{1}, std::multiplies<>()); }

std::vector<int64_t> strides_of(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (int64_t i = static_cast<int64_t>(s.size()) - 2; i >= 0; --i) st[i] = st[i + 1] * s[i + 1];
  return st;
}

// Strides of `in` broadcast (right-aligned) to `out`.
std::vector<int64_t> bstrides(const Shape& in, const Shape& out) {
  std::vector<int64_t> st(out.size(), 0);
  auto own = strides_of(in);
  size_t off = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) st[off + i] = in[i] == 1 ? 0 : own[i];
  return st;
}

// acc[mt x nt] += A[mt x kt] * B[kt x nt], k ascending per output; a multiply then an add (no
// FMA), so every element sees exactly the engine's rounding sequence. Compiled for several ISAs
// and picked at run time; the arithmetic is identical on all of them.
OPENNPU_TARGET_CLONES
void mac_tile(const float* A, int64_t lda, const float* B, int64_t ldb, float* acc, int64_t mt, int64_t kt,
              int64_t nt, bool acc16) {
  for (int64_t i = 0; i < mt; ++i) {
    float* c = acc + i * nt;
    const float* a = A + i * lda;
    for (int64_t k = 0; k < kt; ++k) {
      const float av = a[k];
      const float* b = B + k * ldb;
      if (acc16)
        for (int64_t j = 0; j < nt; ++j) c[j] = round_f16(c[j] + av * b[j]);
      else
        for (int64_t j = 0; j < nt; ++j) c[j] = c[j] + av * b[j];
    }
  }
}

// INT8 MAC array: acc[mt x nt] += A[mt x kt] * B[kt x nt] on integers (x - x_zp, w - w_zp), in
// 32 bits wrapping modulo 2^32 like a hardware int32 accumulator. Integer addition is
// associative, so neither the k tiling nor the order changes a bit.
OPENNPU_TARGET_CLONES
void mac_tile_i32(const int32_t* A, int64_t lda, const int32_t* B, int64_t ldb, uint32_t* acc, int64_t mt, int64_t kt,
                  int64_t nt) {
  for (int64_t i = 0; i < mt; ++i) {
    uint32_t* c = acc + i * nt;
    const int32_t* a = A + i * lda;
    for (int64_t k = 0; k < kt; ++k) {
      const uint32_t av = static_cast<uint32_t>(a[k]);
      if (!av) continue;
      const int32_t* b = B + k * ldb;
      for (int64_t j = 0; j < nt; ++j) c[j] += av * static_cast<uint32_t>(b[j]);
    }
  }
}

class Exec {
 public:
  Exec(const Program& p, const HardwareConfig& hw) : p_(p), hw_(hw), vals_(p.buffers.size()), raw_(p.buffers.size()) {
    opset_ = p.opset;
  }

  void set_input(int buf, const Tensor& t) {
    raw_[buf] = t;  // parameters (Slice starts, Pad pads, axes, scales) are read unrounded
    Val v;
    v.shape = p_.buffers[buf].shape;
    if (checked_numel(t.shape()) != numel(v.shape))
      throw Error(fmt::format("npu: value '{}' has shape {} but the program was compiled for {}", p_.buffers[buf].name,
                              shape_str(t.shape()), shape_str(v.shape)));
    v.data = std::make_shared<Buf>(static_cast<size_t>(t.numel()));
    // FP16 buffers round on entry; int8 buffers hold their integers, fp32 buffers their exact values.
    const bool exact = p_.buffers[buf].dtype != DType::Float16;
    if (exact && p_.buffers[buf].dtype != DType::Float32 && t.dtype() != p_.buffers[buf].dtype)
      throw Error(fmt::format("npu: value '{}' is {} but the program was compiled for {}", p_.buffers[buf].name,
                              dtype_name(t.dtype()), dtype_name(p_.buffers[buf].dtype)));
    for (int64_t i = 0; i < t.numel(); ++i) {
      const float f = static_cast<float>(t.get_f64(i));
      (*v.data)[i] = exact ? f : round_f16(f);
    }
    vals_[buf] = v;
  }
  Tensor get_output(int buf) const {
    const Val& v = val(buf);
    const DType dt = p_.buffers[buf].dtype;
    if (dt == DType::Int8 || dt == DType::UInt8) {
      Tensor t(dt, v.shape);
      for (size_t i = 0; i < v.data->size(); ++i) {
        if (dt == DType::Int8) t.data<int8_t>()[i] = static_cast<int8_t>((*v.data)[i]);
        else t.data<uint8_t>()[i] = static_cast<uint8_t>((*v.data)[i]);
      }
      return t;
    }
    Tensor t(DType::Float32, v.shape);
    std::copy(v.data->begin(), v.data->end(), t.data<float>());
    return t;
  }

  void run_layer(int li, const std::vector<const Task*>& tasks) {
    const Layer& L = p_.layers[li];
    if (L.q.on) { quant_layer(L, tasks); return; }
    switch (L.kind) {
      case LayerKind::Gemm: gemm(L, tasks); break;
      case LayerKind::View: view(L); break;
      case LayerKind::Recurrent: lstm(L); break;
      case LayerKind::Move: move(L); break;
      case LayerKind::Vector: vector(L); break;
    }
  }

 private:
  // "Store": FP16 rounding, except inside exact fp32 layers of INT8 regions.
  float st(float x) const { return exact_ ? x : round_f16(x); }
  // A GEMM / depthwise result on its way out: FP16, or quantized (INT8 layers on an engine
  // without INT8 MACs compute in FP16 and quantize the fp32 accumulator + bias on store).
  float store_val(const Layer& L, float v) const {
    if (!L.q.on) return st(v);
    return static_cast<float>(quant::quantize(v, L.q.out_scale, L.q.out_zp, quant::qrange(L.q.out_type)));
  }

  // ---------------- INT8 layers (program.h QuantParams, core/quant.h) ----------------
  void quant_layer(const Layer& L, const std::vector<const Task*>& tasks) {
    const QuantParams& q = L.q;
    exact_ = q.int8;
    // Dequantize the inputs that are dequantized, in place of their int8 values for this layer.
    std::vector<std::pair<int, Val>> saved;
    for (size_t k = 0; k < L.inputs.size() && k < q.in_scale.size(); ++k) {
      const int b = L.inputs[k];
      if (b < 0 || q.in_scale[k] == 0.f) continue;
      if (q.int8 && (L.kind == LayerKind::Gemm || L.op == "QLinearConv")) continue;  // integer MACs read the integers
      bool done = false;
      for (auto& sv : saved) done |= sv.first == b;
      if (done) continue;
      const Val& x = val(b);
      Val d;
      d.shape = x.shape;
      d.data = std::make_shared<Buf>(x.data->size());
      for (size_t i = 0; i < x.data->size(); ++i)
        (*d.data)[i] = st(quant::dequantize(static_cast<int32_t>((*x.data)[i]), q.in_zp[k], q.in_scale[k]));
      saved.emplace_back(b, vals_[b]);
      vals_[b] = d;
    }
    if (L.kind == LayerKind::Gemm) {
      if (q.int8) qgemm(L, tasks);
      else gemm(L, tasks);  // FP16 path; store_c quantizes
    } else if (L.op == "QLinearConv") {
      if (q.int8) qdepthwise(L);
      else depthwise(L);
    } else {
      if (L.op == "DequantizeLinear" || L.op == "QuantizeLinear") {
        const Val& x = val(L.inputs[0]);
        Val& o = out(L.outputs[0]);
        for (size_t i = 0; i < x.data->size(); ++i) (*o.data)[i] = st((*x.data)[i]);
      } else if (L.op == "Reshape" || L.op == "Flatten" || L.op == "Squeeze" || L.op == "Unsqueeze" || L.op == "Identity") {
        const Val& x = val(L.inputs[0]);  // a copy, not an alias: the output is requantized in place
        Val& o = out(L.outputs[0]);
        std::copy(x.data->begin(), x.data->end(), o.data->begin());
      } else if (L.op == "Concat" || L.op == "Transpose" || L.op == "Split" || L.op == "Slice" || L.op == "Pad") {
        move(L);  // (a Vector layer when it requantizes; the values move the same way)
      } else {
        vector(L);
      }
      if (q.out_type != DType::Undefined) {
        const quant::QRange r = quant::qrange(q.out_type);
        const quant::QRange mr = quant::qrange(q.mid_type);
        for (float& v : *vals_[L.outputs[0]].data) {
          if (q.mid_scale != 0.f)  // the absorbed Q -> DQ pair between the op and its activation
            v = st(quant::dequantize(quant::quantize(v, q.mid_scale, q.mid_zp, mr), q.mid_dq_zp, q.mid_dq_scale));
          v = static_cast<float>(quant::quantize(st(activate(L, v)), q.out_scale, q.out_zp, r));
        }
      }
    }
    for (auto& [b, v] : saved) vals_[b] = v;
    exact_ = false;
  }

  // INT8 GEMM: int32 products of (x - x_zp) and the packed (w - w_zp), accumulated per output tile
  // over its k tasks, requantized on store.
  void qgemm(const Layer& L, const std::vector<const Task*>& tasks) {
    const GemmGeom& g = L.g;
    const QuantParams& q = L.q;
    Val& o = out(L.outputs[0]);
    const Val& x = val(L.inputs[0]);
    std::vector<int32_t> X(x.data->size());
    for (size_t i = 0; i < X.size(); ++i) X[i] = static_cast<int32_t>((*x.data)[i]) - q.in_zp[0];
    std::vector<int32_t> B;
    if (g.b_const) {
      B.resize(L.weights.size());
      for (size_t i = 0; i < B.size(); ++i) B[i] = static_cast<int32_t>(L.weights[i]);
    } else {
      const Val& b = val(L.inputs[1]);
      B.resize(b.data->size());
      for (size_t i = 0; i < B.size(); ++i) B[i] = static_cast<int32_t>((*b.data)[i]) - q.in_zp[1];
    }
    std::map<std::tuple<int64_t, int64_t, int64_t>, std::vector<const Task*>> tiles;
    std::vector<bool> need_b(static_cast<size_t>(g.batch), false);
    for (const Task* t : tasks)
      if (t->engine == Engine::Mac) { tiles[{t->b, t->m0, t->n0}].push_back(t); need_b[t->b] = true; }
    std::vector<std::vector<const Task*>> groups;
    for (auto& [_, v] : tiles) groups.push_back(v);
    std::vector<std::vector<int32_t>> im2col(g.conv ? static_cast<size_t>(g.batch) : 0);
    if (g.conv) {
      for (int64_t b = 0; b < g.batch; ++b) if (need_b[b]) im2col[b].resize(static_cast<size_t>(g.M * g.K));
      parallel_for(g.batch * g.OH, [&](int64_t ra, int64_t rb) {
        for (int64_t r = ra; r < rb; ++r)
          if (need_b[r / g.OH]) fill_im2col_row(g, X, r / g.OH, r % g.OH, im2col[r / g.OH].data());
      });
    }
    const quant::QRange range = quant::qrange(q.out_type);
    const int64_t nbw = g.b_const && !g.conv ? static_cast<int64_t>(B.size()) / (g.K * g.N) : 0;
    parallel_for(static_cast<int64_t>(groups.size()), [&](int64_t ga, int64_t gb) {
      std::vector<uint32_t> acc;
      for (int64_t gi = ga; gi < gb; ++gi) {
        const auto& grp = groups[gi];
        const Task& t0 = *grp.front();
        const int64_t mt = t0.m1 - t0.m0, nt = t0.n1 - t0.n0;
        acc.assign(static_cast<size_t>(mt * nt), 0u);
        const int32_t* A = g.conv ? im2col[t0.b].data() : X.data() + a_batch_offset(g, t0.b) * g.M * g.K;
        for (const Task* t : grp) {
          const int32_t* Bp = B.data() + b_offset(g, nbw, t->b, t->k0) + t->n0;
          mac_tile_i32(A + t0.m0 * g.K + t->k0, g.K, Bp, g.N, acc.data(), mt, t->k1 - t->k0, nt);
          if (!t->last_k) continue;
          float* O = o.data->data();
          for (int64_t m = t->m0; m < t->m1; ++m)
            for (int64_t n = t->n0; n < t->n1; ++n) {
              const int64_t c = g.conv ? (t->b % g.groups) * g.N + n : n;
              const int32_t a = static_cast<int32_t>(acc[(m - t->m0) * nt + (n - t->n0)]);
              const int32_t y = quant::requantize(a, q.ibias.empty() ? 0 : q.ibias[c], q.mult[c], q.out_zp, range);
              O[out_index(g, t->b, m, n)] = static_cast<float>(y);
            }
        }
      }
    });
  }

  static int64_t out_index(const GemmGeom& g, int64_t b, int64_t m, int64_t n) {
    if (g.conv) return ((b / g.groups) * g.O + (b % g.groups) * g.N + n) * g.OH * g.OW + m;
    return (b * g.M + m) * g.N + n;
  }

  // Offset of row k of batch b's B matrix in the packed weights (nbw matrices) or the B operand.
  static int64_t b_offset(const GemmGeom& g, int64_t nbw, int64_t b, int64_t k) {
    if (g.conv) return ((b % g.groups) * g.K + k) * g.N;
    int64_t bb = 0, rem = b;
    for (int64_t d = static_cast<int64_t>(g.batch_shape.size()) - 1; d >= 0; --d) {
      bb += (rem % g.batch_shape[d]) * g.b_batch_strides[d];
      rem /= g.batch_shape[d];
    }
    if (g.b_const && nbw == 1) bb = 0;
    return (bb * g.K + k) * g.N;
  }

  // INT8 depthwise convolution on the vector unit: int32 sums of (x - x_zp)(w - w_zp) per tap.
  void qdepthwise(const Layer& L) {
    const QuantParams& q = L.q;
    const Val& x = val(L.inputs[0]);
    Val& o = out(L.outputs[0]);
    const ir::Node& n = L.node;
    const int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
    const int64_t O = o.shape[1], OH = o.shape[2], OW = o.shape[3];
    const int64_t mult = O / C;
    const Shape& wshape = p_.buffers[L.inputs[1]].shape;
    const int64_t kh = wshape[2], kw = wshape[3];
    auto s = n.attr_ints("strides", {1, 1});
    auto d = n.attr_ints("dilations", {1, 1});
    int64_t pt = 0, pl = 0;
    std::string ap = n.attr_s("auto_pad", "NOTSET");
    if (ap == "SAME_UPPER" || ap == "SAME_LOWER") {
      int64_t th = std::max<int64_t>(0, (OH - 1) * s[0] + (kh - 1) * d[0] + 1 - H);
      int64_t tw = std::max<int64_t>(0, (OW - 1) * s[1] + (kw - 1) * d[1] + 1 - W);
      pt = ap == "SAME_UPPER" ? th / 2 : th - th / 2;
      pl = ap == "SAME_UPPER" ? tw / 2 : tw - tw / 2;
    } else if (ap != "VALID") {
      auto p = n.attr_ints("pads", {0, 0, 0, 0});
      pt = p[0]; pl = p[1];
    }
    const quant::QRange range = quant::qrange(q.out_type);
    parallel_for(N * O, [&](int64_t ca, int64_t cb) {
      for (int64_t no = ca; no < cb; ++no) {
        const int64_t img = no / O, oc = no % O, ic = oc / mult;
        const float* px = x.data->data() + (img * C + ic) * H * W;
        const float* w = L.weights.data() + oc * kh * kw;
        float* po = o.data->data() + no * OH * OW;
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow) {
            uint32_t acc = 0;
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                int64_t ih = oh * s[0] - pt + i * d[0], iw = ow * s[1] - pl + j * d[1];
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;  // padding is the zero point: adds 0
                const int32_t xv = static_cast<int32_t>(px[ih * W + iw]) - q.in_zp[0];
                acc += static_cast<uint32_t>(xv) * static_cast<uint32_t>(static_cast<int32_t>(w[i * kw + j]));
              }
            const int32_t y = quant::requantize(static_cast<int32_t>(acc), q.ibias.empty() ? 0 : q.ibias[oc], q.mult[oc], q.out_zp, range);
            po[oh * OW + ow] = static_cast<float>(y);
          }
      }
    });
  }

  const Val& val(int buf) const {
    if (!vals_[buf].data) {
      if (p_.buffers[buf].constant) throw Error("npu: constant buffer not materialised: " + p_.buffers[buf].name);
      throw Error("npu: value '" + p_.buffers[buf].name + "' was not computed before use");
    }
    return vals_[buf];
  }
  Val& out(int buf) {
    Val& v = vals_[buf];
    v.shape = p_.buffers[buf].shape;
    v.data = std::make_shared<Buf>(static_cast<size_t>(numel(v.shape)), 0.f);
    return v;
  }
  // ---------------- GEMM ----------------
  void gemm(const Layer& L, const std::vector<const Task*>& tasks) {
    const GemmGeom& g = L.g;
    Val& o = out(L.outputs[0]);
    const Val& x = val(L.inputs[0]);
    const Val* bmat = g.b_const ? nullptr : &val(L.inputs[1]);
    // Group MAC tasks by output tile; each tile is accumulated by one thread in k order.
    std::map<std::tuple<int64_t, int64_t, int64_t>, std::vector<const Task*>> tiles;
    std::vector<bool> need_b(static_cast<size_t>(g.batch), false);
    for (const Task* t : tasks)
      if (t->engine == Engine::Mac) { tiles[{t->b, t->m0, t->n0}].push_back(t); need_b[t->b] = true; }
    std::vector<std::vector<const Task*>> groups;
    for (auto& [_, v] : tiles) {
      std::sort(v.begin(), v.end(), [](const Task* a, const Task* b) { return a->k0 < b->k0; });
      groups.push_back(v);
    }
    // The A operand of every batch: for a conv, im2col of the input (what the engine forms on
    // chip from the input tile), built once and shared by all tiles reading it.
    std::vector<std::vector<float>> im2col(g.conv ? static_cast<size_t>(g.batch) : 0);
    if (g.conv) {
      for (int64_t b = 0; b < g.batch; ++b) if (need_b[b]) im2col[b].resize(static_cast<size_t>(g.M * g.K));
      parallel_for(g.batch * g.OH, [&](int64_t ra, int64_t rb) {
        for (int64_t r = ra; r < rb; ++r)
          if (need_b[r / g.OH]) fill_im2col_row(g, *x.data, r / g.OH, r % g.OH, im2col[r / g.OH].data());
      });
    }
    const bool acc16 = hw_.mac.accumulator == AccumPrecision::FP16;
    parallel_for(static_cast<int64_t>(groups.size()), [&](int64_t ga, int64_t gb) {
      std::vector<float> acc;
      for (int64_t gi = ga; gi < gb; ++gi) {
        const auto& grp = groups[gi];
        const Task& t0 = *grp.front();
        const int64_t mt = t0.m1 - t0.m0, nt = t0.n1 - t0.n0;
        acc.assign(static_cast<size_t>(mt * nt), 0.f);
        const float* A = g.conv ? im2col[t0.b].data() : x.data->data() + a_batch_offset(g, t0.b) * g.M * g.K;
        for (const Task* t : grp) {
          const float* B = b_row(L, bmat, t->b, t->k0) + t->n0;
          mac_tile(A + t0.m0 * g.K + t->k0, g.K, B, g.N, acc.data(), mt, t->k1 - t->k0, nt, acc16);
          if (t->last_k) store_c(L, o, *t, acc.data());
        }
      }
    });
  }

  static int64_t a_batch_offset(const GemmGeom& g, int64_t b) {
    int64_t ab = 0, rem = b;
    for (int64_t d = static_cast<int64_t>(g.batch_shape.size()) - 1; d >= 0; --d) {
      ab += (rem % g.batch_shape[d]) * g.a_batch_strides[d];
      rem /= g.batch_shape[d];
    }
    return ab;
  }

  // One output row (oh) of im2col for batch b: A[m = oh*OW + ow][k = (c, i, j)].
  template <class T>
  static void fill_im2col_row(const GemmGeom& g, const std::vector<T>& X, int64_t b, int64_t oh, T* A) {
    const int64_t img = b / g.groups, gr = b % g.groups, cg = g.C / g.groups;
    for (int64_t ow = 0; ow < g.OW; ++ow) {
      T* row = A + (oh * g.OW + ow) * g.K;
      for (int64_t c = 0; c < cg; ++c) {
        const T* plane = X.data() + (img * g.C + gr * cg + c) * g.H * g.W;
        for (int64_t i = 0; i < g.kh; ++i) {
          int64_t ih = oh * g.sh - g.ph + i * g.dh;
          bool hin = ih >= 0 && ih % g.in_dil_h == 0 && ih / g.in_dil_h < g.H;
          for (int64_t j = 0; j < g.kw; ++j) {
            int64_t iw = ow * g.sw - g.pw + j * g.dw;
            bool in = hin && iw >= 0 && iw % g.in_dil_w == 0 && iw / g.in_dil_w < g.W;
            *row++ = in ? plane[(ih / g.in_dil_h) * g.W + iw / g.in_dil_w] : T(0);
          }
        }
      }
    }
  }

  // Row of B (k) for batch b: packed weights or the activation operand.
  const float* b_row(const Layer& L, const Val* bmat, int64_t b, int64_t k) const {
    const GemmGeom& g = L.g;
    if (g.conv) {
      int64_t gr = b % g.groups;
      return L.weights.data() + (gr * g.K + k) * g.N;
    }
    int64_t bb = 0;
    if (!g.batch_shape.empty()) {
      int64_t rem = b;
      for (int64_t d = static_cast<int64_t>(g.batch_shape.size()) - 1; d >= 0; --d) {
        int64_t idx = rem % g.batch_shape[d];
        rem /= g.batch_shape[d];
        bb += idx * g.b_batch_strides[d];
      }
    }
    if (bmat) return bmat->data->data() + (bb * g.K + k) * g.N;
    int64_t nb = static_cast<int64_t>(L.weights.size()) / (g.K * g.N);
    return L.weights.data() + ((nb == 1 ? 0 : bb) * g.K + k) * g.N;
  }

  void store_c(const Layer& L, Val& o, const Task& t, const float* acc) const {
    const GemmGeom& g = L.g;
    float* O = o.data->data();
    const int64_t nt = t.n1 - t.n0;
    for (int64_t m = t.m0; m < t.m1; ++m)
      for (int64_t n = t.n0; n < t.n1; ++n) {
        float v = acc[(m - t.m0) * nt + (n - t.n0)];
        if (!L.bias.empty()) v = v + L.bias[static_cast<size_t>(g.conv ? (t.b % g.groups) * g.N + n : n)];
        v = activate(L, v);
        int64_t idx;
        if (g.conv) {
          const int64_t img = t.b / g.groups, gr = t.b % g.groups;
          idx = ((img * g.O + gr * g.N + n) * g.OH * g.OW) + m;
        } else {
          idx = (t.b * g.M + m) * g.N + n;
        }
        O[idx] = store_val(L, v);
      }
  }

  static float activate(const Layer& L, float v) {
    if (L.act == Act::Relu) return v > 0.f ? v : 0.f;
    if (L.act == Act::Clip) return std::min(std::max(v, L.clip_lo), L.clip_hi);
    return v;
  }

  // ---------------- recurrent (LSTM) ----------------
  // Input projection P = X W^T for all steps (MAC array, k ascending, fp32 accumulate), stored
  // FP16. Each step: acc = h_{t-1} R^T (MAC array), gates = fp16(acc + P_t + bias); i, o, f =
  // sigmoid LUT, g = tanh LUT (each stored FP16); c_t = fp16(f*c + i*g); h_t = fp16(o * tanh LUT(c_t)).
  void lstm(const Layer& L) {
    const GemmGeom& g = L.g;
    const Val& x = val(L.inputs[0]);
    const int64_t T = g.M, Bn = g.n_img, I = g.K, N = g.N, H = g.C, dirs = g.batch;
    const bool acc16 = hw_.mac.accumulator == AccumPrecision::FP16;
    std::vector<float> Y(static_cast<size_t>(T * dirs * Bn * H)), Yh(static_cast<size_t>(dirs * Bn * H)), Yc(Yh.size());
    const float* init_h = L.bias.data() + dirs * N;
    const float* init_c = init_h + dirs * Bn * H;
    for (int64_t d = 0; d < dirs; ++d) {
      const float* Wt = L.weights.data() + d * (I + H) * N;
      const float* Rt = Wt + I * N;
      const float* bias = L.bias.data() + d * N;
      std::vector<float> P(static_cast<size_t>(T * Bn * N), 0.f);
      mac_tile(x.data->data(), I, Wt, N, P.data(), T * Bn, I, N, acc16);
      for (auto& v : P) v = st(v);
      std::vector<float> h(init_h + d * Bn * H, init_h + (d + 1) * Bn * H), c(init_c + d * Bn * H, init_c + (d + 1) * Bn * H);
      std::vector<float> acc(static_cast<size_t>(Bn * N));
      for (int64_t s = 0; s < T; ++s) {
        const int64_t t = d == 0 ? s : T - 1 - s;  // the second direction runs backwards
        std::fill(acc.begin(), acc.end(), 0.f);
        mac_tile(h.data(), H, Rt, N, acc.data(), Bn, H, N, acc16);
        for (int64_t b = 0; b < Bn; ++b) {
          const float* pre = acc.data() + b * N;
          const float* pt = P.data() + (t * Bn + b) * N;
          for (int64_t j = 0; j < H; ++j) {
            auto gate = [&](int q) { return st(pre[q * H + j] + pt[q * H + j] + bias[q * H + j]); };
            const float i_ = st(lut_eval("sigmoid", gate(0)));
            const float o_ = st(lut_eval("sigmoid", gate(1)));
            const float f_ = st(lut_eval("sigmoid", gate(2)));
            const float g_ = st(lut_eval("tanh", gate(3)));
            float& cc = c[b * H + j];
            cc = st(f_ * cc + i_ * g_);
            h[b * H + j] = st(o_ * st(lut_eval("tanh", cc)));
          }
        }
        for (int64_t b = 0; b < Bn; ++b)
          std::copy(h.begin() + b * H, h.begin() + (b + 1) * H, Y.begin() + ((t * dirs + d) * Bn + b) * H);
      }
      std::copy(h.begin(), h.end(), Yh.begin() + d * Bn * H);
      std::copy(c.begin(), c.end(), Yc.begin() + d * Bn * H);
    }
    const std::vector<float>* res[3] = {&Y, &Yh, &Yc};
    for (size_t k = 0; k < L.outputs.size() && k < 3; ++k) {
      if (L.outputs[k] < 0) continue;
      Val& o = out(L.outputs[k]);
      std::copy(res[k]->begin(), res[k]->end(), o.data->begin());
    }
  }

  // ---------------- views and moves ----------------
  void view(const Layer& L) {
    const Val& x = val(L.inputs[0]);
    Val& o = vals_[L.outputs[0]];
    o.shape = p_.buffers[L.outputs[0]].shape;
    o.data = x.data;  // same bytes, new shape
  }

  std::vector<int64_t> const_ints(const Layer& L, size_t input) const {
    if (input >= L.inputs.size() || L.inputs[input] < 0) return {};
    const Tensor& t = raw_[L.inputs[input]];
    if (t.empty_value()) throw Error("npu: parameter '" + p_.buffers[L.inputs[input]].name + "' is not available");
    return t.to_i64_vector();
  }
  std::vector<float> const_floats(const Layer& L, size_t input) const {
    if (input >= L.inputs.size() || L.inputs[input] < 0) return {};
    const Tensor& t = raw_[L.inputs[input]];
    std::vector<float> r;
    for (int64_t i = 0; i < t.numel(); ++i) r.push_back(static_cast<float>(t.get_f64(i)));
    return r;
  }

  void move(const Layer& L) {
    const std::string& op = L.op;
    const ir::Node& n = L.node;
    if (op == "Transpose") {
      const Val& x = val(L.inputs[0]);
      Val& o = out(L.outputs[0]);
      size_t r = x.shape.size();
      auto perm = n.attr_ints("perm");
      if (perm.empty()) for (size_t i = 0; i < r; ++i) perm.push_back(static_cast<int64_t>(r - 1 - i));
      auto xs = strides_of(x.shape);
      std::vector<int64_t> idx(r, 0);
      const int64_t total = numel(o.shape);
      for (int64_t e = 0; e < total; ++e) {
        int64_t src = 0;
        for (size_t d = 0; d < r; ++d) src += idx[d] * xs[perm[d]];
        (*o.data)[e] = (*x.data)[src];
        for (int64_t d = static_cast<int64_t>(r) - 1; d >= 0; --d) { if (++idx[d] < o.shape[d]) break; idx[d] = 0; }
      }
    } else if (op == "Concat") {
      Val& o = out(L.outputs[0]);
      int64_t r = static_cast<int64_t>(o.shape.size());
      int64_t axis = n.attr_i("axis", 0);
      if (axis < 0) axis += r;
      int64_t outer = 1, inner = 1;
      for (int64_t d = 0; d < axis; ++d) outer *= o.shape[d];
      for (int64_t d = axis + 1; d < r; ++d) inner *= o.shape[d];
      int64_t off = 0;
      for (int b : L.inputs) {
        if (b < 0) continue;
        const Val& x = val(b);
        int64_t len = x.shape[axis] * inner;
        for (int64_t i = 0; i < outer; ++i)
          std::copy(x.data->begin() + i * len, x.data->begin() + (i + 1) * len, o.data->begin() + i * o.shape[axis] * inner + off);
        off += len;
      }
    } else if (op == "Split") {
      const Val& x = val(L.inputs[0]);
      int64_t r = static_cast<int64_t>(x.shape.size());
      int64_t axis = n.attr_i("axis", 0);
      if (axis < 0) axis += r;
      int64_t outer = 1, inner = 1;
      for (int64_t d = 0; d < axis; ++d) outer *= x.shape[d];
      for (int64_t d = axis + 1; d < r; ++d) inner *= x.shape[d];
      int64_t off = 0;
      for (int b : L.outputs) {
        if (b < 0) continue;
        Val& o = out(b);
        int64_t len = o.shape[axis] * inner;
        for (int64_t i = 0; i < outer; ++i)
          std::copy(x.data->begin() + i * x.shape[axis] * inner + off, x.data->begin() + i * x.shape[axis] * inner + off + len,
                    o.data->begin() + i * len);
        off += len;
      }
    } else if (op == "Slice") {
      const Val& x = val(L.inputs[0]);
      Val& o = out(L.outputs[0]);
      size_t r = x.shape.size();
      std::vector<int64_t> starts, axes, steps;
      if (L.inputs.size() >= 3) {
        starts = const_ints(L, 1);
        axes = const_ints(L, 3);
        steps = const_ints(L, 4);
      } else {
        starts = n.attr_ints("starts");
        axes = n.attr_ints("axes");
      }
      if (axes.empty()) for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
      if (steps.empty()) steps.assign(starts.size(), 1);
      std::vector<int64_t> st0(r, 0), step(r, 1);
      for (size_t i = 0; i < axes.size(); ++i) {
        int64_t a = axes[i] < 0 ? axes[i] + static_cast<int64_t>(r) : axes[i];
        int64_t dim = x.shape[a], s = starts[i], k = steps[i];
        if (s < 0) s += dim;
        s = k > 0 ? std::clamp<int64_t>(s, 0, dim) : std::clamp<int64_t>(s, 0, dim - 1);
        st0[a] = s;
        step[a] = k;
      }
      auto xs = strides_of(x.shape);
      std::vector<int64_t> idx(r, 0);
      const int64_t total = numel(o.shape);
      for (int64_t e = 0; e < total; ++e) {
        int64_t src = 0;
        for (size_t d = 0; d < r; ++d) src += (st0[d] + idx[d] * step[d]) * xs[d];
        (*o.data)[e] = (*x.data)[src];
        for (int64_t d = static_cast<int64_t>(r) - 1; d >= 0; --d) { if (++idx[d] < o.shape[d]) break; idx[d] = 0; }
      }
    } else if (op == "Pad") {
      const Val& x = val(L.inputs[0]);
      Val& o = out(L.outputs[0]);
      size_t r = x.shape.size();
      std::vector<int64_t> pads;
      float cval = 0;
      if (L.inputs.size() >= 2 && L.inputs[1] >= 0) {
        pads = const_ints(L, 1);
        if (L.inputs.size() >= 3 && L.inputs[2] >= 0) cval = (*val(L.inputs[2]).data)[0];
      } else {
        pads = n.attr_ints("pads");
        cval = n.attr_f("value", 0.f);
      }
      cval = st(cval);
      auto xs = strides_of(x.shape);
      std::vector<int64_t> idx(r, 0);
      const int64_t total = numel(o.shape);
      for (int64_t e = 0; e < total; ++e) {
        int64_t src = 0;
        bool inside = true;
        for (size_t d = 0; d < r; ++d) {
          int64_t s = idx[d] - pads[d];
          if (s < 0 || s >= x.shape[d]) { inside = false; break; }
          src += s * xs[d];
        }
        (*o.data)[e] = inside ? (*x.data)[src] : cval;
        for (int64_t d = static_cast<int64_t>(r) - 1; d >= 0; --d) { if (++idx[d] < o.shape[d]) break; idx[d] = 0; }
      }
    } else {
      throw Error("npu: no functional model for move op " + op);
    }
  }

  // ---------------- vector unit ----------------
  float unary(const Layer& L, float x) const {
    const std::string& op = L.op;
    const ir::Node& n = L.node;
    if (op == "Relu") return x > 0.f ? x : 0.f;
    if (op == "LeakyRelu") return x >= 0.f ? x : x * n.attr_f("alpha", 0.01f);
    if (op == "Sigmoid") return lut_eval("sigmoid", x);
    if (op == "Tanh") return lut_eval("tanh", x);
    if (op == "Erf") return lut_eval("erf", x);
    if (op == "Exp") return lut_eval("exp", x);
    if (op == "Sqrt") return std::sqrt(x);
    if (op == "Reciprocal") return 1.f / x;
    if (op == "Neg") return -x;
    if (op == "Abs") return std::fabs(x);
    if (op == "HardSigmoid") return std::max(0.f, std::min(1.f, n.attr_f("alpha", 0.2f) * x + n.attr_f("beta", 0.5f)));
    if (op == "HardSwish") return x * std::max(0.f, std::min(1.f, x * (1.f / 6.f) + 0.5f));
    throw Error("npu: no functional model for " + op);
  }
  static float binary(const std::string& op, float a, float b) {
    if (op == "Add") return a + b;
    if (op == "Sub") return a - b;
    if (op == "Mul") return a * b;
    if (op == "Div") return a / b;
    if (op == "Max") return std::max(a, b);
    if (op == "Min") return std::min(a, b);
    throw Error("npu: no functional model for " + op);
  }

  void elementwise(const Layer& L) {
    Val& o = out(L.outputs[0]);
    const std::string& op = L.op;
    std::vector<const Val*> ins;
    size_t n_data = (op == "Clip" || op == "Pow") ? 1 : L.inputs.size();
    for (size_t i = 0; i < n_data; ++i) if (L.inputs[i] >= 0) ins.push_back(&val(L.inputs[i]));
    float lo = -INFINITY, hi = INFINITY, expo = 1;
    if (op == "Clip") {
      if (L.inputs.size() > 1) {
        if (L.inputs[1] >= 0) lo = st(const_floats(L, 1).at(0));
        if (L.inputs.size() > 2 && L.inputs[2] >= 0) hi = st(const_floats(L, 2).at(0));
      } else {
        lo = L.node.attr_f("min", -INFINITY);
        hi = L.node.attr_f("max", INFINITY);
      }
    }
    if (op == "Pow") expo = const_floats(L, 1).at(0);
    const int64_t total = numel(o.shape);
    std::vector<std::vector<int64_t>> bs;
    bool same = true;
    for (auto* v : ins) { bs.push_back(bstrides(v->shape, o.shape)); same &= v->shape == o.shape; }
    const size_t r = o.shape.size();
    parallel_for(total, [&](int64_t ea, int64_t eb) {
      std::vector<int64_t> idx(r, 0);
      { int64_t rem = ea; for (int64_t d = static_cast<int64_t>(r) - 1; d >= 0; --d) { idx[d] = rem % o.shape[d]; rem /= o.shape[d]; } }
      std::vector<float> xs(ins.size());
      for (int64_t e = ea; e < eb; ++e) {
        for (size_t k = 0; k < ins.size(); ++k) {
          int64_t off = e;
          if (!same) { off = 0; for (size_t d = 0; d < r; ++d) off += idx[d] * bs[k][d]; }
          xs[k] = (*ins[k]->data)[off];
        }
        float y;
        if (ins.size() >= 2) { y = xs[0]; for (size_t k = 1; k < xs.size(); ++k) y = binary(op, y, xs[k]); }
        else if (op == "Clip") y = std::min(std::max(xs[0], lo), hi);
        else if (op == "Pow") y = expo == 2 ? xs[0] * xs[0] : expo == 3 ? xs[0] * xs[0] * xs[0] : expo == 0.5f ? std::sqrt(xs[0]) : xs[0];
        else y = unary(L, xs[0]);
        (*o.data)[e] = st(y);
        if (!same) for (int64_t d = static_cast<int64_t>(r) - 1; d >= 0; --d) { if (++idx[d] < o.shape[d]) break; idx[d] = 0; }
      }
    }, 4096);
  }

  void batchnorm(const Layer& L) {
    const Val& x = val(L.inputs[0]);
    Val& o = out(L.outputs[0]);
    const float eps = L.node.attr_f("epsilon", 1e-5f);
    const auto& sc = *val(L.inputs[1]).data; const auto& bi = *val(L.inputs[2]).data;
    const auto& mean = *val(L.inputs[3]).data; const auto& var = *val(L.inputs[4]).data;
    const int64_t N = x.shape[0], C = x.shape.size() > 1 ? x.shape[1] : 1;
    const int64_t inner = numel(x.shape) / std::max<int64_t>(N * C, 1);
    for (int64_t c = 0; c < C; ++c) {
      const float a = sc[c] / std::sqrt(var[c] + eps);
      const float b = bi[c] - mean[c] * a;
      for (int64_t i = 0; i < N; ++i) {
        const float* px = x.data->data() + (i * C + c) * inner;
        float* po = o.data->data() + (i * C + c) * inner;
        for (int64_t e = 0; e < inner; ++e) po[e] = st(px[e] * a + b);
      }
    }
  }

  // Softmax / LayerNorm: rows of `len` elements with stride `inner`, `outer*inner` of them.
  void normalize(const Layer& L, bool layernorm) {
    const Val& x = val(L.inputs[0]);
    Val& o = out(L.outputs[0]);
    const int64_t r = static_cast<int64_t>(x.shape.size());
    int64_t axis = L.node.attr_i("axis", layernorm ? -1 : (opset_ >= 13 ? -1 : 1));
    if (axis < 0) axis += r;
    int64_t outer = 1, len = 1, inner = 1;
    bool flatten = layernorm || opset_ < 13;  // Softmax before opset 13 coerces to 2-D at axis
    for (int64_t d = 0; d < axis; ++d) outer *= x.shape[d];
    if (flatten) { for (int64_t d = axis; d < r; ++d) len *= x.shape[d]; }
    else { len = x.shape[axis]; for (int64_t d = axis + 1; d < r; ++d) inner *= x.shape[d]; }
    const float eps = L.node.attr_f("epsilon", 1e-5f);
    const float* scale = layernorm ? val(L.inputs[1]).data->data() : nullptr;
    const float* bias = layernorm && L.inputs.size() > 2 && L.inputs[2] >= 0 ? val(L.inputs[2]).data->data() : nullptr;
    parallel_for(outer * inner, [&](int64_t ra, int64_t rb) {
      for (int64_t row = ra; row < rb; ++row) {
        const int64_t base = (row / inner) * len * inner + row % inner;
        const float* px = x.data->data() + base;
        float* po = o.data->data() + base;
        if (layernorm) {
          float sum = 0; for (int64_t i = 0; i < len; ++i) sum += px[i * inner];
          const float mean = sum / static_cast<float>(len);
          float sq = 0; for (int64_t i = 0; i < len; ++i) { float d = px[i * inner] - mean; sq += d * d; }
          const float inv = 1.f / std::sqrt(sq / static_cast<float>(len) + eps);
          for (int64_t i = 0; i < len; ++i)
            po[i * inner] = st((px[i * inner] - mean) * inv * scale[i] + (bias ? bias[i] : 0.f));
        } else {
          float mx = -INFINITY; for (int64_t i = 0; i < len; ++i) mx = std::max(mx, px[i * inner]);
          float sum = 0;
          std::vector<float> e(static_cast<size_t>(len));
          for (int64_t i = 0; i < len; ++i) { e[i] = st(lut_eval("exp", px[i * inner] - mx)); sum += e[i]; }
          for (int64_t i = 0; i < len; ++i) po[i * inner] = st(e[i] / sum);
        }
      }
    });
  }

  void reduce(const Layer& L) {
    const Val& x = val(L.inputs[0]);
    Val& o = out(L.outputs[0]);
    const int64_t r = static_cast<int64_t>(x.shape.size());
    std::vector<int64_t> axes = L.inputs.size() > 1 && L.inputs[1] >= 0 ? const_ints(L, 1) : L.node.attr_ints("axes");
    std::vector<bool> red(r, axes.empty() && !L.node.attr_i("noop_with_empty_axes", 0));
    for (auto a : axes) red[a < 0 ? a + r : a] = true;
    // Output index ignoring reduced dims.
    std::vector<int64_t> ostr(r, 0);
    int64_t s = 1;
    for (int64_t d = r - 1; d >= 0; --d) if (!red[d]) { ostr[d] = s; s *= x.shape[d]; }
    const bool is_max = L.op == "ReduceMax";
    std::vector<float> acc(static_cast<size_t>(numel(o.shape)), is_max ? -INFINITY : 0.f);
    std::vector<int64_t> idx(r, 0);
    const int64_t total = numel(x.shape);
    for (int64_t e = 0; e < total; ++e) {
      int64_t oi = 0;
      for (int64_t d = 0; d < r; ++d) oi += idx[d] * ostr[d];
      float v = (*x.data)[e];
      acc[oi] = is_max ? std::max(acc[oi], v) : acc[oi] + v;
      for (int64_t d = r - 1; d >= 0; --d) { if (++idx[d] < x.shape[d]) break; idx[d] = 0; }
    }
    const float count = static_cast<float>(total / std::max<int64_t>(numel(o.shape), 1));
    for (size_t i = 0; i < acc.size(); ++i) (*o.data)[i] = st(L.op == "ReduceMean" ? acc[i] / count : acc[i]);
  }

  void pool(const Layer& L) {
    const Val& x = val(L.inputs[0]);
    Val& o = out(L.outputs[0]);
    const ir::Node& n = L.node;
    const int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
    const int64_t OH = o.shape[2], OW = o.shape[3];
    const bool global = L.op.rfind("Global", 0) == 0;
    const bool is_max = L.op == "MaxPool" || L.op == "GlobalMaxPool";
    int64_t kh = H, kw = W, sh = 1, sw = 1, pt = 0, pl = 0, pb = 0, pr = 0;
    if (!global) {
      auto k = n.attr_ints("kernel_shape");
      kh = k[0]; kw = k[1];
      auto s = n.attr_ints("strides", {1, 1});
      sh = s[0]; sw = s[1];
      std::string ap = n.attr_s("auto_pad", "NOTSET");
      if (ap == "SAME_UPPER" || ap == "SAME_LOWER") {
        int64_t th = std::max<int64_t>(0, (OH - 1) * sh + kh - H), tw = std::max<int64_t>(0, (OW - 1) * sw + kw - W);
        pt = ap == "SAME_UPPER" ? th / 2 : th - th / 2; pb = th - pt;
        pl = ap == "SAME_UPPER" ? tw / 2 : tw - tw / 2; pr = tw - pl;
      } else if (ap != "VALID") {
        auto p = n.attr_ints("pads", {0, 0, 0, 0});
        pt = p[0]; pl = p[1]; pb = p[2]; pr = p[3];
      }
    }
    const bool include_pad = n.attr_i("count_include_pad", 0) != 0;
    parallel_for(N * C, [&](int64_t ca, int64_t cb) {
      for (int64_t nc = ca; nc < cb; ++nc) {
        const float* px = x.data->data() + nc * H * W;
        float* po = o.data->data() + nc * OH * OW;
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow) {
            float acc = is_max ? -INFINITY : 0.f;
            double dacc = 0;  // exact fp32 mode: the reference sums in double and divides in double
            int64_t cnt = 0, padded = 0;
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                int64_t ih = oh * sh - pt + i, iw = ow * sw - pl + j;
                if (ih >= -pt && ih < H + pb && iw >= -pl && iw < W + pr) ++padded;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                float v = px[ih * W + iw];
                acc = is_max ? std::max(acc, v) : acc + v;
                dacc += static_cast<double>(v);
                ++cnt;
              }
            if (exact_ && !is_max)
              po[oh * OW + ow] = static_cast<float>(dacc / static_cast<double>(include_pad ? padded : cnt));
            else
              po[oh * OW + ow] = st(is_max ? acc : acc / static_cast<float>(include_pad ? padded : std::max<int64_t>(cnt, 1)));
          }
      }
    });
  }

  void depthwise(const Layer& L) {
    const Val& x = val(L.inputs[0]);
    Val& o = out(L.outputs[0]);
    const ir::Node& n = L.node;
    const int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
    const int64_t O = o.shape[1], OH = o.shape[2], OW = o.shape[3];
    const int64_t mult = O / C;
    // Kernel size from W's shape [O, 1, kh, kw]: kernel_shape is optional in ONNX (inferred from
    // W), so it cannot be relied on (without it, a 3x3 kernel was read as 9x9).
    const Shape& wshape = p_.buffers[L.inputs[1]].shape;
    const int64_t kh = wshape[2], kw = wshape[3];
    auto s = n.attr_ints("strides", {1, 1});
    auto d = n.attr_ints("dilations", {1, 1});
    int64_t pt = 0, pl = 0;
    std::string ap = n.attr_s("auto_pad", "NOTSET");
    if (ap == "SAME_UPPER" || ap == "SAME_LOWER") {
      int64_t th = std::max<int64_t>(0, (OH - 1) * s[0] + (kh - 1) * d[0] + 1 - H);
      int64_t tw = std::max<int64_t>(0, (OW - 1) * s[1] + (kw - 1) * d[1] + 1 - W);
      pt = ap == "SAME_UPPER" ? th / 2 : th - th / 2;
      pl = ap == "SAME_UPPER" ? tw / 2 : tw - tw / 2;
    } else if (ap != "VALID") {
      auto p = n.attr_ints("pads", {0, 0, 0, 0});
      pt = p[0]; pl = p[1];
    }
    parallel_for(N * O, [&](int64_t ca, int64_t cb) {
      for (int64_t no = ca; no < cb; ++no) {
        const int64_t img = no / O, oc = no % O, ic = oc / mult;
        const float* px = x.data->data() + (img * C + ic) * H * W;
        const float* w = L.weights.data() + oc * kh * kw;
        float* po = o.data->data() + no * OH * OW;
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow) {
            float acc = 0.f;
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                int64_t ih = oh * s[0] - pt + i * d[0], iw = ow * s[1] - pl + j * d[1];
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                acc = acc + px[ih * W + iw] * w[i * kw + j];
              }
            if (!L.bias.empty()) acc = acc + L.bias[oc];
            po[oh * OW + ow] = store_val(L, activate(L, acc));
          }
      }
    });
  }

  void resize(const Layer& L) {
    const Val& x = val(L.inputs[0]);
    Val& o = out(L.outputs[0]);
    const ir::Node& n = L.node;
    const int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
    const int64_t OH = o.shape[2], OW = o.shape[3];
    std::string mode = n.attr_s("mode", "nearest");
    std::string ct = L.op == "Upsample" || opset_ < 11 ? "asymmetric" : n.attr_s("coordinate_transformation_mode", "half_pixel");
    std::string nm = L.op == "Upsample" || opset_ < 11 ? "floor" : n.attr_s("nearest_mode", "round_prefer_floor");
    // Scales: the ratio of output to input size (what ONNX uses when sizes are given).
    float scale_h = static_cast<float>(OH) / H, scale_w = static_cast<float>(OW) / W;
    std::vector<float> sc;
    if (L.op == "Resize" && opset_ >= 11) sc = const_floats(L, 2);
    else if (L.op == "Resize" || (L.op == "Upsample" && opset_ >= 9)) sc = const_floats(L, 1);
    else sc = L.node.attr_floats("scales");
    if (sc.size() == 4) { scale_h = sc[2]; scale_w = sc[3]; }
    auto src = [&](int64_t oc, int64_t in, int64_t outn, float scale) -> float {
      if (ct == "half_pixel") return (oc + 0.5f) / scale - 0.5f;
      if (ct == "pytorch_half_pixel") return outn > 1 ? (oc + 0.5f) / scale - 0.5f : 0.f;
      if (ct == "align_corners") return outn > 1 ? oc * static_cast<float>(in - 1) / static_cast<float>(outn - 1) : 0.f;
      return oc / scale;  // asymmetric
    };
    auto nearest = [&](float v, int64_t in) -> int64_t {
      int64_t i;
      if (nm == "floor") i = static_cast<int64_t>(std::floor(v));
      else if (nm == "ceil") i = static_cast<int64_t>(std::ceil(v));
      else if (nm == "round_prefer_ceil") i = static_cast<int64_t>(std::floor(v + 0.5f));
      else i = (v - std::floor(v) == 0.5f) ? static_cast<int64_t>(std::floor(v)) : static_cast<int64_t>(std::round(v));
      return std::clamp<int64_t>(i, 0, in - 1);
    };
    parallel_for(N * C, [&](int64_t ca, int64_t cb) {
      for (int64_t nc = ca; nc < cb; ++nc) {
        const float* px = x.data->data() + nc * H * W;
        float* po = o.data->data() + nc * OH * OW;
        for (int64_t oh = 0; oh < OH; ++oh) {
          float fy = src(oh, H, OH, scale_h);
          for (int64_t ow = 0; ow < OW; ++ow) {
            float fx = src(ow, W, OW, scale_w);
            float v;
            if (mode == "nearest") {
              v = px[nearest(fy, H) * W + nearest(fx, W)];
            } else {
              float cy = std::clamp(fy, 0.f, static_cast<float>(H - 1)), cx = std::clamp(fx, 0.f, static_cast<float>(W - 1));
              int64_t y0 = static_cast<int64_t>(std::floor(cy)), x0 = static_cast<int64_t>(std::floor(cx));
              int64_t y1 = std::min(y0 + 1, H - 1), x1 = std::min(x0 + 1, W - 1);
              float wy = cy - y0, wx = cx - x0;
              float top = px[y0 * W + x0] * (1 - wx) + px[y0 * W + x1] * wx;
              float bot = px[y1 * W + x0] * (1 - wx) + px[y1 * W + x1] * wx;
              v = top * (1 - wy) + bot * wy;
            }
            po[oh * OW + ow] = st(v);
          }
        }
      }
    });
  }

  void vector(const Layer& L) {
    const std::string& op = L.op;
    if (op == "Conv") depthwise(L);
    else if (op == "BatchNormalization") batchnorm(L);
    else if (op == "Softmax") normalize(L, false);
    else if (op == "LayerNormalization") normalize(L, true);
    else if (op == "ReduceMean" || op == "ReduceSum" || op == "ReduceMax") reduce(L);
    else if (op == "MaxPool" || op == "AveragePool" || op == "GlobalAveragePool" || op == "GlobalMaxPool") pool(L);
    else if (op == "Resize" || op == "Upsample") resize(L);
    else elementwise(L);
  }

 public:
  int64_t opset_ = 17;

 private:
  bool exact_ = false;  // inside an exact fp32 layer of an INT8 region (no FP16 rounding)
  const Program& p_;
  const HardwareConfig& hw_;
  std::vector<Val> vals_;
  std::vector<Tensor> raw_;
};

}  // namespace

void run_segment(const Program& p, const Segment& s, const HardwareConfig& hw, ValueMap& values) {
  Exec ex(p, hw);
  // Load the operands the segment's layers read from the value store: inputs produced outside
  // the segment and constant parameters. GEMM, recurrent and depthwise layers hold their weights
  // and biases packed in the Program (inputs 1.. when constant), so those tensors are not
  // converted again on every prediction.
  std::vector<bool> needed(p.buffers.size(), false);
  for (int li : s.layers) {
    const Layer& L = p.layers[li];
    const bool packed = L.kind == LayerKind::Gemm || L.kind == LayerKind::Recurrent ||
                        (L.kind == LayerKind::Vector && (L.op == "Conv" || L.op == "QLinearConv"));
    for (size_t i = 0; i < L.inputs.size(); ++i) {
      const int b = L.inputs[i];
      if (b >= 0 && !(packed && i >= 1 && p.buffers[b].constant)) needed[b] = true;
    }
  }
  for (size_t b = 0; b < p.buffers.size(); ++b) {
    if (!needed[b]) continue;
    auto it = values.find(p.buffers[b].name);
    if (it != values.end()) ex.set_input(static_cast<int>(b), it->second);
  }
  std::map<int, std::vector<const Task*>> by_layer;
  for (const Task& t : p.tasks) by_layer[t.layer].push_back(&t);
  static const std::vector<const Task*> none;
  for (int li : s.layers) {
    auto it = by_layer.find(li);
    ex.run_layer(li, it == by_layer.end() ? none : it->second);
  }
  for (int li : s.layers)
    for (int b : p.layers[li].outputs)
      if (b >= 0) values[p.buffers[b].name] = ex.get_output(b);
}

}  // namespace opennpu::npu
