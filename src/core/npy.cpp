#include "core/npy.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace opennpu {

namespace {
struct Descr { const char* code; DType t; };
constexpr Descr kDescr[] = {
    {"f4", DType::Float32}, {"f2", DType::Float16}, {"f8", DType::Float64}, {"i1", DType::Int8},
    {"i2", DType::Int16},   {"i4", DType::Int32},   {"i8", DType::Int64},   {"u1", DType::UInt8},
    {"u2", DType::UInt16},  {"u4", DType::UInt32},  {"u8", DType::UInt64},  {"b1", DType::Bool},
};

std::string trim(std::string s) {
  auto b = s.find_first_not_of(" \t\n");
  auto e = s.find_last_not_of(" \t\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// Extracts the value text of key `k` from the header dict, e.g. 'descr': '<f4'.
std::string dict_value(const std::string& h, const std::string& k, const std::string& what) {
  auto p = h.find("'" + k + "'");
  if (p == std::string::npos) throw Error(fmt::format("{}: .npy header has no '{}' key", what, k));
  // numpy would take the last of two equal keys; refuse rather than read the file another way.
  if (h.find("'" + k + "'", p + 1) != std::string::npos)
    throw Error(fmt::format("{}: .npy header has the '{}' key twice", what, k));
  p = h.find(':', p);
  if (p == std::string::npos) throw Error(fmt::format("{}: malformed .npy header", what));
  ++p;
  std::string rest = h.substr(p);
  rest = trim(rest);
  if (!rest.empty() && rest[0] == '(') {
    auto e = rest.find(')');
    if (e == std::string::npos) throw Error(fmt::format("{}: malformed shape in .npy header", what));
    return rest.substr(0, e + 1);
  }
  auto e = rest.find_first_of(",}");
  return trim(rest.substr(0, e));
}
}  // namespace

Tensor parse_npy(const std::string& b, const std::string& what) {
  if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0)
    throw Error(fmt::format("{}: not a .npy file (bad magic)", what));
  int major = static_cast<unsigned char>(b[6]);
  size_t hlen, hstart;
  if (major == 1) {
    hlen = static_cast<unsigned char>(b[8]) | (static_cast<unsigned char>(b[9]) << 8);
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) throw Error(fmt::format("{}: truncated .npy header", what));
    hlen = 0;
    for (int i = 0; i < 4; ++i) hlen |= static_cast<size_t>(static_cast<unsigned char>(b[8 + i])) << (8 * i);
    hstart = 12;
  } else {
    throw Error(fmt::format("{}: unsupported .npy format version {}", what, major));
  }
  if (hlen > b.size() - hstart) throw Error(fmt::format("{}: truncated .npy header", what));
  std::string h = b.substr(hstart, hlen);
  if (h.find('{') == std::string::npos || h.find('}') == std::string::npos)
    throw Error(fmt::format("{}: malformed .npy header", what));

  std::string descr = dict_value(h, "descr", what);
  if (descr.size() < 4 || (descr.front() != '\'' && descr.front() != '"'))
    throw Error(fmt::format("{}: unsupported .npy dtype {}", what, descr));
  descr = descr.substr(1, descr.size() - 2);
  char endian = descr[0];
  std::string code = descr.substr(1);
  DType dt = DType::Undefined;
  for (const auto& d : kDescr) if (code == d.code) dt = d.t;
  if (dt == DType::Undefined || (endian != '<' && endian != '>' && endian != '|' && endian != '='))
    throw Error(fmt::format("{}: unsupported .npy dtype '{}' (supported: f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1)", what, descr));

  std::string fo = dict_value(h, "fortran_order", what);
  if (fo == "True")
    throw Error(fmt::format("{}: Fortran-order arrays are not supported; save with numpy.ascontiguousarray", what));
  if (fo != "False") throw Error(fmt::format("{}: malformed fortran_order in .npy header", what));

