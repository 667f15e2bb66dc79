// cpu/fast/conv.cpp — fast FusedConv and NHWC pooling (opennpu.cpu ops, see conv.h) on oneDNN.
//
// FusedConv: one oneDNN convolution primitive per input shape (built at the first run with that
// shape, cached under a mutex), with bias, the residual Add (sum post-op: the output buffer starts
// as Z, reusing Z's buffer when the executor allows it) and the activation (eltwise post-op) in
// the same pass over the output. oneDNN picks the kernel for the machine at run time (brgemm /
// jit AVX-512, AVX2, ...) and the weights' blocked layout; the constant weights are reordered
// into that layout once and shared between the shapes that want the same layout. Activations are
// NHWC (the layout pass puts runs of convs in NHWC: oneDNN's fast fp32 kernels read and write
// NHWC directly, so no reorder runs between two convs); NCHW works too (slower kernels).
// Declined at run time (the reference kernel runs): non-float32 input, rank != 4, empty batch,
// Z not of the output's shape (broadcast), and shapes where oneDNN only offers its reference
// implementation.
//
// Pooling (MaxPool / AveragePool / GlobalAveragePool / GlobalMaxPool on NHWC tensors): a oneDNN
// pooling primitive per input shape; declines ceil_mode=1 and dilations != 1.
//
// Threads: before every primitive runs, OpenMP (oneDNN's threading in Debian's build) is set to
// opennpu's thread count for this calling thread (1 inside a parallel region), so
// set_num_threads(N) bounds the threads computing.
#include <dnnl.hpp>
#include <omp.h>

#include <cstring>
#include <map>
#include <mutex>

#include "core/parallel.h"
#include "cpu/fast/conv.h"

namespace opennpu::cpu {

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using ddt = memory::data_type;
using dims = memory::dims;

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

struct ThreadState {
  dnnl::stream stream{engine()};
  std::vector<char> scratch;
  char* scratchpad(size_t n) {
    if (scratch.size() < n) scratch.resize(n);
    return scratch.data();
  }
};
ThreadState& thread_state() {
  static thread_local ThreadState s;
  return s;
}

void set_omp_threads() { omp_set_num_threads(in_parallel_region() ? 1 : num_threads()); }

bool is_reference_impl(const char* impl) { return impl && std::strncmp(impl, "ref", 3) == 0; }

// Begin/end padding and output extent of one spatial dim, as ONNX Conv/pooling define them.
bool spatial(const std::string& auto_pad, int64_t in, int64_t k, int64_t s, int64_t d, int64_t& pb, int64_t& pe,
             int64_t& out) {
  const int64_t ek = (k - 1) * d + 1;
  if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    out = (in + s - 1) / s;
    const int64_t total = std::max<int64_t>(0, (out - 1) * s + ek - in);
    const int64_t small = total / 2, big = total - small;
    pb = auto_pad == "SAME_UPPER" ? small : big;
    pe = total - pb;
  } else {
    if (auto_pad == "VALID") pb = pe = 0;
    else if (auto_pad != "NOTSET") return false;
    if (in + pb + pe < ek) return false;
    out = (in + pb + pe - ek) / s + 1;
  }
  return out >= 1;
}

const KernelDef* reference_of(const PrepareContext& pc) {
  const ir::Node& n = pc.node();
  return registry().find(n.domain == "ai.onnx" ? "" : n.domain, n.op_type, pc.opset());
}

// ---------------------------------------------------------------------------------------------
// FusedConv

class FastConv final : public PreparedKernel {
 public:
  struct Plan {
    bool ok = false;
    Shape y_shape;
    dnnl::convolution_forward prim;
    memory::desc src, dst, bias, scratch_desc;
    std::shared_ptr<memory> weights;
    size_t scratch = 0;
  };

  FastConv(const PrepareContext& pc, KernelFn ref) : ref_(ref) {
    W_ = *pc.constant(1);
    if (const Tensor* b = pc.constant(2)) B_ = *b;
    has_sum_ = pc.node().has_input(3);
    nhwc_ = pc.attr_s("layout", "NCHW") == "NHWC";
    group_ = pc.attr_i("group", 1);
    auto_pad_ = pc.attr_s("auto_pad", "NOTSET");
    strides_ = pc.attr_ints("strides");
    dil_ = pc.attr_ints("dilations");
    pads_ = pc.attr_ints("pads");
    if (strides_.empty()) strides_ = {1, 1};
    if (dil_.empty()) dil_ = {1, 1};
    if (pads_.empty()) pads_ = {0, 0, 0, 0};
    act_ = pc.attr_s("activation", "");
    alpha_ = pc.attr_f("activation_alpha", 0.f);
    beta_ = pc.attr_f("activation_beta", 0.f);
  }

