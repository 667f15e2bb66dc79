// runtime/model_impl.h — what a loaded Model holds (internal; tools and tests may read it).
#pragma once
#include <memory>
#include <vector>

#include "cpu/executor.h"
#include "ir/graph.h"
#include "opennpu/runtime.h"

namespace opennpu {

struct Model::Impl {
  LoadOptions opts;
  ir::Model model;
  std::vector<TensorInfo> inputs, outputs;
  std::unique_ptr<cpu::Executor> cpu;
};

// The standard graph optimisation pipeline (constant folding, Conv+BN folding, dead code).
void optimize_graph(ir::Model& m);

}  // namespace opennpu
