#!/usr/bin/python3
"""Checks `opennpu explore` and `python3 -m opennpu.explore` on a small generated sweep.

  check_explore.py MODE OPENNPU PYTHONPATH WORK_DIR
  MODE: badfiles  bad sweep files fail with one clear error naming file:line
        reuse     rows with compile reuse equal rows compiling every point anew; --jobs 1 == --jobs 2
        resume    kill a sweep after some rows, rerun: only the missing rows run, results equal an
                  uninterrupted run
        dask      python3 -m opennpu.explore on a local Dask cluster with 2 workers gives the same
                  results.csv and pareto.csv as the CLI (exit 77 = skipped: dask not installed)
        html      --plot writes PNG/SVG and an HTML page that renders in headless Chromium without
                  errors (exit 77 = skipped: no Chromium or matplotlib)

The models are generated here (two tiny CNNs), so the test does not depend on models/.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper

SKIP = 77
CHROMIUM = "/usr/bin/chromium"


class Failures:
    def __init__(self):
        self.n = 0

    def check(self, ok, what):
        if not ok:
            self.n += 1
            print("FAIL:", what)


def cnn(path, seed, chans):
    rng = np.random.default_rng(seed)
    nodes, inits, x, cin = [], [], "input", 3
    for i, c in enumerate(chans):
        w = helper.make_tensor(f"w{i}", TensorProto.FLOAT, [c, cin, 3, 3],
                               (rng.standard_normal((c, cin, 3, 3)) * 0.2).astype(np.float32).ravel())
        inits.append(w)
        nodes.append(helper.make_node("Conv", [x, w.name], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        x, cin = f"r{i}", c
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"))
    fc = helper.make_tensor("fc", TensorProto.FLOAT, [10, cin], (rng.standard_normal(10 * cin) * 0.1).astype(np.float32))
    inits.append(fc)
    nodes.append(helper.make_node("Gemm", ["flat", "fc"], ["output"], name="fc", transB=1))
    g = helper.make_graph(nodes, os.path.basename(path), [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    onnx.save(m, path)


SWEEP = """[sweep]
name = "small"
base = "ane_m1"
models = ["net_a", "net_b"]
models_dir = "models"

