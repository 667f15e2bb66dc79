// cpu/fast/quant.h — fast int8 kernels (QLinearConv, QLinearMatMul, com.microsoft QGemm on
// oneDNN; QuantizeLinear / DequantizeLinear), bit-identical to the reference kernels; see
// quant.cpp. The vector loops are exposed for the tests (force_scalar selects the scalar code
// that the dispatcher uses on machines without AVX-512).
#pragma once
#include <cstdint>
#include <vector>

#include "core/quant.h"

namespace opennpu::cpu {

class FastRegistry;
struct CpuPass;
void register_fast_quant(FastRegistry& r);
// The CPU pass qconv_layout_nhwc (runs of int8 ops in NHWC; see quant.cpp).
void add_quant_passes(std::vector<CpuPass>& p);

namespace fastq {
// out[i] = quant::requantize(acc[i], bias[i], mult[i], zp, r) as uint8 (is_u8) or int8.
// Returns true when some |acc[i]| >= 2^24 (the caller's accumulators may then be inexact).
bool requantize(const int32_t* acc, const int32_t* bias, const float* mult, int64_t n, int32_t zp, quant::QRange r,
                bool is_u8, void* out, bool force_scalar = false);
// out[i] = quant::quantize(x[i], scale, zp, r).
void quantize(const float* x, int64_t n, float scale, int32_t zp, quant::QRange r, bool is_u8, void* out,
              bool force_scalar = false);
// y[i] = quant::dequantize(q[i], zp, scale).
void dequantize(const void* q, int64_t n, bool is_u8, int32_t zp, float scale, float* y, bool force_scalar = false);
}  // namespace fastq

}  // namespace opennpu::cpu
