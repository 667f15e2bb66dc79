// Model-level commands: plan (where each node runs and why) and bench (CPU measured vs NPU
// simulated, side by side).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/npy.h"
#include "core/parallel.h"
#include "opennpu/runtime.h"
#include "runtime/model_impl.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tools/progress.h"

using json = nlohmann::json;
using namespace opennpu;

namespace {

// Per node: device, reason, simulated time (NPU) — the compute plan.
json plan_json(const Model::Impl& im) {
  json nodes = json::array();
  for (const PlanEntry& e : Model::plan_of(im)) {
    json j = {{"node", e.node}, {"op", e.op}, {"device", e.device}, {"could_run_on", e.could_run_on}, {"reason", e.reason}};
    if (!e.layer_kind.empty()) {
      j["layer_kind"] = e.layer_kind;
      j["macs"] = e.macs;
      j["dram_bytes"] = e.dram_bytes;
    } else if (!e.fused_into.empty()) {
      j["fused_into"] = e.fused_into;
    }
    j["est_ms"] = e.est_ms;
    j["share"] = e.share;
    j["energy_share"] = e.energy_share;
    nodes.push_back(j);
  }
  return nodes;
}

void print_plan(const json& nodes, const Model::Impl& im) {
  std::cout << fmt::format("{:<36} {:<20} {:<6} {:>10} {:>7}  {}\n", "node", "op", "device", "est ms", "%", "reason");
  for (const auto& n : nodes) {
    std::string name = n["node"];
    if (name.size() > 36) name = name.substr(0, 33) + "...";
    std::string reason = n["reason"];
    if (n.contains("fused_into")) reason = "fused into " + n["fused_into"].get<std::string>();
    std::cout << fmt::format("{:<36} {:<20} {:<6} {:>10.4f} {:>6.1f}%  {}\n", name, n["op"].get<std::string>(),
                             n["device"].get<std::string>(), n["est_ms"].get<double>(), 100 * n["share"].get<double>(), reason);
  }
}

}  // namespace

