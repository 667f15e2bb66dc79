// Design-space exploration (docs/explore.md).
//   opennpu explore SWEEP.toml --out DIR [--jobs N] [--plot] [--functional] [--models-dir D] [--json]
// Expands the sweep's grid, simulates every design x model (resuming from DIR/journal.csv), and
// writes DIR/results.csv, DIR/pareto.csv and DIR/summary.json; --plot adds PNG/SVG plots and
// DIR/explore.html (python/opennpu/plot.py, matplotlib). With --json prints one JSON object.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "explore/explore.h"
#include "opennpu/errors.h"
#include "tools/commands.h"

using json = nlohmann::json;
using namespace opennpu;
namespace fs = std::filesystem;

namespace {

struct ExploreArgs {
  std::string sweep, out, models_dir;
  int jobs = 0;
  bool plot = false, as_json = false, functional = false, no_reuse = false;
};

std::string hms(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  int v = static_cast<int>(s + 0.5);
  return v >= 3600 ? fmt::format("{}h{:02d}m", v / 3600, v / 60 % 60) : v >= 60 ? fmt::format("{}m{:02d}s", v / 60, v % 60)
                                                                                : fmt::format("{}s", v);
}

// The plot script: $OPENNPU_PYTHON_DIR, else the source tree's python/ compiled in.
std::string plot_script() {
  std::string dir;
  if (const char* e = std::getenv("OPENNPU_PYTHON_DIR"); e && *e) dir = e;
#ifdef OPENNPU_SOURCE_PYTHON_DIR
  else dir = OPENNPU_SOURCE_PYTHON_DIR;
#endif
  fs::path p = fs::path(dir) / "opennpu" / "plot.py";
  std::error_code ec;
  if (dir.empty() || !fs::is_regular_file(p, ec))
    throw Error(fmt::format("--plot: cannot find opennpu/plot.py (looked in '{}'; set OPENNPU_PYTHON_DIR to the python/ folder)", dir));
  return p.string();
}

int cmd_explore(const ExploreArgs& a) {
  explore::Sweep s = explore::Sweep::load(a.sweep, a.models_dir);
  if (a.functional) s.functional = true;
  explore::Expansion e = explore::expand(s);
  const std::string plot = a.plot ? plot_script() : "";  // fail before hours of simulation, not after

  const bool tty = !a.as_json && isatty(STDERR_FILENO);
  auto t0 = std::chrono::steady_clock::now();
  int64_t first = -1;
  double last_draw = -1;
  explore::RunOptions ro;
  ro.jobs = a.jobs > 0 ? a.jobs : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ro.reuse = !a.no_reuse;
  ro.progress = [&](int64_t done, int64_t total) {
    if (!tty) return;
    double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (first < 0) first = done;  // rows resumed from the journal do not count for the rate
    if (done != total && el - last_draw < 0.2) return;
    last_draw = el;
    const int width = 30;
    int fill = total ? static_cast<int>(width * done / total) : width;
    double rate = el > 0 ? (done - first) / el : 0;
    std::string eta = rate > 0 ? hms((total - done) / rate) : "?";
    std::fprintf(stderr, "\r\033[K[%s%s] %lld/%lld rows  %.1f rows/s  ETA %s", std::string(fill, '#').c_str(),
                 std::string(width - fill, ' ').c_str(), static_cast<long long>(done), static_cast<long long>(total), rate,
                 eta.c_str());
    std::fflush(stderr);
  };
  explore::RunStats st = explore::run_sweep(s, e, a.out, ro);
  if (tty) std::fprintf(stderr, "\r\033[K");

  json j;
  j["sweep"] = s.name;
  j["out"] = a.out;
  j["fidelity"] = s.functional ? "functional" : "timing";
  j["grid_size"] = e.grid_size;
  j["points"] = st.summary.points;
  j["models"] = json::array();
  for (const auto& m : s.models) j["models"].push_back(m.name);
  j["rows"] = st.rows;
  j["resumed_rows"] = st.resumed;
  j["ran_rows"] = st.ran;
  j["compiles"] = st.compiles;
  j["jobs"] = ro.jobs;
  j["seconds"] = st.seconds;
  j["rows_per_second"] = st.seconds > 0 ? st.ran / st.seconds : 0;
  j["points_per_second"] = st.seconds > 0 ? st.ran / st.seconds / static_cast<double>(s.models.size()) : 0;
  j["pareto_rows"] = st.summary.pareto_rows;
  j["results"] = (fs::path(a.out) / "results.csv").string();
  j["pareto"] = (fs::path(a.out) / "pareto.csv").string();
  if (a.plot) {
    std::string cmd = fmt::format("/usr/bin/python3 '{}' '{}'{}", plot, a.out, a.as_json ? " --quiet" : "");
    std::cout.flush();
    int rc = std::system(cmd.c_str());
    if (rc != 0) throw Error(fmt::format("--plot: {} failed (exit {}); is python3-matplotlib installed?", plot, rc));
    j["html"] = (fs::path(a.out) / "explore.html").string();
  }
  if (a.as_json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{}: {} design points ({} in the grid) x {} models = {} rows\n", s.name, st.summary.points,
                           e.grid_size, s.models.size(), st.rows);
  std::cout << fmt::format("  ran {} rows in {:.1f} s ({:.1f} points/s, {} compilations), {} resumed from the journal\n",
                           st.ran, st.seconds, j["points_per_second"].get<double>(), st.compiles, st.resumed);
  std::cout << fmt::format("  {} Pareto-optimal rows (latency, energy, area)\n", st.summary.pareto_rows);
  std::cout << fmt::format("  {}\n  {}\n", j["results"].get<std::string>(), j["pareto"].get<std::string>());
  if (a.plot) std::cout << fmt::format("  {}\n", j["html"].get<std::string>());
  return 0;
}

}  // namespace

void add_explore_command(CLI::App& app) {
  static ExploreArgs args;
  auto* c = app.add_subcommand("explore", "Design-space exploration: simulate a grid of NPU designs x models (docs/explore.md)");
  c->add_option("sweep", args.sweep, "Sweep file (TOML)")->required();
  c->add_option("--out,-o", args.out, "Output directory (results.csv, pareto.csv, summary.json; journal.csv to resume)")
      ->required();
  c->add_option("--jobs,-j", args.jobs, "Worker threads (default: all cores)")->check(CLI::Range(1, 1024));
  c->add_option("--models-dir", args.models_dir, "Where model names resolve (overrides the sweep's models_dir)");
  c->add_flag("--functional", args.functional, "Also simulate values and compare with the CPU backend (slow)");
  c->add_flag("--plot", args.plot, "Write plots (PNG, SVG) and DIR/explore.html (needs python3-matplotlib)");
  c->add_flag("--no-reuse", args.no_reuse, "Compile every design x model anew (checks that reuse changes nothing)");
  c->add_flag("--json", args.as_json, "Print one JSON object");
  c->callback([] { throw CommandDone{cmd_explore(args)}; });
}
