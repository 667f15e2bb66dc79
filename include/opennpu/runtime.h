// opennpu/runtime.h — the user-facing API, shaped after Core ML: load a model once (import,
// optimise, partition between CPU and NPU, compile for the engine), then predict many times.
//
//   auto m = opennpu::Model::load("resnet50.onnx", {.compute_units = ComputeUnits::cpu_only});
//   auto out = m.predict({{"input", x}});
//
// predict() is safe to call from several threads on one Model.
#pragma once
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
};

struct TensorInfo {
  std::string name;
  DType dtype = DType::Undefined;
  std::vector<int64_t> shape;            // -1 for unknown / symbolic
  std::vector<std::string> dim_names;    // symbol per dim ("" when static)
  std::string describe() const;
};

using NamedTensors = std::map<std::string, Tensor>;

class Model {
 public:
  static Model load(const std::string& path, const LoadOptions& opts = {});
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  NamedTensors predict(const NamedTensors& inputs) const;
  const std::vector<TensorInfo>& inputs() const;
  const std::vector<TensorInfo>& outputs() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace opennpu
