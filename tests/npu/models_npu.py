#!/usr/bin/python3
"""Model-level NPU checks: the simulated engine against the CPU reference on the exported models.

    models_npu.py OPENNPU MODELS_DIR NAME

For each preset chosen for NAME: `opennpu run --hw PRESET` (the FP16 functional simulator, with
CPU fallback) against `opennpu run` (CPU, fp32) on the model's seeded input: every output's cosine
similarity >= 0.999 and, for the classifiers, the same top-1 class; and `opennpu plan --json`:
every node placed on the CPU must say why (non-empty reason).
lstm: on ane_m1 the LSTM stays on the CPU with a reason about recurrent layers; on systolic_32x32
(which declares recurrent layers) it runs on the NPU (lowered to an input-projection GEMM plus
per-step recurrence GEMMs and LUT gate arithmetic).
Exit 0 = pass, 1 = fail, 77 = skip (models not exported: run scripts/export_models.py).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ANE = ["ane_a12", "ane_a13", "ane_a15", "ane_a16", "ane_a17pro", "ane_m1", "ane_m4"]
# Presets per model (bert_base and resnet50 on a few to keep CI time sane).
PRESETS = {
    "small_cnn": ANE,
    "mobilenet_v2": ANE,
    "resnet50": ["ane_a13", "ane_m1", "ane_a17pro"],
    "bert_base": ["ane_m1", "ane_a15"],
    "lstm": ["ane_m1", "systolic_32x32"],
}
CLASSIFIERS = {"small_cnn", "mobilenet_v2", "resnet50"}
MIN_COSINE = 0.999

passed = failed = 0


def check(ok, msg):
    global passed, failed
    if ok:
        passed += 1
        print(f"  ok    {msg}")
    else:
        failed += 1
        print(f"  FAIL  {msg}")


def run(cmd):
    t0 = time.time()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr}")
    return p.stdout, time.time() - t0


def cosine(a, b):
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    return float(a @ b / (na * nb)) if na and nb else 0.0


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    opennpu, models, name = sys.argv[1:]
    model = os.path.join(models, name + ".onnx")
    inp = os.path.join(models, name + ".input.npy")
    for f in (model, inp):
        if not os.path.exists(f):
            print(f"SKIP: {f} is missing; export the models first: /usr/bin/python3 scripts/export_models.py")
            return 77
    info = json.loads(run([opennpu, "info", model, "--json"])[0])
    input_name = info["inputs"][0]["name"]
    with tempfile.TemporaryDirectory() as tmp:
        cpu_dir = os.path.join(tmp, "cpu")
        _, t = run([opennpu, "run", model, "--input", f"{input_name}={inp}", "-o", cpu_dir, "--threads", "2"])
        print(f"{name}: CPU run {t:.1f} s")
        outs = sorted(f for f in os.listdir(cpu_dir) if f.endswith(".npy"))
        for hw in PRESETS[name]:
            print(f"{name} on {hw}:")
            d = os.path.join(tmp, hw)
            try:
                out, t = run([opennpu, "run", model, "--input", f"{input_name}={inp}", "--hw", hw, "-o", d,
                              "--threads", "2", "--json"])
            except RuntimeError as e:
                check(False, f"opennpu run --hw {hw}: {e}")
                continue
            summary = json.loads(out).get("npu", {})
            print(f"  NPU functional run {t:.1f} s; simulated {summary.get('latency_ms', 0):.3f} ms, "
                  f"{summary.get('nodes_on_npu')}/{summary.get('nodes')} nodes on the NPU")
            for o in outs:
                ref = np.load(os.path.join(cpu_dir, o))
                got = np.load(os.path.join(d, o))
                check(got.shape == ref.shape, f"{o}: shape {got.shape} == CPU {ref.shape}")
                if got.shape != ref.shape:
                    continue
                check(np.isfinite(got).all(), f"{o}: all finite")
                c = cosine(got, ref)
                check(c >= MIN_COSINE, f"{o}: cosine vs CPU fp32 {c:.6f} >= {MIN_COSINE}")
                if name in CLASSIFIERS:
                    g1 = got.reshape(got.shape[0], -1).argmax(axis=1)
                    r1 = ref.reshape(ref.shape[0], -1).argmax(axis=1)
                    check((g1 == r1).all(), f"{o}: top-1 {g1.tolist()} == CPU {r1.tolist()}")
            plan = json.loads(run([opennpu, "plan", model, "--hw", hw, "--json"])[0])
            nodes = plan["nodes"]
            on_cpu = [n for n in nodes if n["device"] != "npu"]
            unexplained = [n["node"] for n in on_cpu if not n.get("reason")]
            check(not unexplained, f"plan: {len(nodes) - len(on_cpu)}/{len(nodes)} nodes on the NPU; every CPU node "
                                   f"has a reason (unexplained: {unexplained[:5]})")
            if on_cpu:
                reasons = {}
                for n in on_cpu:
                    reasons.setdefault(n["op"], n["reason"])
                for op, r in sorted(reasons.items()):
                    print(f"    cpu: {op}: {r}")
            if name == "lstm":
                lstm = [n for n in nodes if n["op"] == "LSTM"]
                check(bool(lstm), "plan lists the LSTM node(s)")
                if hw == "ane_m1":
                    check(all(n["device"] == "cpu" and "recurrent" in n["reason"].lower() for n in lstm),
                          "LSTM on the CPU with a reason about recurrent layers")
                elif hw == "systolic_32x32":
                    # systolic_32x32 declares recurrent layers: the LSTM must run on its NPU (the
                    # cosine check above covers its values).
                    check(all(n["device"] == "npu" for n in lstm), "LSTM runs on the NPU of systolic_32x32")
    print(f"{name}: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
