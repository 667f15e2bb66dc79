#!/usr/bin/python3
"""FP16 vs INT8 (W8A8) on the simulated engines: latency, energy, DRAM traffic, and a bit-exactness
check of the INT8 outputs against the CPU reference kernels.

    bench/npu_int8.py [--opennpu build/release/opennpu] [--models models] [--calib-random 32]
                      [--presets ane_a17pro,ane_m4,ane_m1] [--json]

For resnet50 and mobilenet_v2: `opennpu quantize MODEL --calib-random N` (seeded), then per preset
`opennpu run --hw P --json` on the fp32 model (the FP16 path) and on the quantized model (the INT8
path on engines with INT8 MACs, FP16 after dequantization elsewhere), both from the same seeded
input; the quantized model's outputs on the NPU are compared bit for bit with `opennpu run` on the
CPU. Every figure is the simulator's; ratios are INT8 speed-ups over FP16 on the same preset.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr}")
    return p.stdout


def outputs(d):
    return {f: np.load(os.path.join(d, f)) for f in sorted(os.listdir(d))}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--opennpu", default=os.path.join(here, "..", "build", "release", "opennpu"))
    ap.add_argument("--models", default=os.path.join(here, "..", "models"))
    ap.add_argument("--calib-random", type=int, default=32)
    ap.add_argument("--presets", default="ane_a17pro,ane_m4,ane_m1")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("resnet50", "mobilenet_v2"):
            fp32 = os.path.join(a.models, name + ".onnx")
            inp = os.path.join(a.models, name + ".input.npy")
            if not os.path.exists(fp32):
                sys.exit(f"{fp32} is missing: run scripts/export_models.py")
            q = os.path.join(tmp, name + ".int8.onnx")
            run([a.opennpu, "quantize", fp32, "--out", q, "--calib-random", str(a.calib_random)])
            feeds = ["--input", f"input={inp}"]
            ref_dir = os.path.join(tmp, name + ".cpu")
            run([a.opennpu, "run", q, *feeds, "--output-dir", ref_dir])
            ref = outputs(ref_dir)
            for hw in a.presets.split(","):
                f = json.loads(run([a.opennpu, "run", fp32, *feeds, "--hw", hw, "--json"]))["npu"]
                out_dir = os.path.join(tmp, f"{name}.{hw}")
                i = json.loads(run([a.opennpu, "run", q, *feeds, "--hw", hw, "--device", "npu", "--json",
                                    "--output-dir", out_dir]))["npu"]
                got = outputs(out_dir)
                exact = all(k in got and got[k].dtype == v.dtype and got[k].tobytes() == v.tobytes() for k, v in ref.items())
                rows.append({
                    "model": name, "hardware": hw,
                    "fp16_ms": f["latency_ms"], "int8_ms": i["latency_ms"], "speedup": f["latency_ms"] / i["latency_ms"],
                    "fp16_npu_ms": f["npu_ms"], "int8_npu_ms": i["npu_ms"],
                    "fp16_mj": f["energy_mj"], "int8_mj": i["energy_mj"],
                    "fp16_dram_mb": f["dram_mb"], "int8_dram_mb": i["dram_mb"],
                    "int8_mac_utilization_vs_fp16_peak": i["mac_utilization"],
                    "int8_bit_identical_to_cpu": exact,
                })
    if a.json:
        print(json.dumps({"calib_random": a.calib_random, "rows": rows}, indent=2))
        return 0
    print(f"{'model':<13} {'hardware':<11} {'fp16 ms':>8} {'int8 ms':>8} {'speedup':>7} {'fp16 mJ':>8} {'int8 mJ':>8} "
          f"{'fp16 DRAM MB':>12} {'int8 DRAM MB':>12}  int8 == CPU")
    for r in rows:
        print(f"{r['model']:<13} {r['hardware']:<11} {r['fp16_ms']:>8.3f} {r['int8_ms']:>8.3f} {r['speedup']:>6.2f}x "
              f"{r['fp16_mj']:>8.3f} {r['int8_mj']:>8.3f} {r['fp16_dram_mb']:>12.1f} {r['int8_dram_mb']:>12.1f}  "
              f"{'bit-identical' if r['int8_bit_identical_to_cpu'] else 'DIFFERENT'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
