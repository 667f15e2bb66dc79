// npu/arch/hardware.cpp — reading, validating and describing hw/*.toml files.
#include "npu/arch/hardware.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <toml++/toml.h>

#include "opennpu/errors.h"

namespace fs = std::filesystem;

namespace opennpu::npu {

const char* dataflow_name(Dataflow d) {
  switch (d) {
    case Dataflow::WS: return "ws";
    case Dataflow::OS: return "os";
    case Dataflow::IS: return "is";
  }
  return "?";
}

std::optional<Dataflow> parse_dataflow(std::string_view s) {
  if (s == "ws") return Dataflow::WS;
  if (s == "os") return Dataflow::OS;
  if (s == "is") return Dataflow::IS;
  return std::nullopt;
}

const char* accum_name(AccumPrecision a) { return a == AccumPrecision::FP32 ? "fp32" : "fp16"; }

const std::vector<std::string>& known_lut_activations() {
  static const std::vector<std::string> k = {
      "sigmoid", "tanh", "gelu", "exp", "erf", "log", "sqrt", "rsqrt", "reciprocal", "softplus",
      "silu", "elu", "selu", "hardsigmoid", "hardswish", "mish", "sin", "cos"};
  return k;
}

namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// Reads one TOML table, remembering which keys were read so that anything left over is reported as
// an unknown key. Every error carries "file:line: key: what was expected".
class TableReader {
 public:
  TableReader(const toml::table& t, std::string prefix, const std::string& file)
      : t_(t), prefix_(std::move(prefix)), file_(file) {}

  bool has(std::string_view key) const { return t_.contains(key); }

  int64_t get_int(std::string_view key, int64_t lo, int64_t hi) {
    const toml::node& n = need(key);
    if (!n.is_integer())
      fail(n, key, fmt::format("must be an integer, got {}", type_of(n)));
    int64_t v = n.as_integer()->get();
    if (v < lo || v > hi) fail(n, key, fmt::format("must be between {} and {}, got {}", lo, hi, v));
    return v;
  }
  int64_t get_int_or(std::string_view key, int64_t lo, int64_t hi, int64_t dflt) {
    if (has(key)) return get_int(key, lo, hi);
    seen_.insert(std::string(key));  // optional: still a known key for the "expected one of" list
    return dflt;
  }

  // A real number in (lo, hi] when lo_open, else [lo, hi]. Integers are accepted ("clock_ghz = 2").
  double get_float(std::string_view key, double lo, double hi, bool lo_open) {
    const toml::node& n = need(key);
    double v;
    if (n.is_floating_point()) v = n.as_floating_point()->get();
    else if (n.is_integer()) v = static_cast<double>(n.as_integer()->get());
    else fail(n, key, fmt::format("must be a number, got {}", type_of(n)));
    if (!std::isfinite(v)) fail(n, key, "must be a finite number");
    bool low_bad = lo_open ? !(v > lo) : !(v >= lo);
    if (low_bad || v > hi)
      fail(n, key, fmt::format("must be {} {} and <= {}, got {}", lo_open ? ">" : ">=", lo, hi, v));
    return v;
  }

  double get_float_or(std::string_view key, double lo, double hi, bool lo_open, double dflt) {
    if (has(key)) return get_float(key, lo, hi, lo_open);
    seen_.insert(std::string(key));
    return dflt;
  }

  std::string get_string(std::string_view key) {
    const toml::node& n = need(key);
    if (!n.is_string()) fail(n, key, fmt::format("must be a string, got {}", type_of(n)));
    return n.as_string()->get();
  }

