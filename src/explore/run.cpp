// explore/run.cpp — simulating (design, model) jobs and writing the results. See explore.h.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <future>
#include <list>
#include <mutex>
#include <random>
#include <sstream>

#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "explore/explore.h"
#include "core/parallel.h"
#include "npu/compiler/compiler.h"
#include "npu/sim/simulator.h"
#include "onnx/importer.h"
#include "opennpu/errors.h"
#include "opennpu/runtime.h"
#include "runtime/model_impl.h"

namespace fs = std::filesystem;

namespace opennpu::explore {

namespace {

// Fixed, locale-free number text: the same on every machine, so rows compare as strings.
std::string g(double v) { return fmt::format("{:.10g}", v); }

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) {
    if (c == '"') o += '"';
    o += c == '\n' ? ' ' : c;
  }
  return o + "\"";
}

// Columns after the point/key/model/design block and the parameters.
const std::vector<std::string> kMetricColumns = {
    "total_macs", "peak_tflops_fp16", "area_mm2", "latency_ms", "npu_ms", "cycles", "energy_mj", "energy_mac_mj",
    "energy_sram_mj", "energy_dram_mj", "energy_static_mj", "mac_utilization", "macs", "dram_read_bytes",
    "dram_write_bytes", "dram_bytes", "cache_bytes", "nodes_npu", "nodes", "npu_segments", "fidelity",
    "func_max_abs_err", "func_rel_err"};

}  // namespace

const std::vector<std::string>& columns() {
  static const std::vector<std::string> c = [] {
    std::vector<std::string> v = {"point", "key", "model", "design", "hw_hash"};
    for (const auto& a : known_axes()) v.push_back(a);
    v.insert(v.end(), kMetricColumns.begin(), kMetricColumns.end());
    return v;
  }();
  return c;
}

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool q = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (q) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') { cur += '"'; ++i; }
      else if (c == '"') q = false;
      else cur += c;
    } else if (c == '"') q = true;
    else if (c == ',') { out.push_back(cur); cur.clear(); }
    else cur += c;
  }
  out.push_back(cur);
  return out;
}

std::string point_key(const Sweep& s, const DesignPoint& p, int model) {
  // The resolved hardware (every value that changes compilation, timing or energy), the model
  // (by name and file size: paths differ between cluster hosts) and the fidelity.
  std::error_code ec;
  const auto size = fs::file_size(s.models[model].path, ec);
  std::string k = p.hw.canonical_string() + fmt::format("model={};size={};fidelity={};area={}", s.models[model].name,
                                                         ec ? 0 : size, s.functional ? "functional" : "timing",
                                                         g(p.area_mm2));
  return fmt::format("{:016x}", fnv1a64(k));
}

// ---------------------------------------------------------------------------------------------
struct Runner::Impl {
  const Sweep& s;
  const Expansion& e;
  bool reuse;
  std::vector<std::once_flag> model_once;
  std::vector<std::unique_ptr<ir::Model>> models;
  std::vector<std::exception_ptr> model_err;
  std::vector<NamedTensors> func_inputs, func_ref;  // functional mode: one seeded input per model and the CPU's answer
  std::mutex mu;
  // Compiled Programs without their packed weights (timing never reads them), most recent first.
  using Key = std::pair<int, uint64_t>;
  std::list<std::pair<Key, std::shared_future<std::shared_ptr<const npu::Program>>>> cache;
  int compiles = 0;
  static constexpr size_t kCacheEntries = 8;

  Impl(const Sweep& s_, const Expansion& e_, bool r) : s(s_), e(e_), reuse(r), model_once(s_.models.size()),
      models(s_.models.size()), model_err(s_.models.size()), func_inputs(s_.models.size()), func_ref(s_.models.size()) {}

  const ir::Model& model(int i) {
    std::call_once(model_once[i], [&] {
      try {
        auto m = std::make_unique<ir::Model>(onnx_import::load_model(s.models[i].path));
        optimize_graph(*m, true);
        models[i] = std::move(m);
        if (s.functional) functional_reference(i);
      } catch (...) {
        model_err[i] = std::current_exception();
      }
    });
    if (model_err[i]) {
      try {
        std::rethrow_exception(model_err[i]);
      } catch (const Error& err) {
        throw Error(fmt::format("{}:{}: model {}: {}", s.file, s.models[i].line, s.models[i].name, err.what()));
      }
    }
    return *models[i];
  }

