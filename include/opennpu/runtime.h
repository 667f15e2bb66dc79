// opennpu/runtime.h — the user-facing API, shaped after Core ML: load a model once (import,
// optimise, partition between CPU and NPU, compile for the engine), then predict many times.
//
//   auto m = opennpu::Model::load("resnet50.onnx", {.compute_units = ComputeUnits::cpu_only});
//   auto out = m.predict({{"input", x}});
//
// predict() is safe to call from several threads on one Model.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "opennpu/tensor.h"

namespace opennpu {

enum class ComputeUnits { cpu_only, cpu_and_npu, all };

struct LoadOptions {
  ComputeUnits compute_units = ComputeUnits::cpu_only;
  std::string hardware;                  // preset name or path to a hardware TOML (NPU only)
  std::string cache_dir;                 // compiled-model cache ("" = default under $XDG_CACHE_HOME)
  int threads = 0;                       // 0 = all hardware threads
  std::map<std::string, int64_t> dims;   // binds symbolic input dims (--dim NAME=VALUE)
  bool optimize = true;                  // run graph passes (constant folding, Conv+BN, dead code)
  // Bad-input guards (docs/security.md). A Loop stops with an error after this many iterations
  // (--max-loop-iterations). max_memory caps any single tensor, in bytes, weights and intermediate
  // values alike (--max-memory); it sets the process-wide limit (set_max_tensor_bytes), and 0
  // leaves that limit as it is (16 GiB unless changed).
  int64_t max_loop_iterations = 1'000'000;
  uint64_t max_memory = 0;
  // Called as load() moves through its stages ("import", "optimize", "compile", "cache"), with
  // the seconds elapsed since load() began; the CLI draws its progress line from it.
  std::function<void(const std::string& stage, double elapsed_s)> progress;
};

struct TensorInfo {
  std::string name;
  DType dtype = DType::Undefined;
  std::vector<int64_t> shape;            // -1 for unknown / symbolic
  std::vector<std::string> dim_names;    // symbol per dim ("" when static)
  std::string describe() const;
};

using NamedTensors = std::map<std::string, Tensor>;

// One node of the compute plan: where it runs, why, and (NPU) its simulated share of the time.
struct PlanEntry {
  std::string node, op;
  std::string device;                     // "npu" or "cpu"
  std::vector<std::string> could_run_on;  // devices able to take it, preferred first
  std::string reason;                     // why it is not on the NPU ("" when it is)
  std::string layer_kind;                 // NPU layer: "mac", "vector", "dma", "view" ("" = none)
  std::string fused_into;                 // activation fused into this MAC node ("" = not fused)
  int64_t macs = 0, dram_bytes = 0;       // NPU layer statistics (0 otherwise)
  double est_ms = 0;                      // simulated NPU time of its layer (CPU nodes: 0, not timed)
  double share = 0;                       // est_ms / simulated total latency
  double energy_share = 0;                // layer energy / simulated total energy
};

class Model {
 public:
  static Model load(const std::string& path, const LoadOptions& opts = {});
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  NamedTensors predict(const NamedTensors& inputs) const;
  const std::vector<TensorInfo>& inputs() const;
  const std::vector<TensorInfo>& outputs() const;
  // Per node, in graph order. A cpu_only model puts every node on the CPU (reason says so).
  std::vector<PlanEntry> plan() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }
  // plan() from a model's internals (for tools that hold only the Impl).
  static std::vector<PlanEntry> plan_of(const Impl& impl);

 private:
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace opennpu
