// quant/quantize.cpp — see quantize.h. Three steps: calibration (run the float model, collect
// per-activation statistics), range selection (minmax / percentile / entropy), and the rewrite of
// the ModelProto into QDQ form.
#include "quant/quantize.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <random>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <immintrin.h>

#include "core/npy.h"
#include "core/quant.h"
#include "cpu/executor.h"
#include "cpu/fast/fast.h"
#include "onnx/importer.h"

namespace fs = std::filesystem;

namespace opennpu::quant {

Method parse_method(const std::string& s) {
  if (s == "minmax") return Method::minmax;
  if (s == "percentile") return Method::percentile;
  if (s == "entropy") return Method::entropy;
  throw Error(fmt::format("unknown calibration method '{}' (use minmax, percentile or entropy)", s));
}

const char* method_name(Method m) {
  switch (m) {
    case Method::minmax: return "minmax";
    case Method::percentile: return "percentile";
    case Method::entropy: return "entropy";
  }
  return "?";
}

// ---- seeded inputs ------------------------------------------------------------------------------

uint64_t held_out_seed(uint64_t seed) { return seed ^ 0x5eed0ff5e7ull; }

std::vector<NamedTensors> random_inputs(const std::vector<TensorInfo>& inputs, int n, uint64_t seed) {
  std::vector<NamedTensors> out;
  for (int k = 0; k < n; ++k) {
    NamedTensors feeds;
    for (size_t ii = 0; ii < inputs.size(); ++ii) {
      const TensorInfo& in = inputs[ii];
      if (in.dtype != DType::Float32)
        throw Error(fmt::format("input '{}' is {}: seeded random inputs are float32 only; give a calibration folder",
                                in.name, dtype_name(in.dtype)));
      Shape shape;
      for (int64_t d : in.shape) shape.push_back(d < 0 ? 1 : d);  // symbolic dims: 1
      Tensor t(DType::Float32, shape);
      // One stream per (seed, sample, input): sample k is the same whatever n is.
      std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(k) * 1000003ull + ii);
      float* d = t.data<float>();
      auto uniform = [&] { return (static_cast<double>(rng() >> 11) + 0.5) * (1.0 / 9007199254740992.0); };
      for (int64_t i = 0; i < t.numel(); i += 2) {  // Box-Muller: two normals per two uniforms
        double r = std::sqrt(-2.0 * std::log(uniform())), th = 2.0 * M_PI * uniform();
        d[i] = static_cast<float>(r * std::cos(th));
        if (i + 1 < t.numel()) d[i + 1] = static_cast<float>(r * std::sin(th));
      }
      feeds[in.name] = std::move(t);
    }
    out.push_back(std::move(feeds));
  }
  return out;
}

namespace {

// ---- calibration data ---------------------------------------------------------------------------

std::string dims_str(const ir::ValueInfo& vi) { return vi.describe(); }

void check_sample(const ir::ValueInfo& vi, const Tensor& t, const std::string& file) {
  if (t.dtype() != vi.dtype)
    throw Error(fmt::format("calibration file {}: dtype {} does not match input '{}' ({})", file,
                            dtype_name(t.dtype()), vi.name, dims_str(vi)));
  bool ok = vi.has_shape ? static_cast<int64_t>(vi.dims.size()) == t.rank() : true;
  for (size_t d = 0; ok && d < vi.dims.size(); ++d)
    if (vi.dims[d].known() && vi.dims[d].value != t.dim(static_cast<int64_t>(d))) ok = false;
  if (!ok)
    throw Error(fmt::format("calibration file {}: shape {} does not match input '{}' ({})", file,
                            shape_str(t.shape()), vi.name, dims_str(vi)));
}

std::vector<const ir::ValueInfo*> real_inputs(const ir::Model& m) {
  std::vector<const ir::ValueInfo*> v;
  for (const auto& in : m.graph.inputs)
    if (!m.graph.is_initializer(in.name)) v.push_back(&in);
  return v;
}

std::vector<NamedTensors> load_calib_dir(const ir::Model& m, const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(fmt::format("calibration folder {} does not exist or is not a folder", dir));
  auto ins = real_inputs(m);
  std::vector<NamedTensors> out;
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(dir, ec)) entries.push_back(e.path());
  std::sort(entries.begin(), entries.end());
  if (ins.size() == 1) {
    for (const auto& p : entries) {
      if (p.extension() != ".npy" || !fs::is_regular_file(p)) continue;
      Tensor t = read_npy(p.string());
      check_sample(*ins[0], t, p.string());
      out.push_back({{ins[0]->name, std::move(t)}});
    }
    if (out.empty()) throw Error(fmt::format("calibration folder {} has no .npy files (one file per sample of input '{}')",
                                             dir, ins[0]->name));
  } else {
    for (const auto& p : entries) {
      if (!fs::is_directory(p)) continue;
      NamedTensors feeds;
      for (const auto* in : ins) {
        fs::path f = p / (in->name + ".npy");
        if (!fs::is_regular_file(f)) throw Error(fmt::format("calibration sample {} has no {}.npy", p.string(), in->name));
        Tensor t = read_npy(f.string());
        check_sample(*in, t, f.string());
        feeds[in->name] = std::move(t);
      }
      out.push_back(std::move(feeds));
    }
    if (out.empty())
      throw Error(fmt::format("calibration folder {} has no sample folders (the model has {} inputs: one folder per "
                              "sample holding <input>.npy for each)", dir, ins.size()));
  }
  return out;
}