  // A seeded input (uniform [-1, 1) for floats, zeros otherwise) and the CPU backend's outputs.
  void functional_reference(int i) {
    LoadOptions o;
    o.cache_dir = "none";
    o.threads = 0;
    Model cpu = Model::load(s.models[i].path, o);
    std::mt19937_64 rng(1234 + i);
    NamedTensors in;
    for (const auto& ti : cpu.inputs()) {
      for (auto d : ti.shape)
        if (d < 0) throw Error(fmt::format("input '{}' has a symbolic dim: functional sweeps need static inputs", ti.name));
      Tensor t(ti.dtype, Shape(ti.shape.begin(), ti.shape.end()));
      if (ti.dtype == DType::Float32)
        for (int64_t k = 0; k < t.numel(); ++k) t.data<float>()[k] = static_cast<float>(static_cast<double>(rng() >> 40) / 8388608.0 - 1.0);
      in[ti.name] = std::move(t);
    }
    func_ref[i] = cpu.predict(in);
    func_inputs[i] = std::move(in);
  }

  std::shared_ptr<const npu::Program> program(int model_idx, const DesignPoint& p) {
    const ir::Model& m = model(model_idx);
    auto build = [&] {
      auto prog = std::make_shared<npu::Program>(npu::compile(m, p.hw));
      for (auto& L : prog->layers) { std::vector<float>().swap(L.weights); }
      return std::shared_ptr<const npu::Program>(std::move(prog));
    };
    if (!reuse) {
      { std::lock_guard<std::mutex> lk(mu); ++compiles; }
      return build();
    }
    Key key{model_idx, p.compile_key};
    std::promise<std::shared_ptr<const npu::Program>> prom;
    std::shared_future<std::shared_ptr<const npu::Program>> hit;
    {
      std::lock_guard<std::mutex> lk(mu);
      for (auto it = cache.begin(); it != cache.end(); ++it)
        if (it->first == key) {
          cache.splice(cache.begin(), cache, it);
          hit = it->second;
          break;
        }
      if (!hit.valid()) {
        cache.emplace_front(key, prom.get_future().share());
        if (cache.size() > kCacheEntries) cache.pop_back();
        ++compiles;
      }
    }
    if (hit.valid()) return hit.get();  // another thread may still be compiling it: wait
    try {
      auto prog = build();
      prom.set_value(prog);
      return prog;
    } catch (...) {
      prom.set_exception(std::current_exception());
      std::lock_guard<std::mutex> lk(mu);
      cache.remove_if([&](const auto& x) { return x.first == key; });
      throw;
    }
  }

  // Max |npu - cpu| and that over max |cpu|, over every float output.
  std::pair<double, double> functional(int model_idx, const DesignPoint& p) {
    const fs::path tmp = fs::temp_directory_path() / fmt::format("opennpu-explore-{}-{}-{}.toml", getpid(), p.hw.hash_hex(), model_idx);
    {
      std::ofstream f(tmp);
      f << to_toml(p.hw);
    }
    LoadOptions o;
    o.compute_units = ComputeUnits::all;
    o.hardware = tmp.string();
    o.cache_dir = "none";
    Model npu_model = Model::load(s.models[model_idx].path, o);
    std::error_code ec;
    fs::remove(tmp, ec);
    NamedTensors out = npu_model.predict(func_inputs[model_idx]);
    double err = 0, mag = 0;
    for (const auto& [name, ref] : func_ref[model_idx]) {
      const Tensor& got = out.at(name);
      if (ref.dtype() != DType::Float32 || got.numel() != ref.numel()) continue;
      for (int64_t k = 0; k < ref.numel(); ++k) {
        err = std::max(err, std::fabs(static_cast<double>(got.get_f64(k)) - ref.data<float>()[k]));
        mag = std::max(mag, std::fabs(static_cast<double>(ref.data<float>()[k])));
      }
    }
    return {err, mag > 0 ? err / mag : err};
  }

