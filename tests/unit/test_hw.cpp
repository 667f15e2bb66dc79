// Hardware descriptions: presets load and give the published peaks; every kind of bad file is an
// error naming the file, the line and the key.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "npu/arch/hardware.h"
#include "opennpu/errors.h"

using namespace opennpu;
using namespace opennpu::npu;
namespace fs = std::filesystem;

namespace {

// A small valid file; each validation test changes one line of it.
const char* kBase = R"(name = "tiny"
description = "test engine"
cores = 2
clock_ghz = 1.5
dispatch_overhead_us = 100

[core.mac_array]
rows = 8
cols = 4
dataflow = "ws"
accumulator = "fp32"

[core.mac_array.macs_per_cycle]
fp16 = 32
int8 = 64

[core.vector]
lanes = 16
lut_activations = ["sigmoid", "tanh"]

[core.sram]
bytes = 1048576
banks = 4
bandwidth_bytes_per_cycle = 64

[memory]
dram_bandwidth_gbps = 50
dram_latency_ns = 100
row_alignment_bytes = 64

[support]
ops = ["Conv", "MatMul", "Relu"]
dtypes = ["fp16", "int8"]

[energy]
pj_per_mac_fp16 = 0.5
pj_per_mac_int8 = 0.25
pj_per_sram_byte = 0.3
pj_per_dram_byte = 20
static_power_mw = 10
)";

// Replace the first line starting with `key =` (or delete it when repl is empty).
std::string with_line(const std::string& key, const std::string& repl) {
  std::regex re("(^|\n)" + key + " = [^\n]*\n");
  std::string s = kBase;
  std::smatch m;
  EXPECT_TRUE(std::regex_search(s, m, re)) << key;
  std::string lead = m[1].str();
  return s.replace(m.position(0), m.length(0), lead + (repl.empty() ? "" : repl + "\n"));
}

int line_of(const std::string& text, const std::string& needle) {
  auto p = text.find(needle);
  EXPECT_NE(p, std::string::npos) << needle;
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<long>(p), '\n'));
}

