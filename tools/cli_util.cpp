// Helpers shared by the CLI commands: --dim parsing, seeded inputs, latency timing.
#include "tools/cli_util.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <random>

#include <fmt/format.h>

#include "core/npy.h"

using namespace opennpu;

std::map<std::string, int64_t> parse_dims(const std::vector<std::string>& dims) {
  std::map<std::string, int64_t> out;
  for (const auto& d : dims) {
    auto p = d.find('=');
    if (p == std::string::npos || p == 0) throw Error("--dim '" + d + "' must look like NAME=VALUE");
    const std::string v = d.substr(p + 1);
    char* end = nullptr;
    long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end || x < 0) throw Error("--dim " + d.substr(0, p) + ": '" + v + "' is not a non-negative integer");
    out[d.substr(0, p)] = x;
  }
  return out;
}

// Seeded inputs for a model: floats uniform in [0,1), integers 0 (as the ORT harness does), so
// opennpu and ONNX Runtime see the same data. --input NAME=FILE overrides.
NamedTensors make_inputs(const Model& m, const std::vector<std::string>& files, uint64_t seed) {
  NamedTensors feeds;
  for (const auto& f : files) {
    auto p = f.find('=');
    if (p == std::string::npos || p == 0) throw Error("--input '" + f + "' must look like NAME=FILE.npy");
    feeds[f.substr(0, p)] = read_npy(f.substr(p + 1));
  }
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  for (const auto& in : m.inputs()) {
    if (feeds.count(in.name)) continue;
    Shape s;
    for (size_t d = 0; d < in.shape.size(); ++d) {
      if (in.shape[d] < 0)
        throw Error(fmt::format("input '{}' has a symbolic dimension '{}': bind it with --dim {}=VALUE", in.name,
                                in.dim_names[d], in.dim_names[d].empty() ? "NAME" : in.dim_names[d]));
      s.push_back(in.shape[d]);
    }
    Tensor t(in.dtype, s);
    if (in.dtype == DType::Float32) for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
    feeds[in.name] = t;
  }
  return feeds;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

LatencyDist time_runs(const Model& m, const NamedTensors& feeds, int runs, int warmup) {
  LatencyDist d;
  double t0 = now_s();
  m.predict(feeds);
  d.first = now_s() - t0;
  for (int i = 0; i < warmup; ++i) m.predict(feeds);
  std::vector<double> v;
  for (int i = 0; i < runs; ++i) {
    double a = now_s();
    m.predict(feeds);
    v.push_back(now_s() - a);
  }
  std::sort(v.begin(), v.end());
  d.min = v.front();
  d.median = v[v.size() / 2];
  d.p90 = v[std::min(v.size() - 1, static_cast<size_t>(std::ceil(0.9 * v.size())) - 1)];
  return d;
}
