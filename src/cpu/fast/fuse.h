// cpu/fast/fuse.h — graph passes private to the CPU backend.
//
// The Executor runs these on its own copy of the model (sharing the initializers' buffers), so
// the NPU compiler and the plan still see the ONNX graph. A pass replaces a pattern of ONNX nodes
// with one node of domain kCpuDomain ("opennpu.cpu"), e.g. FusedConv = Conv + Add + Relu, whose
// reference kernel (registered in the normal Registry under that domain) is the plain
// composition, and whose fast kernel does it in one pass. A pass must only fuse when the result
// is unchanged up to the stated tolerance, keep the graph's outputs' names, and leave any value
// that another node (or a graph output) still reads. Each pass is a named function, tested on
// its own (tests/cpu/test_fuse_*) by running a graph with and without it.
#pragma once
#include <string>
#include <vector>

#include "ir/graph.h"

namespace opennpu::cpu {

struct CpuPass {
  std::string name;
  int (*run)(ir::Model& m);  // returns the number of rewrites
};

// Every CPU pass, in the order they run.
const std::vector<CpuPass>& cpu_passes();
// Runs cpu_passes() on m; returns {pass name, rewrites} for each.
std::vector<std::pair<std::string, int>> optimize_for_cpu(ir::Model& m);

// Registration, one per file that defines passes.
void add_conv_passes(std::vector<CpuPass>& p);
void add_transformer_passes(std::vector<CpuPass>& p);
void add_elementwise_passes(std::vector<CpuPass>& p);

// Helpers for pass writers: how many nodes read `value` (all graphs' outputs count as readers),
// and the node producing it (or -1).
int count_readers(const ir::Graph& g, const std::string& value);
int producer_of(const ir::Graph& g, const std::string& value);

}  // namespace opennpu::cpu
