// Model: import -> passes -> CPU executor (NPU partitioning joins here later).
#include <fmt/format.h>

#include "core/parallel.h"
#include "cpu/executor.h"
#include "ir/passes.h"
#include "onnx/importer.h"
#include "opennpu/runtime.h"
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

void optimize_graph(ir::Model& m) {
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
  ir::fold_constants(m.graph, eval);
  ir::fold_conv_batchnorm(m.graph);
  ir::remove_dead_nodes(m.graph);
}

Model Model::load(const std::string& path, const LoadOptions& opts) {
  auto impl = std::make_unique<Impl>();
  impl->opts = opts;
  set_num_threads(opts.threads);
  onnx_import::ImportOptions io;
  io.dims = opts.dims;
  impl->model = onnx_import::load_model(path, io);
  if (opts.optimize) optimize_graph(impl->model);
  for (const auto& v : impl->model.graph.inputs)
    if (!impl->model.graph.is_initializer(v.name)) impl->inputs.push_back(info_of(v));
  for (const auto& v : impl->model.graph.outputs) impl->outputs.push_back(info_of(v));
  impl->cpu = std::make_unique<cpu::Executor>(impl->model);
  return Model(std::move(impl));
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

NamedTensors Model::predict(const NamedTensors& inputs) const { return impl_->cpu->run(inputs); }
const std::vector<TensorInfo>& Model::inputs() const { return impl_->inputs; }
const std::vector<TensorInfo>& Model::outputs() const { return impl_->outputs; }

}  // namespace opennpu
