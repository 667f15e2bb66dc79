// NPU compiler: partition, lower to layers, tile into tasks. See compiler.h.
#include "npu/compiler/compiler.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <set>
#include <unordered_map>

#include <fmt/format.h>

#include "core/half.h"
#include "core/parallel.h"
#include "core/quant.h"
#include "npu/sim/gemm_tile.h"

namespace opennpu::npu {

const char* engine_name(Engine e) {
  switch (e) {
    case Engine::DmaIn: return "dma_in";
    case Engine::DmaOut: return "dma_out";
    case Engine::Mac: return "mac";
    case Engine::Vec: return "vector";
  }
  return "?";
}

int64_t elem_bytes(DType storage) {
  switch (storage) {
    case DType::Int8: case DType::UInt8: return 1;
    case DType::Float32: return 4;
    default: return 2;
  }
}

int Program::buffer_id(const std::string& name) const {
  for (size_t i = 0; i < buffers.size(); ++i)
    if (buffers[i].name == name) return static_cast<int>(i);
  return -1;
}

namespace {

struct ValueType {
  DType dtype = DType::Undefined;
  Shape shape;
  bool known = false;
};

// Static types of every value the graph knows (inputs, value_info, outputs, initializers).
std::unordered_map<std::string, ValueType> static_types(const ir::Graph& g) {
  std::unordered_map<std::string, ValueType> t;
  auto add = [&](const ir::ValueInfo& v) {
    if (v.fully_static() && v.dtype != DType::Undefined && v.kind == "tensor") t[v.name] = {v.dtype, v.static_shape(), true};
  };
  for (const auto& v : g.inputs) add(v);
  for (const auto& [_, v] : g.value_info) add(v);
  for (const auto& v : g.outputs) add(v);
  for (const auto& [n, x] : g.initializers) t[n] = {x.dtype(), x.shape(), true};
  return t;
}

enum class Lower { Gemm, Vector, Move, View, Recurrent, None };

const std::map<std::string, Lower>& lowerable() {
  static const std::map<std::string, Lower> m = {
      {"Conv", Lower::Gemm}, {"ConvTranspose", Lower::Gemm}, {"Gemm", Lower::Gemm}, {"MatMul", Lower::Gemm},
      {"Add", Lower::Vector}, {"Sub", Lower::Vector}, {"Mul", Lower::Vector}, {"Div", Lower::Vector},
      {"Max", Lower::Vector}, {"Min", Lower::Vector}, {"Pow", Lower::Vector}, {"Relu", Lower::Vector},
      {"LeakyRelu", Lower::Vector}, {"Clip", Lower::Vector}, {"Sigmoid", Lower::Vector}, {"Tanh", Lower::Vector},
      {"HardSigmoid", Lower::Vector}, {"HardSwish", Lower::Vector}, {"Erf", Lower::Vector}, {"Exp", Lower::Vector},
      {"Sqrt", Lower::Vector}, {"Reciprocal", Lower::Vector}, {"Neg", Lower::Vector}, {"Abs", Lower::Vector},
      {"Softmax", Lower::Vector}, {"BatchNormalization", Lower::Vector}, {"LayerNormalization", Lower::Vector},
      {"ReduceMean", Lower::Vector}, {"ReduceSum", Lower::Vector}, {"ReduceMax", Lower::Vector},
      {"MaxPool", Lower::Vector}, {"AveragePool", Lower::Vector}, {"GlobalAveragePool", Lower::Vector},
      {"GlobalMaxPool", Lower::Vector}, {"Resize", Lower::Vector}, {"Upsample", Lower::Vector},
      {"Transpose", Lower::Move}, {"Concat", Lower::Move}, {"Split", Lower::Move}, {"Slice", Lower::Move},
      {"Pad", Lower::Move},
      {"Reshape", Lower::View}, {"Flatten", Lower::View}, {"Squeeze", Lower::View}, {"Unsqueeze", Lower::View},
      {"Identity", Lower::View}, {"Dropout", Lower::View},
      {"LSTM", Lower::Recurrent},
  };
  return m;
}

// The LUT function an activation op needs ("" when the vector unit computes it exactly).
std::string lut_for(const std::string& op) {
  if (op == "Sigmoid") return "sigmoid";
  if (op == "Tanh") return "tanh";
  if (op == "Erf") return "erf";
  if (op == "Exp" || op == "Softmax") return "exp";
  return "";
}

bool is_depthwise(const ir::Node& n, const std::unordered_map<std::string, ValueType>& types) {
  if (n.op_type != "Conv") return false;
  auto it = types.find(n.inputs[0]);
  int64_t group = n.attr_i("group", 1);
  return it != types.end() && it->second.shape.size() == 4 && group > 1 && group == it->second.shape[1];
}

struct Reasoner {
  const ir::Model& m;
  const HardwareConfig& hw;
  std::unordered_map<std::string, ValueType> types;
  Reasoner(const ir::Model& model, const HardwareConfig& h, std::unordered_map<std::string, ValueType> t)
      : m(model), hw(h), types(std::move(t)) {}

  bool is_const(const std::string& v) const {
    if (!m.graph.is_initializer(v)) return false;
    for (const auto& in : m.graph.inputs) if (in.name == v) return false;
    return true;
  }
  const Tensor* constant(const std::string& v) const {
    return is_const(v) ? &m.graph.initializers.at(v) : nullptr;
  }

  // ---- INT8 (quantized models; docs/int8.md) ----
  // Roles of the nodes of a quantized graph, decided once for the whole graph by analyze():
  //   QGemm       QLinearConv / QLinearMatMul / com.microsoft QGemm: an INT8 GEMM layer
  //   Region      a float op whose data inputs are all DequantizeLinear outputs and whose output
  //               goes (optionally through one Relu/Clip) to one QuantizeLinear: an int8-in /
  //               int8-out vector layer computing exactly the float32 sequence DQ -> op -> Q
  //   DqAbsorbed / QAbsorbed / ActAbsorbed   parts of a Region layer (no layer of their own)
  //   Dq / Q      a standalone DequantizeLinear (int8 -> fp32) / QuantizeLinear (fp32 -> int8)
  enum class QRole : uint8_t { None, QGemm, Region, DqAbsorbed, QAbsorbed, ActAbsorbed, Dq, Q };
  bool int8_hw = false;                  // the engine declares INT8 MACs
  std::vector<QRole> role;               // per node
  std::vector<std::string> reasons, notes;  // per node: decline reason / note when on the NPU
  std::unordered_map<std::string, int> producer;
  std::unordered_map<std::string, std::vector<int>> readers;
  std::set<std::string> graph_outs;
  std::vector<int> region_q, region_act, region_mid;  // Region node -> its absorbed Q / activation / mid Q node (-1)

  struct QP {  // per-tensor quantization parameters of a DQ or Q node
    bool ok = false;
    float scale = 0;
    int32_t zp = 0;
    DType type = DType::Undefined;  // the quantized type
    std::string why;
  };

  int index_of(const ir::Node& n) const {
    const auto& nodes = m.graph.nodes;
    if (!nodes.empty() && &n >= &nodes.front() && &n <= &nodes.back()) return static_cast<int>(&n - &nodes.front());
    for (size_t i = 0; i < nodes.size(); ++i) if (nodes[i].name == n.name && nodes[i].op_type == n.op_type) return static_cast<int>(i);
    return -1;
  }
  const ir::Node* producer_node(const std::string& v) const {
    auto it = producer.find(v);
    return it == producer.end() ? nullptr : &m.graph.nodes[it->second];
  }
  static bool is_q8(DType t) { return t == DType::Int8 || t == DType::UInt8; }
  static bool is_qgemm_op(const ir::Node& n) {
    return (n.domain.empty() && (n.op_type == "QLinearConv" || n.op_type == "QLinearMatMul")) ||
           (n.domain == "com.microsoft" && n.op_type == "QGemm");
  }
  static bool is_region_op(const std::string& op) {
    static const std::set<std::string> ops = {"Add", "Sub", "Mul", "Max", "Min", "Relu", "Clip", "MaxPool", "AveragePool",
                                              "GlobalAveragePool", "GlobalMaxPool", "Concat", "Transpose", "Reshape",
                                              "Flatten", "Squeeze", "Unsqueeze", "Identity"};
    return ops.count(op) != 0;
  }
  DType dtype_of(const std::string& v) const {
    auto it = types.find(v);
    return it == types.end() ? DType::Undefined : it->second.dtype;
  }
  // A constant scalar float32 scale and optional scalar zero point.
  QP scalar_qparams(const std::string& scale, const std::string& zp, DType type, const char* what) const {
    QP q;
    q.type = type;
    const Tensor* s = constant(scale);
    if (!s || s->dtype() != DType::Float32 || s->numel() != 1) { q.why = fmt::format("{} scale is not a constant float32 scalar", what); return q; }
    q.scale = s->data<float>()[0];
    if (!std::isfinite(q.scale) || q.scale == 0.f) { q.why = fmt::format("{} scale {} is not finite and non-zero", what, q.scale); return q; }
    if (!zp.empty()) {
      const Tensor* z = constant(zp);
      if (!z || z->numel() != 1 || !is_q8(z->dtype())) { q.why = fmt::format("{} zero point is not a constant 8-bit scalar", what); return q; }
      q.zp = static_cast<int32_t>(z->get_f64(0));
    }
    q.ok = true;
    return q;
  }
  QP dq_params(const ir::Node& dq) const {
    if (dq.inputs.size() < 2 || !is_q8(dtype_of(dq.inputs[0]))) { QP q; q.why = "DequantizeLinear of a non-8-bit tensor"; return q; }
    return scalar_qparams(dq.inputs[1], dq.has_input(2) ? dq.inputs[2] : "", dtype_of(dq.inputs[0]), "DequantizeLinear");
  }
  QP q_params(const ir::Node& q) const {
    DType t = q.has_input(2) ? dtype_of(q.inputs[2]) : DType::UInt8;
    if (q.inputs.size() < 2 || !is_q8(t) || dtype_of(q.inputs[0]) != DType::Float32) { QP r; r.why = "QuantizeLinear other than float32 -> 8-bit"; return r; }
    return scalar_qparams(q.inputs[1], q.has_input(2) ? q.inputs[2] : "", t, "QuantizeLinear");
  }
  bool is_dq(const ir::Node* n) const { return n && n->domain.empty() && n->op_type == "DequantizeLinear"; }
  bool is_q(const ir::Node* n) const { return n && n->domain.empty() && n->op_type == "QuantizeLinear"; }
  // The single reader of v (not a graph output), or null.
  const ir::Node* only_reader(const std::string& v) const {
    if (graph_outs.count(v)) return nullptr;
    auto it = readers.find(v);
    if (it == readers.end() || it->second.size() != 1) return nullptr;
    return &m.graph.nodes[it->second[0]];
  }

