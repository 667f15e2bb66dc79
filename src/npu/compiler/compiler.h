// npu/compiler/compiler.h — lowering an ir::Model onto a neural engine.
//
// compile() asks, for every node, whether the engine can take it (op in the hardware's list,
// float dtypes, static shapes, supported attributes, fits SRAM when tiled); a refusal carries a
// reason. Consecutive accepted nodes form NPU segments, the rest stays on the CPU. Accepted nodes
// become Layers (activations fused into the preceding MAC layer) and are tiled into Tasks that fit
// each core's SRAM (double-buffered where it fits), spread over the cores (output channels for
// GEMMs with enough of them, otherwise output rows), with weights packed as FP16 and DMA sizes that
// include the engine's row alignment.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "ir/graph.h"
#include "npu/arch/hardware.h"
#include "npu/compiler/program.h"

namespace opennpu::npu {

struct CompileOptions {
  bool fuse_activations = true;
};

Program compile(const ir::Model& model, const HardwareConfig& hw, const CompileOptions& opts = {});

// ONNX ops this compiler can lower (subject to per-preset support and per-node checks), with the
// engine unit each goes to ("mac", "vector", "dma", "view").
std::vector<std::pair<std::string, std::string>> lowered_ops();

// The reason the engine declines `node` ("" when it takes it). Exposed for tests and `plan`.
std::string decline_reason(const ir::Model& model, const ir::Node& node, const HardwareConfig& hw);

}  // namespace opennpu::npu