  static std::unique_ptr<PreparedKernel> prepare(const PrepareContext& pc, std::string* why) {
    const ir::Node& n = pc.node();
    const Tensor* w = pc.constant(1);
    if (!w || w->dtype() != DType::Float32 || w->rank() != 4) return *why = "weights not a constant float32 4-D tensor", nullptr;
    if (n.has_input(2)) {
      const Tensor* b = pc.constant(2);
      if (!b || b->dtype() != DType::Float32 || b->rank() != 1 || b->dim(0) != w->dim(0))
        return *why = "bias not a constant float32 [M]", nullptr;
    }
    if (pc.attr_ints("strides").size() > 2 || pc.attr_ints("dilations").size() > 2 || pc.attr_ints("pads").size() > 4)
      return *why = "attributes not 2-D", nullptr;
    for (const char* a : {"strides", "dilations", "pads"})
      if (pc.has_attr(a) && pc.attr_ints(a).size() != (std::string(a) == "pads" ? 4u : 2u))
        return *why = std::string("attribute ") + a + " has the wrong length", nullptr;
    const std::string act = pc.attr_s("activation", "");
    if (!(act.empty() || act == "Relu" || act == "LeakyRelu" || act == "Clip" || act == "Sigmoid" || act == "Tanh"))
      return *why = "activation " + act, nullptr;
    const KernelDef* ref = reference_of(pc);
    if (!ref) return *why = "no reference kernel", nullptr;
    return std::make_unique<FastConv>(pc, ref->fn);
  }

  std::string name() const override { return "onednn_conv"; }
  size_t state_bytes() const override {
    std::lock_guard<std::mutex> lk(mu_);
    size_t b = 0;
    for (const auto& [d, m] : weights_) b += d.get_size();
    return b;
  }

