#!/usr/bin/python3
"""opennpu's CPU backend vs ONNX Runtime (CPU execution provider) on the real-model test set.

For each model and thread count the two runtimes are run alternately, in separate child
processes, on the same seeded input (models/NAME.input.npy, given to both with --input):

  round k:  opennpu bench MODEL --device cpu --threads N --runs R --json   (median + load from its JSON)
            node ort-bench.js MODEL --threads N --runs R        (p50 + load from its JSON line)
  (odd rounds swap the order, so slow drift on the shared machine hits both sides alike)

Each child times R predictions after its first one and its warm-up runs, and reports their median;
the table shows the median of the per-round medians (rounds x R >= 20 predictions per side).
Load time is each child's model load: `cpu.load_ms` (Model::load with OPENNPU_CACHE_DIR=none, so
it is a real first load) and ORT's `load_ms` (InferenceSession.create, graph optimisation included).

Peak RSS is the child's ru_maxrss from os.wait4, the largest over the rounds: for opennpu the
`bench --device cpu` process (load + every prediction), for ORT the whole node process (node + ORT;
its base before the model load, ~52 MB, is shown too).

  /usr/bin/python3 bench/vs_ort.py [--opennpu build/release/opennpu] [--models a,b] [--threads 1,2]
                                   [--runs 20] [--rounds 3] [--json FILE] [--write]
  /usr/bin/python3 bench/vs_ort.py --from-json FILE [--write] [--repeats F2,F3]
      (re-render saved results; --repeats lists other runs' --json files in a "Repeat runs" section)
--write writes docs/performance.md. Needs node/npm; runs ../shared/tools/ort/setup.sh first.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORT_TOOLS = os.path.normpath(os.path.join(ROOT, "..", "shared", "tools", "ort"))
MODELS = {"resnet50": "input", "mobilenet_v2": "input", "bert_base": "input_ids", "lstm": "x"}
# What dominates each model's time, for the reading.
WHY = {
    "resnet50": "large 3x3 and 1x1 convolutions: oneDNN NHWC convs with fused bias/residual/Relu vs ORT's NCHWc MLAS convs",
    "mobilenet_v2": "depthwise and many small 1x1 convs with Clip: short layers, where thread wake-ups and per-op "
                    "overhead count",
    "bert_base": "dominated by 768x768 and 768x3072 MatMuls (pre-packed oneDNN matmul with fused bias/GELU)",
    "lstm": "sequential steps of small GEMMs and gate arithmetic, bound by reading the recurrent weights every step",
}
# Issue 6: on every model and thread count, latency <= 1.10x ORT, peak RSS <= 1.2x, load <= 1x.
GOAL_LATENCY, GOAL_RSS, GOAL_LOAD = 1.10, 1.2, 1.0


def spawn(cmd, env=None):
    """Runs cmd to completion; returns (stdout, peak RSS of that child in MB, wall seconds).
    os.wait4 gives the rusage of exactly this child (RUSAGE_CHILDREN would be the max over all)."""
    t = time.time()
    with open(os.devnull, "rb") as devnull:
        r_out, w_out = os.pipe()
        r_err, w_err = os.pipe()
        p = subprocess.Popen(cmd, stdin=devnull, stdout=w_out, stderr=w_err, env=env)
        os.close(w_out)
        os.close(w_err)
        out, err = _drain(r_out, r_err)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.time() - t
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{err[-2000:]}")
    return out, ru.ru_maxrss / 1024.0, wall  # ru_maxrss is in KiB on Linux


def _drain(r_out, r_err):
    """Reads both pipes to EOF without deadlocking (a child may fill either one)."""
    import selectors
    sel = selectors.DefaultSelector()
    bufs = {r_out: [], r_err: []}
    for fd in bufs:
        sel.register(fd, selectors.EVENT_READ)
    open_fds = set(bufs)
    while open_fds:
        for key, _ in sel.select():
            chunk = os.read(key.fd, 65536)
            if chunk:
                bufs[key.fd].append(chunk)
            else:
                sel.unregister(key.fd)
                os.close(key.fd)
                open_fds.discard(key.fd)
    return b"".join(bufs[r_out]).decode(), b"".join(bufs[r_err]).decode()


def last_json(text):
    """The JSON object in a child's stdout (opennpu prints it pretty, ORT as one line)."""
    start = text.find("{")
    end = text.rindex("}")
    return json.loads(text[start:end + 1])