  // The float op equivalent of an integer GEMM node (same attributes; inputs x, w[, bias]).
  static ir::Node float_proxy(const ir::Node& n) {
    ir::Node p = n;
    p.domain = "";
    auto in = [&](size_t i) { return n.has_input(i) ? n.inputs[i] : std::string(); };
    if (n.op_type == "QLinearConv") { p.op_type = "Conv"; p.inputs = {in(0), in(3)}; if (n.has_input(8)) p.inputs.push_back(in(8)); }
    else if (n.op_type == "QLinearMatMul") { p.op_type = "MatMul"; p.inputs = {in(0), in(3)}; }
    else { p.op_type = "Gemm"; p.inputs = {in(0), in(3)}; if (n.has_input(6)) p.inputs.push_back(in(6)); p.attrs.erase("alpha"); }
    return p;
  }

  std::string why_qgemm(const ir::Node& n) const {
    const std::string& op = n.op_type;
    const char* base = op == "QLinearConv" ? "Conv" : op == "QLinearMatMul" ? "MatMul" : "Gemm";
    if (!hw.supports_op(base)) return fmt::format("op {} ({} in INT8) is not in {}'s supported ops", op, base, hw.name);
    if (!hw.supports_dtype("fp16") && !int8_hw) return fmt::format("{} computes in neither fp16 nor int8", hw.name);
    const bool gemm = op == "QGemm";
    const size_t nin = gemm ? 9 : 8;
    if (n.inputs.size() < nin - (gemm ? 0 : 0) && !(gemm && n.inputs.size() >= 8))
      return fmt::format("{} without its scale/zero-point inputs", op);
    if (gemm && !n.has_input(7)) return "QGemm with a float output (no y_scale) is not lowered";
    for (const auto& v : {n.inputs[0], n.outputs[0]})
      if (!types.count(v)) return fmt::format("value '{}' has a dynamic or unknown shape", v);
    const size_t ixs = 1, ixz = 2, iw = 3, iws = 4, iwz = 5, iys = gemm ? 7 : 6, iyz = gemm ? 8 : 7;
    if (!is_q8(dtype_of(n.inputs[0])) || !is_q8(dtype_of(n.inputs[iw])) || !is_q8(dtype_of(n.outputs[0])))
      return fmt::format("{} operands must be 8-bit", op);
    QP x = scalar_qparams(n.inputs[ixs], n.has_input(ixz) ? n.inputs[ixz] : "", dtype_of(n.inputs[0]), "input");
    if (!x.ok) return x.why + " (per-tensor input quantization is lowered)";
    QP y = scalar_qparams(n.inputs[iys], n.has_input(iyz) ? n.inputs[iyz] : "", dtype_of(n.outputs[0]), "output");
    if (!y.ok) return y.why + " (per-tensor output quantization is lowered)";
    const Tensor* ws = constant(n.inputs[iws]);
    const Tensor* wz = n.has_input(iwz) ? constant(n.inputs[iwz]) : nullptr;
    if (!ws || ws->dtype() != DType::Float32 || (n.has_input(iwz) && !wz)) return "weight scale/zero point are not constant";
    for (int64_t i = 0; i < ws->numel(); ++i) if (!std::isfinite(ws->data<float>()[i]) || ws->data<float>()[i] == 0.f) return "weight scale not finite and non-zero";
    if (!types.count(n.inputs[iw])) return "weights have a dynamic shape";
    ir::Node p = float_proxy(n);
    const Shape& out = shape(n.outputs[0]);
    const int64_t N = op == "QLinearConv" ? out[1] : out.back();
    if (ws->numel() != 1 && ws->numel() != N) return fmt::format("weight scale must be per tensor or per output channel ({} values)", N);
    if (wz && wz->numel() != 1 && wz->numel() != N) return "weight zero point must be per tensor or per output channel";
    if (gemm) {
      if (n.attr_i("transA", 0)) return "QGemm with transA=1 is not lowered";
      if (!std::isfinite(n.attr_f("alpha", 1.f))) return "QGemm alpha is not finite";
      if (n.has_input(6)) {
        const Tensor* c = constant(n.inputs[6]);
        if (!c || c->dtype() != DType::Int32 || (c->numel() != 1 && c->numel() != N)) return "QGemm C must be a constant int32 scalar or per-column vector";
      }
    }
    if (op == "QLinearConv" && n.has_input(8)) {
      const Tensor* b = constant(n.inputs[8]);
      if (!b || b->dtype() != DType::Int32 || b->numel() != N) return "QLinearConv bias must be a constant int32 vector";
    }
    if (op == "QLinearMatMul" && !is_const(n.inputs[3]) && (ws->numel() != 1 || (wz && wz->numel() != 1)))
      return "QLinearMatMul with an activation B needs per-tensor b scale/zero point";
    return op_specific(p);
  }

  // Fills role/reasons/notes for every node (graph order).
  void analyze() {
    const auto& nodes = m.graph.nodes;
    int8_hw = hw.mac.macs_per_cycle_int8 > 0 && hw.supports_dtype("int8");
    role.assign(nodes.size(), QRole::None);
    reasons.assign(nodes.size(), "");
    notes.assign(nodes.size(), "");
    region_q.assign(nodes.size(), -1);
    region_act.assign(nodes.size(), -1);
    region_mid.assign(nodes.size(), -1);
    for (size_t i = 0; i < nodes.size(); ++i) {
      for (const auto& o : nodes[i].outputs) if (!o.empty()) producer[o] = static_cast<int>(i);
      for (const auto& v : ir::node_reads(nodes[i])) readers[v].push_back(static_cast<int>(i));
    }
    for (const auto& o : m.graph.outputs) graph_outs.insert(o.name);
    const std::string fp16_note = fmt::format("no INT8 compute on {}: runs in FP16 after dequantization", hw.name);
    // 1. Integer GEMMs and float ops.
    for (size_t i = 0; i < nodes.size(); ++i) {
      const auto& n = nodes[i];
      if (is_qgemm_op(n)) {
        role[i] = QRole::QGemm;
        reasons[i] = why_qgemm(n);
        notes[i] = int8_hw ? "INT8 (W8A8): int32 accumulation, requantized on store" : fp16_note;
        continue;
      }
      if (is_dq(&n) || is_q(&n) || role[i] != QRole::None) continue;
      reasons[i] = why_float(n);
      if (!reasons[i].empty() || !is_region_op(n.op_type)) continue;
      // Region candidate: all non-constant data inputs are per-tensor DequantizeLinear outputs ...
      bool region = n.outputs.size() == 1 || (n.op_type == "MaxPool" && (n.outputs.size() < 2 || n.outputs[1].empty()));
      bool any_dq = false;
      std::map<std::string, std::pair<float, int32_t>> seen;  // int8 value -> its (scale, zp) here
      for (size_t k = 0; k < n.inputs.size() && region; ++k) {
        const auto& v = n.inputs[k];
        if (v.empty() || is_const(v)) continue;
        const ir::Node* p = producer_node(v);
        if (!is_dq(p)) { region = false; break; }
        QP q = dq_params(*p);
        if (!q.ok) { region = false; break; }
        auto [it, fresh] = seen.emplace(p->inputs[0], std::make_pair(q.scale, q.zp));
        if (!fresh && (it->second.first != q.scale || it->second.second != q.zp)) region = false;
        any_dq = true;
      }
      if (!region || !any_dq) continue;
      // ... and its output reaches exactly one QuantizeLinear, possibly through one Relu/Clip.
      const ir::Node* r = only_reader(n.outputs[0]);
      int act = -1, mid = -1;
      // op -> Q -> DQ -> Relu/Clip -> Q: the activation's own quantization pair is absorbed too.
      if (is_q(r) && q_params(*r).ok && n.op_type != "Relu" && n.op_type != "Clip") {
        const ir::Node* d = only_reader(r->outputs[0]);
        const ir::Node* a = d && is_dq(d) && dq_params(*d).ok ? only_reader(d->outputs[0]) : nullptr;
        const ir::Node* q2 = a && a->domain.empty() && (a->op_type == "Relu" || a->op_type == "Clip") && why_float(*a).empty()
                                 ? only_reader(a->outputs[0]) : nullptr;
        if (q2 && is_q(q2) && q_params(*q2).ok) {
          mid = index_of(*r);
          role[index_of(*d)] = QRole::DqAbsorbed;
          notes[index_of(*d)] = "absorbed into " + n.name + " (INT8 region)";
          role[mid] = QRole::QAbsorbed;
          notes[mid] = "absorbed into " + n.name + " (INT8 region)";
          r = a;
        }
      }
      if (r && r->domain.empty() && (r->op_type == "Relu" || r->op_type == "Clip") && why_float(*r).empty() &&
          n.op_type != "Relu" && n.op_type != "Clip") {
        act = index_of(*r);
        r = only_reader(r->outputs[0]);
      }
      if (!is_q(r) || !q_params(*r).ok) continue;
      role[i] = QRole::Region;
      region_q[i] = index_of(*r);
      region_act[i] = act;
      region_mid[i] = mid;
      notes[i] = int8_hw ? "INT8 in/out; DequantizeLinear, the op and QuantizeLinear in exact fp32 on the vector unit" : fp16_note;
      role[region_q[i]] = QRole::QAbsorbed;
      notes[region_q[i]] = "absorbed into " + n.name + " (INT8 region)";
      if (act >= 0) {
        role[act] = QRole::ActAbsorbed;
        reasons[act] = "";
        notes[act] = "absorbed into " + n.name + " (INT8 region)";
      }
    }
    // 2. DequantizeLinear: absorbed by region layers that read it, else a layer of its own.
    for (size_t i = 0; i < nodes.size(); ++i) {
      const auto& n = nodes[i];
      if (!is_dq(&n) || role[i] == QRole::DqAbsorbed) continue;
      QP q = dq_params(n);
      bool absorbed = q.ok && !graph_outs.count(n.outputs[0]);
      auto it = readers.find(n.outputs[0]);
      if (it == readers.end()) absorbed = false;
      else for (int rd : it->second) absorbed &= role[rd] == QRole::Region && reasons[rd].empty();
      if (absorbed) { role[i] = QRole::DqAbsorbed; notes[i] = "absorbed into the INT8 layers that read it"; continue; }
      role[i] = QRole::Dq;
      if (!q.ok) reasons[i] = q.why + " (per-tensor activation quantization is lowered)";
      else if (!types.count(n.inputs[0])) reasons[i] = fmt::format("input '{}' has a dynamic or unknown shape", n.inputs[0]);
      else notes[i] = int8_hw ? "dequantized exactly to fp32 on the vector unit" : fp16_note;
    }
    // 3. Standalone QuantizeLinear; float ops reading dequantized values.
    for (size_t i = 0; i < nodes.size(); ++i) {
      const auto& n = nodes[i];
      if (role[i] == QRole::QAbsorbed) continue;
      if (is_q(&n)) {
        role[i] = QRole::Q;
        QP q = q_params(n);
        if (!q.ok) { reasons[i] = q.why + " (per-tensor activation quantization is lowered)"; continue; }
        if (!types.count(n.inputs[0])) { reasons[i] = fmt::format("input '{}' has a dynamic or unknown shape", n.inputs[0]); continue; }
        // Exact only when its input is exact fp32: the host's, the CPU's or a standalone DQ's.
        auto pit = producer.find(n.inputs[0]);
        if (int8_hw && pit != producer.end() && reasons[pit->second].empty() && role[pit->second] != QRole::Dq)
          reasons[i] = "QuantizeLinear of a value the engine computes in FP16 would not match the fp32 reference";
        else notes[i] = int8_hw ? "quantized exactly from fp32 on the vector unit" : fp16_note;
        continue;
      }
      if (role[i] != QRole::None || !reasons[i].empty() || !int8_hw || is_dq(&n)) continue;
      for (const auto& v : n.inputs)
        if (!v.empty() && is_dq(producer_node(v))) {
          reasons[i] = fmt::format("reads the dequantized value '{}': between DequantizeLinear and QuantizeLinear the engine "
                                   "lowers only ops it computes bit-exactly in fp32 (elementwise Add/Sub/Mul/Max/Min, "
                                   "Relu/Clip, pooling, views, Concat/Transpose) with a QuantizeLinear after them", v);
          break;
        }
    }
  }

