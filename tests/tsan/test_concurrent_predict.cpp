// tests/tsan/test_concurrent_predict.cpp — Model::predict from many threads on one Model.
//
//   test_concurrent_predict MODEL.onnx cpu|npu CALLERS ITERATIONS [THREADS]
//
// Makes 8 different inputs (seeded), predicts each once on the calling thread (the reference),
// then starts CALLERS threads on the same Model, each running ITERATIONS predictions that cycle
// through the inputs, and requires every output to be bit-identical to its reference. Built by
// every preset; the `tsan` preset runs it under ThreadSanitizer (scripts/sanitize.sh tsan), which
// also reports any data race inside predict. THREADS is LoadOptions::threads (the intra-op
// thread count; default 2). Exit 0 = pass, 1 = mismatch or error, 77 = model not exported.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "opennpu/errors.h"
#include "opennpu/runtime.h"

using namespace opennpu;

namespace {

NamedTensors make_inputs(const Model& m, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  NamedTensors in;
  for (const auto& info : m.inputs()) {
    Shape shape;
    for (int64_t d : info.shape) shape.push_back(d < 0 ? 1 : d);
    if (info.dtype != DType::Float32) throw Error("test model input " + info.name + " is not float32");
    Tensor t(DType::Float32, shape);
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = u(rng);
    in.emplace(info.name, std::move(t));
  }
  return in;
}

bool same(const NamedTensors& a, const NamedTensors& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, t] : a) {
    auto it = b.find(name);
    if (it == b.end()) return false;
    const Tensor& u = it->second;
    if (t.dtype() != u.dtype() || t.shape() != u.shape() || t.nbytes() != u.nbytes()) return false;
    if (t.nbytes() && std::memcmp(t.raw(), u.raw(), t.nbytes()) != 0) return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5 || argc > 6) {
    std::fprintf(stderr, "usage: %s MODEL.onnx cpu|npu CALLERS ITERATIONS [THREADS]\n", argv[0]);
    return 1;
  }
  const std::string path = argv[1], device = argv[2];
  const int callers = std::atoi(argv[3]), iters = std::atoi(argv[4]);
  if (!std::filesystem::exists(path)) {
    std::fprintf(stderr, "%s not found (run scripts/export_models.py): skipped\n", path.c_str());
    return 77;
  }
  try {
    LoadOptions opts;
    opts.cache_dir = "none";
    opts.threads = argc == 6 ? std::atoi(argv[5]) : 2;
    if (device == "npu") {
      opts.compute_units = ComputeUnits::all;
      opts.hardware = "ane_m1";
    }
    const Model model = Model::load(path, opts);
    constexpr int kInputs = 8;
    std::vector<NamedTensors> inputs, refs;
    for (int i = 0; i < kInputs; ++i) {
      inputs.push_back(make_inputs(model, 1000 + i));
      refs.push_back(model.predict(inputs.back()));
    }
    if (same(refs[0], refs[1])) {
      std::fprintf(stderr, "different inputs gave identical outputs: the test would not see a mix-up\n");
      return 1;
    }
    std::atomic<int> mismatches{0}, errors{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < callers; ++t)
      pool.emplace_back([&, t] {
        for (int i = 0; i < iters; ++i) {
          const int k = (t + i) % kInputs;
          try {
            if (!same(model.predict(inputs[k]), refs[k])) ++mismatches;
          } catch (const std::exception& e) {
            if (errors++ == 0) std::fprintf(stderr, "predict threw: %s\n", e.what());
          }
        }
      });
    for (auto& th : pool) th.join();
    std::printf("%s on %s: %d callers x %d predictions: %d mismatches, %d errors\n", path.c_str(), device.c_str(),
                callers, iters, mismatches.load(), errors.load());
    return mismatches || errors ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
