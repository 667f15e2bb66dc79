// core/npy.h — reading and writing NumPy .npy files (format versions 1.0, 2.0, 3.0).
// Reading treats the file as untrusted: header length, dict syntax, dtype, shape and data size
// are all checked, and any disagreement is an Error naming the file. Writes version 1.0 (2.0
// when the header needs it), little-endian, C order.
#pragma once
#include <string>

#include "opennpu/tensor.h"

namespace opennpu {

Tensor read_npy(const std::string& path);
Tensor parse_npy(const std::string& bytes, const std::string& what);
void write_npy(const std::string& path, const Tensor& t);
std::string serialize_npy(const Tensor& t);

}  // namespace opennpu
