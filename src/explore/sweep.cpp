// explore/sweep.cpp — reading a sweep file and expanding its grid. See explore.h.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <toml++/toml.h>

#include "explore/explore.h"
#include "opennpu/errors.h"

namespace fs = std::filesystem;

namespace opennpu::explore {

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

namespace {

std::string num(double v) {
  std::string s = fmt::format("{:.17g}", v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // a TOML float, not an integer
  return s;
}

std::string quote(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) < 0x20) { o += fmt::format("\\u{:04x}", c); continue; }
    o += c;
  }
  return o + "\"";
}

std::string list(const std::vector<std::string>& v) {
  std::string o = "[";
  for (size_t i = 0; i < v.size(); ++i) o += (i ? ", " : "") + quote(v[i]);
  return o + "]";
}

}  // namespace

std::string to_toml(const npu::HardwareConfig& h) {
  std::string s;
  s += fmt::format("name = {}\ndescription = {}\ncores = {}\nclock_ghz = {}\ndispatch_overhead_us = {}\n\n", quote(h.name),
                   quote(h.description), h.cores, num(h.clock_ghz), num(h.dispatch_overhead_us));
  s += fmt::format("[core.mac_array]\nrows = {}\ncols = {}\ndataflow = \"{}\"\naccumulator = \"{}\"\n\n", h.mac.rows,
                   h.mac.cols, npu::dataflow_name(h.mac.dataflow), npu::accum_name(h.mac.accumulator));
  s += fmt::format("[core.mac_array.macs_per_cycle]\nfp16 = {}\nint8 = {}\n\n", h.mac.macs_per_cycle_fp16,
                   h.mac.macs_per_cycle_int8);
  s += fmt::format("[core.vector]\nlanes = {}\nlut_activations = {}\n\n", h.vector.lanes, list(h.vector.lut_activations));
  s += fmt::format("[core.sram]\nbytes = {}\nbanks = {}\nbandwidth_bytes_per_cycle = {}\nkernel_buffer_bytes = {}\n\n",
                   h.sram.bytes, h.sram.banks, h.sram.bandwidth_bytes_per_cycle, h.sram.kernel_buffer_bytes);
  s += fmt::format("[memory]\ndram_bandwidth_gbps = {}\ndram_latency_ns = {}\nsystem_cache_bytes = {}\n",
                   num(h.memory.dram_bandwidth_gbps), num(h.memory.dram_latency_ns), h.memory.system_cache_bytes);
  if (h.memory.system_cache_bandwidth_gbps > 0)
    s += fmt::format("system_cache_bandwidth_gbps = {}\n", num(h.memory.system_cache_bandwidth_gbps));
  s += fmt::format("row_alignment_bytes = {}\n\n", h.memory.row_alignment_bytes);
  s += fmt::format("[support]\nops = {}\ndtypes = {}\n\n", list(h.ops), list(h.dtypes));
  s += fmt::format("[energy]\npj_per_mac_fp16 = {}\npj_per_mac_int8 = {}\npj_per_sram_byte = {}\npj_per_dram_byte = {}\n"
                   "static_power_mw = {}\n",
                   num(h.energy.pj_per_mac_fp16), num(h.energy.pj_per_mac_int8), num(h.energy.pj_per_sram_byte),
                   num(h.energy.pj_per_dram_byte), num(h.energy.static_power_mw));
  return s;
}

// ---------------------------------------------------------------------------------------------
// Area model. Defaults are per-5nm-class figures; each says where it comes from.
AreaModel AreaModel::defaults() {
  AreaModel a;
  a.mm2_per_mac_fp16 = {0.0008,
                        "assumption: ~800 um^2 per FP16 multiply-accumulate with its pipeline registers at a 5 nm-class "
                        "node (no Apple figure is published)"};
  a.mm2_per_mac_int8 = {0.0001, "assumption: an INT8 MAC added to an FP16 PE costs ~1/8 of the FP16 MAC"};
  a.mm2_per_sram_byte = {2.5e-7,
                         "TSMC N5 high-density SRAM bitcell 0.021 um^2 (TSMC, IEDM 2019) x 8 bits = 0.168 um^2/byte; "
                         "x1.5 for periphery and redundancy (assumption)"};
  a.mm2_per_vector_lane = {0.002, "assumption: one FP16 planar-engine lane with its LUT share"};
  a.mm2_per_core = {0.05, "assumption: per-core control, DMA engines and NoC port"};
  a.mm2_per_cache_byte = {2.5e-7, "as mm2_per_sram_byte (assumption: the system cache uses the same bitcell)"};
  return a;
}