  std::string row(const Job& j) {
    const DesignPoint& p = e.points.at(static_cast<size_t>(j.point));
    auto prog = program(j.model, p);
    const npu::TimingResult t = npu::simulate_timing(*prog, p.hw);
    int on_npu = 0, segs = 0;
    for (const auto& pl : prog->placements) on_npu += pl.npu;
    for (const auto& sg : prog->segments) segs += sg.npu && !sg.layers.empty();
    std::vector<std::string> f = {std::to_string(p.index), point_key(s, p, j.model), s.models[j.model].name, p.hw.name,
                                  p.hw.hash_hex()};
    for (const auto& a : known_axes()) f.push_back(p.params.at(a));
    const double mj = 1e-9;
    f.push_back(std::to_string(p.hw.cores * p.hw.mac.macs_per_cycle_fp16));
    f.push_back(g(p.hw.peak_tflops_fp16()));
    f.push_back(g(p.area_mm2));
    f.push_back(g(t.total_seconds() * 1e3));
    f.push_back(g(t.npu_seconds * 1e3));
    f.push_back(std::to_string(t.cycles));
    f.push_back(g(t.energy.total_pj() * mj));
    f.push_back(g(t.energy.mac_pj * mj));
    f.push_back(g(t.energy.sram_pj * mj));
    f.push_back(g(t.energy.dram_pj * mj));
    f.push_back(g(t.energy.static_pj * mj));
    f.push_back(g(t.mac_utilization));
    f.push_back(std::to_string(t.macs));
    f.push_back(std::to_string(t.dram_read));
    f.push_back(std::to_string(t.dram_write));
    f.push_back(std::to_string(t.dram_read + t.dram_write));
    f.push_back(std::to_string(t.cache_bytes));
    f.push_back(std::to_string(on_npu));
    f.push_back(std::to_string(prog->placements.size()));
    f.push_back(std::to_string(segs));
    f.push_back(s.functional ? "functional" : "timing");
    if (s.functional) {
      auto [abs_err, rel_err] = functional(j.model, p);
      f.push_back(g(abs_err));
      f.push_back(g(rel_err));
    } else {
      f.push_back("");
      f.push_back("");
    }
    std::string out;
    for (size_t i = 0; i < f.size(); ++i) out += (i ? "," : "") + csv_field(f[i]);
    return out;
  }
};

Runner::Runner(const Sweep& s, const Expansion& e, bool reuse) : impl_(std::make_unique<Impl>(s, e, reuse)) {}
Runner::~Runner() = default;

void Runner::prepare(const std::vector<int>& models) {
  if (models.empty())
    for (int i = 0; i < static_cast<int>(impl_->s.models.size()); ++i) impl_->model(i);
  for (int i : models) impl_->model(i);
}

std::string Runner::run(const Job& j) {
  if (j.point < 0 || j.point >= static_cast<int>(impl_->e.points.size()) || j.model < 0 ||
      j.model >= static_cast<int>(impl_->s.models.size()))
    throw Error(fmt::format("job (point {}, model {}) is outside the sweep", j.point, j.model));
  return impl_->row(j);
}

int Runner::compiles() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->compiles;
}

std::vector<std::vector<Job>> plan_groups(const Sweep& s, const Expansion& e, const std::set<std::string>& skip) {
  std::vector<std::vector<Job>> groups;
  std::map<std::pair<int, uint64_t>, size_t> at;
  for (int m = 0; m < static_cast<int>(s.models.size()); ++m)
    for (size_t p = 0; p < e.points.size(); ++p) {
      if (skip.count(point_key(s, e.points[p], m))) continue;
      auto key = std::make_pair(m, e.points[p].compile_key);
      auto it = at.find(key);
      if (it == at.end()) {
        at[key] = groups.size();
        groups.push_back({});
        it = at.find(key);
      }
      groups[it->second].push_back(Job{static_cast<int>(p), m});
    }
  return groups;
}

// ---------------------------------------------------------------------------------------------
namespace {
std::string header_line() {
  std::string h;
  for (size_t i = 0; i < columns().size(); ++i) h += (i ? "," : "") + columns()[i];
  return h;
}
}  // namespace

std::map<std::string, std::string> read_journal(const std::string& dir) {
  std::map<std::string, std::string> rows;
  const fs::path p = fs::path(dir) / "journal.csv";
  std::error_code ec;
  if (!fs::exists(p, ec)) return rows;
  std::ifstream f(p, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::istringstream ss(text);
  std::string line;
  if (!std::getline(ss, line)) return rows;
  if (line != header_line())
    throw Error(fmt::format("{}: written by a different opennpu version (its columns differ): use another --out directory or delete it",
                            p.string()));
  const size_t ncol = columns().size();
  const bool complete_last = !text.empty() && text.back() == '\n';
  while (std::getline(ss, line)) {
    if (ss.eof() && !complete_last) break;  // torn by a kill mid-write: that point runs again
    auto f2 = split_csv(line);
    if (f2.size() != ncol) continue;
    rows[f2[1]] = line;
  }
  return rows;
}

struct Journal::Impl {
  std::mutex mu;
  std::ofstream f;
};

Journal::Journal(const std::string& dir) : impl_(std::make_unique<Impl>()) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(fmt::format("{}: cannot create the output directory: {}", dir, ec.message()));
  const fs::path p = fs::path(dir) / "journal.csv";
  const bool fresh = !fs::exists(p, ec) || fs::file_size(p, ec) == 0;
  // A torn last line (kill mid-write) would glue onto the next row: end it first.
  bool needs_newline = false;
  if (!fresh) {
    std::ifstream in(p, std::ios::binary | std::ios::ate);
    auto size = static_cast<std::streamoff>(in.tellg());
    if (size > 0) {
      in.seekg(size - 1);
      needs_newline = in.get() != '\n';
    }
  }
  impl_->f.open(p, std::ios::app | std::ios::binary);
  if (!impl_->f) throw Error(fmt::format("{}: cannot write", p.string()));
  if (fresh) impl_->f << header_line() << "\n";
  if (needs_newline) impl_->f << "\n";
  impl_->f.flush();
}
Journal::~Journal() = default;

