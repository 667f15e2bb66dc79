// cpu/fast/conv_fuse.cpp — the conv graph passes and the reference kernels of the ops they create
// (see conv.h). The reference kernels are plain compositions of the ONNX reference kernels
// (Conv, Add, the pooling ops) with layout transposes and the activation's formula, so the
// executor can always fall back to them and tests can compare the fast kernels against them.
#include <cmath>
#include <limits>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "cpu/fast/conv.h"

namespace opennpu::cpu {

namespace {

bool onnx_domain(const ir::Node& n) { return n.domain.empty() || n.domain == "ai.onnx"; }

ir::Attribute attr_str(std::string s) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::String;
  a.s = std::move(s);
  return a;
}
ir::Attribute attr_float(float f) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::Float;
  a.f = f;
  return a;
}
ir::Attribute attr_int(int64_t i) {
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::Int;
  a.i = i;
  return a;
}

// Runs the ai.onnx reference kernel `op` with `node`'s attributes on `ins`; returns output 0.
Tensor run_reference(const std::string& op, const ir::Node& node, std::vector<const Tensor*> ins, int64_t opset) {
  const KernelDef* k = registry().find("", op, opset);
  if (!k) throw Error(node.where() + ": " + registry().why_not("", op, opset));
  KernelContext sub(node, std::move(ins), opset, nullptr);
  k->fn(sub);
  return std::move(sub.outputs()[0]);
}

int64_t onnx_opset_of(const ir::Node& n) { return n.attr_i("onnx_opset", 17); }

template <class F>
Tensor permute4(const Tensor& x, Shape out_shape, F index) {
  Tensor y(x.dtype(), std::move(out_shape));
  const size_t es = dtype_size(x.dtype());
  const auto* src = static_cast<const unsigned char*>(x.raw());
  auto* dst = static_cast<unsigned char*>(y.raw());
  const int64_t N = x.dim(0), A = x.dim(1), B = x.dim(2), C = x.dim(3);
  int64_t i = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t a = 0; a < A; ++a)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < C; ++c, ++i) std::memcpy(dst + index(n, a, b, c) * es, src + i * es, es);
  return y;
}

}  // namespace

Tensor nchw_to_nhwc(const Tensor& x) {
  if (x.rank() != 4) throw Error("nchw_to_nhwc: rank-4 tensor expected, got " + shape_str(x.shape()));
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  return permute4(x, {N, H, W, C}, [=](int64_t n, int64_t c, int64_t h, int64_t w) { return ((n * H + h) * W + w) * C + c; });
}

Tensor nhwc_to_nchw(const Tensor& x) {
  if (x.rank() != 4) throw Error("nhwc_to_nchw: rank-4 tensor expected, got " + shape_str(x.shape()));
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
  return permute4(x, {N, C, H, W}, [=](int64_t n, int64_t h, int64_t w, int64_t c) { return ((n * C + c) * H + h) * W + w; });
}