def bench_pair(a, model, input_name, threads):
    onnx = os.path.join(a.models_dir, model + ".onnx")
    npy = os.path.join(a.models_dir, model + ".input.npy")
    env = dict(os.environ, OPENNPU_CACHE_DIR="none")
    ours_cmd = [a.opennpu, "bench", onnx, "--device", "cpu", "--threads", str(threads), "--runs", str(a.runs),
                "--warmup", str(a.warmup), "--input", f"{input_name}={npy}", "--json"]
    ort_cmd = ["node", os.path.join(ORT_TOOLS, "ort-bench.js"), onnx, "--threads", str(threads),
               "--runs", str(a.runs), "--warmup", str(a.warmup), "--input", f"{input_name}={npy}"]
    ours, ort = [], []
    for k in range(a.rounds):
        order = ["ours", "ort"] if k % 2 == 0 else ["ort", "ours"]
        for side in order:
            if side == "ours":
                out, rss, wall = spawn(ours_cmd, env)
                j = last_json(out)["cpu"]
                ours.append({"median_ms": j["median_ms"], "load_ms": j["load_ms"], "bench_rss_mb": rss})
            else:
                out, rss, wall = spawn(ort_cmd)
                j = last_json(out)
                ort.append({"median_ms": j["p50_ms"], "load_ms": j["load_ms"], "rss_mb": rss,
                            "base_rss_mb": j["base_rss_mb"], "version": j.get("ort_version")})
        print(f"  {model:13} t={threads} round {k + 1}/{a.rounds}: opennpu {ours[-1]['median_ms']:9.2f} ms  "
              f"ORT {ort[-1]['median_ms']:9.2f} ms", file=sys.stderr, flush=True)
    # opennpu's peak RSS: its `bench --device cpu` children (load + all predictions), like ORT's.
    our_rss = max(r["bench_rss_mb"] for r in ours)
    med = lambda rows, k: statistics.median(r[k] for r in rows)
    return {
        "model": model, "threads": threads, "rounds": a.rounds, "runs": a.runs,
        "ours_ms": med(ours, "median_ms"), "ort_ms": med(ort, "median_ms"),
        "ours_ms_rounds": [r["median_ms"] for r in ours], "ort_ms_rounds": [r["median_ms"] for r in ort],
        "ours_load_ms": med(ours, "load_ms"), "ort_load_ms": med(ort, "load_ms"),
        "ours_rss_mb": our_rss, "ours_bench_rss_mb": max(r["bench_rss_mb"] for r in ours),
        "ort_rss_mb": max(r["rss_mb"] for r in ort), "ort_base_rss_mb": ort[0]["base_rss_mb"],
        "ort_version": ort[0]["version"],
    }


def spread(v):
    """Relative spread of the per-round medians, (max - min) / median, as a noise indicator."""
    m = statistics.median(v)
    return (max(v) - min(v)) / m if m > 0 else 0.0


