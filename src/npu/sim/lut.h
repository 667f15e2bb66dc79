// npu/sim/lut.h — the lookup-table unit that evaluates transcendental activations after the MAC
// array / in the planar engine. A LUT holds 257 FP16 samples of the function over a fixed input
// range and interpolates linearly (in fp32) between them; outside the range it saturates to the
// function's asymptote. This is the engine's arithmetic, not the exact function: its error is
// part of what the simulator reports (compare against the CPU's exact kernels).
#pragma once
#include <string>

namespace opennpu::npu {

struct LutSpec {
  float lo, hi;          // sampled range
  float below, above;    // value outside the range (NaN = use identity x, e.g. gelu above)
};

// Evaluates activation `fn` ("sigmoid", "tanh", "erf", "exp", "gelu") through its LUT.
float lut_eval(const std::string& fn, float x);
const LutSpec& lut_spec(const std::string& fn);
constexpr int kLutSegments = 256;

}  // namespace opennpu::npu
