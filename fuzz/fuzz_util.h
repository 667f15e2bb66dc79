// fuzz/fuzz_util.h — shared bits of the libFuzzer targets.
//
// A target feeds the fuzzer's bytes to one parser and accepts exactly two outcomes: a result, or
// opennpu::Error (the clean "bad input" path). Anything else — a sanitizer report, a signal, a
// std::bad_alloc or other exception escaping — is a finding: libFuzzer stops and writes the input.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

namespace opennpu::fuzz {

// An empty directory, created once per process and removed at exit: models may reference
// external data, which must resolve inside this directory (so it resolves to nothing).
inline const std::string& empty_dir() {
  static const std::string dir = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "opennpu-fuzz-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) std::abort();
    static std::string keep = tmpl;
    std::atexit([] { std::error_code ec; std::filesystem::remove_all(keep, ec); });
    return tmpl;
  }();
  return dir;
}

}  // namespace opennpu::fuzz
