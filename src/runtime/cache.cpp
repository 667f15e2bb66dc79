// The compiled-model cache: key, file format (docs/compiled-model-format.md), lookup and store.
#include "runtime/cache.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <tuple>

#include <fmt/format.h>

namespace fs = std::filesystem;

namespace opennpu::cache {

// =============================================================================================
// Hashing: XXH64's round and avalanche (well studied mixing), written out here so the cache has
// no dependency. Not cryptographic.
// =============================================================================================
namespace {
constexpr uint64_t P1 = 0x9E3779B185EBCA87ull, P2 = 0xC2B2AE3D27D4EB4Full, P3 = 0x165667B19E3779F9ull,
                   P4 = 0x85EBCA77C2B2AE63ull, P5 = 0x27D4EB2F165667C5ull;
inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t rd64(const unsigned char* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }
inline uint32_t rd32(const unsigned char* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
inline uint64_t round64(uint64_t acc, uint64_t in) { return rotl(acc + in * P2, 31) * P1; }
inline uint64_t merge(uint64_t acc, uint64_t v) { return (acc ^ round64(0, v)) * P1 + P4; }
}  // namespace

Hasher::Hasher(uint64_t seed) : v_{seed + P1 + P2, seed + P2, seed, seed - P1}, seed_(seed) {}

void Hasher::update(const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  total_ += n;
  if (buf_len_) {  // finish a partial block first
    size_t take = std::min(n, 32 - buf_len_);
    std::memcpy(buf_ + buf_len_, p, take);
    buf_len_ += take; p += take; n -= take;
    if (buf_len_ < 32) return;
    for (int i = 0; i < 4; ++i) v_[i] = round64(v_[i], rd64(buf_ + 8 * i));
    buf_len_ = 0;
  }
  // Four independent lanes: the multiplies of one block do not wait on each other.
  uint64_t a = v_[0], b = v_[1], c = v_[2], d = v_[3];
  for (; n >= 32; p += 32, n -= 32) {
    a = round64(a, rd64(p)); b = round64(b, rd64(p + 8));
    c = round64(c, rd64(p + 16)); d = round64(d, rd64(p + 24));
  }
  v_[0] = a; v_[1] = b; v_[2] = c; v_[3] = d;
  std::memcpy(buf_, p, n);
  buf_len_ = n;
}

uint64_t Hasher::digest() const {
  uint64_t h;
  if (total_ >= 32) {
    h = rotl(v_[0], 1) + rotl(v_[1], 7) + rotl(v_[2], 12) + rotl(v_[3], 18);
    for (int i = 0; i < 4; ++i) h = merge(h, v_[i]);
  } else {
    h = seed_ + P5;
  }
  h += total_;
  const unsigned char* p = buf_;
  size_t n = buf_len_;
  for (; n >= 8; p += 8, n -= 8) h = rotl(h ^ round64(0, rd64(p)), 27) * P1 + P4;
  if (n >= 4) { h = rotl(h ^ (uint64_t{rd32(p)} * P1), 23) * P2 + P3; p += 4; n -= 4; }
  for (; n; ++p, --n) h = rotl(h ^ (*p * P5), 11) * P1;
  h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3; h ^= h >> 32;
  return h;
}

uint64_t fast_hash(const void* data, size_t n, uint64_t seed) {
  Hasher h(seed);
  h.update(data, n);
  return h.digest();
}

namespace {
// A whole file, read-only: mapped when possible (no copy, no page zeroing: the cache file is
// mostly tensor bytes that are copied once more into their tensors), else read into memory.
// Mapping is safe against our own writers: they never modify a file in place, they rename a new
// file over it, and a mapping keeps the old inode alive.
class Bytes {
 public:
  Bytes() = default;
  Bytes(Bytes&& o) noexcept { *this = std::move(o); }
  Bytes& operator=(Bytes&& o) noexcept {
    std::swap(map_, o.map_); std::swap(size_, o.size_); std::swap(heap_, o.heap_);
    return *this;
  }
  ~Bytes() { if (map_) ::munmap(map_, size_); }
  const char* data() const { return map_ ? static_cast<const char*>(map_) : heap_.get(); }
  size_t size() const { return size_; }

  static Bytes open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
    struct stat st{};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) { ::close(fd); throw Error(fmt::format("'{}' is not a regular file", path)); }
    Bytes b;
    const size_t want = static_cast<size_t>(st.st_size);
    if (want > 0) {
      void* m = ::mmap(nullptr, want, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
      if (m != MAP_FAILED) {
        b.map_ = m;
        b.size_ = want;
        ::close(fd);
        return b;
      }
    }
    b.heap_.reset(new char[want + 1]);
    while (b.size_ < want) {
      ssize_t r = ::read(fd, b.heap_.get() + b.size_, want - b.size_);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        int e = errno;
        ::close(fd);
        throw Error(fmt::format("cannot read '{}': {}", path, std::strerror(e)));
      }
      if (r == 0) break;  // shrank meanwhile: read short, the format checks catch it
      b.size_ += static_cast<size_t>(r);
    }
    ::close(fd);
    return b;
  }

 private:
  void* map_ = nullptr;
  size_t size_ = 0;
  std::unique_ptr<char[]> heap_;
};
}  // namespace

uint64_t hash_file(const std::string& path, uint64_t* size_out) {
  Bytes b;
  try { b = Bytes::open(path); } catch (const Error& e) { throw Error(std::string("model: ") + e.what()); }
  if (size_out) *size_out = b.size();
  return fast_hash(b.data(), b.size());
}

// =============================================================================================
// Key
// =============================================================================================
uint64_t Key::combined() const {
  const uint64_t f[] = {model_hash, model_size, hw_hash, options_hash, build_id, compiler_version};
  return fast_hash(f, sizeof f, 0x4f4e5055434d);  // "ONPUCM"
}

uint64_t options_hash(const LoadOptions& opts) {
  // threads and cache_dir do not change what load() produces; the hardware enters as its hash.
  std::string s = fmt::format("units={};optimize={};", static_cast<int>(opts.compute_units), opts.optimize ? 1 : 0);
  for (const auto& [k, v] : opts.dims) s += fmt::format("dim:{}={};", k, v);  // std::map: sorted
  return fast_hash(s.data(), s.size());
}

uint64_t build_id() {
  static const uint64_t id = [] {
    Dl_info info{};
    std::string path = "/proc/self/exe";
    if (::dladdr(reinterpret_cast<void*>(&build_id), &info) && info.dli_fname && info.dli_fname[0]) path = info.dli_fname;
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0 && ::stat("/proc/self/exe", &st) != 0) return uint64_t{0};
    const int64_t f[] = {static_cast<int64_t>(st.st_size), static_cast<int64_t>(st.st_mtim.tv_sec),
                         static_cast<int64_t>(st.st_mtim.tv_nsec), static_cast<int64_t>(st.st_ino)};
    return fast_hash(f, sizeof f, kCompilerVersion);
  }();
  return id;
}

