// cpu/fast/elementwise.cpp — fast elementwise kernels (see fast.h). Nothing registered yet.
#include "cpu/fast/fast.h"
#include "cpu/fast/fuse.h"

namespace opennpu::cpu {

void register_fast_elementwise(FastRegistry&) {}

}  // namespace opennpu::cpu

namespace opennpu::cpu {
void add_elementwise_passes(std::vector<CpuPass>&) {}
}  // namespace opennpu::cpu
