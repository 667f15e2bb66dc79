// `opennpu quantize`: post-training static quantization to QDQ ONNX (src/quant/quantize.h).
// Optionally measures the result against the float model on held-out seeded inputs (--eval N).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/parallel.h"
#include "opennpu/runtime.h"
#include "quant/quantize.h"
#include "runtime/model_impl.h"
#include "runtime/report.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tools/progress.h"

using json = nlohmann::json;
using namespace opennpu;

namespace {

// One model's column of the comparison.
json measure_column(const std::string& path, const BenchCompareArgs& a, const NamedTensors& feeds, Progress& progress,
                    const std::string& tag) {
  json col = {{"model", path}, {"file_mb", static_cast<double>(std::filesystem::file_size(path)) / 1e6}};
  LoadOptions lo;
  lo.threads = a.threads;
  lo.dims = a.dims;
  progress.stage(tag + ": CPU load");
  Model cpu = Model::load(path, lo);
  progress.stage(tag + ": CPU timing");
  col["cpu_median_ms"] = time_runs(cpu, feeds, a.runs, a.warmup).median * 1e3;
  if (a.device != "cpu") {
    lo.compute_units = ComputeUnits::all;
    lo.hardware = a.hw;
    progress.stage(tag + ": NPU compile");
    Model npu = Model::load(path, lo);
    progress.stage(tag + ": NPU simulation");
    npu.predict(feeds);  // CPU segments of the partitioned model are measured by running them
    const auto& im = npu.impl();
    const auto& t = im.timing;
    int on_npu = 0;
    for (const auto& p : im.program->placements) on_npu += p.npu;
    col["hardware"] = im.hw->name;
    col["npu_latency_ms"] = (t.total_seconds() + im.last_cpu_seconds) * 1e3;
    col["npu_energy_mj"] = t.energy.total_pj() * 1e-9;
    col["npu_dram_mb"] = (t.dram_read + t.dram_write) / 1e6;
    col["npu_mac_utilization"] = t.mac_utilization;
    col["nodes_on_npu"] = on_npu;
    col["nodes"] = im.program->placements.size();
  }
  return col;
}

}  // namespace

