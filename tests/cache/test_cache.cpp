// Compiled-model cache: round trips (CPU and NPU, bit-identical predictions), hits, detection and
// rebuild of truncated / corrupt / stale / foreign entries, concurrent writers, disabling, and
// external-data invalidation. Models are generated at test time with onnx.helper.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <random>
#include <sstream>

#include "opennpu/runtime.h"
#include "runtime/cache.h"
#include "runtime/model_impl.h"

using namespace opennpu;
namespace fs = std::filesystem;

namespace {

const char* kGen = R"PY(
import sys, numpy as np, onnx
from onnx import helper as h, TensorProto as T, numpy_helper as nh
out = sys.argv[1]
rng = np.random.default_rng(0)
def init(name, *shape):
    return nh.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)

# cnn: NPU-friendly (Conv/Relu/pool/Gemm) with a Softmax tail and a Where the engine declines.
nodes = [
    h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
    h.make_node("Relu", ["c1"], ["r1"], name="relu1"),
    h.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv2"),
    h.make_node("Relu", ["c2"], ["r2"], name="relu2"),
    h.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
    h.make_node("Flatten", ["p"], ["f"], name="flat"),
    h.make_node("Gemm", ["f", "wf", "bf"], ["logits"], transB=1, name="fc"),
    h.make_node("Less", ["logits", "zero"], ["neg"], name="less"),
    h.make_node("Where", ["neg", "zero", "logits"], ["clamped"], name="where"),
    h.make_node("Softmax", ["clamped"], ["y"], axis=1, name="softmax"),
]
inits = [init("w1", 8, 3, 3, 3), init("b1", 8), init("w2", 16, 8, 3, 3), init("b2", 16), init("wf", 10, 16),
         init("bf", 10), nh.from_array(np.zeros([1], np.float32), "zero")]
g = h.make_graph(nodes, "cnn", [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 12, 12])],
                 [h.make_tensor_value_info("y", T.FLOAT, [1, 10])], inits)
onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), out + "/cnn.onnx")

# branchy: a CPU model with an If (subgraph attributes), int64 and string-free constants, and a
# symbolic batch dimension.
then_g = h.make_graph([h.make_node("Mul", ["a", "k"], ["o"])], "then_b", [], [h.make_tensor_value_info("o", T.FLOAT, None)])
else_g = h.make_graph([h.make_node("Sub", ["a", "k"], ["o"])], "else_b", [], [h.make_tensor_value_info("o", T.FLOAT, None)])
nodes = [
    h.make_node("MatMul", ["x", "m"], ["a"], name="mm"),
    h.make_node("ReduceSum", ["a"], ["s"], keepdims=0, name="rs"),
    h.make_node("Greater", ["s", "zero"], ["cond"], name="gt"),
    h.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g, name="iff"),
]
inits = [init("m", 6, 4), nh.from_array(np.float32(2.5).reshape([]), "k"), nh.from_array(np.float32(0).reshape([]), "zero")]
g = h.make_graph(nodes, "branchy", [h.make_tensor_value_info("x", T.FLOAT, [3, 6])],
                 [h.make_tensor_value_info("y", T.FLOAT, None)], inits)
onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 13)]), out + "/branchy.onnx")

# ext: weights in an external data file next to the model.
nodes = [h.make_node("MatMul", ["x", "big"], ["y"], name="mm")]
g = h.make_graph(nodes, "ext", [h.make_tensor_value_info("x", T.FLOAT, [2, 64])],
                 [h.make_tensor_value_info("y", T.FLOAT, [2, 32])], [init("big", 64, 32)])
m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
onnx.save(m, out + "/ext.onnx", save_as_external_data=True, all_tensors_to_one_file=True, location="ext.bin",
          size_threshold=0)
)PY";

