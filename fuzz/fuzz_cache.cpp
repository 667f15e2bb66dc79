// fuzz/fuzz_cache.cpp — compiled-model cache files through cache::deserialize.
//
// The first input byte picks the mode; the rest is the file. A random mutation almost never
// keeps the trailing checksum right, so most modes first forge it (cache::checksum is public for
// this) to reach the section decoders:
//   mode % 5 == 0: the file as is;
//   mode % 5 == 1: checksum forged, CPU-only entry (hw_cores = 0);
//   mode % 5 == 2: checksum forged, NPU entry with hw_cores = 1 + (mode / 5) % 8;
//   mode % 5 == 3: the bytes as a bare model section (deserialize_model_section);
//   mode % 5 == 4: the bytes as an ONNX model for external_files (the cache key's wire-format
//                  walk for external-data locations), resolved against an empty directory.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "fuzz_util.h"
#include "opennpu/errors.h"
#include "runtime/cache.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const unsigned mode = data[0];
  std::string file(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    switch (mode % 5) {
      case 0:
        (void)opennpu::cache::deserialize(file.data(), file.size());
        break;
      case 1:
      case 2: {
        if (file.size() < 8) return 0;
        const uint64_t sum = opennpu::cache::checksum(file.data(), file.size() - 8);
        std::memcpy(file.data() + file.size() - 8, &sum, 8);
        const int64_t cores = mode % 5 == 1 ? 0 : 1 + (mode / 5) % 8;
        (void)opennpu::cache::deserialize(file.data(), file.size(), nullptr, cores);
        break;
      }
      case 3:
        (void)opennpu::cache::deserialize_model_section(file.data(), file.size());
        break;
      case 4:
        (void)opennpu::cache::external_files(std::string_view(file), opennpu::fuzz::empty_dir());
        break;
    }
  } catch (const opennpu::Error&) {
  }
  return 0;
}