void Journal::append(const std::string& row) {
  std::lock_guard<std::mutex> lk(impl_->mu);
  impl_->f << row << "\n";
  impl_->f.flush();
}

namespace {
size_t col(const std::string& name) {
  auto it = std::find(columns().begin(), columns().end(), name);
  return static_cast<size_t>(it - columns().begin());
}

// Indices of the non-dominated entries (minimising every objective; ties are kept).
std::vector<size_t> pareto(const std::vector<std::array<double, 3>>& v) {
  std::vector<size_t> out;
  for (size_t i = 0; i < v.size(); ++i) {
    bool dominated = false;
    for (size_t j = 0; j < v.size() && !dominated; ++j) {
      if (i == j) continue;
      bool le = true, lt = false;
      for (int k = 0; k < 3; ++k) {
        le &= v[j][k] <= v[i][k];
        lt |= v[j][k] < v[i][k];
      }
      dominated = le && lt;
    }
    if (!dominated) out.push_back(i);
  }
  return out;
}
}  // namespace

Summary write_results(const std::string& dir, const Sweep& s, const Expansion& e,
                      const std::map<std::string, std::string>& rows) {
  Summary sum;
  std::error_code ec;
  fs::create_directories(dir, ec);
  const std::string header = header_line();
  // results.csv, in (point, model) order.
  std::vector<std::vector<std::vector<std::string>>> table(e.points.size(), std::vector<std::vector<std::string>>(s.models.size()));
  std::string out = header + "\n";
  for (size_t p = 0; p < e.points.size(); ++p)
    for (int m = 0; m < static_cast<int>(s.models.size()); ++m) {
      auto it = rows.find(point_key(s, e.points[p], m));
      if (it == rows.end())
        throw Error(fmt::format("no result for design point {} x model {}", e.points[p].index, s.models[m].name));
      out += it->second + "\n";
      table[p][static_cast<size_t>(m)] = split_csv(it->second);
      ++sum.rows;
    }
  sum.points = static_cast<int64_t>(e.points.size());
  {
    std::ofstream f(fs::path(dir) / "results.csv", std::ios::binary | std::ios::trunc);
    f << out;
    if (!f) throw Error(fmt::format("{}/results.csv: cannot write", dir));
  }
  // pareto.csv: per model, then for the whole workload ("all": latency and energy summed over the
  // models), the designs no other design beats on latency, energy and area at once.
  const size_t c_lat = col("latency_ms"), c_en = col("energy_mj"), c_area = col("area_mm2");
  std::string pc = "scope,point,design";
  for (const auto& a : known_axes()) pc += "," + a;
  pc += ",latency_ms,energy_mj,area_mm2\n";
  auto emit = [&](const std::string& scope, size_t p, double lat, double en) {
    pc += csv_field(scope) + "," + std::to_string(e.points[p].index) + "," + csv_field(e.points[p].hw.name);
    for (const auto& a : known_axes()) pc += "," + e.points[p].params.at(a);
    pc += fmt::format(",{},{},{}\n", g(lat), g(en), g(e.points[p].area_mm2));
    ++sum.pareto_rows;
  };
  std::vector<std::array<double, 3>> all(e.points.size(), {0, 0, 0});
  for (int m = 0; m < static_cast<int>(s.models.size()); ++m) {
    std::vector<std::array<double, 3>> v;
    for (size_t p = 0; p < e.points.size(); ++p) {
      const auto& r = table[p][static_cast<size_t>(m)];
      double lat = std::stod(r[c_lat]), en = std::stod(r[c_en]), area = std::stod(r[c_area]);
      v.push_back({lat, en, area});
      all[p][0] += lat;
      all[p][1] += en;
      all[p][2] = area;
    }
    for (size_t p : pareto(v)) emit(s.models[m].name, p, v[p][0], v[p][1]);
  }
  if (s.models.size() > 1)
    for (size_t p : pareto(all)) emit("all", p, all[p][0], all[p][1]);
  {
    std::ofstream f(fs::path(dir) / "pareto.csv", std::ios::binary | std::ios::trunc);
    f << pc;
    if (!f) throw Error(fmt::format("{}/pareto.csv: cannot write", dir));
  }
  // summary.json: what was swept, for the plot script and for people.
  nlohmann::json j;
  j["sweep"] = s.name;
  j["file"] = s.file;
  j["base"] = s.base_hw.name;
  j["fidelity"] = s.functional ? "functional" : "timing";
  j["grid_size"] = e.grid_size;
  j["points"] = sum.points;
  j["rows"] = sum.rows;
  j["pareto_rows"] = sum.pareto_rows;
  j["models"] = nlohmann::json::array();
  for (const auto& m : s.models) j["models"].push_back(m.name);
  j["axes"] = nlohmann::json::object();
  for (const auto& a : s.axes) j["axes"][a.name == "mac_size" ? "mac_rows" : a.name] = a.values;
  j["rejected_by"] = e.rejected_by;
  j["area_model"] = nlohmann::json::object();
  for (auto [k, c] : std::vector<std::pair<std::string, AreaCoef>>{{"mm2_per_mac_fp16", s.area.mm2_per_mac_fp16},
                                                                    {"mm2_per_mac_int8", s.area.mm2_per_mac_int8},
                                                                    {"mm2_per_sram_byte", s.area.mm2_per_sram_byte},
                                                                    {"mm2_per_vector_lane", s.area.mm2_per_vector_lane},
                                                                    {"mm2_per_core", s.area.mm2_per_core},
                                                                    {"mm2_per_cache_byte", s.area.mm2_per_cache_byte}})
    j["area_model"][k] = {{"value", c.value}, {"source", c.source}};
  {
    std::ofstream f(fs::path(dir) / "summary.json", std::ios::binary | std::ios::trunc);
    f << j.dump(2) << "\n";
  }
  return sum;
}

}  // namespace opennpu::explore

