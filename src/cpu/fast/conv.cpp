// cpu/fast/conv.cpp — fast conv kernels (see fast.h). Nothing registered yet.
#include "cpu/fast/fast.h"
#include "cpu/fast/fuse.h"

namespace opennpu::cpu {

void register_fast_conv(FastRegistry&) {}

}  // namespace opennpu::cpu

namespace opennpu::cpu {
void add_conv_passes(std::vector<CpuPass>&) {}
}  // namespace opennpu::cpu
