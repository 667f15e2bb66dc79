// opennpu — the command-line tool. Thin: parses flags and calls the runtime.
//   opennpu run MODEL --input NAME=FILE.npy ... [--dim N=V] [--threads N] --output-dir DIR [--json]
//   opennpu info MODEL [--json]
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/npy.h"
#include "cpu/executor.h"
#include "onnx/importer.h"
#include "opennpu/runtime.h"
#include "runtime/model_impl.h"
#include "tools/commands.h"
#include "tools/progress.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace opennpu;

namespace {

// FLOPs of the nodes left on the CPU (Conv/Gemm/MatMul/LSTM counted; the rest is small).
int64_t cpu_flops_estimate(const Model::Impl& im) {
  int64_t f = 0;
  for (size_t si = 0; si < im.program->segments.size(); ++si) {
    const auto& seg = im.program->segments[si];
    if (seg.npu) continue;
    for (int ni : seg.nodes) {
      const auto& n = im.model.graph.nodes[ni];
      auto shape_of = [&](const std::string& v) -> Shape {
        auto* vi = im.model.graph.find_value_info(v);
        if (vi && vi->fully_static()) return vi->static_shape();
        auto it = im.model.graph.initializers.find(v);
        if (it != im.model.graph.initializers.end()) return it->second.shape();
        return {};
      };
      if (n.op_type == "LSTM" || n.op_type == "GRU" || n.op_type == "RNN") {
        Shape x = shape_of(n.inputs[0]), w = shape_of(n.inputs[1]), r = shape_of(n.inputs[2]);
        if (x.size() == 3 && w.size() == 3 && r.size() == 3) f += 2 * x[0] * x[1] * w[0] * w[1] * (w[2] + r[2]);
      } else if (n.op_type == "MatMul" || n.op_type == "Gemm" || n.op_type == "Conv") {
        Shape o = n.outputs.empty() ? Shape{} : shape_of(n.outputs[0]);
        Shape w = n.inputs.size() > 1 ? shape_of(n.inputs[1]) : Shape{};
        if (!o.empty() && !w.empty()) {
          int64_t k = n.op_type == "Conv" ? checked_numel(w) / w[0] : (n.op_type == "Gemm" && n.attr_i("transB", 0) ? w.back() : w[w.size() - 2]);
          f += 2 * checked_numel(o) * k;
        }
      }
    }
  }
  return f;
}

std::string sanitize(const std::string& name) {
  std::string s = name;
  for (char& c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) c = '_';
  return s;
}

std::pair<std::string, std::string> split_eq(const std::string& s, const char* what) {
  auto p = s.find('=');
  if (p == std::string::npos || p == 0) throw Error(fmt::format("{} '{}' must look like NAME=VALUE", what, s));
  return {s.substr(0, p), s.substr(p + 1)};
}

std::map<std::string, int64_t> parse_dims(const std::vector<std::string>& dims) {
  std::map<std::string, int64_t> out;
  for (const auto& d : dims) {
    auto [k, v] = split_eq(d, "--dim");
    char* end = nullptr;
    long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end || x < 0) throw Error(fmt::format("--dim {}: '{}' is not a non-negative integer", k, v));
    out[k] = x;
  }
  return out;
}

Tensor load_input(const std::string& file) {
  if (file.size() > 3 && file.substr(file.size() - 3) == ".pb") return onnx_import::load_tensor_pb(file);
  return read_npy(file);
}

struct Stats { double min = 0, max = 0, mean = 0; bool numeric = false; };
Stats stats_of(const Tensor& t) {
  Stats s;
  if (t.dtype() == DType::String || t.numel() == 0) return s;
  s.numeric = true;
  s.min = INFINITY; s.max = -INFINITY;
  double sum = 0;
  for (int64_t i = 0; i < t.numel(); ++i) {
    double v = t.get_f64(i);
    s.min = std::min(s.min, v); s.max = std::max(s.max, v); sum += v;
  }
  s.mean = sum / static_cast<double>(t.numel());
  return s;
}

// run --max-loop-iterations (a bad-input guard, docs/security.md).
int64_t g_max_loop_iterations = LoadOptions{}.max_loop_iterations;

