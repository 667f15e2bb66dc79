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
#include <unordered_map>
#include <unordered_set>
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
// Removes the nodes whose `drop` flag is set (drop has one flag per node), keeping the order.
void erase_dropped(std::vector<ir::Node>& nodes, const std::vector<bool>& drop);

// The bookkeeping of a pass that moves runs of nodes to NHWC (conv_layout_nhwc, the int8
// qconv_layout_nhwc): fresh value names, the NHWC copy of each value, and the Transposes at a
// run's edges, appended to `out` (the pass's new node list) as they are needed. Transposes are
// named <value>#<tag>to_nhwc / #<tag>to_nchw.
class NhwcRewriter {
 public:
  NhwcRewriter(const ir::Graph& g, std::vector<ir::Node>& out, std::string tag);
  // A name no value of the graph (or of this rewriter) has: base, or base_1, base_2, ...
  std::string fresh(const std::string& base);
  // The NHWC name of v, Transposing when v exists only in NCHW.
  std::string want_nhwc(const std::string& v);
  // n's first output becomes NHWC (its NCHW form exists only once need_nchw asks for it).
  void make_nhwc_output(ir::Node& n);
  // v is read in NCHW: Transposes its NHWC copy back if v exists only in NHWC.
  void need_nchw(const std::string& v);
  bool is_nhwc(const std::string& v) const { return nhwc_of_.count(v) != 0; }
  // The NHWC copy of v (is_nhwc(v) must hold).
  const std::string& nhwc(const std::string& v) const { return nhwc_of_.at(v); }

 private:
  void transpose(const std::string& v, const std::string& in, const std::string& out, bool to_nhwc);
  std::vector<ir::Node>& out_;
  std::string tag_;
  std::unordered_map<std::string, std::string> nhwc_of_;  // value -> its NHWC copy
  std::unordered_set<std::string> nchw_missing_;         // values that exist only as their NHWC copy
  std::unordered_set<std::string> taken_;
};

}  // namespace opennpu::cpu