// ---- statistics ---------------------------------------------------------------------------------

constexpr int kBins = 2048;
// Fewest values (over all batches) for percentile/entropy clipping of a tensor; below, minmax.
constexpr double kMinHistogramValues = 65536;

// min, max and max |x| of the finite values of d[0..n) folded into lo, hi, amax (exact: the
// order of min/max operations does not change their result). AVX-512 when the CPU has it: the
// scalar loop does not vectorise and was the largest part of the calibration time on resnet50.
__attribute__((target("avx512f"))) void minmax_avx512(const float* d, int64_t n, float& lo, float& hi, float& amax) {
  __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi), vam = _mm512_set1_ps(amax);
  const __m512 big = _mm512_set1_ps(std::numeric_limits<float>::max());
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, d + i), a = _mm512_abs_ps(v);
    const __mmask16 fin = _mm512_mask_cmp_ps_mask(m, a, big, _CMP_LE_OQ);  // false for NaN and +-inf
    vlo = _mm512_mask_min_ps(vlo, fin, vlo, v);
    vhi = _mm512_mask_max_ps(vhi, fin, vhi, v);
    vam = _mm512_mask_max_ps(vam, fin, vam, a);
  }
  lo = _mm512_reduce_min_ps(vlo);
  hi = _mm512_reduce_max_ps(vhi);
  amax = _mm512_reduce_max_ps(vam);
}

struct Stats {
  float min = std::numeric_limits<float>::infinity(), max = -std::numeric_limits<float>::infinity();
  bool want_hist = false;
  double top = 0;  // histogram of |x| over [0, top), kBins bins; top doubles when a value exceeds it
  std::vector<double> hist;
  void add(const float* d, int64_t n) {
    float lo = min, hi = max, amax = 0;
    if (cpu::cpu_features().avx512f) {
      minmax_avx512(d, n, lo, hi, amax);
    } else {
      for (int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(d[i])) continue;
        lo = std::min(lo, d[i]);
        hi = std::max(hi, d[i]);
        amax = std::max(amax, std::fabs(d[i]));
      }
    }
    min = lo;
    max = hi;
    if (!want_hist || amax == 0) {
      if (want_hist && hist.empty()) hist.assign(kBins, 0.0);
      if (want_hist) hist[0] += static_cast<double>(n);
      return;
    }
    if (hist.empty()) {
      hist.assign(kBins, 0.0);
      top = amax * 1.0000001;
    }
    while (amax >= top) {  // merge pairs of bins: same edges at twice the width
      for (int b = 0; b < kBins / 2; ++b) hist[b] = hist[2 * b] + hist[2 * b + 1];
      std::fill(hist.begin() + kBins / 2, hist.end(), 0.0);
      top *= 2;
    }
    const double w = top / kBins;
    for (int64_t i = 0; i < n; ++i) {
      if (!std::isfinite(d[i])) continue;
      int b = static_cast<int>(std::fabs(d[i]) / w);
      hist[std::min(b, kBins - 1)] += 1;
    }
  }
};

// Threshold T on |x| keeping `pct` percent of the values.
double percentile_threshold(const Stats& s, double pct) {
  double total = 0;
  for (double h : s.hist) total += h;
  if (total == 0 || s.top == 0) return 0;
  double want = total * pct / 100.0, cum = 0;
  for (int b = 0; b < kBins; ++b) {
    cum += s.hist[b];
    if (cum >= want) return (b + 1) * (s.top / kBins);
  }
  return s.top;
}