// =============================================================================================
// External data: a bounded walk over the protobuf wire format.
// =============================================================================================
namespace {
struct Wire {
  const unsigned char* p;
  const unsigned char* end;
  bool ok = true;
  bool varint(uint64_t& v) {
    v = 0;
    for (int s = 0; s < 64 && p < end; s += 7) {
      unsigned char b = *p++;
      v |= uint64_t{b & 0x7fu} << s;
      if (!(b & 0x80)) return true;
    }
    return ok = false;
  }
  // Next field; for length-delimited fields `sub` is its payload. false at end or on error.
  bool next(uint32_t& field, Wire& sub) {
    if (p >= end || !ok) return false;
    uint64_t tag;
    if (!varint(tag)) return false;
    field = static_cast<uint32_t>(tag >> 3);
    uint64_t v;
    switch (tag & 7) {
      case 0: if (!varint(v)) return false; sub = {p, p}; return true;
      case 1: if (end - p < 8) return ok = false; p += 8; sub = {p, p}; return true;
      case 5: if (end - p < 4) return ok = false; p += 4; sub = {p, p}; return true;
      case 2:
        if (!varint(v) || v > static_cast<uint64_t>(end - p)) return ok = false;
        sub = {p, p + v};
        p += v;
        return true;
      default: return ok = false;
    }
  }
};

struct ExtWalker {
  std::vector<std::string> locations;
  void tensor(Wire w) {
    uint32_t f; Wire s{nullptr, nullptr};
    while (w.next(f, s))
      if (f == 13) {  // external_data: StringStringEntryProto {key=1, value=2}
        std::string key, value;
        uint32_t g; Wire e{nullptr, nullptr};
        while (s.next(g, e)) {
          if (g == 1) key.assign(reinterpret_cast<const char*>(e.p), e.end - e.p);
          if (g == 2) value.assign(reinterpret_cast<const char*>(e.p), e.end - e.p);
        }
        if (key == "location" && !value.empty()) locations.push_back(value);
      }
  }
  void sparse(Wire w) {
    uint32_t f; Wire s{nullptr, nullptr};
    while (w.next(f, s)) if (f == 1 || f == 2) tensor(s);
  }
  void attribute(Wire w, int depth) {
    uint32_t f; Wire s{nullptr, nullptr};
    while (w.next(f, s)) {
      if (f == 5 || f == 10) tensor(s);
      else if (f == 6 || f == 11) graph(s, depth + 1);
      else if (f == 22 || f == 23) sparse(s);
    }
  }
  void node(Wire w, int depth) {
    uint32_t f; Wire s{nullptr, nullptr};
    while (w.next(f, s)) if (f == 5) attribute(s, depth);
  }
  void graph(Wire w, int depth) {
    if (depth > 64) return;  // the importer rejects deeper nesting anyway
    uint32_t f; Wire s{nullptr, nullptr};
    while (w.next(f, s)) {
      if (f == 1) node(s, depth);
      else if (f == 5) tensor(s);
      else if (f == 15) sparse(s);
    }
  }
  void model(Wire w) {
    uint32_t f; Wire s{nullptr, nullptr};
    while (w.next(f, s)) {
      if (f == 7) graph(s, 0);
      else if (f == 25) {  // FunctionProto: node = 7
        uint32_t g; Wire n{nullptr, nullptr};
        while (s.next(g, n)) if (g == 7) node(n, 1);
      }
    }
  }
};

ExternalFile stat_file(const std::string& path) {
  ExternalFile e;
  e.path = path;
  struct stat st{};
  if (::stat(path.c_str(), &st) == 0) {
    e.size = static_cast<int64_t>(st.st_size);
    e.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  }
  return e;
}
}  // namespace

std::vector<ExternalFile> external_files(std::string_view model_bytes, const std::string& model_dir) {
  ExtWalker w;
  const auto* p = reinterpret_cast<const unsigned char*>(model_bytes.data());
  w.model(Wire{p, p + model_bytes.size()});
  std::vector<std::string> paths;
  for (const auto& loc : w.locations) {
    std::error_code ec;
    fs::path full = fs::weakly_canonical(fs::path(model_dir.empty() ? "." : model_dir) / loc, ec);
    std::string s = ec ? (fs::path(model_dir) / loc).string() : full.string();
    if (std::find(paths.begin(), paths.end(), s) == paths.end()) paths.push_back(s);
  }
  std::vector<ExternalFile> out;
  for (const auto& s : paths) out.push_back(stat_file(s));
  return out;
}

// =============================================================================================
// Directory
// =============================================================================================
std::string resolve_dir(const std::string& option) {
  auto disabled = [](const std::string& s) { return s == kDisabled; };
  if (!option.empty()) return disabled(option) ? std::string() : option;
  if (const char* e = std::getenv("OPENNPU_CACHE_DIR"); e && *e) return disabled(e) ? std::string() : std::string(e);
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x && x[0] == '/') return std::string(x) + "/opennpu";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/opennpu";
  return {};  // nowhere sensible to write: no cache
}

// =============================================================================================
// Serialization. Little-endian, no padding inside records; see docs/compiled-model-format.md.
// =============================================================================================
namespace {
constexpr char kMagic[8] = {'O', 'N', 'P', 'U', 'C', 'M', 0, 0};
constexpr uint64_t kChecksumSeed = 0x4f4e5055434d0001ull;
constexpr size_t kHeaderFixed = 80;   // bytes before the section table
constexpr size_t kSectionEntry = 24;  // u32 id, u32 reserved, u64 offset, u64 size
constexpr int kMaxDepth = 64;         // nesting of subgraphs / sequences
enum Section : uint32_t { kExternals = 1, kModel = 2, kProgram = 3 };

class Writer {
 public:
  std::string buf;
  template <class T> void put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    buf.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void u8(uint8_t v) { put(v); }
  void u32(uint32_t v) { put(v); }
  void i64(int64_t v) { put(v); }
  void u64(uint64_t v) { put(v); }
  void str(const std::string& s) { u64(s.size()); buf.append(s); }
  void bytes(const void* p, size_t n) { u64(n); buf.append(static_cast<const char*>(p), n); }
  void strs(const std::vector<std::string>& v) { u64(v.size()); for (const auto& s : v) str(s); }
  template <class T> void pod_vec(const std::vector<T>& v) { bytes(v.data(), v.size() * sizeof(T)); }
  void align8() { buf.append((8 - buf.size() % 8) % 8, '\0'); }
};

class Reader {
 public:
  Reader(const char* p, size_t n) : begin_(p), p_(p), end_(p + n) {}
  // Sections start 8-byte aligned in the file, so aligning relative to the section is absolute.
  void align8() { take((8 - static_cast<size_t>(p_ - begin_) % 8) % 8); }
  size_t left() const { return static_cast<size_t>(end_ - p_); }
  bool done() const { return p_ == end_; }
  [[noreturn]] static void fail(const std::string& why) { throw CacheError("corrupt (" + why + ")"); }
  template <class T> T get() {
    if (left() < sizeof(T)) fail("truncated record");
    T v;
    std::memcpy(&v, p_, sizeof v);
    p_ += sizeof v;
    return v;
  }
  uint8_t u8() { return get<uint8_t>(); }
  uint32_t u32() { return get<uint32_t>(); }
  int64_t i64() { return get<int64_t>(); }
  uint64_t u64() { return get<uint64_t>(); }
  bool flag() {
    uint8_t v = u8();
    if (v > 1) fail("bad boolean");
    return v != 0;
  }
  // A count of items that each take at least `min_bytes` in the file: bounded by what is left,
  // so a forged count can never make us allocate more than the file could describe.
  size_t count(size_t min_bytes) {
    uint64_t n = u64();
    if (n > left() / std::max<size_t>(min_bytes, 1)) fail("count larger than the file");
    return static_cast<size_t>(n);
  }
  const char* take(size_t n) {
    if (n > left()) fail("truncated data");
    const char* q = p_;
    p_ += n;
    return q;
  }
  std::string str() { size_t n = count(1); return std::string(take(n), n); }
  std::vector<std::string> strs() {
    std::vector<std::string> v(count(8));
    for (auto& s : v) s = str();
    return v;
  }
  template <class T> std::vector<T> pod_vec() {
    uint64_t nb = u64();
    if (nb % sizeof(T)) fail("array size not a multiple of its element size");
    if (nb > left()) fail("truncated array");
    const char* src = take(nb);
    std::vector<T> v;
    v.reserve(nb / sizeof(T));  // no zero-fill: the bytes are copied in once
    for (size_t i = 0, n = nb / sizeof(T); i < n;) {  // in chunks: memcpy speed, no UB on unaligned src
      T tmp[512];
      size_t k = std::min<size_t>(n - i, 512);
      std::memcpy(tmp, src + i * sizeof(T), k * sizeof(T));
      v.insert(v.end(), tmp, tmp + k);
      i += k;
    }
    return v;
  }

