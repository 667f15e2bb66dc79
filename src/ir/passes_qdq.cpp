// ir/passes_qdq.cpp — fuse_qdq: QDQ patterns around Conv/MatMul/Gemm become integer ops.
//
//   DQ(x) , DQ(w) [, DQ(bias int32)] -> Conv   -> Q   =>  QLinearConv
//   DQ(a) , DQ(b)                    -> MatMul -> Q   =>  QLinearMatMul
//   DQ(a) , DQ(b) [, DQ(c int32)]    -> Gemm   -> Q   =>  com.microsoft QGemm
//
// A fusion happens only when the integer op can represent the pattern exactly: 8-bit x and w with
// constant per-tensor x/y scales and zero points, constant weights with a per-tensor scale or a
// per-output-channel scale on the right axis, an int32 bias whose scale is, bit for bit,
// float32(x_scale * w_scale[c]) with zero point 0, a MAC output read only by the one Q (not a graph
// output), Gemm with alpha = beta = 1. Anything else is left as it is (and runs in float32, where
// constant folding turns the weights' DequantizeLinear into float initializers). The integer op
// then computes what the float pattern computes up to the float rounding of the exact integer sum
// (see cpu/kernels/quant.cpp); the requantization is that of core/quant.h.
//
// Must run before fold_constants (which would fold DQ(weights) into float initializers).
// DequantizeLinear nodes that no longer have readers are removed here.
#include <cstring>
#include <unordered_map>

#include "ir/passes.h"

