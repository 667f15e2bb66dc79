#!/usr/bin/python3
"""Checks `opennpu profile`: the Chrome trace (parses, has the expected processes and tracks, every
complete event well formed, events of a track nest) and the HTML report (self-contained; rendered in
headless Chromium without console or page errors; table and charts present; names escaped).

  check_profile.py trace OPENNPU MODELS_DIR OUT_DIR
  check_profile.py html  OPENNPU MODELS_DIR OUT_DIR      (exit 77 = skipped: no Chromium)

Two models are profiled on ane_m1: models/small_cnn.onnx (exported by scripts/export_models.py; when it
is missing a tiny CNN is generated instead, so this test never depends on test order) and a generated
model with a CPU fallback node in the middle and node names that need HTML escaping.
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper

SKIP = 77
CHROMIUM = "/usr/bin/chromium"
# A node name with every character HTML cares about; must appear escaped, never raw.
NASTY = 'conv<b>&"quoted"\'x\''


def conv_block(nodes, inits, name, x, cin, cout, seed, act="Relu"):
    rng = np.random.default_rng(seed)
    w = helper.make_tensor(name + "_w", TensorProto.FLOAT, [cout, cin, 3, 3],
                           (rng.standard_normal((cout, cin, 3, 3)) * 0.2).astype(np.float32).ravel())
    b = helper.make_tensor(name + "_b", TensorProto.FLOAT, [cout], np.zeros(cout, np.float32))
    inits += [w, b]
    nodes.append(helper.make_node("Conv", [x, w.name, b.name], [name + "_y"], name=name, pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node(act, [name + "_y"], [name + "_a"], name=name + "_" + act.lower()))
    return name + "_a"


def head(nodes, inits, x, c, classes=10):
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"))
    w = helper.make_tensor("fc_w", TensorProto.FLOAT, [classes, c], np.full(classes * c, 0.01, np.float32))
    inits.append(w)
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w"], ["output"], name="fc", transB=1))


def save(nodes, inits, path, name):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    onnx.save(m, path)


def tiny_cnn(path):
    nodes, inits = [], []
    x = conv_block(nodes, inits, "conv1", "input", 3, 16, 1)
    nodes.append(helper.make_node("MaxPool", [x], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]))
    x = conv_block(nodes, inits, "conv2", "pool", 16, 32, 2)
    head(nodes, inits, x, 32)
    save(nodes, inits, path, "tiny_cnn")


def mixed(path):
    """NPU -> CPU (Floor is not an ane_m1 op) -> NPU, with a name that needs escaping."""
    nodes, inits = [], []
    x = conv_block(nodes, inits, NASTY, "input", 3, 8, 3)
    nodes.append(helper.make_node("Floor", [x], ["floored"], name="floor_on_cpu"))
    x = conv_block(nodes, inits, "conv2", "floored", 8, 16, 4, act="Sigmoid")
    head(nodes, inits, x, 16)
    save(nodes, inits, path, "mixed")


def models(models_dir, out_dir):
    small = os.path.join(models_dir, "small_cnn.onnx")
    if not os.path.exists(small):
        small = os.path.join(out_dir, "tiny_cnn.onnx")
        tiny_cnn(small)
    mix = os.path.join(out_dir, "mixed.onnx")
    mixed(mix)
    return [("small_cnn", small), ("mixed", mix)]


def profile(opennpu, model, out_dir, tag):
    trace, html = os.path.join(out_dir, tag + ".trace.json"), os.path.join(out_dir, tag + ".html")
    r = subprocess.run([opennpu, "profile", model, "--hw", "ane_m1", "--trace", trace, "--html", html, "--json"],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        sys.exit(f"FAIL: opennpu profile {model} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
    return json.loads(r.stdout), trace, html


class Failures:
    def __init__(self):
        self.n = 0

    def check(self, ok, what):
        if not ok:
            self.n += 1
            print("FAIL:", what)
        return ok


def check_trace(path, summary, tag, f):
    with open(path) as fh:
        doc = json.load(fh)  # must parse
    ev = doc["traceEvents"]
    procs, threads = {}, {}
    for e in ev:
        if e.get("ph") == "M" and e["name"] == "process_name":
            procs[e["pid"]] = e["args"]["name"]
        if e.get("ph") == "M" and e["name"] == "thread_name":
            threads[(e["pid"], e["tid"])] = e["args"]["name"]
    cores = summary["hardware"]["cores"]
    f.check("CPU" in procs.values(), f"{tag}: a process named CPU")
    for c in range(cores):
        pid = [p for p, n in procs.items() if n == f"NPU core {c}"]
        if not f.check(len(pid) == 1, f"{tag}: one process 'NPU core {c}'"):
            continue
        names = {threads.get((pid[0], t)) for (p, t) in threads if p == pid[0]}
        f.check({"MAC array", "vector unit", "DMA in", "DMA out"} <= names, f"{tag}: core {c} tracks, got {names}")
    f.check("layers" in threads.values(), f"{tag}: a 'layers' track")
    f.check("CPU" in threads.values(), f"{tag}: a 'CPU' track")

    xs = [e for e in ev if e.get("ph") == "X"]
    f.check(len(xs) > 0, f"{tag}: complete events")
    per_track = {}
    for e in xs:
        ok = all(k in e for k in ("name", "ts", "dur", "pid", "tid")) and e["ts"] >= 0 and e["dur"] >= 0
        if not f.check(ok, f"{tag}: well-formed event {e}"):
            continue
        if not f.check((e["pid"], e["tid"]) in threads, f"{tag}: event on an unnamed track {e['pid']}/{e['tid']}"):
            continue
        per_track.setdefault((e["pid"], e["tid"]), []).append(e)
    tasks = [e for e in xs if procs.get(e["pid"], "").startswith("NPU core")]
    f.check(len(tasks) == summary["tasks"], f"{tag}: {len(tasks)} task events, summary says {summary['tasks']}")
    for e in tasks:
        f.check(all(k in e["args"] for k in ("tile", "bytes", "macs", "cycles")), f"{tag}: task args {e['args']}")
    mac = [e for e in tasks if threads[(e["pid"], e["tid"])] == "MAC array"]
    f.check(len(mac) > 0, f"{tag}: events on a MAC array track")
    layer_events = [e for e in xs if threads[(e["pid"], e["tid"])].startswith("layers")]
    npu_layers = {e["args"]["layer"] for e in tasks}
    cpu_nodes = [e for e in xs if procs[e["pid"]] == "CPU" and not e["name"].startswith("CPU segment")]
    f.check(len(layer_events) == len(npu_layers) + len(cpu_nodes),
            f"{tag}: one layer event per NPU layer with tasks and per CPU node "
            f"({len(layer_events)} vs {len(npu_layers)} + {len(cpu_nodes)})")
    # Events on one track must nest or be disjoint, or trace viewers drop them.
    for key, es in per_track.items():
        es.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []
        for e in es:
            end = e["ts"] + e["dur"]
            while stack and stack[-1] <= e["ts"] + 1e-6:
                stack.pop()
            if stack and not f.check(end <= stack[-1] + 1e-6, f"{tag}: overlapping events on track {threads[key]}: {e['name']}"):
                break
            stack.append(end)
    # The timeline ends where the summary says (segments back to back).
    last = max(e["ts"] + e["dur"] for e in xs)
    f.check(abs(last / 1e3 - summary["timeline_ms"]) <= 1e-6 + 1e-6 * summary["timeline_ms"],
            f"{tag}: last event ends at {last / 1e3} ms, timeline {summary['timeline_ms']} ms")
    return {"cpu_events": len(cpu_nodes), "tasks": len(tasks)}


def png_size(path):
    with open(path, "rb") as fh:
        head = fh.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", head[16:24])


def chromium(args, url, timeout=180):
    profile_dir = tempfile.mkdtemp(prefix="opennpu-chromium-")
    try:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile_dir}", "--enable-logging=stderr", "--v=0"] + args + [url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile_dir, ignore_errors=True)


def check_html(path, tag, f, expect_cpu):
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    # Self-contained: nothing loaded from anywhere.
    f.check(not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", text, re.I), f"{tag}: no external src/href")
    f.check(not re.search(r"url\(|@import|<link\b|<iframe\b", text, re.I), f"{tag}: no url()/@import/<link>/<iframe>")
    f.check(NASTY not in text, f"{tag}: raw node names never reach the HTML")
    url = "file://" + os.path.abspath(path)
    png = os.path.splitext(path)[0] + ".png"
    if os.path.exists(png):
        os.remove(png)
    r = chromium([f"--screenshot={png}", "--window-size=1400,2000"], url)
    f.check(r.returncode == 0, f"{tag}: chromium screenshot exited {r.returncode}: {r.stderr[-2000:]}")
    console = [l for l in r.stderr.splitlines() if "CONSOLE" in l]
    f.check(not console, f"{tag}: console messages: {console}")
    size = png_size(png) if os.path.exists(png) else None
    f.check(size == (1400, 2000), f"{tag}: screenshot {png} is a 1400x2000 PNG (got {size})")
    f.check(os.path.exists(png) and os.path.getsize(png) > 30000, f"{tag}: screenshot is not blank (size)")
    r = chromium(["--dump-dom", "--window-size=1400,2000"], url)
    dom = r.stdout
    f.check(r.returncode == 0 and "<html" in dom, f"{tag}: chromium --dump-dom")
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    f.check(title and title.group(1).startswith("opennpu profile:"), f"{tag}: page title {title.group(1) if title else None!r}")
    f.check('<div id="errors" class="errors"></div>' in dom, f"{tag}: the page recorded no script error")
    for needle in ('<table id="layers"', '<svg id="timeline"', '<svg id="roofline"', '<table id="placement"', "<circle"):
        f.check(needle in dom, f"{tag}: DOM has {needle}")
    f.check(re.search(r'<g id="tl-axis"><line', dom) is not None, f"{tag}: the timeline script drew its axis")
    rows = len(re.findall(r"<tr>", dom.split('<table id="layers"')[1].split("</table>")[0])) if '<table id="layers"' in dom else 0
    f.check(rows > 0, f"{tag}: per-layer table has rows")
    if expect_cpu:
        f.check('class="k-cpu"' in dom, f"{tag}: CPU node drawn on the timeline")
        f.check("conv&lt;b&gt;&amp;" in dom, f"{tag}: escaped node name shown")
    print(f"{tag}: screenshot {png}")


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("trace", "html"):
        sys.exit(__doc__)
    mode, opennpu, models_dir, out_dir = sys.argv[1:]
    if mode == "html" and not os.access(CHROMIUM, os.X_OK):
        print(f"SKIP: {CHROMIUM} is not installed")
        return SKIP
    os.makedirs(out_dir, exist_ok=True)
    f = Failures()
    for tag, model in models(models_dir, out_dir):
        summary, trace, html = profile(opennpu, model, out_dir, tag)
        if mode == "trace":
            got = check_trace(trace, summary, tag, f)
            if tag == "mixed":
                f.check(summary["nodes_on_npu"] < summary["nodes"] and got["cpu_events"] >= 1,
                        f"{tag}: the Floor node falls back to the CPU and is timed")
                f.check(summary["segments"] == 3, f"{tag}: NPU, CPU, NPU segments (got {summary['segments']})")
        else:
            check_html(html, tag, f, expect_cpu=(tag == "mixed"))
    print(f"{'FAILED' if f.n else 'OK'}: {mode} checks, {f.n} failures")
    return 1 if f.n else 0


if __name__ == "__main__":
    sys.exit(main())
