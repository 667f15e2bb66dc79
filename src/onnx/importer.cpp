#include "onnx/importer.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include <filesystem>
#include <functional>
#include <fstream>
#include <limits>
#include <map>
#include <set>

#include <fmt/format.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <onnx/onnx_pb.h>
#include <onnx/onnx-data_pb.h>
#include <onnx/shape_inference/implementation.h>

#include "core/half.h"

namespace fs = std::filesystem;

namespace opennpu::onnx_import {

namespace {

struct Ctx {
  std::string what;      // file name for messages
  fs::path base_dir;     // canonical model directory
  const ImportOptions* opts;
};

std::string read_file_limited(const std::string& path, uint64_t limit) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw Error(fmt::format("{}: {}", path, fs::exists(path, ec) ? "not a regular file" : "no such file"));
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(fmt::format("{}: cannot open file", path));
  f.seekg(0, std::ios::end);
  auto size = static_cast<uint64_t>(f.tellg());
  if (size > limit) throw Error(fmt::format("{}: file of {} bytes is larger than the limit {}", path, size, limit));
  f.seekg(0);
  std::string b(size, '\0');
  f.read(b.data(), static_cast<std::streamsize>(size));
  if (!f) throw Error(fmt::format("{}: read error", path));
  return b;
}

// Resolves an external-data location safely inside the model directory.
fs::path resolve_external(const Ctx& c, const std::string& loc, const std::string& tensor) {
  auto fail = [&](const std::string& why) {
    return Error(fmt::format("{}: tensor '{}': external data location '{}' {}", c.what, tensor, loc, why));
  };
  if (c.base_dir.empty()) throw fail("cannot be resolved: the model was not loaded from a file");
  if (loc.empty()) throw fail("is empty");
  if (loc.find('\0') != std::string::npos) throw fail("contains a NUL byte");
  fs::path p(loc);
  if (p.is_absolute() || loc[0] == '/' || loc[0] == '\\') throw fail("is an absolute path (only paths relative to the model's directory are allowed)");
  for (const auto& part : p)
    if (part == "..") throw fail("contains '..' (external data must stay inside the model's directory)");
  fs::path full = c.base_dir / p;
  std::error_code ec;
  fs::path canon = fs::weakly_canonical(full, ec);
  if (ec) throw fail("cannot be resolved");
  auto rel = canon.lexically_relative(c.base_dir);
  if (rel.empty() || *rel.begin() == "..") throw fail("resolves outside the model's directory (through a symbolic link)");
  struct stat st {};
  if (::stat(canon.c_str(), &st) != 0) throw fail("does not exist");
  if (!S_ISREG(st.st_mode)) throw fail("is not a regular file");
  if (st.st_nlink > 1) throw fail("is a hard link (refused: it may point outside the model's directory)");
  return canon;
}

Tensor convert_tensor(const Ctx& c, const onnx::TensorProto& tp, const std::string& fallback_name) {
  std::string name = tp.name().empty() ? fallback_name : tp.name();
  std::string what = fmt::format("{}: tensor '{}'", c.what, name);
  if (tp.has_segment()) throw Error(what + ": segmented tensors are not supported");
  DType dt;
  try { dt = dtype_from_onnx(tp.data_type()); } catch (const Error& e) { throw Error(what + ": " + e.what()); }
  Shape shape;
  if (tp.dims_size() > 64) throw Error(fmt::format("{}: rank {} is too large", what, tp.dims_size()));
  for (auto d : tp.dims()) {
    if (d < 0) throw Error(fmt::format("{}: negative dimension {}", what, d));
    shape.push_back(d);
  }
  int64_t n = checked_numel(shape, what);
  size_t es = dtype_size(dt);
  if (dt != DType::String && es && static_cast<uint64_t>(n) > max_tensor_bytes() / es)
    throw Error(fmt::format("{}: {} elements exceed the memory limit of {} bytes (--max-memory)", what, n, max_tensor_bytes()));

  if (tp.data_location() == onnx::TensorProto::EXTERNAL) {
    std::string loc;
    int64_t offset = 0, length = -1;
    for (const auto& kv : tp.external_data()) {
      auto num = [&](const std::string& v) -> int64_t {
        if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos)
          throw Error(fmt::format("{}: external data {} '{}' is not a non-negative integer", what, kv.key(), v));
        return std::stoll(v);
      };
      if (kv.key() == "location") loc = kv.value();
      else if (kv.key() == "offset") offset = num(kv.value());
      else if (kv.key() == "length") length = num(kv.value());
    }
    if (dt == DType::String) throw Error(what + ": string tensors cannot use external data");
    fs::path p = resolve_external(c, loc, name);
    uint64_t fsize = fs::file_size(p);
    uint64_t need = static_cast<uint64_t>(n) * es;
    if (length >= 0 && static_cast<uint64_t>(length) != need)
      throw Error(fmt::format("{}: external data length {} disagrees with dims {} x {} bytes = {}", what, length,
                              shape_str(shape), es, need));
    if (static_cast<uint64_t>(offset) > fsize || need > fsize - static_cast<uint64_t>(offset))
      throw Error(fmt::format("{}: external data offset {} + {} bytes runs past the end of '{}' ({} bytes)", what, offset,
                              need, loc, fsize));
    Tensor t(dt, shape);
    std::ifstream f(p, std::ios::binary);
    f.seekg(offset);
    f.read(static_cast<char*>(t.raw()), static_cast<std::streamsize>(need));
    if (!f) throw Error(fmt::format("{}: cannot read external data from '{}'", what, loc));
    return t;
  }