int cmd_run(const std::string& model_path, const std::vector<std::string>& inputs, const std::vector<std::string>& dims,
            int threads, const std::string& out_dir, bool as_json, std::string device, const std::string& hw) {
  LoadOptions lo;
  lo.threads = threads;
  lo.max_loop_iterations = g_max_loop_iterations;
  lo.dims = parse_dims(dims);
  if (device.empty()) device = hw.empty() ? "cpu" : "all";
  if (device != "cpu") {
    if (hw.empty()) throw Error("--device " + device + " needs --hw NAME|FILE (see `opennpu hw list`)");
    lo.compute_units = ComputeUnits::all;
    lo.hardware = hw;
  }
  Progress progress(!as_json);
  lo.progress = [&progress](const std::string& stage, double) { progress.stage(stage); };
  Model m = Model::load(model_path, lo);
  if (device == "npu") {  // NPU only: refuse rather than fall back silently
    std::string off;
    int n_off = 0;
    for (const auto& p : m.impl().program->placements)
      if (!p.npu && n_off++ < 5) off += fmt::format("\n  node '{}' ({}): {}", p.node, p.op, p.reason);
    if (n_off)
      throw Error(fmt::format("--device npu: {} node(s) cannot run on {} (use --device all for CPU fallback):{}{}", n_off,
                              m.impl().hw->name, off, n_off > 5 ? "\n  ..." : ""));
  }
  NamedTensors feeds;
  for (const auto& in : inputs) {
    auto [k, v] = split_eq(in, "--input");
    feeds[k] = load_input(v);
  }
  progress.stage(m.impl().uses_npu() ? "predict (NPU functional simulation + CPU segments)" : "predict");
  NamedTensors out = m.predict(feeds);
  progress.done();
  if (!out_dir.empty()) {
    std::error_code ec;
    fs::create_directories(out_dir, ec);
    if (ec) throw Error(fmt::format("cannot create output directory '{}': {}", out_dir, ec.message()));
  }
  json j = {{"model", model_path}, {"outputs", json::array()}};
  for (const auto& o : m.outputs()) {
    const Tensor& t = out.at(o.name);
    std::string path;
    if (!out_dir.empty()) {
      path = (fs::path(out_dir) / (sanitize(o.name) + ".npy")).string();
      write_npy(path, t);
    }
    Stats s = stats_of(t);
    j["outputs"].push_back({{"name", o.name}, {"dtype", dtype_name(t.dtype())}, {"shape", t.shape()},
                            {"min", s.min}, {"max", s.max}, {"mean", s.mean}, {"file", path}});
    if (!as_json)
      std::cout << fmt::format("{}\t{}\t{}\tmin {:.6g}\tmax {:.6g}\tmean {:.6g}{}\n", o.name, dtype_name(t.dtype()),
                               shape_str(t.shape()), s.min, s.max, s.mean, path.empty() ? "" : "\t" + path);
  }
  if (m.impl().uses_npu()) {
    const auto& im = m.impl();
    const auto& t = im.timing;
    int64_t flops_npu = 0, flops_all = 0;
    for (const auto& L : im.program->layers) flops_npu += L.flops;
    flops_all = flops_npu + cpu_flops_estimate(im);
    int on_npu = 0;
    for (const auto& p : im.program->placements) on_npu += p.npu;
    const double cpu_s = im.last_cpu_seconds;
    json s = {{"hardware", im.hw->name},
              {"latency_ms", (t.total_seconds() + cpu_s) * 1e3},
              {"cpu_segments_ms", cpu_s * 1e3},
              {"npu_ms", t.npu_seconds * 1e3},
              {"dispatch_ms", t.dispatch_seconds * 1e3},
              {"energy_mj", t.energy.total_pj() * 1e-9},
              {"dram_mb", (t.dram_read + t.dram_write) / 1e6},
              {"mac_utilization", t.mac_utilization},
              {"nodes_on_npu", on_npu},
              {"nodes", im.program->placements.size()},
              {"flops_on_npu_share", flops_all ? static_cast<double>(flops_npu) / flops_all : 0.0}};
    j["npu"] = s;
    if (!as_json)
      std::cout << fmt::format("simulated on {}: {:.3f} ms (NPU {:.3f} ms + dispatch {:.3f} ms + CPU segments {:.3f} ms "
                               "measured here), {:.3f} mJ, {}/{} nodes and {:.1f}% of FLOPs on the NPU, MAC utilization {:.1f}%\n",
                               im.hw->name, (t.total_seconds() + cpu_s) * 1e3, t.npu_seconds * 1e3, t.dispatch_seconds * 1e3, cpu_s * 1e3,
                               t.energy.total_pj() * 1e-9, on_npu, im.program->placements.size(),
                               100.0 * s["flops_on_npu_share"].get<double>(), 100 * t.mac_utilization);
  }
  if (as_json) std::cout << j.dump(2) << "\n";
  return 0;
}

void count_ops(const ir::Graph& g, std::map<std::string, int>& hist) {
  for (const auto& n : g.nodes) {
    hist[(n.domain.empty() ? "" : n.domain + ".") + n.op_type]++;
    for (const auto& [_, a] : n.attrs) {
      if (a.g) count_ops(*a.g, hist);
      for (auto& sg : a.graphs) count_ops(*sg, hist);
    }
  }
}

