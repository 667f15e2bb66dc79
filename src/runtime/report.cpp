// Profiling reports: one timeline (build_profile), then a Chrome trace, an HTML page and a JSON
// summary drawn from it. See report.h.
#include "runtime/report.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <unordered_map>

#include <fmt/format.h>

#include "cpu/executor.h"

namespace opennpu::report {

using json = nlohmann::json;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

const char* kind_name(npu::LayerKind k) {
  switch (k) {
    case npu::LayerKind::Gemm: return "mac";
    case npu::LayerKind::Vector: return "vector";
    case npu::LayerKind::Move: return "dma";
    case npu::LayerKind::View: return "view";
  }
  return "view";
}

// FLOPs of a node left on the CPU. Only the heavy ops are counted (Conv, Gemm, MatMul and the
// recurrent layers); elementwise work is small next to them. 0 when shapes are not static.
int64_t cpu_node_flops(const ir::Model& m, const ir::Node& n) {
  auto shape_of = [&](const std::string& v) -> Shape {
    if (v.empty()) return {};
    auto it = m.graph.initializers.find(v);
    if (it != m.graph.initializers.end()) return it->second.shape();
    const auto* vi = m.graph.find_value_info(v);
    if (vi && vi->fully_static()) return vi->static_shape();
    return {};
  };
  try {
    if ((n.op_type == "LSTM" || n.op_type == "GRU" || n.op_type == "RNN") && n.inputs.size() >= 3) {
      Shape x = shape_of(n.inputs[0]), w = shape_of(n.inputs[1]), r = shape_of(n.inputs[2]);
      if (x.size() == 3 && w.size() == 3 && r.size() == 3) return 2 * x[0] * x[1] * w[0] * w[1] * (w[2] + r[2]);
    } else if ((n.op_type == "MatMul" || n.op_type == "Gemm" || n.op_type == "Conv") && n.inputs.size() >= 2 &&
               !n.outputs.empty()) {
      Shape o = shape_of(n.outputs[0]), w = shape_of(n.inputs[1]);
      if (o.empty() || w.size() < 2 || w[0] == 0) return 0;
      int64_t k = n.op_type == "Conv" ? checked_numel(w) / w[0]
                  : (n.op_type == "Gemm" && n.attr_i("transB", 0)) ? w.back() : w[w.size() - 2];
      return 2 * checked_numel(o) * k;
    }
  } catch (const Error&) {
    // A shape too large to count is not worth failing a report for.
  }
  return 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Measuring the CPU side

CpuTimes time_cpu_segments(const Model& m, const NamedTensors& feeds, int warmup) {
  const auto& im = m.impl();
  if (!im.uses_npu()) throw Error("profiling needs a model loaded for an NPU (give --hw)");
  for (int i = 0; i < warmup; ++i) m.predict(feeds);
  const auto& prog = *im.program;
  cpu::check_feeds(im.model.graph, feeds);
  CpuTimes ct;
  ct.segment_seconds.assign(prog.segments.size(), 0.0);
  ct.node_seconds.assign(prog.segments.size(), {});

  // The same walk as Model::Impl::predict_partitioned, with a timed executor per CPU segment.
  npu::ValueMap values;
  for (const auto& [k, v] : im.model.graph.initializers) values[k] = v;
  for (const auto& [k, v] : feeds) values[k] = v;
  for (size_t si = 0; si < prog.segments.size(); ++si) {
    const auto& seg = prog.segments[si];
    if (seg.npu) {
      npu::run_segment(prog, seg, *im.hw, values);
      continue;
    }
    const CpuSegment& cs = *im.cpu_segments.at(si);
    // The segment's model holds copies of the graph's nodes, in the segment's node order; the
    // executor runs its own copy of that (CPU passes), so nodes are matched by name.
    std::unordered_map<std::string, int> graph_index;
    for (size_t k = 0; k < cs.model.graph.nodes.size() && k < seg.nodes.size(); ++k)
      graph_index[cs.model.graph.nodes[k].name] = seg.nodes[k];
    auto& rec = ct.node_seconds[si];
    cpu::RunOptions ro;
    ro.on_node = [&](const ir::Node& n, double s) {
      auto it = graph_index.find(n.name);
      if (it != graph_index.end()) rec.emplace_back(it->second, s);
    };
    cpu::Executor exec(cs.model, ro);
    cpu::Scope scope;
    for (const auto& [k, v] : values) scope.values.emplace(k, v);
    double t0 = now_s();
    auto outs = exec.run_graph(cs.model.graph, scope, cs.outputs);
    ct.segment_seconds[si] = now_s() - t0;
    for (size_t i = 0; i < outs.size(); ++i) values[cs.outputs[i]] = outs[i];
  }
  return ct;
}

// ---------------------------------------------------------------------------------------------
// One timeline

Profile build_profile(const Model& m, const CpuTimes& cpu, const std::string& model_name) {
  const auto& im = m.impl();
  if (!im.uses_npu()) throw Error("profiling needs a model loaded for an NPU (give --hw)");
  const auto& prog = *im.program;
  const auto& hw = *im.hw;
  const auto& nodes = im.model.graph.nodes;
  if (prog.placements.size() != nodes.size())
    throw Error(fmt::format("internal: {} placements for {} nodes", prog.placements.size(), nodes.size()));
  if (cpu.segment_seconds.size() != prog.segments.size())
    throw Error("internal: CPU times were measured for another program");

  Profile p;
  p.model_name = model_name;
  p.hw = &hw;
  p.program = &prog;
  p.graph = &im.model;
  p.timing = im.timing;
  p.clock_hz = hw.clock_ghz * 1e9;

  // Rows: one per node, device and reason from the placement.
  p.rows.resize(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    NodeRow& r = p.rows[i];
    r.node = static_cast<int>(i);
    r.name = nodes[i].name;
    r.op = nodes[i].op_type;
    r.device = prog.placements[i].npu ? "npu" : "cpu";
    r.kind = prog.placements[i].npu ? "fused" : "cpu";
    r.reason = prog.placements[i].reason;
    p.nodes_on_npu += prog.placements[i].npu;
  }
  // Layers: the compiler emits them in node order within each segment, skipping activations it
  // fused into the MAC layer before them, so walking both lists side by side pairs them up.
  p.layer_row.assign(prog.layers.size(), -1);
  for (size_t si = 0; si < prog.segments.size(); ++si) {
    const auto& seg = prog.segments[si];
    size_t li = 0;
    int last_layer_row = -1;
    for (int ni : seg.nodes) {
      NodeRow& r = p.rows.at(ni);
      r.segment = static_cast<int>(si);
      if (!seg.npu) continue;
      if (li < seg.layers.size() && prog.layers.at(seg.layers[li]).name == r.name) {
        int L = seg.layers[li++];
        r.layer = L;
        r.kind = kind_name(prog.layers[L].kind);
        p.layer_row[L] = ni;
        last_layer_row = ni;
      } else if (last_layer_row >= 0) {
        r.fused_into = p.rows[last_layer_row].name;
      }
    }
  }
  // Per-layer statistics from the timing simulation.
  std::vector<int> task_count(prog.layers.size(), 0);
  for (const auto& t : prog.tasks)
    if (t.layer >= 0 && t.layer < static_cast<int>(prog.layers.size())) task_count[t.layer]++;
  for (size_t L = 0; L < prog.layers.size(); ++L) {
    if (p.layer_row[L] < 0) continue;
    NodeRow& r = p.rows[p.layer_row[L]];
    const auto& ls = p.timing.layers.at(L);
    r.macs = ls.macs;
    r.flops = prog.layers[L].flops;
    r.dram_read = ls.dram_read;
    r.dram_write = ls.dram_write;
    r.cache_read = ls.cache_read;
    r.cache_write = ls.cache_write;
    r.attributed = static_cast<double>(ls.attributed) / p.clock_hz;
    r.stall_memory = ls.stall_memory;
    r.energy_pj = ls.energy_pj;
    p.flops_npu += r.flops;
  }
  for (auto& r : p.rows)
    if (r.device == "cpu") {
      r.flops = cpu_node_flops(im.model, nodes[r.node]);
      p.flops_cpu += r.flops;
    }

  // The timeline, segment by segment.
  p.task_t0.assign(prog.tasks.size(), -1);
  p.task_t1.assign(prog.tasks.size(), -1);
  std::vector<std::vector<int>> seg_tasks(prog.segments.size());
  std::vector<int> seg_of_layer(prog.layers.size(), -1);
  for (size_t si = 0; si < prog.segments.size(); ++si)
    for (int L : prog.segments[si].layers) seg_of_layer.at(L) = static_cast<int>(si);
  for (size_t ti = 0; ti < prog.tasks.size(); ++ti) {
    int L = prog.tasks[ti].layer;
    if (L >= 0 && L < static_cast<int>(seg_of_layer.size()) && seg_of_layer[L] >= 0)
      seg_tasks[seg_of_layer[L]].push_back(static_cast<int>(ti));
  }
  // The simulator runs all NPU segments as one program, and lets tasks without pending inputs
  // (weight loads, say) start early, even before an earlier segment has finished. So NPU tasks
  // keep their simulated times, shifted by the CPU segments and runtime overheads that come
  // before their segment in segment order; a CPU segment starts when everything before it on the
  // timeline has ended. The timeline then ends at the simulated latency (when the last segment
  // also finishes last), and nothing the simulator overlapped is pulled apart.
  const double bw = hw.dram_bytes_per_second();
  double cursor = 0, shift = 0, cpu_total = 0;
  for (size_t si = 0; si < prog.segments.size(); ++si) {
    const auto& seg = prog.segments[si];
    if (!seg.npu) {
      Span s;
      s.segment = static_cast<int>(si);
      s.t0 = cursor;
      double node_t = cursor;
      for (const auto& [ni, sec] : cpu.node_seconds[si]) {
        NodeRow& r = p.rows.at(ni);
        r.t0 = node_t;
        r.t1 = node_t + sec;
        r.attributed = sec;
        r.timed = true;
        node_t = r.t1;
      }
      // The segment's wall time covers its nodes plus the executor's own bookkeeping.
      s.t1 = std::max(node_t, cursor + cpu.segment_seconds[si]);
      s.name = fmt::format("CPU segment {}", si);
      s.detail = fmt::format("{} nodes, measured", seg.nodes.size());
      cpu_total += s.t1 - s.t0;
      shift += s.t1 - s.t0;
      cursor = s.t1;
      p.cpu_spans.push_back(s);
      continue;
    }
    if (seg.layers.empty()) continue;  // nothing dispatched (the simulator charges no dispatch)
    const double d = hw.dispatch_overhead_us * 1e-6;
    p.overheads.push_back({"dispatch", fmt::format("NPU segment {}: per-dispatch overhead", si), cursor, cursor + d,
                           static_cast<int>(si)});
    cursor += d;
    shift += d;
    if (seg.boundary_bytes > 0) {
      // Tensors crossing from the CPU are written to DRAM and read back (as the simulator charges).
      double x = 2.0 * static_cast<double>(seg.boundary_bytes) / bw;
      p.overheads.push_back({"CPU\u2194NPU transfer", fmt::format("NPU segment {}: {} bytes through DRAM", si, seg.boundary_bytes),
                             cursor, cursor + x, static_cast<int>(si)});
      cursor += x;
      shift += x;
    }
    double seg_end = cursor;
    for (int ti : seg_tasks[si]) {
      p.task_t0[ti] = shift + static_cast<double>(p.timing.tasks[ti].start) / p.clock_hz;
      p.task_t1[ti] = shift + static_cast<double>(p.timing.tasks[ti].end) / p.clock_hz;
      seg_end = std::max(seg_end, p.task_t1[ti]);
    }
    // Layers without tasks (views) take no time: put them where the previous layer ended.
    double prev_end = cursor;
    for (int L : seg.layers) {
      if (p.layer_row[L] < 0) continue;
      NodeRow& r = p.rows[p.layer_row[L]];
      if (task_count[L] > 0) {
        const auto& ls = p.timing.layers[L];
        r.t0 = shift + static_cast<double>(ls.start) / p.clock_hz;
        r.t1 = shift + static_cast<double>(ls.end) / p.clock_hz;
        r.timed = true;
      } else {
        r.t0 = r.t1 = prev_end;
      }
      prev_end = std::max(prev_end, r.t1);
    }
    cursor = seg_end;
  }
  const double t = cursor;
  p.timing.cpu_seconds = cpu_total;
  p.timeline_seconds = t;
  return p;
}

// ---------------------------------------------------------------------------------------------
// Chrome trace events

namespace {

constexpr int kPidModel = 0, kPidCpu = 1, kPidCore0 = 2;
constexpr int kTidRuntime = 1, kTidLayers = 2;  // in the model process
constexpr int kTidMac = 1, kTidVec = 2, kTidDmaIn = 3, kTidDmaOut = 4;
constexpr int kSubTrackStride = 10;  // overlap track k of an engine: its tid + 10 k

int engine_tid(npu::Engine e) {
  switch (e) {
    case npu::Engine::Mac: return kTidMac;
    case npu::Engine::Vec: return kTidVec;
    case npu::Engine::DmaIn: return kTidDmaIn;
    case npu::Engine::DmaOut: return kTidDmaOut;
  }
  return kTidVec;
}

std::string layer_label(const Profile& p, int L) {
  const auto& layer = p.program->layers.at(L);
  return layer.fused.empty() ? fmt::format("{} ({})", layer.name, layer.op)
                             : fmt::format("{} ({}+{})", layer.name, layer.op, layer.fused);
}

std::string tile_str(const npu::Task& t, const npu::Layer& L) {
  if (t.engine == npu::Engine::Mac || (L.kind == npu::LayerKind::Gemm && t.n1 > t.n0))
    return fmt::format("b{} m[{},{}) n[{},{}) k[{},{})", t.b, t.m0, t.m1, t.n0, t.n1, t.k0, t.k1);
  return fmt::format("rows[{},{})", t.m0, t.m1);
}

json meta(const char* what, int pid, int tid, const json& args) {
  json e = {{"name", what}, {"ph", "M"}, {"pid", pid}, {"args", args}};
  if (tid >= 0) e["tid"] = tid;
  return e;
}

json complete(const std::string& name, const std::string& cat, int pid, int tid, double t0, double t1, json args) {
  return {{"name", name}, {"cat", cat}, {"ph", "X"}, {"pid", pid}, {"tid", tid},
          {"ts", t0 * 1e6}, {"dur", std::max(0.0, t1 - t0) * 1e6}, {"args", std::move(args)}};
}

}  // namespace

json chrome_trace(const Profile& p) {
  const auto& prog = *p.program;
  json ev = json::array();
  // Metadata: names and order of processes and threads.
  ev.push_back(meta("process_name", kPidModel, -1, {{"name", "model: " + p.model_name}}));
  ev.push_back(meta("process_sort_index", kPidModel, -1, {{"sort_index", 0}}));
  ev.push_back(meta("process_name", kPidCpu, -1, {{"name", "CPU"}}));
  ev.push_back(meta("process_sort_index", kPidCpu, -1, {{"sort_index", 1}}));
  ev.push_back(meta("thread_name", kPidCpu, 1, {{"name", "CPU"}}));
  ev.push_back(meta("thread_name", kPidModel, kTidRuntime, {{"name", "runtime"}}));
  ev.push_back(meta("thread_sort_index", kPidModel, kTidRuntime, {{"sort_index", 2}}));
  for (int c = 0; c < p.hw->cores; ++c) {
    int pid = kPidCore0 + c;
    ev.push_back(meta("process_name", pid, -1, {{"name", fmt::format("NPU core {}", c)}}));
    ev.push_back(meta("process_sort_index", pid, -1, {{"sort_index", 2 + c}}));
  }

  // NPU tasks. An engine serves one task at a time, but a DMA engine pipelines its requests: a
  // transfer's span includes the DRAM latency, during which the next transfer already moves
  // bytes. Trace viewers need the events of one track to nest, so a task that overlaps the one
  // before it on its engine goes to an extra track of that engine (first fit).
  std::vector<size_t> order;
  for (size_t ti = 0; ti < prog.tasks.size(); ++ti)
    if (p.task_t0[ti] >= 0) order.push_back(ti);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p.task_t0[a] < p.task_t0[b]; });
  std::map<std::pair<int, int>, std::vector<double>> track_ends;  // (core, engine tid) -> end per sub-track
  for (size_t ti : order) {
    const auto& task = prog.tasks[ti];
    auto& ends = track_ends[{task.core, engine_tid(task.engine)}];
    size_t k = 0;
    while (k < ends.size() && ends[k] > p.task_t0[ti] + 1e-12) ++k;
    if (k == ends.size()) ends.push_back(0);
    ends[k] = p.task_t1[ti];
    const int tid = engine_tid(task.engine) + kSubTrackStride * static_cast<int>(k);
    const auto& L = prog.layers.at(task.layer);
    const auto& tt = p.timing.tasks.at(ti);
    json args = {{"layer", L.name}, {"tile", tile_str(task, L)}, {"bytes", task.bytes}, {"macs", task.macs},
                 {"cycles", tt.end - tt.start}, {"task", ti}};
    if (task.engine == npu::Engine::Mac || task.engine == npu::Engine::Vec) args["compute_cycles"] = task.cycles;
    ev.push_back(complete(layer_label(p, task.layer), kind_name(L.kind), kPidCore0 + task.core, tid, p.task_t0[ti],
                          p.task_t1[ti], std::move(args)));
  }
  for (int c = 0; c < p.hw->cores; ++c) {
    const std::pair<int, const char*> tracks[] = {
        {kTidMac, "MAC array"}, {kTidVec, "vector unit"}, {kTidDmaIn, "DMA in"}, {kTidDmaOut, "DMA out"}};
    for (auto [tid0, name] : tracks) {
      auto it = track_ends.find({c, tid0});
      size_t n = it == track_ends.end() ? 1 : std::max<size_t>(1, it->second.size());
      for (size_t k = 0; k < n; ++k) {
        int tid = tid0 + kSubTrackStride * static_cast<int>(k);
        ev.push_back(meta("thread_name", kPidCore0 + c, tid,
                          {{"name", k == 0 ? std::string(name) : fmt::format("{} (overlap {})", name, k)}}));
        ev.push_back(meta("thread_sort_index", kPidCore0 + c, tid, {{"sort_index", tid0 * 100 + static_cast<int>(k)}}));
      }
    }
  }
  // CPU segments with their nodes nested inside.
  for (const auto& s : p.cpu_spans)
    ev.push_back(complete(s.name, "cpu", kPidCpu, 1, s.t0, s.t1, {{"detail", s.detail}}));
  for (const auto& r : p.rows)
    if (r.device == "cpu" && r.timed)
      ev.push_back(complete(fmt::format("{} ({})", r.name, r.op), "cpu", kPidCpu, 1, r.t0, r.t1,
                            {{"reason", r.reason}, {"flops", r.flops}, {"measured", true}}));
  for (const auto& s : p.overheads)
    ev.push_back(complete(s.name, "runtime", kPidModel, kTidRuntime, s.t0, s.t1, {{"detail", s.detail}}));