  // A list of distinct non-empty strings.
  std::vector<std::string> get_string_list(std::string_view key, bool allow_empty) {
    const toml::node& n = need(key);
    if (!n.is_array()) fail(n, key, fmt::format("must be an array of strings, got {}", type_of(n)));
    std::vector<std::string> out;
    std::set<std::string> uniq;
    for (const toml::node& e : *n.as_array()) {
      if (!e.is_string()) fail(e, key, fmt::format("must hold only strings, found {}", type_of(e)));
      std::string s = e.as_string()->get();
      if (s.empty()) fail(e, key, "must not hold an empty string");
      if (!uniq.insert(s).second) fail(e, key, fmt::format("lists '{}' twice", s));
      out.push_back(std::move(s));
    }
    if (out.empty() && !allow_empty) fail(n, key, "must not be empty");
    return out;
  }

  TableReader sub(std::string_view key) {
    const toml::node& n = need(key);
    if (!n.is_table()) fail(n, key, fmt::format("must be a table, got {}", type_of(n)));
    return TableReader(*n.as_table(), full(key), file_);
  }

  // Call once every expected key has been read: anything else in the table is a mistake.
  void finish() const {
    for (const auto& [k, v] : t_) {
      if (seen_.count(std::string(k.str()))) continue;
      std::string expected;
      for (const auto& s : seen_) expected += (expected.empty() ? "" : ", ") + s;
      throw Error(fmt::format("{}: unknown key '{}' (expected one of: {})", loc(v), full(k.str()), expected));
    }
  }

  [[noreturn]] void fail(const toml::node& n, std::string_view key, const std::string& what) const {
    throw Error(fmt::format("{}: {}: {}", loc(n), full(key), what));
  }
  [[noreturn]] void fail_key(std::string_view key, const std::string& what) const {
    const toml::node* n = t_.get(key);
    if (n) fail(*n, key, what);
    throw Error(fmt::format("{}: {}: {}", loc(t_), full(key), what));
  }

  std::string full(std::string_view key) const {
    return prefix_.empty() ? std::string(key) : prefix_ + "." + std::string(key);
  }

 private:
  const toml::node& need(std::string_view key) {
    seen_.insert(std::string(key));
    const toml::node* n = t_.get(key);
    if (!n) {
      std::string where = prefix_.empty() ? "" : fmt::format(" in table [{}]", prefix_);
      // A missing key is often a misspelt one: point at the likely culprit.
      std::string hint;
      for (const auto& [k, v] : t_)
        if (edit_distance(k.str(), key) <= 2 && !seen_.count(std::string(k.str())))
          hint = fmt::format(" (is '{}' at {} a misspelling of it?)", full(k.str()), loc(v));
      throw Error(fmt::format("{}: missing key '{}'{}{}", loc(t_), full(key), where, hint));
    }
    return *n;
  }

  std::string loc(const toml::node& n) const {
    const auto& src = n.source();
    if (src.begin.line > 0) return fmt::format("{}:{}", file_, src.begin.line);
    return file_;
  }

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

  const toml::table& t_;
  std::string prefix_;
  const std::string& file_;
  std::set<std::string> seen_;
};

bool is_identifier(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) return false;
  return true;
}