namespace opennpu::explore {

RunStats run_sweep(const Sweep& s, const Expansion& e, const std::string& dir, const RunOptions& opts) {
  RunStats st;
  auto rows = read_journal(dir);
  // Only rows of this grid count (a journal may hold points a since-edited sweep dropped).
  std::set<std::string> done;
  for (size_t p = 0; p < e.points.size(); ++p)
    for (int m = 0; m < static_cast<int>(s.models.size()); ++m) {
      std::string k = point_key(s, e.points[p], m);
      if (rows.count(k)) done.insert(k);
    }
  st.resumed = static_cast<int64_t>(done.size());
  const int64_t total = static_cast<int64_t>(e.points.size() * s.models.size());
  auto groups = plan_groups(s, e, done);
  Journal journal(dir);
  Runner runner(s, e, opts.reuse);
  const int jobs = std::max(1, opts.jobs);
  // One compilation per worker at a time: the workers themselves are the parallelism.
  const int saved_threads = num_threads();
  if (jobs > 1) set_num_threads(1);
  const char* delay_env = std::getenv("OPENNPU_EXPLORE_TEST_DELAY_MS");  // test hook: slow rows down (kill test)
  const int delay_ms = delay_env ? std::atoi(delay_env) : 0;
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::exception_ptr err;
  int64_t finished = st.resumed;
  auto t0 = std::chrono::steady_clock::now();
  if (opts.progress) opts.progress(finished, total);
  auto worker = [&] {
    try {
      for (size_t gi; !stop && (gi = next++) < groups.size();)
        for (const Job& j : groups[gi]) {
          if (stop) return;
          std::string row = runner.run(j);
          if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
          journal.append(row);
          std::lock_guard<std::mutex> lk(mu);
          rows[point_key(s, e.points[static_cast<size_t>(j.point)], j.model)] = std::move(row);
          ++finished;
          ++st.ran;
          if (opts.progress) opts.progress(finished, total);
        }
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu);
      if (!err) err = std::current_exception();
      stop = true;
    }
  };
  std::vector<std::thread> threads;
  for (int t = 1; t < std::min<int>(jobs, static_cast<int>(groups.size())); ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  if (jobs > 1) set_num_threads(saved_threads);
  if (err) std::rethrow_exception(err);
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  st.compiles = runner.compiles();
  st.summary = write_results(dir, s, e, rows);
  st.rows = st.summary.rows;
  return st;
}

}  // namespace opennpu::explore