 private:
  const char* begin_;
  const char* p_;
  const char* end_;
};

// ---- tensors ----
enum TensorTag : uint8_t { kEmpty = 0, kPlain = 1, kSequence = 2, kNone = 3 };

void put_tensor(Writer& w, const Tensor& t) {
  if (t.is_none()) { w.u8(kNone); w.u8(t.none_of_sequence()); return; }
  if (t.is_sequence()) {
    w.u8(kSequence);
    w.u8(static_cast<uint8_t>(t.dtype()));
    w.u64(t.sequence().size());
    for (const auto& s : t.sequence()) put_tensor(w, s);
    return;
  }
  if (t.empty_value()) { w.u8(kEmpty); return; }
  w.u8(kPlain);
  w.u8(static_cast<uint8_t>(t.dtype()));
  w.u64(t.shape().size());
  for (int64_t d : t.shape()) w.i64(d);
  if (t.dtype() == DType::String) w.strs(t.strings());
  else w.bytes(t.raw(), t.nbytes());
}

DType get_dtype(Reader& r, bool allow_undefined) {
  uint8_t d = r.u8();
  if (d > static_cast<uint8_t>(DType::String) || (!allow_undefined && d == 0)) r.fail("bad dtype");
  return static_cast<DType>(d);
}

Tensor get_tensor(Reader& r, int depth) {
  if (depth > kMaxDepth) r.fail("nesting too deep");
  uint8_t tag = r.u8();
  switch (tag) {
    case kEmpty: return Tensor();
    case kNone: return Tensor::make_none(r.flag());
    case kSequence: {
      DType elem = get_dtype(r, true);
      std::vector<Tensor> items(r.count(1));
      for (auto& it : items) it = get_tensor(r, depth + 1);
      return Tensor::make_sequence(elem, std::move(items));
    }
    case kPlain: break;
    default: r.fail("bad tensor tag");
  }
  DType dt = get_dtype(r, false);
  Shape shape(r.count(8));
  for (auto& d : shape) d = r.i64();
  int64_t numel;
  try { numel = checked_numel(shape, "cached tensor"); } catch (const Error& e) { r.fail(e.what()); }
  if (dt == DType::String) {
    size_t n = r.count(8);
    if (static_cast<int64_t>(n) != numel) r.fail("string tensor size does not match its shape");
    Tensor t(dt, shape);
    for (auto& s : t.strings()) s = r.str();
    return t;
  }
  uint64_t nb = r.u64();
  const uint64_t es = dtype_size(dt);
  if (static_cast<uint64_t>(numel) > r.left() / es || nb != static_cast<uint64_t>(numel) * es)
    r.fail("tensor byte size does not match its shape");
  const char* src = r.take(nb);
  Tensor t;
  try { t = Tensor(dt, std::move(shape)); } catch (const MemoryLimitError&) { throw; } catch (const Error& e) { r.fail(e.what()); }
  if (nb) std::memcpy(t.raw(), src, nb);  // one memcpy per tensor
  return t;
}

// ---- graph ----
void put_graph(Writer& w, const ir::Graph& g);
std::shared_ptr<ir::Graph> get_graph(Reader& r, int depth);

void put_value_info(Writer& w, const ir::ValueInfo& v) {
  w.str(v.name);
  w.u8(static_cast<uint8_t>(v.dtype));
  w.u8(v.has_shape);
  w.u64(v.dims.size());
  for (const auto& d : v.dims) { w.i64(d.value); w.str(d.param); }
  w.str(v.kind);
}
ir::ValueInfo get_value_info(Reader& r) {
  ir::ValueInfo v;
  v.name = r.str();
  v.dtype = get_dtype(r, true);
  v.has_shape = r.flag();
  v.dims.resize(r.count(16));
  for (auto& d : v.dims) { d.value = r.i64(); d.param = r.str(); }
  v.kind = r.str();
  if (v.kind != "tensor" && v.kind != "sequence" && v.kind != "optional" && v.kind != "optional_sequence")
    r.fail("bad value kind");
  return v;
}

void put_attr(Writer& w, const ir::Attribute& a) {
  // Every field, whatever the kind: exact round trip, no kind-specific paths to get wrong.
  w.u8(static_cast<uint8_t>(a.kind));
  w.put(a.f);
  w.i64(a.i);
  w.str(a.s);
  put_tensor(w, a.t);
  w.u8(a.g != nullptr);
  if (a.g) put_graph(w, *a.g);
  w.pod_vec(a.floats);
  w.pod_vec(a.ints);
  w.strs(a.strings);
  w.u64(a.tensors.size());
  for (const auto& t : a.tensors) put_tensor(w, t);
  w.u64(a.graphs.size());
  for (const auto& g : a.graphs) { w.u8(g != nullptr); if (g) put_graph(w, *g); }
}
ir::Attribute get_attr(Reader& r, int depth) {
  ir::Attribute a;
  uint8_t k = r.u8();
  if (k > static_cast<uint8_t>(ir::Attribute::Kind::Graphs)) r.fail("bad attribute kind");
  a.kind = static_cast<ir::Attribute::Kind>(k);
  a.f = r.get<float>();
  a.i = r.i64();
  a.s = r.str();
  a.t = get_tensor(r, depth);
  if (r.flag()) a.g = get_graph(r, depth + 1);
  a.floats = r.pod_vec<float>();
  a.ints = r.pod_vec<int64_t>();
  a.strings = r.strs();
  a.tensors.resize(r.count(1));
  for (auto& t : a.tensors) t = get_tensor(r, depth);
  a.graphs.resize(r.count(1));
  for (auto& g : a.graphs) if (r.flag()) g = get_graph(r, depth + 1);
  return a;
}

void put_node(Writer& w, const ir::Node& n) {
  w.str(n.name); w.str(n.op_type); w.str(n.domain);
  w.strs(n.inputs); w.strs(n.outputs);
  w.u64(n.attrs.size());
  for (const auto& [k, a] : n.attrs) { w.str(k); put_attr(w, a); }
}
ir::Node get_node(Reader& r, int depth) {
  ir::Node n;
  n.name = r.str(); n.op_type = r.str(); n.domain = r.str();
  n.inputs = r.strs(); n.outputs = r.strs();
  size_t na = r.count(9);
  for (size_t i = 0; i < na; ++i) {
    std::string k = r.str();
    if (!n.attrs.emplace(k, get_attr(r, depth)).second) r.fail("duplicate attribute");
  }
  return n;
}

void put_graph(Writer& w, const ir::Graph& g) {
  w.str(g.name);
  w.u64(g.nodes.size());
  for (const auto& n : g.nodes) put_node(w, n);
  w.u64(g.inputs.size());
  for (const auto& v : g.inputs) put_value_info(w, v);
  w.u64(g.outputs.size());
  for (const auto& v : g.outputs) put_value_info(w, v);
  w.u64(g.initializers.size());
  for (const auto& [k, t] : g.initializers) { w.str(k); put_tensor(w, t); }
  w.u64(g.value_info.size());
  for (const auto& [k, v] : g.value_info) { w.str(k); put_value_info(w, v); }
}
std::shared_ptr<ir::Graph> get_graph(Reader& r, int depth) {
  if (depth > kMaxDepth) r.fail("subgraphs nested too deep");
  auto g = std::make_shared<ir::Graph>();
  g->name = r.str();
  g->nodes.resize(r.count(40));
  for (auto& n : g->nodes) n = get_node(r, depth);
  g->inputs.resize(r.count(27));
  for (auto& v : g->inputs) v = get_value_info(r);
  g->outputs.resize(r.count(27));
  for (auto& v : g->outputs) v = get_value_info(r);
  size_t ni = r.count(9);
  for (size_t i = 0; i < ni; ++i) {
    std::string k = r.str();
    if (!g->initializers.emplace(k, get_tensor(r, 0)).second) r.fail("duplicate initializer");
  }
  size_t nv = r.count(35);
  for (size_t i = 0; i < nv; ++i) {
    std::string k = r.str();
    if (!g->value_info.emplace(k, get_value_info(r)).second) r.fail("duplicate value_info");
  }
  return g;
}

void put_model(Writer& w, const ir::Model& m) {
  w.i64(m.ir_version);
  w.u64(m.opsets.size());
  for (const auto& [d, v] : m.opsets) { w.str(d); w.i64(v); }
  w.str(m.producer);
  w.str(m.path);
  put_graph(w, m.graph);
}
ir::Model get_model(Reader& r) {
  ir::Model m;
  m.ir_version = r.i64();
  size_t no = r.count(16);
  for (size_t i = 0; i < no; ++i) {
    std::string d = r.str();
    if (!m.opsets.emplace(d, r.i64()).second) r.fail("duplicate opset");
  }
  m.producer = r.str();
  m.path = r.str();
  auto g = get_graph(r, 0);
  m.graph = std::move(*g);
  return m;
}

// ---- program ----
void put_geom(Writer& w, const npu::GemmGeom& g) {
  for (int64_t v : {g.batch, g.M, g.K, g.N}) w.i64(v);
  w.u8(g.conv);
  for (int64_t v : {g.n_img, g.groups, g.C, g.H, g.W, g.O, g.OH, g.OW, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw,
                    g.in_dil_h, g.in_dil_w})
    w.i64(v);
  w.pod_vec(g.batch_shape); w.pod_vec(g.a_batch_strides); w.pod_vec(g.b_batch_strides);
  w.u8(g.b_const);
}
npu::GemmGeom get_geom(Reader& r) {
  npu::GemmGeom g;
  for (int64_t* v : {&g.batch, &g.M, &g.K, &g.N}) *v = r.i64();
  g.conv = r.flag();
  for (int64_t* v : {&g.n_img, &g.groups, &g.C, &g.H, &g.W, &g.O, &g.OH, &g.OW, &g.kh, &g.kw, &g.sh, &g.sw, &g.ph, &g.pw,
                     &g.dh, &g.dw, &g.in_dil_h, &g.in_dil_w})
    *v = r.i64();
  g.batch_shape = r.pod_vec<int64_t>();
  g.a_batch_strides = r.pod_vec<int64_t>();
  g.b_batch_strides = r.pod_vec<int64_t>();
  g.b_const = r.flag();
  return g;
}

void put_program(Writer& w, const npu::Program& p) {
  w.str(p.hw_name);
  w.u64(p.hw_hash);
  w.i64(p.opset);
  w.i64(p.sram_bytes_per_core);
  w.u64(p.buffers.size());
  for (const auto& b : p.buffers) {
    w.str(b.name); w.pod_vec(b.shape); w.u8(b.constant); w.i64(b.bytes); w.u8(b.graph_output);
    w.u8(static_cast<uint8_t>(b.dtype));
  }
  w.u64(p.layers.size());
  for (const auto& L : p.layers) {
    w.str(L.name); w.str(L.op); w.str(L.fused);
    w.u8(static_cast<uint8_t>(L.kind));
    put_node(w, L.node);
    w.pod_vec(L.inputs); w.pod_vec(L.outputs);
    put_geom(w, L.g);
    w.align8();  // keeps the big float arrays 8-byte aligned in the file (readable with mmap)
    w.pod_vec(L.weights);
    w.pod_vec(L.bias);
    w.u8(static_cast<uint8_t>(L.act));
    w.put(L.clip_lo); w.put(L.clip_hi);
    for (int64_t v : {L.macs, L.flops, L.vec_rows, L.vec_row_elems, L.vec_ops_per_elem}) w.i64(v);
    // INT8 parameters (npu/compiler/program.h QuantParams)
    w.u8(L.q.on); w.u8(L.q.int8);
    w.pod_vec(L.q.in_scale); w.pod_vec(L.q.in_zp);
    w.put(L.q.out_scale); w.put(L.q.out_zp); w.u8(static_cast<uint8_t>(L.q.out_type));
    w.pod_vec(L.q.mult); w.pod_vec(L.q.ibias); w.pod_vec(L.q.w_scale);
    w.put(L.q.mid_scale); w.put(L.q.mid_dq_scale); w.put(L.q.mid_zp); w.put(L.q.mid_dq_zp); w.u8(static_cast<uint8_t>(L.q.mid_type));
  }
  w.u64(p.tasks.size());
  for (const auto& t : p.tasks) {
    w.u8(static_cast<uint8_t>(t.engine));
    w.put(t.core); w.put(t.layer);
    for (int64_t v : {t.b, t.m0, t.m1, t.n0, t.n1, t.k0, t.k1}) w.i64(v);
    w.u8(t.last_k);
    w.i64(t.bytes); w.put(t.buf); w.i64(t.cycles); w.i64(t.macs); w.i64(t.sram_bytes);
    w.pod_vec(t.deps);
  }
  w.u64(p.segments.size());
  for (const auto& s : p.segments) { w.u8(s.npu); w.pod_vec(s.nodes); w.pod_vec(s.layers); w.i64(s.boundary_bytes); }
  w.u64(p.placements.size());
  for (const auto& pl : p.placements) { w.str(pl.node); w.str(pl.op); w.u8(pl.npu); w.str(pl.reason); }
}

npu::Program get_program(Reader& r) {
  npu::Program p;
  p.hw_name = r.str();
  p.hw_hash = r.u64();
  p.opset = r.i64();
  p.sram_bytes_per_core = r.i64();
  p.buffers.resize(r.count(26));
  for (auto& b : p.buffers) {
    b.name = r.str(); b.shape = r.pod_vec<int64_t>(); b.constant = r.flag(); b.bytes = r.i64(); b.graph_output = r.flag();
    const uint8_t dt = r.u8();
    b.dtype = static_cast<DType>(dt);
    if (b.dtype != DType::Float16 && b.dtype != DType::Float32 && b.dtype != DType::Int8 && b.dtype != DType::UInt8)
      r.fail("bad buffer storage type");
  }
  p.layers.resize(r.count(64));
  for (auto& L : p.layers) {
    L.name = r.str(); L.op = r.str(); L.fused = r.str();
    uint8_t k = r.u8();
    if (k > static_cast<uint8_t>(npu::LayerKind::Recurrent)) r.fail("bad layer kind");
    L.kind = static_cast<npu::LayerKind>(k);
    L.node = get_node(r, 0);
    L.inputs = r.pod_vec<int>(); L.outputs = r.pod_vec<int>();
    L.g = get_geom(r);
    r.align8();
    L.weights = r.pod_vec<float>();
    L.bias = r.pod_vec<float>();
    uint8_t a = r.u8();
    if (a > static_cast<uint8_t>(npu::Act::Clip)) r.fail("bad activation");
    L.act = static_cast<npu::Act>(a);
    L.clip_lo = r.get<float>(); L.clip_hi = r.get<float>();
    for (int64_t* v : {&L.macs, &L.flops, &L.vec_rows, &L.vec_row_elems, &L.vec_ops_per_elem}) *v = r.i64();
    L.q.on = r.flag(); L.q.int8 = r.flag();
    L.q.in_scale = r.pod_vec<float>(); L.q.in_zp = r.pod_vec<int32_t>();
    L.q.out_scale = r.get<float>(); L.q.out_zp = r.get<int32_t>();
    L.q.out_type = static_cast<DType>(r.u8());
    L.q.mult = r.pod_vec<float>(); L.q.ibias = r.pod_vec<int32_t>(); L.q.w_scale = r.pod_vec<float>();
    L.q.mid_scale = r.get<float>(); L.q.mid_dq_scale = r.get<float>();
    L.q.mid_zp = r.get<int32_t>(); L.q.mid_dq_zp = r.get<int32_t>();
    L.q.mid_type = static_cast<DType>(r.u8());
    if (L.q.on) {
      const bool q8 = L.q.out_type == DType::Int8 || L.q.out_type == DType::UInt8;
      if (L.q.in_zp.size() != L.q.in_scale.size() || (!q8 && L.q.out_type != DType::Undefined)) r.fail("bad INT8 parameters");
      if (L.q.mid_scale != 0.f && L.q.mid_type != DType::Int8 && L.q.mid_type != DType::UInt8) r.fail("bad INT8 parameters");
      if (L.kind == npu::LayerKind::Gemm || L.op == "QLinearConv") {
        const size_t ch = L.q.mult.size();
        if (!q8 || L.q.in_scale.size() < 2 || ch == 0 || L.q.w_scale.size() != ch || (!L.q.ibias.empty() && L.q.ibias.size() != ch) ||
            static_cast<int64_t>(ch) < (L.g.conv ? L.g.groups * L.g.N : L.g.N))
          r.fail("bad INT8 GEMM parameters");
        // Depthwise (vector unit): one multiplier per output channel of its output buffer.
        if (L.kind != npu::LayerKind::Gemm) {
          const bool out_ok = !L.outputs.empty() && L.outputs[0] >= 0 && static_cast<size_t>(L.outputs[0]) < p.buffers.size() &&
                              p.buffers[L.outputs[0]].shape.size() == 4 && static_cast<int64_t>(ch) >= p.buffers[L.outputs[0]].shape[1];
          if (!out_ok) r.fail("bad INT8 depthwise parameters");
        }
      }
    }
  }
  p.tasks.resize(r.count(90));
  for (auto& t : p.tasks) {
    uint8_t e = r.u8();
    if (e > static_cast<uint8_t>(npu::Engine::Vec)) r.fail("bad engine");
    t.engine = static_cast<npu::Engine>(e);
    t.core = r.get<int32_t>(); t.layer = r.get<int32_t>();
    for (int64_t* v : {&t.b, &t.m0, &t.m1, &t.n0, &t.n1, &t.k0, &t.k1}) *v = r.i64();
    t.last_k = r.flag();
    t.bytes = r.i64(); t.buf = r.get<int32_t>(); t.cycles = r.i64(); t.macs = r.i64(); t.sram_bytes = r.i64();
    t.deps = r.pod_vec<uint32_t>();
  }
  p.segments.resize(r.count(25));
  for (auto& s : p.segments) { s.npu = r.flag(); s.nodes = r.pod_vec<int>(); s.layers = r.pod_vec<int>(); s.boundary_bytes = r.i64(); }
  p.placements.resize(r.count(25));
  for (auto& pl : p.placements) { pl.node = r.str(); pl.op = r.str(); pl.npu = r.flag(); pl.reason = r.str(); }
  return p;
}

// ---- semantic checks: everything the simulator indexes with must be in range ----
bool mul_ok(int64_t a, int64_t b, int64_t& out) { return !__builtin_mul_overflow(a, b, &out) && out >= 0; }
int64_t prod(std::initializer_list<int64_t> xs) {
  int64_t r = 1;
  for (int64_t x : xs) if (x < 0 || !mul_ok(r, x, r)) Reader::fail("geometry overflows");
  return r;
}

void check_gemm(const npu::Program& p, const npu::Layer& L, const std::vector<int64_t>& numel) {
  const auto& g = L.g;
  auto need = [&](bool c, const char* what) { if (!c) Reader::fail(fmt::format("layer '{}': {}", L.name, what)); };
  need(!L.inputs.empty() && L.inputs[0] >= 0 && !L.outputs.empty() && L.outputs[0] >= 0, "missing operand");
  need(g.batch >= 1 && g.M >= 1 && g.K >= 1 && g.N >= 1, "empty GEMM");
  const int64_t x_n = numel[L.inputs[0]], o_n = numel[L.outputs[0]];
  if (g.conv) {
    need(g.n_img >= 1 && g.groups >= 1 && g.batch == prod({g.n_img, g.groups}) && g.C % g.groups == 0, "bad conv groups");
    need(g.kh >= 1 && g.kw >= 1 && g.sh >= 1 && g.sw >= 1 && g.dh >= 1 && g.dw >= 1 && g.in_dil_h >= 1 && g.in_dil_w >= 1 &&
             g.H >= 0 && g.W >= 0,
         "bad conv window");
    need(g.K == prod({g.C / g.groups, g.kh, g.kw}) && g.M == prod({g.OH, g.OW}) && g.O == prod({g.N, g.groups}), "bad conv geometry");
    need(x_n >= prod({g.n_img, g.C, g.H, g.W}) && o_n >= prod({g.n_img, g.O, g.OH, g.OW}), "conv operands smaller than the geometry");
    need(g.b_const && static_cast<int64_t>(L.weights.size()) >= prod({g.groups, g.K, g.N}), "conv weights too small");
    need(L.bias.empty() || static_cast<int64_t>(L.bias.size()) >= prod({g.groups, g.N}), "conv bias too small");
  } else {
    const size_t nd = g.batch_shape.size();
    need(g.a_batch_strides.size() == nd && g.b_batch_strides.size() == nd, "bad batch strides");
    int64_t max_a = 0, max_b = 0, bcount = 1;
    for (size_t d = 0; d < nd; ++d) {
      need(g.batch_shape[d] >= 1 && g.a_batch_strides[d] >= 0 && g.b_batch_strides[d] >= 0, "bad batch shape");
      bcount = prod({bcount, g.batch_shape[d]});
      max_a += prod({g.batch_shape[d] - 1, g.a_batch_strides[d]});
      max_b += prod({g.batch_shape[d] - 1, g.b_batch_strides[d]});
      need(max_a >= 0 && max_b >= 0 && max_a < (int64_t{1} << 60) && max_b < (int64_t{1} << 60), "batch offsets overflow");
    }
    need(nd == 0 || bcount >= g.batch, "batch larger than its shape");
    need(x_n >= prod({max_a + 1, g.M, g.K}) && o_n >= prod({g.batch, g.M, g.N}), "GEMM operands smaller than the geometry");
    if (g.b_const) {
      const int64_t kn = prod({g.K, g.N});
      const int64_t nw = static_cast<int64_t>(L.weights.size());
      need(nw >= kn && nw % kn == 0 && (nw / kn == 1 || nw / kn > max_b), "GEMM weights do not match the geometry");
    } else {
      need(L.inputs.size() >= 2 && L.inputs[1] >= 0 && numel[L.inputs[1]] >= prod({max_b + 1, g.K, g.N}), "GEMM B operand too small");
    }
    need(L.bias.empty() || static_cast<int64_t>(L.bias.size()) >= g.N, "GEMM bias too small");
  }
}

void validate_program(const npu::Program& p, const ir::Model& m, int64_t cores) {
  auto need = [](bool c, const std::string& what) { if (!c) Reader::fail(what); };
  const int nb = static_cast<int>(p.buffers.size()), nl = static_cast<int>(p.layers.size());
  need(p.buffers.size() < (1u << 30) && p.layers.size() < (1u << 30), "program too large");
  std::vector<int64_t> numel(p.buffers.size());
  for (size_t i = 0; i < p.buffers.size(); ++i) {
    const auto& b = p.buffers[i];
    try { numel[i] = checked_numel(b.shape, "cached buffer"); } catch (const Error& e) { Reader::fail(e.what()); }
    // Pin every buffer to the IR: a constant must be the initializer of that name and shape, any
    // other buffer must match the value's static shape where the graph knows it.
    if (b.constant) {
      auto it = m.graph.initializers.find(b.name);
      need(it != m.graph.initializers.end() && it->second.shape() == b.shape, "constant buffer '" + b.name + "' does not match its initializer");
    } else if (const ir::ValueInfo* vi = m.graph.find_value_info(b.name); vi && vi->fully_static()) {
      need(vi->static_shape() == b.shape, "buffer '" + b.name + "' does not match the graph's shape");
    }
  }
  auto ids_ok = [&](const std::vector<int>& v, int lo, int hi) {
    for (int x : v) if (x < lo || x >= hi) return false;
    return true;
  };
  for (const auto& L : p.layers) {
    need(ids_ok(L.inputs, -1, nb) && ids_ok(L.outputs, -1, nb), "layer '" + L.name + "' names a buffer out of range");
    need(!L.outputs.empty() && L.outputs[0] >= 0, "layer '" + L.name + "' has no output");
    if (L.kind == npu::LayerKind::Gemm) check_gemm(p, L, numel);
    else if (L.kind == npu::LayerKind::Recurrent) {
      // LSTM (see program.h): M steps, n_img batch, K input, C hidden, N = 4C, batch directions.
      const auto& g = L.g;
      need(g.M >= 1 && g.n_img >= 1 && g.K >= 1 && g.C >= 1 && g.N == prod({4, g.C}) && g.batch >= 1 && g.batch <= 2,
           "bad recurrent geometry");
      need(!L.inputs.empty() && L.inputs[0] >= 0 && numel[L.inputs[0]] >= prod({g.M, g.n_img, g.K}), "recurrent input too small");
      need(static_cast<int64_t>(L.weights.size()) == prod({g.batch, g.K + g.C, g.N}), "recurrent weights do not match");
      need(static_cast<int64_t>(L.bias.size()) == prod({g.batch, g.N}) + prod({2, g.batch, g.n_img, g.C}), "recurrent bias does not match");
      const int64_t want[3] = {prod({g.M, g.batch, g.n_img, g.C}), prod({g.batch, g.n_img, g.C}), prod({g.batch, g.n_img, g.C})};
      for (size_t k = 0; k < L.outputs.size(); ++k)
        if (L.outputs[k] >= 0) need(k < 3 && numel[L.outputs[k]] >= want[k], "recurrent output too small");
    }
    else need(!L.inputs.empty() && L.inputs[0] >= 0, "layer '" + L.name + "' has no input");
  }
  for (size_t i = 0; i < p.tasks.size(); ++i) {
    const auto& t = p.tasks[i];
    need(t.layer >= 0 && t.layer < nl && t.core >= 0 && t.core < cores && t.buf >= -1 && t.buf < nb, "task out of range");
    for (uint32_t d : t.deps) need(d < i, "task depends on a later task");
    need(t.m0 >= 0 && t.m0 <= t.m1 && t.n0 >= 0 && t.n0 <= t.n1 && t.k0 >= 0 && t.k0 <= t.k1 && t.b >= 0, "bad task tile");
    const auto& L = p.layers[t.layer];
    if (t.engine == npu::Engine::Mac) {
      need(L.kind == npu::LayerKind::Gemm || L.kind == npu::LayerKind::Recurrent, "MAC task on a non-GEMM layer");
      if (L.kind == npu::LayerKind::Gemm)
        need(t.b < L.g.batch && t.m1 <= L.g.M && t.n1 <= L.g.N && t.k1 <= L.g.K && t.m0 < t.m1 && t.n0 < t.n1 && t.k0 < t.k1,
             "MAC tile outside its GEMM");
      else
        need(t.b < L.g.batch, "recurrent task outside its directions");  // values are computed per layer
    }
  }
  const int nn = static_cast<int>(m.graph.nodes.size());
  for (const auto& s : p.segments) need(ids_ok(s.nodes, 0, nn) && ids_ok(s.layers, 0, nl), "segment out of range");
  need(p.placements.size() == m.graph.nodes.size(), "placements do not match the graph");
}

// ---- header ----
void put_key(Writer& w, const Key& k) {
  w.u64(k.model_hash); w.u64(k.model_size); w.u64(k.hw_hash); w.u64(k.options_hash); w.u64(k.build_id);
  w.u32(k.compiler_version); w.u32(0);
}
Key get_key(Reader& r) {
  Key k;
  k.model_hash = r.u64(); k.model_size = r.u64(); k.hw_hash = r.u64(); k.options_hash = r.u64(); k.build_id = r.u64();
  k.compiler_version = r.u32(); r.u32();
  return k;
}
}  // namespace

