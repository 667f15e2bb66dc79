// python/opennpu_py.cpp — the `opennpu` Python module: a thin pybind11 layer over the runtime API
// (include/opennpu/runtime.h). It converts between numpy arrays and Tensors and nothing else.
//
//   m = opennpu.Model("x.onnx", hardware="ane_m1", compute_units="all", threads=0, dims={"N": 1})
//   out = m.predict({"input": x})            # dict name -> numpy array
//   m.inputs, m.outputs, m.plan(), m.timing(), opennpu.hardware_presets(), opennpu.__version__
//
// Memory: a C-contiguous, aligned, native-endian input of the model's dtype is lent to the runtime
// without a copy (Tensor::borrow) while the call holds a reference to the array. Outputs are numpy
// arrays over the runtime's own buffers, kept alive by a capsule holding the Tensor — unless the
// buffer is not exclusively the caller's (it lies in the model's weights or constants, in a
// borrowed input, or in another output): then the output is a copy, so writing into one returned
// array can never change the model or another result. predict() releases the GIL; the runtime
// allows concurrent predictions on one Model.
#include <algorithm>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "core/half.h"
#include "core/parallel.h"
#include "explore/explore.h"
#include "npu/arch/hardware.h"
#include "opennpu/errors.h"
#include "opennpu/runtime.h"
#include "opennpu/tensor.h"
#include "runtime/model_impl.h"

namespace py = pybind11;
using namespace opennpu;

#ifndef OPENNPU_VERSION
#define OPENNPU_VERSION "0.0.0"
#endif

