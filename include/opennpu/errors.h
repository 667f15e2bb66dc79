// opennpu/errors.h — the one exception type opennpu throws for anything a user or a file can cause.
// Messages carry their context (file, node name, op, what was expected) so a CLI can print them as
// they are and exit non-zero. Programmer bugs use assert instead.
#pragma once
#include <stdexcept>
#include <string>

namespace opennpu {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A tensor larger than the memory limit (LoadOptions::max_memory, --max-memory) was refused
// before it was allocated.
class MemoryLimitError : public Error {
 public:
  using Error::Error;
};

}  // namespace opennpu