uint64_t checksum(const char* data, size_t n) { return fast_hash(data, n, kChecksumSeed); }

std::string serialize(const Entry& e) {
  std::vector<std::pair<uint32_t, std::string>> sections;
  {
    Writer w;
    w.u64(e.externals.size());
    for (const auto& x : e.externals) { w.str(x.path); w.i64(x.size); w.i64(x.mtime_ns); }
    sections.emplace_back(kExternals, std::move(w.buf));
  }
  { Writer w; put_model(w, e.model); sections.emplace_back(kModel, std::move(w.buf)); }
  if (e.program) { Writer w; put_program(w, *e.program); sections.emplace_back(kProgram, std::move(w.buf)); }

  const size_t header = kHeaderFixed + kSectionEntry * sections.size();
  size_t total = header;
  std::vector<uint64_t> offsets;
  for (const auto& [id, s] : sections) { total = (total + 7) & ~size_t{7}; offsets.push_back(total); total += s.size(); }
  total = (total + 7) & ~size_t{7};
  total += 8;  // checksum

  Writer w;
  w.buf.reserve(total);
  w.buf.append(kMagic, 8);
  w.u32(kFormatVersion);
  w.u32(static_cast<uint32_t>(header));
  w.u64(total);
  put_key(w, e.key);
  w.u32(static_cast<uint32_t>(sections.size()));
  w.u32(0);
  for (size_t i = 0; i < sections.size(); ++i) {
    w.u32(sections[i].first); w.u32(0); w.u64(offsets[i]); w.u64(sections[i].second.size());
  }
  for (size_t i = 0; i < sections.size(); ++i) {
    w.align8();
    w.buf += sections[i].second;
  }
  w.align8();
  w.u64(fast_hash(w.buf.data(), w.buf.size(), kChecksumSeed));
  return std::move(w.buf);
}

