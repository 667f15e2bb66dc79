// profile: one prediction of a model on a simulated NPU (CPU fallback segments measured), written
// as a Chrome trace (Perfetto) and a self-contained HTML report. The report logic lives in
// runtime/report.h; this file only parses flags, makes inputs and writes files.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <unordered_map>
#include <iostream>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/npy.h"
#include "core/parallel.h"
#include "cpu/executor.h"
#include "runtime/model_impl.h"
#include "opennpu/runtime.h"
#include "runtime/report.h"
#include "tools/cli_util.h"
#include "tools/commands.h"

using json = nlohmann::json;
using namespace opennpu;

namespace {



void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  if (!f) throw Error(fmt::format("cannot write '{}'", path));
  f << text;
  f.close();
  if (!f) throw Error(fmt::format("error while writing '{}'", path));
}

std::string base_name(const std::string& path) {
  auto p = path.find_last_of('/');
  return p == std::string::npos ? path : path.substr(p + 1);
}

// --device cpu: the median over `runs` predictions of every node's time, with the
// implementation that ran it; grouped by op as well.
template <class O>
void profile_cpu(const O& o) {
  LoadOptions lo;
  lo.threads = o.threads;
  lo.dims = parse_dims(o.dims);
  Model m = Model::load(o.model, lo);
  NamedTensors feeds = make_inputs(m, o.inputs, o.seed);
  const auto& im = m.impl();
  std::unordered_map<const ir::Node*, std::vector<double>> times;
  cpu::RunOptions ro;
  ro.on_node = [&times](const ir::Node& n, double s) { times[&n].push_back(s); };
  cpu::Executor ex(im.model, ro);
  for (int i = 0; i < o.warmup; ++i) ex.run(feeds);
  times.clear();
  const int runs = 5;
  std::vector<double> totals;
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    ex.run(feeds);
    totals.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  auto median = [](std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  auto impls = ex.implementations();
  struct Row { std::string node, op, impl, why; double ms; };
  std::vector<Row> rows;
  std::map<std::string, std::pair<double, int>> by_op;
  double sum_nodes = 0;
  const auto& nodes = ex.executed_model().graph.nodes;
  for (size_t i = 0; i < nodes.size(); ++i) {
    double ms = median(times[&nodes[i]]) * 1e3;
    rows.push_back({impls[i].node, impls[i].op, impls[i].impl, impls[i].why_not_fast, ms});
    auto& b = by_op[impls[i].op + " [" + impls[i].impl + "]"];
    b.first += ms;
    b.second++;
    sum_nodes += ms;
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.ms > b.ms; });
  const double total_ms = median(totals) * 1e3;
  json j = {{"model", o.model}, {"device", "cpu"}, {"threads", num_threads()}, {"runs", runs},
            {"median_ms", total_ms}, {"nodes_ms", sum_nodes}, {"nodes", json::array()}, {"ops", json::array()},
            {"passes", json::array()}};
  for (const auto& [name, n] : ex.passes_applied()) j["passes"].push_back({{"pass", name}, {"rewrites", n}});
  for (const auto& r : rows)
    j["nodes"].push_back({{"node", r.node}, {"op", r.op}, {"impl", r.impl}, {"ms", r.ms}, {"why_not_fast", r.why}});
  std::vector<std::pair<std::string, std::pair<double, int>>> ops(by_op.begin(), by_op.end());
  std::sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  for (const auto& [op, v] : ops) j["ops"].push_back({{"op", op}, {"ms", v.first}, {"count", v.second}});
  if (o.json_out) { std::cout << j.dump(2) << "\n"; return; }
  std::cout << fmt::format("{} on the CPU, {} threads: median {:.3f} ms per prediction over {} runs ({:.3f} ms inside nodes)\n",
                           o.model, num_threads(), total_ms, runs, sum_nodes);
  for (const auto& [name, n] : ex.passes_applied()) if (n) std::cout << fmt::format("  pass {}: {} rewrites\n", name, n);
  std::cout << fmt::format("\n{:<44} {:>9} {:>6} {:>6}\n", "op [implementation]", "ms", "%", "nodes");
  for (const auto& [op, v] : ops)
    std::cout << fmt::format("{:<44} {:>9.3f} {:>5.1f}% {:>6}\n", op, v.first, sum_nodes > 0 ? 100 * v.first / sum_nodes : 0.0, v.second);
  std::cout << fmt::format("\n{:<40} {:<24} {:<22} {:>9}\n", "node (slowest first)", "op", "implementation", "ms");
  for (size_t i = 0; i < rows.size() && static_cast<int>(i) < o.top; ++i)
    std::cout << fmt::format("{:<40} {:<24} {:<22} {:>9.3f}{}\n", rows[i].node.substr(0, 40), rows[i].op.substr(0, 24),
                             rows[i].impl.substr(0, 22), rows[i].ms, rows[i].why.empty() ? "" : "  (" + rows[i].why + ")");
}

}  // namespace