def table(rows):
    head = (f"{'model':13} {'thr':>3} | {'opennpu ms':>10} {'ORT ms':>9} {'ratio':>6} {'noise':>6} | "
            f"{'load ms':>8} {'ORT':>8} {'ratio':>6} | {'RSS MB':>7} {'ORT':>7} {'ratio':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        noise = max(spread(r["ours_ms_rounds"]), spread(r["ort_ms_rounds"]))
        lines.append(f"{r['model']:13} {r['threads']:>3} | {r['ours_ms']:10.2f} {r['ort_ms']:9.2f} "
                     f"{r['ours_ms'] / r['ort_ms']:6.2f} {100 * noise:5.0f}% | {r['ours_load_ms']:8.1f} "
                     f"{r['ort_load_ms']:8.1f} {r['ours_load_ms'] / r['ort_load_ms']:6.2f} | {r['ours_rss_mb']:7.1f} "
                     f"{r['ort_rss_mb']:7.1f} {r['ours_rss_mb'] / r['ort_rss_mb']:6.2f}")
    return "\n".join(lines)


def goal_lines(rows):
    """(model, threads, latency ratio, rss ratio, load ratio, all three within the issue-6 limits)."""
    out = []
    for r in rows:
        lat, rss, load = r["ours_ms"] / r["ort_ms"], r["ours_rss_mb"] / r["ort_rss_mb"], r["ours_load_ms"] / r["ort_load_ms"]
        out.append((r["model"], r["threads"], lat, rss, load, lat <= GOAL_LATENCY and rss <= GOAL_RSS and load <= GOAL_LOAD))
    return out


def machine():
    info = {"model_name": "unknown", "cpus": os.cpu_count()}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            k, _, v = line.partition(":")
            k, v = k.strip(), v.strip()
            if k == "Model name":
                info["model_name"] = v
            elif k == "CPU(s)":
                info["cpus"] = int(v)
            elif k == "Core(s) per socket":
                info["cores_per_socket"] = v
            elif k == "Thread(s) per core":
                info["threads_per_core"] = v
            elif k == "Hypervisor vendor":
                info["hypervisor"] = v
    except OSError:
        pass
    return info


def write_doc(a, rows, mach, load_before, load_after, started, seconds):
    ortv = rows[0]["ort_version"] if rows else "?"
    goals = goal_lines(rows)
    L = []
    L.append("# Performance: opennpu CPU backend vs ONNX Runtime\n")
    L.append(f"Generated by `bench/vs_ort.py --write` on {started:%Y-%m-%d %H:%M} UTC in {seconds / 60:.1f} min. "
             "Do not edit the numbers by hand; rerun the script.\n")
    L.append("## Machine\n")
    hv = f", virtualised ({mach['hypervisor']})" if mach.get("hypervisor") else ""
    L.append(f"- CPU: {mach['model_name']}, {mach['cpus']} CPUs ({mach.get('cores_per_socket', '?')} cores per socket, "
             f"{mach.get('threads_per_core', '?')} thread(s) per core){hv}")
    L.append(f"- Load average (1/5/15 min) before the run: {load_before}; after: {load_after}. The machine is "
             "shared with other jobs (builds and tests of other parts of the project ran at the same time), so "
             "absolute numbers are noisy; the two runtimes were run alternately so that the *ratios* are "
             "affected about equally.")
    L.append(f"- opennpu: release build `{os.path.relpath(a.opennpu, ROOT)}` (CPU fast path: oneDNN convs/matmuls, "
             f"own LSTM/GRU, fused ops, pooled buffers); ONNX Runtime {ortv} CPU execution provider via `onnxruntime-node` "
             "(intra-op threads = N, inter-op 1, sequential, graph optimisation level `all`).\n")
    L.append("## Method\n")
    L.append(f"For each model and thread count N: {a.rounds} round{'s' if a.rounds > 1 else ''}, each running `opennpu bench MODEL --device cpu --threads N "
             f"--runs {a.runs} --warmup {a.warmup} --json` and `node ort-bench.js MODEL --threads N --runs {a.runs} "
             f"--warmup {a.warmup}` one after the other (the order alternates between rounds), both on the same "
             "input file `models/NAME.input.npy`. Latency = median over the rounds of each child's median of "
             f"{a.runs} timed predictions (after the first prediction and {a.warmup} warm-up runs), so each side "
             f"has {a.rounds * a.runs} timed predictions. Load = model load in the child (opennpu `cpu.load_ms` "
             "with `OPENNPU_CACHE_DIR=none`; ORT `InferenceSession.create`, which includes its graph optimiser). "
             "Peak RSS = the child's `ru_maxrss` (largest over the rounds): for opennpu the `bench --device cpu` "
             "process (load + all predictions), for ORT the whole node process (node + ORT alone take "
             f"~{rows[0]['ort_base_rss_mb']:.0f} MB before the model is loaded). "
             "*noise* = the larger relative spread (max - min) / median of the per-round medians of the two "
             "sides. Ratios are opennpu / ORT: above 1 means opennpu is slower / bigger.\n")
    L.append("## Results\n")
    L.append("| model | threads | opennpu ms | ORT ms | latency ratio | noise | opennpu load ms | ORT load ms | "
             "load ratio | opennpu RSS MB | ORT RSS MB | RSS ratio |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        noise = max(spread(r["ours_ms_rounds"]), spread(r["ort_ms_rounds"]))
        L.append(f"| {r['model']} | {r['threads']} | {r['ours_ms']:.2f} | {r['ort_ms']:.2f} | "
                 f"**{r['ours_ms'] / r['ort_ms']:.2f}** | {100 * noise:.0f}% | {r['ours_load_ms']:.1f} | "
                 f"{r['ort_load_ms']:.1f} | {r['ours_load_ms'] / r['ort_load_ms']:.2f} | {r['ours_rss_mb']:.1f} | "
                 f"{r['ort_rss_mb']:.1f} | {r['ours_rss_mb'] / r['ort_rss_mb']:.2f} |")
    L.append("")
    L.append("Per-round medians (ms), opennpu / ORT:\n")
    for r in rows:
        L.append(f"- {r['model']} t={r['threads']}: "
                 f"{', '.join(f'{x:.2f}' for x in r['ours_ms_rounds'])} / {', '.join(f'{x:.2f}' for x in r['ort_ms_rounds'])}")
    L.append("")
    L.append(f"## Issue 6: latency <= {GOAL_LATENCY:.2f}x, peak RSS <= {GOAL_RSS:.1f}x, load <= {GOAL_LOAD:.1f}x ONNX Runtime\n")
    goals = goal_lines(rows)
    verdict = "holds" if goals and all(g[5] for g in goals) else "does NOT hold"
    L.append(f"On this run the requirement **{verdict}**:\n")
    for m, t, lat, rss, load, ok in goals:
        L.append(f"- {m}, {t} thread{'s' if t > 1 else ''}: latency {lat:.2f}x, RSS {rss:.2f}x, load {load:.2f}x "
                 f"-> {'ok' if ok else '**over a limit**'}")
    L.append("")
    L.append("## Reading\n")
    L.append(reading(rows))
    L.append("")
    if getattr(a, "repeats", None):
        L.append("## Repeat runs\n")
        L.append("Other runs of the same binary and command (`--json` files given with `--repeats`), to show how "
                 "far the ratios move between runs on this shared machine. Latency ratio (noise) per model and "
                 "thread count, and whether all of the issue's limits held in that run:\n")
        L.append("| run (UTC) | load before -> after | " + " | ".join(f"{r['model']} t={r['threads']}" for r in rows) +
                 " | all limits |")
        L.append("|---|---|" + "---:|" * len(rows) + "---|")
        for path in a.repeats.split(","):
            with open(path) as f:
                rr = json.load(f)
            by = {(r["model"], r["threads"]): r for r in rr["rows"]}
            cells = []
            for r in rows:
                x = by.get((r["model"], r["threads"]))
                if not x:
                    cells.append("-")
                    continue
                noise = max(spread(x["ours_ms_rounds"]), spread(x["ort_ms_rounds"]))
                cells.append(f"{x['ours_ms'] / x['ort_ms']:.2f} ({100 * noise:.0f}%)")
            g = goal_lines(rr["rows"])
            ok = "holds" if g and all(x[5] for x in g) else "**does not hold**"
            L.append(f"| {rr['started'][:16].replace('T', ' ')} | {rr['load_before'].split()[0]} -> "
                     f"{rr['load_after'].split()[0]} | " + " | ".join(cells) + f" | {ok} |")
        L.append("")
    L.append("Reproduce: `bash ../shared/tools/ort/setup.sh && /usr/bin/python3 bench/vs_ort.py "
             "--opennpu build/release/opennpu --write` (models from `scripts/export_models.py`).\n")
    path = os.path.join(ROOT, "docs", "performance.md")
    with open(path, "w") as f:
        f.write("\n".join(L))
    print(f"wrote {path}", file=sys.stderr)


def reading(rows):
    """The reading: ratios and thread scaling computed from this run, plus what the backend is."""
    by = {(r["model"], r["threads"]): r for r in rows}
    parts = []
    for r in rows:
        lat = r["ours_ms"] / r["ort_ms"]
        parts.append(f"{r['model']} t={r['threads']}: {lat:.1f}x latency")
    out = ["- Latency ratios: " + "; ".join(parts) + "."]
    scal = []
    for m in MODELS:
        if (m, 1) in by and (m, 2) in by:
            s_ours = by[(m, 1)]["ours_ms"] / by[(m, 2)]["ours_ms"]
            s_ort = by[(m, 1)]["ort_ms"] / by[(m, 2)]["ort_ms"]
            scal.append(f"{m} {s_ours:.2f}x (ORT {s_ort:.2f}x)")
    if scal:
        out.append("- Speed-up from 1 to 2 threads (1-thread time / 2-thread time): " + "; ".join(scal) + ".")
        slower = [m for m in MODELS if (m, 1) in by and (m, 2) in by and
                  (by[(m, 2)]["ours_ms"] > by[(m, 1)]["ours_ms"] or by[(m, 2)]["ort_ms"] > by[(m, 1)]["ort_ms"])]
        if slower:
            out.append(f"- **The 2-thread rows of this run are not trustworthy as absolute numbers**: for {', '.join(slower)} "
                       "at least one runtime was *slower* with 2 threads than with 1, which only happens when the two "
                       "CPUs are oversubscribed by other jobs (see the load average above: a second thread then waits "
                       "for a CPU, and both runtimes synchronise their threads per op). Both runtimes suffered "
                       "(alternating rounds), so the 2-thread ratios are indicative at best; the 1-thread rows are "
                       "the ones to read.")
        else:
            out.append("- On a 2-CPU machine shared with other jobs the 2-thread numbers are the noisiest: a second "
                       "busy thread competes with whatever else runs.")
    out.append("- The CPU backend's fast path (docs/architecture.md, src/cpu/fast/): CPU-private graph passes fuse "
               "Conv + bias + residual Add + Relu/Clip (FusedConv) and switch runs of convs and pools to NHWC; "
               "MatMul + bias (+ GELU) become FusedMatMul and the decomposed LayerNorm one op. Convs and matmuls run "
               "on oneDNN primitives created once, with weights re-laid-out or pre-packed at load, split over "
               "opennpu's own threads (exactly --threads N); 3x3 stride-1 convs with >= 32 channels run as Winograd "
               "convolutions; mobilenet's large 1x1 -> depthwise -> 1x1 blocks (and its stem) are computed band by "
               "band in L2 (FusedConvDw); LSTM/GRU/RNN use packed weights and vectorised gates, with the input "
               "projection fused into the recurrence on one thread and a team of threads per step on two; "
               "Softmax/LayerNorm/elementwise ops are vectorised (AVX-512/AVX2 chosen at run time). Intermediate buffers come from a pool recycled by liveness (no buffer allocation after "
               "the first prediction), and elementwise ops write into dying inputs. ORT runs its full optimiser at "
               "level `all` on its MLAS kernels.")
    worst = sorted(MODELS, key=lambda m: -statistics.mean([r["ours_ms"] / r["ort_ms"] for r in rows if r["model"] == m] or [0]))
    worst = [m for m in worst if any(r["model"] == m for r in rows)]
    if len(worst) > 1:
        out.append(f"- Largest gap on this run: {worst[0]} ({WHY[worst[0]]}); smallest: {worst[-1]} ({WHY[worst[-1]]}).")
    out.append("- Load time: opennpu's load includes parsing, shape inference and constant folding; ORT's "
               "`InferenceSession.create` includes its optimiser and weight pre-packing.")
    bigger = [r["model"] for r in rows if r["ours_rss_mb"] > r["ort_rss_mb"]]
    if bigger:
        out.append(f"- opennpu's peak RSS is above ORT's (node included) on {', '.join(sorted(set(bigger)))}; not "
                   "explained by this run.")
    out.append("- Peak RSS: ORT's number includes node itself (~52 MB before the model is loaded), which "
               "flatters opennpu's ratio on small models.")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--opennpu", default=os.path.join(ROOT, "build", "release", "opennpu"))
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated (" + ", ".join(MODELS) + ")")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--runs", type=int, default=20, help="timed predictions per child (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed predictions per child after the first (default 3)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating opennpu/ORT rounds per row (default 3)")
    ap.add_argument("--models-dir", default=os.path.join(ROOT, "models"))
    ap.add_argument("--json", help="also write the raw results to this file")
    ap.add_argument("--write", action="store_true", help="write docs/performance.md")
    ap.add_argument("--from-json", help="do not measure: print (and with --write, document) a --json file's results")
    ap.add_argument("--repeats", help="with --write: comma-separated --json files of other runs of the same binary, "
                                      "listed in the doc's 'Repeat runs' section")
    a = ap.parse_args()
    if a.from_json:
        with open(a.from_json) as f:
            saved = json.load(f)
        for k, v in saved["args"].items():
            if k != "repeats":
                setattr(a, k, v)
        report(a, saved["rows"], saved["machine"], saved["load_before"], saved["load_after"],
               datetime.datetime.fromisoformat(saved["started"]), saved["seconds"])
        return 0
    a.opennpu = os.path.abspath(a.opennpu)
    models = [m for m in a.models.split(",") if m]
    for m in models:
        if m not in MODELS:
            ap.error(f"unknown model '{m}' (known: {', '.join(MODELS)})")
    threads = [int(t) for t in a.threads.split(",") if t]
    if a.runs < 1 or a.rounds < 1 or any(t < 1 for t in threads):
        ap.error("--runs, --rounds and --threads must be at least 1")
    if a.runs * a.rounds < 20:
        print(f"warning: {a.runs * a.rounds} timed predictions per side (< 20)", file=sys.stderr)
    if not os.access(a.opennpu, os.X_OK):
        ap.error(f"no opennpu binary at {a.opennpu} (build it or pass --opennpu)")
    missing = [m for m in models if not all(os.path.exists(os.path.join(a.models_dir, m + s))
                                            for s in (".onnx", ".input.npy"))]
    if missing:
        subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "scripts", "export_models.py"), "--only",
                        ",".join(missing), "--out", a.models_dir], check=True)
    subprocess.run(["bash", os.path.join(ORT_TOOLS, "setup.sh")], check=True, stdout=subprocess.DEVNULL)

    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.time()
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = []
    for m in models:
        for t in threads:
            rows.append(bench_pair(a, m, MODELS[m], t))
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    seconds = time.time() - t0

    mach = machine()
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": mach, "started": started.isoformat(), "seconds": seconds, "load_before": load_before,
                       "load_after": load_after, "rows": rows,
                       "args": {k: getattr(a, k) for k in ("opennpu", "runs", "warmup", "rounds")}}, f, indent=1)
    report(a, rows, mach, load_before, load_after, started, seconds)
    return 0


def report(a, rows, mach, load_before, load_after, started, seconds):
    print(table(rows))
    print("\nratios are opennpu / ONNX Runtime; latency = median of per-round medians; noise = spread of the round "
          "medians; RSS: opennpu `bench --device cpu` child vs the whole node process")
    for m, t, lat, rss, load, ok in goal_lines(rows):
        print(f"issue 6 {m} t={t}: latency {lat:.2f}x (<= {GOAL_LATENCY}), RSS {rss:.2f}x (<= {GOAL_RSS}), "
              f"load {load:.2f}x (<= {GOAL_LOAD}) -> {'HOLDS' if ok else 'FAILS'}")
    print(f"load average before {load_before}, after {load_after}; {seconds / 60:.1f} min")
    if a.write:
        write_doc(a, rows, mach, load_before, load_after, started, seconds)


if __name__ == "__main__":
    sys.exit(main())
