#!/usr/bin/python3
"""opennpu quantize on models/small_cnn.onnx: format, accuracy and bad input.

  test_quantize.py OPENNPU MODELS_DIR [--ort ORT_DIR]

Checks, with numpy and onnx as the independent reference (never opennpu's own figures):
  - the quantized file passes onnx.checker (full check);
  - weights are int8 initializers, symmetric per output channel (zero point 0, max |q| = 127 on
    every non-zero channel, scale = max|w_c| / 127 of the float weights) feeding DequantizeLinear;
  - biases are int32 with scale == float32(x_scale * w_scale[c]) bit for bit and zero point 0;
  - every Relu after a Conv/Gemm was absorbed: no Relu left, and the Q after such a Conv has zero
    point -128;
  - the quantized model's output (opennpu run, CPU) against the float model's (opennpu run) on the
    exported held-out input and on seeded held-out inputs: cosine >= 0.99, for minmax, percentile
    and entropy calibration;
  - bad input: an empty calibration folder, a .npy of the wrong shape, one of the wrong dtype, an
    already quantized model -> exit 1 with one clear message each (never a crash);
  - with --ort (only this check): ONNX Runtime runs the quantized file, and opennpu's CPU output (where the Conv/Gemm
    patterns run as QLinearConv/QGemm integer kernels) agrees with it within 1 output LSB.
Exit 0 pass, 1 fail, 77 skip (the exported model is missing).
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

FAILS = []


def check(cond, what):
    print(("PASS: " if cond else "FAIL: ") + what)
    if not cond:
        FAILS.append(what)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def cos(a, b):
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def opennpu_out(opennpu, model, inp, tmp, tag):
    d = os.path.join(tmp, tag)
    r = run([opennpu, "run", model, "--input", f"input={inp}", "--output-dir", d, "--threads", "2"])
    if r.returncode != 0:
        raise SystemExit(f"FAIL: opennpu run {model}: {r.stderr.strip()}")
    (f,) = [x for x in os.listdir(d) if x.endswith(".npy")]
    return np.load(os.path.join(d, f))


def check_format(path):
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    check(True, "onnx.checker (full_check) accepts the quantized model")
    fm = onnx.load(FLOAT_MODEL)
    fw = {t.name: numpy_helper.to_array(t) for t in fm.graph.initializer}
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    prod = {o: n for n in m.graph.node for o in n.output}
    ops = [n.op_type for n in m.graph.node]
    check("Relu" not in ops, f"no Relu left (absorbed into the Conv output ranges): {sorted(set(ops))}")
    macs = [n for n in m.graph.node if n.op_type in ("Conv", "Gemm")]
    check(len(macs) == 3, f"3 MAC nodes (2 Conv, 1 Gemm), got {len(macs)}")
    fmacs = {n.name: n for n in fm.graph.node if n.op_type in ("Conv", "Gemm")}
    for n in macs:
        xdq, wdq = prod[n.input[0]], prod[n.input[1]]
        check(xdq.op_type == "DequantizeLinear" and wdq.op_type == "DequantizeLinear", f"{n.name}: inputs from DequantizeLinear")
        xs = inits[xdq.input[1]]
        wq, ws, wz = (inits[i] for i in wdq.input[:3])
        axis = [a.i for a in wdq.attribute if a.name == "axis"]
        trans_b = any(a.name == "transB" and a.i for a in n.attribute)
        want_axis = 0 if n.op_type == "Conv" or trans_b else 1
        check(wq.dtype == np.int8 and wz.dtype == np.int8 and not wz.any(), f"{n.name}: int8 weights, zero point 0")
        check(axis == [want_axis] and ws.shape == (wq.shape[want_axis],), f"{n.name}: per-channel scales on axis {want_axis}")
        wf = fw[fmacs[n.name].input[1]]
        red = tuple(d for d in range(wf.ndim) if d != want_axis)
        amax = np.abs(wf).max(axis=red).astype(np.float32)
        check(np.allclose(ws, amax / np.float32(127), rtol=1e-6), f"{n.name}: scale = max|w_c| / 127")
        check(np.all(np.abs(wq.astype(np.int32)).max(axis=red) == 127), f"{n.name}: every channel reaches |q| = 127")
        deq = wq.astype(np.float32) * np.expand_dims(ws, red)
        check(np.max(np.abs(deq - wf)) <= np.max(ws) * 0.5 + 1e-7, f"{n.name}: weights within half a step")
        if len(n.input) > 2:
            bdq = prod[n.input[2]]
            bq, bs = inits[bdq.input[0]], inits[bdq.input[1]]
            check(bq.dtype == np.int32 and len(bdq.input) == 2, f"{n.name}: int32 bias, zero point 0 (omitted)")
            want = (np.float32(xs) * ws.astype(np.float32)).astype(np.float32)
            check(bs.dtype == np.float32 and np.array_equal(bs.view(np.uint32), want.view(np.uint32)),
                  f"{n.name}: bias scale == float32(x_scale * w_scale[c]) bit for bit")
        if n.op_type == "Conv":
            (q,) = [c for c in m.graph.node if n.output[0] in c.input]
            check(q.op_type == "QuantizeLinear" and inits[q.input[2]] == -128,
                  f"{n.name}: output quantized with zero point -128 (Relu absorbed)")


def main():
    global FLOAT_MODEL
    opennpu, models = sys.argv[1], sys.argv[2]
    ort = sys.argv[sys.argv.index("--ort") + 1] if "--ort" in sys.argv else None
    FLOAT_MODEL = os.path.join(models, "small_cnn.onnx")
    held = os.path.join(models, "small_cnn.input.npy")
    if not os.path.exists(FLOAT_MODEL) or not os.path.exists(held):
        print("SKIP: models/small_cnn.onnx missing; run /usr/bin/python3 scripts/export_models.py")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        q = os.path.join(tmp, "small_cnn.int8.onnx")
        r = run([opennpu, "quantize", FLOAT_MODEL, "--out", q, "--calib-random", "32", "--seed", "7", "--json"])
        check(r.returncode == 0, f"quantize exits 0 ({r.stderr.strip()[:200]})")
        if r.returncode != 0:
            return 1
        if ort:  # the ONNX Runtime cross-check only (the rest is the quant_small_cnn test)
            check_ort(opennpu, ort, q, held_out_inputs(held, tmp), tmp)
            print(f"{len(FAILS)} failed")
            return 1 if FAILS else 0
        check_format(q)
        # Accuracy on held-out inputs: the exported one plus seeded ones the calibration never saw.
        inputs = held_out_inputs(held, tmp)
        ref = [opennpu_out(opennpu, FLOAT_MODEL, i, tmp, f"f{k}") for k, i in enumerate(inputs)]
        for method in ("minmax", "percentile", "entropy"):
            qm = os.path.join(tmp, f"small_cnn.{method}.onnx")
            r = run([opennpu, "quantize", FLOAT_MODEL, "--out", qm, "--calib-random", "32", "--seed", "7",
                     "--method", method])
            check(r.returncode == 0, f"quantize --method {method} exits 0 ({r.stderr.strip()[:200]})")
            got = [opennpu_out(opennpu, qm, i, tmp, f"{method}{k}") for k, i in enumerate(inputs)]
            cs = [cos(g, f) for g, f in zip(got, ref)]
            top1 = sum(int(np.argmax(g) == np.argmax(f)) for g, f in zip(got, ref))
            check(min(cs) >= 0.99, f"{method}: cosine vs float32 on {len(cs)} held-out inputs >= 0.99 (min {min(cs):.5f}, "
                                   f"top-1 agreement {top1}/{len(cs)})")
            # The random-weight model's output barely depends on its input (the plain cosine of two
            # different inputs' outputs is high too), so also compare the input-dependent part:
            # each model's outputs minus its mean output over the inputs.
            G = np.stack([g.ravel() for g in got]).astype(np.float64)
            F = np.stack([f.ravel() for f in ref]).astype(np.float64)
            cc = cos(G - G.mean(axis=0), F - F.mean(axis=0))
            if method == "minmax":
                check(cc >= 0.95, f"{method}: centered cosine (input-dependent part) >= 0.95 ({cc:.5f})")
            else:
                print(f"INFO: {method}: centered cosine {cc:.5f}")
        check_bad_input(opennpu, q, tmp)
    print(f"{len(FAILS)} failed")
    return 1 if FAILS else 0


def held_out_inputs(held, tmp):
    rng = np.random.default_rng(12345)
    inputs = [held]
    for k in range(4):
        p = os.path.join(tmp, f"held{k}.npy")
        np.save(p, rng.standard_normal((1, 3, 32, 32)).astype(np.float32))
        inputs.append(p)
    return inputs


def check_ort(opennpu, ort, q, inputs, tmp):
    r = run(["bash", os.path.join(ort, "setup.sh")])
    check(r.returncode == 0, "ONNX Runtime harness set up")
    m = onnx.load(q)
    out_name = m.graph.output[0].name
    (dq,) = [n for n in m.graph.node if out_name in n.output]
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    lsb = float(inits[dq.input[1]])
    for k, i in enumerate(inputs):
        d = os.path.join(tmp, f"ort{k}")
        r = run(["node", os.path.join(ort, "ort-run.js"), q, "--input", f"input={i}", "--output-dir", d, "--quiet"])
        check(r.returncode == 0, f"ONNX Runtime runs the quantized model ({r.stderr.strip()[:200]})")
        if r.returncode:
            continue
        o = np.load(os.path.join(d, os.listdir(d)[0]))
        g = opennpu_out(opennpu, q, i, tmp, f"ortcmp{k}")
        diff = np.abs(g.astype(np.float64) - o.astype(np.float64)) / lsb
        check(diff.max() <= 1.0 + 1e-3, f"input {k}: opennpu CPU vs ONNX Runtime within 1 LSB (max {diff.max():.2f} LSB, "
                                        f"{int(np.sum(diff > 0.5))}/{diff.size} elements differ)")


def check_bad_input(opennpu, quantized, tmp):
    def expect_error(args, needle, what):
        r = run([opennpu, "quantize", *args])
        lines = [l for l in r.stderr.strip().splitlines() if l]
        ok = r.returncode == 1 and len(lines) == 1 and needle in lines[0]
        check(ok, f"{what}: exit 1 with one message containing '{needle}' (rc {r.returncode}: {r.stderr.strip()[:200]})")

    out = os.path.join(tmp, "bad.onnx")
    empty = os.path.join(tmp, "empty")
    os.makedirs(empty)
    expect_error([FLOAT_MODEL, "--out", out, "--calib", empty], "no .npy files", "empty calibration folder")
    shape = os.path.join(tmp, "shape")
    os.makedirs(shape)
    np.save(os.path.join(shape, "a.npy"), np.zeros((1, 3, 16, 16), np.float32))
    expect_error([FLOAT_MODEL, "--out", out, "--calib", shape], "shape [1,3,16,16] does not match", "wrong shape")
    dt = os.path.join(tmp, "dtype")
    os.makedirs(dt)
    np.save(os.path.join(dt, "a.npy"), np.zeros((1, 3, 32, 32), np.float64))
    expect_error([FLOAT_MODEL, "--out", out, "--calib", dt], "dtype float64 does not match", "wrong dtype")
    expect_error([FLOAT_MODEL, "--out", out, "--calib", os.path.join(tmp, "nope")], "does not exist", "missing folder")
    expect_error([quantized, "--out", out, "--calib-random", "2"], "already quantized", "already quantized model")
    r = run([opennpu, "quantize", FLOAT_MODEL, "--out", out])
    check(r.returncode in (1, 2) and "calib" in r.stderr, f"no calibration data: clear error (rc {r.returncode})")


if __name__ == "__main__":
    sys.exit(main())