void add_profile_commands(CLI::App& app) {
  struct Opts {
    std::string model, hw = "ane_m1", trace, html;
    std::vector<std::string> dims, inputs;
    int threads = 0, warmup = 1;
    uint64_t seed = 0;
    size_t max_rects = 20000;
    bool json_out = false;
    std::string device = "npu";
    int top = 25;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("profile",
                                 "Profile one prediction on a simulated NPU: Chrome trace (Perfetto) and a self-contained HTML report");
  cmd->add_option("model", o->model, "ONNX model file")->required();
  cmd->add_option("--hw", o->hw, "Hardware preset or TOML file (default ane_m1)");
  cmd->add_option("--trace", o->trace, "Write the Chrome trace-event JSON here (opens in Perfetto)");
  cmd->add_option("--html", o->html, "Write the HTML report here");
  cmd->add_option("--dim", o->dims, "Bind a symbolic dimension: NAME=VALUE; repeatable");
  cmd->add_option("--input,-i", o->inputs, "NAME=FILE.npy (others are seeded random)");
  cmd->add_option("--seed", o->seed, "Seed for generated inputs");
  cmd->add_option("--threads,-t", o->threads, "CPU threads for fallback segments (default: all cores)");
  cmd->add_option("--warmup", o->warmup, "Untimed predictions before the profiled one, so the CPU timings are not a cold start (default 1)")->check(CLI::Range(0, 1000));
  cmd->add_option("--max-rects", o->max_rects, "Most rectangles drawn in the HTML timeline (default 20000)")
      ->check(CLI::Range(static_cast<size_t>(100), static_cast<size_t>(1000000)));
  cmd->add_option("--device", o->device,
                  "npu: simulated NPU with measured CPU fallback (default); cpu: time every node on the CPU backend, "
                  "with the kernel that ran it (fast or reference)")
      ->check(CLI::IsMember({"cpu", "npu"}));
  cmd->add_option("--top", o->top, "--device cpu: nodes listed, slowest first (default 25)")->check(CLI::Range(0, 100000));
  cmd->add_flag("--json", o->json_out, "Print the summary as one JSON object");
  cmd->callback([o] {
    if (o->device == "cpu") { profile_cpu(*o); throw CommandDone{0}; }
    LoadOptions lo;
    lo.compute_units = ComputeUnits::all;
    lo.hardware = o->hw;
    lo.threads = o->threads;
    lo.dims = parse_dims(o->dims);
    Model m = Model::load(o->model, lo);
    NamedTensors feeds = make_inputs(m, o->inputs, o->seed);
    report::CpuTimes cpu = report::time_cpu_segments(m, feeds, o->warmup);
    report::Profile p = report::build_profile(m, cpu, base_name(o->model));
    if (!o->trace.empty()) write_file(o->trace, report::chrome_trace(p).dump() + "\n");
    if (!o->html.empty()) write_file(o->html, report::html_report(p, o->max_rects));

    json s = report::summary_json(p);
    s["trace"] = o->trace;
    s["html"] = o->html;
    if (o->json_out) {
      std::cout << s.dump(2) << "\n";
      throw CommandDone{0};
    }
    const auto& t = p.timing;
    std::cout << fmt::format("{} on {}: simulated latency {:.3f} ms (NPU {:.3f} + dispatch {:.3f} + transfers {:.3f} + CPU {:.3f} measured)\n",
                             p.model_name, p.hw->name, t.total_seconds() * 1e3, t.npu_seconds * 1e3, t.dispatch_seconds * 1e3,
                             t.boundary_seconds * 1e3, t.cpu_seconds * 1e3);
    std::cout << fmt::format("energy {:.4f} mJ, MAC utilization {:.1f}%, DRAM {:.2f} MB, {}/{} nodes on the NPU\n",
                             t.energy.total_pj() * 1e-9, 100 * t.mac_utilization, (t.dram_read + t.dram_write) / 1e6, p.nodes_on_npu,
                             p.rows.size());
    if (!o->trace.empty()) std::cout << "trace: " << o->trace << "\n";
    if (!o->html.empty()) std::cout << "html:  " << o->html << "\n";
    if (o->trace.empty() && o->html.empty()) std::cout << "(give --trace FILE and/or --html FILE to write the reports)\n";
    throw CommandDone{0};
  });
}