  std::string why(const ir::Node& n) const {
    int i = index_of(n);
    if (i >= 0 && i < static_cast<int>(reasons.size())) return reasons[i];
    return why_float(n);
  }
  std::string note(const ir::Node& n) const {
    int i = index_of(n);
    return i >= 0 && i < static_cast<int>(notes.size()) ? notes[i] : "";
  }
  QRole role_of(const ir::Node& n) const {
    int i = index_of(n);
    return i >= 0 && i < static_cast<int>(role.size()) ? role[i] : QRole::None;
  }

  std::string why_float(const ir::Node& n) const {
    if (!n.domain.empty()) return fmt::format("op {} of domain '{}' has no NPU lowering", n.op_type, n.domain);
    if (n.op_type == "LSTM" || n.op_type == "GRU" || n.op_type == "RNN") {
      if (!hw.supports_op(n.op_type))
        return fmt::format("recurrent layer {}: {} does not run recurrent layers (Apple: RNN/LSTM/GRU run on the CPU/GPU, not the Neural Engine)",
                           n.op_type, hw.name);
      if (n.op_type != "LSTM")
        return fmt::format("recurrent layer {} is not lowered to MatMul + elementwise steps by this compiler yet (LSTM is)", n.op_type);
      if (!hw.has_lut("sigmoid") || !hw.has_lut("tanh")) return fmt::format("LSTM needs the sigmoid and tanh LUTs, which {} does not declare", hw.name);
    }
    if (!hw.supports_op(n.op_type)) return fmt::format("op {} is not in {}'s supported ops", n.op_type, hw.name);
    auto lit = lowerable().find(n.op_type);
    if (lit == lowerable().end()) return fmt::format("op {} has no NPU lowering in this compiler", n.op_type);
    if (!hw.supports_dtype("fp16")) return fmt::format("{} does not compute in fp16", hw.name);
    for (const auto& [_, a] : n.attrs)
      if (a.kind == ir::Attribute::Kind::Graph || a.kind == ir::Attribute::Kind::Graphs) return "control flow stays on the CPU";
    // Types and shapes: every data operand must be a static float tensor.
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const auto& v = n.inputs[i];
      if (v.empty()) continue;
      auto it = types.find(v);
      if (it == types.end()) return fmt::format("input '{}' has a dynamic or unknown shape", v);
      bool data = !is_const(v) || i == 0;
      if (data && it->second.dtype != DType::Float32 && it->second.dtype != DType::Float16)
        return fmt::format("input '{}' is {} (the engine computes in FP16)", v, dtype_name(it->second.dtype));
    }
    for (size_t i = 0; i < n.outputs.size(); ++i) {
      const auto& v = n.outputs[i];
      if (v.empty()) continue;
      if (i > 0 && (n.op_type == "MaxPool" || n.op_type == "Dropout" || n.op_type == "BatchNormalization" ||
                    n.op_type == "LayerNormalization"))
        return fmt::format("{} with its optional output {} is not lowered", n.op_type, i);
      auto it = types.find(v);
      if (it == types.end()) return fmt::format("output '{}' has a dynamic or unknown shape", v);
      if (it->second.dtype != DType::Float32 && it->second.dtype != DType::Float16)
        return fmt::format("output '{}' is {} (the engine computes in FP16)", v, dtype_name(it->second.dtype));
    }
    std::string lut = lut_for(n.op_type);
    if (!lut.empty() && !hw.has_lut(lut))
      return fmt::format("{} needs the '{}' lookup table, which {} does not declare", n.op_type, lut, hw.name);
    return op_specific(n);
  }

  const Shape& shape(const std::string& v) const { return types.at(v).shape; }

  std::string op_specific(const ir::Node& n) const {
    const std::string& op = n.op_type;
    if (op == "Conv" || op == "ConvTranspose") {
      if (shape(n.inputs[0]).size() != 4) return fmt::format("only 2-D {} is lowered (input rank {})", op, shape(n.inputs[0]).size());
      if (n.inputs.size() < 2 || !is_const(n.inputs[1])) return op + " weights are not constant";
      if (n.has_input(2) && !is_const(n.inputs[2])) return op + " bias is not constant";
      std::string ap = n.attr_s("auto_pad", "NOTSET");
      if (op == "ConvTranspose") {
        if (n.attr_i("group", 1) != 1) return "grouped ConvTranspose is not lowered";
        if (n.has_attr("output_shape") || ap != "NOTSET") return "ConvTranspose with output_shape/auto_pad is not lowered";
      }
      return "";
    }
    if (op == "Gemm") {
      if (n.attr_i("transA", 0)) return "Gemm with transA=1 is not lowered";
      // lower_gemm packs B as weights: an activation B would be dereferenced as a missing
      // initializer (crash), so decline it (MatMul takes activation B operands).
      if (n.inputs.size() < 2 || !is_const(n.inputs[1])) return "Gemm with a non-constant B is not lowered";
      if (n.attr_f("alpha", 1.f) != 1.f || (n.has_input(2) && n.attr_f("beta", 1.f) != 1.f))
        return "Gemm with alpha/beta other than 1 is not lowered";
      if (n.has_input(2)) {
        if (!is_const(n.inputs[2])) return "Gemm bias C is not constant";
        const Shape& c = shape(n.inputs[2]);
        int64_t N = shape(n.outputs[0]).back();
        int64_t cn = checked_numel(c);
        if (!(cn == 1 || (cn == N && c.back() == N))) return "Gemm bias C must be a per-column vector";
      }
      return "";
    }
    if (op == "MatMul") {
      if (shape(n.inputs[0]).size() < 2 || shape(n.inputs[1]).size() < 2) return "MatMul with 1-D operands is not lowered";
      return "";
    }
    if (op == "LSTM") {
      for (size_t i : {1, 2}) if (!n.has_input(i) || !is_const(n.inputs[i])) return "LSTM weights W/R are not constant";
      if (n.has_input(3) && !is_const(n.inputs[3])) return "LSTM bias is not constant";
      if (n.has_input(4)) return "LSTM with sequence_lens is not lowered";
      for (size_t i : {5, 6}) if (n.has_input(i) && !is_const(n.inputs[i])) return "LSTM initial state is not constant";
      if (n.has_input(7)) return "LSTM with peepholes is not lowered";
      if (n.has_attr("clip") || n.attr_i("input_forget", 0) || n.attr_i("layout", 0))
        return "LSTM with clip, input_forget or layout=1 is not lowered";
      auto acts = n.attr_strings("activations");
      for (size_t i = 0; i < acts.size(); ++i)
        if (acts[i] != (i % 3 == 0 ? "Sigmoid" : "Tanh")) return "LSTM with non-default activations is not lowered";
      if (shape(n.inputs[0]).size() != 3) return "LSTM input must be 3-D";
      return "";
    }
    if (op == "Pow") {
      const Tensor* e = constant(n.inputs[1]);
      if (!e || e->numel() != 1) return "Pow with a non-constant or non-scalar exponent is not lowered";
      double x = e->get_f64(0);
      if (x != 2 && x != 1 && x != 3 && x != 0.5) return fmt::format("Pow with exponent {} is not lowered (2, 3, 0.5, 1 are)", x);
      return "";
    }
    if (op == "Clip") {
      for (size_t i = 1; i < n.inputs.size(); ++i)
        if (n.has_input(i) && !constant(n.inputs[i])) return "Clip with non-constant bounds is not lowered";
      return "";
    }
    if (op == "Softmax") {
      return "";
    }
    if (op == "BatchNormalization") {
      if (n.attr_i("training_mode", 0)) return "BatchNormalization in training mode";
      for (size_t i = 1; i < 5; ++i) if (!n.has_input(i) || !is_const(n.inputs[i])) return "BatchNormalization parameters are not constant";
      return "";
    }
    if (op == "LayerNormalization") {
      if (!n.has_input(1) || !is_const(n.inputs[1]) || (n.has_input(2) && !is_const(n.inputs[2])))
        return "LayerNormalization scale/bias are not constant";
      return "";
    }
    if (op == "ReduceMean" || op == "ReduceSum" || op == "ReduceMax") {
      if (n.has_input(1) && !is_const(n.inputs[1])) return op + " with non-constant axes is not lowered";
      return "";
    }
    if (op == "MaxPool" || op == "AveragePool") {
      if (shape(n.inputs[0]).size() != 4) return "only 2-D pooling is lowered";
      for (auto d : n.attr_ints("dilations")) if (d != 1) return "dilated pooling is not lowered";
      if (n.attr_i("storage_order", 0)) return "MaxPool storage_order=1 is not lowered";
      return "";
    }
    if (op == "GlobalAveragePool" || op == "GlobalMaxPool") {
      if (shape(n.inputs[0]).size() < 3) return "global pooling needs a spatial input";
      return "";
    }
    if (op == "Resize" || op == "Upsample") {
      if (shape(n.inputs[0]).size() != 4) return "only 4-D Resize is lowered";
      std::string mode = n.attr_s("mode", "nearest");
      if (mode != "nearest" && mode != "linear" && mode != "bilinear") return "Resize mode " + mode + " is not lowered";
      const Shape& in = shape(n.inputs[0]);
      const Shape& out = shape(n.outputs[0]);
      if (in[0] != out[0] || in[1] != out[1]) return "Resize of the batch or channel dims is not lowered";
      std::string ct = n.attr_s("coordinate_transformation_mode", "half_pixel");
      if (op == "Resize" && m.opset() >= 11 && ct != "half_pixel" && ct != "asymmetric" && ct != "align_corners" &&
          ct != "pytorch_half_pixel")
        return "Resize coordinate_transformation_mode " + ct + " is not lowered";
      return "";
    }
    if (op == "Pad") {
      if (n.attr_s("mode", "constant") != "constant") return "Pad mode " + n.attr_s("mode", "constant") + " is not lowered";
      for (size_t i = 1; i < n.inputs.size(); ++i)
        if (n.has_input(i) && !is_const(n.inputs[i])) return "Pad with non-constant pads/value is not lowered";
      return "";
    }
    if (op == "Slice" || op == "Split" || op == "Reshape" || op == "Squeeze" || op == "Unsqueeze") {
      for (size_t i = 1; i < n.inputs.size(); ++i)
        if (n.has_input(i) && !is_const(n.inputs[i])) return op + " with non-constant parameters is not lowered";
      return "";
    }
    return "";
  }
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A float tensor's values as float32 (one pass; the packers then index plain memory).
std::vector<float> as_floats(const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  if (t.dtype() == DType::Float32) std::copy(t.data<float>(), t.data<float>() + t.numel(), v.begin());
  else for (int64_t i = 0; i < t.numel(); ++i) v[static_cast<size_t>(i)] = static_cast<float>(t.get_f64(i));
  return v;
}

// Bytes of a tensor in DRAM (`es` bytes per element), rows (last dim) padded to the engine's alignment.
int64_t dram_bytes(const Shape& s, int64_t align, int64_t es = 2) {
  if (s.empty()) return std::max<int64_t>(es, align);
  int64_t row = s.back() * es;
  int64_t padded = ceil_div(std::max<int64_t>(row, 1), align) * align;
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < s.size(); ++i) rows *= s[i];
  return rows * padded;
}

class Lowering {
 public:
  Lowering(const ir::Model& m, const HardwareConfig& hw, Program& p, const Reasoner& r)
      : m_(m), hw_(hw), p_(p), r_(r) {}

