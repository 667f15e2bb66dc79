// Model::plan(): where each node runs, why, and its simulated share of the NPU time and energy.
// One implementation for the CLI (`opennpu plan`) and the Python module.
#include <map>
#include <string>

#include "opennpu/runtime.h"
#include "runtime/model_impl.h"

namespace opennpu {

namespace {

const char* layer_kind_name(npu::LayerKind k) {
  switch (k) {
    case npu::LayerKind::Gemm: return "mac";
    case npu::LayerKind::Vector: return "vector";
    case npu::LayerKind::Move: return "dma";
    case npu::LayerKind::Recurrent: return "recurrent";
    default: return "view";
  }
}

}  // namespace

std::vector<PlanEntry> Model::plan() const { return plan_of(*impl_); }

std::vector<PlanEntry> Model::plan_of(const Impl& im) {
  std::vector<PlanEntry> out;
  if (!im.uses_npu()) {
    // No partitioning happened: the whole graph runs on the CPU executor.
    for (const auto& n : im.model.graph.nodes) {
      PlanEntry e;
      e.node = n.name;
      e.op = n.op_type;
      e.device = "cpu";
      e.could_run_on = {"cpu"};
      e.reason = "compute units cpu_only";
      out.push_back(std::move(e));
    }
    return out;
  }

  const auto& p = *im.program;
  const auto& t = im.timing;
  // Node name -> its NPU layer.
  std::map<std::string, size_t> layer_of;
  for (size_t li = 0; li < p.layers.size(); ++li) layer_of[p.layers[li].name] = li;
  // A MAC layer with a fused activation absorbs the node right after it in graph order (the
  // compiler only fuses an activation that directly follows its producer).
  std::map<std::string, std::string> fused_into;
  const auto& nodes = im.model.graph.nodes;
  for (size_t i = 0; i + 1 < nodes.size(); ++i) {
    auto it = layer_of.find(nodes[i].name);
    if (it != layer_of.end() && !p.layers[it->second].fused.empty()) fused_into[nodes[i + 1].name] = nodes[i].name;
  }

  const double clock = im.hw->clock_ghz * 1e9;
  const double total_s = t.total_seconds();
  const double total_pj = t.energy.total_pj();
  for (const auto& pl : p.placements) {
    PlanEntry e;
    e.node = pl.node;
    e.op = pl.op;
    e.device = pl.npu ? "npu" : "cpu";
    e.could_run_on = pl.npu ? std::vector<std::string>{"npu", "cpu"} : std::vector<std::string>{"cpu"};
    e.reason = pl.reason;
    double sec = 0, energy = 0;
    auto it = layer_of.find(pl.node);
    if (it != layer_of.end() && it->second < t.layers.size()) {
      const auto& ls = t.layers[it->second];
      sec = static_cast<double>(ls.attributed) / clock;  // share of the critical path
      energy = ls.energy_pj;
      e.layer_kind = layer_kind_name(p.layers[it->second].kind);
      e.macs = ls.macs;
      e.dram_bytes = ls.dram_read + ls.dram_write;
    } else if (auto f = fused_into.find(pl.node); f != fused_into.end()) {
      e.fused_into = f->second;
    }
    e.est_ms = sec * 1e3;
    e.share = total_s > 0 ? sec / total_s : 0;
    e.energy_share = total_pj > 0 ? energy / total_pj : 0;
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace opennpu
