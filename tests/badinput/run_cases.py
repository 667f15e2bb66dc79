#!/usr/bin/python3
"""Runs opennpu on every bad-input case from gen_cases.py and checks it fails cleanly.

  run_cases.py OPENNPU [--only SUBSTRING] [--keep DIR]

For each case the process must
  - exit with code 1 (a clean error: a signal, 3 = internal error, any other code, or exit 0 fail),
  - finish within 20 s (no hang; a case may set a longer "timeout") and stay under 512 MiB peak
    RSS (nothing huge allocated),
  - never open a file outside the model's directory that a case points at (watched with inotify),
  - print one error message on stderr: one line starting "opennpu: error:" that contains the
    case's expected substring (case-insensitive), so the message names the problem. The only
    extra lines allowed are indented details of that message (the list of a model's expected
    inputs); any other output (a warning, a second error, a backtrace) fails the case.
Cases of kind "cache" check the opposite: a tampered compiled-model cache gives a warning and a
rebuild, and the run succeeds with the right output (see run_cache_case).
Prints one line per case and ends with "N passed, N failed". Exit 0 only when all pass.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TIMEOUT_S = 20
MAX_RSS_KB = 512 * 1024  # generous for sanitizer builds (ASan's quarantine alone may hold 256 MiB)


def run_case(opennpu, args, env=None, timeout_s=TIMEOUT_S):
    """Runs one case; returns (returncode or -signal, stderr text, seconds, peak RSS in KiB, timed out)."""
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen([opennpu] + args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > timeout_s:
                p.kill()
                timed_out = True
                pid, status, usage = os.wait4(p.pid, 0)
                break
            time.sleep(0.01)
        p.returncode = 0  # reaped by wait4: keep Popen from waiting again
        rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    return rc, text, time.monotonic() - t0, usage.ru_maxrss, timed_out


def check(case, rc, stderr, secs, rss_kb, timed_out):
    """Returns None when the case behaved, else why not."""
    why = limits(rc, secs, rss_kb, timed_out)
    if why:
        return why
    if rc == 0:
        return "exit 0: the bad input was accepted"
    if rc == 3:
        return "exit 3: internal error instead of a clean message"
    if rc != 1:
        return f"exit {rc} (expected 1)"
    lines = [l for l in stderr.splitlines() if l.strip()]
    if not lines:
        return "nothing on stderr"
    if not lines[0].startswith("opennpu: error:"):
        return "stderr does not start with 'opennpu: error:'"
    extra = [l for l in lines[1:] if not l[:1].isspace()]
    if extra:
        return f"expected one message on stderr, got {len(extra)} more unindented line(s)"
    if case["expect"].lower() not in stderr.lower():
        return f"message does not mention '{case['expect']}'"
    return None


def limits(rc, secs, rss_kb, timed_out):
    """The guarantees every case shares: no hang, no signal, bounded memory."""
    if timed_out:
        return f"hung: killed after {secs:.0f} s"
    if rc < 0:
        return f"crashed with signal {signal.Signals(-rc).name}"
    if rss_kb > MAX_RSS_KB:
        return f"peak RSS {rss_kb // 1024} MiB: allocated before refusing"
    return None


def tamper(path, how):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if how == "flip":
        mid = len(data) // 2
        for i in range(mid, min(mid + 16, len(data))):
            data[i] ^= 0x5A
    elif how == "truncate":
        data = data[: len(data) // 2]
    elif how == "header":
        data[:16] = b"\xff" * 16
    else:
        raise ValueError(how)
    with open(path, "wb") as f:
        f.write(data)


def run_cache_case(opennpu, case):
    """A compiled-model cache is not user input: after tampering with every cache file the run must
    still succeed (exit 0) with a warning naming the cache, and write the correct output; a third
    run must use the rebuilt entry without a warning. Returns (None or why, seconds, first stderr line)."""
    env = dict(os.environ, OPENNPU_CACHE_DIR=case["cache_dir"])
    total = 0.0

    def step(what):
        nonlocal total
        if os.path.exists(case["output"]):
            os.remove(case["output"])
        rc, err, secs, rss, timed_out = run_case(opennpu, case["args"], env)
        total += secs
        why = limits(rc, secs, rss, timed_out) or (f"{what}: exit {rc} (expected 0): {err.strip()[:200]}" if rc else None)
        return why, err

    why, _ = step("first run")
    if why:
        return why, total, ""
    files = sorted(os.listdir(case["cache_dir"])) if os.path.isdir(case["cache_dir"]) else []
    if not files:
        return "the first run wrote no cache file", total, ""
    for f in files:
        tamper(os.path.join(case["cache_dir"], f), case["tamper"])
    why, err = step("run on the tampered cache")
    first = (err.strip().splitlines() or ["<no message>"])[0]
    if why:
        return why, total, first
    if case["expect"].lower() not in err.lower() or "rebuilding" not in err:
        return f"no '{case['expect']} ... rebuilding' warning on stderr", total, first
    if "error" in err.lower():
        return "an error was printed although the run succeeded", total, first
    import numpy as np
    got, ref = np.load(case["output"]), np.load(case["reference"])
    if got.shape != ref.shape or not np.allclose(got, ref, rtol=1e-3, atol=1e-3):
        return f"wrong output after the rebuild: max |diff| {np.max(np.abs(got - ref)) if got.shape == ref.shape else 'shape'}", \
            total, first
    why, err3 = step("third run")
    if why:
        return why, total, first
    if "warning" in err3.lower():
        return f"the rebuilt cache entry is not used cleanly: {err3.strip()[:200]}", total, first
    return None, total, first


class OpenWatch:
    """Reports whether any process opened or read the given files since the last call, with inotify
    (through ctypes: no extra package, no ptrace). inotify watches inodes, so an open through a
    symbolic or hard link counts too."""
    IN_ACCESS, IN_OPEN = 0x1, 0x20

    def __init__(self, paths):
        import ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.wd = {}
        for p in paths:
            wd = self.libc.inotify_add_watch(self.fd, p.encode(), self.IN_ACCESS | self.IN_OPEN)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {p} failed")
            self.wd[wd] = p

    def opened(self):
        """The watched files touched since the last call (sorted)."""
        import struct
        seen = set()
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            i = 0
            while i + 16 <= len(buf):
                wd, mask, _cookie, n = struct.unpack_from("iIII", buf, i)
                if wd in self.wd and mask & (self.IN_ACCESS | self.IN_OPEN):
                    seen.add(self.wd[wd])
                i += 16 + n
        return sorted(seen)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("opennpu")
    ap.add_argument("--only", help="run only cases whose name contains this")
    ap.add_argument("--keep", help="generate into this directory and keep it")
    a = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    work = a.keep or tempfile.mkdtemp(prefix="opennpu-badinput-")
    try:
        subprocess.run([sys.executable, os.path.join(here, "gen_cases.py"), work], check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(work, "cases.json")) as f:
            manifest = json.load(f)
        cases = manifest["cases"]
        watch = OpenWatch(manifest["outside"])
        passed = failed = 0
        peak_kb = 0
        # Error cases never touch a compiled-model cache (not the user's, and no cache hit can skip
        # the checks under test); the cache cases set their own directory.
        no_cache_env = dict(os.environ, OPENNPU_CACHE_DIR="none")
        for case in cases:
            if a.only and a.only not in case["name"]:
                continue
            if case.get("kind") == "cache":
                why, secs, first = run_cache_case(os.path.abspath(a.opennpu), case)
            else:
                rc, stderr, secs, rss, timed_out = run_case(os.path.abspath(a.opennpu), case["args"], no_cache_env,
                                                            case.get("timeout", TIMEOUT_S))
                peak_kb = max(peak_kb, rss)
                why = check(case, rc, stderr, secs, rss, timed_out)
                touched = watch.opened()
                if why is None and touched:
                    why = f"opened {', '.join(touched)}, outside the model's directory"
                first = (stderr.strip().splitlines() or ["<no message>"])[0]
            if len(first) > 160:
                first = first[:157] + "..."
            if why is None:
                passed += 1
                print(f"ok    {case['name']:24} {secs:5.2f}s  {first}")
            else:
                failed += 1
                print(f"FAIL  {case['name']:24} {secs:5.2f}s  {why}\n      guarantee: {case['why']}\n      stderr: {first}")
        print(f"{passed} passed, {failed} failed; largest peak RSS of an error case {peak_kb // 1024} MiB "
              f"(limit {MAX_RSS_KB // 1024} MiB), time limit {TIMEOUT_S} s per run")
        return 0 if failed == 0 and passed > 0 else 1
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