// TensorRT's entropy calibration: the threshold (a bin edge) whose clipped distribution,
// quantized to `levels` levels, loses the least information (KL divergence) against it.
double entropy_threshold(const Stats& s, int levels) {
  const auto& h = s.hist;
  if (s.top == 0) return 0;
  int last = kBins;
  while (last > 0 && h[last - 1] == 0) --last;
  if (last <= levels) return last * (s.top / kBins);
  double best_kl = std::numeric_limits<double>::infinity();
  int best_i = kBins;
  std::vector<double> p, q;
  for (int i = levels; i <= kBins; ++i) {
    p.assign(h.begin(), h.begin() + i);
    double outliers = 0;
    for (int b = i; b < kBins; ++b) outliers += h[b];
    p[i - 1] += outliers;
    // Q: the first i bins merged into `levels` groups, each group's count spread evenly over
    // its non-empty bins.
    q.assign(i, 0.0);
    for (int g = 0; g < levels; ++g) {
      int b0 = static_cast<int>(static_cast<int64_t>(g) * i / levels);
      int b1 = static_cast<int>(static_cast<int64_t>(g + 1) * i / levels);
      double sum = 0;
      int nz = 0;
      for (int b = b0; b < b1; ++b) {
        sum += h[b];
        nz += h[b] != 0;
      }
      for (int b = b0; b < b1; ++b)
        if (h[b] != 0) q[b] = sum / nz;
    }
    double ps = 0, qs = 0;
    for (int b = 0; b < i; ++b) { ps += p[b]; qs += q[b]; }
    if (ps == 0 || qs == 0) continue;
    double kl = 0;
    for (int b = 0; b < i; ++b) {
      if (p[b] == 0) continue;
      double pn = p[b] / ps, qn = q[b] / qs;
      kl += qn > 0 ? pn * std::log(pn / qn) : pn * 30.0;  // p > 0 where q == 0: a large penalty
    }
    if (kl < best_kl) {
      best_kl = kl;
      best_i = i;
    }
  }
  return (best_i + 0.5) * (s.top / kBins);
}

// int8 parameters of a range (widened to contain 0, so that real 0 is exact).
void int8_params(ActivationRange& r) {
  float lo = std::min(r.lo, 0.0f), hi = std::max(r.hi, 0.0f);
  if (!(hi > lo)) {  // all zeros: any scale; zero point at the bottom so that negatives clip to 0
    r.scale = 1.0f;
    r.zero_point = -128;
    return;
  }
  r.scale = (hi - lo) / 255.0f;
  if (!(r.scale > 0) || !std::isfinite(r.scale)) r.scale = 1.0f;
  r.zero_point = quantize_value(-128.0f - lo / r.scale, 0, QRange{-128, 127});
}

// ---- protobuf helpers ---------------------------------------------------------------------------

onnx::TensorProto make_tensor(const std::string& name, int32_t dtype, const Shape& shape, const void* data,
                              size_t bytes) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(dtype);
  for (int64_t d : shape) t.add_dims(d);
  t.set_raw_data(std::string(static_cast<const char*>(data), bytes));
  return t;
}

onnx::NodeProto make_node(const std::string& op, const std::string& name, std::vector<std::string> ins,
                          std::vector<std::string> outs) {
  onnx::NodeProto n;
  n.set_op_type(op);
  n.set_name(name);
  for (auto& i : ins) n.add_input(i);
  for (auto& o : outs) n.add_output(o);
  return n;
}

void set_attr_i(onnx::NodeProto& n, const std::string& name, int64_t v) {
  for (auto& a : *n.mutable_attribute())
    if (a.name() == name) { a.set_type(onnx::AttributeProto::INT); a.set_i(v); return; }
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

void set_attr_f(onnx::NodeProto& n, const std::string& name, float v) {
  for (auto& a : *n.mutable_attribute())
    if (a.name() == name) { a.set_type(onnx::AttributeProto::FLOAT); a.set_f(v); return; }
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(v);
}

float attr_f(const onnx::NodeProto& n, const std::string& name, float dflt) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return a.f();
  return dflt;
}
int64_t attr_i(const onnx::NodeProto& n, const std::string& name, int64_t dflt) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return a.i();
  return dflt;
}

const std::set<std::string> kQuantizedOps = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
                                             "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
                                             "QGemm", "QLinearAdd", "QLinearMul", "QLinearConcat",
                                             "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearSigmoid",
                                             "QLinearLeakyRelu", "QAttention", "DynamicQuantizeMatMul",
                                             "MatMulIntegerToFloat"};

// Ops whose output values are a subset (or rearrangement) of their first input's values: the
// output reuses the input's quantization, so Q(op(DQ(q))) == op(q) exactly.
const std::set<std::string> kPreserving = {"MaxPool", "GlobalMaxPool", "Flatten", "Reshape", "Transpose", "Squeeze",
                                           "Unsqueeze", "Identity", "Slice", "Gather", "Split", "SpaceToDepth",
                                           "DepthToSpace", "Expand", "Tile"};

// ---- the rewrite --------------------------------------------------------------------------------

struct Rewriter {
  onnx::ModelProto& mp;
  const ir::Model& im;  // the same model imported (initializer and Constant values)
  const std::map<std::string, ActivationRange>& ranges;
  const QuantizeOptions& opts;
  QuantizeReport& rep;
  std::unordered_set<std::string> names;  // every value, initializer and node name in use

  std::string fresh(const std::string& base) {
    std::string n = base;
    for (int k = 1; names.count(n); ++k) n = fmt::format("{}_{}", base, k);
    names.insert(n);
    return n;
  }

