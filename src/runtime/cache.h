// runtime/cache.h — the compiled-model cache: load a model once, keep what loading produced.
//
// Model::load spends its time importing the protobuf, running ONNX shape inference and the graph
// passes and (with an NPU) compiling the engine Program. All of that is a pure function of the
// model file, the hardware description, the load options and this build of opennpu, so its
// result is written to one file per (model, options, hardware) in the cache directory and read
// back the next time. The file format is described in docs/compiled-model-format.md.
//
// The cache file is untrusted input: every length, count, index and offset is checked; a file
// that is truncated, corrupt, of another format version, built by another opennpu build, or
// written for another model is reported on stderr and rebuilt (overwritten), never used.
// Writes go to a temporary file in the cache directory and are renamed into place, so readers
// and concurrent writers only ever see whole files.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ir/graph.h"
#include "npu/compiler/program.h"
#include "opennpu/runtime.h"

namespace opennpu::cache {

// Bump when the byte layout changes (readers reject every other version).
constexpr uint32_t kFormatVersion = 3;  // 2: buffer storage types and INT8 layer parameters; 3: INT8 region chains
// Bump when the importer, the passes or the NPU compiler change what they produce for the same
// input. (Entries are also keyed to the exact binary, see build_id(), so this matters for
// installed releases more than for development builds.)
constexpr uint32_t kCompilerVersion = 1;

// ---- hashing -------------------------------------------------------------------------------
// A fast 64-bit, non-cryptographic hash (an XXH64-style construction: four independent lanes of
// multiply/rotate over 8-byte words, then an avalanche). It detects accidental corruption and
// distinguishes inputs; it does NOT resist someone crafting collisions. Several GB/s per core.
class Hasher {
 public:
  explicit Hasher(uint64_t seed = 0);
  void update(const void* data, size_t n);
  uint64_t digest() const;

 private:
  uint64_t v_[4];
  unsigned char buf_[32];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
  uint64_t seed_;
};
uint64_t fast_hash(const void* data, size_t n, uint64_t seed = 0);
// Hashes a file's bytes; throws Error when it cannot be read.
uint64_t hash_file(const std::string& path, uint64_t* size_out = nullptr);

// ---- key -----------------------------------------------------------------------------------
struct Key {
  uint64_t model_hash = 0;     // fast_hash of the model file bytes
  uint64_t model_size = 0;
  uint64_t hw_hash = 0;        // HardwareConfig::hash(), 0 for CPU-only loads
  uint64_t options_hash = 0;   // compute units, bound dims, optimize
  uint64_t build_id = 0;       // identity of the binary holding this code (see build_id())
  uint32_t compiler_version = kCompilerVersion;
  bool operator==(const Key&) const = default;
  uint64_t combined() const;   // one hash of all fields
};
uint64_t options_hash(const LoadOptions& opts);
// Size + mtime of the executable or shared library this code was linked into: any rebuild of
// opennpu gives a new build id, so a development build never reads entries of an older one.
uint64_t build_id();

// External-data files a model references: the model bytes cannot change without the key
// changing, but these files can, so each entry records them (canonical path, size, mtime) and a
// hit re-checks them with stat().
struct ExternalFile {
  std::string path;
  int64_t size = -1;
  int64_t mtime_ns = -1;
};
// Walks the model's protobuf wire format (no full parse) and lists the external-data files of
// every initializer and attribute tensor, resolved against the model's directory.
std::vector<ExternalFile> external_files(std::string_view model_bytes, const std::string& model_dir);

// ---- directory -----------------------------------------------------------------------------
// Option value that disables the cache.
inline constexpr const char* kDisabled = "none";
// The directory to use: LoadOptions::cache_dir when set; else $OPENNPU_CACHE_DIR; else
// $XDG_CACHE_HOME/opennpu; else $HOME/.cache/opennpu. "" when the cache is disabled ("none").
std::string resolve_dir(const std::string& option);

// ---- file contents -------------------------------------------------------------------------
struct Entry {
  Key key;
  std::vector<ExternalFile> externals;
  ir::Model model;
  std::unique_ptr<npu::Program> program;  // null for CPU-only loads
};

// Thrown by deserialize() for any malformed, stale or foreign file; what() is the reason.
struct CacheError : Error {
  using Error::Error;
};

// The checksum stored in the last 8 bytes of a file: fast_hash of everything before it with the
// format's seed. (Exposed so tests and fuzzers can forge well-checksummed files.)
uint64_t checksum(const char* data, size_t n);
// The whole file as bytes (header, sections, checksum).
std::string serialize(const Entry& e);
// Parses and validates a whole file. `expected` (when given) must match the key in the header.
// `hw_cores` > 0: the entry must hold a Program for an engine with that many cores (every index
// the simulator uses is range-checked against the model, the program and the core count);
// 0: it must not hold one. Throws CacheError; never reads outside [data, data+n).
Entry deserialize(const char* data, size_t n, const Key* expected = nullptr, int64_t hw_cores = 0);
// The section decoders alone, without header/checksum checks (for fuzzing them directly). The
// model section is checked for the importer's structural guarantees (topological order, every
// read value defined); the program section is validated against `model` and `hw_cores`.
ir::Model deserialize_model_section(const char* data, size_t n);
npu::Program deserialize_program_section(const char* data, size_t n, const ir::Model& model, int64_t hw_cores);

// ---- what Model::load uses -----------------------------------------------------------------
struct Lookup {
  bool enabled = false;
  bool hit = false;
  std::string file;         // cache file for this key ("" when disabled)
  Key key;
  std::vector<ExternalFile> externals;  // filled on a miss, for store()
  ir::Model model;          // on a hit
  std::unique_ptr<npu::Program> program;
  double seconds = 0;       // time spent hashing + reading
};
// Computes the key and reads the entry. A missing file is a silent miss; an unusable one is a
// warning on stderr and a miss. Never throws for cache problems (only if the model is unreadable).
// hw_hash/hw_cores: the resolved hardware (0, 0 for CPU-only loads).
Lookup lookup(const std::string& model_path, const LoadOptions& opts, uint64_t hw_hash, int64_t hw_cores);
// Writes the entry for a miss (temp file + rename). Problems are a warning, never an error.
void store(Lookup& lk, const std::string& model_path, const ir::Model& model, const npu::Program* program);

}  // namespace opennpu::cache
