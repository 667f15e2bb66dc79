#!/usr/bin/python3
"""The fuse_qdq pass: which QDQ patterns become integer ops, and what they compute.

  test_fuse_qdq.py OPENNPU

Builds small QDQ models with onnx.helper (random shapes and values, seeded) and checks:
  - fused: DQ -> Conv (per-channel weights, int32 bias) -> Q becomes QLinearConv, DQ -> MatMul -> Q
    QLinearMatMul, DQ -> Gemm (transB 0 and 1, bias) -> Q com.microsoft QGemm (seen in
    `opennpu plan --json`), and `opennpu run` gives, within 1 LSB, what numpy computes for the float
    QDQ graph (dequantize, op in float64, quantize with round-half-even and saturation);
  - not fused (the float pattern is kept, and still runs): a bias scale one ulp away from
    float32(x_scale * w_scale[c]), a float bias (not DequantizeLinear of int32), Gemm with alpha != 1, a Conv
    output read by a second node besides the Q, per-channel weight scales on the wrong axis.
Exit 0 pass, 1 fail.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FAILS = []
rng = np.random.default_rng(2024)


def check(cond, what):
    print(("PASS: " if cond else "FAIL: ") + what)
    if not cond:
        FAILS.append(what)


def q(x, s, z, lo=-128, hi=127):
    return np.clip(np.round(x / s) + z, lo, hi)  # np.round: half to even


def conv2d(x, w, b, pad):
    n, c, h, ww = x.shape
    m, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = h + 2 * pad - kh + 1, ww + 2 * pad - kw + 1
    y = np.zeros((n, m, oh, ow))
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("nchw,mc->nmhw", xp[:, :, i:i + oh, j:j + ow], w[:, :, i, j])
    return y + b.reshape(1, -1, 1, 1)


class Builder:
    def __init__(self):
        self.nodes, self.inits = [], []

    def init(self, name, arr):
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def dq(self, name, qarr, scale, zp=None, axis=None):
        ins = [self.init(name + "_q", qarr), self.init(name + "_s", scale)]
        if zp is not None:
            ins.append(self.init(name + "_z", zp))
        kw = {"axis": axis} if axis is not None else {}
        self.nodes.append(helper.make_node("DequantizeLinear", ins, [name], name=name + "_dq", **kw))
        return name

    def model(self, x_shape, y_name, y_shape):
        g = helper.make_graph(self.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(y_name, TensorProto.FLOAT, y_shape)], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def act_qdq(b, src, dst, s, z):
    b.init(dst + "_s", np.array(s, np.float32))
    b.init(dst + "_z", np.array(z, np.int8))
    b.nodes.append(helper.make_node("QuantizeLinear", [src, dst + "_s", dst + "_z"], [dst + "_q"], name=dst + "_ql"))
    b.nodes.append(helper.make_node("DequantizeLinear", [dst + "_q", dst + "_s", dst + "_z"], [dst], name=dst + "_dql"))


def make_case(kind, variant):
    """Returns (model, input, numpy reference of the float QDQ graph, output scale, op expected)."""
    b = Builder()
    xs, xz = np.float32(0.05), -3
    ys, yz = np.float32(0.2), 5
    if kind == "conv":
        C, M, H = int(rng.integers(2, 6)), int(rng.integers(2, 7)), int(rng.integers(4, 9))
        x = rng.standard_normal((1, C, H, H)).astype(np.float32) * 2
        wq = rng.integers(-127, 128, (M, C, 3, 3)).astype(np.int8)
        ws = (rng.random(M) * 0.02 + 0.005).astype(np.float32)
        bq = rng.integers(-2000, 2000, M).astype(np.int32)
        bs = (xs * ws).astype(np.float32)
        if variant == "bias_ulp":
            bs[0] = np.nextafter(bs[0], np.float32(1))
        act_qdq(b, "x", "xd", xs, xz)
        w_axis = 1 if variant == "wrong_axis" else 0
        if variant == "wrong_axis":
            ws = (rng.random(C) * 0.02 + 0.005).astype(np.float32)
            bs = None
        b.dq("w", wq, ws, np.zeros(ws.shape, np.int8), axis=w_axis)
        ins = ["xd", "w"]
        if bs is not None:
            if variant == "bias_float":
                ins.append(b.init("b", (bq * bs).astype(np.float32)))
            else:
                b.dq("b", bq, bs, axis=0)
            if variant != "bias_float":
                ins.append("b")
        b.nodes.append(helper.make_node("Conv", ins, ["y_f"], name="conv", pads=[1, 1, 1, 1]))
        outs = ["y_f"]
        if variant == "two_readers":
            b.nodes.append(helper.make_node("Relu", ["y_f"], ["r"], name="relu"))
        act_qdq(b, "y_f", "y", ys, yz)
        if variant == "two_readers":
            b.nodes.append(helper.make_node("Add", ["y", "r"], ["out"], name="add"))
        out = "out" if variant == "two_readers" else "y"
        xd = (q(x, xs, xz) - xz) * np.float64(xs)
        wd = wq.astype(np.float64) * (ws.reshape(-1, 1, 1, 1) if w_axis == 0 else ws.reshape(1, -1, 1, 1))
        bd = (bq * bs).astype(np.float32).astype(np.float64) if bs is not None else np.zeros(M)
        yf = conv2d(xd, wd, bd, 1)
        ref = (q(yf, ys, yz) - yz) * np.float64(ys)
        if variant == "two_readers":
            ref = ref + np.maximum(yf, 0)
        m = b.model([1, C, H, H], out, list(ref.shape))
        return m, x, ref, ys, "QLinearConv"
    K, N, Mr = int(rng.integers(3, 40)), int(rng.integers(2, 20)), int(rng.integers(1, 6))
    x = rng.standard_normal((Mr, K)).astype(np.float32) * 2
    act_qdq(b, "x", "xd", xs, xz)
    trans_b = kind == "gemm_tb"
    wq = rng.integers(-127, 128, (N, K) if trans_b else (K, N)).astype(np.int8)
    ws = (rng.random(N) * 0.02 + 0.005).astype(np.float32)
    b.dq("w", wq, ws, np.zeros(N, np.int8), axis=0 if trans_b else 1)
    wd = wq.astype(np.float64) * (ws.reshape(-1, 1) if trans_b else ws.reshape(1, -1))
    if trans_b:
        wd = wd.T
    xd = (q(x, xs, xz) - xz) * np.float64(xs)
    if kind == "matmul":
        b.nodes.append(helper.make_node("MatMul", ["xd", "w"], ["y_f"], name="mm"))
        yf = xd @ wd
        op = "QLinearMatMul"
    else:
        bq = rng.integers(-2000, 2000, N).astype(np.int32)
        bs = (xs * ws).astype(np.float32)
        b.dq("b", bq, bs, axis=0)
        alpha = 0.5 if variant == "alpha" else 1.0
        b.nodes.append(helper.make_node("Gemm", ["xd", "w", "b"], ["y_f"], name="gemm", transB=int(trans_b), alpha=alpha))
        yf = alpha * (xd @ wd) + bq * bs.astype(np.float64)
        op = "QGemm"
    act_qdq(b, "y_f", "y", ys, yz)
    ref = (q(yf, ys, yz) - yz) * np.float64(ys)
    return b.model([Mr, K], "y", list(ref.shape)), x, ref, ys, op


def main():
    opennpu = sys.argv[1]
    cases = [(k, "") for k in ("conv", "matmul", "gemm", "gemm_tb") for _ in range(3)]
    cases += [("conv", "bias_ulp"), ("conv", "bias_float"), ("conv", "two_readers"), ("conv", "wrong_axis"),
              ("gemm", "alpha"), ("gemm_tb", "alpha")]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (kind, variant) in enumerate(cases):
            m, x, ref, ys, op = make_case(kind, variant)
            path = os.path.join(tmp, f"c{i}.onnx")
            onnx.save(m, path)
            xp = os.path.join(tmp, f"x{i}.npy")
            np.save(xp, x)
            r = subprocess.run([opennpu, "plan", path, "--json"], capture_output=True, text=True)
            if r.returncode != 0:
                check(False, f"{kind} {variant}: plan failed: {r.stderr.strip()}")
                continue
            ops = [n["op"] for n in json.loads(r.stdout)["nodes"]]
            fused = not variant
            want = op if fused else {"conv": "Conv", "gemm": "Gemm", "gemm_tb": "Gemm"}[kind]
            check(want in ops and (fused or op not in ops), f"{kind} {variant or 'exact'}: {want} in the plan ({ops})")
            out = os.path.join(tmp, f"o{i}")
            r = subprocess.run([opennpu, "run", path, "--input", f"x={xp}", "--output-dir", out], capture_output=True,
                               text=True)
            if r.returncode != 0:
                check(False, f"{kind} {variant}: run failed: {r.stderr.strip()}")
                continue
            got = np.load(os.path.join(out, os.listdir(out)[0])).astype(np.float64)
            lsb = np.abs(got - ref) / ys
            check(lsb.max() <= 1 + 1e-6, f"{kind} {variant or 'exact'} {list(x.shape)}: vs numpy QDQ reference within 1 LSB "
                                         f"(max {lsb.max():.3f}, {int(np.sum(lsb > 0.5))}/{lsb.size} differ)")
    print(f"{len(FAILS)} failed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
