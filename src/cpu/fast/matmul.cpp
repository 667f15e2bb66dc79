// cpu/fast/matmul.cpp — fast matmul kernels (see fast.h). Nothing registered yet.
#include "cpu/fast/fast.h"
#include "cpu/fast/fuse.h"

namespace opennpu::cpu {

void register_fast_matmul(FastRegistry&) {}

}  // namespace opennpu::cpu
