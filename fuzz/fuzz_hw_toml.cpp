// fuzz/fuzz_hw_toml.cpp — hardware description text through HardwareConfig::parse (TOML syntax,
// unknown keys, ranges, cross-field validation); a config that parses is hashed and its canonical
// string printed, as the compiler and the cache do.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "npu/arch/hardware.h"
#include "opennpu/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    auto hw = opennpu::npu::HardwareConfig::parse(text, "fuzz.toml");
    (void)hw.hash();
    (void)hw.canonical_string();
  } catch (const opennpu::Error&) {
  }
  return 0;
}