  // Float constant value of a name: an initializer or a Constant node's `value`.
  const Tensor* constant(const std::string& name) const {
    auto it = im.graph.initializers.find(name);
    if (it != im.graph.initializers.end()) return &it->second;
    for (const auto& n : im.graph.nodes)
      if (n.op_type == "Constant" && n.domain.empty() && !n.outputs.empty() && n.outputs[0] == name)
        return n.attr_t("value");
    return nullptr;
  }
  bool is_initializer(const std::string& name) const { return im.graph.initializers.count(name) != 0; }

  void run();
};

void Rewriter::run() {
  onnx::GraphProto& g = *mp.mutable_graph();
  int64_t opset = 0;
  for (const auto& os : mp.opset_import())
    if (os.domain().empty() || os.domain() == "ai.onnx") opset = os.version();
  if (opset < 10) throw Error(fmt::format("opset {} has no QuantizeLinear (needs opset >= 10)", opset));
  bool per_channel = opts.per_channel;
  if (per_channel && opset < 13) {
    per_channel = false;
    rep.notes.push_back(fmt::format("opset {} < 13 has no per-axis quantization: weights are per-tensor", opset));
  }
  for (const auto& n : g.node()) {
    names.insert(n.name());
    for (const auto& o : n.output()) names.insert(o);
    for (const auto& i : n.input()) names.insert(i);
  }
  for (const auto& t : g.initializer()) names.insert(t.name());
  for (const auto& i : g.input()) names.insert(i.name());

  std::unordered_set<std::string> graph_outputs;
  for (const auto& o : g.output()) graph_outputs.insert(o.name());
  std::unordered_map<std::string, int> readers;
  for (const auto& n : g.node())
    for (const auto& i : n.input())
      if (!i.empty()) readers[i]++;

  // Constant-derived values (Constant outputs, nodes on constants only): never quantized.
  std::unordered_set<std::string> constant_vals;
  for (const auto& t : g.initializer()) constant_vals.insert(t.name());
  for (const auto& i : g.input()) constant_vals.erase(i.name());  // overridable initializers are inputs
  for (const auto& n : g.node()) {
    bool c = n.op_type() == "Constant" || n.input_size() > 0;
    for (const auto& i : n.input())
      if (!i.empty() && !constant_vals.count(i)) c = false;
    if (n.op_type() == "Constant") c = true;
    if (c)
      for (const auto& o : n.output()) constant_vals.insert(o);
  }

  // 1. MAC nodes followed by an absorbable activation: Relu, or Clip with min 0.
  std::unordered_map<std::string, size_t> producer;
  for (int i = 0; i < g.node_size(); ++i)
    for (const auto& o : g.node(i).output()) producer[o] = static_cast<size_t>(i);
  std::vector<bool> removed(static_cast<size_t>(g.node_size()), false);
  std::unordered_set<std::string> absorbed_out;
  auto is_mac = [](const onnx::NodeProto& n) {
    return n.domain().empty() && (n.op_type() == "Conv" || n.op_type() == "MatMul" || n.op_type() == "Gemm");
  };
  for (int i = 0; i < g.node_size(); ++i) {
    const auto& act = g.node(i);
    if (!act.domain().empty() || act.input_size() < 1) continue;
    bool absorbable = act.op_type() == "Relu";
    if (act.op_type() == "Clip") {
      float mn = -INFINITY;
      if (opset < 11) mn = attr_f(act, "min", -INFINITY);
      else if (act.input_size() > 1 && !act.input(1).empty()) {
        const Tensor* t = constant(act.input(1));
        if (t && t->dtype() == DType::Float32 && t->numel() == 1) mn = t->data<float>()[0];
      }
      absorbable = mn == 0.0f;
    }
    if (!absorbable) continue;
    auto p = producer.find(act.input(0));
    if (p == producer.end()) continue;
    auto& mac = *g.mutable_node(static_cast<int>(p->second));
    if (!is_mac(mac) || mac.output_size() != 1 || readers[mac.output(0)] != 1 || graph_outputs.count(mac.output(0)))
      continue;
    if (!ranges.count(act.output(0))) continue;
    mac.set_output(0, act.output(0));
    absorbed_out.insert(act.output(0));
    removed[static_cast<size_t>(i)] = true;
    rep.absorbed++;
  }

  // 2. Quantization parameters of every float activation, in graph order.
  std::map<std::string, ActivationRange> params;
  auto add_param = [&](const std::string& v) {
    auto it = ranges.find(v);
    if (it == ranges.end() || constant_vals.count(v)) return;
    params[v] = it->second;
    if (absorbed_out.count(v)) {  // range starts at 0: zero point -128, saturation does the Relu
      params[v].lo = 0;
      int8_params(params[v]);
    }
  };
  for (const auto& in : g.input())
    if (!constant_vals.count(in.name())) add_param(in.name());
  for (int i = 0; i < g.node_size(); ++i) {
    if (removed[i]) continue;
    const auto& n = g.node(i);
    for (const auto& o : n.output()) {
      if (o.empty()) continue;
      if (n.domain().empty() && kPreserving.count(n.op_type()) && n.input_size() > 0 && params.count(n.input(0)) &&
          ranges.count(o) && !constant_vals.count(o)) {
        ActivationRange r = params.at(n.input(0));
        r.name = o;
        r.observed_min = ranges.at(o).observed_min;
        r.observed_max = ranges.at(o).observed_max;
        params[o] = r;
        continue;
      }
      add_param(o);
    }
  }
  // 3. Build the new node list.
  std::vector<onnx::NodeProto> out_nodes;
  std::vector<onnx::TensorProto> new_inits;
  std::unordered_map<std::string, std::string> renamed_input;  // graph input -> its DQ output
  auto scalar_params = [&](const ActivationRange& r, const std::string& v, std::string& s, std::string& z) {
    s = fresh(v + "_scale");
    z = fresh(v + "_zero_point");
    new_inits.push_back(make_tensor(s, onnx::TensorProto::FLOAT, {}, &r.scale, 4));
    int8_t zp = static_cast<int8_t>(r.zero_point);
    new_inits.push_back(make_tensor(z, onnx::TensorProto::INT8, {}, &zp, 1));
  };
  // QDQ for value `src` (float) producing `dst` (float); returns nodes.
  auto qdq = [&](const ActivationRange& r, const std::string& src, const std::string& dst, const std::string& base) {
    std::string s, z;
    scalar_params(r, base, s, z);
    std::string q = fresh(base + "_quantized");
    out_nodes.push_back(make_node("QuantizeLinear", fresh(base + "_QuantizeLinear"), {src, s, z}, {q}));
    out_nodes.push_back(make_node("DequantizeLinear", fresh(base + "_DequantizeLinear"), {q, s, z}, {dst}));
    rep.activations++;
  };
  for (const auto& in : g.input()) {
    auto it = params.find(in.name());
    if (it == params.end()) continue;
    std::string dq = fresh(in.name() + "_dequantized");
    qdq(it->second, in.name(), dq, in.name());
    renamed_input[in.name()] = dq;
  }
  std::unordered_set<std::string> dropped_inits;
  std::unordered_map<std::string, int> init_readers = readers;
  for (int i = 0; i < g.node_size(); ++i) {
    if (removed[i]) continue;
    onnx::NodeProto n = g.node(i);
    for (int k = 0; k < n.input_size(); ++k) {
      auto it = renamed_input.find(n.input(k));
      if (it != renamed_input.end()) n.set_input(k, it->second);
    }
    // Weights and bias of a MAC node whose activation input is quantized.
    if (is_mac(n) && n.input_size() >= 2 && params.count(g.node(i).input(0)) && is_initializer(n.input(1)) &&
        !constant_vals.count(n.input(0)) && constant_vals.count(n.input(1))) {
      const Tensor* w = constant(n.input(1));
      const std::string& op = n.op_type();
      bool ok = w && w->dtype() == DType::Float32 && ((op == "Conv" && w->rank() >= 3) || (op != "Conv" && w->rank() == 2));
      if (ok) {
        const int64_t axis = op == "Conv" ? 0 : (op == "Gemm" && attr_i(n, "transB", 0) ? 0 : 1);
        const int64_t C = w->dim(axis);
        float alpha = op == "Gemm" ? attr_f(n, "alpha", 1.0f) : 1.0f;
        // Per output channel: scale = max|w_c| / 127, q = saturate(round(w / scale)) in [-127, 127].
        int64_t inner = 1;
        for (int64_t d = axis + 1; d < w->rank(); ++d) inner *= w->dim(d);
        const int64_t nc = per_channel ? C : 1;
        std::vector<float> amax(static_cast<size_t>(nc), 0.0f);
        auto chan = [&](int64_t e) { return per_channel ? (e / inner) % C : 0; };
        const float* wd = w->data<float>();
        for (int64_t e = 0; e < w->numel(); ++e) amax[chan(e)] = std::max(amax[chan(e)], std::fabs(wd[e] * alpha));
        std::vector<float> ws(static_cast<size_t>(nc));
        for (int64_t c = 0; c < nc; ++c) ws[c] = amax[c] > 0 ? amax[c] / 127.0f : 1.0f;
        std::vector<int8_t> wq(static_cast<size_t>(w->numel()));
        for (int64_t e = 0; e < w->numel(); ++e)
          wq[e] = static_cast<int8_t>(quantize(wd[e] * alpha, ws[chan(e)], 0, QRange{-127, 127}));
        std::string wname = n.input(1);
        std::string wqn = fresh(wname + "_quantized"), wsn = fresh(wname + "_scale"), wzn = fresh(wname + "_zero_point");
        Shape sshape = per_channel ? Shape{C} : Shape{};
        new_inits.push_back(make_tensor(wqn, onnx::TensorProto::INT8, w->shape(), wq.data(), wq.size()));
        new_inits.push_back(make_tensor(wsn, onnx::TensorProto::FLOAT, sshape, ws.data(), ws.size() * 4));
        std::vector<int8_t> wz(static_cast<size_t>(nc), 0);
        new_inits.push_back(make_tensor(wzn, onnx::TensorProto::INT8, sshape, wz.data(), wz.size()));
        std::string wdq = fresh(wname + "_dequantized");
        auto dqn = make_node("DequantizeLinear", fresh(wname + "_DequantizeLinear"), {wqn, wsn, wzn}, {wdq});
        if (per_channel) set_attr_i(dqn, "axis", axis);
        out_nodes.push_back(dqn);
        rep.float_weight_bytes += static_cast<int64_t>(w->nbytes());
        rep.int8_weight_bytes += static_cast<int64_t>(wq.size() + ws.size() * 4 + wz.size());
        if (--init_readers[wname] == 0) dropped_inits.insert(wname);
        n.set_input(1, wdq);
        if (op == "Gemm") set_attr_f(n, "alpha", 1.0f);
        (op == "Conv" ? rep.conv : op == "MatMul" ? rep.matmul : rep.gemm)++;
        // Bias (Conv B / Gemm C): int32, scale float32(x_scale * w_scale[c]), zero point 0.
        if (op != "MatMul" && n.input_size() > 2 && !n.input(2).empty() && is_initializer(n.input(2))) {
          const Tensor* b = constant(n.input(2));
          float beta = op == "Gemm" ? attr_f(n, "beta", 1.0f) : 1.0f;
          bool b_ok = b && b->dtype() == DType::Float32 && b->numel() == C &&
                      (b->rank() == 1 || (b->rank() == 2 && b->dim(0) == 1));
          if (b_ok) {
            const float xs = params.at(g.node(i).input(0)).scale;
            std::vector<float> bs(static_cast<size_t>(C));
            std::vector<int32_t> bq(static_cast<size_t>(C));
            for (int64_t c = 0; c < C; ++c) {
              bs[c] = xs * ws[per_channel ? c : 0];
              double v = std::nearbyint(static_cast<double>(b->data<float>()[c] * beta) / bs[c]);
              bq[c] = static_cast<int32_t>(std::clamp(v, -2147483647.0, 2147483647.0));
            }
            std::string bname = n.input(2);
            std::string bqn = fresh(bname + "_quantized"), bsn = fresh(bname + "_scale");
            new_inits.push_back(make_tensor(bqn, onnx::TensorProto::INT32, {C}, bq.data(), bq.size() * 4));
            new_inits.push_back(make_tensor(bsn, onnx::TensorProto::FLOAT, {C}, bs.data(), bs.size() * 4));
            std::string bdq = fresh(bname + "_dequantized");
            auto bdqn = make_node("DequantizeLinear", fresh(bname + "_DequantizeLinear"), {bqn, bsn}, {bdq});
            set_attr_i(bdqn, "axis", 0);
            out_nodes.push_back(bdqn);
            rep.float_weight_bytes += static_cast<int64_t>(b->nbytes());
            rep.int8_weight_bytes += static_cast<int64_t>(bq.size() * 4 + bs.size() * 4);
            if (--init_readers[bname] == 0) dropped_inits.insert(bname);
            n.set_input(2, bdq);
            if (op == "Gemm") set_attr_f(n, "beta", 1.0f);
          } else {
            rep.notes.push_back(fmt::format("node '{}': bias kept in float32 (not a 1-D float of {} values)", n.name(), C));
          }
        }
      } else {
        rep.notes.push_back(fmt::format("node '{}' ({}): weights kept in float32 (not a float32 constant of the "
                                        "expected rank)", n.name(), op));
      }
    }
    // Outputs: producer writes <v>_float, then Q -> DQ -> <v> (consumers and graph outputs unchanged).
    std::vector<std::pair<std::string, std::string>> pending;
    for (int k = 0; k < n.output_size(); ++k) {
      auto it = params.find(n.output(k));
      if (n.output(k).empty() || it == params.end()) continue;
      std::string v = n.output(k);
      std::string pre = fresh(v + "_float");
      n.set_output(k, pre);
      pending.push_back({v, pre});
    }
    out_nodes.push_back(std::move(n));
    for (const auto& [v, pre] : pending) qdq(params.at(v), pre, v, v);
  }
  g.clear_node();
  for (auto& n : out_nodes) *g.add_node() = std::move(n);
  // Initializers: drop the float weights no node reads any more, add the new ones.
  google::protobuf::RepeatedPtrField<onnx::TensorProto> inits;
  for (auto& t : *g.mutable_initializer())
    if (!dropped_inits.count(t.name())) *inits.Add() = std::move(t);
  for (auto& t : new_inits) *inits.Add() = std::move(t);
  g.mutable_initializer()->Swap(&inits);
  for (const auto& [_, r] : params) rep.ranges.push_back(r);
}

}  // namespace