struct Env {
  std::string dir;  // models
  Env() {
    char tmpl[] = "/tmp/opennpu_cache_test.XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
    dir = tmpl;
    std::ofstream(dir + "/gen.py") << kGen;
    std::string cmd = std::string(OPENNPU_TEST_PYTHON) + " " + dir + "/gen.py " + dir;
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("model generation failed: " + cmd);
  }
  ~Env() { fs::remove_all(dir); }
};
Env& env() {
  static Env e;
  return e;
}
std::string model(const std::string& name) { return env().dir + "/" + name + ".onnx"; }

// A fresh cache directory per test.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/opennpu_cache_dir.XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
    path = tmpl;
  }
  ~TempDir() { fs::remove_all(path); }
};

LoadOptions opts(const std::string& cache_dir, bool npu) {
  LoadOptions o;
  o.cache_dir = cache_dir;
  if (npu) { o.compute_units = ComputeUnits::all; o.hardware = "ane_m1"; }
  return o;
}

NamedTensors inputs_for(const Model& m, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  NamedTensors feeds;
  for (const auto& in : m.inputs()) {
    Shape s;
    for (int64_t d : in.shape) s.push_back(d < 0 ? 2 : d);
    Tensor t(DType::Float32, s);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
    feeds[in.name] = t;
  }
  return feeds;
}

void expect_identical(const NamedTensors& a, const NamedTensors& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, v] : a) {
    auto it = b.find(k);
    ASSERT_NE(it, b.end()) << k;
    ASSERT_EQ(v.dtype(), it->second.dtype()) << k;
    ASSERT_EQ(v.shape(), it->second.shape()) << k;
    EXPECT_EQ(0, std::memcmp(v.raw(), it->second.raw(), v.nbytes())) << "output " << k << " differs";
  }
}

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
void spit(const std::string& p, const std::string& s) { std::ofstream(p, std::ios::binary | std::ios::trunc) << s; }

// Loads with stderr captured; returns the model and what was printed.
std::pair<Model, std::string> load_capturing(const std::string& path, const LoadOptions& o) {
  testing::internal::CaptureStderr();
  try {
    Model m = Model::load(path, o);
    return {std::move(m), testing::internal::GetCapturedStderr()};
  } catch (...) {
    testing::internal::GetCapturedStderr();
    throw;
  }
}

// ---------------------------------------------------------------------------------------------

TEST(CacheHash, StreamingMatchesOneShotAndSeparates) {
  std::vector<unsigned char> buf(1000);
  std::mt19937 rng(7);
  for (auto& b : buf) b = static_cast<unsigned char>(rng());
  for (size_t n : {0u, 1u, 7u, 8u, 31u, 32u, 33u, 100u, 1000u}) {
    const uint64_t one = cache::fast_hash(buf.data(), n);
    for (size_t split : {0ul, 1ul, 5ul, 32ul, 40ul}) {
      if (split > n) continue;
      cache::Hasher h;
      h.update(buf.data(), split);
      h.update(buf.data() + split, n - split);
      EXPECT_EQ(h.digest(), one) << n << "/" << split;
    }
  }
  std::set<uint64_t> seen;
  for (size_t n = 0; n <= 64; ++n) seen.insert(cache::fast_hash(buf.data(), n));
  EXPECT_EQ(seen.size(), 65u);
  auto flipped = buf;
  flipped[500] ^= 1;
  EXPECT_NE(cache::fast_hash(buf.data(), 1000), cache::fast_hash(flipped.data(), 1000));
}

TEST(CacheDir, ResolveAndDisable) {
  EXPECT_EQ(cache::resolve_dir("none"), "");
  EXPECT_EQ(cache::resolve_dir("/x/y"), "/x/y");
  ::setenv("OPENNPU_CACHE_DIR", "none", 1);
  EXPECT_EQ(cache::resolve_dir(""), "");
  ::unsetenv("OPENNPU_CACHE_DIR");
  ::setenv("XDG_CACHE_HOME", "/xdg", 1);
  EXPECT_EQ(cache::resolve_dir(""), "/xdg/opennpu");
  ::unsetenv("XDG_CACHE_HOME");
  ::setenv("HOME", "/home/u", 1);
  EXPECT_EQ(cache::resolve_dir(""), "/home/u/.cache/opennpu");
}