  int buffer(const std::string& name) {
    auto it = buf_ids_.find(name);
    if (it != buf_ids_.end()) return it->second;
    Buffer b;
    b.name = name;
    b.shape = r_.types.at(name).shape;
    b.constant = r_.is_const(name);
    DType t = r_.types.at(name).dtype;
    if (t == DType::Int8 || t == DType::UInt8) b.dtype = t;
    b.bytes = dram_bytes(b.shape, hw_.memory.row_alignment_bytes, elem_bytes(b.dtype));
    p_.buffers.push_back(b);
    int id = static_cast<int>(p_.buffers.size()) - 1;
    buf_ids_[name] = id;
    return id;
  }

  // Builds the Layer for node n (and a fused activation `act`, may be null).
  Layer make_layer(const ir::Node& n, const ir::Node* act) {
    Layer L;
    L.name = n.name;
    L.op = n.op_type;
    L.node = n;
    for (const auto& i : n.inputs) L.inputs.push_back(i.empty() ? -1 : buffer(i));
    const ir::Node& last = act ? *act : n;
    for (const auto& o : last.outputs) L.outputs.push_back(o.empty() ? -1 : buffer(o));
    if (act) {
      L.fused = act->op_type;
      if (act->op_type == "Relu") L.act = Act::Relu;
      else {
        L.act = Act::Clip;
        L.clip_lo = -INFINITY; L.clip_hi = INFINITY;
        if (m_.opset() < 11) { L.clip_lo = act->attr_f("min", -INFINITY); L.clip_hi = act->attr_f("max", INFINITY); }
        else {
          if (act->has_input(1)) L.clip_lo = static_cast<float>(r_.constant(act->inputs[1])->get_f64(0));
          if (act->has_input(2)) L.clip_hi = static_cast<float>(r_.constant(act->inputs[2])->get_f64(0));
        }
      }
    }
    auto kind = lowerable().at(n.op_type);
    if (kind == Lower::Gemm && is_depthwise(n, r_.types)) kind = Lower::Vector;
    switch (kind) {
      case Lower::Recurrent: L.kind = LayerKind::Recurrent; lower_lstm(L, n); break;
      case Lower::Gemm: L.kind = LayerKind::Gemm; lower_gemm(L, n); break;
      case Lower::Vector: L.kind = LayerKind::Vector; lower_vector(L, n); break;
      case Lower::Move: L.kind = LayerKind::Move; lower_move(L, n); break;
      default: L.kind = LayerKind::View; break;
    }
    return L;
  }

  // ---- INT8 layers (roles decided by Reasoner::analyze) ----
  using QRole = Reasoner::QRole;

  Layer make_quant_layer(const ir::Node& n, int idx) {
    switch (r_.role[idx]) {
      case QRole::QGemm: return make_qgemm(n);
      case QRole::Region: return make_region(n, idx);
      default: return make_qconvert(n, r_.role[idx] == QRole::Dq);
    }
  }

  // QLinearConv / QLinearMatMul / QGemm: the float op's geometry and packing, then INT8 weights
  // (w - w_zp, exact integers) or FP16-dequantized weights, and the requantization per channel.
  Layer make_qgemm(const ir::Node& n) {
    const ir::Node p = Reasoner::float_proxy(n);
    Layer L = make_layer(p, nullptr);
    L.op = n.op_type;
    L.node = n;
    L.fused.clear();
    const bool gemm = n.op_type == "QGemm", conv = n.op_type == "QLinearConv";
    const size_t iys = gemm ? 7 : 6, iyz = gemm ? 8 : 7;
    auto qp = [&](size_t is, size_t iz, const std::string& v) {
      return r_.scalar_qparams(n.inputs[is], n.has_input(iz) ? n.inputs[iz] : "", r_.dtype_of(v), "");
    };
    const auto x = qp(1, 2, n.inputs[0]);
    const auto y = qp(iys, iyz, n.outputs[0]);
    const Shape& out = r_.shape(n.outputs[0]);
    const int64_t channels = conv ? out[1] : out.back();
    const Tensor& ws = *r_.constant(n.inputs[4]);
    const Tensor* wz = n.has_input(5) ? r_.constant(n.inputs[5]) : nullptr;
    QuantParams& q = L.q;
    q.on = true;
    q.int8 = r_.int8_hw;
    q.in_scale = {x.scale, 0.f};
    q.in_zp = {x.zp, 0};
    q.out_scale = y.scale; q.out_zp = y.zp; q.out_type = y.type;
    std::vector<int32_t> wzp(static_cast<size_t>(channels), 0);
    q.w_scale.resize(static_cast<size_t>(channels));
    q.mult.resize(static_cast<size_t>(channels));
    const float alpha = gemm ? n.attr_f("alpha", 1.f) : 1.f;
    for (int64_t c = 0; c < channels; ++c) {
      q.w_scale[c] = ws.data<float>()[ws.numel() == 1 ? 0 : c];
      if (wz) wzp[c] = static_cast<int32_t>(wz->get_f64(wz->numel() == 1 ? 0 : c));
      float sc = x.scale * q.w_scale[c];
      if (alpha != 1.f) sc = sc * alpha;
      q.mult[c] = sc / y.scale;
      // QGemm's alpha scales the product and C alike: fold it into the dequantization scale.
      if (alpha != 1.f) q.w_scale[c] = q.w_scale[c] * alpha;
    }
    const std::string bias_name = conv ? (n.has_input(8) ? n.inputs[8] : "") : gemm && n.has_input(6) ? n.inputs[6] : "";
    if (!bias_name.empty()) {
      const Tensor& b = *r_.constant(bias_name);
      for (int64_t c = 0; c < channels; ++c) q.ibias.push_back(b.data<int32_t>()[b.numel() == 1 ? 0 : c]);
    }
    // Weights: subtract the zero point of their output channel; dequantize to FP16 without INT8 MACs.
    auto fix = [&](float w, int64_t c) {
      const int32_t d = static_cast<int32_t>(w) - wzp[c];
      return q.int8 ? static_cast<float>(d) : round_f16(static_cast<float>(d) * q.w_scale[c]);
    };
    const GemmGeom& g = L.g;
    if (L.kind == LayerKind::Vector) {  // depthwise: weights [O][1][kh][kw]
      const int64_t per = static_cast<int64_t>(L.weights.size()) / std::max<int64_t>(channels, 1);
      for (size_t i = 0; i < L.weights.size(); ++i) L.weights[i] = fix(L.weights[i], static_cast<int64_t>(i) / per);
    } else if (g.b_const) {
      const int64_t gn = g.conv ? g.groups * g.N : g.N;
      for (size_t i = 0; i < L.weights.size(); ++i) {
        const int64_t o = static_cast<int64_t>(i) % g.N, blk = static_cast<int64_t>(i) / (g.K * g.N);
        L.weights[i] = fix(L.weights[i], g.conv ? (blk % g.groups) * g.N + o : o);
        (void)gn;
      }
    } else {
      q.in_scale[1] = q.w_scale[0];
      q.in_zp[1] = wzp[0];
    }
    L.bias.clear();
    if (!q.int8 && !q.ibias.empty())  // the bias dequantized with scale x_s * w_s[c]
      for (int64_t c = 0; c < channels; ++c) L.bias.push_back(quant::dequantize(q.ibias[c], 0, x.scale * q.w_scale[c]));
    return L;
  }