  Tensor t(dt, shape);
  if (dt == DType::String) {
    if (tp.string_data_size() != n)
      throw Error(fmt::format("{}: holds {} strings but dims {} need {}", what, tp.string_data_size(), shape_str(shape), n));
    for (int64_t i = 0; i < n; ++i) t.strings()[i] = tp.string_data(static_cast<int>(i));
    return t;
  }
  if (!tp.raw_data().empty() || (n > 0 && tp.float_data_size() + tp.int32_data_size() + tp.int64_data_size() +
                                               tp.double_data_size() + tp.uint64_data_size() == 0)) {
    const std::string& raw = tp.raw_data();
    if (raw.size() != static_cast<uint64_t>(n) * es)
      throw Error(fmt::format("{}: raw_data has {} bytes but dims {} of {} need {}", what, raw.size(), shape_str(shape),
                              dtype_name(dt), static_cast<uint64_t>(n) * es));
    if (n) std::memcpy(t.raw(), raw.data(), raw.size());
    if (dt == DType::Bool) for (int64_t i = 0; i < n; ++i) t.data<uint8_t>()[i] = t.data<uint8_t>()[i] ? 1 : 0;
    return t;
  }
  auto count_check = [&](int got, const char* field) {
    if (got != n)
      throw Error(fmt::format("{}: {} holds {} values but dims {} need {}", what, field, got, shape_str(shape), n));
  };
  switch (dt) {
    case DType::Float32:
      count_check(tp.float_data_size(), "float_data");
      for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = tp.float_data(static_cast<int>(i));
      break;
    case DType::Float64:
      count_check(tp.double_data_size(), "double_data");
      for (int64_t i = 0; i < n; ++i) t.data<double>()[i] = tp.double_data(static_cast<int>(i));
      break;
    case DType::Int64:
      count_check(tp.int64_data_size(), "int64_data");
      for (int64_t i = 0; i < n; ++i) t.data<int64_t>()[i] = tp.int64_data(static_cast<int>(i));
      break;
    case DType::UInt32: case DType::UInt64:
      count_check(tp.uint64_data_size(), "uint64_data");
      for (int64_t i = 0; i < n; ++i) {
        if (dt == DType::UInt32) t.data<uint32_t>()[i] = static_cast<uint32_t>(tp.uint64_data(static_cast<int>(i)));
        else t.data<uint64_t>()[i] = tp.uint64_data(static_cast<int>(i));
      }
      break;
    default:  // int32_data carries int8/16/32, uint8/16, bool, float16 and bfloat16 bits
      count_check(tp.int32_data_size(), "int32_data");
      for (int64_t i = 0; i < n; ++i) {
        int32_t v = tp.int32_data(static_cast<int>(i));
        switch (dt) {
          case DType::Int8: t.data<int8_t>()[i] = static_cast<int8_t>(v); break;
          case DType::Int16: t.data<int16_t>()[i] = static_cast<int16_t>(v); break;
          case DType::Int32: t.data<int32_t>()[i] = v; break;
          case DType::UInt8: t.data<uint8_t>()[i] = static_cast<uint8_t>(v); break;
          case DType::UInt16: case DType::Float16: case DType::BFloat16:
            t.data<uint16_t>()[i] = static_cast<uint16_t>(v); break;
          case DType::Bool: t.data<uint8_t>()[i] = v ? 1 : 0; break;
          default: throw Error(what + ": unexpected storage for dtype");
        }
      }
  }
  return t;
}