class RoundTrip : public testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(RoundTrip, SecondLoadHitsAndPredictsBitIdentically) {
  const auto& [name, npu] = GetParam();
  TempDir d;
  Model cold = Model::load(model(name), opts(d.path, npu));
  EXPECT_FALSE(cold.impl().cache_hit);
  ASSERT_TRUE(fs::exists(cold.impl().cache_file));
  auto [warm, err] = load_capturing(model(name), opts(d.path, npu));
  EXPECT_TRUE(warm.impl().cache_hit);
  EXPECT_EQ(err, "");
  Model none = Model::load(model(name), opts("none", npu));
  EXPECT_FALSE(none.impl().cache_hit);
  EXPECT_EQ(none.impl().cache_file, "");
  if (npu) {
    ASSERT_TRUE(warm.impl().uses_npu());
    int on_npu = 0;
    for (const auto& p : warm.impl().program->placements) on_npu += p.npu;
    EXPECT_GT(on_npu, 0);
    EXPECT_EQ(warm.impl().timing.cycles, none.impl().timing.cycles);
    EXPECT_EQ(warm.impl().program->tasks.size(), none.impl().program->tasks.size());
  }
  ASSERT_EQ(warm.inputs().size(), none.inputs().size());
  for (unsigned seed : {1u, 2u}) {
    NamedTensors feeds = inputs_for(none, seed);
    NamedTensors ref = none.predict(feeds);
    expect_identical(ref, cold.predict(feeds));
    expect_identical(ref, warm.predict(feeds));
  }
  // The file decodes and re-encodes to the same bytes: every field survives.
  std::string bytes = slurp(cold.impl().cache_file);
  cache::Entry e = cache::deserialize(bytes.data(), bytes.size(), nullptr, npu ? warm.impl().hw->cores : 0);
  EXPECT_EQ(cache::serialize(e), bytes);
}

INSTANTIATE_TEST_SUITE_P(Models, RoundTrip,
                         testing::Values(std::make_tuple("cnn", false), std::make_tuple("cnn", true),
                                         std::make_tuple("branchy", false), std::make_tuple("ext", false),
                                         std::make_tuple("ext", true)));

TEST(CacheKey, OptionsAndHardwareGetTheirOwnEntries) {
  TempDir d;
  Model a = Model::load(model("cnn"), opts(d.path, false));
  LoadOptions o = opts(d.path, false);
  o.optimize = false;
  Model b = Model::load(model("cnn"), o);
  Model c = Model::load(model("cnn"), opts(d.path, true));
  LoadOptions o2 = opts(d.path, true);
  o2.hardware = "ane_a17pro";
  Model e = Model::load(model("cnn"), o2);
  EXPECT_FALSE(b.impl().cache_hit);
  EXPECT_FALSE(c.impl().cache_hit);
  EXPECT_FALSE(e.impl().cache_hit);
  std::set<std::string> files{a.impl().cache_file, b.impl().cache_file, c.impl().cache_file, e.impl().cache_file};
  EXPECT_EQ(files.size(), 4u);
  o.threads = 1;  // threads do not change the result: same entry
  EXPECT_TRUE(Model::load(model("cnn"), o).impl().cache_hit);
}

// Damages the entry in several ways; each must be reported, rebuilt, and the rebuilt entry must hit.
struct Damage {
  const char* name;
  std::function<void(std::string& bytes, const std::string& other)> apply;
  const char* expect;  // substring of the warning
};

class Corruption : public testing::TestWithParam<bool> {};

