// npu/compiler/program.h — what the NPU compiler produces and the simulator executes.
//
// A Program is a list of Layers (one per IR node taken by the engine, with its operands, packed
// FP16 weights and fused activation) and a list of Tasks: DMA in, MAC-array or vector-unit
// compute, DMA out, each on one core, each with an explicit tile (index ranges) and explicit
// dependencies. The simulator gives the same Program two meanings: functional (every compute task
// computes exactly its tile, in FP16 storage with the declared accumulator) and timing (an event
// simulation of the same tasks on the engines). There is no separate estimate that could drift.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "opennpu/tensor.h"

namespace opennpu::npu {

enum class Engine : uint8_t { DmaIn, DmaOut, Mac, Vec };
const char* engine_name(Engine e);

// How a layer computes. Gemm covers Conv/ConvTranspose/Gemm/MatMul on the MAC array; the vector
// (planar) unit takes elementwise ops, activations, pooling, normalisation, reductions, resize and
// depthwise convolution; Move layers are pure data movement done by DMA; View layers (Reshape,
// Flatten, Squeeze, Unsqueeze, Identity) only reinterpret a buffer and cost nothing.
// Recurrent: an LSTM as one input-projection GEMM over all steps, then per step a recurrence
// GEMM on the MAC array and the gate arithmetic on the vector unit (engines that declare it).
enum class LayerKind : uint8_t { Gemm, Vector, Move, View, Recurrent };

enum class Act : uint8_t { None, Relu, Clip };

// Convolution geometry in GEMM terms. For MatMul/Gemm the spatial fields are unused (kh=kw=1).
struct GemmGeom {
  int64_t batch = 1;       // independent GEMMs (images x groups, or MatMul batch)
  int64_t M = 0, K = 0, N = 0;
  // conv only
  bool conv = false;
  int64_t n_img = 1, groups = 1, C = 0, H = 0, W = 0, O = 0, OH = 0, OW = 0;
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  int64_t in_dil_h = 1, in_dil_w = 1;  // ConvTranspose as a conv over a zero-interleaved input
  // Recurrent (LSTM) layers reuse the GEMM fields: M = steps, K = input size, N = 4 * hidden,
  // batch = directions, n_img = sequence batch, C = hidden size.
  // matmul only: batch broadcasting of A and B
  std::vector<int64_t> batch_shape, a_batch_strides, b_batch_strides;
  bool b_const = false;    // B is packed weights (Conv, Gemm/MatMul with an initializer)
};

struct Buffer {
  std::string name;  // IR value name
  Shape shape;
  bool constant = false;  // initializer, packed into the program
  bool graph_output = false;  // read by the host or a CPU segment after the NPU is done
  int64_t bytes = 0;      // bytes in DRAM including row-alignment padding (elem_bytes per element)
  // Storage type: Float16 (the default: FP16 values), Int8/UInt8 (quantized activations, one
  // byte each) or Float32 (exact fp32 values at the edges of INT8 regions: the host's input to a
  // QuantizeLinear, a DequantizeLinear's output read by the host or the CPU).
  DType dtype = DType::Float16;
};

int64_t elem_bytes(DType storage);  // 2 for Float16, 1 for Int8/UInt8, 4 for Float32

// INT8 (W8A8) parameters of a layer; see docs/int8.md and core/quant.h for the arithmetic.
// GEMM layers (QLinearConv, QLinearMatMul, QGemm): on an engine with INT8 MACs (int8 = true) the
// packed weights are w - w_zp (exact integers), the MAC array accumulates (x - x_zp)(w - w_zp)
// in int32 and the store requantizes with `mult` and `ibias`; without INT8 MACs (int8 = false)
// the weights are dequantized to FP16, x is dequantized to FP16 on the fly, the FP16 path runs
// with a float bias and the result is quantized with out_scale / out_zp.
// Region layers (a float op between DequantizeLinear and QuantizeLinear, or a standalone
// DequantizeLinear / QuantizeLinear): inputs with in_scale[i] != 0 are dequantized exactly as the
// CPU does, the op runs in fp32 on the vector unit (FP16 when int8 = false), and the output is
// quantized with out_scale / out_zp when out_type is Int8/UInt8.
struct QuantParams {
  bool on = false;         // this layer has quantized operands
  bool int8 = false;       // the engine computes it in INT8 / exact fp32 (else FP16 after dequantization)
  std::vector<float> in_scale;    // per layer input: DequantizeLinear scale (0 = not dequantized)
  std::vector<int32_t> in_zp;     // per layer input: DequantizeLinear zero point
  float out_scale = 0;            // QuantizeLinear of the output (0 = output stays float)
  int32_t out_zp = 0;
  DType out_type = DType::Undefined;
  std::vector<float> mult;        // GEMM: requantization multiplier per output channel (groups * N)
  std::vector<int32_t> ibias;     // GEMM: int32 bias per output channel (groups * N), may be empty
  std::vector<float> w_scale;     // GEMM: weight scale per output channel (groups * N)
  // Region layers that absorbed "op -> Q -> DQ -> Relu/Clip -> Q" (a residual Add and its Relu):
  // the op's result is quantized with (mid_scale, mid_zp, mid_type), dequantized with
  // (mid_dq_scale, mid_dq_zp), then the activation and the output quantization follow.
  float mid_scale = 0, mid_dq_scale = 0;  // 0 = no intermediate quantization
  int32_t mid_zp = 0, mid_dq_zp = 0;
  DType mid_type = DType::Undefined;
};

struct Layer {
  std::string name;        // IR node name
  std::string op;          // IR op type (after fusion: the leading op, e.g. "Conv")
  std::string fused;       // e.g. "Relu" when an activation was fused
  LayerKind kind = LayerKind::Vector;
  ir::Node node;           // copy of the IR node (attributes for the functional semantics)
  std::vector<int> inputs, outputs;  // buffer ids (-1 for an omitted optional input)
  GemmGeom g;
  std::vector<float> weights;  // Gemm: FP16-rounded B, packed [batch_of_B][K][N] (row-major)
  std::vector<float> bias;     // fp32 bias per N (output channel), empty = none
  Act act = Act::None;
  float clip_lo = 0, clip_hi = 0;
  // Statistics the compiler knows statically.
  int64_t macs = 0;          // useful multiply-accumulates (MAC array or vector unit)
  int64_t flops = 0;         // 2*macs for Gemm; elementwise op count for vector layers
  int64_t vec_rows = 0;      // Vector/Move layers: number of independent output rows
  int64_t vec_row_elems = 0; // elements per row
  int64_t vec_ops_per_elem = 1;
  QuantParams q;             // INT8 layers (q.on); see QuantParams
};

struct Task {
  Engine engine = Engine::Vec;
  int32_t core = 0;
  int32_t layer = -1;
  // Tile. Gemm: batch index b, [m0,m1) x [n0,n1) x [k0,k1); Vector/Move: rows [m0,m1).
  int64_t b = 0, m0 = 0, m1 = 0, n0 = 0, n1 = 0, k0 = 0, k1 = 0;
  bool last_k = true;        // Gemm: this task finishes the accumulation (apply bias/act, store)
  int64_t bytes = 0;         // DMA bytes (DRAM side)
  int32_t buf = -1;          // DMA: the buffer read or written (system-cache model)
  int64_t cycles = 0;        // compute cycles (Mac/Vec) from the tile-level model; DMA: 0
  int64_t macs = 0;
  int64_t sram_bytes = 0;    // local SRAM traffic caused by the task (energy)
  std::vector<uint32_t> deps;
};

// A run of consecutive nodes on one device.
struct Segment {
  bool npu = false;
  std::vector<int> nodes;        // indices into the IR graph's node list
  std::vector<int> layers;       // NPU: layer ids
  int64_t boundary_bytes = 0;    // FP16 bytes crossing from/to the CPU (DRAM round trip)
};

// Per-node placement decision: device and, when not the NPU, why.
struct Placement {
  std::string node, op;
  bool npu = false;
  std::string reason;  // why not the NPU; on the NPU: empty or a note (INT8 mode, absorbed Q/DQ)
};

struct Program {
  std::string hw_name;
  uint64_t hw_hash = 0;
  int64_t opset = 17;           // ai.onnx opset of the model (op semantics depend on it)
  std::vector<Buffer> buffers;
  std::vector<Layer> layers;
  std::vector<Task> tasks;      // in issue order (a valid topological order)
  std::vector<Segment> segments;
  std::vector<Placement> placements;  // one per IR node, in graph order
  int64_t sram_bytes_per_core = 0;
  int buffer_id(const std::string& name) const;
};

}  // namespace opennpu::npu