ir::ValueInfo convert_value_info(const Ctx& c, const onnx::ValueInfoProto& v, bool apply_dims) {
  ir::ValueInfo vi;
  vi.name = v.name();
  if (!v.has_type()) return vi;
  const onnx::TypeProto* tp = &v.type();
  if (tp->has_optional_type()) {
    vi.kind = "optional";
    tp = &tp->optional_type().elem_type();
  }
  if (tp->has_sequence_type()) {
    vi.kind = vi.kind == "optional" ? "optional_sequence" : "sequence";
    tp = &tp->sequence_type().elem_type();
  }
  const auto& tpe = *tp;
  if (!tpe.has_tensor_type()) {
    if (tpe.value_case() == onnx::TypeProto::VALUE_NOT_SET) return vi;
    const char* kind = tpe.has_map_type() ? "map" : tpe.has_sparse_tensor_type() ? "sparse tensor" : "nested non-tensor";
    throw Error(fmt::format("{}: value '{}' has a {} type; opennpu supports tensors, sequences of tensors and optionals", c.what, v.name(), kind));
  }
  const auto& tt = tpe.tensor_type();
  if (tt.elem_type() != 0) {
    try { vi.dtype = dtype_from_onnx(tt.elem_type()); }
    catch (const Error& e) { throw Error(fmt::format("{}: value '{}': {}", c.what, v.name(), e.what())); }
  }
  if (tt.has_shape()) {
    vi.has_shape = true;
    if (tt.shape().dim_size() > 64) throw Error(fmt::format("{}: value '{}' has rank {}", c.what, v.name(), tt.shape().dim_size()));
    for (const auto& d : tt.shape().dim()) {
      ir::Dim dim;
      if (d.has_dim_value()) {
        if (d.dim_value() < 0) throw Error(fmt::format("{}: value '{}' has negative dimension {}", c.what, v.name(), d.dim_value()));
        dim.value = d.dim_value();
      } else if (d.has_dim_param()) {
        dim.param = d.dim_param();
        if (apply_dims) {
          auto it = c.opts->dims.find(dim.param);
          if (it != c.opts->dims.end()) dim.value = it->second;
        }
      }
      vi.dims.push_back(dim);
    }
  }
  return vi;
}

ir::Graph convert_graph(const Ctx& c, const onnx::GraphProto& gp, int depth);