namespace {

ComputeUnits parse_compute_units(const std::string& s) {
  if (s == "all") return ComputeUnits::all;
  if (s == "cpu_only") return ComputeUnits::cpu_only;
  if (s == "cpu_and_npu") return ComputeUnits::cpu_and_npu;
  throw Error("compute_units must be 'all', 'cpu_only' or 'cpu_and_npu', not '" + s + "'");
}

const char* compute_units_name(ComputeUnits c) {
  switch (c) {
    case ComputeUnits::all: return "all";
    case ComputeUnits::cpu_and_npu: return "cpu_and_npu";
    default: return "cpu_only";
  }
}

// numpy dtype -> DType; Undefined when opennpu has no such element type (complex, datetime, ...).
// Strings ('U', 'S', object) map to String; their elements are checked when converted.
DType dtype_of(const py::dtype& dt) {
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  switch (kind) {
    case 'f':
      return size == 2 ? DType::Float16 : size == 4 ? DType::Float32 : size == 8 ? DType::Float64 : DType::Undefined;
    case 'i':
      return size == 1 ? DType::Int8 : size == 2 ? DType::Int16 : size == 4 ? DType::Int32 : size == 8 ? DType::Int64
                                                                                                     : DType::Undefined;
    case 'u':
      return size == 1 ? DType::UInt8 : size == 2 ? DType::UInt16 : size == 4 ? DType::UInt32 : size == 8 ? DType::UInt64
                                                                                                      : DType::Undefined;
    case 'b': return size == 1 ? DType::Bool : DType::Undefined;
    case 'U': case 'S': case 'O': return DType::String;
    default: return DType::Undefined;
  }
}

std::string py_dtype_str(const py::dtype& dt) { return py::str(static_cast<const py::handle&>(dt)).cast<std::string>(); }

Shape shape_of(const py::array& a) {
  Shape s;
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s.push_back(static_cast<int64_t>(a.shape(d)));
  return s;
}

// A model input as the graph declares it (kind: tensor / sequence / optional...).
const ir::ValueInfo* graph_input(const Model& m, const std::string& name) {
  for (const auto& v : m.impl().model.graph.inputs)
    if (v.name == name) return &v;
  return nullptr;
}

// Converts one array to a Tensor. `keep` receives every Python object whose memory the Tensor
// borrows; the caller holds them until the prediction is over. `want` is the model's dtype for
// this input (Undefined when unknown): a plain Python value (list, scalar) is converted to it, but
// an ndarray of another dtype is passed on as is, so the runtime reports the mismatch.
Tensor tensor_from_py(const std::string& name, const py::handle& value, DType want, std::vector<py::object>& keep) {
  py::array arr;
  if (py::isinstance<py::array>(value)) {
    arr = py::reinterpret_borrow<py::array>(value);
  } else {
    const bool typed = want != DType::Undefined && want != DType::String && want != DType::BFloat16;
    try {
      py::object asarray = py::module_::import("numpy").attr("asarray");
      arr = typed ? py::array(asarray(value, py::str(std::string(dtype_name(want))))) : py::array(asarray(value));
    } catch (py::error_already_set& e) {
      throw Error("input '" + name + "' cannot be converted to a numpy array" +
                  (typed ? " of " + std::string(dtype_name(want)) : std::string()) + ": " + e.what());
    }
  }
  DType dt = dtype_of(arr.dtype());
  const Shape shape = shape_of(arr);

  if (dt == DType::String) {
    if (want != DType::String && want != DType::Undefined)
      throw Error("input '" + name + "' is a numpy " + py_dtype_str(arr.dtype()) + " array; the model expects " +
                  std::string(dtype_name(want)));
    Tensor t(DType::String, shape);
    py::object flat = arr.attr("ravel")();
    auto& strs = t.strings();
    py::ssize_t i = 0;
    for (py::handle item : flat) {
      if (py::isinstance<py::str>(item)) strs[static_cast<size_t>(i)] = item.cast<std::string>();
      else if (py::isinstance<py::bytes>(item)) strs[static_cast<size_t>(i)] = item.cast<std::string>();
      else
        throw Error("input '" + name + "': element " + std::to_string(i) + " of an object array is not a str or bytes");
      ++i;
    }
    return t;
  }
  // numpy has no bfloat16: a float32 array for a bfloat16 input is rounded (nearest even).
  if (want == DType::BFloat16 && dt == DType::Float32) {
    Tensor t(DType::BFloat16, shape);
    py::array_t<float, py::array::c_style | py::array::forcecast> src(arr);
    const float* s = src.data();
    auto* d = t.data<uint16_t>();
    for (int64_t i = 0; i < t.numel(); ++i) d[i] = f32_to_bf16_bits(s[i]);
    return t;
  }
  if (dt == DType::Undefined)
    throw Error("input '" + name + "' has numpy dtype " + py_dtype_str(arr.dtype()) + ", which opennpu does not take");

  // Borrow when the memory is already laid out as a Tensor needs it; else one contiguous copy.
  const bool native = arr.dtype().attr("isnative").cast<bool>();
  const bool contiguous = (arr.flags() & py::array::c_style) != 0;
  const bool aligned = reinterpret_cast<uintptr_t>(arr.data()) % static_cast<uintptr_t>(arr.itemsize()) == 0;
  if (!native || !contiguous || !aligned) {
    py::object np = py::module_::import("numpy");
    py::object native_dt = arr.dtype().attr("newbyteorder")("=");
    arr = py::array(np.attr("ascontiguousarray")(arr, native_dt));
  }
  keep.push_back(arr);
  // The runtime never writes into its inputs; borrow() takes a non-const pointer for generality.
  return Tensor::borrow(dt, shape, const_cast<void*>(arr.data()));
}

// Feeds a model input: a tensor, a list (sequence input) or None (optional input).
Tensor feed_from_py(const Model& m, const std::string& name, const py::handle& value, std::vector<py::object>& keep) {
  const ir::ValueInfo* vi = graph_input(m, name);
  const DType want = vi ? vi->dtype : DType::Undefined;
  const std::string kind = vi ? vi->kind : "tensor";
  if (value.is_none()) {
    if (kind == "optional" || kind == "optional_sequence") return Tensor::make_none(kind == "optional_sequence");
    throw Error("input '" + name + "' is None, but it is not an optional input");
  }
  if ((kind == "sequence" || kind == "optional_sequence") && (py::isinstance<py::list>(value) || py::isinstance<py::tuple>(value))) {
    std::vector<Tensor> items;
    DType elem = want;
    size_t i = 0;
    for (py::handle item : value) {
      items.push_back(tensor_from_py(name + "[" + std::to_string(i++) + "]", item, want, keep));
      elem = items.back().dtype();
    }
    return Tensor::make_sequence(elem, std::move(items));
  }
  return tensor_from_py(name, value, want, keep);
}

// Address ranges of every buffer the model itself holds (initializers, tensor attributes such as
// Constant values, recursively into subgraphs): an output lying in one must be copied out.
using Range = std::pair<uintptr_t, uintptr_t>;  // [begin, end)

void add_range(std::vector<Range>& r, const Tensor& t) {
  if (t.is_sequence()) {
    for (const auto& x : t.sequence()) add_range(r, x);
    return;
  }
  if (t.dtype() == DType::String || t.dtype() == DType::Undefined || !t.raw()) return;
  auto b = reinterpret_cast<uintptr_t>(t.raw());
  r.emplace_back(b, b + std::max<size_t>(t.nbytes(), 1));
}

void collect_ranges(const ir::Graph& g, std::vector<Range>& r) {
  for (const auto& [_, t] : g.initializers) add_range(r, t);
  for (const auto& n : g.nodes)
    for (const auto& [_, a] : n.attrs) {
      add_range(r, a.t);
      for (const auto& t : a.tensors) add_range(r, t);
      if (a.g) collect_ranges(*a.g, r);
      for (const auto& sg : a.graphs)
        if (sg) collect_ranges(*sg, r);
    }
}

bool overlaps(const std::vector<Range>& ranges, uintptr_t b, uintptr_t e) {
  for (const auto& [rb, re] : ranges)
    if (b < re && rb < e) return true;
  return false;
}

py::object tensor_to_py(const Tensor& t, const std::vector<Range>& model_ranges, std::vector<Range>& handed_out) {
  if (t.is_none()) return py::none();
  if (t.is_sequence()) {
    py::list l;
    for (const auto& x : t.sequence()) l.append(tensor_to_py(x, model_ranges, handed_out));
    return l;
  }
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  if (t.dtype() == DType::String) {
    py::object out = py::module_::import("numpy").attr("empty")(py::tuple(py::cast(shape)), "object");
    py::object flat = out.attr("reshape")(-1);  // a view: filling it fills `out`
    const auto& strs = t.strings();
    for (size_t i = 0; i < strs.size(); ++i) flat[py::int_(i)] = py::str(strs[i]);
    return out;
  }
  if (t.dtype() == DType::BFloat16) {  // numpy has no bfloat16: widen to float32 (exact)
    py::array_t<float> out(shape);
    float* d = out.mutable_data();
    const auto* s = t.data<uint16_t>();
    for (int64_t i = 0; i < t.numel(); ++i) d[i] = bf16_bits_to_f32(s[i]);
    return out;
  }
  if (t.dtype() == DType::Undefined) throw Error("the model produced an output with no value");
  py::dtype dt(std::string(dtype_name(t.dtype())));
  const auto b = reinterpret_cast<uintptr_t>(t.raw());
  const auto e = b + std::max<size_t>(t.nbytes(), 1);
  const bool exclusive = t.owns_data() && t.raw() && !overlaps(model_ranges, b, e) && !overlaps(handed_out, b, e);
  if (!exclusive) {
    py::array out(dt, shape);  // owns fresh numpy memory
    if (t.nbytes()) std::memcpy(out.mutable_data(), t.raw(), t.nbytes());
    return out;
  }
  handed_out.emplace_back(b, e);
  auto* keep = new Tensor(t);  // shares the buffer; freed with the array
  py::capsule owner(keep, [](void* p) { delete static_cast<Tensor*>(p); });
  return py::array(dt, shape, {}, t.raw(), owner);
}

py::object shape_to_py(const TensorInfo& ti) {
  py::list s;
  for (size_t d = 0; d < ti.shape.size(); ++d) {
    if (ti.shape[d] >= 0) s.append(ti.shape[d]);
    else if (d < ti.dim_names.size() && !ti.dim_names[d].empty()) s.append(ti.dim_names[d]);
    else s.append(py::none());
  }
  return s;
}

py::list infos_to_py(const std::vector<TensorInfo>& infos) {
  py::list l;
  for (const auto& ti : infos) {
    py::dict d;
    d["name"] = ti.name;
    d["dtype"] = std::string(dtype_name(ti.dtype));
    d["shape"] = shape_to_py(ti);
    l.append(d);
  }
  return l;
}

class PyModel {
 public:
  PyModel(const std::string& path, const std::string& hardware, const std::string& compute_units, int threads,
          const std::map<std::string, int64_t>& dims, bool optimize, const std::string& cache_dir,
          uint64_t max_memory, int64_t max_loop_iterations) {
    if (threads < 0) throw Error("threads must be >= 0 (0 = all hardware threads), not " + std::to_string(threads));
    LoadOptions lo;
    lo.compute_units = parse_compute_units(compute_units);
    lo.hardware = hardware;
    lo.threads = threads;
    lo.dims = dims;
    lo.optimize = optimize;
    lo.cache_dir = cache_dir;
    lo.max_memory = max_memory;
    if (max_loop_iterations < 1)
      throw Error("max_loop_iterations must be >= 1, not " + std::to_string(max_loop_iterations));
    lo.max_loop_iterations = max_loop_iterations;
    path_ = path;
    {
      py::gil_scoped_release nogil;  // import + compile can take a while
      model_ = std::make_shared<Model>(Model::load(path, lo));
    }
    collect_ranges(model_->impl().model.graph, model_ranges_);
  }

