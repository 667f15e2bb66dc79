// npu/sim/simulator.h — executes an npu::Program: values (functional) and time (timing).
//
// Functional: every stored tensor is FP16 (values held in float, always exactly representable in
// FP16, rounded to nearest-even at every store); MAC tasks accumulate their K range in the
// declared accumulator precision in ascending k order, so results do not depend on tiling or on
// the number of threads; LUT activations go through the LUT model (lut.h). The simulator has its
// own numerics and never calls CPU kernels.
// Timing: an event-driven simulation of the same tasks: per core a DMA-in and a DMA-out engine,
// a MAC array and a vector unit, each serving one task at a time in order of readiness; all DMA
// shares the DRAM bandwidth (requests served in time order), plus DRAM latency per transfer.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "npu/arch/hardware.h"
#include "npu/compiler/program.h"

namespace opennpu::npu {

// ---- functional ----
// Values of NPU buffers by IR value name: float32 tensors whose values are FP16-exact.
using ValueMap = std::map<std::string, Tensor>;

// Runs the layers of one NPU segment. `values` must hold every non-constant input the segment
// reads (any float dtype; rounded to FP16 on entry); the segment's outputs are added to it as
// float32 tensors holding FP16 values.
void run_segment(const Program& p, const Segment& s, const HardwareConfig& hw, ValueMap& values);

// ---- timing ----
struct TaskTime {
  int64_t start = 0, end = 0;  // cycles
};

struct LayerStats {
  int64_t start = 0, end = 0;              // cycles (first task start, last task end)
  int64_t attributed = 0;                  // cycles this layer adds to the run (sums to the total)
  int64_t mac_busy = 0, vec_busy = 0, dma_busy = 0;
  int64_t macs = 0;
  int64_t dram_read = 0, dram_write = 0, sram_bytes = 0;
  int64_t cache_read = 0, cache_write = 0; // served by the system-level cache instead of DRAM
  int64_t stall_memory = 0;                // compute engines waiting for DMA
  double energy_pj = 0;
};

struct EnergyBreakdown {
  double mac_pj = 0, sram_pj = 0, dram_pj = 0, static_pj = 0;
  double total_pj() const { return mac_pj + sram_pj + dram_pj + static_pj; }
};

struct TimingResult {
  int64_t cycles = 0;                      // NPU busy span of all segments (no overheads)
  double npu_seconds = 0;                  // cycles / clock
  double dispatch_seconds = 0;             // per-prediction (+ per extra segment) dispatch
  double boundary_seconds = 0;             // DRAM round trips at CPU<->NPU switches
  double cpu_seconds = 0;                  // CPU segments (measured or estimated by the caller)
  double total_seconds() const { return npu_seconds + dispatch_seconds + boundary_seconds + cpu_seconds; }
  int64_t macs = 0;
  int64_t dram_read = 0, dram_write = 0;  // dram_write includes system-cache write-backs
  int64_t dram_writeback = 0;              // evictions of dirty activations from the system cache
  int64_t cache_bytes = 0;                 // traffic served by the system-level cache
  int64_t stall_memory = 0;                // summed over cores
  int64_t stall_dependency = 0;
  double mac_utilization = 0;              // macs / (cycles * cores * macs_per_cycle)
  EnergyBreakdown energy;
  std::vector<LayerStats> layers;          // per Program layer
  std::vector<int64_t> core_mac_busy, core_vec_busy, core_dma_busy;
  std::vector<TaskTime> tasks;             // per task (for traces)
};

TimingResult simulate_timing(const Program& p, const HardwareConfig& hw);

}  // namespace opennpu::npu
