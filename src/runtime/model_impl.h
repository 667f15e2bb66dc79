// runtime/model_impl.h — what a loaded Model holds (internal; tools and tests may read it).
#pragma once
#include <atomic>
#include <memory>
#include <vector>

#include "cpu/executor.h"
#include "ir/graph.h"
#include "npu/arch/hardware.h"
#include "npu/compiler/program.h"
#include "npu/sim/simulator.h"
#include "opennpu/runtime.h"

namespace opennpu {

// A run of CPU nodes, as a model of its own so the CPU executor can run just those nodes.
struct CpuSegment {
  ir::Model model;
  std::unique_ptr<cpu::Executor> exec;
  std::vector<std::string> outputs;
};

struct Model::Impl {
  LoadOptions opts;
  ir::Model model;
  std::vector<TensorInfo> inputs, outputs;
  std::unique_ptr<cpu::Executor> cpu;            // whole-graph CPU executor (cpu_only)
  // NPU (compute_units != cpu_only)
  std::unique_ptr<npu::HardwareConfig> hw;
  std::unique_ptr<npu::Program> program;
  npu::TimingResult timing;
  std::vector<std::unique_ptr<CpuSegment>> cpu_segments;  // parallel to program->segments (null for NPU ones)
  double load_seconds = 0, compile_seconds = 0, sim_seconds = 0;
  // Compiled-model cache (runtime/cache.h): whether load() was served from it, and its file.
  bool cache_hit = false;
  std::string cache_file;     // "" when the cache is disabled
  double cache_seconds = 0;   // hashing the model + reading the entry

  // Wall time of the CPU segments in the most recent partitioned predict (they are timed by
  // running them: part of the NPU-with-fallback latency).
  mutable std::atomic<double> last_cpu_seconds{0};

  bool uses_npu() const { return program != nullptr; }
  NamedTensors predict_partitioned(const NamedTensors& inputs) const;
};

// The standard graph optimisation pipeline (constant folding, Conv+BN folding, dead code).
// need_static_shapes: also resolve missing value shapes by one run on zeros (for the NPU).
void optimize_graph(ir::Model& m, bool need_static_shapes = false);

}  // namespace opennpu
