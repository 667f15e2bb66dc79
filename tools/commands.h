// tools/commands.h — how CLI subcommands are wired. Each command file adds its subcommands to
// the app; a subcommand's callback does its work and throws CommandDone{exit code} (or an
// opennpu::Error, which main prints as one line and turns into exit code 1).
#pragma once
#include <CLI/CLI.hpp>
#include <map>
#include <string>

struct CommandDone {
  int rc = 0;
};

// tools/cmd_npu.cpp: hw list/show, sim gemm.
void add_npu_commands(CLI::App& app);
// tools/cmd_model.cpp: plan, bench.
void add_model_commands(CLI::App& app);
// tools/cmd_model.cpp: ops (generated op list).
void add_ops_command(CLI::App& app);
// tools/cmd_profile.cpp: profile (Chrome trace + HTML report).
void add_profile_commands(CLI::App& app);
// tools/cmd_explore.cpp: explore (design-space sweeps).
void add_explore_command(CLI::App& app);
// tools/cmd_quantize.cpp: quantize (post-training int8, QDQ ONNX).
void add_quantize_command(CLI::App& app);
// tools/cmd_quantize.cpp: bench MODEL --compare OTHER (fp32 vs quantized side by side).
struct BenchCompareArgs {
  std::string model, compare, hw, device;
  std::map<std::string, int64_t> dims;
  int threads = 0, runs = 20, warmup = 3, compare_samples = 8;
  uint64_t seed = 0;
  bool json_out = false;
  std::string html;  // --compare-html FILE
};
void bench_compare(const BenchCompareArgs& a);