void add_model_commands(CLI::App& app) {
  struct Opts {
    std::string model, hw = "ane_m1";
    std::vector<std::string> dims, inputs;
    int threads = 0, runs = 20, warmup = 3;
    std::string device = "both";
    bool json_out = false;
    uint64_t seed = 0;
    std::string compare;      // bench --compare OTHER.onnx (tools/cmd_quantize.cpp)
    int compare_samples = 8;
    std::string compare_html;
  };
  auto o = std::make_shared<Opts>();

  auto* plan = app.add_subcommand("plan", "Show where each node runs (NPU or CPU), why, and its estimated time");
  plan->add_option("model", o->model, "ONNX model file")->required();
  plan->add_option("--hw", o->hw, "Hardware preset or TOML file (default ane_m1)");
  plan->add_option("--dim", o->dims, "Bind a symbolic dimension: NAME=VALUE");
  plan->add_flag("--json", o->json_out, "Print one JSON object");
  plan->callback([o] {
    LoadOptions lo;
    lo.compute_units = ComputeUnits::all;
    lo.hardware = o->hw;
    lo.dims = parse_dims(o->dims);
    Progress progress(!o->json_out);
    lo.progress = [&progress](const std::string& stage, double) { progress.stage(stage); };
    Model m = Model::load(o->model, lo);
    progress.done();
    const auto& im = m.impl();
    json nodes = plan_json(im);
    int on_npu = 0;
    for (const auto& p : im.program->placements) on_npu += p.npu;
    json j = {{"model", o->model}, {"hardware", im.hw->name}, {"nodes", nodes},
              {"summary", {{"nodes", im.program->placements.size()}, {"nodes_on_npu", on_npu},
                           {"segments", im.program->segments.size()},
                           {"npu_ms", im.timing.npu_seconds * 1e3}, {"dispatch_ms", im.timing.dispatch_seconds * 1e3},
                           {"boundary_ms", im.timing.boundary_seconds * 1e3}, {"total_ms", im.timing.total_seconds() * 1e3}}}};
    if (o->json_out) std::cout << j.dump(2) << "\n";
    else {
      print_plan(nodes, im);
      std::cout << fmt::format("\n{}/{} nodes on the NPU in {} segments; simulated NPU {:.3f} ms + dispatch {:.3f} ms + "
                               "CPU/NPU switches {:.3f} ms (CPU nodes not timed by plan; see bench)\n",
                               on_npu, im.program->placements.size(), im.program->segments.size(), im.timing.npu_seconds * 1e3,
                               im.timing.dispatch_seconds * 1e3, im.timing.boundary_seconds * 1e3);
    }
    throw CommandDone{0};
  });

  auto* bench = app.add_subcommand("bench", "CPU (measured here) vs NPU (simulated) on one model, side by side");
  bench->add_option("model", o->model, "ONNX model file")->required();
  bench->add_option("--hw", o->hw, "Hardware preset or TOML file (default ane_m1)");
  bench->add_option("--threads,-t", o->threads, "CPU threads (default: all cores)");
  bench->add_option("--runs,-r", o->runs, "Timed predictions (default 20)");
  bench->add_option("--warmup", o->warmup, "Untimed predictions after the first (default 3)");
  bench->add_option("--dim", o->dims, "Bind a symbolic dimension: NAME=VALUE");
  bench->add_option("--input,-i", o->inputs, "NAME=FILE.npy (others are seeded random)");
  bench->add_option("--seed", o->seed, "Seed for generated inputs");
  bench->add_option("--device", o->device, "cpu: measure the CPU only; both: CPU measured and NPU simulated (default both)")
      ->check(CLI::IsMember({"cpu", "both"}));
  bench->add_flag("--json", o->json_out, "Print one JSON object");
  bench->add_option("--compare", o->compare, "A second model (e.g. its int8 quantization) shown side by side: accuracy, latency, energy, size");
  bench->add_option("--compare-samples", o->compare_samples, "--compare: seeded inputs for the accuracy figures (default 8)");
  bench->add_option("--compare-html", o->compare_html, "--compare: also write the side-by-side HTML page here");
  bench->callback([o] {
    if (!o->compare.empty()) {
      bench_compare({o->model, o->compare, o->hw, o->device, parse_dims(o->dims), o->threads, o->runs, o->warmup,
                     o->compare_samples, o->seed, o->json_out, o->compare_html});
      throw CommandDone{0};
    }
    if (o->runs < 1) throw Error("--runs must be at least 1");
    LoadOptions lo;
    lo.threads = o->threads;
    lo.dims = parse_dims(o->dims);
    Progress progress(!o->json_out);
    lo.progress = [&progress](const std::string& stage, double) { progress.stage("CPU: " + stage); };
    double t0 = now_s();
    Model cpu = Model::load(o->model, lo);
    double cpu_load = now_s() - t0;
    NamedTensors feeds = make_inputs(cpu, o->inputs, o->seed);
    progress.stage("CPU: timing predictions");
    LatencyDist cd = time_runs(cpu, feeds, o->runs, o->warmup);
    json cpu_j = {{"load_ms", cpu_load * 1e3}, {"first_ms", cd.first * 1e3}, {"median_ms", cd.median * 1e3},
                  {"p90_ms", cd.p90 * 1e3}, {"min_ms", cd.min * 1e3}, {"threads", num_threads()}};
    if (o->device == "cpu") {
      progress.done();
      json j = {{"model", o->model}, {"device", "cpu"}, {"threads", o->threads}, {"runs", o->runs}, {"cpu", cpu_j}};
      if (o->json_out) { std::cout << j.dump(2) << "\n"; throw CommandDone{0}; }
      std::cout << fmt::format("{} on the CPU ({} threads, {} runs after {} warm-up)\n", o->model, num_threads(), o->runs, o->warmup);
      std::cout << fmt::format("  load {:.1f} ms, first {:.3f} ms, median {:.3f} ms, p90 {:.3f} ms, min {:.3f} ms\n", cpu_load * 1e3,
                               cd.first * 1e3, cd.median * 1e3, cd.p90 * 1e3, cd.min * 1e3);
      throw CommandDone{0};
    }

    lo.compute_units = ComputeUnits::all;
    lo.hardware = o->hw;
    lo.progress = [&progress](const std::string& stage, double) { progress.stage("NPU: " + stage); };
    t0 = now_s();
    Model npu = Model::load(o->model, lo);
    double npu_load = now_s() - t0;
    const auto& im = npu.impl();
    // CPU segments of the partitioned model are timed by running them (one functional run).
    progress.stage("NPU: functional simulation");
    double t1 = now_s();
    npu.predict(feeds);
    double functional_s = now_s() - t1;
    progress.done();
    const auto& t = im.timing;
    int on_npu = 0;
    for (const auto& p : im.program->placements) on_npu += p.npu;
    int64_t flops_npu = 0;
    for (const auto& L : im.program->layers) flops_npu += L.flops;
    // CPU segments of the partitioned model run here; their measured time is part of the latency.
    const double cpu_seg_s = im.last_cpu_seconds;
    double npu_ms = (t.total_seconds() + cpu_seg_s) * 1e3;
    json j = {
        {"model", o->model}, {"hardware", im.hw->name}, {"threads", o->threads}, {"runs", o->runs},
        {"device", "both"}, {"cpu", cpu_j},
        {"npu", {{"load_ms", npu_load * 1e3}, {"compile_ms", im.compile_seconds * 1e3},
                 {"timing_sim_ms", im.sim_seconds * 1e3}, {"functional_sim_ms", functional_s * 1e3},
                 {"timing_sim_cycles_per_second", im.sim_seconds > 0 ? static_cast<double>(t.cycles) / im.sim_seconds : 0.0},
                 {"functional_sim_cycles_per_second", functional_s > 0 ? static_cast<double>(t.cycles) / functional_s : 0.0},
                 {"latency_ms", npu_ms}, {"npu_ms", t.npu_seconds * 1e3}, {"dispatch_ms", t.dispatch_seconds * 1e3},
                 {"boundary_ms", t.boundary_seconds * 1e3}, {"cpu_segments_ms", cpu_seg_s * 1e3}, {"cycles", t.cycles},
                 {"energy_mj", t.energy.total_pj() * 1e-9},
                 {"energy_breakdown_mj", {{"mac", t.energy.mac_pj * 1e-9}, {"sram", t.energy.sram_pj * 1e-9},
                                          {"dram", t.energy.dram_pj * 1e-9}, {"static", t.energy.static_pj * 1e-9}}},
                 {"mac_utilization", t.mac_utilization}, {"dram_mb", (t.dram_read + t.dram_write) / 1e6},
                 {"nodes_on_npu", on_npu}, {"nodes", im.program->placements.size()}, {"npu_gflops", flops_npu / 1e9}}},
        {"speedup_npu_over_cpu", npu_ms > 0 ? cd.median * 1e3 / npu_ms : 0.0}};
    if (o->json_out) { std::cout << j.dump(2) << "\n"; throw CommandDone{0}; }
    std::cout << fmt::format("{} on {} (CPU: {} threads, {} runs)\n\n", o->model, im.hw->name,
                             o->threads ? std::to_string(o->threads) : "all", o->runs);
    std::cout << fmt::format("{:<28} {:>14} {:>14}\n", "", "CPU (measured)", "NPU (simulated)");
    std::cout << fmt::format("{:<28} {:>14.1f} {:>14.1f}\n", "load / compile (ms)", cpu_load * 1e3, npu_load * 1e3);
    std::cout << fmt::format("{:<28} {:>14.3f} {:>14.3f}\n", "first prediction (ms)", cd.first * 1e3, npu_ms);
    std::cout << fmt::format("{:<28} {:>14.3f} {:>14.3f}\n", "median prediction (ms)", cd.median * 1e3, npu_ms);
    std::cout << fmt::format("{:<28} {:>14.3f} {:>14.3f}\n", "p90 prediction (ms)", cd.p90 * 1e3, npu_ms);
    std::cout << fmt::format("{:<28} {:>14} {:>14.3f}\n", "energy / prediction (mJ)", "-", t.energy.total_pj() * 1e-9);
    std::cout << fmt::format("{:<28} {:>14} {:>13.1f}%\n", "MAC utilization", "-", 100 * t.mac_utilization);
    std::cout << fmt::format("{:<28} {:>14} {:>14.1f}\n", "DRAM traffic (MB)", "-", (t.dram_read + t.dram_write) / 1e6);
    std::cout << fmt::format("{:<28} {:>14} {:>9}/{:<4}\n", "nodes on the NPU", "-", on_npu, im.program->placements.size());
    std::cout << fmt::format("\nNPU speedup over CPU: {:.1f}x\n", j["speedup_npu_over_cpu"].get<double>());
    throw CommandDone{0};
  });
}