  // One event per layer (NPU layers and CPU nodes). Layers of a pipelined engine overlap in
  // time; trace viewers need the events of one track to nest, so overlapping layers go to extra
  // "layers" tracks (first fit).
  std::vector<const NodeRow*> timed;
  for (const auto& r : p.rows)
    if (r.timed && (r.layer >= 0 || r.device == "cpu")) timed.push_back(&r);
  std::stable_sort(timed.begin(), timed.end(), [](const NodeRow* a, const NodeRow* b) { return a->t0 < b->t0; });
  std::vector<double> track_end;
  for (const NodeRow* r : timed) {
    size_t k = 0;
    while (k < track_end.size() && track_end[k] > r->t0 + 1e-12) ++k;
    if (k == track_end.size()) track_end.push_back(0);
    track_end[k] = r->t1;
    json args = {{"op", r->op}, {"device", r->device}, {"kind", r->kind}, {"flops", r->flops}};
    if (r->layer >= 0) {
      args["attributed_us"] = r->attributed * 1e6;
      args["cache_read"] = r->cache_read;
      args["cache_write"] = r->cache_write;
      args["macs"] = r->macs;
      args["dram_read"] = r->dram_read;
      args["dram_write"] = r->dram_write;
      args["energy_pj"] = r->energy_pj;
    }
    std::string name = r->layer >= 0 ? layer_label(p, r->layer) : fmt::format("{} ({})", r->name, r->op);
    ev.push_back(complete(name, r->kind, kPidModel, kTidLayers + static_cast<int>(k), r->t0, r->t1, std::move(args)));
  }
  for (size_t k = 0; k < std::max<size_t>(1, track_end.size()); ++k) {
    int tid = kTidLayers + static_cast<int>(k);
    ev.push_back(meta("thread_name", kPidModel, tid, {{"name", k == 0 ? std::string("layers") : fmt::format("layers (overlap {})", k)}}));
    ev.push_back(meta("thread_sort_index", kPidModel, tid, {{"sort_index", 10 + static_cast<int>(k)}}));
  }