ir::Attribute convert_attr(const Ctx& c, const onnx::AttributeProto& a, const std::string& node, int depth) {
  using K = ir::Attribute::Kind;
  ir::Attribute r;
  auto graph = [&](const onnx::GraphProto& g) {
    if (depth + 1 > c.opts->max_subgraph_depth)
      throw Error(fmt::format("{}: node '{}': subgraphs nested more than {} deep", c.what, node, c.opts->max_subgraph_depth));
    return std::make_shared<ir::Graph>(convert_graph(c, g, depth + 1));
  };
  switch (a.type()) {
    case onnx::AttributeProto::FLOAT: r.kind = K::Float; r.f = a.f(); break;
    case onnx::AttributeProto::INT: r.kind = K::Int; r.i = a.i(); break;
    case onnx::AttributeProto::STRING: r.kind = K::String; r.s = a.s(); break;
    case onnx::AttributeProto::TENSOR: r.kind = K::Tensor; r.t = convert_tensor(c, a.t(), node + "." + a.name()); break;
    case onnx::AttributeProto::GRAPH: r.kind = K::Graph; r.g = graph(a.g()); break;
    case onnx::AttributeProto::FLOATS: r.kind = K::Floats; r.floats.assign(a.floats().begin(), a.floats().end()); break;
    case onnx::AttributeProto::INTS: r.kind = K::Ints; r.ints.assign(a.ints().begin(), a.ints().end()); break;
    case onnx::AttributeProto::STRINGS: r.kind = K::Strings; r.strings.assign(a.strings().begin(), a.strings().end()); break;
    case onnx::AttributeProto::TENSORS:
      r.kind = K::Tensors;
      for (const auto& t : a.tensors()) r.tensors.push_back(convert_tensor(c, t, node + "." + a.name()));
      break;
    case onnx::AttributeProto::GRAPHS:
      r.kind = K::Graphs;
      for (const auto& g : a.graphs()) r.graphs.push_back(graph(g));
      break;
    case onnx::AttributeProto::TYPE_PROTO: {
      // Kept as a description ("optional(sequence(tensor))"): only Optional reads it.
      r.kind = K::String;
      std::function<std::string(const onnx::TypeProto&)> desc = [&](const onnx::TypeProto& t) -> std::string {
        if (t.has_tensor_type()) return "tensor";
        if (t.has_sequence_type()) return "sequence(" + desc(t.sequence_type().elem_type()) + ")";
        if (t.has_optional_type()) return "optional(" + desc(t.optional_type().elem_type()) + ")";
        return "other";
      };
      r.s = desc(a.tp());
      break;
    }
    default:
      throw Error(fmt::format("{}: node '{}': attribute '{}' has unsupported type {}", c.what, node, a.name(),
                              static_cast<int>(a.type())));
  }
  return r;
}

// If and Loop must agree with their subgraphs on the number (and, where both are declared, the
// types) of values they pass: checked at load so a bad model is refused before it runs, whichever
// branch a run would take.
void check_control_flow(const Ctx& c, const ir::Node& n) {
  if (!n.domain.empty() || (n.op_type != "If" && n.op_type != "Loop")) return;
  auto fail = [&](const std::string& why) { return Error(fmt::format("{}: {}: {}", c.what, n.where(), why)); };
  // Same element type and same tensor/sequence kind; an optional matches its contents (a Loop may
  // take an optional value in and return it present, as ONNX's test_loop16_seq_none does).
  auto base_kind = [](const std::string& k) {
    return k == "optional" ? std::string("tensor") : k == "optional_sequence" ? std::string("sequence") : k;
  };
  auto same_type = [&](const ir::ValueInfo& a, const ir::ValueInfo& b) {
    return a.dtype == DType::Undefined || b.dtype == DType::Undefined ||
           (a.dtype == b.dtype && base_kind(a.kind) == base_kind(b.kind));
  };
  auto type_of = [](const ir::ValueInfo& v) { return v.kind == "tensor" ? v.describe() : v.kind + " of " + v.describe(); };
  if (n.op_type == "If") {
    const ir::Graph* t = n.attr_g("then_branch");
    const ir::Graph* e = n.attr_g("else_branch");
    if (!t || !e) throw fail("needs graph attributes then_branch and else_branch");
    if (t->outputs.size() != e->outputs.size())
      throw fail(fmt::format("then_branch returns {} values but else_branch returns {}", t->outputs.size(), e->outputs.size()));
    if (n.outputs.size() != t->outputs.size())
      throw fail(fmt::format("the node has {} outputs but its branches return {}", n.outputs.size(), t->outputs.size()));
    for (size_t i = 0; i < t->outputs.size(); ++i)
      if (!same_type(t->outputs[i], e->outputs[i]))
        throw fail(fmt::format("output {}: then_branch returns {} but else_branch returns {}", i, type_of(t->outputs[i]),
                               type_of(e->outputs[i])));
    return;
  }
  const ir::Graph* b = n.attr_g("body");
  if (!b) throw fail("needs graph attribute body");
  const size_t carried = n.inputs.size() >= 2 ? n.inputs.size() - 2 : 0;
  if (b->inputs.size() != 2 + carried)
    throw fail(fmt::format("body takes {} inputs, expected 2 (iteration, condition) + {} loop-carried values", b->inputs.size(),
                           carried));
  if (b->outputs.size() < 1 + carried)
    throw fail(fmt::format("body returns {} values, expected the condition + {} loop-carried values", b->outputs.size(),
                           carried));
  if (n.outputs.size() > b->outputs.size() - 1)
    throw fail(fmt::format("the node has {} outputs but its body gives {} loop-carried + {} scan values", n.outputs.size(),
                           carried, b->outputs.size() - 1 - carried));
  for (size_t k = 0; k < carried; ++k)
    if (!same_type(b->inputs[2 + k], b->outputs[1 + k]))
      throw fail(fmt::format("loop-carried value {} enters the body as {} but leaves it as {}", k, type_of(b->inputs[2 + k]),
                             type_of(b->outputs[1 + k])));
}