  py::dict predict(const py::dict& feeds) const {
    NamedTensors in;
    std::vector<py::object> keep;  // arrays lent to the runtime, alive until we return
    for (auto [k, v] : feeds) {
      if (!py::isinstance<py::str>(k)) throw Error("predict() takes a dict of input name (str) -> array");
      std::string name = k.cast<std::string>();
      in[name] = feed_from_py(*model_, name, v, keep);
    }
    NamedTensors out;
    {
      py::gil_scoped_release nogil;
      out = model_->predict(in);
    }
    py::dict result;
    std::vector<Range> handed_out;
    for (const auto& [name, t] : out) result[py::str(name)] = tensor_to_py(t, model_ranges_, handed_out);
    return result;
  }

  py::list plan() const {
    py::list l;
    for (const PlanEntry& e : model_->plan()) {
      py::dict d;
      d["node"] = e.node;
      d["op"] = e.op;
      d["device"] = e.device;
      d["could_run_on"] = e.could_run_on;
      d["reason"] = e.reason;
      d["est_ms"] = e.est_ms;
      d["share"] = e.share;
      d["energy_share"] = e.energy_share;
      if (!e.layer_kind.empty()) {
        d["layer_kind"] = e.layer_kind;
        d["macs"] = e.macs;
        d["dram_bytes"] = e.dram_bytes;
      }
      if (!e.fused_into.empty()) d["fused_into"] = e.fused_into;
      l.append(d);
    }
    return l;
  }

