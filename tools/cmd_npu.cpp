// NPU commands: hardware presets and single-GEMM simulation.
//   opennpu hw list [--json]
//   opennpu hw show NAME|FILE [--json]
//   opennpu sim gemm --hw HW --m M --k K --n N [--dataflow ws|os|is] [--fidelity pe|tile] [--seed S] [--json]
// With --json each prints exactly one JSON object on stdout.
#include <cfloat>
#include <cmath>
#include <iostream>
#include <random>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "npu/arch/hardware.h"
#include "npu/sim/gemm_pe.h"
#include "npu/sim/gemm_tile.h"
#include "opennpu/errors.h"
#include "tools/commands.h"

using json = nlohmann::json;
using namespace opennpu;
using namespace opennpu::npu;

namespace {

std::string mib(int64_t bytes) { return fmt::format("{:.3g} MiB", static_cast<double>(bytes) / (1 << 20)); }

json derived_json(const HardwareConfig& h) {
  return {{"peak_tflops_fp16", h.peak_tflops_fp16()},
          {"peak_tops_int8", h.peak_tops_int8()},
          {"bytes_per_flop", h.bytes_per_flop()},
          {"hash", h.hash_hex()}};
}

json hw_json(const HardwareConfig& h) {
  json j;
  j["name"] = h.name;
  j["description"] = h.description;
  j["file"] = h.source_file;
  j["cores"] = h.cores;
  j["clock_ghz"] = h.clock_ghz;
  j["dispatch_overhead_us"] = h.dispatch_overhead_us;
  j["core"] = {
      {"mac_array",
       {{"rows", h.mac.rows},
        {"cols", h.mac.cols},
        {"dataflow", dataflow_name(h.mac.dataflow)},
        {"accumulator", accum_name(h.mac.accumulator)},
        {"macs_per_cycle", {{"fp16", h.mac.macs_per_cycle_fp16}, {"int8", h.mac.macs_per_cycle_int8}}}}},
      {"vector", {{"lanes", h.vector.lanes}, {"lut_activations", h.vector.lut_activations}}},
      {"sram",
       {{"bytes", h.sram.bytes},
        {"banks", h.sram.banks},
        {"bandwidth_bytes_per_cycle", h.sram.bandwidth_bytes_per_cycle},
        {"kernel_buffer_bytes", h.sram.kernel_buffer_bytes}}}};
  j["memory"] = {{"dram_bandwidth_gbps", h.memory.dram_bandwidth_gbps},
                 {"dram_latency_ns", h.memory.dram_latency_ns},
                 {"system_cache_bytes", h.memory.system_cache_bytes},
                 {"system_cache_bandwidth_gbps", h.memory.system_cache_bytes_per_second() / 1e9},
                 {"row_alignment_bytes", h.memory.row_alignment_bytes}};
  j["support"] = {{"ops", h.ops}, {"dtypes", h.dtypes}};
  j["energy"] = {{"pj_per_mac_fp16", h.energy.pj_per_mac_fp16},
                 {"pj_per_mac_int8", h.energy.pj_per_mac_int8},
                 {"pj_per_sram_byte", h.energy.pj_per_sram_byte},
                 {"pj_per_dram_byte", h.energy.pj_per_dram_byte},
                 {"static_power_mw", h.energy.static_power_mw}};
  j["derived"] = derived_json(h);
  return j;
}

int cmd_hw_list(bool as_json) {
  std::vector<HardwareConfig> hws;
  for (const auto& name : list_presets()) hws.push_back(HardwareConfig::resolve(name));
  if (as_json) {
    json j = {{"hw_dir", hw_dir()}, {"presets", json::array()}};
    for (const auto& h : hws)
      j["presets"].push_back({{"name", h.name},
                              {"cores", h.cores},
                              {"array", {{"rows", h.mac.rows}, {"cols", h.mac.cols}}},
                              {"dataflow", dataflow_name(h.mac.dataflow)},
                              {"clock_ghz", h.clock_ghz},
                              {"peak_tflops_fp16", h.peak_tflops_fp16()},
                              {"peak_tops_int8", h.peak_tops_int8()},
                              {"dram_bandwidth_gbps", h.memory.dram_bandwidth_gbps},
                              {"sram_bytes_per_core", h.sram.bytes},
                              {"description", h.description}});
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{:<16} {:>5} {:>11} {:>9} {:>11} {:>9} {:>9} {:>10}\n", "name", "cores", "array",
                           "clock GHz", "FP16 TFLOPS", "INT8 TOPS", "DRAM GB/s", "SRAM/core");
  for (const auto& h : hws) {
    std::string arr = fmt::format("{}x{} {}", h.mac.rows, h.mac.cols, dataflow_name(h.mac.dataflow));
    std::string int8 = h.peak_ops_int8() > 0 ? fmt::format("{:.2f}", h.peak_tops_int8()) : "-";
    std::cout << fmt::format("{:<16} {:>5} {:>11} {:>9.3f} {:>11.2f} {:>9} {:>9.2f} {:>10}\n", h.name, h.cores, arr,
                             h.clock_ghz, h.peak_tflops_fp16(), int8, h.memory.dram_bandwidth_gbps, mib(h.sram.bytes));
  }
  return 0;
}

int cmd_hw_show(const std::string& what, bool as_json) {
  HardwareConfig h = HardwareConfig::resolve(what);
  if (as_json) {
    std::cout << hw_json(h).dump(2) << "\n";
    return 0;
  }
  auto line = [](const std::string& k, const std::string& v) { std::cout << fmt::format("{:<36} {}\n", k, v); };
  line("name", h.name);
  line("description", h.description);
  line("file", h.source_file);
  line("cores", std::to_string(h.cores));
  line("clock_ghz", fmt::format("{}", h.clock_ghz));
  line("dispatch_overhead_us", fmt::format("{}", h.dispatch_overhead_us));
  line("core.mac_array", fmt::format("{}x{} {}, accumulator {}", h.mac.rows, h.mac.cols, dataflow_name(h.mac.dataflow),
                                     accum_name(h.mac.accumulator)));
  line("core.mac_array.macs_per_cycle", fmt::format("fp16 {}, int8 {}", h.mac.macs_per_cycle_fp16,
                                                    h.mac.macs_per_cycle_int8));
  line("core.vector.lanes", std::to_string(h.vector.lanes));
  line("core.vector.lut_activations", fmt::format("{}", fmt::join(h.vector.lut_activations, " ")));
  line("core.sram.bytes", fmt::format("{} ({})", h.sram.bytes, mib(h.sram.bytes)));
  line("core.sram.banks", std::to_string(h.sram.banks));
  line("core.sram.bandwidth_bytes_per_cycle", std::to_string(h.sram.bandwidth_bytes_per_cycle));
  line("core.sram.kernel_buffer_bytes", std::to_string(h.sram.kernel_buffer_bytes));
  line("memory.dram_bandwidth_gbps", fmt::format("{}", h.memory.dram_bandwidth_gbps));
  line("memory.dram_latency_ns", fmt::format("{}", h.memory.dram_latency_ns));
  line("memory.system_cache_bytes",
       h.memory.system_cache_bytes ? fmt::format("{} ({})", h.memory.system_cache_bytes, mib(h.memory.system_cache_bytes))
                                   : "none");
  line("memory.system_cache_bandwidth_gbps",
       h.memory.system_cache_bandwidth_gbps > 0 ? fmt::format("{}", h.memory.system_cache_bandwidth_gbps)
                                                : fmt::format("unset (2x DRAM = {} GB/s)", h.memory.system_cache_bytes_per_second() / 1e9));
  line("memory.row_alignment_bytes", std::to_string(h.memory.row_alignment_bytes));
  line("support.dtypes", fmt::format("{}", fmt::join(h.dtypes, " ")));
  line("support.ops", fmt::format("{} ops: {}", h.ops.size(), fmt::join(h.ops, " ")));
  line("energy.pj_per_mac_fp16", fmt::format("{}", h.energy.pj_per_mac_fp16));
  line("energy.pj_per_mac_int8", fmt::format("{}", h.energy.pj_per_mac_int8));
  line("energy.pj_per_sram_byte", fmt::format("{}", h.energy.pj_per_sram_byte));
  line("energy.pj_per_dram_byte", fmt::format("{}", h.energy.pj_per_dram_byte));
  line("energy.static_power_mw", fmt::format("{}", h.energy.static_power_mw));
  line("derived.peak_tflops_fp16", fmt::format("{:.3f}", h.peak_tflops_fp16()));
  line("derived.peak_tops_int8", h.peak_ops_int8() > 0 ? fmt::format("{:.3f}", h.peak_tops_int8()) : "- (no INT8 compute)");
  line("derived.bytes_per_flop", fmt::format("{:.5f}", h.bytes_per_flop()));
  line("derived.hash", h.hash_hex());
  return 0;
}

struct GemmArgs {
  std::string hw;
  int64_t m = 0, k = 0, n = 0;
  std::string dataflow, fidelity = "pe";
  uint64_t seed = 1;
  bool as_json = false;
};

// Uniform values in [-1, 1) from the top 24 bits of a 64-bit Mersenne Twister: the same numbers on
// every platform (std::uniform_real_distribution is not specified bit for bit).
std::vector<float> random_matrix(std::mt19937_64& rng, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<float>(static_cast<double>(rng() >> 40) / 8388608.0 - 1.0);
  return v;
}

int cmd_sim_gemm(const GemmArgs& a) {
  HardwareConfig h = HardwareConfig::resolve(a.hw);
  Dataflow df = h.mac.dataflow;
  if (!a.dataflow.empty()) df = *parse_dataflow(a.dataflow);  // CLI11 has checked the value
  const int64_t R = h.mac.rows, C = h.mac.cols;
  GemmTileCost tile = gemm_tile_cost(a.m, a.k, a.n, R, C, df);  // also validates the sizes
  const int64_t formula = scale_sim_formula_cycles(a.m, a.k, a.n, R, C, df);

  json j;
  j["hw"] = h.name;
  j["m"] = a.m;
  j["k"] = a.k;
  j["n"] = a.n;
  j["array"] = {{"rows", R}, {"cols", C}};
  j["dataflow"] = dataflow_name(df);
  j["fidelity"] = a.fidelity;
  j["mapping"] = {{"s_r", tile.map.s_r}, {"s_c", tile.map.s_c}, {"t", tile.map.t}};
  j["formula_cycles"] = formula;
  j["cycles_per_fold"] = tile.cycles_per_fold;

  if (a.fidelity == "pe") {
    const double work = gemm_pe_work(a.m, a.k, a.n, R, C, df);
    if (work > 2e10)
      throw Error(fmt::format("GEMM {}x{}x{} needs ~{:.2g} PE updates at PE level: too slow; use --fidelity tile", a.m,
                              a.k, a.n, work));
    const double elems = static_cast<double>(a.m) * a.k + static_cast<double>(a.k) * a.n + static_cast<double>(a.m) * a.n;
    if (elems > double(int64_t{1} << 28))
      throw Error(fmt::format("GEMM {}x{}x{} operands are too large for the PE-level check", a.m, a.k, a.n));
    std::mt19937_64 rng(a.seed);
    std::vector<float> A = random_matrix(rng, a.m * a.k), B = random_matrix(rng, a.k * a.n);
    GemmPeResult r = simulate_gemm_pe(A.data(), B.data(), a.m, a.k, a.n, R, C, df);
    // Check the product against a plain triple loop in double. Summing K fp32 products in fp32 is
    // off by at most about K * eps * sum|a*b| (recursive summation bound); allow that.
    double max_err = 0, max_excess = -INFINITY;
    bool ok = true;
    for (int64_t i = 0; i < a.m; ++i)
      for (int64_t jn = 0; jn < a.n; ++jn) {
        double ref = 0, mag = 0;
        for (int64_t kk = 0; kk < a.k; ++kk) {
          double p = static_cast<double>(A[i * a.k + kk]) * B[kk * a.n + jn];
          ref += p;
          mag += std::fabs(p);
        }
        double err = std::fabs(static_cast<double>(r.c[i * a.n + jn]) - ref);
        double tol = static_cast<double>(a.k + 1) * FLT_EPSILON * mag + 1e-30;
        max_err = std::max(max_err, err);
        max_excess = std::max(max_excess, err / tol);
        if (!(err <= tol)) ok = false;
      }
    j["cycles"] = r.cycles;
    j["compute_cycles"] = r.compute_cycles;
    j["stall_cycles"] = r.stall_cycles;
    j["folds"] = r.folds;
    j["fill_cycles"] = r.fill_cycles;
    j["useful_macs"] = r.useful_macs;
    j["result_ok"] = ok;
    j["max_abs_error"] = max_err;
    j["max_error_over_tolerance"] = max_excess;
    j["seed"] = a.seed;
    j["matches_tile"] = r.compute_cycles == tile.compute_cycles && r.folds == tile.folds;
  } else {
    j["cycles"] = tile.compute_cycles;
    j["compute_cycles"] = tile.compute_cycles;
    j["stall_cycles"] = 0;
    j["folds"] = tile.folds;
    j["fill_cycles"] = tile.fill_cycles_per_fold * tile.folds;
    j["useful_macs"] = tile.useful_macs;
    j["result_ok"] = nullptr;  // the tile level computes time, not values
  }
  const int64_t cycles = j["cycles"].get<int64_t>();
  j["utilization"] = static_cast<double>(tile.useful_macs) / (static_cast<double>(cycles) * R * C);
  j["time_us"] = static_cast<double>(cycles) / (h.clock_ghz * 1e3);
  j["matches_formula"] = cycles == formula;

  if (a.as_json) {
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << fmt::format("GEMM {}x{}x{} (MxKxN) on {} core: {}x{} array, {} dataflow, {} level\n", a.m, a.k, a.n,
                             h.name, R, C, dataflow_name(df), a.fidelity);
    std::cout << fmt::format("  cycles          {} (compute {}, stall {})\n", cycles, j["compute_cycles"].get<int64_t>(),
                             j["stall_cycles"].get<int64_t>());
    std::cout << fmt::format("  formula cycles  {} ({})\n", formula, cycles == formula ? "equal" : "DIFFERENT");
    std::cout << fmt::format("  folds           {} x {} cycles\n", j["folds"].get<int64_t>(), tile.cycles_per_fold);
    std::cout << fmt::format("  utilization     {:.1f}%\n", 100 * j["utilization"].get<double>());
    std::cout << fmt::format("  time            {:.3f} us at {} GHz\n", j["time_us"].get<double>(), h.clock_ghz);
    if (a.fidelity == "pe")
      std::cout << fmt::format("  result          {} (max abs error {:.3g})\n",
                               j["result_ok"].get<bool>() ? "ok" : "WRONG", j["max_abs_error"].get<double>());
  }
  if (a.fidelity == "pe" && !j["result_ok"].get<bool>()) return 1;
  return cycles == formula ? 0 : 1;
}

}  // namespace