namespace {
struct Parsed {
  Key key;
  std::vector<std::pair<const char*, size_t>> sec{4, {nullptr, 0}};
};

Parsed check_container(const char* data, size_t n, const Key* expected) {
  Parsed out;
  if (n < kHeaderFixed + 8) throw CacheError(fmt::format("corrupt (truncated: {} bytes)", n));
  if (std::memcmp(data, kMagic, 8) != 0) throw CacheError("corrupt (not a compiled-model file: bad magic)");
  Reader r(data + 8, n - 8);
  const uint32_t version = r.u32();
  if (version != kFormatVersion)
    throw CacheError(fmt::format("stale (format version {}, this build reads version {})", version, kFormatVersion));
  const uint32_t header = r.u32();
  const uint64_t file_size = r.u64();
  if (file_size != n) throw CacheError(fmt::format("corrupt (truncated: {} of {} bytes)", n, file_size));
  uint64_t stored;
  std::memcpy(&stored, data + n - 8, 8);
  if (fast_hash(data, n - 8, kChecksumSeed) != stored) throw CacheError("corrupt (checksum mismatch)");
  out.key = get_key(r);
  if (expected) {
    const Key& e = *expected;
    if (out.key.model_hash != e.model_hash || out.key.model_size != e.model_size || out.key.hw_hash != e.hw_hash ||
        out.key.options_hash != e.options_hash)
      throw CacheError("foreign (written for another model, hardware or load options: key mismatch)");
    if (out.key.build_id != e.build_id || out.key.compiler_version != e.compiler_version)
      throw CacheError("stale (written by another opennpu build)");
  }
  const uint32_t nsec = r.u32();
  r.u32();
  if (nsec > 3 || header != kHeaderFixed + kSectionEntry * nsec) Reader::fail("bad section table");
  for (uint32_t i = 0; i < nsec; ++i) {
    uint32_t id = r.u32(); r.u32();
    uint64_t off = r.u64(), size = r.u64();
    if (id < kExternals || id > kProgram || out.sec[id].first) Reader::fail("bad section id");
    if (off < header || off > n - 8 || size > n - 8 - off) Reader::fail("section outside the file");
    out.sec[id] = {data + off, static_cast<size_t>(size)};
  }
  if (!out.sec[kExternals].first || !out.sec[kModel].first) Reader::fail("missing section");
  return out;
}
}  // namespace

