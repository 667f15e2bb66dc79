// tools/cli_util.h — helpers shared by the CLI commands.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "opennpu/runtime.h"

// --dim NAME=VALUE (repeatable) -> map; a malformed entry is an opennpu::Error.
std::map<std::string, int64_t> parse_dims(const std::vector<std::string>& dims);
// Inputs for a model: --input NAME=FILE.npy where given, else seeded (floats uniform in [0,1),
// other dtypes zero, as the ONNX Runtime harness makes them).
opennpu::NamedTensors make_inputs(const opennpu::Model& m, const std::vector<std::string>& files, uint64_t seed);

// Seconds on the steady clock (for differences).
double now_s();
// Latency of m.predict(feeds), in seconds: the first prediction, then `warmup` untimed ones, then
// min/median/p90 over `runs` timed ones (runs >= 1).
struct LatencyDist { double first = 0, median = 0, p90 = 0, min = 0; };
LatencyDist time_runs(const opennpu::Model& m, const opennpu::NamedTensors& feeds, int runs, int warmup);
