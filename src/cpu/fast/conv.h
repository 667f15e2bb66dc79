// cpu/fast/conv.h — the CPU backend's fused convolution ops (domain opennpu.cpu) and their passes.
//
// Ops (created only by the passes in conv_fuse.cpp; reference kernels there, fast oneDNN kernels
// in conv.cpp):
//   FusedConv(X, W, B?, Z?)  Y = act(Conv(X, W, B) + Z). Conv's attributes (auto_pad, dilations,
//       group, kernel_shape, pads, strides) plus
//         activation: "" | "Relu" | "LeakyRelu" | "Clip" | "Sigmoid" | "Tanh"
//         activation_alpha / activation_beta: LeakyRelu alpha; Clip min / max
//         layout: "NCHW" (default) or "NHWC": X, Z and Y are [N, H, W, C] (2-D convs only)
//         onnx_opset: the ai.onnx opset of the model the node came from
//   MaxPool / AveragePool / GlobalAveragePool / GlobalMaxPool (opennpu.cpu, layout "NHWC"): the
//       ONNX op with the same attributes on an [N, H, W, C] input, giving an [N, OH, OW, C] output.
// The NHWC layout never leaves the CPU backend's private graph: the layout pass converts with
// ONNX Transpose nodes where a value flows between NHWC and NCHW nodes, so graph inputs, outputs
// and every node outside a run of NHWC nodes see the ONNX (NCHW) tensors.
#pragma once
#include "cpu/fast/fast.h"
#include "cpu/fast/fuse.h"
#include "cpu/kernel.h"

namespace opennpu::cpu {

// Registers the reference kernels of the ops above (called from registry.cpp).
void register_conv_fused(Registry& r);

// The passes, also callable one by one (tests).
int fuse_conv_activation(ir::Model& m);  // Conv [+ Add] [+ activation] -> FusedConv
int conv_layout_nhwc(ir::Model& m);      // runs of 2-D FusedConv / pooling -> NHWC

// Reference helpers shared with the fast kernels (their fallback).
Tensor nchw_to_nhwc(const Tensor& x);
Tensor nhwc_to_nchw(const Tensor& x);
void fused_conv_reference(KernelContext& ctx);
// The output of a conv with a residual sum post-op (Z = input zi, float32 of the output's shape,
// which the output starts as): Z's own buffer when the executor lets it go and Z is not also the
// conv's input X (whose rows the kernel still reads while writing), else a new buffer holding a
// copy of Z.
Tensor& sum_output(KernelContext& ctx, int zi, const Tensor& x, const Shape& shape);
void nhwc_pool_reference(KernelContext& ctx);

// FusedConvDw (cpu/fast/conv_dw.cpp): a NHWC 1x1 FusedConv and the depthwise 3x3 FusedConv that
// alone reads its output, as one op. The pass fuses only pairs whose intermediate tensor (one
// image) is at least min_bytes (known static shape; 0: every pair); cpu_passes() uses its default.
// With `project`, a 1x1 conv (residual allowed) that alone reads the depthwise output joins too.
void register_conv_dw_fused(Registry& r);
void register_fast_conv_dw(FastRegistry& r);
void add_conv_dw_passes(std::vector<CpuPass>& p);
// With `any_first`, the first conv may be any NHWC group-1 conv (KxK, strides, pads: e.g.
// mobilenet_v2's stem), else only a 1x1 one.
int fuse_conv_dw(ir::Model& m, int64_t min_bytes, bool project = true, bool any_first = true);
void fused_conv_dw_reference(KernelContext& ctx);

}  // namespace opennpu::cpu
