// quant/quantize.h — post-training static quantization of an ONNX model to the QDQ form.
//
// quantize_model() runs the float32 model on the CPU reference kernels over calibration inputs
// (a folder of .npy files or seeded random inputs), observes every float32 activation, picks a
// per-tensor int8 range for each (minmax, percentile or entropy/KL), and rewrites the ONNX
// ModelProto: QuantizeLinear -> DequantizeLinear after every float activation, weights of
// Conv/MatMul/Gemm as int8 initializers (symmetric, per output channel) feeding a
// DequantizeLinear, biases as int32 with scale float32(x_scale * w_scale[c]), and a Relu, or a
// Clip with min 0, right after a Conv/MatMul/Gemm absorbed into its output's range [0, hi]
// (zero point -128: saturation is the Relu). The result is a valid ONNX model that ONNX Runtime
// also reads; opennpu's fuse_qdq pass turns its Conv/MatMul/Gemm patterns into integer ops.
// docs/int8.md describes the method and the format.
//
// compare_outputs() measures what quantization costs: cosine similarity and top-1 agreement of
// two models' first output over the same inputs.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "opennpu/runtime.h"

namespace opennpu::quant {

enum class Method { minmax, percentile, entropy };
Method parse_method(const std::string& s);  // throws Error naming the valid ones
const char* method_name(Method m);

struct QuantizeOptions {
  std::string calib_dir;  // folder of .npy files (one per sample; DIR/<sample>/<input>.npy for several inputs)
  int calib_random = 0;   // else: this many seeded random inputs (float32, standard normal)
  uint64_t seed = 0;
  Method method = Method::minmax;
  double percentile = 99.99;  // Method::percentile: kept fraction of |x|, in percent
  bool per_channel = true;    // weights: per output channel (else per tensor)
  // Called after each calibration batch with (done, total).
  std::function<void(int, int)> progress;
};

struct ActivationRange {
  std::string name;
  float observed_min = 0, observed_max = 0;  // over all calibration batches
  float lo = 0, hi = 0;                      // the range quantized (after the method's clipping)
  float scale = 1;
  int32_t zero_point = 0;
};

struct QuantizeReport {
  int calib_samples = 0;
  std::string method;
  int conv = 0, matmul = 0, gemm = 0;  // MAC nodes whose weights were quantized
  int activations = 0;                 // QuantizeLinear/DequantizeLinear pairs on activations
  int absorbed = 0;                    // Relu/Clip nodes absorbed into the preceding MAC node's output range
  int64_t float_weight_bytes = 0, int8_weight_bytes = 0;
  int64_t input_file_bytes = 0, output_file_bytes = 0;
  std::vector<ActivationRange> ranges;
  std::vector<std::string> notes;  // what was left in float32 and why
};

// Quantizes in_path into out_path. Throws Error on bad input (already quantized model, empty or
// mismatched calibration folder, ...), with one message naming what is wrong.
QuantizeReport quantize_model(const std::string& in_path, const std::string& out_path, const QuantizeOptions& opts);

// `n` seeded inputs for a model: float32 standard normal (Box-Muller over mt19937_64, so the same
// on every machine); sample k of seed s is the same whatever n is. Non-float inputs are an Error.
std::vector<NamedTensors> random_inputs(const std::vector<TensorInfo>& inputs, int n, uint64_t seed);
// The seed quantize's held-out evaluation and bench --compare use for inputs that calibration
// with `seed` never saw.
uint64_t held_out_seed(uint64_t seed);

struct Agreement {
  std::string output;        // the compared output (the models' first)
  int samples = 0;
  double cos_min = 1, cos_mean = 0;  // cosine similarity of the flattened outputs, per sample
  int64_t rows = 0, top1_agree = 0;  // argmax over the last axis, per row
  // Cosine of the input-dependent part: each model's outputs minus that model's mean output over
  // the inputs, flattened over all samples (needs >= 2 inputs; 0 otherwise). Models with random
  // weights give nearly the same output for every input, which makes the plain cosine
  // uninformative; this one is not.
  double centered_cos = 0;
  double top1_rate() const { return rows ? static_cast<double>(top1_agree) / static_cast<double>(rows) : 0.0; }
};
// Runs both models on every input and compares their first outputs (which must have the same
// name or at least the same shape).
Agreement compare_outputs(const Model& reference, const Model& other, const std::vector<NamedTensors>& inputs);

}  // namespace opennpu::quant