QuantizeReport quantize_model(const std::string& in_path, const std::string& out_path, const QuantizeOptions& opts) {
  QuantizeReport rep;
  rep.method = method_name(opts.method);
  if (opts.calib_dir.empty() && opts.calib_random <= 0)
    throw Error("no calibration data: give --calib DIR or --calib-random N (N >= 1)");
  if (!(opts.percentile > 0 && opts.percentile <= 100))
    throw Error(fmt::format("percentile {} must be in (0, 100]", opts.percentile));
  ir::Model im = onnx_import::load_model(in_path);
  // Already quantized?
  for (const auto& n : im.graph.nodes)
    if (kQuantizedOps.count(n.op_type))
      throw Error(fmt::format("{} is already quantized (it has a {} node, '{}'); quantize the float32 model", in_path,
                              n.op_type, n.name));
  for (const auto& [name, t] : im.graph.initializers)
    if ((t.dtype() == DType::Int8 || t.dtype() == DType::UInt8) && t.numel() > 1)
      throw Error(fmt::format("{} looks already quantized: initializer '{}' is {}; quantize the float32 model", in_path,
                              name, dtype_name(t.dtype())));
  auto ins = real_inputs(im);
  if (ins.empty()) throw Error(fmt::format("{} has no inputs to calibrate with", in_path));

  // Calibration inputs.
  std::vector<NamedTensors> batches;
  if (!opts.calib_dir.empty()) {
    batches = load_calib_dir(im, opts.calib_dir);
  } else {
    std::vector<TensorInfo> infos;
    for (const auto* vi : ins) {
      TensorInfo ti;
      ti.name = vi->name;
      ti.dtype = vi->dtype;
      for (const auto& d : vi->dims) ti.shape.push_back(d.known() ? d.value : -1);
      infos.push_back(ti);
    }
    batches = random_inputs(infos, opts.calib_random, opts.seed);
  }
  rep.calib_samples = static_cast<int>(batches.size());

  // Calibration: every value a node of the graph computes is observed. The model runs on the CPU
  // fast path (oneDNN convs, ...) with all those values declared as graph outputs, which the CPU
  // passes must keep (they never fuse a graph output away), so each is computed as the ONNX graph
  // defines it; its values differ from the reference kernels' only by float32 rounding. (This
  // used to run the reference kernels with RunOptions::fast = false: 3-10x slower.)
  std::map<std::string, Stats> stats;
  const bool hist = opts.method != Method::minmax;
  ir::Model cm = im;  // initializers share their buffers
  {
    std::unordered_set<std::string> outs;
    for (const auto& o : cm.graph.outputs) outs.insert(o.name);
    for (const auto& n : im.graph.nodes)
      for (const auto& o : n.outputs) {
        if (o.empty() || !outs.insert(o).second) continue;
        ir::ValueInfo vi;
        vi.name = o;
        cm.graph.outputs.push_back(vi);
      }
  }
  cpu::Executor ex(cm);
  for (size_t b = 0; b < batches.size(); ++b) {
    for (const auto& [name, t] : batches[b])
      if (t.dtype() == DType::Float32) {
        Stats& s = stats[name];
        s.want_hist = hist;
        s.add(t.data<float>(), t.numel());
      }
    auto values = ex.run(batches[b]);
    for (const auto& [name, t] : values) {
      if (t.dtype() != DType::Float32 || t.numel() == 0) continue;
      Stats& s = stats[name];
      s.want_hist = hist;
      s.add(t.data<float>(), t.numel());
    }
    if (opts.progress) opts.progress(static_cast<int>(b + 1), static_cast<int>(batches.size()));
  }

  // Ranges.
  std::map<std::string, ActivationRange> ranges;
  for (const auto& [name, s] : stats) {
    if (!std::isfinite(s.min) || !std::isfinite(s.max)) continue;  // never saw a finite value
    ActivationRange r;
    r.name = name;
    r.observed_min = s.min;
    r.observed_max = s.max;
    r.lo = s.min;
    r.hi = s.max;
    // Graph outputs keep their full range: clipping the logits saturates the top classes
    // together and loses exactly the ordering a classifier's output is read for (measured:
    // entropy clipping of mobilenet_v2's logits and pooled features gave top-1 agreement 0/16).
    bool is_output = false;
    for (const auto& o : im.graph.outputs) is_output |= o.name == name;
    // A histogram of few values (a pooled feature vector) says little about the distribution's
    // tail: such tensors keep their observed range.
    double count = 0;
    for (double h : s.hist) count += h;
    if (opts.method != Method::minmax && !s.hist.empty() && !is_output && count >= kMinHistogramValues) {
      double T = opts.method == Method::percentile ? percentile_threshold(s, opts.percentile)
                                                   : entropy_threshold(s, s.min >= 0 ? 255 : 128);
      if (T > 0) {
        r.lo = std::max(r.lo, static_cast<float>(-T));
        r.hi = std::min(r.hi, static_cast<float>(T));
      }
    }
    int8_params(r);
    ranges[name] = r;
  }

  // Rewrite the ModelProto.
  std::ifstream f(in_path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  rep.input_file_bytes = static_cast<int64_t>(bytes.size());
  onnx::ModelProto mp;
  if (!mp.ParseFromString(bytes)) throw Error(fmt::format("{}: not a valid ONNX model", in_path));
  for (const auto& t : mp.graph().initializer())
    if (t.data_location() == onnx::TensorProto::EXTERNAL)
      throw Error(fmt::format("{}: initializer '{}' has external data, which quantize does not support", in_path,
                              t.name()));
  Rewriter rw{mp, im, ranges, opts, rep, {}};
  rw.run();
  mp.set_producer_name("opennpu quantize");
  std::string out;
  if (!mp.SerializeToString(&out)) throw Error("could not serialize the quantized model");
  std::ofstream of(out_path, std::ios::binary | std::ios::trunc);
  if (!of) throw Error(fmt::format("cannot write {}", out_path));
  of.write(out.data(), static_cast<std::streamsize>(out.size()));
  of.close();
  if (!of) throw Error(fmt::format("writing {} failed", out_path));
  rep.output_file_bytes = static_cast<int64_t>(out.size());
  return rep;
}

// ---- accuracy -----------------------------------------------------------------------------------

Agreement compare_outputs(const Model& reference, const Model& other, const std::vector<NamedTensors>& inputs) {
  Agreement a;
  if (reference.outputs().empty() || other.outputs().empty()) throw Error("a model without outputs");
  a.output = reference.outputs()[0].name;
  std::string other_name = other.outputs()[0].name;
  double cos_sum = 0;
  std::vector<std::vector<double>> xs, ys;  // every sample's outputs, for the centered cosine
  for (const auto& in : inputs) {
    auto r = reference.predict(in);
    auto o = other.predict(in);
    const Tensor& x = r.at(a.output);
    const Tensor& y = o.at(other_name);
    if (x.shape() != y.shape())
      throw Error(fmt::format("output '{}' has shape {} in one model and {} in the other", a.output,
                              shape_str(x.shape()), shape_str(y.shape())));
    double xy = 0, xx = 0, yy = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      double u = x.get_f64(i), v = y.get_f64(i);
      xy += u * v;
      xx += u * u;
      yy += v * v;
    }
    double cos = (xx > 0 && yy > 0) ? xy / std::sqrt(xx * yy) : (xx == yy ? 1.0 : 0.0);
    xs.emplace_back(static_cast<size_t>(x.numel()));
    ys.emplace_back(static_cast<size_t>(y.numel()));
    for (int64_t i = 0; i < x.numel(); ++i) {
      xs.back()[i] = x.get_f64(i);
      ys.back()[i] = y.get_f64(i);
    }
    a.cos_min = std::min(a.cos_min, cos);
    cos_sum += cos;
    a.samples++;
    if (x.rank() >= 1 && x.dim(x.rank() - 1) > 1) {
      int64_t cls = x.dim(x.rank() - 1), rows = x.numel() / cls;
      for (int64_t rr = 0; rr < rows; ++rr) {
        int64_t bx = 0, by = 0;
        for (int64_t c = 1; c < cls; ++c) {
          if (x.get_f64(rr * cls + c) > x.get_f64(rr * cls + bx)) bx = c;
          if (y.get_f64(rr * cls + c) > y.get_f64(rr * cls + by)) by = c;
        }
        a.rows++;
        a.top1_agree += bx == by;
      }
    }
  }
  a.cos_mean = a.samples ? cos_sum / a.samples : 0;
  if (xs.size() >= 2) {
    const size_t n = xs[0].size();
    std::vector<double> mx(n, 0.0), my(n, 0.0);
    for (size_t k = 0; k < xs.size(); ++k)
      for (size_t i = 0; i < n; ++i) { mx[i] += xs[k][i] / xs.size(); my[i] += ys[k][i] / ys.size(); }
    double xy = 0, xx = 0, yy = 0;
    for (size_t k = 0; k < xs.size(); ++k)
      for (size_t i = 0; i < n; ++i) {
        double u = xs[k][i] - mx[i], v = ys[k][i] - my[i];
        xy += u * v;
        xx += u * u;
        yy += v * v;
      }
    a.centered_cos = (xx > 0 && yy > 0) ? xy / std::sqrt(xx * yy) : 0.0;
  }
  return a;
}

}  // namespace opennpu::quant
