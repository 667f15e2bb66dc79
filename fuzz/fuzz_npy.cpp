// fuzz/fuzz_npy.cpp — .npy bytes through parse_npy (header, dict syntax, dtype, shape, data size);
// a file that parses is written back and must parse to the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/npy.h"
#include "opennpu/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  opennpu::Tensor t;
  try {
    t = opennpu::parse_npy(bytes, "fuzz.npy");
  } catch (const opennpu::Error&) {
    return 0;
  }
  // Round trip: what we write we must read back unchanged.
  const std::string again = opennpu::serialize_npy(t);
  opennpu::Tensor u = opennpu::parse_npy(again, "roundtrip.npy");
  if (u.dtype() != t.dtype() || u.shape() != t.shape() || u.nbytes() != t.nbytes() ||
      (t.nbytes() && std::memcmp(u.raw(), t.raw(), t.nbytes()) != 0))
    std::abort();
  return 0;
}