ir::Graph convert_graph(const Ctx& c, const onnx::GraphProto& gp, int depth) {
  ir::Graph g;
  g.name = gp.name().empty() ? "main" : gp.name();
  for (const auto& t : gp.initializer()) {
    if (t.name().empty()) throw Error(fmt::format("{}: graph '{}' has an initializer without a name", c.what, g.name));
    if (g.initializers.count(t.name())) throw Error(fmt::format("{}: initializer '{}' is defined twice", c.what, t.name()));
    g.initializers.emplace(t.name(), convert_tensor(c, t, t.name()));
    // The message is the importer's own (import_stream's local): release the bytes just copied so
    // the weights are not held twice while the rest converts.
    std::string().swap(*const_cast<onnx::TensorProto&>(t).mutable_raw_data());
  }
  if (gp.sparse_initializer_size()) throw Error(fmt::format("{}: sparse initializers are not supported", c.what));
  for (const auto& v : gp.input()) {
    for (const auto& i : g.inputs)
      if (i.name == v.name()) throw Error(fmt::format("{}: graph '{}' lists input '{}' twice", c.what, g.name, v.name()));
    g.inputs.push_back(convert_value_info(c, v, depth == 0));
  }
  for (const auto& v : gp.output()) {
    ir::ValueInfo vi;
    try {
      vi = convert_value_info(c, v, false);
    } catch (const Error& e) {
      // A bad output type is often ONNX's shape inference reporting an impossible node (a Conv
      // kernel larger than its input gives a negative dimension): name the node that makes it.
      for (int i = 0; i < gp.node_size(); ++i)
        for (const auto& o : gp.node(i).output())
          if (o == v.name())
            throw Error(fmt::format("{} (declared in the file or inferred by ONNX shape inference; it is the output of node "
                                    "'{}' ({}))", e.what(), gp.node(i).name().empty() ? fmt::format("{}_{}", gp.node(i).op_type(), i) : gp.node(i).name(),
                                    gp.node(i).op_type()));
      throw;
    }
    for (const auto& o : g.outputs)
      if (o.name == vi.name) throw Error(fmt::format("{}: graph '{}' lists output '{}' twice", c.what, g.name, vi.name));
    g.outputs.push_back(vi);
  }
  for (const auto& v : gp.value_info()) {
    try { g.value_info[v.name()] = convert_value_info(c, v, false); }
    catch (const Error&) { /* non-tensor intermediate types: shape info is optional */ }
  }
  int idx = 0;
  for (const auto& np : gp.node()) {
    ir::Node n;
    n.op_type = np.op_type();
    n.domain = np.domain() == "ai.onnx" ? "" : np.domain();
    n.name = np.name().empty() ? fmt::format("{}_{}", n.op_type, idx) : np.name();
    if (n.op_type.empty()) throw Error(fmt::format("{}: node {} has no op_type", c.what, idx));
    n.inputs.assign(np.input().begin(), np.input().end());
    n.outputs.assign(np.output().begin(), np.output().end());
    for (const auto& a : np.attribute()) {
      if (a.name().empty()) throw Error(fmt::format("{}: node '{}' has an attribute without a name", c.what, n.name));
      if (!a.ref_attr_name().empty())
        throw Error(fmt::format("{}: node '{}': attribute references are only valid inside functions", c.what, n.name));
      if (n.attrs.count(a.name())) throw Error(fmt::format("{}: node '{}' has attribute '{}' twice", c.what, n.name, a.name()));
      n.attrs.emplace(a.name(), convert_attr(c, a, n.name, depth));
    }
    check_control_flow(c, n);
    g.nodes.push_back(std::move(n));
    ++idx;
  }
  return g;
}