void bench_compare(const BenchCompareArgs& a) {
  if (a.runs < 1) throw Error("--runs must be at least 1");
  if (a.compare_samples < 1) throw Error("--compare-samples must be at least 1");
  Progress progress(!a.json_out);
  LoadOptions lo;
  lo.threads = a.threads;
  lo.dims = a.dims;
  progress.stage("loading both models (CPU)");
  Model ref = Model::load(a.model, lo);
  Model other = Model::load(a.compare, lo);
  auto inputs = quant::random_inputs(ref.inputs(), a.compare_samples, quant::held_out_seed(a.seed));
  progress.stage(fmt::format("accuracy over {} seeded inputs", a.compare_samples));
  quant::Agreement ag = quant::compare_outputs(ref, other, inputs);
  json base = measure_column(a.model, a, inputs[0], progress, "A");
  json cmp = measure_column(a.compare, a, inputs[0], progress, "B");
  progress.done();
  auto ratio = [](const json& x, const json& y, const char* k) -> json {
    if (!x.contains(k) || !y.contains(k) || y[k].get<double>() <= 0) return nullptr;
    return x[k].get<double>() / y[k].get<double>();
  };
  json j = {{"model", a.model}, {"compare", a.compare}, {"device", a.device}, {"threads", a.threads},
            {"runs", a.runs}, {"seed", a.seed},
            {"accuracy", {{"output", ag.output}, {"samples", ag.samples}, {"cosine_min", ag.cos_min},
                          {"cosine_mean", ag.cos_mean}, {"centered_cosine", ag.centered_cos}, {"top1_rows", ag.rows}, {"top1_agree", ag.top1_agree},
                          {"top1_agreement", ag.top1_rate()}}},
            {"a", base}, {"b", cmp},
            {"ratios_a_over_b", {{"cpu_latency", ratio(base, cmp, "cpu_median_ms")},
                                 {"npu_latency", ratio(base, cmp, "npu_latency_ms")},
                                 {"npu_energy", ratio(base, cmp, "npu_energy_mj")},
                                 {"file_size", ratio(base, cmp, "file_mb")}}}};
  if (!a.html.empty()) {
    std::ofstream f(a.html, std::ios::binary | std::ios::trunc);
    f << report::compare_html(j);
    if (!f) throw Error(fmt::format("cannot write {}", a.html));
    j["html"] = a.html;
  }
  if (a.json_out) {
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::cout << fmt::format("A = {}\nB = {}\n", a.model, a.compare);
  std::cout << fmt::format("B vs A on {} seeded inputs: output '{}' cosine min {:.5f} mean {:.5f}, centered {:.5f}; "
                           "top-1 agreement {}/{} ({:.1f}%)\n\n", ag.samples, ag.output, ag.cos_min, ag.cos_mean,
                           ag.centered_cos, ag.top1_agree,
                           ag.rows, 100 * ag.top1_rate());
  std::cout << fmt::format("{:<30} {:>12} {:>12} {:>8}\n", "", "A", "B", "A / B");
  auto row = [&](const char* label, const char* k, const char* f) {
    if (!base.contains(k)) return;
    json r = ratio(base, cmp, k);
    std::cout << fmt::format("{:<30} {:>12} {:>12} {:>8}\n", label, fmt::format(fmt::runtime(f), base[k].get<double>()),
                             fmt::format(fmt::runtime(f), cmp[k].get<double>()),
                             r.is_null() ? "-" : fmt::format("{:.2f}x", r.get<double>()));
  };
  row("CPU median latency (ms)", "cpu_median_ms", "{:.3f}");
  if (a.device != "cpu") {
    std::cout << fmt::format("NPU: {} (simulated)\n", base["hardware"].get<std::string>());
    row("NPU latency (ms)", "npu_latency_ms", "{:.3f}");
    row("NPU energy (mJ)", "npu_energy_mj", "{:.3f}");
    row("NPU DRAM traffic (MB)", "npu_dram_mb", "{:.1f}");
    std::cout << fmt::format("{:<30} {:>12} {:>12}\n", "nodes on the NPU",
                             fmt::format("{}/{}", base["nodes_on_npu"].get<int>(), base["nodes"].get<size_t>()),
                             fmt::format("{}/{}", cmp["nodes_on_npu"].get<int>(), cmp["nodes"].get<size_t>()));
  }
  row("model file (MB)", "file_mb", "{:.1f}");
}

void add_quantize_command(CLI::App& app) {
  struct Opts {
    std::string model, out, calib, method = "minmax";
    int calib_random = 0, eval = 0, threads = 0;
    uint64_t seed = 0;
    double percentile = 99.99;
    bool per_channel = false, per_tensor = false, json_out = false;
  };
  auto o = std::make_shared<Opts>();
  auto* q = app.add_subcommand("quantize", "Post-training static int8 quantization to QDQ ONNX");
  q->add_option("model", o->model, "float32 ONNX model")->required();
  q->add_option("--out,-o", o->out, "Quantized model to write")->required();
  auto* calib = q->add_option("--calib", o->calib, "Folder of calibration .npy files (one per sample)");
  q->add_option("--calib-random", o->calib_random, "Calibrate on N seeded random inputs (standard normal)")
      ->excludes(calib);
  q->add_option("--seed", o->seed, "Seed of --calib-random (default 0)");
  q->add_option("--method", o->method, "Activation ranges: minmax (default), percentile or entropy")
      ->check(CLI::IsMember({"minmax", "percentile", "entropy"}));
  q->add_option("--percentile", o->percentile, "--method percentile: percent of |x| kept (default 99.99)");
  auto* pc = q->add_flag("--per-channel", o->per_channel, "Weights per output channel (the default)");
  q->add_flag("--per-tensor", o->per_tensor, "Weights per tensor instead")->excludes(pc);
  q->add_option("--eval", o->eval, "Then compare with the float model on N held-out seeded inputs");
  q->add_option("--threads,-t", o->threads, "CPU threads for --eval (default: all cores)");
  q->add_flag("--json", o->json_out, "Print one JSON object");
  q->callback([o] {
    if (o->calib.empty() && o->calib_random <= 0)
      throw Error("give calibration data: --calib DIR (.npy files) or --calib-random N (N >= 1)");
    if (o->eval < 0) throw Error("--eval must be >= 0");
    quant::QuantizeOptions qo;
    qo.calib_dir = o->calib;
    qo.calib_random = o->calib_random;
    qo.seed = o->seed;
    qo.method = quant::parse_method(o->method);
    qo.percentile = o->percentile;
    qo.per_channel = !o->per_tensor;
    Progress progress(!o->json_out);
    progress.stage("calibrating");
    qo.progress = [&progress](int done, int total) {
      int w = 24, f = total ? done * w / total : w;
      progress.stage(fmt::format("calibrating [{}{}] {}/{} batches", std::string(f, '#'), std::string(w - f, '.'),
                                 done, total));
    };
    quant::QuantizeReport r = quant::quantize_model(o->model, o->out, qo);
    json j = {{"model", o->model}, {"out", o->out}, {"method", r.method}, {"calibration_samples", r.calib_samples},
              {"weights", o->per_tensor ? "per-tensor" : "per-channel"},
              {"quantized_nodes", {{"Conv", r.conv}, {"MatMul", r.matmul}, {"Gemm", r.gemm}}},
              {"activation_qdq_pairs", r.activations}, {"absorbed_activations", r.absorbed},
              {"float_weight_bytes", r.float_weight_bytes}, {"int8_weight_bytes", r.int8_weight_bytes},
              {"input_file_bytes", r.input_file_bytes}, {"output_file_bytes", r.output_file_bytes},
              {"notes", r.notes}};
    json rs = json::array();
    for (const auto& a : r.ranges)
      rs.push_back({{"name", a.name}, {"observed_min", a.observed_min}, {"observed_max", a.observed_max},
                    {"min", a.lo}, {"max", a.hi}, {"scale", a.scale}, {"zero_point", a.zero_point}});
    j["activations"] = rs;
    if (o->eval > 0) {
      progress.stage("evaluating: loading both models");
      LoadOptions lo;
      lo.threads = o->threads;
      Model ref = Model::load(o->model, lo);
      Model qm = Model::load(o->out, lo);
      progress.stage(fmt::format("evaluating on {} held-out inputs", o->eval));
      auto inputs = quant::random_inputs(ref.inputs(), o->eval, quant::held_out_seed(o->seed));
      quant::Agreement a = quant::compare_outputs(ref, qm, inputs);
      j["eval"] = {{"samples", a.samples}, {"output", a.output}, {"cosine_min", a.cos_min},
                   {"cosine_mean", a.cos_mean}, {"centered_cosine", a.centered_cos}, {"top1_rows", a.rows}, {"top1_agree", a.top1_agree},
                   {"top1_agreement", a.top1_rate()}};
    }
    progress.done();
    if (o->json_out) {
      std::cout << j.dump(2) << "\n";
      throw CommandDone{0};
    }
    std::cout << fmt::format("{} -> {} ({} calibration, {} samples)\n", o->model, o->out, r.method, r.calib_samples);
    std::cout << fmt::format("  weights int8 {}: {} Conv, {} MatMul, {} Gemm; {:.1f} MB float -> {:.1f} MB\n",
                             o->per_tensor ? "per tensor" : "per channel", r.conv, r.matmul, r.gemm,
                             r.float_weight_bytes / 1e6, r.int8_weight_bytes / 1e6);
    std::cout << fmt::format("  activations int8 per tensor: {} QuantizeLinear/DequantizeLinear pairs, {} Relu/Clip "
                             "absorbed\n", r.activations, r.absorbed);
    std::cout << fmt::format("  file {:.1f} MB -> {:.1f} MB\n", r.input_file_bytes / 1e6, r.output_file_bytes / 1e6);
    for (const auto& n : r.notes) std::cout << "  note: " << n << "\n";
    if (j.contains("eval")) {
      const auto& e = j["eval"];
      std::cout << fmt::format("  vs float32 on {} held-out inputs: cosine min {:.5f} mean {:.5f}, centered (input-"
                               "dependent part) {:.5f}, top-1 agreement {}/{} ({:.1f}%)\n", e["samples"].get<int>(),
                               e["cosine_min"].get<double>(), e["cosine_mean"].get<double>(),
                               e["centered_cosine"].get<double>(), e["top1_agree"].get<int64_t>(),
                               e["top1_rows"].get<int64_t>(), 100 * e["top1_agreement"].get<double>());
    }
    throw CommandDone{0};
  });
}
