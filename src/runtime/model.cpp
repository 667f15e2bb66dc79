// Model: import -> passes -> CPU executor (NPU partitioning joins here later).
#include <chrono>

#include <fmt/format.h>

#include "core/parallel.h"
#include "cpu/executor.h"
#include "ir/passes.h"
#include "npu/compiler/compiler.h"
#include "onnx/importer.h"
#include "opennpu/runtime.h"
#include "runtime/cache.h"
#include "runtime/model_impl.h"

namespace opennpu {

std::string TensorInfo::describe() const {
  std::string s = fmt::format("{} [", dtype_name(dtype));
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ",";
    s += shape[i] >= 0 ? std::to_string(shape[i]) : (dim_names[i].empty() ? "?" : dim_names[i]);
  }
  return s + "]";
}

namespace {
TensorInfo info_of(const ir::ValueInfo& v) {
  TensorInfo t;
  t.name = v.name;
  t.dtype = v.dtype;
  for (const auto& d : v.dims) { t.shape.push_back(d.value); t.dim_names.push_back(d.param); }
  return t;
}
}  // namespace

void propagate_shapes(ir::Model& m);

void optimize_graph(ir::Model& m, bool need_static_shapes) {
  ir::NodeEvaluator eval = [&m](const ir::Node& n, const std::vector<const Tensor*>& ins) {
    int64_t opset = m.opset(n.domain);
    const cpu::KernelDef* k = cpu::registry().find(n.domain, n.op_type, opset);
    if (!k) throw Error("no kernel");
    cpu::KernelContext ctx(n, ins, opset, [](const ir::Graph&, const std::vector<Tensor>&) -> std::vector<Tensor> {
      throw Error("no subgraphs in constant folding");
    });
    k->fn(ctx);
    return ctx.outputs();
  };
  ir::fuse_qdq(m);  // QDQ -> QLinearConv/QLinearMatMul/QGemm; before folding, which would eat DQ(weights)
  // Shape folding exposes more constants, whose folding may expose more static shapes: repeat.
  for (int round = 0; round < 8; ++round) {
    int changes = ir::fold_shapes(m.graph) + ir::fold_constants(m.graph, eval);
    if (!changes) break;
  }
  ir::fold_conv_batchnorm(m.graph);
  ir::remove_dead_nodes(m.graph);
  if (need_static_shapes) propagate_shapes(m);
}

// For a model whose inputs are all static, runs it once on zeros and records every value's
// dtype and shape in value_info (what ONNX's inference could not resolve). The NPU compiler
// needs static shapes; this is only done when some are missing.
void propagate_shapes(ir::Model& m) {
  auto& g = m.graph;
  bool missing = false;
  for (const auto& n : g.nodes)
    for (const auto& o : n.outputs) {
      if (o.empty()) continue;
      const ir::ValueInfo* vi = g.find_value_info(o);
      if (!vi || !vi->fully_static() || vi->dtype == DType::Undefined) missing = true;
    }
  if (!missing) return;
  NamedTensors feeds;
  for (const auto& in : g.inputs) {
    if (g.is_initializer(in.name)) continue;
    if (!in.fully_static() || in.kind != "tensor" || in.dtype == DType::Undefined || in.dtype == DType::String) return;
    feeds[in.name] = Tensor(in.dtype, in.static_shape());
  }
  cpu::RunOptions ro;
  ro.fast = false;  // every value of the ONNX graph must be observed
  ro.on_value = [&g](const std::string& name, const Tensor& t) {
    if (t.is_sequence() || t.is_none()) return;
    ir::ValueInfo vi;
    vi.name = name;
    vi.dtype = t.dtype();
    vi.has_shape = true;
    for (auto d : t.shape()) vi.dims.push_back(ir::Dim{d, ""});
    g.value_info[name] = vi;
  };
  try {
    cpu::Executor ex(m, ro);
    ex.run(feeds);
  } catch (const Error&) {
    // Shapes stay unknown: the nodes concerned stay on the CPU, with that reason.
  }
}