// FusedConv reference: Y = act(Conv(X, W, B) + Z), in the node's layout.
void fused_conv_reference(KernelContext& ctx) {
  const ir::Node& node = ctx.node();
  const bool nhwc = node.attr_s("layout", "NCHW") == "NHWC";
  const int64_t opset = onnx_opset_of(node);
  Tensor x = ctx.input(0);
  if (nhwc) {
    ctx.check(x.rank() == 4, "layout NHWC needs a rank-4 input X, got {}", shape_str(x.shape()));
    x = nhwc_to_nchw(x);
  }
  Tensor y = run_reference("Conv", node, {&x, &ctx.input(1), ctx.optional_input(2)}, opset);
  if (const Tensor* zp = ctx.optional_input(3)) {
    Tensor z = *zp;
    if (nhwc) {
      ctx.check(z.rank() == 4, "layout NHWC needs a rank-4 input Z, got {}", shape_str(z.shape()));
      z = nhwc_to_nchw(z);
    }
    ir::Node add;
    add.name = node.name;
    add.op_type = "Add";
    add.inputs = {"a", "b"};
    add.outputs = {"y"};
    y = run_reference("Add", add, {&y, &z}, opset);
  }
  const std::string act = node.attr_s("activation", "");
  if (!act.empty()) {
    ctx.check(y.dtype() == DType::Float32, "activation {} needs float32, got {}", act, dtype_name(y.dtype()));
    const float a = node.attr_f("activation_alpha", 0.f), b = node.attr_f("activation_beta", 0.f);
    float* p = y.data<float>();
    const int64_t n = y.numel();
    if (act == "Relu") for (int64_t i = 0; i < n; ++i) p[i] = p[i] < 0.f ? 0.f : p[i];
    else if (act == "LeakyRelu") for (int64_t i = 0; i < n; ++i) p[i] = p[i] < 0.f ? a * p[i] : p[i];
    else if (act == "Clip") for (int64_t i = 0; i < n; ++i) p[i] = p[i] < a ? a : (p[i] > b ? b : p[i]);
    else if (act == "Sigmoid") for (int64_t i = 0; i < n; ++i) p[i] = 1.f / (1.f + std::exp(-p[i]));
    else if (act == "Tanh") for (int64_t i = 0; i < n; ++i) p[i] = std::tanh(p[i]);
    else ctx.fail("unknown activation '{}'", act);
  }
  ctx.set_output(0, nhwc ? nchw_to_nhwc(y) : y);
}

// NHWC pooling reference: the ONNX op of the same name on the NCHW tensor.
void nhwc_pool_reference(KernelContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  ctx.check(x.rank() == 4, "layout NHWC needs a rank-4 input, got {}", shape_str(x.shape()));
  Tensor xc = nhwc_to_nchw(x);
  ir::Node one = node;  // only output 0 (the pass never converts a MaxPool whose Indices are read)
  one.outputs.resize(1);
  Tensor y = run_reference(node.op_type, one, {&xc}, onnx_opset_of(node));
  ctx.set_output(0, nchw_to_nhwc(y));
}