HardwareConfig from_table(const toml::table& root, const std::string& file) {
  HardwareConfig h;
  h.source_file = file;
  TableReader r(root, "", file);

  h.name = r.get_string("name");
  if (!is_identifier(h.name)) r.fail_key("name", fmt::format("'{}' must be letters, digits, '_', '-' or '.'", h.name));
  h.description = r.get_string("description");
  h.cores = r.get_int("cores", 1, 1024);
  h.clock_ghz = r.get_float("clock_ghz", 0.0, 10.0, true);
  h.dispatch_overhead_us = r.get_float("dispatch_overhead_us", 0.0, 1e6, false);

  TableReader core = r.sub("core");
  {
    TableReader m = core.sub("mac_array");
    h.mac.rows = m.get_int("rows", 1, 1024);
    h.mac.cols = m.get_int("cols", 1, 1024);
    std::string df = m.get_string("dataflow");
    auto d = parse_dataflow(df);
    if (!d) m.fail_key("dataflow", fmt::format("must be \"ws\", \"os\" or \"is\", got \"{}\"", df));
    h.mac.dataflow = *d;
    std::string acc = m.get_string("accumulator");
    if (acc == "fp32") h.mac.accumulator = AccumPrecision::FP32;
    else if (acc == "fp16") h.mac.accumulator = AccumPrecision::FP16;
    else m.fail_key("accumulator", fmt::format("must be \"fp32\" or \"fp16\", got \"{}\"", acc));

    TableReader rate = m.sub("macs_per_cycle");
    const int64_t pes = h.mac.rows * h.mac.cols;
    h.mac.macs_per_cycle_fp16 = rate.get_int("fp16", 1, int64_t{1} << 24);
    // The PE-level model does one FP16 MAC per PE per cycle; a different figure would mean the
    // array shape and the rate disagree, and the timing model would be lying about one of them.
    if (h.mac.macs_per_cycle_fp16 != pes)
      rate.fail_key("fp16", fmt::format("must equal rows * cols = {} (one FP16 MAC per PE per cycle), got {}", pes,
                                        h.mac.macs_per_cycle_fp16));
    h.mac.macs_per_cycle_int8 = rate.get_int("int8", 0, int64_t{1} << 26);
    if (h.mac.macs_per_cycle_int8 % pes != 0 || h.mac.macs_per_cycle_int8 > 8 * pes)
      rate.fail_key("int8", fmt::format("must be 0 (no INT8 compute) or 1..8 x rows * cols = {}, got {}", pes,
                                        h.mac.macs_per_cycle_int8));
    rate.finish();
    m.finish();
  }
  {
    TableReader v = core.sub("vector");
    h.vector.lanes = v.get_int("lanes", 1, 65536);
    h.vector.lut_activations = v.get_string_list("lut_activations", true);
    const auto& known = known_lut_activations();
    for (const auto& a : h.vector.lut_activations)
      if (std::find(known.begin(), known.end(), a) == known.end())
        v.fail_key("lut_activations", fmt::format("unknown activation '{}' (known: {})", a, fmt::join(known, ", ")));
    v.finish();
  }
  {
    TableReader s = core.sub("sram");
    h.sram.bytes = s.get_int("bytes", 1, kGiB);
    h.sram.banks = s.get_int_or("banks", 1, 1024, 1);
    h.sram.bandwidth_bytes_per_cycle = s.get_int("bandwidth_bytes_per_cycle", 1, 65536);
    h.sram.kernel_buffer_bytes = s.get_int_or("kernel_buffer_bytes", 0, kGiB, 0);
    if (h.sram.bytes % h.sram.banks != 0)
      s.fail_key("banks", fmt::format("{} banks do not divide {} bytes evenly", h.sram.banks, h.sram.bytes));
    s.finish();
  }
  core.finish();

  {
    TableReader m = r.sub("memory");
    h.memory.dram_bandwidth_gbps = m.get_float("dram_bandwidth_gbps", 0.0, 100000.0, true);
    h.memory.dram_latency_ns = m.get_float("dram_latency_ns", 0.0, 1e6, true);
    h.memory.system_cache_bytes = m.get_int_or("system_cache_bytes", 0, 64 * kGiB, 0);
    h.memory.system_cache_bandwidth_gbps = m.get_float_or("system_cache_bandwidth_gbps", 0.0, 1e6, true, 0.0);
    h.memory.row_alignment_bytes = m.get_int("row_alignment_bytes", 1, 4096);
    int64_t a = h.memory.row_alignment_bytes;
    if ((a & (a - 1)) != 0) m.fail_key("row_alignment_bytes", fmt::format("must be a power of two, got {}", a));
    m.finish();
  }
  {
    TableReader s = r.sub("support");
    h.ops = s.get_string_list("ops", false);
    for (const auto& op : h.ops)
      if (!is_identifier(op)) s.fail_key("ops", fmt::format("'{}' is not an op type name", op));
    h.dtypes = s.get_string_list("dtypes", false);
    for (const auto& d : h.dtypes)
      if (d != "fp16" && d != "int8") s.fail_key("dtypes", fmt::format("unknown dtype '{}' (known: fp16, int8)", d));
    if (!h.supports_dtype("fp16")) s.fail_key("dtypes", "must include \"fp16\" (the native compute type)");
    if (h.supports_dtype("int8") != (h.mac.macs_per_cycle_int8 > 0))
      s.fail_key("dtypes", h.mac.macs_per_cycle_int8 > 0
                               ? "core.mac_array.macs_per_cycle.int8 > 0 but \"int8\" is not listed"
                               : "lists \"int8\" but core.mac_array.macs_per_cycle.int8 is 0");
    s.finish();
  }
  {
    TableReader e = r.sub("energy");
    h.energy.pj_per_mac_fp16 = e.get_float("pj_per_mac_fp16", 0.0, 1000.0, true);
    bool int8 = h.mac.macs_per_cycle_int8 > 0;
    h.energy.pj_per_mac_int8 = e.get_float("pj_per_mac_int8", 0.0, 1000.0, int8);
    if (!int8 && h.energy.pj_per_mac_int8 != 0.0)
      e.fail_key("pj_per_mac_int8", "must be 0 when the engine has no INT8 compute");
    h.energy.pj_per_sram_byte = e.get_float("pj_per_sram_byte", 0.0, 10000.0, true);
    h.energy.pj_per_dram_byte = e.get_float("pj_per_dram_byte", 0.0, 100000.0, true);
    h.energy.static_power_mw = e.get_float("static_power_mw", 0.0, 1e6, false);
    e.finish();
  }
  r.finish();
  return h;
}

