// tools/commands.h — how CLI subcommands are wired. Each command file adds its subcommands to
// the app; a subcommand's callback does its work and throws CommandDone{exit code} (or an
// opennpu::Error, which main prints as one line and turns into exit code 1).
#pragma once
#include <CLI/CLI.hpp>

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