  py::object timing() const {
    const auto& im = model_->impl();
    if (!im.uses_npu()) return py::none();
    const auto& t = im.timing;
    py::dict d;
    d["latency_ms"] = t.total_seconds() * 1e3;
    d["npu_ms"] = t.npu_seconds * 1e3;
    d["dispatch_ms"] = t.dispatch_seconds * 1e3;
    d["boundary_ms"] = t.boundary_seconds * 1e3;
    d["cycles"] = t.cycles;
    d["energy_mj"] = t.energy.total_pj() * 1e-9;
    d["mac_utilization"] = t.mac_utilization;
    d["dram_mb"] = static_cast<double>(t.dram_read + t.dram_write) / 1e6;
    int on_npu = 0;
    for (const auto& p : im.program->placements) on_npu += p.npu ? 1 : 0;
    d["nodes_on_npu"] = on_npu;
    d["nodes"] = im.program->placements.size();
    d["segments"] = im.program->segments.size();
    return d;
  }

  py::list inputs() const { return infos_to_py(model_->inputs()); }
  py::list outputs() const { return infos_to_py(model_->outputs()); }
  py::object hardware() const {
    const auto& im = model_->impl();
    if (!im.hw) return py::none();
    return py::str(im.hw->name);
  }
  std::string compute_units() const { return compute_units_name(model_->impl().opts.compute_units); }
  std::string repr() const {
    const auto& im = model_->impl();
    std::string s = "<opennpu.Model '" + path_ + "' compute_units=" + compute_units();
    if (im.hw) s += " hardware=" + im.hw->name;
    return s + ">";
  }