  return {{"traceEvents", std::move(ev)},
          {"displayTimeUnit", "ns"},
          {"otherData", {{"model", p.model_name}, {"hardware", p.hw->name},
                         {"note", "NPU tasks: simulated (tile-level timing); CPU: measured wall time of one prediction"},
                         {"simulated_latency_ms", p.timing.total_seconds() * 1e3}}}};
}

// ---------------------------------------------------------------------------------------------
// Summary

json summary_json(const Profile& p) {
  const auto& t = p.timing;
  int64_t tasks_placed = 0;
  for (double x : p.task_t0) tasks_placed += x >= 0;
  const int64_t flops_all = p.flops_npu + p.flops_cpu;
  return {
      {"model", p.model_name},
      {"hardware", {{"name", p.hw->name}, {"description", p.hw->description}, {"cores", p.hw->cores},
                    {"clock_ghz", p.hw->clock_ghz}, {"peak_tflops_fp16", p.hw->peak_tflops_fp16()},
                    {"dram_gbps", p.hw->memory.dram_bandwidth_gbps}}},
      {"latency_ms", t.total_seconds() * 1e3},
      {"latency_breakdown_ms", {{"npu_simulated", t.npu_seconds * 1e3}, {"dispatch", t.dispatch_seconds * 1e3},
                                {"boundary", t.boundary_seconds * 1e3}, {"cpu_measured", t.cpu_seconds * 1e3}}},
      {"timeline_ms", p.timeline_seconds * 1e3},
      {"cycles", t.cycles},
      {"energy_mj", t.energy.total_pj() * 1e-9},
      {"energy_breakdown_mj", {{"mac", t.energy.mac_pj * 1e-9}, {"sram", t.energy.sram_pj * 1e-9},
                               {"dram", t.energy.dram_pj * 1e-9}, {"static", t.energy.static_pj * 1e-9}}},
      {"mac_utilization", t.mac_utilization},
      {"dram_read_mb", t.dram_read / 1e6},
      {"dram_write_mb", t.dram_write / 1e6},
      {"dram_mb", (t.dram_read + t.dram_write) / 1e6},
      {"system_cache_mb", t.cache_bytes / 1e6},
      {"nodes", p.rows.size()},
      {"nodes_on_npu", p.nodes_on_npu},
      {"segments", p.program->segments.size()},
      {"layers", p.program->layers.size()},
      {"tasks", tasks_placed},
      {"gflops_npu", p.flops_npu / 1e9},
      {"gflops_cpu_estimate", p.flops_cpu / 1e9},
      {"flops_on_npu_share", flops_all ? static_cast<double>(p.flops_npu) / static_cast<double>(flops_all) : 0.0}};
}

std::string html_escape(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: o += c;
    }
  }
  return o;
}

}  // namespace opennpu::report
