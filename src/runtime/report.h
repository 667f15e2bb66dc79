// runtime/report.h — profiling reports of one model on one NPU description: a Chrome trace-event
// JSON (opens in Perfetto or chrome://tracing), a single self-contained HTML page (summary,
// sortable per-layer table, timeline, roofline, device placement) and a JSON summary for scripts.
//
// Everything is placed on one timeline first (build_profile), so the three outputs cannot
// disagree. Segments follow each other in segment order: an NPU segment is its dispatch overhead,
// its CPU<->NPU transfer, then its tasks at the times the timing simulation gave them, shifted by
// everything inserted before the segment (CPU segments, overheads); a CPU segment starts when all
// before it has ended and lasts the wall time measured by running one prediction with a per-node
// hook (time_cpu_segments). The simulator may start a later segment's independent tasks (weight
// loads) early; those keep their overlap. NPU times are simulated, CPU times are measured on this
// machine: the reports say which is which.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/model_impl.h"

namespace opennpu::report {

// Wall time of the CPU segments of one prediction of a partitioned model.
struct CpuTimes {
  std::vector<double> segment_seconds;                            // per Program segment (NPU: 0)
  std::vector<std::vector<std::pair<int, double>>> node_seconds;  // per segment: (graph node, s), run order
};

// Runs `warmup` untimed predictions, then one prediction with each CPU segment timed node by node
// (NPU segments run in the functional simulator; their time is the timing simulation's, not
// this wall time). The model must have been loaded for the NPU (Model::Impl::uses_npu()).
CpuTimes time_cpu_segments(const Model& m, const NamedTensors& feeds, int warmup = 0);

// One row per graph node, in graph order.
struct NodeRow {
  int node = -1;
  std::string name, op;
  std::string device;       // "npu" or "cpu"
  std::string kind;         // "mac", "vector", "dma", "view" (NPU layers), "fused", "cpu"
  std::string reason;       // why it is not on the NPU ("" when it is)
  std::string fused_into;   // name of the MAC node that absorbed this activation
  int layer = -1;           // Program layer (NPU rows that are not fused)
  int segment = -1;
  double t0 = 0, t1 = 0;    // seconds on the common timeline
  double attributed = 0;     // NPU: seconds of the simulated NPU time the simulator attributes to
                             // this layer (critical path; sums to the NPU time). CPU: t1 - t0
  int64_t macs = 0, flops = 0, dram_read = 0, dram_write = 0;
  int64_t cache_read = 0, cache_write = 0;  // served by the system-level cache instead of DRAM
  int64_t stall_memory = 0;  // cycles compute engines waited for DMA in this layer
  double energy_pj = 0;
  bool timed = false;        // has a duration (NPU layer with tasks, or a measured CPU node)
};

// A stretch of the timeline that is not an NPU task: CPU segments, dispatch, transfers.
struct Span {
  std::string name, detail;
  double t0 = 0, t1 = 0;
  int segment = -1;
};

// The whole prediction on one timeline. Holds pointers into the Model: do not outlive it.
struct Profile {
  std::string model_name;
  const npu::HardwareConfig* hw = nullptr;
  const npu::Program* program = nullptr;
  const ir::Model* graph = nullptr;
  npu::TimingResult timing;        // the simulation's result, cpu_seconds set from the measurement
  double clock_hz = 0;
  std::vector<NodeRow> rows;       // per graph node
  std::vector<int> layer_row;      // per Program layer: its row
  std::vector<double> task_t0, task_t1;  // per Program task: seconds on the timeline (-1 = not placed)
  std::vector<Span> cpu_spans;     // one per CPU segment
  std::vector<Span> overheads;     // dispatch and CPU<->NPU transfers
  double timeline_seconds = 0;     // end of the last segment
  int64_t flops_npu = 0, flops_cpu = 0;  // CPU: Conv/Gemm/MatMul/RNN only (an estimate)
  int nodes_on_npu = 0;
};

Profile build_profile(const Model& m, const CpuTimes& cpu, const std::string& model_name);

// Chrome trace-event JSON: processes "model" (tracks "layers", "runtime"), "CPU" (track "CPU")
// and one per NPU core (tracks "MAC array", "vector unit", "DMA in", "DMA out"); "ph":"X" events
// with timestamps in microseconds, and metadata events naming processes and threads.
nlohmann::json chrome_trace(const Profile& p);

// The self-contained HTML report (no network resources: styles, script and SVG are inline).
// Timelines with more than `max_rects` rectangles after merging neighbours are cut (and say so).
std::string html_report(const Profile& p, size_t max_rects = 20000);

// The summary figures of the HTML report, for scripts.
nlohmann::json summary_json(const Profile& p);

// Escapes &, <, >, " and ' for HTML text and attribute values.
std::string html_escape(const std::string& s);

// The HTML page of `bench A --compare B --compare-html FILE` (runtime/report_compare.cpp), built
// from the JSON object that command prints: accuracy, then latency/energy/size side by side.
std::string compare_html(const nlohmann::json& compare);

}  // namespace opennpu::report