 private:
  std::string path_;
  std::shared_ptr<Model> model_;
  std::vector<Range> model_ranges_;
};


// ---- design-space exploration (python/opennpu/explore.py drives these; docs/explore.md) ----
// One parsed sweep, its grid and a Runner per (file, text, models_dir) per process: a Dask worker
// imports each model once and keeps its compilations across the groups it is given.
struct ExploreState {
  explore::Sweep sweep;
  explore::Expansion exp;
  std::unique_ptr<explore::Runner> runner;
};
ExploreState& explore_state(const std::string& text, const std::string& file, const std::string& models_dir,
                            bool functional) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<ExploreState>> states;
  std::lock_guard<std::mutex> lk(mu);
  std::string key = file + '\0' + text + '\0' + models_dir + (functional ? "F" : "T");
  auto& st = states[key];
  if (!st) {
    auto s = std::make_unique<ExploreState>();
    s->sweep = explore::Sweep::parse(text, file, models_dir);
    if (functional) s->sweep.functional = true;
    s->exp = explore::expand(s->sweep);
    s->runner = std::make_unique<explore::Runner>(s->sweep, s->exp);
    st = std::move(s);
  }
  return *st;
}

void add_explore_bindings(py::module_& m) {
  m.def("_explore_plan", [](const std::string& text, const std::string& file, const std::string& models_dir, bool functional,
                            const std::string& out_dir) {
    auto& st = explore_state(text, file, models_dir, functional);
    auto journal = out_dir.empty() ? std::map<std::string, std::string>{} : explore::read_journal(out_dir);
    std::set<std::string> done;
    for (size_t p = 0; p < st.exp.points.size(); ++p)
      for (int mi = 0; mi < static_cast<int>(st.sweep.models.size()); ++mi) {
        std::string k = explore::point_key(st.sweep, st.exp.points[p], mi);
        if (journal.count(k)) done.insert(k);
      }
    py::list groups;
    for (const auto& g : explore::plan_groups(st.sweep, st.exp, done)) {
      py::list l;
      for (const auto& j : g) l.append(py::make_tuple(j.point, j.model));
      groups.append(l);
    }
    py::dict d;
    d["name"] = st.sweep.name;
    d["points"] = st.exp.points.size();
    d["grid_size"] = st.exp.grid_size;
    py::list models;
    for (const auto& mr : st.sweep.models) models.append(mr.name);
    d["models"] = models;
    d["rows"] = st.exp.points.size() * st.sweep.models.size();
    d["resumed"] = done.size();
    d["groups"] = groups;
    return d;
  }, py::arg("text"), py::arg("file"), py::arg("models_dir") = "", py::arg("functional") = false, py::arg("out_dir") = "");
  m.def("_explore_run", [](const std::string& text, const std::string& file, const std::string& models_dir, bool functional,
                           const std::vector<std::pair<int, int>>& jobs, int threads) {
    auto& st = explore_state(text, file, models_dir, functional);
    std::vector<std::string> rows;
    py::gil_scoped_release nogil;
    if (threads > 0) set_num_threads(threads);
    for (auto [p, mi] : jobs) rows.push_back(st.runner->run(explore::Job{p, mi}));
    return rows;
  }, py::arg("text"), py::arg("file"), py::arg("models_dir"), py::arg("functional"), py::arg("jobs"), py::arg("threads") = 0);
  m.def("_explore_finish", [](const std::string& text, const std::string& file, const std::string& models_dir, bool functional,
                              const std::string& out_dir) {
    auto& st = explore_state(text, file, models_dir, functional);
    auto s = explore::write_results(out_dir, st.sweep, st.exp, explore::read_journal(out_dir));
    py::dict d;
    d["rows"] = s.rows;
    d["points"] = s.points;
    d["pareto_rows"] = s.pareto_rows;
    return d;
  }, py::arg("text"), py::arg("file"), py::arg("models_dir"), py::arg("functional"), py::arg("out_dir"));
  m.def("_explore_columns", [] { return explore::columns(); });
  py::class_<explore::Journal>(m, "_ExploreJournal")
      .def(py::init<const std::string&>(), py::arg("out_dir"))
      .def("append", &explore::Journal::append, py::arg("row"));
}

}  // namespace

