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

}  // namespace opennpu::cpu