[axes]
cores = [1, 2, 4]
mac_size = [8, 16]
sram_bytes = {{ from = 65536, to = 262144, times = 4 }}
dram_gbps = {{ from = 10, to = 30, step = 10 }}
clock_ghz = [1.0, 2.0]
{extra}
[constraints]
max_total_macs = 512
"""


def setup(work):
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "models"))
    cnn(os.path.join(work, "models", "net_a.onnx"), 1, [8, 16])
    cnn(os.path.join(work, "models", "net_b.onnx"), 2, [16, 32, 32])
    path = os.path.join(work, "small.toml")
    with open(path, "w") as f:
        f.write(SWEEP.format(extra=""))
    return path


def run(cmd, env=None, check=True):
    e = dict(os.environ)
    e.update(env or {})
    preload = os.environ.get("OPENNPU_PYTHON_PRELOAD")
    if preload and cmd[0] == "/usr/bin/python3":  # ASan build: the module needs the runtime first
        e["LD_PRELOAD"] = preload
        e["ASAN_OPTIONS"] = e.get("ASAN_OPTIONS", "") + ":detect_leaks=0"  # the interpreter's own
    r = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=900)
    if check and r.returncode != 0:
        print("command failed:", " ".join(cmd), "\n", r.stdout[-3000:], r.stderr[-3000:])
        sys.exit(1)
    return r


def explore(opennpu, sweep, out, *extra, env=None):
    r = run([opennpu, "explore", sweep, "--out", out, "--json", *extra], env=env)
    return json.loads(r.stdout)


def read(path):
    with open(path) as f:
        return f.read()


def rows_of(path):
    return read(path).splitlines()


# ---------------------------------------------------------------------------------------------
def mode_badfiles(opennpu, pythonpath, work, f):
    setup(work)
    base_head = '[sweep]\nname = "bad"\nbase = "ane_m1"\nmodels = ["net_a"]\nmodels_dir = "models"\n'
    # (name, text, expected line, regex the message must match)
    cases = [
        ("unknown_axis", base_head + "[axes]\ncores = [1, 2]\ncorez = [4]\n", 8, r"unknown axis 'corez'"),
        ("empty_range", base_head + "[axes]\ndram_gbps = { from = 50, to = 10, step = 5 }\n", 7, r"empty range"),
        ("empty_list", base_head + "[axes]\ncores = []\n", 7, r"axis 'cores' is empty"),
        ("wrong_type", base_head + "[axes]\ncores = [\"four\"]\n", 7, r"axis 'cores'.*(integer|number)"),
        ("float_for_int", base_head + "[axes]\nmac_rows = [16.5]\n", 7, r"takes integers"),
        ("bad_string_value", base_head + "[axes]\ndataflow = [\"ws\", \"xs\"]\n", 7, r"unknown value \"xs\""),
        ("contradictory", base_head + "[constraints]\nmin_total_macs = 4096\nmax_total_macs = 1024\n", 7,
         r"contradictory constraints"),
        ("no_point_left", base_head + "[axes]\ncores = [1, 2]\n[constraints]\nmax_total_macs = 10\n", 9,
         r"constraints leave no design point"),
        ("missing_model", base_head.replace("net_a", "net_zz"), 4, r"net_zz.*does not exist"),
        ("unknown_key", base_head + "[axes]\ncores = [1]\n[constraint]\nx = 1\n", 8, r"unknown key 'constraint'"),
        ("area_no_source", base_head + "[area]\nmm2_per_mac_fp16 = { value = 0.001 }\n", 7, r"needs both 'value' and 'source'"),
        ("step_and_times", base_head + "[axes]\ncores = { from = 1, to = 8, step = 1, times = 2 }\n", 7, r"exactly one of"),
        ("syntax", base_head + "[axes]\ncores = [1, 2\n", 7, r"TOML syntax error"),
        ("invalid_design", base_head + "[axes]\nsram_bytes = [0, 65536]\n", 7, r"sram_bytes.*between"),
        ("bad_base", base_head.replace('"ane_m1"', '"ane_m99"'), 3, r"unknown hardware preset"),
    ]
    for name, text, line, pattern in cases:
        path = os.path.join(work, f"bad_{name}.toml")
        with open(path, "w") as fh:
            fh.write(text)
        r = run([opennpu, "explore", path, "--out", os.path.join(work, "out_" + name)], check=False)
        err = r.stderr.strip()
        f.check(r.returncode == 1, f"{name}: exit code {r.returncode} (want 1); stderr {err!r}")
        f.check(len(err.splitlines()) == 1 or name == "no_point_left", f"{name}: one error line, got {err!r}")
        f.check(f"{path}:{line}:" in err, f"{name}: message names {path}:{line}: {err!r}")
        f.check(re.search(pattern, err) is not None, f"{name}: message matches /{pattern}/: {err!r}")
        f.check("terminate" not in err and "Aborted" not in err, f"{name}: no crash")
    # The Python entry point reports the same error, also exit 1.
    r = run(["/usr/bin/python3", "-m", "opennpu.explore", os.path.join(work, "bad_unknown_axis.toml"), "--out",
             os.path.join(work, "out_py")], env={"PYTHONPATH": pythonpath}, check=False)
    f.check(r.returncode == 1 and "bad_unknown_axis.toml:8:" in r.stderr and "unknown axis 'corez'" in r.stderr,
            f"python entry point: exit {r.returncode}, stderr {r.stderr[-500:]!r}")


def mode_reuse(opennpu, pythonpath, work, f):
    sweep = setup(work)
    a = explore(opennpu, sweep, os.path.join(work, "reuse"), "--jobs", "1")
    b = explore(opennpu, sweep, os.path.join(work, "noreuse"), "--jobs", "1", "--no-reuse")
    c = explore(opennpu, sweep, os.path.join(work, "jobs2"), "--jobs", "2")
    # 3 cores x 2 arrays x 2 SRAM x 3 DRAM x 2 clocks = 72, minus 4 cores x 16x16 (12 points) = 60.
    f.check(a["grid_size"] == 72 and a["points"] == 60 and a["rows"] == 120, f"grid {a}")
    f.check(a["compiles"] < b["compiles"] and b["compiles"] == 120, f"reuse compiled less: {a['compiles']} vs {b['compiles']}")
    # DRAM bandwidth and clock do not reach the compiler: one compilation per (cores, array, SRAM, model).
    f.check(a["compiles"] == 20, f"compilations with reuse: {a['compiles']} (want 10 compile keys x 2 models)")
    ra, rb, rc = (rows_of(os.path.join(work, d, "results.csv")) for d in ("reuse", "noreuse", "jobs2"))
    f.check(len(ra) == 121, f"results.csv has a header and 120 rows ({len(ra)} lines)")
    f.check(ra == rb, "rows with compile reuse equal rows compiling every point")
    f.check(ra == rc, "rows with --jobs 2 equal rows with --jobs 1")
    f.check(read(os.path.join(work, "reuse", "pareto.csv")) == read(os.path.join(work, "jobs2", "pareto.csv")), "pareto.csv equal")
    # Independent sanity: latency falls (or stays) when only the DRAM bandwidth rises.
    hdr = ra[0].split(",")
    idx = {k: hdr.index(k) for k in ("model", "cores", "mac_rows", "sram_bytes", "clock_ghz", "dram_gbps", "latency_ms", "area_mm2")}
    groups = {}
    for line in ra[1:]:
        v = line.split(",")
        groups.setdefault(tuple(v[idx[k]] for k in ("model", "cores", "mac_rows", "sram_bytes", "clock_ghz")), []).append(
            (float(v[idx["dram_gbps"]]), float(v[idx["latency_ms"]]), v[idx["area_mm2"]]))
    for k, g in groups.items():
        g.sort()
        f.check(all(g[i + 1][1] <= g[i][1] for i in range(len(g) - 1)), f"{k}: latency does not rise with DRAM bandwidth {g}")
        f.check(len({x[2] for x in g}) == 1, f"{k}: area does not depend on DRAM bandwidth")
    # Area from the documented model: cores x (MACs x 0.0008 + (SRAM + kernel buffer) x 2.5e-7 + lanes x 0.002 + 0.05)
    # + system cache x 2.5e-7 (defaults; ane_m1: 32 lanes, 64 KiB kernel buffer, 16 MiB cache).
    for line in ra[1:4]:
        v = dict(zip(hdr, line.split(",")))
        want = int(v["cores"]) * (int(v["mac_rows"]) * int(v["mac_cols"]) * 0.0008 + (int(v["sram_bytes"]) + 65536) * 2.5e-7 +
                                  32 * 0.002 + 0.05) + 16777216 * 2.5e-7
        f.check(abs(float(v["area_mm2"]) - want) < 1e-6 * want, f"area {v['area_mm2']} == {want}")


def wait_rows(path, n, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if os.path.exists(path) and read(path).count("\n") >= n + 1:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def mode_resume(opennpu, pythonpath, work, f):
    sweep = setup(work)
    full = explore(opennpu, sweep, os.path.join(work, "full"), "--jobs", "2")
    out = os.path.join(work, "killed")
    env = dict(os.environ, OPENNPU_EXPLORE_TEST_DELAY_MS="40")
    p = subprocess.Popen([opennpu, "explore", sweep, "--out", out, "--jobs", "1"], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    journal = os.path.join(out, "journal.csv")
    got = wait_rows(journal, 30, p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    f.check(got, "the sweep wrote 30 rows before it was killed")
    text = read(journal)
    done = text.count("\n") - 1  # complete rows (a torn last line has no newline)
    f.check(0 < done < full["rows"], f"killed halfway: {done} of {full['rows']} rows in the journal")
    f.check(not os.path.exists(os.path.join(out, "results.csv")), "no results.csv from the killed run")
    # A torn line at the end (kill mid-write) must not count: simulate one too.
    with open(journal, "a") as fh:
        fh.write("12,deadbeef,net_a,torn")
    r = explore(opennpu, sweep, out, "--jobs", "2")
    f.check(r["resumed_rows"] == done, f"rerun resumed {r['resumed_rows']} rows (journal had {done})")
    f.check(r["ran_rows"] == full["rows"] - done, f"rerun ran only the missing {full['rows'] - done} rows: {r['ran_rows']}")
    f.check(rows_of(os.path.join(out, "results.csv")) == rows_of(os.path.join(work, "full", "results.csv")),
            "results after kill + resume equal an uninterrupted run")
    f.check(read(os.path.join(out, "pareto.csv")) == read(os.path.join(work, "full", "pareto.csv")), "pareto.csv equal")
    r2 = explore(opennpu, sweep, out)
    f.check(r2["ran_rows"] == 0 and r2["resumed_rows"] == full["rows"], f"a third run runs nothing: {r2}")


def mode_dask(opennpu, pythonpath, work, f):
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        print("SKIP: python3-distributed is not installed")
        return SKIP
    sweep = setup(work)
    cli = explore(opennpu, sweep, os.path.join(work, "cli"), "--jobs", "1")
    r = run(["/usr/bin/python3", "-m", "opennpu.explore", sweep, "--out", os.path.join(work, "dask"), "--workers", "2",
             "--json"], env={"PYTHONPATH": pythonpath})
    d = json.loads(r.stdout)
    f.check(d["rows"] == cli["rows"] and d["ran_rows"] == cli["rows"], f"dask ran every row: {d}")
    f.check(d["scheduler"] == "local (2 workers)", f"local cluster of 2 workers: {d['scheduler']}")
    for name in ("results.csv", "pareto.csv"):
        a, b = rows_of(os.path.join(work, "cli", name)), rows_of(os.path.join(work, "dask", name))
        f.check(a == b, f"{name}: Dask rows equal the CLI's ({len(a)} vs {len(b)} lines)")
    # Dask resumes from the same journal: nothing left to run.
    r = run(["/usr/bin/python3", "-m", "opennpu.explore", sweep, "--out", os.path.join(work, "dask"), "--json"],
            env={"PYTHONPATH": pythonpath})
    d2 = json.loads(r.stdout)
    f.check(d2["ran_rows"] == 0 and d2["resumed_rows"] == cli["rows"], f"dask rerun resumes everything: {d2}")


def png_size(path):
    with open(path, "rb") as fh:
        head = fh.read(24)
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def mode_html(opennpu, pythonpath, work, f):
    if not os.access(CHROMIUM, os.X_OK):
        print(f"SKIP: {CHROMIUM} is not installed")
        return SKIP
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("SKIP: python3-matplotlib is not installed")
        return SKIP
    sweep = setup(work)
    out = os.path.join(work, "plot")
    r = explore(opennpu, sweep, out, "--plot")
    for name in ("latency_energy.png", "latency_energy.svg", "sensitivity.png", "sensitivity.svg", "explore.html"):
        p = os.path.join(out, name)
        f.check(os.path.exists(p) and os.path.getsize(p) > 5000, f"{name} written")
    page = os.path.join(out, "explore.html")
    text = read(page)
    f.check(not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", text, re.I), "no external src/href")
    f.check(not re.search(r"url\((?!#)|@import|<link\b|<iframe\b", text, re.I), "no url() other than in-page #ids, no @import/<link>/<iframe>")
    base = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0",
            f"--user-data-dir={os.path.join(work, 'chromium-profile')}"]
    png = os.path.join(out, "screenshot.png")
    c = subprocess.run([CHROMIUM, *base, f"--screenshot={png}", "--window-size=1400,2000", "file://" + page],
                       capture_output=True, text=True, timeout=180)
    f.check(c.returncode == 0, f"chromium screenshot exited {c.returncode}: {c.stderr[-1500:]}")
    console = [l for l in c.stderr.splitlines() if "CONSOLE" in l]
    f.check(not console, f"console messages: {console}")
    f.check(os.path.exists(png) and png_size(png) == (1400, 2000) and os.path.getsize(png) > 30000, "screenshot is a non-blank 1400x2000 PNG")
    c = subprocess.run([CHROMIUM, *base, "--dump-dom", "--window-size=1400,2000", "file://" + page], capture_output=True,
                       text=True, timeout=180)
    dom = c.stdout
    f.check("<title>opennpu explore: small</title>" in dom, "page title")
    m = re.search(r'<div id="errors" class="errors" data-rows="(\d+)"></div>', dom)
    f.check(m is not None, "the page script ran and recorded no error")
    f.check(m is not None and int(m.group(1)) == r["pareto_rows"], f"the Pareto table has {r['pareto_rows']} rows ({m.group(1) if m else None})")
    for needle in ('<div id="scatter"><svg', '<div id="sensitivity"><svg', '<table id="pareto"', '<table id="area"'):
        f.check(needle in dom, f"DOM has {needle}")


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    mode, opennpu, pythonpath, work = sys.argv[1:]
    modes = {"badfiles": mode_badfiles, "reuse": mode_reuse, "resume": mode_resume, "dask": mode_dask, "html": mode_html}
    if mode not in modes:
        sys.exit(__doc__)
    f = Failures()
    rc = modes[mode](opennpu, pythonpath, work, f)
    if rc == SKIP:
        sys.exit(SKIP)
    if f.n:
        print(f"{f.n} check(s) failed")
        sys.exit(1)
    print(f"{mode}: all checks passed")


if __name__ == "__main__":
    main()
