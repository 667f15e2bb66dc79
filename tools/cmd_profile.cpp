// profile: one prediction of a model on a simulated NPU (CPU fallback segments measured), written
// as a Chrome trace (Perfetto) and a self-contained HTML report. The report logic lives in
// runtime/report.h; this file only parses flags, makes inputs and writes files.
#include <fstream>
#include <iostream>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/npy.h"
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

}  // namespace

void add_profile_commands(CLI::App& app) {
  struct Opts {
    std::string model, hw = "ane_m1", trace, html;
    std::vector<std::string> dims, inputs;
    int threads = 0, warmup = 1;
    uint64_t seed = 0;
    size_t max_rects = 20000;
    bool json_out = false;
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
  cmd->add_flag("--json", o->json_out, "Print the summary as one JSON object");
  cmd->callback([o] {
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