void add_npu_commands(CLI::App& app) {
  // State shared with the callbacks: CLI11 keeps references, so it must outlive parse().
  static bool as_json = false;
  static std::string show_what;
  static GemmArgs gemm;

  auto* hw = app.add_subcommand("hw", "Hardware presets: list them or show every resolved value");
  hw->require_subcommand(1);
  auto* list = hw->add_subcommand("list", "Table of the hardware presets with their derived peaks");
  list->add_flag("--json", as_json, "Print one JSON object");
  list->callback([] { throw CommandDone{cmd_hw_list(as_json)}; });
  auto* show = hw->add_subcommand("show", "Every resolved value of a preset or .toml file, plus derived figures");
  show->add_option("hw", show_what, "Preset name or path to a .toml file")->required();
  show->add_flag("--json", as_json, "Print one JSON object");
  show->callback([] { throw CommandDone{cmd_hw_show(show_what, as_json)}; });

  auto* sim = app.add_subcommand("sim", "Simulate one operation on one NPU core");
  sim->require_subcommand(1);
  auto* g = sim->add_subcommand("gemm", "C[M,N] = A[M,K] * B[K,N] on one MAC array (PE level or tile level)");
  g->add_option("--hw", gemm.hw, "Preset name or path to a .toml file")->required();
  g->add_option("--m", gemm.m, "M: rows of A and C")->required()->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  g->add_option("--k", gemm.k, "K: the reduction dimension")->required()->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  g->add_option("--n", gemm.n, "N: columns of B and C")->required()->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  g->add_option("--dataflow", gemm.dataflow, "ws|os|is (default: the hardware's)")->check(CLI::IsMember({"ws", "os", "is"}));
  g->add_option("--fidelity", gemm.fidelity, "pe (cycle by cycle, checks values) or tile (analytical)")
      ->check(CLI::IsMember({"pe", "tile"}));
  g->add_option("--seed", gemm.seed, "Seed of the random inputs (default 1)");
  g->add_flag("--json", gemm.as_json, "Print one JSON object");
  g->callback([] { throw CommandDone{cmd_sim_gemm(gemm)}; });
}