  void run(KernelContext& ctx) const override {
    const Tensor& x = ctx.input(0);
    if (x.dtype() != DType::Float32 || x.rank() != 4 || x.dim(0) == 0) return ref_(ctx);
    std::shared_ptr<const Plan> p = plan(x.shape());
    if (!p->ok) return ref_(ctx);
    Tensor* y = nullptr;
    if (has_sum_) {
      const Tensor& z = ctx.input(3);
      if (z.dtype() != DType::Float32 || z.shape() != p->y_shape) return ref_(ctx);
      if (ctx.input_reusable(3)) {
        y = &ctx.reuse_input_as_output(3, 0, p->y_shape);
      } else {
        y = &ctx.alloc_output(0, DType::Float32, p->y_shape, KernelContext::Init::Uninit);
        std::memcpy(y->raw(), z.raw(), z.nbytes());
      }
    } else {
      y = &ctx.alloc_output(0, DType::Float32, p->y_shape, KernelContext::Init::Uninit);
    }
    ThreadState& ts = thread_state();
    memory src(p->src, engine(), const_cast<void*>(x.raw()));
    memory dst(p->dst, engine(), y->raw());
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, *p->weights}, {DNNL_ARG_DST, dst}};
    if (!B_.empty_value()) args.emplace(DNNL_ARG_BIAS, memory(p->bias, engine(), const_cast<void*>(B_.raw())));
    if (p->scratch) args.emplace(DNNL_ARG_SCRATCHPAD, memory(p->scratch_desc, engine(), ts.scratchpad(p->scratch)));
    set_omp_threads();
    p->prim.execute(ts.stream, args);
    ts.stream.wait();
  }

 private:
  std::shared_ptr<const Plan> plan(const Shape& xs) const {
    std::lock_guard<std::mutex> lk(mu_);
    if (auto it = plans_.find(xs); it != plans_.end()) return it->second;
    auto p = std::make_shared<Plan>();
    try {
      build(xs, *p);
    } catch (const dnnl::error&) {
      p->ok = false;
    }
    plans_[xs] = p;
    return p;
  }

  void build(const Shape& xs, Plan& p) const {
    const int64_t N = xs[0], C = nhwc_ ? xs[3] : xs[1], H = nhwc_ ? xs[1] : xs[2], Wd = nhwc_ ? xs[2] : xs[3];
    const int64_t M = W_.dim(0), Cg = W_.dim(1), KH = W_.dim(2), KW = W_.dim(3), G = group_;
    if (G < 1 || C != Cg * G || M % G != 0) return;
    int64_t pt = pads_[0], pl = pads_[1], pb = pads_[2], pr = pads_[3], OH = 0, OW = 0;
    if (!spatial(auto_pad_, H, KH, strides_[0], dil_[0], pt, pb, OH)) return;
    if (!spatial(auto_pad_, Wd, KW, strides_[1], dil_[1], pl, pr, OW)) return;
    const tag act_tag = nhwc_ ? tag::nhwc : tag::nchw;
    p.src = memory::desc({N, C, H, Wd}, ddt::f32, act_tag);
    p.dst = memory::desc({N, M, OH, OW}, ddt::f32, act_tag);
    const dims wdims = G == 1 ? dims{M, C, KH, KW} : dims{G, M / G, Cg, KH, KW};
    memory::desc wany(wdims, ddt::f32, tag::any);
    p.bias = memory::desc({M}, ddt::f32, tag::x);
    const dims st{strides_[0], strides_[1]}, dl{dil_[0] - 1, dil_[1] - 1}, padl{pt, pl}, padr{pb, pr};
    auto d = B_.empty_value()
                 ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                                   p.src, wany, p.dst, st, dl, padl, padr)
                 : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                                   p.src, wany, p.bias, p.dst, st, dl, padl, padr);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::post_ops po;
    if (has_sum_) po.append_sum(1.f);
    if (act_ == "Relu") po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    else if (act_ == "LeakyRelu") po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, alpha_, 0.f);
    else if (act_ == "Clip") po.append_eltwise(1.f, dnnl::algorithm::eltwise_clip, alpha_, beta_);
    else if (act_ == "Sigmoid") po.append_eltwise(1.f, dnnl::algorithm::eltwise_logistic, 0.f, 0.f);
    else if (act_ == "Tanh") po.append_eltwise(1.f, dnnl::algorithm::eltwise_tanh, 0.f, 0.f);
    attr.set_post_ops(po);
    dnnl::convolution_forward::primitive_desc pd(d, attr, engine());
    if (is_reference_impl(pd.impl_info_str())) return;  // slower than our reference; let it run
    p.prim = dnnl::convolution_forward(pd);
    p.scratch = pd.scratchpad_desc().get_size();
    p.scratch_desc = pd.scratchpad_desc();
    // Weights in the layout this primitive wants, reordered once per layout.
    const memory::desc wd = pd.weights_desc();
    for (const auto& [desc, mem] : weights_)
      if (desc == wd) p.weights = mem;
    if (!p.weights) {
      auto mem = std::make_shared<memory>(wd, engine());
      memory::desc plain(wdims, ddt::f32, G == 1 ? tag::oihw : tag::goihw);
      memory src(plain, engine(), const_cast<void*>(W_.raw()));
      omp_set_num_threads(1);
      dnnl::stream s(engine());
      dnnl::reorder(src, *mem).execute(s, src, *mem);
      s.wait();
      weights_.emplace_back(wd, mem);
      p.weights = mem;
    }
    p.y_shape = nhwc_ ? Shape{N, OH, OW, M} : Shape{N, M, OH, OW};
    p.ok = true;
  }

  KernelFn ref_;
  Tensor W_, B_;
  bool has_sum_ = false, nhwc_ = false;
  int64_t group_ = 1;
  std::string auto_pad_, act_;
  std::vector<int64_t> strides_, dil_, pads_;
  float alpha_ = 0, beta_ = 0;
  mutable std::mutex mu_;
  mutable std::map<Shape, std::shared_ptr<const Plan>> plans_;
  mutable std::vector<std::pair<memory::desc, std::shared_ptr<memory>>> weights_;
};


// ---------------------------------------------------------------------------------------------
// NHWC pooling

class FastPool final : public PreparedKernel {
 public:
  struct Plan {
    bool ok = false;
    Shape y_shape;
    dnnl::pooling_forward prim;
    memory::desc src, dst, scratch_desc;
    size_t scratch = 0;
  };

  FastPool(const PrepareContext& pc, KernelFn ref) : ref_(ref) {
    const std::string op = pc.node().op_type;
    global_ = op == "GlobalAveragePool" || op == "GlobalMaxPool";
    max_ = op == "MaxPool" || op == "GlobalMaxPool";
    include_pad_ = pc.attr_i("count_include_pad", 0) != 0;
    auto_pad_ = pc.attr_s("auto_pad", "NOTSET");
    kernel_ = pc.attr_ints("kernel_shape");
    strides_ = pc.attr_ints("strides");
    pads_ = pc.attr_ints("pads");
    if (strides_.empty()) strides_ = {1, 1};
    if (pads_.empty()) pads_ = {0, 0, 0, 0};
  }

