// cpu/fast/fast.h — fast kernels: prepared once at load, run many times.
//
// The reference kernels (cpu/kernels/) are stateless functions: simple, obviously correct, the
// oracle. A fast kernel may instead keep state built once when the Executor is constructed: a
// oneDNN primitive, weights re-laid-out for the machine's vector width, a packed GEMM operand.
// For every node, the Executor asks the fast kernels registered for its op, in order, to
// prepare(); the first that returns a kernel runs that node; if all decline (nullptr, with a
// reason for `why`), the reference kernel runs it. A fast kernel must give the reference
// kernel's results within the tolerance its test states (tests/cpu/test_fast_*), for every
// input it accepts; it may decline any case it does not handle (dtype, attribute, dynamic
// weights...). run() is const and must be thread-safe: several predictions may run at once.
//
// CPU features are checked at run time (cpu_features()), never assumed at compile time: code
// for AVX-512 lives in functions with __attribute__((target(...))) or target_clones, or in
// oneDNN, which dispatches itself.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "cpu/kernel.h"
#include "ir/graph.h"

namespace opennpu::cpu {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512vnni = false, avx512bf16 = false;
};
const CpuFeatures& cpu_features();

// What a fast kernel may look at when it prepares a node.
class PrepareContext {
 public:
  PrepareContext(const ir::Model& model, const ir::Graph& graph, const ir::Node& node)
      : model_(model), graph_(graph), node_(node) {}
  const ir::Node& node() const { return node_; }
  const ir::Graph& graph() const { return graph_; }
  int64_t opset() const { return model_.opset(node_.domain == "ai.onnx" ? "" : node_.domain); }
  // The value of input i when it is an initializer of this graph (a constant weight), else null.
  const Tensor* constant(size_t i) const;
  // Declared dtype/shape of input i or output i (null when unknown). Shapes may be symbolic:
  // kernels that need concrete sizes build what depends on them at the first run (and cache it
  // per shape, thread-safely), or decline.
  const ir::ValueInfo* input_info(size_t i) const;
  const ir::ValueInfo* output_info(size_t i) const;
  // Attribute helpers: the node's own (same type checks and defaults as the reference kernels).
  int64_t attr_i(const std::string& name, int64_t def) const { return node_.attr_i(name, def); }
  float attr_f(const std::string& name, float def) const { return node_.attr_f(name, def); }
  std::string attr_s(const std::string& name, const std::string& def) const { return node_.attr_s(name, def); }
  std::vector<int64_t> attr_ints(const std::string& name) const { return node_.attr_ints(name); }
  bool has_attr(const std::string& name) const { return node_.has_attr(name); }

 private:
  const ir::Model& model_;
  const ir::Graph& graph_;
  const ir::Node& node_;
};

class PreparedKernel {
 public:
  virtual ~PreparedKernel() = default;
  // Computes the node's outputs (same contract as a reference kernel: ctx.alloc_output ...).
  virtual void run(KernelContext& ctx) const = 0;
  // Short name for profiles and `opennpu plan --device cpu` ("onednn_conv_avx512").
  virtual std::string name() const = 0;
  // Bytes of state this kernel holds beyond the model (packed weights), for memory reports.
  virtual size_t state_bytes() const { return 0; }
};

// Returns a prepared kernel, or nullptr and a reason in *why when it does not handle this node.
using PrepareFn = std::unique_ptr<PreparedKernel> (*)(const PrepareContext&, std::string* why);

struct FastKernelDef {
  std::string op;
  std::string domain;  // "" = ai.onnx; kCpuDomain for the CPU backend's own fused ops
  std::string name;    // for docs and errors
  PrepareFn prepare = nullptr;
};

// Domain of the fused ops that only the CPU backend's graph passes create (cpu/fast/fuse.h).
inline constexpr const char* kCpuDomain = "opennpu.cpu";

class FastRegistry {
 public:
  void add(FastKernelDef def) { defs_.push_back(std::move(def)); }
  // Tries each fast kernel for the node's op in registration order; nullptr when all decline
  // (their reasons are appended to *why, "; "-separated).
  std::unique_ptr<PreparedKernel> prepare(const PrepareContext& pc, std::string* why) const;
  const std::vector<FastKernelDef>& all() const { return defs_; }

 private:
  std::vector<FastKernelDef> defs_;
};

const FastRegistry& fast_registry();

// Helpers shared by the fast-kernel files.
// The reference kernel of pc's node (what a fast kernel falls back to), or null.
const KernelDef* reference_of(const PrepareContext& pc);
// True for oneDNN's names of its reference implementations ("ref:any", ...): far slower than
// opennpu's own reference kernels' callers expect, so fast kernels decline them.
bool is_reference_impl(const char* impl);
// Begin/end padding and output extent of one spatial dim (input in, kernel k, stride s, dilation
// d), as ONNX Conv and pooling define them for auto_pad NOTSET (pb/pe given), VALID, SAME_UPPER and
// SAME_LOWER. False for another auto_pad or when no output position fits.
bool spatial(const std::string& auto_pad, int64_t in, int64_t k, int64_t s, int64_t d, int64_t& pb, int64_t& pe,
             int64_t& out);

// One registration function per fast-kernel file (see fast.cpp for the list).
void register_fast_conv(FastRegistry& r);
void register_fast_matmul(FastRegistry& r);
void register_fast_rnn(FastRegistry& r);
void register_fast_elementwise(FastRegistry& r);
void register_fast_transformer(FastRegistry& r);

}  // namespace opennpu::cpu
