// fuzz/fuzz_cache.cpp — compiled-model cache files through cache::deserialize.
//
// The first input byte picks the mode; the rest is the file. A random mutation almost never
// keeps the trailing checksum right, so most modes first forge it (cache::checksum is public for
// this) to reach the section decoders:
//   mode % 4 == 0: the file as is;
//   mode % 4 == 1: checksum forged, CPU-only entry (hw_cores = 0);
//   mode % 4 == 2: checksum forged, NPU entry with hw_cores = 1 + (mode / 4) % 8;
//   mode % 4 == 3: the bytes as a bare model section (deserialize_model_section).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "opennpu/errors.h"
#include "runtime/cache.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const unsigned mode = data[0];
  std::string file(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    switch (mode % 4) {
      case 0:
        (void)opennpu::cache::deserialize(file.data(), file.size());
        break;
      case 1:
      case 2: {
        if (file.size() < 8) return 0;
        const uint64_t sum = opennpu::cache::checksum(file.data(), file.size() - 8);
        std::memcpy(file.data() + file.size() - 8, &sum, 8);
        const int64_t cores = mode % 4 == 1 ? 0 : 1 + (mode / 4) % 8;
        (void)opennpu::cache::deserialize(file.data(), file.size(), nullptr, cores);
        break;
      }
      case 3:
        (void)opennpu::cache::deserialize_model_section(file.data(), file.size());
        break;
    }
  } catch (const opennpu::Error&) {
  }
  return 0;
}