  // A float op between DequantizeLinear(s) and a QuantizeLinear (optionally through Relu/Clip):
  // the layer reads the int8 values and writes the int8 result.
  Layer make_region(const ir::Node& n, int idx) {
    const auto& nodes = m_.graph.nodes;
    ir::Node n2 = n;
    std::vector<float> in_s(n.inputs.size(), 0.f);
    std::vector<int32_t> in_z(n.inputs.size(), 0);
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      if (n.inputs[k].empty() || r_.is_const(n.inputs[k])) continue;
      const ir::Node& dq = *r_.producer_node(n.inputs[k]);
      auto qp = r_.dq_params(dq);
      in_s[k] = qp.scale; in_z[k] = qp.zp;
      n2.inputs[k] = dq.inputs[0];
    }
    const ir::Node& qn = nodes[r_.region_q[idx]];
    const auto oq = r_.q_params(qn);
    ir::Node act;
    const bool has_act = r_.region_act[idx] >= 0;
    if (has_act) { act = nodes[r_.region_act[idx]]; act.outputs = qn.outputs; }
    else n2.outputs = qn.outputs;
    Layer L = make_layer(n2, has_act ? &act : nullptr);
    L.fused.clear();  // the plan names absorbed nodes itself (Placement notes)
    L.q.on = true;
    L.q.int8 = r_.int8_hw;
    L.q.in_scale = in_s; L.q.in_zp = in_z;
    L.q.out_scale = oq.scale; L.q.out_zp = oq.zp; L.q.out_type = oq.type;
    if (r_.region_mid[idx] >= 0) {
      const ir::Node& mq = nodes[r_.region_mid[idx]];
      const auto mp = r_.q_params(mq);
      const auto dp = r_.dq_params(*r_.only_reader(mq.outputs[0]));
      L.q.mid_scale = mp.scale; L.q.mid_zp = mp.zp; L.q.mid_type = mp.type;
      L.q.mid_dq_scale = dp.scale; L.q.mid_dq_zp = dp.zp;
    }
    bool identity = !has_act;
    for (size_t k = 0; k < n.inputs.size(); ++k)
      if (in_s[k] != 0.f) identity &= in_s[k] == oq.scale && in_z[k] == oq.zp && r_.dtype_of(n2.inputs[k]) == oq.type;
    // A view or move that changes the quantization is a requantizing pass on the vector unit.
    if ((L.kind == LayerKind::View || L.kind == LayerKind::Move) && !identity) {
      L.kind = LayerKind::Vector;
      lower_vector(L, n2);
    }
    if (L.kind == LayerKind::Vector) {
      int64_t dq = 0;
      for (float s : in_s) dq += s != 0.f;
      L.vec_ops_per_elem += dq + 1 + (L.q.mid_scale != 0.f ? 2 : 0);  // dequantize inputs, (re)quantize
      L.flops = L.vec_rows * L.vec_row_elems * L.vec_ops_per_elem;
    }
    return L;
  }

  // Standalone DequantizeLinear (int8 -> fp32) or QuantizeLinear (fp32 -> int8).
  Layer make_qconvert(const ir::Node& n, bool dq) {
    Layer L;
    L.name = n.name;
    L.op = n.op_type;
    L.node = n;
    L.kind = LayerKind::Vector;
    L.inputs = {buffer(n.inputs[0])};
    L.outputs = {buffer(n.outputs[0])};
    L.q.on = true;
    L.q.int8 = r_.int8_hw;
    if (dq) {
      auto qp = r_.dq_params(n);
      L.q.in_scale = {qp.scale}; L.q.in_zp = {qp.zp};
    } else {
      auto qp = r_.q_params(n);
      L.q.in_scale = {0.f}; L.q.in_zp = {0};
      L.q.out_scale = qp.scale; L.q.out_zp = qp.zp; L.q.out_type = qp.type;
    }
    lower_vector(L, n);
    return L;
  }

  // Storage types at the edges of INT8 regions, then every buffer's DRAM size.
  void finish_buffers() {
    if (r_.int8_hw)
      for (const Layer& L : p_.layers) {
        if (!L.q.on) continue;
        if (L.op == "DequantizeLinear") p_.buffers[L.outputs[0]].dtype = DType::Float32;
        if (L.op == "QuantizeLinear") p_.buffers[L.inputs[0]].dtype = DType::Float32;
        if (L.kind != LayerKind::Gemm && L.op != "QLinearConv")  // float constants a region op reads: exact fp32
          for (size_t k = 0; k < L.inputs.size(); ++k)
            if (L.inputs[k] >= 0 && p_.buffers[L.inputs[k]].constant && p_.buffers[L.inputs[k]].dtype == DType::Float16)
              p_.buffers[L.inputs[k]].dtype = DType::Float32;
      }
    for (auto& b : p_.buffers) b.bytes = dram_bytes(b.shape, hw_.memory.row_alignment_bytes, elem_bytes(b.dtype));
  }

  void lower_gemm(Layer& L, const ir::Node& n) {
    GemmGeom& g = L.g;
    const Shape& out = r_.shape(n.outputs[0]);
    if (n.op_type == "Conv" || n.op_type == "ConvTranspose") {
      const Shape& x = r_.shape(n.inputs[0]);
      const Tensor& w = *r_.constant(n.inputs[1]);
      bool tr = n.op_type == "ConvTranspose";
      g.conv = true;
      g.n_img = x[0]; g.C = x[1]; g.H = x[2]; g.W = x[3];
      g.O = out[1]; g.OH = out[2]; g.OW = out[3];
      g.groups = tr ? 1 : n.attr_i("group", 1);
      g.kh = w.dim(2); g.kw = w.dim(3);
      auto strides = n.attr_ints("strides", {1, 1});
      auto dil = n.attr_ints("dilations", {1, 1});
      auto pads = n.attr_ints("pads", {0, 0, 0, 0});
      g.dh = dil[0]; g.dw = dil[1];
      if (tr) {
        // ConvTranspose == stride-1 conv over the input with (stride-1) zeros between pixels,
        // padded by dil*(k-1) - pad, with the kernel flipped and its in/out channels swapped.
        g.in_dil_h = strides[0]; g.in_dil_w = strides[1];
        g.sh = g.sw = 1;
        g.ph = g.dh * (g.kh - 1) - pads[0];
        g.pw = g.dw * (g.kw - 1) - pads[1];
      } else {
        g.sh = strides[0]; g.sw = strides[1];
        std::string ap = n.attr_s("auto_pad", "NOTSET");
        if (ap == "SAME_UPPER" || ap == "SAME_LOWER") {
          int64_t th = std::max<int64_t>(0, (g.OH - 1) * g.sh + (g.kh - 1) * g.dh + 1 - g.H);
          int64_t tw = std::max<int64_t>(0, (g.OW - 1) * g.sw + (g.kw - 1) * g.dw + 1 - g.W);
          g.ph = ap == "SAME_UPPER" ? th / 2 : th - th / 2;
          g.pw = ap == "SAME_UPPER" ? tw / 2 : tw - tw / 2;
        } else if (ap != "VALID") {
          g.ph = pads[0]; g.pw = pads[1];
        }
      }
      g.batch = g.n_img * g.groups;
      g.M = g.OH * g.OW;
      g.K = (g.C / g.groups) * g.kh * g.kw;
      g.N = g.O / g.groups;
      g.b_const = true;
      // Pack B[group][k=(c,i,j)][n] as FP16 (parallel over output channels; each writes its own column).
      L.weights.assign(static_cast<size_t>(g.groups * g.K * g.N), 0.f);
      const std::vector<float> wf = as_floats(w);
      parallel_for(g.groups * g.N, [&](int64_t a, int64_t e) {
        for (int64_t go = a; go < e; ++go) {
          const int64_t gr = go / g.N, o = go % g.N;
          for (int64_t c = 0; c < g.C / g.groups; ++c)
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                float v;
                if (tr)  // w: [C_in, O, kh, kw]; flipped spatially
                  v = wf[static_cast<size_t>(((c * g.O + o) * g.kh + (g.kh - 1 - i)) * g.kw + (g.kw - 1 - j))];
                else
                  v = wf[static_cast<size_t>((((gr * g.N + o) * (g.C / g.groups) + c) * g.kh + i) * g.kw + j)];
                int64_t k = (c * g.kh + i) * g.kw + j;
                L.weights[static_cast<size_t>((gr * g.K + k) * g.N + o)] = round_f16(v);
              }
        }
      });
      if (n.has_input(2)) {
        const Tensor& b = *r_.constant(n.inputs[2]);
        for (int64_t o = 0; o < b.numel(); ++o) L.bias.push_back(static_cast<float>(b.get_f64(o)));
      }
    } else if (n.op_type == "Gemm") {
      const Shape& a = r_.shape(n.inputs[0]);
      const Shape& b = r_.shape(n.inputs[1]);
      bool tb = n.attr_i("transB", 0) != 0;
      g.M = a[0]; g.K = a[1]; g.N = tb ? b[0] : b[1];
      g.batch = 1;
      pack_matrix_b(L, n.inputs[1], tb);
      if (n.has_input(2)) {
        const Tensor& c = *r_.constant(n.inputs[2]);
        for (int64_t o = 0; o < g.N; ++o) L.bias.push_back(static_cast<float>(c.get_f64(c.numel() == 1 ? 0 : o)));
      }
    } else {  // MatMul with numpy batch broadcasting
      const Shape& a = r_.shape(n.inputs[0]);
      const Shape& b = r_.shape(n.inputs[1]);
      g.M = a[a.size() - 2]; g.K = a.back(); g.N = b.back();
      Shape ab(a.begin(), a.end() - 2), bb(b.begin(), b.end() - 2);
      size_t r = std::max(ab.size(), bb.size());
      while (ab.size() < r) ab.insert(ab.begin(), 1);
      while (bb.size() < r) bb.insert(bb.begin(), 1);
      g.batch_shape.resize(r);
      g.a_batch_strides.assign(r, 0);
      g.b_batch_strides.assign(r, 0);
      int64_t sa = 1, sb = 1;
      for (int64_t i = static_cast<int64_t>(r) - 1; i >= 0; --i) {
        g.batch_shape[i] = std::max(ab[i], bb[i]);
        g.a_batch_strides[i] = ab[i] == 1 ? 0 : sa;
        g.b_batch_strides[i] = bb[i] == 1 ? 0 : sb;
        sa *= ab[i]; sb *= bb[i];
      }
      g.batch = 1;
      for (auto d : g.batch_shape) g.batch *= d;
      if (b.size() == 2 && g.batch > 1) {
        // One weight matrix shared by every batch (a Linear layer on [seq, batch, d]): the batch
        // rows are just more rows of A, so fold them into M instead of reloading B per batch.
        g.M *= g.batch;
        g.batch = 1;
        g.batch_shape.clear();
        g.a_batch_strides.clear();
        g.b_batch_strides.clear();
      }
      if (r_.is_const(n.inputs[1])) pack_matrix_b(L, n.inputs[1], false);
    }
    L.macs = g.batch * g.M * g.K * g.N;
    L.flops = 2 * L.macs;
  }

  // LSTM: W [dirs, 4H, I], R [dirs, 4H, H], B [dirs, 8H]; gates in ONNX order i, o, f, c.
  void lower_lstm(Layer& L, const ir::Node& n) {
    const Shape& x = r_.shape(n.inputs[0]);
    const Tensor& W = *r_.constant(n.inputs[1]);
    const Tensor& R = *r_.constant(n.inputs[2]);
    const Tensor* B = n.has_input(3) ? r_.constant(n.inputs[3]) : nullptr;
    GemmGeom& g = L.g;
    const int64_t dirs = W.dim(0), H = R.dim(2), I = W.dim(2);
    g.M = x[0]; g.n_img = x[1]; g.K = I; g.N = 4 * H; g.C = H; g.batch = dirs;
    for (int64_t d = 0; d < dirs; ++d) {
      for (int64_t k = 0; k < I; ++k)
        for (int64_t j = 0; j < 4 * H; ++j)
          L.weights.push_back(round_f16(static_cast<float>(W.get_f64((d * 4 * H + j) * I + k))));
      for (int64_t k = 0; k < H; ++k)
        for (int64_t j = 0; j < 4 * H; ++j)
          L.weights.push_back(round_f16(static_cast<float>(R.get_f64((d * 4 * H + j) * H + k))));
    }
    for (int64_t d = 0; d < dirs; ++d)
      for (int64_t j = 0; j < 4 * H; ++j)
        L.bias.push_back(B ? static_cast<float>(B->get_f64(d * 8 * H + j) + B->get_f64(d * 8 * H + 4 * H + j)) : 0.f);
    for (size_t in : {5, 6}) {
      const Tensor* t = n.has_input(in) ? r_.constant(n.inputs[in]) : nullptr;
      for (int64_t i = 0; i < dirs * g.n_img * H; ++i) L.bias.push_back(t ? round_f16(static_cast<float>(t->get_f64(i))) : 0.f);
    }
    // Per step: the recurrence GEMM (n_img x H x 4H) plus ~10 vector ops per gate element.
    L.macs = dirs * g.M * g.n_img * (I + H) * 4 * H;
    L.flops = 2 * L.macs + dirs * g.M * g.n_img * 4 * H * 10;
  }

  void pack_matrix_b(Layer& L, const std::string& name, bool transposed) {
    const Tensor& b = *r_.constant(name);
    GemmGeom& g = L.g;
    g.b_const = true;
    int64_t nb = b.numel() / (g.K * g.N);
    L.weights.assign(static_cast<size_t>(nb * g.K * g.N), 0.f);
    const std::vector<float> bf = as_floats(b);
    parallel_for(nb * g.K, [&](int64_t a, int64_t e) {
      for (int64_t sk = a; sk < e; ++sk) {
        const int64_t s = sk / g.K, k = sk % g.K;
        for (int64_t o = 0; o < g.N; ++o) {
          int64_t src = transposed ? s * g.K * g.N + o * g.K + k : s * g.K * g.N + k * g.N + o;
          L.weights[static_cast<size_t>((s * g.K + k) * g.N + o)] = round_f16(bf[static_cast<size_t>(src)]);
        }
      }
    });
  }

  void lower_vector(Layer& L, const ir::Node& n) {
    const Shape& out = r_.shape(n.outputs[0]);
    const std::string& op = n.op_type;
    int64_t total = checked_numel(out);
    L.vec_row_elems = out.empty() ? 1 : out.back();
    L.vec_rows = L.vec_row_elems ? total / L.vec_row_elems : 0;
    L.vec_ops_per_elem = 1;
    if (op == "Conv") {  // depthwise on the vector unit: kh*kw MACs per output element
      const Tensor& w = *r_.constant(n.inputs[1]);
      L.vec_ops_per_elem = w.dim(2) * w.dim(3);
      L.macs = total * L.vec_ops_per_elem;
      for (int64_t i = 0; i < w.numel(); ++i) L.weights.push_back(round_f16(static_cast<float>(w.get_f64(i))));
      if (n.has_input(2)) {
        const Tensor& b = *r_.constant(n.inputs[2]);
        for (int64_t o = 0; o < b.numel(); ++o) L.bias.push_back(static_cast<float>(b.get_f64(o)));
      }
    } else if (op == "MaxPool" || op == "AveragePool") {
      auto k = n.attr_ints("kernel_shape");
      L.vec_ops_per_elem = k.size() == 2 ? k[0] * k[1] : 1;
    } else if (op == "GlobalAveragePool" || op == "GlobalMaxPool") {
      const Shape& in = r_.shape(n.inputs[0]);
      int64_t sp = 1;
      for (size_t i = 2; i < in.size(); ++i) sp *= in[i];
      L.vec_ops_per_elem = sp;
    } else if (op == "Softmax" || op == "LayerNormalization") {
      L.vec_ops_per_elem = 5;  // max/mean pass, exp/centre, sum, scale (+ affine)
    } else if (op == "ReduceMean" || op == "ReduceSum" || op == "ReduceMax") {
      const Shape& in = r_.shape(n.inputs[0]);
      L.vec_ops_per_elem = std::max<int64_t>(1, checked_numel(in) / std::max<int64_t>(total, 1));
    } else if (op == "Resize" || op == "Upsample") {
      L.vec_ops_per_elem = n.attr_s("mode", "nearest") == "nearest" ? 1 : 4;
    } else if (op == "BatchNormalization" || op == "HardSwish" || op == "HardSigmoid") {
      L.vec_ops_per_elem = 2;
    }
    if (!L.macs) L.flops = total * L.vec_ops_per_elem;
    else L.flops = 2 * L.macs;
  }

  void lower_move(Layer& L, const ir::Node& n) {
    int64_t total = 0;
    for (const auto& o : n.outputs) if (!o.empty()) total += checked_numel(r_.shape(o));
    L.vec_row_elems = 1;
    L.vec_rows = total;
  }

  const ir::Model& m_;
  const HardwareConfig& hw_;
  Program& p_;
  const Reasoner& r_;
  std::unordered_map<std::string, int> buf_ids_;
};

