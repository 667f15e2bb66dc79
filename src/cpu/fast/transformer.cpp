// cpu/fast/transformer.cpp — fast transformer kernels (see fast.h). Nothing registered yet.
#include "cpu/fast/fast.h"
#include "cpu/fast/fuse.h"

namespace opennpu::cpu {

void register_fast_transformer(FastRegistry&) {}

}  // namespace opennpu::cpu

namespace opennpu::cpu {
void add_transformer_passes(std::vector<CpuPass>&) {}
}  // namespace opennpu::cpu