ir::Model deserialize_model_section(const char* data, size_t n) {
  Reader r(data, n);
  ir::Model m = get_model(r);
  if (!r.done()) r.fail("trailing bytes in the model section");
  // The executor relies on the importer's structural guarantees; re-establish them.
  try {
    ir::Graph copy = m.graph;
    ir::topo_sort(copy);
    for (size_t i = 0; i < copy.nodes.size(); ++i)
      if (copy.nodes[i].name != m.graph.nodes[i].name) r.fail("nodes not in topological order");
  } catch (const CacheError&) { throw; } catch (const Error& e) { r.fail(e.what()); }
  return m;
}

npu::Program deserialize_program_section(const char* data, size_t n, const ir::Model& model, int64_t hw_cores) {
  Reader r(data, n);
  npu::Program p = get_program(r);
  if (!r.done()) r.fail("trailing bytes in the program section");
  validate_program(p, model, hw_cores);
  return p;
}

Entry deserialize(const char* data, size_t n, const Key* expected, int64_t hw_cores) {
  Parsed c = check_container(data, n, expected);
  Entry e;
  e.key = c.key;
  {
    Reader r(c.sec[kExternals].first, c.sec[kExternals].second);
    e.externals.resize(r.count(24));
    for (auto& x : e.externals) { x.path = r.str(); x.size = r.i64(); x.mtime_ns = r.i64(); }
    if (!r.done()) r.fail("trailing bytes in the externals section");
  }
  e.model = deserialize_model_section(c.sec[kModel].first, c.sec[kModel].second);
  if (c.sec[kProgram].first) {
    if (hw_cores <= 0) throw CacheError("corrupt (unexpected program section)");
    e.program = std::make_unique<npu::Program>(
        deserialize_program_section(c.sec[kProgram].first, c.sec[kProgram].second, e.model, hw_cores));
  } else if (hw_cores > 0) {
    throw CacheError("corrupt (program section missing)");
  }
  return e;
}

