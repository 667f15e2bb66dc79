// npu/arch/hardware.h — the description of one neural engine, as read from a hw/*.toml file.
//
// A HardwareConfig is plain data: N identical cores, each with a MAC array (rows x cols, a
// dataflow, MACs per cycle per dtype), a vector/planar unit (lanes, LUT activations), a local
// SRAM; a clock; DRAM bandwidth/latency and an optional system cache; the per-prediction dispatch
// overhead; the ops and dtypes the engine takes; and energy per event. Files are validated
// strictly: an unknown key, a missing key, a wrong type or an impossible value is an
// opennpu::Error that names the file, the line and the key. Derived figures (peak rates, bytes per
// FLOP) and a stable hash of the resolved values (for the compiled-model cache) are computed here
// so every tool reports the same numbers.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace opennpu::npu {

// How a GEMM C[M,N] = A[M,K] * B[K,N] is laid onto the MAC array (SCALE-Sim's names):
// which operand stays in the PEs while the other streams through.
enum class Dataflow { WS, OS, IS };
const char* dataflow_name(Dataflow d);              // "ws", "os", "is"
std::optional<Dataflow> parse_dataflow(std::string_view s);

enum class AccumPrecision { FP32, FP16 };
const char* accum_name(AccumPrecision a);          // "fp32", "fp16"

struct MacArrayConfig {
  int64_t rows = 0;
  int64_t cols = 0;
  Dataflow dataflow = Dataflow::WS;
  int64_t macs_per_cycle_fp16 = 0;  // == rows * cols: one FP16 MAC per PE per cycle
  int64_t macs_per_cycle_int8 = 0;  // 0 = no INT8 compute; else a multiple of rows * cols
  AccumPrecision accumulator = AccumPrecision::FP32;
};

struct VectorUnitConfig {
  int64_t lanes = 0;                         // elements per cycle
  std::vector<std::string> lut_activations;  // functions evaluated by the lookup-table unit
};

struct SramConfig {
  int64_t bytes = 0;                      // local SRAM per core
  int64_t banks = 1;
  int64_t bandwidth_bytes_per_cycle = 0;  // between SRAM and the MAC array / vector unit
  int64_t kernel_buffer_bytes = 0;        // optional separate weight buffer; 0 = none modelled
};

struct MemoryConfig {
  double dram_bandwidth_gbps = 0;  // GB/s (1e9 bytes per second), whole SoC
  double dram_latency_ns = 0;
  int64_t system_cache_bytes = 0;  // optional; 0 = none modelled
  double system_cache_bandwidth_gbps = 0;  // optional; 0 = twice the DRAM bandwidth (assumption)
  double system_cache_bytes_per_second() const {
    return (system_cache_bandwidth_gbps > 0 ? system_cache_bandwidth_gbps : 2 * dram_bandwidth_gbps) * 1e9;
  }
  int64_t row_alignment_bytes = 1; // tensor rows are padded to this many bytes
};

struct EnergyConfig {
  double pj_per_mac_fp16 = 0;
  double pj_per_mac_int8 = 0;  // 0 when INT8 compute is not supported
  double pj_per_sram_byte = 0;
  double pj_per_dram_byte = 0;
  double static_power_mw = 0;
};

struct HardwareConfig {
  std::string name;
  std::string description;
  std::string source_file;  // where it was read from ("" when parsed from a string)

  int64_t cores = 0;
  double clock_ghz = 0;
  double dispatch_overhead_us = 0;  // paid once per prediction
  MacArrayConfig mac;               // every core is identical
  VectorUnitConfig vector;
  SramConfig sram;
  MemoryConfig memory;
  std::vector<std::string> ops;     // ONNX op types the engine can take
  std::vector<std::string> dtypes;  // compute dtypes: "fp16", "int8"
  EnergyConfig energy;

  // --- derived values ---
  double peak_flops_fp16() const;   // FLOP/s: cores * macs/cycle * 2 * clock
  double peak_ops_int8() const;     // OP/s, 0 when INT8 compute is not supported
  double peak_tflops_fp16() const { return peak_flops_fp16() / 1e12; }
  double peak_tops_int8() const { return peak_ops_int8() / 1e12; }
  double dram_bytes_per_second() const { return memory.dram_bandwidth_gbps * 1e9; }
  // DRAM bytes available per FP16 FLOP at peak: below a layer's bytes/FLOP it is memory bound.
  double bytes_per_flop() const { return dram_bytes_per_second() / peak_flops_fp16(); }
  bool supports_op(std::string_view op) const;
  bool supports_dtype(std::string_view dtype) const;
  bool has_lut(std::string_view fn) const;

  // Every value that affects compilation or timing, one "key=value" per line, in a fixed order
  // (name, description and source file are left out: renaming a file does not change hardware).
  std::string canonical_string() const;
  // FNV-1a 64 of canonical_string(): stable across runs, machines and builds.
  uint64_t hash() const;
  std::string hash_hex() const;

  // Parse TOML text; `source` names it in error messages.
  static HardwareConfig parse(std::string_view toml_text, const std::string& source);
  static HardwareConfig load_file(const std::string& path);
  // A preset name (ane_m1, ...) or a path to a .toml file.
  static HardwareConfig resolve(const std::string& name_or_path);
};

// The directory holding the presets: $OPENNPU_HW_DIR, else the source tree's hw/ compiled in,
// else <executable>/../share/opennpu/hw. Throws if none exists.
std::string hw_dir();
// Preset names (file stems of hw_dir()/*.toml), sorted.
std::vector<std::string> list_presets();
// The path a name or path resolves to (does not parse it).
std::string resolve_hw_path(const std::string& name_or_path);

// Activation names the LUT unit may declare (the validator rejects anything else).
const std::vector<std::string>& known_lut_activations();

}  // namespace opennpu::npu