// ---- tiling into tasks -------------------------------------------------------------------

class Tiler {
 public:
  Tiler(const HardwareConfig& hw, Program& p) : hw_(hw), p_(p) {
    sram_ = hw.sram.bytes;
    last_out_.assign(p.buffers.size(), {});
  }

  void layer(int li) {
    Layer& L = p_.layers[li];
    switch (L.kind) {
      case LayerKind::Gemm: gemm(li); break;
      case LayerKind::Vector: rows(li, true); break;
      case LayerKind::Move: rows(li, false); break;
      case LayerKind::Recurrent: recurrent(li); break;
      case LayerKind::View:
        // Aliases its input: the consumers wait on whatever produced the input.
        if (!L.inputs.empty() && L.inputs[0] >= 0)
          for (int o : L.outputs) if (o >= 0) last_out_[o] = last_out_[L.inputs[0]];
        break;
    }
  }

 private:
  uint32_t emit(Task t) {
    p_.tasks.push_back(std::move(t));
    return static_cast<uint32_t>(p_.tasks.size() - 1);
  }
  std::vector<uint32_t> input_deps(const Layer& L) const {
    std::vector<uint32_t> d;
    for (int b : L.inputs)
      if (b >= 0) d.insert(d.end(), last_out_[b].begin(), last_out_[b].end());
    std::sort(d.begin(), d.end());
    d.erase(std::unique(d.begin(), d.end()), d.end());
    return d;
  }

  int64_t in_bytes_fraction(const Layer& L, double frac) const {
    int64_t b = 0;
    for (int i : L.inputs)
      if (i >= 0 && !p_.buffers[i].constant) b += static_cast<int64_t>(std::ceil(p_.buffers[i].bytes * frac));
    return b;
  }

  // GEMM layers: split work over cores, keep each core's weight slice resident when it fits,
  // tile M so A tiles are double-buffered, tile K when even one column block of weights does not fit.
  void gemm(int li) {
    Layer& L = p_.layers[li];
    const GemmGeom& g = L.g;
    const int64_t R = hw_.mac.rows, C = hw_.mac.cols, cores = hw_.cores;
    const auto deps_in = input_deps(L);
    std::vector<uint32_t> outs;
    // Split over cores. Many independent GEMMs (attention heads, images x groups): one per core.
    // Otherwise split output channels (every core reads all of A, its own slice of the weights) or
    // output rows (every core reads all the weights, its own rows of A), whichever moves fewer
    // DRAM bytes.
    int64_t n_blocks = ceil_div(g.N, C);
    int64_t m_blocks = std::max<int64_t>(1, ceil_div(g.M, R));
    const int64_t a_es = elem_bytes(p_.buffers[L.inputs[0]].dtype), w_es = L.q.on && L.q.int8 ? 1 : 2;
    const double a_bytes = static_cast<double>(g.conv ? (g.C / g.groups) * g.H * g.W * a_es : g.M * g.K * a_es);
    const double w_bytes = static_cast<double>(g.K * g.N * w_es);
    const int64_t cores_n = std::min(cores, n_blocks), cores_m = std::min(cores, m_blocks);
    // Operands every core needs (all of A when splitting N, all weights when splitting M) are
    // fetched once into the cores' shared tile buffer and read from there by the others (the
    // ANE's L2 is shared by its cores), so the split is chosen for parallelism first, then traffic.
    const bool split_n = cores_n != cores_m ? cores_n > cores_m : cores_n * a_bytes + w_bytes <= a_bytes + cores_m * w_bytes;
    shared_.clear();
    first_mac_this_layer_.assign(static_cast<size_t>(cores), UINT32_MAX);
    if (prev_mac_.empty()) prev_mac_.assign(static_cast<size_t>(cores), UINT32_MAX);
    const int64_t units = g.batch >= cores ? 1 : (split_n ? cores_n : cores_m);
    for (int64_t b = 0; b < g.batch; ++b) {
      for (int64_t u = 0; u < units; ++u) {
        int64_t n0 = 0, n1 = g.N, m0 = 0, m1 = g.M;
        if (units > 1 && split_n) {
          n0 = std::min(g.N, (n_blocks * u / units) * C);
          n1 = std::min(g.N, (n_blocks * (u + 1) / units) * C);
        } else if (units > 1) {
          m0 = g.M * u / units;
          m1 = g.M * (u + 1) / units;
          if (g.conv && g.M >= units * g.OW) {  // whole output rows per core
            m0 = (g.OH * u / units) * g.OW;
            m1 = (g.OH * (u + 1) / units) * g.OW;
          }
        }
        if (n0 >= n1 || m0 >= m1) continue;
        int core = static_cast<int>(units == 1 ? b % cores : u);
        tile_core(li, b, core, m0, m1, n0, n1, deps_in, outs);
      }
    }
    for (int o : L.outputs) if (o >= 0) last_out_[o] = outs;
    for (size_t c = 0; c < prev_mac_.size(); ++c)
      if (first_mac_this_layer_[c] != UINT32_MAX) prev_mac_[c] = first_mac_this_layer_[c];
  }

  // A DMA-in of data another core of this layer already fetched: served from the shared tile
  // buffer (no DRAM bytes), after that first fetch completes.
  void share(Task& t, std::array<int64_t, 6> key) {
    auto it = shared_.find(key);
    if (it == shared_.end()) {
      shared_[key] = static_cast<uint32_t>(p_.tasks.size());  // id this task will get
      return;
    }
    t.deps.push_back(it->second);
    t.bytes = 0;
    t.sram_bytes = 0;
  }