// =============================================================================================
// Lookup / store
// =============================================================================================
namespace {
void warn(const std::string& file, const std::string& what) {
  std::fprintf(stderr, "opennpu: warning: compiled-model cache %s is %s; rebuilding\n", file.c_str(), what.c_str());
}
std::string file_stem_for(const std::string& model_path) {
  std::string stem = fs::path(model_path).stem().string();
  std::string out;
  for (char c : stem.substr(0, 48)) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-') ? c : '_';
  return out.empty() ? "model" : out;
}

// Entries for the same model/options/hardware written by other builds ("<stem>-<key>-<build>")
// that nobody has rewritten for a week: a development tree would otherwise keep one copy per
// rebuild. Entries of builds still in use are rewritten by them, so they stay younger.
void sweep_old_builds(const std::string& file) {
  std::error_code ec;
  const fs::path self(file);
  const std::string name = self.filename().string();
  const size_t cut = name.rfind('-');
  if (cut == std::string::npos) return;
  const std::string prefix = name.substr(0, cut + 1);
  const auto now = fs::file_time_type::clock::now();
  for (const auto& de : fs::directory_iterator(self.parent_path(), ec)) {
    const std::string n = de.path().filename().string();
    if (n == name || n.rfind(prefix, 0) != 0) continue;
    const bool tmp = n.find(".onpucm.tmp.") != std::string::npos;  // left by a writer that died
    if (!tmp && de.path().extension() != ".onpucm") continue;
    auto t = de.last_write_time(ec);
    if (!ec && now - t > (tmp ? std::chrono::hours(1) : std::chrono::hours(24 * 7))) fs::remove(de.path(), ec);
  }
}

// Keeps the directory under a size cap ($OPENNPU_CACHE_MAX_MB, default 4096): deletes the least
// recently used entries (a hit refreshes an entry's mtime) until the rest fits, never `keep`.
void enforce_size_cap(const std::string& keep) {
  uint64_t cap = 4096ull << 20;
  if (const char* e = std::getenv("OPENNPU_CACHE_MAX_MB"); e && *e) {
    char* end = nullptr;
    unsigned long long mb = std::strtoull(e, &end, 10);
    if (end && *end == '\0') cap = static_cast<uint64_t>(mb) << 20;
  }
  std::error_code ec;
  std::vector<std::tuple<fs::file_time_type, uint64_t, fs::path>> entries;
  uint64_t total = 0;
  for (const auto& de : fs::directory_iterator(fs::path(keep).parent_path(), ec)) {
    if (de.path().extension() != ".onpucm") continue;
    std::error_code e1, e2;
    uint64_t sz = de.file_size(e1);
    auto t = de.last_write_time(e2);
    if (e1 || e2) continue;
    total += sz;
    if (de.path() != fs::path(keep)) entries.emplace_back(t, sz, de.path());
  }
  if (total <= cap) return;
  std::sort(entries.begin(), entries.end());  // oldest first
  for (const auto& [t, sz, path] : entries) {
    if (total <= cap) break;
    if (fs::remove(path, ec)) total -= sz;
  }
}
}  // namespace