std::string read_text(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw Error(fmt::format("{}: not a readable file", path));
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(fmt::format("{}: cannot open", path));
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string exe_dir() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.parent_path().string();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
double HardwareConfig::peak_flops_fp16() const {
  return static_cast<double>(cores) * static_cast<double>(mac.macs_per_cycle_fp16) * 2.0 * clock_ghz * 1e9;
}
double HardwareConfig::peak_ops_int8() const {
  return static_cast<double>(cores) * static_cast<double>(mac.macs_per_cycle_int8) * 2.0 * clock_ghz * 1e9;
}
bool HardwareConfig::supports_op(std::string_view op) const {
  return std::find(ops.begin(), ops.end(), op) != ops.end();
}
bool HardwareConfig::supports_dtype(std::string_view d) const {
  return std::find(dtypes.begin(), dtypes.end(), d) != dtypes.end();
}
bool HardwareConfig::has_lut(std::string_view fn) const {
  return std::find(vector.lut_activations.begin(), vector.lut_activations.end(), fn) != vector.lut_activations.end();
}

std::string HardwareConfig::canonical_string() const {
  // %.17g keeps every double exactly, so equal values give equal text on every machine.
  auto num = [](double v) { return fmt::format("{:.17g}", v); };
  auto list = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());  // order in the file does not change the hardware
    return fmt::format("{}", fmt::join(v, ","));
  };
  std::string s;
  s += fmt::format("format=opennpu-hw-1\n");
  s += fmt::format("cores={}\nclock_ghz={}\ndispatch_overhead_us={}\n", cores, num(clock_ghz), num(dispatch_overhead_us));
  s += fmt::format("mac.rows={}\nmac.cols={}\nmac.dataflow={}\nmac.accumulator={}\n", mac.rows, mac.cols,
                   dataflow_name(mac.dataflow), accum_name(mac.accumulator));
  s += fmt::format("mac.fp16={}\nmac.int8={}\n", mac.macs_per_cycle_fp16, mac.macs_per_cycle_int8);
  s += fmt::format("vector.lanes={}\nvector.lut={}\n", vector.lanes, list(vector.lut_activations));
  s += fmt::format("sram.bytes={}\nsram.banks={}\nsram.bw={}\nsram.kernel_buffer={}\n", sram.bytes, sram.banks,
                   sram.bandwidth_bytes_per_cycle, sram.kernel_buffer_bytes);
  s += fmt::format("mem.dram_gbps={}\nmem.dram_latency_ns={}\nmem.system_cache={}\nmem.row_align={}\n",
                   num(memory.dram_bandwidth_gbps), num(memory.dram_latency_ns), memory.system_cache_bytes,
                   memory.row_alignment_bytes);
  s += fmt::format("mem.system_cache_gbps={}\n", num(memory.system_cache_bandwidth_gbps));
  s += fmt::format("ops={}\ndtypes={}\n", list(ops), list(dtypes));
  s += fmt::format("energy={},{},{},{},{}\n", num(energy.pj_per_mac_fp16), num(energy.pj_per_mac_int8),
                   num(energy.pj_per_sram_byte), num(energy.pj_per_dram_byte), num(energy.static_power_mw));
  return s;
}