void register_conv_fused(Registry& r) {
  const std::string f = "float";
  r.add({"FusedConv", kCpuDomain, 1, 1, f, fused_conv_reference});
  for (const char* op : {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"})
    r.add({op, kCpuDomain, 1, 1, f, nhwc_pool_reference});
}

// ---------------------------------------------------------------------------------------------
// Passes.

namespace {

struct Readers {
  std::unordered_map<std::string, std::vector<size_t>> of;
  std::unordered_set<std::string> outputs;
  explicit Readers(const ir::Graph& g) {
    for (size_t i = 0; i < g.nodes.size(); ++i)
      for (const auto& r : ir::node_reads(g.nodes[i])) of[r].push_back(i);
    for (const auto& o : g.outputs) outputs.insert(o.name);
  }
  // The index of the only node reading v (v not a graph output), or -1.
  long sole(const std::string& v) const {
    if (outputs.count(v)) return -1;
    auto it = of.find(v);
    return it == of.end() || it->second.size() != 1 ? -1 : static_cast<long>(it->second[0]);
  }
};

// The static shape of v (graph input, initializer or inferred value), or nullopt.
std::optional<Shape> static_shape(const ir::Graph& g, const std::string& v) {
  if (auto it = g.initializers.find(v); it != g.initializers.end()) return it->second.shape();
  for (const auto& in : g.inputs)
    if (in.name == v) return in.fully_static() ? std::optional<Shape>(in.static_shape()) : std::nullopt;
  const ir::ValueInfo* vi = g.find_value_info(v);
  if (vi && vi->fully_static()) return vi->static_shape();
  return std::nullopt;
}

// Whether Add(conv output, z) may become a sum post-op: z has the conv output's shape when both
// are known; when not, z must be of rank 4 or another 2-D conv's output (rank 4, the layout pass may transpose
// it; a broadcasting z of rank 4 is still computed right, by the reference kernel).
bool residual_operand(const ir::Graph& g, const std::string& z, const std::string& conv_out) {
  auto sz = static_shape(g, z), sc = static_shape(g, conv_out);
  if (sz && sc) return *sz == *sc;
  if (sz) return sz->size() == 4;
  const int p = producer_of(g, z);
  if (p < 0) return false;
  const ir::Node& n = g.nodes[static_cast<size_t>(p)];
  if (n.op_type == "FusedConv" && n.domain == kCpuDomain) return true;
  if (n.op_type != "Conv" || !onnx_domain(n) || n.inputs.size() < 2) return false;
  auto w = g.initializers.find(n.inputs[1]);
  return w != g.initializers.end() && w->second.rank() == 4;
}

}  // namespace

int fuse_conv_activation(ir::Model& m) {
  ir::Graph& g = m.graph;
  const int64_t opset = m.opset("");
  std::unordered_set<std::string> graph_inputs;
  for (const auto& v : g.inputs) graph_inputs.insert(v.name);
  auto const_f32 = [&](const std::string& n) -> const Tensor* {
    if (n.empty() || graph_inputs.count(n)) return nullptr;
    auto it = g.initializers.find(n);
    return it == g.initializers.end() || it->second.dtype() != DType::Float32 ? nullptr : &it->second;
  };
  const Readers readers(g);
  std::vector<bool> drop(g.nodes.size(), false);
  int rewrites = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const ir::Node& c = g.nodes[i];
    if (c.op_type != "Conv" || !onnx_domain(c) || c.outputs.size() != 1 || c.num_inputs() < 2) continue;
    const Tensor* w = const_f32(c.inputs[1]);
    if (!w || w->rank() != 4) continue;  // 2-D convs with constant float weights
    if (c.has_input(2) && !const_f32(c.inputs[2])) continue;
    ir::Node f;
    f.name = c.name;
    f.op_type = "FusedConv";
    f.domain = kCpuDomain;
    f.inputs = {c.inputs[0], c.inputs[1], c.has_input(2) ? c.inputs[2] : ""};
    f.attrs = c.attrs;
    f.attrs["onnx_opset"] = attr_int(opset);
    std::string out = c.outputs[0];
    size_t last = i;
    // Residual Add: Add(out, Z) or Add(Z, out), Z of the same shape (checked again at run time).
    long j = readers.sole(out);
    if (j >= 0 && !drop[j]) {
      const ir::Node& a = g.nodes[j];
      if (a.op_type == "Add" && onnx_domain(a) && a.inputs.size() == 2 && a.outputs.size() == 1 &&
          a.inputs[0] != a.inputs[1] && !a.inputs[0].empty() && !a.inputs[1].empty()) {
        const std::string& z = a.inputs[0] == out ? a.inputs[1] : a.inputs[0];
        if (residual_operand(g, z, out)) {
          f.inputs.push_back(z);
          out = a.outputs[0];
          drop[j] = true;
          last = static_cast<size_t>(j);
        }
      }
    }
    // Activation.
    j = readers.sole(out);
    if (j >= 0 && !drop[j]) {
      const ir::Node& a = g.nodes[j];
      std::string act;
      float alpha = 0.f, beta = 0.f;
      if (onnx_domain(a) && a.outputs.size() == 1 && !a.inputs.empty() && a.inputs[0] == out) {
        if (a.op_type == "Relu" || a.op_type == "Sigmoid" || a.op_type == "Tanh") {
          act = a.op_type;
        } else if (a.op_type == "LeakyRelu") {
          act = a.op_type;
          alpha = a.attr_f("alpha", 0.01f);
        } else if (a.op_type == "Clip") {
          alpha = std::numeric_limits<float>::lowest();
          beta = std::numeric_limits<float>::max();
          bool ok = true;
          if (opset < 11) {
            alpha = a.attr_f("min", alpha);
            beta = a.attr_f("max", beta);
          } else {
            for (size_t k = 1; k < 3; ++k) {
              if (!a.has_input(k)) continue;
              const Tensor* t = const_f32(a.inputs[k]);
              if (!t || t->numel() != 1) ok = false;
              else (k == 1 ? alpha : beta) = t->data<float>()[0];
            }
          }
          if (ok) act = "Clip";
        }
      }
      if (!act.empty()) {
        f.attrs["activation"] = attr_str(act);
        f.attrs["activation_alpha"] = attr_float(alpha);
        f.attrs["activation_beta"] = attr_float(beta);
        out = a.outputs[0];
        drop[j] = true;
        last = static_cast<size_t>(j);
      }
    }
    f.outputs = {out};
    if (last != i) {
      drop[i] = true;
      drop[last] = false;
    }
    g.nodes[last] = std::move(f);
    ++rewrites;
  }
  erase_dropped(g.nodes, drop);
  return rewrites;
}

int conv_layout_nhwc(ir::Model& m) {
  ir::Graph& g = m.graph;
  static const std::unordered_set<std::string> unary = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid",
                                                        "HardSwish", "Elu", "Selu", "Neg", "Abs", "Exp", "Softplus"};
  static const std::unordered_set<std::string> binary = {"Add", "Sub", "Mul", "Div", "Max", "Min"};
  static const std::unordered_set<std::string> pools = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"};
  std::vector<ir::Node> out;
  out.reserve(g.nodes.size() + 8);
  NhwcRewriter nh(g, out, "");
  int converted = 0;
  for (auto& n0 : g.nodes) {
    ir::Node n = std::move(n0);
    const bool onnx = onnx_domain(n);
    const bool single_out = n.outputs.size() == 1 || (n.outputs.size() == 2 && n.outputs[1].empty());
    bool done = false;
    if (n.op_type == "FusedConv" && n.domain == kCpuDomain && n.attr_s("layout", "NCHW") == "NCHW") {
      n.inputs[0] = nh.want_nhwc(n.inputs[0]);
      if (n.inputs.size() > 3 && !n.inputs[3].empty()) n.inputs[3] = nh.want_nhwc(n.inputs[3]);
      n.attrs["layout"] = attr_str("NHWC");
      nh.make_nhwc_output(n);
      done = true;
    } else if (onnx && pools.count(n.op_type) && single_out && n.num_inputs() == 1 && nh.is_nhwc(n.inputs[0])) {
      n.outputs.resize(1);
      n.inputs[0] = nh.nhwc(n.inputs[0]);
      n.domain = kCpuDomain;
      n.attrs["layout"] = attr_str("NHWC");
      n.attrs["onnx_opset"] = attr_int(m.opset(""));
      nh.make_nhwc_output(n);
      done = true;
    } else if (onnx && n.outputs.size() == 1 && !n.inputs.empty() && nh.is_nhwc(n.inputs[0])) {
      bool ok = false;
      if (unary.count(n.op_type)) {
        ok = true;
        for (size_t k = 1; k < n.inputs.size(); ++k) ok &= !nh.is_nhwc(n.inputs[k]);  // Clip min/max
        if (ok) n.inputs[0] = nh.nhwc(n.inputs[0]);
      } else if (binary.count(n.op_type) && n.inputs.size() >= 2) {
        ok = true;
        for (const auto& v : n.inputs) ok &= !v.empty() && nh.is_nhwc(v);
        if (ok)
          for (auto& v : n.inputs) v = nh.nhwc(v);
      }
      bool subgraph = false;
      for (const auto& [_, a] : n.attrs)
        subgraph |= a.kind == ir::Attribute::Kind::Graph || a.kind == ir::Attribute::Kind::Graphs;
      if (ok && !subgraph) {
        nh.make_nhwc_output(n);
        done = true;
      }
    }
    if (!done)
      for (const auto& r : ir::node_reads(n)) nh.need_nchw(r);
    else
      ++converted;
    out.push_back(std::move(n));
  }
  for (const auto& o : g.outputs) nh.need_nchw(o.name);
  g.nodes = std::move(out);
  return converted;
}

void add_conv_passes(std::vector<CpuPass>& p) {
  p.push_back({"fuse_conv_activation", fuse_conv_activation});
  p.push_back({"conv_layout_nhwc", conv_layout_nhwc});
}

}  // namespace opennpu::cpu
