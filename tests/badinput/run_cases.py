#!/usr/bin/python3
"""Runs opennpu on every bad-input case from gen_cases.py and checks it fails cleanly.

  run_cases.py OPENNPU [--only SUBSTRING] [--keep DIR]

For each case the process must
  - exit with code 1 (a clean error: a signal, 3 = internal error, any other code, or exit 0 fail),
  - finish within 20 s (no hang) and stay under 2 GiB peak RSS (nothing huge allocated),
  - print one error message on stderr: one line starting "opennpu: error:" that contains the
    case's expected substring (case-insensitive), so the message names the problem. The only
    extra lines allowed are indented details of that message (the list of a model's expected
    inputs); any other output (a warning, a second error, a backtrace) fails the case.
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
MAX_RSS_KB = 2 * 1024 * 1024


def run_case(opennpu, args):
    """Runs one case; returns (returncode or -signal, stderr text, seconds, peak RSS in KiB, timed out)."""
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen([opennpu] + args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > TIMEOUT_S:
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
    if timed_out:
        return f"hung: killed after {TIMEOUT_S} s"
    if rc < 0:
        return f"crashed with signal {signal.Signals(-rc).name}"
    if rc == 0:
        return "exit 0: the bad input was accepted"
    if rc == 3:
        return "exit 3: internal error instead of a clean message"
    if rc != 1:
        return f"exit {rc} (expected 1)"
    if rss_kb > MAX_RSS_KB:
        return f"peak RSS {rss_kb // 1024} MiB: allocated before refusing"
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
            cases = json.load(f)
        passed = failed = 0
        for case in cases:
            if a.only and a.only not in case["name"]:
                continue
            rc, stderr, secs, rss, timed_out = run_case(os.path.abspath(a.opennpu), case["args"])
            why = check(case, rc, stderr, secs, rss, timed_out)
            first = (stderr.strip().splitlines() or ["<no message>"])[0]
            if len(first) > 160:
                first = first[:157] + "..."
            if why is None:
                passed += 1
                print(f"ok    {case['name']:24} {secs:5.2f}s  {first}")
            else:
                failed += 1
                print(f"FAIL  {case['name']:24} {secs:5.2f}s  {why}\n      guarantee: {case['why']}\n      stderr: {first}")
        print(f"{passed} passed, {failed} failed")
        return 0 if failed == 0 and passed > 0 else 1
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