uint64_t HardwareConfig::hash() const {
  uint64_t h = 14695981039346656037ull;  // FNV-1a 64
  for (unsigned char c : canonical_string()) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string HardwareConfig::hash_hex() const { return fmt::format("{:016x}", hash()); }

HardwareConfig HardwareConfig::parse(std::string_view text, const std::string& source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    throw Error(fmt::format("{}:{}: TOML syntax error: {}", source, e.source().begin.line, e.description()));
  }
  return from_table(root, source);
}

HardwareConfig HardwareConfig::load_file(const std::string& path) { return parse(read_text(path), path); }

HardwareConfig HardwareConfig::resolve(const std::string& name_or_path) {
  return load_file(resolve_hw_path(name_or_path));
}

std::string hw_dir() {
  std::error_code ec;
  if (const char* env = std::getenv("OPENNPU_HW_DIR"); env && *env) {
    if (!fs::is_directory(env, ec)) throw Error(fmt::format("OPENNPU_HW_DIR='{}' is not a directory", env));
    return env;
  }
#ifdef OPENNPU_SOURCE_HW_DIR
  if (fs::is_directory(OPENNPU_SOURCE_HW_DIR, ec)) return OPENNPU_SOURCE_HW_DIR;
#endif
  std::string exe = exe_dir();
  if (!exe.empty()) {
    fs::path p = fs::path(exe) / ".." / "share" / "opennpu" / "hw";
    if (fs::is_directory(p, ec)) return fs::weakly_canonical(p, ec).string();
  }
#ifdef OPENNPU_INSTALL_HW_DIR
  // An installed library used by an app outside <prefix>/bin: the prefix configured at build time.
  if (fs::is_directory(OPENNPU_INSTALL_HW_DIR, ec)) return OPENNPU_INSTALL_HW_DIR;
#endif
  throw Error("cannot find the hardware presets directory: set OPENNPU_HW_DIR");
}

std::vector<std::string> list_presets() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(hw_dir(), ec))
    if (e.is_regular_file() && e.path().extension() == ".toml") out.push_back(e.path().stem().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string resolve_hw_path(const std::string& s) {
  if (s.empty()) throw Error("empty hardware name");
  std::error_code ec;
  // Anything that looks like a path is taken as one; a bare name is a preset.
  bool looks_like_path = s.find('/') != std::string::npos || (s.size() > 5 && s.substr(s.size() - 5) == ".toml");
  if (looks_like_path) {
    if (!fs::is_regular_file(s, ec)) throw Error(fmt::format("{}: no such hardware file", s));
    return s;
  }
  if (!is_identifier(s)) throw Error(fmt::format("'{}' is neither a preset name nor a .toml path", s));
  fs::path p = fs::path(hw_dir()) / (s + ".toml");
  if (fs::is_regular_file(p, ec)) return p.string();
  if (fs::is_regular_file(s, ec)) return s;  // a file in the current directory without .toml
  throw Error(fmt::format("unknown hardware preset '{}' (presets: {}; or give a path to a .toml file)", s,
                          fmt::join(list_presets(), ", ")));
}

}  // namespace opennpu::npu