Model Model::load(const std::string& path, const LoadOptions& opts) {
  auto impl = std::make_unique<Impl>();
  impl->opts = opts;
  set_num_threads(opts.threads);
  if (opts.max_loop_iterations < 1) throw Error("max_loop_iterations must be at least 1");
  if (opts.max_memory) set_max_tensor_bytes(opts.max_memory);  // process-wide, like --max-memory
  const bool use_npu = opts.compute_units != ComputeUnits::cpu_only;
  if (use_npu) {
    if (opts.hardware.empty()) throw Error("compute units cpu_and_npu/all need a hardware description (--hw NAME|FILE)");
    impl->hw = std::make_unique<npu::HardwareConfig>(npu::HardwareConfig::resolve(opts.hardware));
  }
  // ---- compiled-model cache (runtime/cache.h): the optimised graph and the NPU Program ----
  cache::Lookup lk = cache::lookup(path, opts, use_npu ? impl->hw->hash() : 0, use_npu ? impl->hw->cores : 0);
  impl->cache_hit = lk.hit;
  impl->cache_file = lk.file;
  impl->cache_seconds = lk.seconds;
  if (lk.hit) {
    impl->model = std::move(lk.model);
    impl->program = std::move(lk.program);
  } else {
    onnx_import::ImportOptions io;
    io.dims = opts.dims;
    auto t_load = std::chrono::steady_clock::now();
    auto stage = [&](const char* name) {
      if (opts.progress) opts.progress(name, std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count());
    };
    stage("import");
    impl->model = onnx_import::load_model(path, io);
    stage("optimize");
    if (opts.optimize) optimize_graph(impl->model, use_npu);
    if (use_npu) stage("compile");
    if (use_npu) {
      auto t0 = std::chrono::steady_clock::now();
      impl->program = std::make_unique<npu::Program>(npu::compile(impl->model, *impl->hw));
      impl->compile_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    stage("cache");
    cache::store(lk, path, impl->model, impl->program.get());
  }
  // ---- end of compiled-model cache ----
  for (const auto& v : impl->model.graph.inputs)
    if (!impl->model.graph.is_initializer(v.name)) impl->inputs.push_back(info_of(v));
  for (const auto& v : impl->model.graph.outputs) impl->outputs.push_back(info_of(v));
  cpu::RunOptions run_opts;
  run_opts.max_loop_iterations = opts.max_loop_iterations;
  impl->cpu = std::make_unique<cpu::Executor>(impl->model, run_opts);
  if (use_npu) {
    auto t1 = std::chrono::steady_clock::now();
    impl->timing = npu::simulate_timing(*impl->program, *impl->hw);  // cheap: recomputed, not cached
    auto t2 = std::chrono::steady_clock::now();
    impl->sim_seconds = std::chrono::duration<double>(t2 - t1).count();
    for (const auto& seg : impl->program->segments) {
      if (seg.npu) { impl->cpu_segments.push_back(nullptr); continue; }
      auto cs = std::make_unique<CpuSegment>();
      cs->model.opsets = impl->model.opsets;
      cs->model.ir_version = impl->model.ir_version;
      cs->model.graph.name = "cpu_segment";
      for (int ni : seg.nodes) {
        const ir::Node& n = impl->model.graph.nodes[ni];
        cs->model.graph.nodes.push_back(n);
        for (const auto& o : n.outputs) if (!o.empty()) cs->outputs.push_back(o);
      }
      // Every value the segment computes may be read later by the host or an NPU segment:
      // declaring them as graph outputs keeps the CPU passes from fusing any of them away.
      for (const auto& o : cs->outputs) {
        ir::ValueInfo vi;
        vi.name = o;
        cs->model.graph.outputs.push_back(vi);
      }
      cs->exec = std::make_unique<cpu::Executor>(cs->model, run_opts);
      impl->cpu_segments.push_back(std::move(cs));
    }
  }
  return Model(std::move(impl));
}

NamedTensors Model::Impl::predict_partitioned(const NamedTensors& feeds) const {
  cpu::check_feeds(model.graph, feeds);
  npu::ValueMap values;
  for (const auto& [k, v] : model.graph.initializers) values[k] = v;
  for (const auto& [k, v] : feeds) values[k] = v;
  double cpu_s = 0;
  for (size_t si = 0; si < program->segments.size(); ++si) {
    const auto& seg = program->segments[si];
    if (seg.npu) {
      npu::run_segment(*program, seg, *hw, values);
      continue;
    }
    const CpuSegment& cs = *cpu_segments[si];
    auto c0 = std::chrono::steady_clock::now();
    cpu::Scope scope;
    for (const auto& [k, v] : values) scope.values.emplace(k, v);
    auto outs = cs.exec->run_graph(cs.model.graph, scope, cs.outputs);
    for (size_t i = 0; i < outs.size(); ++i) values[cs.outputs[i]] = outs[i];
    cpu_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
  }
  last_cpu_seconds = cpu_s;
  NamedTensors out;
  for (const auto& o : model.graph.outputs) {
    auto it = values.find(o.name);
    if (it == values.end()) throw Error("output '" + o.name + "' was not computed");
    out[o.name] = it->second;
  }
  return out;
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

NamedTensors Model::predict(const NamedTensors& inputs) const {
  if (impl_->uses_npu()) return impl_->predict_partitioned(inputs);
  return impl_->cpu->run(inputs);
}
const std::vector<TensorInfo>& Model::inputs() const { return impl_->inputs; }
const std::vector<TensorInfo>& Model::outputs() const { return impl_->outputs; }

}  // namespace opennpu
