// explore/explore.h — design-space exploration: a sweep file, its grid of NPU designs, and the
// (design x model) simulations that fill a results table.
//
// A Sweep is read from TOML (docs/explore.md): a base hardware preset or file, parameter axes
// (lists or ranges), constraints, the models and an area model. expand() turns it into the list
// of DesignPoints that pass the constraints, each a fully validated HardwareConfig (written out as
// TOML and re-read by the hardware parser, so a design is exactly what `opennpu hw show` would
// accept). A Runner simulates (point, model) jobs; it imports and optimises each model once and
// reuses a compiled Program across points whose compile key matches (the compiler reads only
// cores, the MAC array shape and dataflow, SRAM size, vector lanes, row alignment and the
// supported ops/dtypes/LUTs; clock, DRAM, cache and energy only enter the timing simulation).
// Results are CSV rows, identical whether a point ran alone, in a group, in any thread or on a
// Dask worker. Journal files make a sweep resumable: finished rows are appended as they complete,
// keyed by a point key, and a rerun skips them. Every error a sweep file can cause names
// file:line.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "npu/arch/hardware.h"

namespace opennpu::explore {

// The TOML text of a HardwareConfig: HardwareConfig::parse(to_toml(h)) gives back h (same hash).
std::string to_toml(const npu::HardwareConfig& h);

// One coefficient of the area model with where it comes from.
struct AreaCoef {
  double value = 0;
  std::string source;
};

// mm^2 of a design: cores x (MACs, INT8 extra, SRAM, vector lanes, fixed) + system cache.
struct AreaModel {
  AreaCoef mm2_per_mac_fp16, mm2_per_mac_int8, mm2_per_sram_byte, mm2_per_vector_lane, mm2_per_core, mm2_per_cache_byte;
  static AreaModel defaults();
  double area_mm2(const npu::HardwareConfig& h) const;
};

struct Axis {
  std::string name;
  std::vector<std::string> values;  // canonical text of each value (numbers as %.17g / integers)
  int line = 0;
};

struct Constraint {
  std::string name;  // e.g. max_total_macs
  double value = 0;
  int line = 0;
};

struct ModelRef {
  std::string name;  // file stem; the `model` column
  std::string path;
  int line = 0;
};

struct Sweep {
  std::string file;         // the sweep file (for messages)
  std::string name;
  std::string base;         // preset name or path, as resolved
  npu::HardwareConfig base_hw;
  std::vector<Axis> axes;   // in file order; the grid is their cartesian product (last axis fastest)
  std::vector<Constraint> constraints;
  std::vector<ModelRef> models;
  bool functional = false;  // fidelity = "functional": also run values and compare with the CPU
  AreaModel area;
  uint64_t content_hash = 0;  // of the file's bytes

  // models_dir: overrides the file's models_dir ("" = keep).
  static Sweep load(const std::string& path, const std::string& models_dir = "");
  static Sweep parse(const std::string& text, const std::string& file, const std::string& models_dir = "");
};

// Every parameter a sweep may set (axis names), in column order.
const std::vector<std::string>& known_axes();

struct DesignPoint {
  int index = 0;                // position in the full grid (before constraints)
  std::map<std::string, std::string> params;  // axis name -> value (every known axis, swept or not)
  npu::HardwareConfig hw;
  uint64_t compile_key = 0;     // equal keys compile to the same Program
  double area_mm2 = 0;
};

struct Expansion {
  std::vector<DesignPoint> points;  // passing the constraints, by index
  int64_t grid_size = 0;            // before constraints
  std::map<std::string, int64_t> rejected_by;  // constraint name -> points it removed
};

// The grid, constrained. Throws (naming file:line) when an axis value gives an invalid design or
// when the constraints leave no point.
Expansion expand(const Sweep& s);

// One (design, model) simulation.
struct Job {
  int point = 0;  // index into Expansion::points
  int model = 0;  // index into Sweep::models
};

// The CSV header (one line, no newline) and the row's key column (unique per design x model x
// fidelity; used by the journal).
const std::vector<std::string>& columns();
std::string point_key(const Sweep& s, const DesignPoint& p, int model);

// Simulates jobs. Thread-safe: run() may be called from several threads at once.
class Runner {
 public:
  // reuse = false compiles every (point, model) anew (to check that reuse changes nothing).
  Runner(const Sweep& s, const Expansion& e, bool reuse = true);
  ~Runner();
  // Imports and optimises the given models (all when empty) now; run() does it lazily otherwise.
  void prepare(const std::vector<int>& models = {});
  // The CSV row (no newline) for one job.
  std::string run(const Job& j);
  int compiles() const;  // how many compilations so far

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Jobs of the sweep grouped so that each group shares one compilation (same model and compile
// key), ordered by (model, first point); `skip` holds point keys already done.
std::vector<std::vector<Job>> plan_groups(const Sweep& s, const Expansion& e, const std::set<std::string>& skip);

// ---- results files in an output directory ----
// DIR/journal.csv: header + rows in completion order (append-only; a torn last line is ignored).
// Returns the rows already there (key -> row); throws if its header differs from columns().
std::map<std::string, std::string> read_journal(const std::string& dir);
// Appends rows (thread-safe, flushed per call).
class Journal {
 public:
  explicit Journal(const std::string& dir);
  ~Journal();
  void append(const std::string& row);
 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct Summary {
  int64_t rows = 0, points = 0, pareto_rows = 0;
};
// Writes DIR/results.csv (the grid's rows in (point, model) order, from `rows` by key),
// DIR/pareto.csv and DIR/summary.json. Throws if a job's row is missing.
Summary write_results(const std::string& dir, const Sweep& s, const Expansion& e,
                      const std::map<std::string, std::string>& rows);

// The whole sweep in this process: resume from DIR/journal.csv, run the missing jobs on `jobs`
// threads (grouped by compilation), append each row to the journal as it completes, then write
// the results files.
struct RunOptions {
  int jobs = 1;
  bool reuse = true;
  // Called after each completed row (from worker threads, serialised): rows done, rows in total.
  std::function<void(int64_t done, int64_t total)> progress;
};
struct RunStats {
  int64_t rows = 0;      // design x model rows in the results
  int64_t resumed = 0;   // rows found in the journal (not run again)
  int64_t ran = 0;       // rows simulated now
  int compiles = 0;
  double seconds = 0;    // wall time of the simulations (not the result writing)
  Summary summary;
};
RunStats run_sweep(const Sweep& s, const Expansion& e, const std::string& dir, const RunOptions& opts);

// Splits one CSV line (the format written here: fields quoted only when they hold , or ").
std::vector<std::string> split_csv(const std::string& line);

// 64-bit FNV-1a of s (content hashes and point keys; the same on every machine).
uint64_t fnv1a64(std::string_view s);

}  // namespace opennpu::explore
