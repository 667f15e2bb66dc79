#!/usr/bin/python3
"""Accuracy cost of int8 post-training quantization (issue 8), measured with opennpu itself.

  bench/int8_accuracy.py [--opennpu build/release/opennpu] [--models resnet50,mobilenet_v2]
                         [--calib 32] [--eval 16] [--seed 0] [--methods minmax] [--out-dir /tmp/int8]
                         [--threads 0] [--json]

For each model and calibration method: `opennpu quantize MODEL --calib-random CALIB --seed SEED
--method M --eval EVAL --json`, which calibrates on CALIB seeded standard-normal inputs and then
runs the float32 model and the quantized one (CPU backend; the quantized model's Conv/Gemm run as
QLinearConv/QGemm integer kernels after the fuse_qdq pass) on EVAL held-out seeded inputs that
calibration never saw, reporting the cosine similarity of the outputs (min and mean over the
inputs) and the top-1 agreement (same argmax). Prints a table (or JSON) with the times.
docs/int8.md quotes its figures.
"""
import argparse
import json
import os
import subprocess
import sys
import time


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser()
    ap.add_argument("--opennpu", default=os.path.join(root, "build", "release", "opennpu"))
    ap.add_argument("--models", default="resnet50,mobilenet_v2")
    ap.add_argument("--models-dir", default=os.path.join(root, "models"))
    ap.add_argument("--calib", type=int, default=32)
    ap.add_argument("--eval", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="minmax")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out-dir", default="/tmp/opennpu-int8")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    rows = []
    for name in a.models.split(","):
        src = os.path.join(a.models_dir, name + ".onnx")
        if not os.path.exists(src):
            sys.exit(f"{src} is missing: run /usr/bin/python3 scripts/export_models.py")
        for method in a.methods.split(","):
            out = os.path.join(a.out_dir, f"{name}.{method}.int8.onnx")
            cmd = [a.opennpu, "quantize", src, "--out", out, "--calib-random", str(a.calib), "--seed", str(a.seed),
                   "--method", method, "--eval", str(a.eval), "--threads", str(a.threads), "--json"]
            t0 = time.time()
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
            j = json.loads(r.stdout)
            e = j["eval"]
            rows.append({"model": name, "method": method, "calibration_samples": j["calibration_samples"],
                         "eval_samples": e["samples"], "cosine_min": e["cosine_min"], "cosine_mean": e["cosine_mean"], "centered_cosine": e["centered_cosine"],
                         "top1_agree": e["top1_agree"], "top1_rows": e["top1_rows"],
                         "float_mb": j["input_file_bytes"] / 1e6, "int8_mb": j["output_file_bytes"] / 1e6,
                         "seconds": time.time() - t0, "out": out})
            if not a.json:
                x = rows[-1]
                print(f"{name:<14} {method:<10} calib {x['calibration_samples']:>3}  held-out {x['eval_samples']:>3}  "
                      f"cos min {x['cosine_min']:.5f} mean {x['cosine_mean']:.5f} centered {x['centered_cosine']:.5f}  top-1 {x['top1_agree']}/{x['top1_rows']}  "
                      f"{x['float_mb']:.1f} MB -> {x['int8_mb']:.1f} MB  ({x['seconds']:.0f} s)", flush=True)
    if a.json:
        print(json.dumps({"seed": a.seed, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