  void tile_core(int li, int64_t b, int core, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                 const std::vector<uint32_t>& deps_in, std::vector<uint32_t>& outs) {
    Layer& L = p_.layers[li];
    const GemmGeom& g = L.g;
    const int64_t R = hw_.mac.rows, C = hw_.mac.cols;
    const int64_t budget = sram_;
    // Element sizes: activations as stored (1 byte for int8), weights 1 byte on INT8 MACs.
    const bool int8 = L.q.on && L.q.int8;
    const int64_t a_es = elem_bytes(p_.buffers[L.inputs[0]].dtype), w_es = int8 ? 1 : 2;
    const int64_t o_es = elem_bytes(p_.buffers[L.outputs[0]].dtype);
    // INT8 MACs: each PE does macs_per_cycle_int8 / (rows * cols) int8 products per cycle, packed
    // along the reduction (a PE holds that many int8 weights in the bytes of one FP16 weight), so
    // a tile streams ceil(k / pack) reduction steps through the same array (assumption: Apple does
    // not publish how the doubled INT8 rate is laid out).
    const int64_t k_pack = int8 ? std::max<int64_t>(1, hw_.mac.macs_per_cycle_int8 / std::max<int64_t>(1, R * C)) : 1;
    // Weight slice K x n: resident if it fits in half of SRAM, else tile N (then K).
    int64_t n_tile = n1 - n0, k_tile = g.K;
    // (Sized as DMA-ed: each of the k rows of a weight block is padded to the row alignment.)
    auto w_row = [&](int64_t n) { return ceil_div(n * w_es, hw_.memory.row_alignment_bytes) * hw_.memory.row_alignment_bytes; };
    while (k_tile * w_row(n_tile) > budget / 2 && n_tile > C) n_tile = std::max(C, ceil_div(n_tile / 2, C) * C);
    while (k_tile * w_row(n_tile) > budget / 2 && k_tile > R) k_tile = std::max(R, ceil_div(k_tile / 2, R) * R);
    // A tile rows: double-buffered A (m x k fp16) + fp32 accumulators (m x n) in the other half.
    int64_t per_row = 2 * k_tile * a_es + n_tile * 4;
    int64_t m_tile = std::max<int64_t>(1, (budget / 2) / std::max<int64_t>(per_row, 1));
    if (g.conv && m_tile >= g.OW) m_tile = (m_tile / g.OW) * g.OW;  // whole output rows
    m_tile = std::min(m_tile, m1 - m0);
    // Bytes of input needed for an m-range of a conv (input rows incl. halo, all channels of the group).
    auto a_bytes = [&](int64_t ma, int64_t mb, int64_t ka, int64_t kb) -> int64_t {
      double kfrac = static_cast<double>(kb - ka) / g.K;
      if (g.conv) {
        int64_t r0 = ma / g.OW, r1 = (mb - 1) / g.OW;
        int64_t rows = (r1 - r0) * g.sh + (g.kh - 1) * g.dh + 1;
        rows = std::min(rows, g.H * g.in_dil_h);
        rows = std::max<int64_t>(1, ceil_div(rows, g.in_dil_h));
        int64_t row_bytes = ceil_div(g.W * a_es, hw_.memory.row_alignment_bytes) * hw_.memory.row_alignment_bytes;
        return static_cast<int64_t>(std::ceil((g.C / g.groups) * rows * row_bytes * kfrac));
      }
      int64_t row_bytes = ceil_div((kb - ka) * a_es, hw_.memory.row_alignment_bytes) * hw_.memory.row_alignment_bytes;
      return (mb - ma) * row_bytes;
    };
    // The A transfer can be larger than the m x k tile assumed above: a strided conv DMAs the input
    // rows it skips, and rows are padded to the alignment. Shrink the tile until its largest A
    // transfer, double-buffered, and the fp32 accumulators fit their half of the SRAM.
    auto a_fits = [&](int64_t mt) {
      for (int64_t ma = m0; ma < m1; ma += mt)
        if (2 * a_bytes(ma, std::min(m1, ma + mt), 0, k_tile) + mt * n_tile * 4 > budget / 2) return false;
      return true;
    };
    // (A conv tile of at most one output row already DMAs its minimal window of kh input rows.)
    while (m_tile > (g.conv ? g.OW : 1) && !a_fits(m_tile)) {
      int64_t next = m_tile / 2;
      if (g.conv && next >= g.OW) next = (next / g.OW) * g.OW;  // whole output rows
      m_tile = std::max<int64_t>(1, next);
    }
    const int64_t align = hw_.memory.row_alignment_bytes;
    for (int64_t na = n0; na < n1; na += n_tile) {
      int64_t nb = std::min(n1, na + n_tile);
      for (int64_t ka = 0; ka < g.K; ka += k_tile) {
        int64_t kb = std::min(g.K, ka + k_tile);
        bool single_k = (ka == 0 && kb == g.K);
        // Weights (or the B operand of an activation MatMul) for this (n, k) block.
        Task w;
        w.engine = Engine::DmaIn; w.core = core; w.layer = static_cast<int>(&L - p_.layers.data());
        w.b = b; w.n0 = na; w.n1 = nb; w.k0 = ka; w.k1 = kb;
        // (INT8: the k_pack weights a PE holds are stored together, so a DMA row carries k_pack
        // reduction steps of n int8 weights: the FP16 row size with 1/k_pack of the rows.)
        w.bytes = ceil_div(kb - ka, k_pack) * (ceil_div((nb - na) * w_es * k_pack, align) * align);
        w.buf = g.b_const ? -1 : L.inputs[1];
        share(w, {1, b, na, nb, ka, kb});
        w.sram_bytes = w.bytes;
        // Constant weights are prefetched while the previous GEMM layer on this core computes
        // (its weight slice and this one both fit: each is at most half the SRAM), i.e. once
        // that layer's first MAC task has started using its own weights. An activation B
        // operand waits for its producer.
        if (g.b_const && prev_mac_[core] != UINT32_MAX) w.deps.push_back(prev_mac_[core]);
        else if (!g.b_const || prev_mac_[core] == UINT32_MAX) w.deps.insert(w.deps.end(), deps_in.begin(), deps_in.end());
        uint32_t wid = emit(w);
        std::vector<uint32_t> macs_done;
        int64_t i = 0;
        for (int64_t ma = m0; ma < m1; ma += m_tile, ++i) {
          int64_t mb = std::min(m1, ma + m_tile);
          Task a;
          a.engine = Engine::DmaIn; a.core = core; a.layer = w.layer;
          a.b = b; a.m0 = ma; a.m1 = mb; a.k0 = ka; a.k1 = kb;
          a.bytes = a_bytes(ma, mb, ka, kb);
          a.buf = L.inputs[0];
          share(a, {0, b, ma, mb, ka, kb});
          a.sram_bytes = a.bytes;
          a.deps.insert(a.deps.end(), deps_in.begin(), deps_in.end());
          if (i >= 2) a.deps.push_back(macs_done[i - 2]);  // double buffering: reuse the buffer of tile i-2
          uint32_t aid = emit(a);
          Task c;
          c.engine = Engine::Mac; c.core = core; c.layer = w.layer;
          c.b = b; c.m0 = ma; c.m1 = mb; c.n0 = na; c.n1 = nb; c.k0 = ka; c.k1 = kb;
          c.last_k = kb == g.K;
          auto cost = gemm_tile_cost(mb - ma, ceil_div(kb - ka, k_pack), nb - na, R, hw_.mac.cols, hw_.mac.dataflow);
          c.cycles = cost.compute_cycles;
          c.macs = (mb - ma) * (kb - ka) * (nb - na);
          // Operands read from SRAM once per fold pass, outputs/partials written once.
          c.sram_bytes = (mb - ma) * (kb - ka) * a_es + (kb - ka) * (nb - na) * w_es + (mb - ma) * (nb - na) * (single_k ? o_es : 4);
          c.deps = {aid, wid};
          uint32_t cid = emit(c);
          if (first_mac_this_layer_[core] == UINT32_MAX) first_mac_this_layer_[core] = cid;
          macs_done.push_back(cid);
          if (c.last_k) {
            Task o;
            o.engine = Engine::DmaOut; o.core = core; o.layer = w.layer;
            o.b = b; o.m0 = ma; o.m1 = mb; o.n0 = na; o.n1 = nb;
            o.bytes = (mb - ma) * (nb - na) * o_es;
            o.buf = L.outputs[0];
            o.sram_bytes = o.bytes;
            o.deps = {cid};
            outs.push_back(emit(o));
          }
        }
      }
    }
  }

  // LSTM on one core per direction: weights in (kept resident when W and R fit half the SRAM,
  // else R is streamed every step), the input projection for all steps as one GEMM, then a
  // chain of steps, each a recurrence GEMM (MAC) followed by the gate arithmetic (vector unit).
  void recurrent(int li) {
    Layer& L = p_.layers[li];
    const GemmGeom& g = L.g;
    const auto deps_in = input_deps(L);
    std::vector<uint32_t> outs;
    const int64_t H = g.C, Bn = g.n_img, T = g.M;
    const int64_t align = hw_.memory.row_alignment_bytes;
    const int64_t w_bytes = g.K * ceil_div(g.N * 2, align) * align, r_bytes = H * ceil_div(g.N * 2, align) * align;
    const bool resident = w_bytes + r_bytes <= sram_ / 2;
    for (int64_t d = 0; d < g.batch; ++d) {
      const int core = static_cast<int>(d % hw_.cores);
      Task w;
      w.engine = Engine::DmaIn; w.core = core; w.layer = li; w.b = d;
      w.bytes = resident ? w_bytes + r_bytes : w_bytes;
      w.sram_bytes = w.bytes;
      w.deps = deps_in;
      uint32_t wid = emit(w);
      Task x = w;
      x.bytes = T * Bn * ceil_div(g.K * 2, align) * align;
      x.sram_bytes = x.bytes;
      x.buf = L.inputs[0];
      uint32_t xid = emit(x);
      Task proj;
      proj.engine = Engine::Mac; proj.core = core; proj.layer = li; proj.b = d;
      proj.m0 = 0; proj.m1 = T * Bn; proj.n0 = 0; proj.n1 = g.N; proj.k0 = 0; proj.k1 = g.K;
      proj.cycles = gemm_tile_cost(T * Bn, g.K, g.N, hw_.mac.rows, hw_.mac.cols, hw_.mac.dataflow).compute_cycles;
      proj.macs = T * Bn * g.K * g.N;
      proj.deps = {wid, xid};
      uint32_t prev = emit(proj);
      for (int64_t t = 0; t < T; ++t) {
        std::vector<uint32_t> step_deps = {prev};
        if (!resident) {
          Task r = w;
          r.bytes = r_bytes; r.sram_bytes = r_bytes; r.deps = {prev};
          step_deps.push_back(emit(r));
        }
        Task mm;
        mm.engine = Engine::Mac; mm.core = core; mm.layer = li; mm.b = d;
        mm.m0 = t; mm.m1 = t + 1; mm.n0 = 0; mm.n1 = g.N; mm.k0 = 0; mm.k1 = H;
        mm.cycles = gemm_tile_cost(Bn, H, g.N, hw_.mac.rows, hw_.mac.cols, hw_.mac.dataflow).compute_cycles;
        mm.macs = Bn * H * g.N;
        mm.sram_bytes = (Bn * H + H * g.N) * 2 + Bn * g.N * 4;
        mm.deps = step_deps;
        uint32_t mid = emit(mm);
        Task v;
        v.engine = Engine::Vec; v.core = core; v.layer = li; v.b = d; v.m0 = t; v.m1 = t + 1;
        v.cycles = ceil_div(Bn * g.N * 10, hw_.vector.lanes);
        v.sram_bytes = Bn * g.N * 2 * 3;
        v.deps = {mid};
        prev = emit(v);
      }
      Task o;
      o.engine = Engine::DmaOut; o.core = core; o.layer = li; o.b = d;
      o.bytes = (T + 2) * Bn * ceil_div(H * 2, align) * align;  // Y, Y_h, Y_c
      o.sram_bytes = o.bytes;
      o.buf = L.outputs.empty() ? -1 : L.outputs[0];
      o.deps = {prev};
      outs.push_back(emit(o));
    }
    for (int o : L.outputs) if (o >= 0) last_out_[o] = outs;
  }