// libonnx's shape inference is a helper, not a shield: onnx 1.12 dies with SIGFPE on a Conv with
// stride 0, for instance. Only hand it graphs whose attributes pass these sanity checks.
bool safe_for_onnx_inference(const onnx::GraphProto& g, const std::map<std::string, int>& opsets, int depth,
                             std::set<std::string> defined = {}) {
  if (depth > 64) return false;
  // ONNX's inference also assumes every input is typed by the time its node is reached (Shape-15
  // dereferences the missing type of an undefined input): require graph order with every value
  // defined first (by an input, an initializer, an earlier node or an enclosing graph).
  for (const auto& v : g.input()) defined.insert(v.name());
  for (const auto& t : g.initializer()) defined.insert(t.name());
  for (const auto& t : g.sparse_initializer()) defined.insert(t.values().name());
  for (const auto& n : g.node()) {
    for (const auto& in : n.input())
      if (!in.empty() && !defined.count(in)) return false;
    // ONNX's inference functions assume nodes its checker accepted: Scan-9's dereferences a
    // missing num_scan_inputs attribute (a SIGSEGV found by fuzz/fuzz_onnx). Verify each node
    // against its schema first; a node that fails is left to the importer's own validation.
    const std::string dom = n.domain() == "ai.onnx" ? "" : n.domain();
    auto ov = opsets.find(dom);
    if (const auto* schema = onnx::OpSchemaRegistry::Schema(n.op_type(), ov == opsets.end() ? 1 : ov->second, dom)) {
      try {
        schema->Verify(n);
      } catch (const std::exception&) {
        return false;
      }
    }
    for (const auto& a : n.attribute()) {
      if (a.has_g() && !safe_for_onnx_inference(a.g(), opsets, depth + 1, defined)) return false;
      for (const auto& sg : a.graphs()) if (!safe_for_onnx_inference(sg, opsets, depth + 1, defined)) return false;
      const std::string& an = a.name();
      if (an == "strides" || an == "dilations" || an == "kernel_shape")
        for (auto v : a.ints()) if (v <= 0 || v > (1 << 20)) return false;
      if (an == "pads" || an == "output_padding")
        for (auto v : a.ints()) if (v < -(1 << 20) || v > (1 << 20)) return false;
      if ((an == "group" || an == "blocksize") && (a.i() <= 0 || a.i() > (1 << 20))) return false;
      if (an == "axis" && (a.i() < -64 || a.i() > 64)) return false;
    }
    for (const auto& out : n.output()) defined.insert(out);
  }
  return true;
}