int cmd_info(const std::string& model_path, const std::vector<std::string>& dims, bool as_json) {
  onnx_import::ImportOptions io;
  io.dims = parse_dims(dims);
  ir::Model m = onnx_import::load_model(model_path, io);
  std::map<std::string, int> hist;
  count_ops(m.graph, hist);
  int64_t params = 0;
  for (const auto& [_, t] : m.graph.initializers) params += t.numel();
  auto unsupported = cpu::Executor::unsupported_nodes(m);
  json j;
  j["model"] = model_path;
  j["ir_version"] = m.ir_version;
  j["producer"] = m.producer;
  j["opsets"] = json::object();
  for (auto& [d, v] : m.opsets) j["opsets"][d.empty() ? "ai.onnx" : d] = v;
  j["inputs"] = json::array();
  for (const auto& v : m.graph.inputs)
    if (!m.graph.is_initializer(v.name)) j["inputs"].push_back({{"name", v.name}, {"type", v.describe()}});
  j["outputs"] = json::array();
  for (const auto& v : m.graph.outputs) j["outputs"].push_back({{"name", v.name}, {"type", v.describe()}});
  j["nodes"] = m.graph.nodes.size();
  j["parameters"] = params;
  j["ops"] = hist;
  j["unsupported"] = unsupported;
  if (as_json) { std::cout << j.dump(2) << "\n"; return 0; }
  std::cout << fmt::format("model      {}\nproducer   {}\nir_version {}\nopsets    ", model_path, m.producer, m.ir_version);
  for (auto& [d, v] : m.opsets) std::cout << fmt::format(" {}={}", d.empty() ? "ai.onnx" : d, v);
  std::cout << "\ninputs\n";
  for (auto& i : j["inputs"]) std::cout << fmt::format("  {}: {}\n", i["name"].get<std::string>(), i["type"].get<std::string>());
  std::cout << "outputs\n";
  for (auto& i : j["outputs"]) std::cout << fmt::format("  {}: {}\n", i["name"].get<std::string>(), i["type"].get<std::string>());
  std::cout << fmt::format("nodes      {}\nparameters {}\nops\n", m.graph.nodes.size(), params);
  for (auto& [op, c] : hist) std::cout << fmt::format("  {:28} {}\n", op, c);
  if (unsupported.empty()) std::cout << "every op is supported by this build\n";
  else {
    std::cout << "not supported by this build:\n";
    for (auto& u : unsupported) std::cout << "  " << u << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"opennpu: an open Neural Engine. Run ONNX models on the CPU and on simulated NPUs."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "opennpu 0.1.0");

  std::string model;
  std::vector<std::string> inputs, dims;
  int threads = 0;
  std::string out_dir;
  bool as_json = false;
  uint64_t max_mem_mb = 0;
  app.add_option("--max-memory", max_mem_mb, "Largest single tensor in MiB (default 16384)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40))
      ->each([](const std::string& v) {
        char* end = nullptr;
        unsigned long long mb = std::strtoull(v.c_str(), &end, 10);
        if (!v.empty() && !*end && mb > 0 && mb < (1ull << 40)) set_max_tensor_bytes(mb << 20);
      });

  auto* run = app.add_subcommand("run", "Run a model on the given inputs and write its outputs as .npy");
  run->add_option("model", model, "ONNX model file")->required();
  run->add_option("--input,-i", inputs, "NAME=FILE.npy (or FILE.pb, a TensorProto); repeatable");
  run->add_option("--dim", dims, "Bind a symbolic dimension: NAME=VALUE; repeatable");
  run->add_option("--threads,-t", threads, "Threads (default: all cores)");
  run->add_option("--output-dir,-o", out_dir, "Write DIR/<output>.npy for each model output");
  std::string device, hw;
  run->add_option("--device", device, "cpu, npu or all (NPU with CPU fallback; the default when --hw is given)")
      ->check(CLI::IsMember({"cpu", "npu", "all"}));
  run->add_option("--hw", hw, "Hardware preset name or TOML file for the NPU (see `opennpu hw list`)");
  run->add_flag("--json", as_json, "Print one JSON object instead of the table");
  run->add_option("--max-loop-iterations", g_max_loop_iterations, "Stop any Loop after N iterations (default 1000000)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 62));

  auto* info = app.add_subcommand("info", "Show a model's inputs, outputs, opsets, ops and what this build cannot run");
  info->add_option("model", model, "ONNX model file")->required();
  info->add_option("--dim", dims, "Bind a symbolic dimension: NAME=VALUE; repeatable");
  info->add_flag("--json", as_json, "Print one JSON object");

  run->callback([&] { throw CommandDone{cmd_run(model, inputs, dims, threads, out_dir, as_json, device, hw)}; });
  info->callback([&] { throw CommandDone{cmd_info(model, dims, as_json)}; });
  add_npu_commands(app);
  add_model_commands(app);
  add_ops_command(app);
  add_profile_commands(app);
  add_explore_command(app);
  add_quantize_command(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help/--version exit 0; any usage error prints CLI11's message and exits 2.
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  } catch (const CommandDone& d) {
    return d.rc;
  } catch (const Error& e) {
    std::cerr << "opennpu: error: " << e.what() << "\n";
    return 1;
  } catch (const std::bad_alloc&) {
    std::cerr << "opennpu: error: out of memory\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "opennpu: internal error: " << e.what() << "\n";
    return 3;
  }
  return 0;
}