  std::string sh = dict_value(h, "shape", what);
  if (sh.size() < 2 || sh.front() != '(' || sh.back() != ')') throw Error(fmt::format("{}: malformed shape in .npy header", what));
  Shape shape;
  std::stringstream ss(sh.substr(1, sh.size() - 2));
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = trim(item);
    if (item.empty()) continue;
    if (item.size() > 18 || !std::all_of(item.begin(), item.end(), ::isdigit))
      throw Error(fmt::format("{}: bad dimension '{}' in .npy shape", what, item));
    shape.push_back(std::stoll(item));
  }
  if (shape.size() > 32) throw Error(fmt::format("{}: .npy rank {} is too large", what, shape.size()));
  int64_t n = checked_numel(shape, what);
  size_t es = dtype_size(dt);
  size_t avail = b.size() - hstart - hlen;
  if (static_cast<uint64_t>(n) > avail / es || static_cast<size_t>(n) * es != avail)
    throw Error(fmt::format("{}: .npy data holds {} bytes, but shape {} of {} needs {}", what, avail, shape_str(shape),
                            dtype_name(dt), static_cast<double>(n) * es));
  Tensor t(dt, shape);
  std::memcpy(t.raw(), b.data() + hstart + hlen, t.nbytes());
  if (endian == '>' && es > 1) {
    auto* p = static_cast<unsigned char*>(t.raw());
    for (int64_t i = 0; i < n; ++i) std::reverse(p + i * es, p + (i + 1) * es);
  }
  if (dt == DType::Bool) {
    auto* p = t.data<uint8_t>();
    for (int64_t i = 0; i < n; ++i) p[i] = p[i] ? 1 : 0;
  }
  return t;
}

Tensor read_npy(const std::string& path) {
  // Only regular files: a directory or /proc file would report a bogus size, and opening a FIFO
  // would block until someone writes to it.
  std::error_code ec;
  if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec))
    throw Error(fmt::format("{}: not a regular file", path));
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(fmt::format("{}: cannot open file", path));
  f.seekg(0, std::ios::end);
  auto size = static_cast<uint64_t>(f.tellg());
  if (size > max_tensor_bytes() + (1u << 20)) throw Error(fmt::format("{}: file is larger than the memory limit", path));
  f.seekg(0);
  std::string bytes(size, '\0');
  f.read(bytes.data(), static_cast<std::streamsize>(size));
  if (!f) throw Error(fmt::format("{}: read error", path));
  return parse_npy(bytes, path);
}

std::string serialize_npy(const Tensor& t) {
  const char* code = nullptr;
  for (const auto& d : kDescr) if (d.t == t.dtype()) code = d.code;
  if (!code) throw Error(fmt::format("cannot write a {} tensor as .npy", dtype_name(t.dtype())));
  char endian = dtype_size(t.dtype()) == 1 ? '|' : '<';
  std::string shape = "(";
  for (size_t i = 0; i < t.shape().size(); ++i) shape += std::to_string(t.shape()[i]) + ",";
  if (t.shape().size() > 1) shape.pop_back();
  shape += ")";
  std::string dict = fmt::format("{{'descr': '{}{}', 'fortran_order': False, 'shape': {}, }}", endian, code, shape);
  bool v2 = dict.size() + 11 > 65535;
  size_t pre = v2 ? 12 : 10;
  size_t total = pre + dict.size() + 1;
  size_t pad = (64 - total % 64) % 64;
  dict += std::string(pad, ' ') + "\n";
  std::string out = "\x93NUMPY";
  out += static_cast<char>(v2 ? 2 : 1);
  out += '\0';
  size_t hl = dict.size();
  out += static_cast<char>(hl & 0xFF);
  out += static_cast<char>((hl >> 8) & 0xFF);
  if (v2) { out += static_cast<char>((hl >> 16) & 0xFF); out += static_cast<char>((hl >> 24) & 0xFF); }
  out += dict;
  out.append(static_cast<const char*>(t.raw()), t.nbytes());
  return out;
}

void write_npy(const std::string& path, const Tensor& t) {
  std::string b = serialize_npy(t);
  std::ofstream f(path, std::ios::binary);
  if (!f) throw Error(fmt::format("{}: cannot create file", path));
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
  if (!f) throw Error(fmt::format("{}: write error", path));
}

}  // namespace opennpu