// `opennpu ops`: the supported-op list, generated from the CPU kernel registry and the NPU
// compiler's lowering table (docs/ops.md is this command's --markdown output).
#include "cpu/kernel.h"
#include "npu/compiler/compiler.h"

void add_ops_command(CLI::App& app) {
  auto md = std::make_shared<bool>(false);
  auto js = std::make_shared<bool>(false);
  auto* ops = app.add_subcommand("ops", "List the ONNX ops this build supports, per backend");
  ops->add_flag("--markdown", *md, "Print docs/ops.md");
  ops->add_flag("--json", *js, "Print one JSON object");
  ops->callback([md, js] {
    std::map<std::string, std::string> npu;
    for (const auto& [op, unit] : npu::lowered_ops()) npu[op] = unit;
    struct Row { std::string domain, op, opsets, dtypes, npu; };
    std::map<std::pair<std::string, std::string>, Row> rows;
    for (const auto& d : cpu::registry().all()) {
      if (d.domain == "opennpu.cpu") continue;  // the CPU backend's internal fused ops (cpu/fast/fuse.h)
      auto key = std::make_pair(d.domain.empty() ? std::string("ai.onnx") : d.domain, d.op);
      auto& r = rows[key];
      r.domain = key.first;
      r.op = d.op;
      r.opsets += (r.opsets.empty() ? "" : ", ") + (d.since == d.until ? std::to_string(d.since)
                                                                          : fmt::format("{}-{}", d.since, d.until));
      if (r.dtypes.empty()) r.dtypes = d.dtypes;
      auto it = npu.find(d.op);
      r.npu = it == npu.end() || !d.domain.empty() ? "" : it->second;
    }
    if (*js) {
      json j = json::array();
      for (auto& [_, r] : rows)
        j.push_back({{"domain", r.domain}, {"op", r.op}, {"opsets", r.opsets}, {"dtypes", r.dtypes},
                     {"backends", r.npu.empty() ? json::array({"cpu"}) : json::array({"cpu", "npu"})},
                     {"npu_unit", r.npu}});
      std::cout << json({{"ops", j}}).dump(2) << "\n";
      throw CommandDone{0};
    }
    if (*md) {
      std::cout << "# Supported ONNX operators\n\n"
                << "Generated by `opennpu ops --markdown` from the CPU kernel registry and the NPU compiler's lowering "
                   "table; do not edit by hand (a test checks it is current). The CPU backend runs every op listed. "
                   "The NPU column names the engine unit the compiler lowers the op to; whether a given node goes "
                   "there also depends on the hardware preset's op list, dtypes, static shapes and attributes "
                   "(`opennpu plan` gives the reason for each node that stays on the CPU).\n\n"
                << fmt::format("{} operators.\n\n", rows.size())
                << "| op | domain | opsets | dtypes | NPU |\n|---|---|---|---|---|\n";
      for (auto& [_, r] : rows)
        std::cout << fmt::format("| {} | {} | {} | {} | {} |\n", r.op, r.domain, r.opsets, r.dtypes, r.npu.empty() ? "-" : r.npu);
      throw CommandDone{0};
    }
    for (auto& [_, r] : rows)
      std::cout << fmt::format("{:<32} {:<10} {:<14} {:<8} {}\n", r.op, r.domain, r.opsets, r.npu.empty() ? "cpu" : "cpu+npu", r.dtypes);
    throw CommandDone{0};
  });
}