// ONNX's shape inference, run in a forked child process. libonnx 1.12's inference functions
// crash on malformed graphs that no check above foresees (fuzz_onnx found a ConvInteger on a
// rank-2 input: SIGSEGV in convPoolShapeInference, after the Scan-9 and Shape-15 crashes the
// checks above now exclude), and a model file must never crash the process. The child runs the
// inference on its copy-on-write image of mp, drops the main graph's initializers (their bytes
// are not needed back) and sends the inferred model through a pipe; the parent takes the
// inferred graph and keeps its own initializers. A child that crashes, fails or takes longer
// than 120 s leaves mp as it was: shape information is optional (kernels compute real shapes at
// run time), and the importer's own validation still judges the model. Returns whether shapes
// were inferred.
bool infer_in_child(onnx::ModelProto& mp) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return false;
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return false;
  }
  if (pid == 0) {  // child: no exceptions out, no exit handlers, no core file
    close(fds[0]);
    struct rlimit no_core {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    // A crash ends the child quietly: default actions, not the handlers a sanitizer or libFuzzer
    // installed in the parent (they would report the child's libonnx crash as a finding).
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) signal(sig, SIG_DFL);
    std::string out;
    try {
      onnx::ShapeInferenceOptions o(false, 0, true);
      onnx::shape_inference::InferShapes(mp, onnx::OpSchemaRegistry::Instance(), o);
      mp.mutable_graph()->clear_initializer();
      mp.mutable_graph()->clear_sparse_initializer();
      if (!mp.SerializeToString(&out)) _exit(2);
    } catch (...) {
      _exit(1);
    }
    for (size_t off = 0; off < out.size();) {
      const ssize_t w = write(fds[1], out.data() + off, out.size() - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) _exit(3);
      off += static_cast<size_t>(w);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string buf;
  bool timed_out = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  char chunk[1 << 16];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) { timed_out = true; break; }
    pollfd pf{fds[0], POLLIN, 0};
    const int pr = poll(&pf, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (pr < 0 && errno == EINTR) continue;
    if (pr < 0) { timed_out = true; break; }
    if (pr == 0) continue;
    const ssize_t r = read(fds[0], chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;  // EOF (the child exited or closed) or an error
    buf.append(chunk, static_cast<size_t>(r));
  }
  close(fds[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return false;
  onnx::ModelProto inferred;
  if (!inferred.ParseFromString(buf) || !inferred.has_graph()) return false;
  onnx::GraphProto* g = mp.mutable_graph();
  google::protobuf::RepeatedPtrField<onnx::TensorProto> inits;
  google::protobuf::RepeatedPtrField<onnx::SparseTensorProto> sparse;
  inits.Swap(g->mutable_initializer());
  sparse.Swap(g->mutable_sparse_initializer());
  g->Swap(inferred.mutable_graph());
  g->mutable_initializer()->Swap(&inits);
  g->mutable_sparse_initializer()->Swap(&sparse);
  return true;
}

// Fills value_info with ONNX's own type/shape inference (with data propagation, so shapes
// computed by Shape->Gather->Concat->Reshape chains resolve). Failures are not errors: shape
// information is optional; kernels compute real shapes at run time.
void infer_shapes(onnx::ModelProto& mp, const ImportOptions& opts) {
  for (auto& in : *mp.mutable_graph()->mutable_input()) {
    if (!in.type().has_tensor_type() || !in.type().tensor_type().has_shape()) continue;
    for (auto& d : *in.mutable_type()->mutable_tensor_type()->mutable_shape()->mutable_dim()) {
      if (!d.has_dim_param()) continue;
      auto it = opts.dims.find(d.dim_param());
      if (it != opts.dims.end()) d.set_dim_value(it->second);
    }
  }
  std::map<std::string, int> opsets;
  for (const auto& os : mp.opset_import())
    opsets[os.domain() == "ai.onnx" ? "" : os.domain()] = static_cast<int>(os.version());
  if (mp.opset_import_size() == 0) opsets[""] = 1;
  if (!safe_for_onnx_inference(mp.graph(), opsets, 0)) return;
  infer_in_child(mp);
}

}  // namespace

namespace {
// Parses and converts a model from a stream of `size` bytes. The whole file is never held in
// memory next to the parsed message (load_model streams from the file descriptor), and each
// initializer's bytes are released from the message once converted, so peak memory at load is
// about one copy of the weights, not three.
ir::Model import_stream(google::protobuf::io::ZeroCopyInputStream& zis, uint64_t size, const std::string& base_dir,
                        const std::string& what, const ImportOptions& opts) {
  onnx::ModelProto mp;
  {
    google::protobuf::io::CodedInputStream cis(&zis);
    cis.SetTotalBytesLimit(std::numeric_limits<int>::max());
    cis.SetRecursionLimit(400);
    if (size > static_cast<uint64_t>(std::numeric_limits<int>::max()) || !mp.ParseFromCodedStream(&cis) ||
        !cis.ConsumedEntireMessage())
      throw Error(fmt::format("{}: not a valid ONNX model (protobuf parse failed: truncated, corrupt or nested too deeply)", what));
  }
  if (!mp.has_graph()) throw Error(fmt::format("{}: not a valid ONNX model (no graph)", what));
  if (mp.functions_size()) throw Error(fmt::format("{}: model-local functions are not supported", what));

  ir::Model m;
  m.ir_version = mp.ir_version();
  m.producer = mp.producer_name();
  m.path = what;
  for (const auto& os : mp.opset_import()) {
    std::string dom = os.domain() == "ai.onnx" ? "" : os.domain();
    m.opsets[dom] = os.version();
  }
  if (mp.opset_import_size() == 0) m.opsets[""] = 1;  // IR < 3 models have no opset import
  if (m.opsets.count("")) {
    int64_t v = m.opsets[""];
    if (v < kMinOpset || v > kMaxOpset)
      throw Error(fmt::format("{}: ai.onnx opset {} is not supported (this build supports {}-{})", what, v, kMinOpset, kMaxOpset));
  }
  Ctx c{what, {}, &opts};
  if (!base_dir.empty()) {
    std::error_code ec;
    c.base_dir = fs::canonical(base_dir, ec);
    if (ec) throw Error(fmt::format("{}: cannot resolve the model's directory", what));
  }
  if (opts.infer_shapes) infer_shapes(mp, opts);
  m.graph = convert_graph(c, mp.graph(), 0);
  ir::topo_sort(m.graph);
  return m;
}
}  // namespace

ir::Model parse_model(const std::string& bytes, const std::string& base_dir, const std::string& what,
                      const ImportOptions& opts) {
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    throw Error(fmt::format("{}: not a valid ONNX model (larger than 2 GiB; use external data)", what));
  google::protobuf::io::ArrayInputStream ais(bytes.data(), static_cast<int>(bytes.size()));
  return import_stream(ais, bytes.size(), base_dir, what, opts);
}

ir::Model load_model(const std::string& path, const ImportOptions& opts) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw Error(fmt::format("{}: {}", path, fs::exists(path, ec) ? "not a regular file" : "no such file"));
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(fmt::format("{}: cannot open file", path));
  google::protobuf::io::FileInputStream fis(fd);
  fis.SetCloseOnDelete(true);
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw Error(fmt::format("{}: cannot open file", path));
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size > static_cast<uint64_t>(std::numeric_limits<int>::max()))
    throw Error(fmt::format("{}: file of {} bytes is larger than the limit {} (use external data)", path, size,
                            std::numeric_limits<int>::max()));
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  return import_stream(fis, size, dir.string(), path, opts);
}

