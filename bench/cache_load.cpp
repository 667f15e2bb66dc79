// bench/cache_load — how much the compiled-model cache saves: Model::load with a cold cache
// directory (import + passes + NPU compile + writing the entry) against loads served from it.
// Run by hand (not in ctest):
//   build/<dir>/bench_cache_load models/resnet50.onnx --hw ane_m1 [--runs 5] [--check]
// --check also runs one prediction on a cold and a warm model and compares the outputs bit for bit.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "opennpu/runtime.h"
#include "runtime/model_impl.h"

using namespace opennpu;
namespace fs = std::filesystem;

static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

int main(int argc, char** argv) {
  std::string model, hw;
  int runs = 5;
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--hw" && i + 1 < argc) hw = argv[++i];
    else if (a == "--runs" && i + 1 < argc) runs = std::max(1, std::atoi(argv[++i]));
    else if (a == "--check") check = true;
    else if (!a.empty() && a[0] != '-') model = a;
    else { std::fprintf(stderr, "usage: %s MODEL.onnx [--hw NAME] [--runs N] [--check]\n", argv[0]); return 2; }
  }
  if (model.empty()) { std::fprintf(stderr, "usage: %s MODEL.onnx [--hw NAME] [--runs N] [--check]\n", argv[0]); return 2; }
  try {
    char tmpl[] = "/tmp/opennpu_cache_bench.XXXXXX";
    if (!::mkdtemp(tmpl)) { std::perror("mkdtemp"); return 1; }
    const std::string dir = tmpl;
    LoadOptions lo;
    lo.cache_dir = dir;
    if (!hw.empty()) { lo.compute_units = ComputeUnits::all; lo.hardware = hw; }

    double t0 = now();
    Model cold = Model::load(model, lo);
    const double cold_s = now() - t0;
    if (cold.impl().cache_hit) { std::fprintf(stderr, "first load hit the cache?\n"); return 1; }
    const auto file = cold.impl().cache_file;
    const double file_mb = static_cast<double>(fs::file_size(file)) / 1e6;

    std::vector<double> warm;
    double cache_s = 0, sim_s = 0;
    for (int r = 0; r < runs; ++r) {
      t0 = now();
      Model m = Model::load(model, lo);
      warm.push_back(now() - t0);
      if (!m.impl().cache_hit) { std::fprintf(stderr, "warm load missed the cache\n"); return 1; }
      cache_s = m.impl().cache_seconds;
      sim_s = m.impl().sim_seconds;
    }
    std::sort(warm.begin(), warm.end());
    const double med = warm[warm.size() / 2];
    std::printf("model          %s%s%s\n", model.c_str(), hw.empty() ? " (cpu only)" : " on ", hw.c_str());
    std::printf("cache file     %s (%.1f MB)\n", file.c_str(), file_mb);
    std::printf("cold load      %8.1f ms (import + passes%s + write)\n", cold_s * 1e3, hw.empty() ? "" : " + compile");
    std::printf("warm load      %8.1f ms median of %d (min %.1f ms); of which hash+read+decode %.1f ms, timing sim %.1f ms\n",
                med * 1e3, runs, warm.front() * 1e3, cache_s * 1e3, sim_s * 1e3);
    std::printf("speedup        %8.1fx\n", cold_s / med);

    if (check) {
      Model warm_m = Model::load(model, lo);
      LoadOptions nc = lo;
      nc.cache_dir = "none";
      Model ref = Model::load(model, nc);
      NamedTensors feeds;
      std::mt19937 rng(1);
      std::uniform_real_distribution<float> u(-1.f, 1.f);
      for (const auto& in : ref.inputs()) {
        Shape s;
        for (int64_t d : in.shape) s.push_back(d < 0 ? 1 : d);
        Tensor t(in.dtype, s);
        if (in.dtype == DType::Float32) for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
        feeds[in.name] = t;
      }
      auto a = ref.predict(feeds), b = warm_m.predict(feeds);
      bool same = a.size() == b.size();
      for (const auto& [k, v] : a) {
        auto it = b.find(k);
        same = same && it != b.end() && it->second.nbytes() == v.nbytes() &&
               std::memcmp(it->second.raw(), v.raw(), v.nbytes()) == 0;
      }
      std::printf("outputs        %s (uncached vs cached model)\n", same ? "bit-identical" : "DIFFER");
      if (!same) return 1;
    }
    fs::remove_all(dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
