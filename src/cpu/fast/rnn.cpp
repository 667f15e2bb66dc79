// cpu/fast/rnn.cpp — fast rnn kernels (see fast.h). Nothing registered yet.
#include "cpu/fast/fast.h"
#include "cpu/fast/fuse.h"

namespace opennpu::cpu {

void register_fast_rnn(FastRegistry&) {}

}  // namespace opennpu::cpu