Tensor load_tensor_pb(const std::string& path) {
  std::string bytes = read_file_limited(path, max_tensor_bytes() + (1u << 20));
  onnx::TensorProto tp;
  if (!tp.ParseFromString(bytes)) throw Error(fmt::format("{}: not a valid TensorProto", path));
  std::error_code ec;
  fs::path dir = fs::path(path).parent_path();
  Ctx c{path, fs::canonical(dir.empty() ? fs::path(".") : dir, ec), nullptr};
  return convert_tensor(c, tp, "tensor");
}

namespace {
Tensor convert_sequence(const Ctx& c, const onnx::SequenceProto& sp) {
  if (sp.elem_type() != onnx::SequenceProto::TENSOR && sp.elem_type() != onnx::SequenceProto::UNDEFINED)
    throw Error(c.what + ": only sequences of tensors are supported");
  std::vector<Tensor> items;
  DType elem = DType::Float32;
  for (const auto& t : sp.tensor_values()) {
    items.push_back(convert_tensor(c, t, "item"));
    elem = items.back().dtype();
  }
  return Tensor::make_sequence(elem, std::move(items));
}
}  // namespace

Tensor load_value_pb(const std::string& path, const std::string& kind) {
  if (kind == "tensor") return load_tensor_pb(path);
  std::string bytes = read_file_limited(path, max_tensor_bytes() + (1u << 20));
  std::error_code ec;
  fs::path dir = fs::path(path).parent_path();
  Ctx c{path, fs::canonical(dir.empty() ? fs::path(".") : dir, ec), nullptr};
  if (kind == "sequence") {
    onnx::SequenceProto sp;
    if (!sp.ParseFromString(bytes)) throw Error(fmt::format("{}: not a valid SequenceProto", path));
    return convert_sequence(c, sp);
  }
  onnx::OptionalProto op;
  if (!op.ParseFromString(bytes)) throw Error(fmt::format("{}: not a valid OptionalProto", path));
  if (op.has_tensor_value()) return convert_tensor(c, op.tensor_value(), "value");
  if (op.has_sequence_value()) return convert_sequence(c, op.sequence_value());
  return Tensor::make_none(kind == "optional_sequence");
}

}  // namespace opennpu::onnx_import
