#include "cpu/fast/fuse.h"

#include "cpu/fast/conv.h"
#include "cpu/fast/quant.h"

namespace opennpu::cpu {

const std::vector<CpuPass>& cpu_passes() {
  static const std::vector<CpuPass> passes = [] {
    std::vector<CpuPass> p;
    add_conv_passes(p);
    add_conv_dw_passes(p);  // after conv_layout_nhwc (cpu/fast/conv_dw.cpp)
    add_transformer_passes(p);
    add_elementwise_passes(p);
    add_quant_passes(p);
    return p;
  }();
  return passes;
}

std::vector<std::pair<std::string, int>> optimize_for_cpu(ir::Model& m) {
  std::vector<std::pair<std::string, int>> done;
  for (const auto& p : cpu_passes()) done.emplace_back(p.name, p.run(m));
  return done;
}

int count_readers(const ir::Graph& g, const std::string& value) {
  int n = 0;
  for (const auto& node : g.nodes)
    for (const auto& r : ir::node_reads(node)) n += r == value;
  for (const auto& o : g.outputs) n += o.name == value;
  return n;
}

int producer_of(const ir::Graph& g, const std::string& value) {
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (const auto& o : g.nodes[i].outputs)
      if (o == value) return static_cast<int>(i);
  return -1;
}

void erase_dropped(std::vector<ir::Node>& nodes, const std::vector<bool>& drop) {
  std::vector<ir::Node> kept;
  kept.reserve(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i)
    if (!drop[i]) kept.push_back(std::move(nodes[i]));
  nodes = std::move(kept);
}

NhwcRewriter::NhwcRewriter(const ir::Graph& g, std::vector<ir::Node>& out, std::string tag)
    : out_(out), tag_(std::move(tag)) {
  for (const auto& n : g.nodes)
    for (const auto& o : n.outputs) taken_.insert(o);
  for (const auto& v : g.inputs) taken_.insert(v.name);
  for (const auto& [k, _] : g.initializers) taken_.insert(k);
}

std::string NhwcRewriter::fresh(const std::string& base) {
  std::string s = base;
  for (int k = 1; taken_.count(s); ++k) s = base + "_" + std::to_string(k);
  taken_.insert(s);
  return s;
}

void NhwcRewriter::transpose(const std::string& v, const std::string& in, const std::string& out, bool to_nhwc) {
  ir::Node t;
  t.name = fresh(v + "#" + tag_ + (to_nhwc ? "to_nhwc" : "to_nchw"));
  t.op_type = "Transpose";
  t.inputs = {in};
  t.outputs = {out};
  t.attrs["perm"].kind = ir::Attribute::Kind::Ints;
  t.attrs["perm"].ints = to_nhwc ? std::vector<int64_t>{0, 2, 3, 1} : std::vector<int64_t>{0, 3, 1, 2};
  out_.push_back(std::move(t));
}

std::string NhwcRewriter::want_nhwc(const std::string& v) {
  if (auto it = nhwc_of_.find(v); it != nhwc_of_.end()) return it->second;
  const std::string t = fresh(v + "#nhwc");
  transpose(v, v, t, true);
  nhwc_of_[v] = t;
  return t;
}

void NhwcRewriter::make_nhwc_output(ir::Node& n) {
  const std::string v = n.outputs[0];
  n.outputs[0] = fresh(v + "#nhwc");
  nhwc_of_[v] = n.outputs[0];
  nchw_missing_.insert(v);
}

void NhwcRewriter::need_nchw(const std::string& v) {
  if (!nchw_missing_.count(v)) return;
  transpose(v, nhwc_of_.at(v), v, false);
  nchw_missing_.erase(v);
}

}  // namespace opennpu::cpu