PYBIND11_MODULE(_opennpu, m) {
  m.doc() = "opennpu: an open Neural Engine (ONNX models on a CPU reference backend and a simulated NPU)";
  m.attr("__version__") = OPENNPU_VERSION;
  py::register_exception<Error>(m, "Error", PyExc_RuntimeError);
  add_explore_bindings(m);

  m.def("hardware_presets", [] { return npu::list_presets(); }, "Names of the hardware presets (hw/*.toml), sorted.");

  py::class_<PyModel>(m, "Model", R"doc(A loaded ONNX model: imported, optimised, partitioned and compiled once.

Model(path, hardware="ane_m1", compute_units="cpu_only", threads=0, dims=None, optimize=True, cache_dir="",
      max_memory=0, max_loop_iterations=1000000)
  hardware:      preset name (see hardware_presets()) or path to a hardware TOML; used when
                 compute_units is "all" or "cpu_and_npu"
  compute_units: "cpu_only", "cpu_and_npu" or "all"
  threads:       CPU threads (0 = all hardware threads; process-wide setting)
  dims:          binds symbolic input dimensions, e.g. {"N": 1}
  max_memory:    largest single tensor in bytes (0 = the default limit; --max-memory)
  max_loop_iterations: Loop trip-count limit (--max-loop-iterations)
predict() may be called from several Python threads at once (it releases the GIL).)doc")
      .def(py::init([](const std::string& path, const std::string& hardware, const std::string& compute_units,
                       int threads, const std::optional<std::map<std::string, int64_t>>& dims, bool optimize,
                       const std::string& cache_dir, uint64_t max_memory, int64_t max_loop_iterations) {
             return std::make_unique<PyModel>(path, hardware, compute_units, threads, dims.value_or(std::map<std::string, int64_t>{}),
                                              optimize, cache_dir, max_memory, max_loop_iterations);
           }),
           py::arg("path"), py::arg("hardware") = "ane_m1", py::arg("compute_units") = "cpu_only", py::arg("threads") = 0,
           py::arg("dims") = py::none(), py::arg("optimize") = true, py::arg("cache_dir") = "",
           py::arg("max_memory") = 0, py::arg("max_loop_iterations") = 1'000'000)
      .def("predict", &PyModel::predict, py::arg("inputs"),
           "Run the model. inputs: dict of name -> numpy array (or list for a sequence input, None for an "
           "absent optional one). Returns a dict of name -> numpy array.")
      .def("plan", &PyModel::plan,
           "Per node, in graph order: node, op, device, could_run_on, reason, est_ms, share, energy_share "
           "(NPU layers also layer_kind, macs, dram_bytes; fused activations fused_into).")
      .def("timing", &PyModel::timing,
           "Simulated NPU figures for one prediction (latency_ms, npu_ms, energy_mj, mac_utilization, dram_mb, ...), "
           "or None when the model runs on the CPU only.")
      .def_property_readonly("inputs", &PyModel::inputs, "List of {name, dtype, shape}; symbolic dims are str, unknown None.")
      .def_property_readonly("outputs", &PyModel::outputs, "List of {name, dtype, shape}.")
      .def_property_readonly("hardware", &PyModel::hardware, "Hardware name, or None for cpu_only.")
      .def_property_readonly("compute_units", &PyModel::compute_units)
      .def("__repr__", &PyModel::repr);
}