TEST_P(Corruption, DetectedWarnedAndRebuilt) {
  const bool npu = GetParam();
  TempDir d;
  const std::string other_file = Model::load(model("branchy"), opts(d.path, false)).impl().cache_file;
  const std::string other = slurp(other_file);
  const std::vector<Damage> damages = {
      {"empty", [](std::string& b, const std::string&) { b.clear(); }, "truncated"},
      {"header only", [](std::string& b, const std::string&) { b.resize(40); }, "truncated"},
      {"half", [](std::string& b, const std::string&) { b.resize(b.size() / 2); }, "truncated"},
      {"last byte", [](std::string& b, const std::string&) { b.pop_back(); }, "truncated"},
      {"flipped payload", [](std::string& b, const std::string&) { b[b.size() / 2] ^= 0x40; }, "checksum mismatch"},
      {"flipped checksum", [](std::string& b, const std::string&) { b.back() ^= 1; }, "checksum mismatch"},
      {"bad magic", [](std::string& b, const std::string&) { b[0] = 'X'; }, "bad magic"},
      {"other version",
       [](std::string& b, const std::string&) { uint32_t v = cache::kFormatVersion + 1; std::memcpy(&b[8], &v, 4); },
       "format version"},
      {"foreign", [](std::string& b, const std::string& o) { b = o; }, "key mismatch"},
      {"other build",
       [npu](std::string& b, const std::string&) {
         cache::Entry e = cache::deserialize(b.data(), b.size(), nullptr, npu ? 16 : 0);
         e.key.build_id ^= 1;
         b = cache::serialize(e);
       },
       "another opennpu build"},
      {"garbage", [](std::string& b, const std::string&) { b.assign(5000, '\x7f'); }, "bad magic"},
  };
  Model ref = Model::load(model("cnn"), opts("none", npu));
  NamedTensors feeds = inputs_for(ref, 3);
  NamedTensors want = ref.predict(feeds);
  const std::string file = Model::load(model("cnn"), opts(d.path, npu)).impl().cache_file;
  for (const auto& dmg : damages) {
    SCOPED_TRACE(dmg.name);
    std::string bytes = slurp(file);
    dmg.apply(bytes, other);
    spit(file, bytes);
    auto [m, err] = load_capturing(model("cnn"), opts(d.path, npu));
    EXPECT_FALSE(m.impl().cache_hit);
    EXPECT_NE(err.find("opennpu: warning: compiled-model cache " + file + " is "), std::string::npos) << err;
    EXPECT_NE(err.find(dmg.expect), std::string::npos) << err;
    EXPECT_NE(err.find("; rebuilding"), std::string::npos) << err;
    expect_identical(want, m.predict(feeds));
    auto [again, err2] = load_capturing(model("cnn"), opts(d.path, npu));
    EXPECT_TRUE(again.impl().cache_hit) << "not rebuilt";
    EXPECT_EQ(err2, "");
    expect_identical(want, again.predict(feeds));
  }
}
INSTANTIATE_TEST_SUITE_P(Units, Corruption, testing::Values(false, true));

// Forged files (valid checksum, mutated payload): decoding must fail cleanly or produce something
// that passes validation, never read out of bounds (run under ASan to make that strict).
TEST(CacheFuzz, MutatedPayloadsWithValidChecksum) {
  TempDir d;
  for (bool npu : {false, true}) {
    Model m = Model::load(model("cnn"), opts(d.path, npu));
    const std::string good = slurp(m.impl().cache_file);
    std::mt19937_64 rng(npu ? 11 : 12);
    int rejected = 0;
    for (int it = 0; it < 400; ++it) {
      std::string b = good;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) {
        size_t pos = 80 + rng() % (b.size() - 88);
        switch (rng() % 3) {
          case 0: b[pos] ^= static_cast<char>(1u << (rng() % 8)); break;
          case 1: b[pos] = static_cast<char>(0xff); break;
          default: if (pos + 8 < b.size() - 8) { uint64_t v = rng(); std::memcpy(&b[pos], &v, 8); }
        }
      }
      const uint64_t c = cache::checksum(b.data(), b.size() - 8);
      std::memcpy(&b[b.size() - 8], &c, 8);
      try {
        cache::deserialize(b.data(), b.size(), nullptr, npu ? 16 : 0);
      } catch (const cache::CacheError&) {
        ++rejected;
      }
    }
    EXPECT_GT(rejected, 0);
    // Every truncation point of a forged (re-checksummed) prefix is rejected.
    for (size_t n = 0; n < good.size(); n += 1 + good.size() / 300) {
      std::string b = good.substr(0, n);
      EXPECT_THROW(cache::deserialize(b.data(), b.size(), nullptr, npu ? 16 : 0), cache::CacheError);
    }
  }
}