  static std::unique_ptr<PreparedKernel> prepare(const PrepareContext& pc, std::string* why) {
    if (pc.attr_s("layout", "NCHW") != "NHWC") return *why = "layout not NHWC", nullptr;
    const std::string op = pc.node().op_type;
    if (op == "MaxPool" || op == "AveragePool") {
      if (pc.attr_i("ceil_mode", 0) != 0) return *why = "ceil_mode=1", nullptr;
      for (int64_t d : pc.attr_ints("dilations"))
        if (d != 1) return *why = "dilations != 1", nullptr;
      if (pc.attr_ints("kernel_shape").size() != 2) return *why = "not 2-D", nullptr;
      if (pc.has_attr("strides") && pc.attr_ints("strides").size() != 2) return *why = "strides not 2-D", nullptr;
      if (pc.has_attr("pads") && pc.attr_ints("pads").size() != 4) return *why = "pads not 2-D", nullptr;
    }
    const KernelDef* ref = reference_of(pc);
    if (!ref) return *why = "no reference kernel", nullptr;
    return std::make_unique<FastPool>(pc, ref->fn);
  }

  std::string name() const override { return "onednn_pool"; }

  void run(KernelContext& ctx) const override {
    const Tensor& x = ctx.input(0);
    if (x.dtype() != DType::Float32 || x.rank() != 4 || x.numel() == 0) return ref_(ctx);
    std::shared_ptr<const Plan> p = plan(x.shape());
    if (!p->ok) return ref_(ctx);
    Tensor& y = ctx.alloc_output(0, DType::Float32, p->y_shape, KernelContext::Init::Uninit);
    ThreadState& ts = thread_state();
    memory src(p->src, engine(), const_cast<void*>(x.raw()));
    memory dst(p->dst, engine(), y.raw());
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}};
    if (p->scratch) args.emplace(DNNL_ARG_SCRATCHPAD, memory(p->scratch_desc, engine(), ts.scratchpad(p->scratch)));
    set_omp_threads();
    p->prim.execute(ts.stream, args);
    ts.stream.wait();
  }

 private:
  std::shared_ptr<const Plan> plan(const Shape& xs) const {
    std::lock_guard<std::mutex> lk(mu_);
    if (auto it = plans_.find(xs); it != plans_.end()) return it->second;
    auto p = std::make_shared<Plan>();
    try {
      build(xs, *p);
    } catch (const dnnl::error&) {
      p->ok = false;
    }
    plans_[xs] = p;
    return p;
  }

  void build(const Shape& xs, Plan& p) const {
    const int64_t N = xs[0], H = xs[1], Wd = xs[2], C = xs[3];
    int64_t KH = H, KW = Wd, SH = 1, SW = 1, pt = 0, pl = 0, pb = 0, pr = 0, OH = 1, OW = 1;
    if (!global_) {
      KH = kernel_[0], KW = kernel_[1], SH = strides_[0], SW = strides_[1];
      pt = pads_[0], pl = pads_[1], pb = pads_[2], pr = pads_[3];
      if (!spatial(auto_pad_, H, KH, SH, 1, pt, pb, OH) || !spatial(auto_pad_, Wd, KW, SW, 1, pl, pr, OW)) return;
      // A window lying entirely in the padding would give oneDNN -inf / 0-count cells.
      if (pt >= KH || pb >= KH || pl >= KW || pr >= KW) return;
    }
    p.src = memory::desc({N, C, H, Wd}, ddt::f32, tag::nhwc);
    p.dst = memory::desc({N, C, OH, OW}, ddt::f32, tag::nhwc);
    const auto alg = max_ ? dnnl::algorithm::pooling_max
                          : (include_pad_ ? dnnl::algorithm::pooling_avg_include_padding
                                          : dnnl::algorithm::pooling_avg_exclude_padding);
    dnnl::pooling_forward::desc d(dnnl::prop_kind::forward_inference, alg, p.src, p.dst, {SH, SW}, {KH, KW}, {pt, pl},
                                  {pb, pr});
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::pooling_forward::primitive_desc pd(d, attr, engine());
    if (is_reference_impl(pd.impl_info_str())) return;
    p.prim = dnnl::pooling_forward(pd);
    p.scratch_desc = pd.scratchpad_desc();
    p.scratch = p.scratch_desc.get_size();
    p.y_shape = {N, OH, OW, C};
    p.ok = true;
  }

  KernelFn ref_;
  bool global_ = false, max_ = false, include_pad_ = false;
  std::string auto_pad_;
  std::vector<int64_t> kernel_, strides_, pads_;
  mutable std::mutex mu_;
  mutable std::map<Shape, std::shared_ptr<const Plan>> plans_;
};

}  // namespace

void register_fast_conv(FastRegistry& r) {
  r.add({"FusedConv", kCpuDomain, "onednn_conv", FastConv::prepare});
  for (const char* op : {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"})
    r.add({op, kCpuDomain, "onednn_pool", FastPool::prepare});
}

}  // namespace opennpu::cpu