Lookup lookup(const std::string& model_path, const LoadOptions& opts, uint64_t hw_hash, int64_t hw_cores) {
  auto t0 = std::chrono::steady_clock::now();
  Lookup lk;
  const std::string dir = resolve_dir(opts.cache_dir);
  if (dir.empty()) return lk;
  lk.enabled = true;
  lk.key.model_hash = hash_file(model_path, &lk.key.model_size);
  lk.key.hw_hash = hw_hash;
  lk.key.options_hash = options_hash(opts);
  lk.key.build_id = build_id();
  // The name covers everything in the key: the model, options and hardware, and the binary. Each
  // binary (the CLI, the Python module, a test) keeps its own entry instead of overwriting the
  // others' in turn; entries of older builds are swept by store().
  const uint64_t name_key = fast_hash(&lk.key, 4 * sizeof(uint64_t), 0x6e616d65);
  lk.file = fmt::format("{}/{}-{:016x}-{:08x}.onpucm", dir, file_stem_for(model_path), name_key,
                        static_cast<uint32_t>(lk.key.build_id ^ (lk.key.build_id >> 32) ^ lk.key.compiler_version));

  Bytes bytes;
  try {
    bytes = Bytes::open(lk.file);
  } catch (const Error&) {
    return lk;  // no entry (or unreadable): a plain miss
  }
  try {
    Entry e = deserialize(bytes.data(), bytes.size(), &lk.key, hw_hash ? hw_cores : 0);
    if (e.program && e.program->hw_hash != hw_hash) throw CacheError("foreign (program compiled for other hardware)");
    for (const auto& x : e.externals) {
      ExternalFile now = stat_file(x.path);
      if (now.size != x.size || now.mtime_ns != x.mtime_ns)
        throw CacheError(fmt::format("stale (external data '{}' changed)", x.path));
    }
    lk.model = std::move(e.model);
    lk.model.path = model_path;
    lk.program = std::move(e.program);
    lk.hit = true;
    ::utimensat(AT_FDCWD, lk.file.c_str(), nullptr, 0);  // mark as recently used (LRU); best effort
  } catch (const CacheError& ce) {
    warn(lk.file, ce.what());
  } catch (const MemoryLimitError&) {
    throw;  // the entry is fine; the model is over the user's limit (the import would refuse it too)
  } catch (const std::exception& ex) {  // e.g. bad_alloc on a hostile size that passed the bounds
    warn(lk.file, std::string("corrupt (") + ex.what() + ")");
  }
  lk.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return lk;
}

void store(Lookup& lk, const std::string& model_path, const ir::Model& model, const npu::Program* program) {
  if (!lk.enabled || lk.hit) return;
  try {
    Entry e;
    e.key = lk.key;
    {
      Bytes b = Bytes::open(model_path);
      e.externals = external_files(std::string_view(b.data(), b.size()), fs::path(model_path).parent_path().string());
    }
    e.model = model;  // shares tensor storage; no copy of the weights
    if (program) e.program = std::make_unique<npu::Program>(*program);
    std::string data = serialize(e);

    const fs::path file(lk.file);
    std::error_code ec;
    fs::create_directories(file.parent_path(), ec);
    // A private temp name in the same directory, then an atomic rename: readers and concurrent
    // writers only ever see a complete file (the last rename wins; both are equivalent).
    std::random_device rd;
    const std::string tmp = fmt::format("{}.tmp.{}.{:08x}", lk.file, ::getpid(), rd());
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) throw Error(fmt::format("cannot create '{}': {}", tmp, std::strerror(errno)));
    size_t done = 0;
    while (done < data.size()) {
      ssize_t w = ::write(fd, data.data() + done, data.size() - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        int err = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        throw Error(fmt::format("cannot write '{}': {}", tmp, std::strerror(err)));
      }
      done += static_cast<size_t>(w);
    }
    if (::close(fd) != 0 || ::rename(tmp.c_str(), lk.file.c_str()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      throw Error(fmt::format("cannot store '{}': {}", lk.file, std::strerror(err)));
    }
    sweep_old_builds(lk.file);
    enforce_size_cap(lk.file);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "opennpu: warning: could not write the compiled-model cache: %s\n", ex.what());
  }
}

}  // namespace opennpu::cache