// Expect parse() to fail with a message holding every one of `parts`.
void expect_error(const std::string& text, std::vector<std::string> parts) {
  try {
    HardwareConfig::parse(text, "bad.toml");
    ADD_FAILURE() << "no error for:\n" << text;
  } catch (const Error& e) {
    std::string msg = e.what();
    parts.push_back("bad.toml");
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

}  // namespace

TEST(Hardware, BaseFileParses) {
  HardwareConfig h = HardwareConfig::parse(kBase, "base.toml");
  EXPECT_EQ(h.name, "tiny");
  EXPECT_EQ(h.cores, 2);
  EXPECT_EQ(h.mac.rows, 8);
  EXPECT_EQ(h.mac.cols, 4);
  EXPECT_EQ(h.mac.dataflow, Dataflow::WS);
  EXPECT_EQ(h.sram.kernel_buffer_bytes, 0);  // optional, defaulted
  EXPECT_EQ(h.memory.system_cache_bytes, 0);
  EXPECT_DOUBLE_EQ(h.peak_flops_fp16(), 2 * 32 * 2 * 1.5e9);
  EXPECT_DOUBLE_EQ(h.peak_ops_int8(), 2 * 64 * 2 * 1.5e9);
  EXPECT_DOUBLE_EQ(h.bytes_per_flop(), 50e9 / (2 * 32 * 2 * 1.5e9));
  EXPECT_TRUE(h.supports_op("Conv"));
  EXPECT_FALSE(h.supports_op("LSTM"));
  EXPECT_TRUE(h.has_lut("tanh"));
}

TEST(Hardware, IntegerAcceptedForReal) {
  HardwareConfig h = HardwareConfig::parse(with_line("clock_ghz", "clock_ghz = 2"), "x.toml");
  EXPECT_DOUBLE_EQ(h.clock_ghz, 2.0);
}

TEST(Hardware, UnknownKeys) {
  std::string t = with_line("cores", "cores = 2\nturbo = true");
  expect_error(t, {"unknown key 'turbo'", ":" + std::to_string(line_of(t, "turbo"))});
  t = with_line("cols", "colz = 4");
  expect_error(t, {"missing key 'core.mac_array.cols'", "core.mac_array.colz", ":" + std::to_string(line_of(t, "colz"))});
  t = with_line("cols", "cols = 4\ncolz = 4");
  expect_error(t, {"unknown key 'core.mac_array.colz'", ":" + std::to_string(line_of(t, "colz"))});
  expect_error(std::string(kBase) + "[extra]\nx = 1\n", {"unknown key 'extra'"});
  expect_error(with_line("banks", "banks = 4\nbank_width = 8"), {"core.sram.bank_width"});
}

TEST(Hardware, MissingKeys) {
  expect_error(with_line("clock_ghz", ""), {"missing key 'clock_ghz'"});
  expect_error(with_line("rows", ""), {"missing key 'core.mac_array.rows'"});
  expect_error(with_line("dram_latency_ns", ""), {"missing key 'memory.dram_latency_ns'"});
  expect_error(with_line("static_power_mw", ""), {"missing key 'energy.static_power_mw'"});
  expect_error(with_line("fp16", ""), {"missing key 'core.mac_array.macs_per_cycle.fp16'"});
  // A missing table is a missing key too.
  std::string t = kBase;
  t = t.substr(0, t.find("[energy]"));
  expect_error(t, {"missing key 'energy'"});
}

TEST(Hardware, WrongTypes) {
  std::string t = with_line("cores", "cores = \"16\"");
  expect_error(t, {"cores", "must be an integer", ":" + std::to_string(line_of(t, "cores ="))});
  expect_error(with_line("rows", "rows = 16.5"), {"core.mac_array.rows", "must be an integer"});
  expect_error(with_line("clock_ghz", "clock_ghz = \"fast\""), {"clock_ghz", "must be a number"});
  expect_error(with_line("name", "name = 3"), {"name", "must be a string"});
  expect_error(with_line("ops", "ops = \"Conv\""), {"support.ops", "array of strings"});
  expect_error(with_line("ops", "ops = [\"Conv\", 3]"), {"support.ops", "only strings"});
  expect_error(with_line("dram_bandwidth_gbps", "dram_bandwidth_gbps = true"), {"memory.dram_bandwidth_gbps"});
}

TEST(Hardware, ZeroNegativeAbsurdValues) {
  struct Case { const char* key; const char* line; const char* full; };
  const Case cases[] = {
      {"cores", "cores = 0", "cores"},
      {"cores", "cores = -1", "cores"},
      {"cores", "cores = 2000", "cores"},
      {"clock_ghz", "clock_ghz = 0", "clock_ghz"},
      {"clock_ghz", "clock_ghz = -1.0", "clock_ghz"},
      {"clock_ghz", "clock_ghz = 50.0", "clock_ghz"},
      {"clock_ghz", "clock_ghz = nan", "clock_ghz"},
      {"clock_ghz", "clock_ghz = inf", "clock_ghz"},
      {"dispatch_overhead_us", "dispatch_overhead_us = -5", "dispatch_overhead_us"},
      {"rows", "rows = 0", "core.mac_array.rows"},
      {"cols", "cols = -4", "core.mac_array.cols"},
      {"lanes", "lanes = 0", "core.vector.lanes"},
      {"bytes", "bytes = 0", "core.sram.bytes"},
      {"bytes", "bytes = 2147483648", "core.sram.bytes"},  // 2 GiB per core
      {"banks", "banks = 0", "core.sram.banks"},
      {"banks", "banks = 3", "core.sram.banks"},  // does not divide the size
      {"bandwidth_bytes_per_cycle", "bandwidth_bytes_per_cycle = 0", "core.sram.bandwidth_bytes_per_cycle"},
      {"dram_bandwidth_gbps", "dram_bandwidth_gbps = 0", "memory.dram_bandwidth_gbps"},
      {"dram_bandwidth_gbps", "dram_bandwidth_gbps = -50", "memory.dram_bandwidth_gbps"},
      {"dram_latency_ns", "dram_latency_ns = 0", "memory.dram_latency_ns"},
      {"row_alignment_bytes", "row_alignment_bytes = 48", "memory.row_alignment_bytes"},
      {"row_alignment_bytes", "row_alignment_bytes = 0", "memory.row_alignment_bytes"},
      {"fp16", "fp16 = 31", "core.mac_array.macs_per_cycle.fp16"},  // != rows * cols
      {"int8", "int8 = 33", "core.mac_array.macs_per_cycle.int8"},  // not a multiple of rows * cols
      {"int8", "int8 = -32", "core.mac_array.macs_per_cycle.int8"},
      {"pj_per_mac_fp16", "pj_per_mac_fp16 = 0", "energy.pj_per_mac_fp16"},
      {"pj_per_mac_int8", "pj_per_mac_int8 = 0", "energy.pj_per_mac_int8"},  // int8 is supported here
      {"pj_per_dram_byte", "pj_per_dram_byte = -1", "energy.pj_per_dram_byte"},
      {"static_power_mw", "static_power_mw = -1", "energy.static_power_mw"},
      {"dataflow", "dataflow = \"rs\"", "core.mac_array.dataflow"},
      {"accumulator", "accumulator = \"fp64\"", "core.mac_array.accumulator"},
      {"lut_activations", "lut_activations = [\"sigmoid\", \"warp\"]", "core.vector.lut_activations"},
      {"dtypes", "dtypes = [\"int8\"]", "support.dtypes"},
      {"dtypes", "dtypes = [\"fp16\"]", "support.dtypes"},  // int8 rate > 0 but int8 not listed
      {"dtypes", "dtypes = [\"fp16\", \"int4\"]", "support.dtypes"},
      {"ops", "ops = []", "support.ops"},
      {"ops", "ops = [\"Conv\", \"Conv\"]", "support.ops"},
      {"name", "name = \"\"", "name"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.line);
    std::string t = with_line(c.key, c.line);
    expect_error(t, {c.full, ":" + std::to_string(line_of(t, c.line))});
  }
}

TEST(Hardware, SyntaxErrorHasLine) {
  std::string t = with_line("lanes", "lanes = = 3");
  expect_error(t, {"TOML syntax error", "bad.toml:" + std::to_string(line_of(t, "lanes = ="))});
  t = with_line("cores", "cores = 2\ncores = 3");  // TOML forbids redefining a key
  expect_error(t, {"TOML syntax error", "bad.toml:" + std::to_string(line_of(t, "cores = 3"))});
  expect_error(std::string(kBase) + "cores = 3\n", {"unknown key 'energy.cores'"});  // lands in [energy]
}

TEST(Hardware, HashIsStableAndSensitive) {
  HardwareConfig a = HardwareConfig::parse(kBase, "a.toml");
  HardwareConfig b = HardwareConfig::parse(kBase, "b.toml");
  EXPECT_EQ(a.hash(), b.hash());
  EXPECT_EQ(a.hash_hex().size(), 16u);
  // Name and description do not change the hardware; values do.
  EXPECT_EQ(a.hash(), HardwareConfig::parse(with_line("description", "description = \"other\""), "c").hash());
  EXPECT_EQ(a.hash(), HardwareConfig::parse(with_line("name", "name = \"other\""), "c").hash());
  EXPECT_NE(a.hash(), HardwareConfig::parse(with_line("clock_ghz", "clock_ghz = 1.5000001"), "c").hash());
  EXPECT_NE(a.hash(), HardwareConfig::parse(with_line("dataflow", "dataflow = \"os\""), "c").hash());
  EXPECT_NE(a.hash(), HardwareConfig::parse(with_line("ops", "ops = [\"Conv\", \"MatMul\"]"), "c").hash());
  // The order of a list in the file does not matter.
  EXPECT_EQ(a.hash(), HardwareConfig::parse(with_line("ops", "ops = [\"Relu\", \"Conv\", \"MatMul\"]"), "c").hash());
}

// ------------------------------------------------------------------------------------------------
// Presets

TEST(Presets, AllLoadAndAreNamedAfterTheirFile) {
  std::vector<std::string> want = {"ane_a12", "ane_a13", "ane_a15", "ane_a16", "ane_a17pro",
                                   "ane_m1",  "ane_m4",  "systolic_32x32"};
  auto names = list_presets();
  for (const auto& w : want) EXPECT_NE(std::find(names.begin(), names.end(), w), names.end()) << w;
  std::set<uint64_t> hashes;
  for (const auto& n : names) {
    HardwareConfig h = HardwareConfig::resolve(n);
    EXPECT_EQ(h.name, n);
    EXPECT_FALSE(h.description.empty());
    hashes.insert(h.hash());
  }
  EXPECT_EQ(hashes.size(), names.size()) << "two presets describe the same hardware";
}

TEST(Presets, DerivedPeaksMatchPublishedFigures) {
  auto near = [](double got, double want, double rel) { return std::fabs(got - want) <= rel * want; };
  HardwareConfig m1 = HardwareConfig::resolve("ane_m1");
  EXPECT_TRUE(near(m1.peak_tflops_fp16(), 11.0, 0.05)) << m1.peak_tflops_fp16();
  HardwareConfig a15 = HardwareConfig::resolve("ane_a15");
  EXPECT_TRUE(near(a15.peak_tflops_fp16(), 15.8, 0.01)) << a15.peak_tflops_fp16();
  EXPECT_TRUE(near(HardwareConfig::resolve("ane_a12").peak_tflops_fp16(), 5.0, 0.02));
  EXPECT_TRUE(near(HardwareConfig::resolve("ane_a13").peak_tflops_fp16(), 6.0, 0.02));
  EXPECT_TRUE(near(HardwareConfig::resolve("ane_a16").peak_tflops_fp16(), 17.0, 0.02));
  HardwareConfig a17 = HardwareConfig::resolve("ane_a17pro");
  EXPECT_TRUE(near(a17.peak_tops_int8(), 35.0, 0.02)) << a17.peak_tops_int8();
  HardwareConfig m4 = HardwareConfig::resolve("ane_m4");
  EXPECT_TRUE(near(m4.peak_tops_int8(), 38.0, 0.02)) << m4.peak_tops_int8();
  EXPECT_TRUE(near(m4.peak_tflops_fp16(), 19.0, 0.02)) << m4.peak_tflops_fp16();
  // INT8 compute only from A17/M4 on.
  EXPECT_EQ(m1.peak_ops_int8(), 0.0);
  EXPECT_FALSE(m1.supports_dtype("int8"));
  EXPECT_TRUE(m4.supports_dtype("int8"));
  // M1: 68.25 GB/s over ~11 TFLOP/s.
  EXPECT_NEAR(m1.bytes_per_flop(), 68.25e9 / m1.peak_flops_fp16(), 1e-12);
  EXPECT_LT(m1.bytes_per_flop(), 0.01);
}

TEST(Presets, RecurrentLayersOnlyOnTheTextbookArray) {
  for (const auto& n : list_presets()) {
    HardwareConfig h = HardwareConfig::resolve(n);
    bool ane = n.rfind("ane_", 0) == 0;
    for (const char* op : {"LSTM", "GRU", "RNN"}) EXPECT_EQ(h.supports_op(op), !ane) << n << " " << op;
    EXPECT_TRUE(h.supports_op("Conv")) << n;
    EXPECT_TRUE(h.supports_op("MatMul")) << n;
    if (ane) {
      EXPECT_EQ(h.memory.row_alignment_bytes, 64) << n;
    }
  }
  HardwareConfig s = HardwareConfig::resolve("systolic_32x32");
  EXPECT_EQ(s.cores, 1);
  EXPECT_EQ(s.mac.rows, 32);
  EXPECT_EQ(s.mac.cols, 32);
  EXPECT_EQ(s.mac.dataflow, Dataflow::WS);
}

TEST(Presets, ResolveByNameAndPath) {
  std::string p = resolve_hw_path("ane_m1");
  EXPECT_EQ(fs::path(p).filename(), "ane_m1.toml");
  EXPECT_EQ(HardwareConfig::resolve(p).name, "ane_m1");
  EXPECT_EQ(fs::weakly_canonical(hw_dir()), fs::weakly_canonical(OPENNPU_TEST_HW_DIR));
  try {
    HardwareConfig::resolve("ane_z9");
    ADD_FAILURE();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("ane_z9"), std::string::npos);
    EXPECT_NE(m.find("ane_m1"), std::string::npos) << "the error should list the presets: " << m;
  }
  EXPECT_THROW(HardwareConfig::resolve("/nonexistent/x.toml"), Error);
}

TEST(Presets, EnvironmentOverridesTheDirectory) {
  fs::path dir = fs::temp_directory_path() / ("opennpu_hw_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    std::ofstream f(dir / "tiny.toml");
    f << kBase;
  }
  ::setenv("OPENNPU_HW_DIR", dir.c_str(), 1);
  EXPECT_EQ(list_presets(), std::vector<std::string>{"tiny"});
  EXPECT_EQ(HardwareConfig::resolve("tiny").cores, 2);
  EXPECT_THROW(HardwareConfig::resolve("ane_m1"), Error);
  ::setenv("OPENNPU_HW_DIR", (dir / "missing").c_str(), 1);
  EXPECT_THROW(hw_dir(), Error);
  ::unsetenv("OPENNPU_HW_DIR");
  fs::remove_all(dir);
  EXPECT_EQ(HardwareConfig::resolve("ane_m1").name, "ane_m1");
}