double AreaModel::area_mm2(const npu::HardwareConfig& h) const {
  const double per_core = static_cast<double>(h.mac.macs_per_cycle_fp16) * mm2_per_mac_fp16.value +
                          static_cast<double>(h.mac.macs_per_cycle_int8) * mm2_per_mac_int8.value +
                          static_cast<double>(h.sram.bytes + h.sram.kernel_buffer_bytes) * mm2_per_sram_byte.value +
                          static_cast<double>(h.vector.lanes) * mm2_per_vector_lane.value + mm2_per_core.value;
  return static_cast<double>(h.cores) * per_core +
         static_cast<double>(h.memory.system_cache_bytes) * mm2_per_cache_byte.value;
}

// ---------------------------------------------------------------------------------------------
namespace {

enum class AxisType { Int, Float, String };
struct AxisDef {
  const char* name;
  AxisType type;
  double lo, hi;  // numeric bounds (the hardware parser checks the rest)
  std::vector<std::string> choices;  // String axes
  const char* help;
};

const std::vector<AxisDef>& axis_defs() {
  static const std::vector<AxisDef> d = {
      {"cores", AxisType::Int, 1, 1024, {}, "number of NPU cores"},
      {"mac_rows", AxisType::Int, 1, 1024, {}, "MAC array rows per core"},
      {"mac_cols", AxisType::Int, 1, 1024, {}, "MAC array columns per core"},
      {"mac_size", AxisType::Int, 1, 1024, {}, "square MAC array: rows = cols = mac_size"},
      {"dataflow", AxisType::String, 0, 0, {"ws", "os", "is"}, "MAC array dataflow"},
      {"accumulator", AxisType::String, 0, 0, {"fp32", "fp16"}, "accumulator precision"},
      {"dtypes", AxisType::String, 0, 0, {"fp16", "fp16+int8"}, "compute dtypes"},
      {"sram_bytes", AxisType::Int, 1, double(int64_t{1} << 30), {}, "local SRAM per core"},
      {"vector_lanes", AxisType::Int, 1, 65536, {}, "vector unit lanes per core"},
      {"clock_ghz", AxisType::Float, 1e-6, 10, {}, "clock"},
      {"dram_gbps", AxisType::Float, 1e-6, 1e5, {}, "DRAM bandwidth (GB/s)"},
      {"dram_latency_ns", AxisType::Float, 1e-6, 1e6, {}, "DRAM latency"},
      {"system_cache_bytes", AxisType::Int, 0, double(int64_t{64} << 30), {}, "system-level cache"},
  };
  return d;
}

const AxisDef* find_axis(std::string_view n) {
  for (const auto& a : axis_defs())
    if (n == a.name) return &a;
  return nullptr;
}

struct Reader {
  const std::string& file;
  std::string loc(const toml::node& n) const {
    return n.source().begin.line > 0 ? fmt::format("{}:{}", file, n.source().begin.line) : file;
  }
  [[noreturn]] void fail(const toml::node& n, const std::string& what) const { throw Error(fmt::format("{}: {}", loc(n), what)); }
  static std::string type_of(const toml::node& n) {
    switch (n.type()) {
      case toml::node_type::string: return "a string";
      case toml::node_type::integer: return "an integer";
      case toml::node_type::floating_point: return "a float";
      case toml::node_type::boolean: return "a boolean";
      case toml::node_type::array: return "an array";
      case toml::node_type::table: return "a table";
      default: return "a date/time";
    }
  }
  double number(const toml::node& n, const std::string& what) const {
    if (n.is_integer()) return static_cast<double>(n.as_integer()->get());
    if (n.is_floating_point()) {
      double v = n.as_floating_point()->get();
      if (!std::isfinite(v)) fail(n, what + " must be a finite number");
      return v;
    }
    fail(n, fmt::format("{} must be a number, got {}", what, type_of(n)));
  }
  std::string string(const toml::node& n, const std::string& what) const {
    if (!n.is_string()) fail(n, fmt::format("{} must be a string, got {}", what, type_of(n)));
    return n.as_string()->get();
  }
  void only_keys(const toml::table& t, const std::string& table, const std::vector<std::string>& keys) const {
    for (const auto& [k, v] : t)
      if (std::find(keys.begin(), keys.end(), k.str()) == keys.end())
        fail(v, fmt::format("unknown key '{}' in [{}] (expected one of: {})", k.str(), table, fmt::join(keys, ", ")));
  }
};

std::string canon_int(int64_t v) { return std::to_string(v); }
std::string canon_float(double v) { return fmt::format("{}", v); }  // shortest text that reads back exactly

// One value of a numeric axis, checked against its type and bounds.
std::string axis_value(const Reader& r, const AxisDef& d, const toml::node& n, double v) {
  const std::string what = fmt::format("axis '{}'", d.name);
  if (d.type == AxisType::Int) {
    if (v != std::floor(v)) r.fail(n, fmt::format("{} takes integers, got {}", what, v));
  }
  if (v < d.lo || v > d.hi) r.fail(n, fmt::format("{} ({}) must be between {} and {}, got {}", what, d.help, d.lo, d.hi, v));
  return d.type == AxisType::Int ? canon_int(static_cast<int64_t>(v)) : canon_float(v);
}

Axis read_axis(const Reader& r, const AxisDef& d, const toml::node& n) {
  Axis a;
  a.name = d.name;
  a.line = static_cast<int>(n.source().begin.line);
  const std::string what = fmt::format("axis '{}'", d.name);
  if (n.is_array()) {
    for (const toml::node& e : *n.as_array()) {
      if (d.type == AxisType::String) {
        std::string s = r.string(e, what + " value");
        if (std::find(d.choices.begin(), d.choices.end(), s) == d.choices.end())
          r.fail(e, fmt::format("{}: unknown value \"{}\" (expected one of: {})", what, s, fmt::join(d.choices, ", ")));
        a.values.push_back(s);
      } else {
        if (d.type == AxisType::Int && !e.is_integer())
          r.fail(e, fmt::format("{} takes integers, got {}", what, Reader::type_of(e)));
        a.values.push_back(axis_value(r, d, e, r.number(e, what + " value")));
      }
    }
  } else if (n.is_table()) {
    if (d.type == AxisType::String) r.fail(n, fmt::format("{} takes a list of strings, not a range", what));
    const toml::table& t = *n.as_table();
    r.only_keys(t, fmt::format("axes.{}", d.name), {"from", "to", "step", "times"});
    const toml::node* f = t.get("from");
    const toml::node* to = t.get("to");
    const toml::node* st = t.get("step");
    const toml::node* tm = t.get("times");
    if (!f || !to) r.fail(n, fmt::format("{}: a range needs 'from' and 'to' (and 'step' or 'times')", what));
    if ((st != nullptr) == (tm != nullptr))
      r.fail(n, fmt::format("{}: a range needs exactly one of 'step' (arithmetic) or 'times' (geometric)", what));
    for (const toml::node* x : {f, to, st ? st : tm})
      if (d.type == AxisType::Int && !x->is_integer() && x != tm)
        r.fail(*x, fmt::format("{} takes integers, got {}", what, Reader::type_of(*x)));
    const double from = r.number(*f, what + ".from"), upto = r.number(*to, what + ".to");
    if (from > upto) r.fail(n, fmt::format("{}: empty range (from {} > to {})", what, from, upto));
    if (st) {
      const double step = r.number(*st, what + ".step");
      if (!(step > 0)) r.fail(*st, fmt::format("{}: step must be > 0, got {}", what, step));
      const double count = std::floor((upto - from) / step + 1e-9) + 1;
      if (count > 100000) r.fail(n, fmt::format("{}: range has {} values (at most 100000)", what, count));
      for (int64_t i = 0; i < static_cast<int64_t>(count); ++i) a.values.push_back(axis_value(r, d, n, from + i * step));
    } else {
      const double times = r.number(*tm, what + ".times");
      if (!(times > 1)) r.fail(*tm, fmt::format("{}: times must be > 1, got {}", what, times));
      if (!(from > 0)) r.fail(*f, fmt::format("{}: a geometric range must start above 0", what));
      for (double v = from; v <= upto * (1 + 1e-12); v *= times) {
        if (a.values.size() >= 100000) r.fail(n, fmt::format("{}: range has more than 100000 values", what));
        a.values.push_back(axis_value(r, d, n, d.type == AxisType::Int ? std::round(v) : v));
      }
    }
  } else {
    r.fail(n, fmt::format("{} must be a list of values or a range table {{ from, to, step|times }}, got {}", what,
                          Reader::type_of(n)));
  }
  if (a.values.empty()) r.fail(n, fmt::format("{} is empty: give at least one value", what));
  std::vector<std::string> seen;
  for (const auto& v : a.values) {
    if (std::find(seen.begin(), seen.end(), v) != seen.end()) r.fail(n, fmt::format("{} lists {} twice", what, v));
    seen.push_back(v);
  }
  return a;
}

const std::vector<std::string>& constraint_names() {
  static const std::vector<std::string> c = {"max_total_macs", "min_total_macs", "max_total_sram_bytes",
                                             "min_total_sram_bytes", "max_area_mm2", "min_area_mm2",
                                             "max_peak_tflops", "min_peak_tflops"};
  return c;
}

std::string read_text(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw Error(fmt::format("{}: no such sweep file", path));
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(fmt::format("{}: cannot open", path));
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

const std::vector<std::string>& known_axes() {
  static const std::vector<std::string> k = [] {
    std::vector<std::string> v;
    for (const auto& a : axis_defs()) if (std::string(a.name) != "mac_size") v.push_back(a.name);
    return v;
  }();
  return k;
}

Sweep Sweep::load(const std::string& path, const std::string& models_dir) {
  return parse(read_text(path), path, models_dir);
}

Sweep Sweep::parse(const std::string& text, const std::string& file, const std::string& models_dir_override) {
  Sweep s;
  s.file = file;
  s.content_hash = fnv1a64(text);
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    throw Error(fmt::format("{}:{}: TOML syntax error: {}", file, e.source().begin.line, e.description()));
  }
  Reader r{file};
  r.only_keys(root, "top level", {"sweep", "axes", "constraints", "area"});
  const fs::path dir = fs::path(file).parent_path();
  auto relative = [&](const std::string& p) { return fs::path(p).is_absolute() || dir.empty() ? p : (dir / p).string(); };

  const toml::table* sw = root["sweep"].as_table();
  if (!sw) throw Error(fmt::format("{}: missing table [sweep] (name, base, models)", file));
  r.only_keys(*sw, "sweep", {"name", "base", "models", "models_dir", "fidelity"});
  auto need = [&](const toml::table& t, const char* key, const char* table) -> const toml::node& {
    const toml::node* n = t.get(key);
    if (!n) throw Error(fmt::format("{}:{}: [{}] is missing '{}'", file, t.source().begin.line, table, key));
    return *n;
  };
  s.name = r.string(need(*sw, "name", "sweep"), "sweep.name");
  {
    const toml::node& b = need(*sw, "base", "sweep");
    std::string base = r.string(b, "sweep.base");
    // A path is relative to the sweep file; a bare name is a preset.
    if (base.find('/') != std::string::npos || (base.size() > 5 && base.substr(base.size() - 5) == ".toml"))
      base = relative(base);
    try {
      s.base_hw = npu::HardwareConfig::resolve(base);
    } catch (const Error& e) {
      r.fail(b, fmt::format("sweep.base: {}", e.what()));
    }
    s.base = base;
  }
  std::string models_dir;
  if (const toml::node* md = sw->get("models_dir")) models_dir = relative(r.string(*md, "sweep.models_dir"));
  if (!models_dir_override.empty()) models_dir = models_dir_override;
  {
    const toml::node& m = need(*sw, "models", "sweep");
    if (!m.is_array()) r.fail(m, fmt::format("sweep.models must be an array of model names or .onnx paths, got {}", Reader::type_of(m)));
    for (const toml::node& e : *m.as_array()) {
      std::string v = r.string(e, "sweep.models entry");
      ModelRef ref;
      ref.line = static_cast<int>(e.source().begin.line);
      bool path = v.find('/') != std::string::npos || (v.size() > 5 && v.substr(v.size() - 5) == ".onnx");
      ref.path = path ? relative(v) : (fs::path(models_dir.empty() ? "." : models_dir) / (v + ".onnx")).string();
      ref.name = fs::path(ref.path).stem().string();
      std::error_code ec;
      if (!fs::is_regular_file(ref.path, ec))
        r.fail(e, fmt::format("model '{}': {} does not exist{}", v, ref.path,
                              path ? "" : " (set sweep.models_dir or --models-dir; scripts/export_models.py writes models/)"));
      for (const auto& o : s.models)
        if (o.name == ref.name) r.fail(e, fmt::format("model '{}' is listed twice", ref.name));
      s.models.push_back(ref);
    }
    if (s.models.empty()) r.fail(m, "sweep.models is empty: give at least one model");
  }
  if (const toml::node* f = sw->get("fidelity")) {
    std::string v = r.string(*f, "sweep.fidelity");
    if (v != "timing" && v != "functional") r.fail(*f, fmt::format("sweep.fidelity must be \"timing\" or \"functional\", got \"{}\"", v));
    s.functional = v == "functional";
  }

  // Axes.
  if (const toml::node* an = root.get("axes")) {
    if (!an->is_table()) r.fail(*an, "axes must be a table");
    for (const auto& [k, v] : *an->as_table()) {
      const AxisDef* d = find_axis(k.str());
      if (!d) {
        std::vector<std::string> names;
        for (const auto& a : axis_defs()) names.push_back(a.name);
        r.fail(v, fmt::format("unknown axis '{}' (known axes: {})", k.str(), fmt::join(names, ", ")));
      }
      s.axes.push_back(read_axis(r, *d, v));
    }
    auto has = [&](const char* n) { return std::any_of(s.axes.begin(), s.axes.end(), [&](const Axis& a) { return a.name == n; }); };
    if (has("mac_size") && (has("mac_rows") || has("mac_cols"))) {
      for (const auto& a : s.axes)
        if (a.name == "mac_size")
          throw Error(fmt::format("{}:{}: axis 'mac_size' sets both rows and cols: it cannot be combined with mac_rows/mac_cols", file, a.line));
    }
  }
  // Constraints.
  if (const toml::node* cn = root.get("constraints")) {
    if (!cn->is_table()) r.fail(*cn, "constraints must be a table");
    r.only_keys(*cn->as_table(), "constraints", constraint_names());
    for (const auto& [k, v] : *cn->as_table()) {
      Constraint c{std::string(k.str()), r.number(v, "constraints." + std::string(k.str())), static_cast<int>(v.source().begin.line)};
      if (c.value < 0) r.fail(v, fmt::format("constraints.{} must be >= 0, got {}", c.name, c.value));
      s.constraints.push_back(c);
    }
    for (const auto& lo : s.constraints) {
      if (lo.name.rfind("min_", 0) != 0) continue;
      for (const auto& hi : s.constraints)
        if (hi.name == "max_" + lo.name.substr(4) && lo.value > hi.value)
          throw Error(fmt::format("{}:{}: contradictory constraints: {} = {} is above {} = {} (line {}): no design can pass",
                                  file, lo.line, lo.name, lo.value, hi.name, hi.value, hi.line));
    }
  }
  // Area model.
  s.area = AreaModel::defaults();
  if (const toml::node* an = root.get("area")) {
    if (!an->is_table()) r.fail(*an, "area must be a table");
    std::map<std::string, AreaCoef*> coefs = {
        {"mm2_per_mac_fp16", &s.area.mm2_per_mac_fp16},       {"mm2_per_mac_int8", &s.area.mm2_per_mac_int8},
        {"mm2_per_sram_byte", &s.area.mm2_per_sram_byte},     {"mm2_per_vector_lane", &s.area.mm2_per_vector_lane},
        {"mm2_per_core", &s.area.mm2_per_core},               {"mm2_per_cache_byte", &s.area.mm2_per_cache_byte}};
    std::vector<std::string> names;
    for (const auto& [k, _] : coefs) names.push_back(k);
    r.only_keys(*an->as_table(), "area", names);
    for (const auto& [k, v] : *an->as_table()) {
      const std::string key(k.str());
      if (!v.is_table()) r.fail(v, fmt::format("area.{} must be {{ value = NUMBER, source = \"where it comes from\" }}", key));
      const toml::table& t = *v.as_table();
      r.only_keys(t, "area." + key, {"value", "source"});
      const toml::node* val = t.get("value");
      const toml::node* src = t.get("source");
      if (!val || !src) r.fail(v, fmt::format("area.{} needs both 'value' and 'source' (a citation, or \"assumption: ...\")", key));
      AreaCoef c{r.number(*val, "area." + key + ".value"), r.string(*src, "area." + key + ".source")};
      if (c.value < 0) r.fail(*val, fmt::format("area.{}.value must be >= 0", key));
      if (c.source.empty()) r.fail(*src, fmt::format("area.{}.source must say where the value comes from (or \"assumption\")", key));
      *coefs[key] = c;
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
namespace {

// The parameter values of a hardware config, by axis name.
std::map<std::string, std::string> params_of(const npu::HardwareConfig& h) {
  return {{"cores", canon_int(h.cores)},
          {"mac_rows", canon_int(h.mac.rows)},
          {"mac_cols", canon_int(h.mac.cols)},
          {"dataflow", npu::dataflow_name(h.mac.dataflow)},
          {"accumulator", npu::accum_name(h.mac.accumulator)},
          {"dtypes", h.supports_dtype("int8") ? "fp16+int8" : "fp16"},
          {"sram_bytes", canon_int(h.sram.bytes)},
          {"vector_lanes", canon_int(h.vector.lanes)},
          {"clock_ghz", canon_float(h.clock_ghz)},
          {"dram_gbps", canon_float(h.memory.dram_bandwidth_gbps)},
          {"dram_latency_ns", canon_float(h.memory.dram_latency_ns)},
          {"system_cache_bytes", canon_int(h.memory.system_cache_bytes)}};
}

void apply(npu::HardwareConfig& h, const std::string& axis, const std::string& v, const npu::HardwareConfig& base) {
  auto i = [&] { return std::stoll(v); };
  auto f = [&] { return std::stod(v); };
  if (axis == "cores") h.cores = i();
  else if (axis == "mac_rows") h.mac.rows = i();
  else if (axis == "mac_cols") h.mac.cols = i();
  else if (axis == "mac_size") h.mac.rows = h.mac.cols = i();
  else if (axis == "dataflow") h.mac.dataflow = *npu::parse_dataflow(v);
  else if (axis == "accumulator") h.mac.accumulator = v == "fp16" ? npu::AccumPrecision::FP16 : npu::AccumPrecision::FP32;
  else if (axis == "dtypes") {
    h.dtypes = v == "fp16" ? std::vector<std::string>{"fp16"} : std::vector<std::string>{"fp16", "int8"};
  } else if (axis == "sram_bytes") h.sram.bytes = i();
  else if (axis == "vector_lanes") h.vector.lanes = i();
  else if (axis == "clock_ghz") h.clock_ghz = f();
  else if (axis == "dram_gbps") h.memory.dram_bandwidth_gbps = f();
  else if (axis == "dram_latency_ns") h.memory.dram_latency_ns = f();
  else if (axis == "system_cache_bytes") h.memory.system_cache_bytes = i();
  (void)base;
}

// Values that follow from the axes: MAC rates from the array shape, INT8 rate and energy.
void derive(npu::HardwareConfig& h, const npu::HardwareConfig& base) {
  const int64_t pes = h.mac.rows * h.mac.cols;
  h.mac.macs_per_cycle_fp16 = pes;
  if (h.supports_dtype("int8")) {
    // Keep the base's INT8:FP16 ratio; a base without INT8 gets 2x (A17 Pro/M4: W8A8 at twice the
    // FP16 rate, hw/ane_a17pro.toml) and half the FP16 MAC energy (assumption).
    const int64_t ratio = base.mac.macs_per_cycle_int8 > 0 ? base.mac.macs_per_cycle_int8 / base.mac.macs_per_cycle_fp16 : 2;
    h.mac.macs_per_cycle_int8 = ratio * pes;
    h.energy.pj_per_mac_int8 = base.energy.pj_per_mac_int8 > 0 ? base.energy.pj_per_mac_int8 : 0.5 * h.energy.pj_per_mac_fp16;
  } else {
    h.mac.macs_per_cycle_int8 = 0;
    h.energy.pj_per_mac_int8 = 0;
  }
  // Banks must divide the SRAM: keep the base's bank count when it does, else the largest power
  // of two that does.
  while (h.sram.banks > 1 && h.sram.bytes % h.sram.banks != 0) h.sram.banks /= 2;
}

uint64_t compile_key_of(const npu::HardwareConfig& h) {
  // Exactly the fields src/npu/compiler reads (compile(), Reasoner, Lowering, Tiler); the name
  // only appears in decline reasons. tests/explore checks that reuse changes no result.
  auto sorted = [](std::vector<std::string> v) { std::sort(v.begin(), v.end()); return fmt::format("{}", fmt::join(v, ",")); };
  std::string s = fmt::format("cores={};rows={};cols={};df={};sram={};lanes={};align={};ops={};dtypes={};lut={}", h.cores,
                              h.mac.rows, h.mac.cols, npu::dataflow_name(h.mac.dataflow), h.sram.bytes, h.vector.lanes,
                              h.memory.row_alignment_bytes, sorted(h.ops), sorted(h.dtypes), sorted(h.vector.lut_activations));
  return fnv1a64(s);
}

}  // namespace

Expansion expand(const Sweep& s) {
  Expansion e;
  int64_t n = 1;
  for (const auto& a : s.axes) {
    n *= static_cast<int64_t>(a.values.size());
    if (n > 1000000)
      throw Error(fmt::format("{}:{}: the grid has more than 1000000 design points at axis '{}': split the sweep", s.file, a.line, a.name));
  }
  e.grid_size = n;
  std::vector<size_t> idx(s.axes.size(), 0);
  for (int64_t p = 0; p < n; ++p) {
    // Mixed-radix digits of p, last axis fastest.
    int64_t rem = p;
    for (size_t k = s.axes.size(); k-- > 0;) {
      idx[k] = static_cast<size_t>(rem % static_cast<int64_t>(s.axes[k].values.size()));
      rem /= static_cast<int64_t>(s.axes[k].values.size());
    }
    npu::HardwareConfig h = s.base_hw;
    std::string label;
    for (size_t k = 0; k < s.axes.size(); ++k) {
      apply(h, s.axes[k].name, s.axes[k].values[idx[k]], s.base_hw);
      label += fmt::format("{}{}={}", k ? ", " : "", s.axes[k].name, s.axes[k].values[idx[k]]);
    }
    derive(h, s.base_hw);
    h.name = fmt::format("{}_p{}", s.name.empty() ? "design" : s.name, p);
    // Sweep names may hold characters a hardware name may not.
    for (char& c : h.name)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) c = '_';
    h.description = fmt::format("{} design {} from {}: {}", s.name, p, s.base_hw.name, label.empty() ? "base" : label);
    // Re-read through the hardware parser: every design is validated exactly like a hw/*.toml file.
    try {
      h = npu::HardwareConfig::parse(to_toml(h), "design");
    } catch (const Error& err) {
      int line = s.axes.empty() ? 0 : s.axes.front().line;
      std::string what = err.what();
      if (what.rfind("design:", 0) == 0) what = what.substr(what.find(' ') + 1);  // drop the generated-text location
      throw Error(fmt::format("{}:{}: design point {} ({}) is not a valid NPU: {}", s.file, line, p, label, what));
    }
    h.source_file = s.file;
    DesignPoint d;
    d.index = static_cast<int>(p);
    d.params = params_of(h);
    d.hw = std::move(h);
    d.compile_key = compile_key_of(d.hw);
    d.area_mm2 = s.area.area_mm2(d.hw);
    // Constraints.
    const double total_macs = static_cast<double>(d.hw.cores * d.hw.mac.macs_per_cycle_fp16);
    const double total_sram = static_cast<double>(d.hw.cores * d.hw.sram.bytes);
    const double tflops = d.hw.peak_tflops_fp16();
    std::string fails;
    for (const auto& c : s.constraints) {
      double v = c.name.find("total_macs") != std::string::npos ? total_macs
               : c.name.find("total_sram") != std::string::npos ? total_sram
               : c.name.find("area") != std::string::npos       ? d.area_mm2
                                                                : tflops;
      bool ok = c.name.rfind("max_", 0) == 0 ? v <= c.value : v >= c.value;
      if (!ok) { fails = c.name; break; }
    }
    if (!fails.empty()) { e.rejected_by[fails]++; continue; }
    e.points.push_back(std::move(d));
  }
  if (e.points.empty()) {
    std::string why;
    for (const auto& c : s.constraints)
      why += fmt::format("\n  {}:{}: {} = {} removes {} points", s.file, c.line, c.name, c.value,
                         e.rejected_by.count(c.name) ? e.rejected_by.at(c.name) : 0);
    int line = s.constraints.empty() ? 0 : s.constraints.front().line;
    throw Error(fmt::format("{}:{}: the constraints leave no design point of the {} in the grid:{}", s.file, line, n, why));
  }
  return e;
}

}  // namespace opennpu::explore