  // Vector and Move layers: rows split evenly over cores, tiles sized to half the SRAM.
  void rows(int li, bool compute) {
    Layer& L = p_.layers[li];
    const auto deps_in = input_deps(L);
    std::vector<uint32_t> outs;
    int64_t total_rows = std::max<int64_t>(L.vec_rows, 1);
    int64_t out_bytes = 0;
    for (int o : L.outputs) if (o >= 0) out_bytes += p_.buffers[o].bytes;
    int64_t in_bytes = in_bytes_fraction(L, 1.0);
    double per_row = static_cast<double>(in_bytes + out_bytes) / total_rows;
    int64_t rows_per_tile = std::max<int64_t>(1, static_cast<int64_t>((sram_ / 4) / std::max(per_row, 1.0)));
    int64_t cores = hw_.cores;
    int64_t lanes = hw_.vector.lanes;
    for (int64_t u = 0; u < cores; ++u) {
      int64_t r0 = total_rows * u / cores, r1 = total_rows * (u + 1) / cores;
      int64_t i = 0;
      std::vector<uint32_t> done;
      for (int64_t ra = r0; ra < r1; ra += rows_per_tile, ++i) {
        int64_t rb = std::min(r1, ra + rows_per_tile);
        double frac = static_cast<double>(rb - ra) / total_rows;
        Task in;
        in.engine = Engine::DmaIn; in.core = static_cast<int>(u); in.layer = li;
        in.m0 = ra; in.m1 = rb;
        in.bytes = in_bytes_fraction(L, frac);
        for (int b : L.inputs) if (b >= 0 && !p_.buffers[b].constant) { in.buf = b; break; }
        if (!L.weights.empty() || !L.bias.empty() || !L.q.ibias.empty()) {
          const int64_t w_es = L.q.on && L.q.int8 ? 1 : 2;
          in.bytes += static_cast<int64_t>((L.weights.size() * w_es + (L.bias.size() + L.q.ibias.size()) * 4) * frac) + 1;
        }
        in.sram_bytes = in.bytes;
        in.deps = deps_in;
        if (i >= 2) in.deps.push_back(done[i - 2]);
        uint32_t iid = emit(in);
        uint32_t last = iid;
        if (compute) {
          Task v;
          v.engine = Engine::Vec; v.core = static_cast<int>(u); v.layer = li;
          v.m0 = ra; v.m1 = rb;
          int64_t elems = (rb - ra) * L.vec_row_elems;
          v.cycles = ceil_div(elems * L.vec_ops_per_elem, lanes);
          v.macs = L.macs ? elems * L.vec_ops_per_elem : 0;
          v.sram_bytes = in.bytes + static_cast<int64_t>(out_bytes * frac);
          v.deps = {iid};
          last = emit(v);
        }
        done.push_back(last);
        Task o;
        o.engine = Engine::DmaOut; o.core = static_cast<int>(u); o.layer = li;
        o.m0 = ra; o.m1 = rb;
        o.bytes = static_cast<int64_t>(std::ceil(out_bytes * frac));
        o.buf = L.outputs.empty() ? -1 : L.outputs[0];
        o.sram_bytes = o.bytes;
        o.deps = {last};
        outs.push_back(emit(o));
      }
    }
    for (int o : L.outputs) if (o >= 0) last_out_[o] = outs;
  }

  const HardwareConfig& hw_;
  Program& p_;
  int64_t sram_;
  std::vector<std::vector<uint32_t>> last_out_;  // per buffer: tasks that wrote it
  std::map<std::array<int64_t, 6>, uint32_t> shared_;  // per layer: first fetch of each operand tile
  std::vector<uint32_t> prev_mac_, first_mac_this_layer_;  // per core: first MAC task of the last GEMM layer
};

}  // namespace

std::vector<std::pair<std::string, std::string>> lowered_ops() {
  std::vector<std::pair<std::string, std::string>> r;
  for (const auto& [op, k] : lowerable())
    r.emplace_back(op, k == Lower::Gemm ? "mac" : k == Lower::Vector ? "vector" : k == Lower::Move ? "dma"
                       : k == Lower::Recurrent ? "mac+vector (engines that declare it)" : "view");
  return r;
}

std::string decline_reason(const ir::Model& model, const ir::Node& node, const HardwareConfig& hw) {
  Reasoner r{model, hw, static_types(model.graph)};
  r.analyze();
  return r.why(node);
}

Program compile(const ir::Model& model, const HardwareConfig& hw, const CompileOptions& opts) {
  Program p;
  p.hw_name = hw.name;
  p.hw_hash = hw.hash();
  p.sram_bytes_per_core = hw.sram.bytes;
  p.opset = model.opset();
  Reasoner r{model, hw, static_types(model.graph)};
  r.analyze();
  const auto& nodes = model.graph.nodes;
  using QRole = Reasoner::QRole;

  // 1. Placement.
  std::vector<bool> on_npu(nodes.size(), false);
  for (size_t i = 0; i < nodes.size(); ++i) {
    Placement pl{nodes[i].name, nodes[i].op_type, false, r.why(nodes[i])};
    pl.npu = pl.reason.empty();
    if (pl.npu) pl.reason = r.notes[i];
    on_npu[i] = pl.npu;
    p.placements.push_back(pl);
  }
  // 2. Activation fusion: a Relu/Clip whose only input is a MAC layer's output read by nobody else.
  std::unordered_map<std::string, int> readers;
  for (const auto& n : nodes) for (const auto& v : ir::node_reads(n)) readers[v]++;
  for (const auto& o : model.graph.outputs) readers[o.name] += 1 << 20;
  std::vector<int> fused_into(nodes.size(), -1);
  if (opts.fuse_activations) {
    for (size_t i = 0; i + 1 < nodes.size(); ++i) {
      const auto& n = nodes[i];
      const auto& a = nodes[i + 1];
      if (!on_npu[i] || !on_npu[i + 1]) continue;
      if (r.role[i] != QRole::None || r.role[i + 1] != QRole::None) continue;
      if (lowerable().at(n.op_type) != Lower::Gemm || is_depthwise(n, r.types)) continue;
      if ((a.op_type != "Relu" && a.op_type != "Clip") || a.inputs.empty() || a.inputs[0] != n.outputs[0]) continue;
      if (readers[n.outputs[0]] != 1) continue;
      fused_into[i + 1] = static_cast<int>(i);
    }
  }
  // 3. Segments and layers.
  Lowering low(model, hw, p, r);
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (p.segments.empty() || p.segments.back().npu != on_npu[i]) p.segments.push_back(Segment{on_npu[i], {}, {}, 0});
    p.segments.back().nodes.push_back(static_cast<int>(i));
    if (!on_npu[i] || fused_into[i] >= 0) continue;
    const QRole role = r.role[i];
    if (role == QRole::DqAbsorbed || role == QRole::QAbsorbed || role == QRole::ActAbsorbed) continue;
    if (role != QRole::None) {
      p.layers.push_back(low.make_quant_layer(nodes[i], static_cast<int>(i)));
      p.segments.back().layers.push_back(static_cast<int>(p.layers.size()) - 1);
      continue;
    }
    const ir::Node* act = (i + 1 < nodes.size() && fused_into[i + 1] == static_cast<int>(i)) ? &nodes[i + 1] : nullptr;
    p.layers.push_back(low.make_layer(nodes[i], act));
    p.segments.back().layers.push_back(static_cast<int>(p.layers.size()) - 1);
  }
  // Bytes crossing between devices (each crossing is a DRAM round trip).
  std::unordered_map<std::string, bool> produced_on_npu;
  for (size_t i = 0; i < nodes.size(); ++i)
    for (const auto& o : nodes[i].outputs) produced_on_npu[o] = on_npu[i];
  for (auto& s : p.segments) {
    std::set<std::string> crossing;
    for (int ni : s.nodes)
      for (const auto& v : nodes[ni].inputs) {
        if (v.empty() || r.is_const(v)) continue;
        auto it = produced_on_npu.find(v);
        bool from_npu = it != produced_on_npu.end() && it->second;
        if (from_npu != s.npu) crossing.insert(v);
      }
    for (const auto& v : crossing) {
      auto t = r.types.find(v);
      if (t != r.types.end())
        s.boundary_bytes += checked_numel(t->second.shape) *
                            (t->second.dtype == DType::Int8 || t->second.dtype == DType::UInt8 ? 1 : 2);
    }
  }
  low.finish_buffers();
  // Buffers read outside the NPU (model outputs, inputs of later CPU nodes) stay live.
  for (auto& b : p.buffers) {
    for (const auto& o : model.graph.outputs) b.graph_output |= o.name == b.name;
    for (size_t i = 0; i < nodes.size(); ++i)
      if (!on_npu[i]) for (const auto& v : nodes[i].inputs) b.graph_output |= v == b.name;
  }
  // 4. Tasks.
  Tiler tiler(hw, p);
  for (size_t li = 0; li < p.layers.size(); ++li) tiler.layer(static_cast<int>(li));
  return p;
}

}  // namespace opennpu::npu