TEST(CacheDisabled, NoneWritesNothing) {
  TempDir d;
  ::setenv("OPENNPU_CACHE_DIR", d.path.c_str(), 1);
  Model a = Model::load(model("cnn"), opts("none", true));
  EXPECT_EQ(a.impl().cache_file, "");
  EXPECT_TRUE(fs::is_empty(d.path));
  ::setenv("OPENNPU_CACHE_DIR", "none", 1);
  Model b = Model::load(model("cnn"), opts("", false));
  EXPECT_EQ(b.impl().cache_file, "");
  ::setenv("OPENNPU_CACHE_DIR", d.path.c_str(), 1);
  Model c = Model::load(model("cnn"), opts("", false));  // env var picks the directory
  EXPECT_EQ(fs::path(c.impl().cache_file).parent_path(), fs::path(d.path));
  ::unsetenv("OPENNPU_CACHE_DIR");
}

TEST(CacheDisabled, UnwritableDirectoryIsAWarningNotAnError) {
  auto [m, err] = load_capturing(model("cnn"), opts("/proc/opennpu-cache-cannot-exist", false));
  EXPECT_FALSE(m.impl().cache_hit);
  EXPECT_NE(err.find("could not write the compiled-model cache"), std::string::npos) << err;
  NamedTensors feeds = inputs_for(m, 1);
  EXPECT_NO_THROW(m.predict(feeds));
}

TEST(CacheExternalData, ChangedExternalFileInvalidatesTheEntry) {
  TempDir d;
  // Work on a private copy of the model and its data file.
  const std::string dir = d.path + "/m";
  fs::create_directories(dir);
  fs::copy_file(model("ext"), dir + "/ext.onnx");
  fs::copy_file(env().dir + "/ext.bin", dir + "/ext.bin");
  const std::string cache_dir = d.path + "/cache";
  Model a = Model::load(dir + "/ext.onnx", opts(cache_dir, false));
  EXPECT_TRUE(Model::load(dir + "/ext.onnx", opts(cache_dir, false)).impl().cache_hit);
  // New weights of the same size, and a different mtime.
  std::string data = slurp(dir + "/ext.bin");
  for (size_t i = 0; i + 4 <= data.size(); i += 4) { float f = 0.5f; std::memcpy(&data[i], &f, 4); }
  spit(dir + "/ext.bin", data);
  struct timespec ts[2] = {{0, UTIME_NOW}, {12345, 0}};
  ASSERT_EQ(0, ::utimensat(AT_FDCWD, (dir + "/ext.bin").c_str(), ts, 0));
  auto [b, err] = load_capturing(dir + "/ext.onnx", opts(cache_dir, false));
  EXPECT_FALSE(b.impl().cache_hit);
  EXPECT_NE(err.find("external data"), std::string::npos) << err;
  NamedTensors feeds = inputs_for(b, 5);
  expect_identical(Model::load(dir + "/ext.onnx", opts("none", false)).predict(feeds), b.predict(feeds));
  EXPECT_TRUE(Model::load(dir + "/ext.onnx", opts(cache_dir, false)).impl().cache_hit);
}