namespace opennpu::ir {
namespace {

struct Ctx {
  Model& m;
  Graph& g;
  std::unordered_map<std::string, size_t> producer;  // value -> node index
  std::unordered_map<std::string, int> readers;
  std::unordered_map<std::string, int> graph_outputs;
  std::unordered_map<std::string, int> graph_inputs;
};

// The constant value of `name`: an initializer that is not also a graph input, or the output of
// a Constant node with a `value` tensor. Null when it is not a known constant.
const Tensor* constant(const Ctx& c, const std::string& name) {
  if (name.empty() || c.graph_inputs.count(name)) return nullptr;
  auto it = c.g.initializers.find(name);
  if (it != c.g.initializers.end()) return &it->second;
  auto p = c.producer.find(name);
  if (p == c.producer.end()) return nullptr;
  const Node& n = c.g.nodes[p->second];
  if (n.op_type != "Constant" || !n.domain.empty()) return nullptr;
  return n.attr_t("value");
}

const Node* producer_of(const Ctx& c, const std::string& v, const char* op) {
  auto p = c.producer.find(v);
  if (p == c.producer.end()) return nullptr;
  const Node& n = c.g.nodes[p->second];
  return (n.op_type == op && n.domain.empty()) ? &n : nullptr;
}

bool is_q8(DType t) { return t == DType::Int8 || t == DType::UInt8; }

// A DequantizeLinear/QuantizeLinear's quantization parameters, all constants.
struct QParams {
  std::string q, scale, zp;  // names: quantized value (DQ input / Q output), scale, zero point ("" = absent)
  const Tensor* scale_t = nullptr;
  const Tensor* zp_t = nullptr;
  int64_t axis = 1;
};

// Per-tensor parameters of an activation: scalar float scale, scalar 8-bit zero point.
bool per_tensor(const Ctx& c, const Node& n, QParams& p) {
  if (n.inputs.size() < 3 || !n.has_input(1) || !n.has_input(2)) return false;
  p.scale = n.inputs[1];
  p.zp = n.inputs[2];
  p.scale_t = constant(c, p.scale);
  p.zp_t = constant(c, p.zp);
  if (!p.scale_t || !p.zp_t) return false;
  if (p.scale_t->dtype() != DType::Float32 || p.scale_t->numel() != 1) return false;
  if (!is_q8(p.zp_t->dtype()) || p.zp_t->numel() != 1) return false;
  return true;
}

float scale_at(const Tensor& s, int64_t i) { return s.data<float>()[s.numel() == 1 ? 0 : i]; }

// DQ(weights): constant 8-bit weights, float scale that is per-tensor or per-channel along
// `want_axis` (channels = w.dim(want_axis)), zero point of the weights' type (same shape as the
// scale, or absent -> created as zeros).
bool weight_params(Ctx& c, const Node& dq, int64_t want_axis, QParams& p, const Tensor*& w) {
  if (dq.inputs.size() < 2) return false;
  w = constant(c, dq.inputs[0]);
  if (!w || !is_q8(w->dtype()) || want_axis >= w->rank()) return false;
  p.q = dq.inputs[0];
  p.scale = dq.inputs[1];
  p.scale_t = constant(c, p.scale);
  if (!p.scale_t || p.scale_t->dtype() != DType::Float32) return false;
  int64_t ch = w->dim(want_axis);
  if (p.scale_t->numel() != 1) {
    int64_t axis = dq.attr_i("axis", 1);
    if (axis < 0) axis += w->rank();
    if (axis != want_axis || p.scale_t->rank() != 1 || p.scale_t->numel() != ch) return false;
  } else if (p.scale_t->rank() > 1) {
    return false;
  }
  if (dq.has_input(2)) {
    p.zp = dq.inputs[2];
    p.zp_t = constant(c, p.zp);
    if (!p.zp_t || p.zp_t->dtype() != w->dtype() || p.zp_t->shape() != p.scale_t->shape()) return false;
  } else {  // absent zero point: 0 of the weights' type
    p.zp = dq.name + "/zero_point";
    Tensor z(w->dtype(), p.scale_t->shape());
    std::memset(z.raw(), 0, z.nbytes());
    auto it = c.g.initializers.find(p.zp);
    if (it != c.g.initializers.end()) {  // made by an earlier fusion reading the same weights?
      if (it->second.dtype() != z.dtype() || it->second.shape() != z.shape() ||
          std::memcmp(it->second.raw(), z.raw(), z.nbytes()) != 0)
        return false;
    } else {
      if (c.producer.count(p.zp)) return false;
      c.g.initializers[p.zp] = z;
    }
    p.zp_t = &c.g.initializers[p.zp];
  }
  return true;
}

// DQ(bias int32) with scale == float32(x_s * w_s[c]) bit for bit and zero point 0; `n` outputs.
bool bias_ok(const Ctx& c, const std::string& v, float x_s, const Tensor& w_s, int64_t n, std::string& q) {
  const Node* dq = producer_of(c, v, "DequantizeLinear");
  if (!dq || dq->inputs.size() < 2 || c.readers.at(v) != 1 || c.graph_outputs.count(v)) return false;
  const Tensor* b = constant(c, dq->inputs[0]);
  const Tensor* s = constant(c, dq->inputs[1]);
  if (!b || !s || b->dtype() != DType::Int32 || s->dtype() != DType::Float32) return false;
  if (b->numel() != n || b->rank() != 1) return false;
  if (s->numel() != 1 && (s->rank() != 1 || s->numel() != n)) return false;
  if (s->numel() != 1 && dq->attr_i("axis", 1) != 0 && dq->attr_i("axis", 1) != -1) return false;
  if (dq->has_input(2)) {
    const Tensor* z = constant(c, dq->inputs[2]);
    if (!z || z->dtype() != DType::Int32) return false;
    for (int64_t i = 0; i < z->numel(); ++i)
      if (z->data<int32_t>()[i] != 0) return false;
  }
  for (int64_t i = 0; i < n; ++i) {
    float want = x_s * scale_at(w_s, i);
    float got = scale_at(*s, i);
    if (std::memcmp(&want, &got, sizeof(float)) != 0) return false;
  }
  q = dq->inputs[0];
  return true;
}

// Tries to fuse node `idx`; on success replaces it by the integer node and returns the index of
// the QuantizeLinear node to delete (else -1).
int64_t try_fuse(Ctx& c, size_t idx) {
  const Node& n = c.g.nodes[idx];
  if (!n.domain.empty() || n.outputs.size() != 1) return -1;
  const std::string& op = n.op_type;
  if (op != "Conv" && op != "MatMul" && op != "Gemm") return -1;
  if (n.inputs.size() < 2) return -1;
  // Output: read once, by a QuantizeLinear with constant per-tensor parameters.
  const std::string& out = n.outputs[0];
  if (c.graph_outputs.count(out) || c.readers[out] != 1) return -1;
  size_t q_idx = SIZE_MAX;
  for (size_t i = 0; i < c.g.nodes.size(); ++i) {
    const Node& r = c.g.nodes[i];
    if (r.op_type == "QuantizeLinear" && r.domain.empty() && !r.inputs.empty() && r.inputs[0] == out) q_idx = i;
  }
  if (q_idx == SIZE_MAX) return -1;
  const Node& qn = c.g.nodes[q_idx];
  QParams y;
  if (!per_tensor(c, qn, y) || qn.outputs.size() != 1) return -1;
  // Activation input.
  const Node* xdq = producer_of(c, n.inputs[0], "DequantizeLinear");
  QParams x;
  if (!xdq || !per_tensor(c, *xdq, x)) return -1;
  x.q = xdq->inputs[0];
  if (const ValueInfo* vi = c.g.find_value_info(x.q); vi && vi->dtype != DType::Undefined && vi->dtype != x.zp_t->dtype())
    return -1;
  // Weights.
  const Node* wdq = producer_of(c, n.inputs[1], "DequantizeLinear");
  if (!wdq) return -1;
  int64_t w_axis = 0;
  bool trans_b = false;
  if (op == "MatMul") w_axis = 1;
  if (op == "Gemm") {
    trans_b = n.attr_i("transB", 0) != 0;
    w_axis = trans_b ? 0 : 1;
    if (n.attr_f("alpha", 1.0f) != 1.0f || (n.has_input(2) && n.attr_f("beta", 1.0f) != 1.0f)) return -1;
  }
  QParams w;
  const Tensor* wt = nullptr;
  if (!weight_params(c, *wdq, w_axis, w, wt)) return -1;
  if ((op == "MatMul" || op == "Gemm") && wt->rank() != 2) return -1;
  if (op == "Conv" && wt->rank() < 3) return -1;
  const int64_t channels = wt->dim(w_axis);
  // Bias.
  std::string bias_q;
  if (op != "MatMul" && n.has_input(2)) {
    if (!bias_ok(c, n.inputs[2], x.scale_t->data<float>()[0], *w.scale_t, channels, bias_q)) return -1;
  }
  Node f;
  f.name = n.name;
  f.outputs = {qn.outputs[0]};
  if (op == "Conv") {
    f.op_type = "QLinearConv";
    for (const char* a : {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"})
      if (n.has_attr(a)) f.attrs[a] = *n.attr(a);
    f.inputs = {x.q, x.scale, x.zp, w.q, w.scale, w.zp, y.scale, y.zp};
    if (!bias_q.empty()) f.inputs.push_back(bias_q);
  } else if (op == "MatMul") {
    f.op_type = "QLinearMatMul";
    f.inputs = {x.q, x.scale, x.zp, w.q, w.scale, w.zp, y.scale, y.zp};
  } else {
    f.op_type = "QGemm";
    f.domain = "com.microsoft";
    for (const char* a : {"transA", "transB"})
      if (n.has_attr(a)) f.attrs[a] = *n.attr(a);
    f.inputs = {x.q, x.scale, x.zp, w.q, w.scale, w.zp, bias_q, y.scale, y.zp};
    if (!c.m.opsets.count("com.microsoft")) c.m.opsets["com.microsoft"] = 1;
  }
  c.g.nodes[idx] = std::move(f);
  return static_cast<int64_t>(q_idx);
}

}  // namespace

int fuse_qdq(Model& m) {
  Graph& g = m.graph;
  int fused = 0;
  bool any_q = false;
  for (const auto& n : g.nodes) any_q |= n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear";
  if (!any_q) return 0;
  std::vector<bool> drop(g.nodes.size(), false);
  Ctx c{m, g, {}, {}, {}, {}};
  auto index = [&] {
    c.producer.clear();
    c.readers.clear();
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      if (drop[i]) continue;
      for (const auto& o : g.nodes[i].outputs)
        if (!o.empty()) c.producer[o] = i;
      for (const auto& r : node_reads(g.nodes[i])) c.readers[r]++;
    }
  };
  for (const auto& o : g.outputs) c.graph_outputs[o.name] = 1;
  for (const auto& i : g.inputs) c.graph_inputs[i.name] = 1;
  index();
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (drop[i]) continue;
    int64_t q = try_fuse(c, i);
    if (q < 0) continue;
    drop[static_cast<size_t>(q)] = true;
    ++fused;
    index();
  }
  if (!fused) return 0;
  // Drop the fused Q nodes, then DequantizeLinear nodes nobody reads any more (weights, biases,
  // activations whose only readers were fused), until nothing changes.
  for (bool changed = true; changed;) {
    changed = false;
    index();
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      const Node& n = g.nodes[i];
      if (drop[i] || n.op_type != "DequantizeLinear" || n.outputs.size() != 1) continue;
      if (!c.readers.count(n.outputs[0]) && !c.graph_outputs.count(n.outputs[0])) {
        drop[i] = true;
        changed = true;
      }
    }
  }
  std::vector<Node> kept;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!drop[i]) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
  // The integer node reads the quantized inputs directly; a Q's output it now reads may come
  // later in node order than the MAC node did (not for QDQ models in practice): re-sort.
  topo_sort(g);
  return fused;
}

}  // namespace opennpu::ir