TEST(CacheSize, LeastRecentlyUsedEntriesAreEvictedAboveTheCap) {
  TempDir d;
  const std::string a = Model::load(model("cnn"), opts(d.path, false)).impl().cache_file;
  const std::string b = Model::load(model("branchy"), opts(d.path, false)).impl().cache_file;
  // Age both, then use `a`: `b` becomes the least recently used.
  struct timespec old_ts[2] = {{1000, 0}, {1000, 0}};
  ASSERT_EQ(0, ::utimensat(AT_FDCWD, a.c_str(), old_ts, 0));
  ASSERT_EQ(0, ::utimensat(AT_FDCWD, b.c_str(), old_ts, 0));
  EXPECT_TRUE(Model::load(model("cnn"), opts(d.path, false)).impl().cache_hit);
  // A cap smaller than the entries: writing a third evicts `b` (oldest) and then `a`, keeps the new one.
  ::setenv("OPENNPU_CACHE_MAX_MB", "0", 1);
  const std::string c = Model::load(model("cnn"), opts(d.path, true)).impl().cache_file;
  ::unsetenv("OPENNPU_CACHE_MAX_MB");
  EXPECT_FALSE(fs::exists(b));
  EXPECT_FALSE(fs::exists(a));
  EXPECT_TRUE(fs::exists(c));
  // Under the default cap nothing is evicted.
  Model::load(model("branchy"), opts(d.path, false));
  EXPECT_TRUE(fs::exists(c));
}

// Several processes load the same model with an empty cache directory at once: all succeed, the
// entry ends up whole (the next load hits) and no temporary files are left behind.
TEST(CacheConcurrency, ProcessesLoadingAtOnceAllSucceed) {
  TempDir d;
  const std::string cmd = std::string(OPENNPU_TEST_CLI) + " plan " + model("cnn") + " --hw ane_m1 --json > /dev/null";
  std::string script = "export OPENNPU_CACHE_DIR=" + d.path + "; pids=; for i in 1 2 3 4; do " + cmd +
                       " & pids=\"$pids $!\"; done; rc=0; for p in $pids; do wait $p || rc=1; done; exit $rc";
  int st = std::system(("/bin/sh -c '" + script + "'").c_str());
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0);
  int files = 0;
  for (const auto& f : fs::directory_iterator(d.path)) {
    ++files;
    EXPECT_EQ(f.path().extension(), ".onpucm") << f.path();
  }
  EXPECT_EQ(files, 1);
  // A second round reads the entry (CLI processes are the same build: the entry must verify).
  st = std::system(("/bin/sh -c '" + script + "'").c_str());
  EXPECT_EQ(WEXITSTATUS(st), 0);
  // This process is another binary (other build id): it keeps an entry of its own beside the
  // CLI's, silently, instead of overwriting the CLI's in turn.
  auto [m, err] = load_capturing(model("cnn"), opts(d.path, true));
  EXPECT_FALSE(m.impl().cache_hit);
  EXPECT_EQ(err, "");
  EXPECT_TRUE(Model::load(model("cnn"), opts(d.path, true)).impl().cache_hit);
  files = 0;
  for (const auto& f : fs::directory_iterator(d.path)) files += f.path().extension() == ".onpucm";
  EXPECT_EQ(files, 2);
}

// The format serialises these structs field by field. When one of them changes size, a field was
// added or removed: serialise it in runtime/cache.cpp, bump cache::kFormatVersion, then update
// the numbers here.
TEST(CacheLayout, StructsTheFormatWasWrittenFor) {
#if defined(__x86_64__) && defined(__GLIBCXX__)
  EXPECT_EQ(sizeof(npu::Task), 144u);
  EXPECT_EQ(sizeof(npu::Layer), 880u);
  EXPECT_EQ(sizeof(npu::GemmGeom), 264u);
  EXPECT_EQ(sizeof(npu::Buffer), 80u);
  EXPECT_EQ(sizeof(npu::Segment), 64u);
  EXPECT_EQ(sizeof(npu::Placement), 104u);
  EXPECT_EQ(sizeof(npu::Program), 176u);
  EXPECT_EQ(sizeof(ir::Attribute), 288u);
  EXPECT_EQ(sizeof(ir::Node), 192u);
  EXPECT_EQ(sizeof(ir::ValueInfo), 96u);
  EXPECT_EQ(sizeof(ir::Graph), 200u);
  EXPECT_EQ(sizeof(ir::Model), 320u);
#endif
}

}  // namespace
