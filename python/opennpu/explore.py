"""Design-space exploration on a Dask cluster (docs/explore.md).

    /usr/bin/python3 -m opennpu.explore SWEEP.toml --out DIR [--scheduler ADDRESS] [--workers N]
                                        [--models-dir D] [--functional] [--json]

The same sweep as `opennpu explore SWEEP.toml --out DIR`, with the (design x model) simulations
spread over Dask workers instead of threads. The grid, the grouping of jobs by compilation, every
row and the results files come from the same C++ library (src/explore) as the CLI's, through the
pybind11 module, so the rows are identical. Each task is one group of jobs that share a
compilation; a worker process keeps its imported models and compiled programs between tasks.
Finished rows are appended to DIR/journal.csv as tasks complete, so an interrupted run resumes
(by either entry point).

Without --scheduler a LocalCluster of --workers processes (one thread each) is started here. With
--scheduler tcp://HOST:8786 the tasks go to an existing cluster; its workers must be able to
`import opennpu` (PYTHONPATH) and read the models at the paths the sweep resolves to.
"""
import argparse
import json
import os
import sys
import time


def _ext():
    import opennpu
    return opennpu._ext


def run_group(text, file, models_dir, functional, jobs, threads):
    """A Dask task: the rows of one group of (point, model) jobs (runs on a worker)."""
    return _ext()._explore_run(text, file, models_dir, functional, [tuple(j) for j in jobs], threads)


def _progress(done, total, t0, first, quiet):
    if quiet or not sys.stderr.isatty():
        return
    el = time.monotonic() - t0
    rate = (done - first) / el if el > 0 else 0
    eta = f"{(total - done) / rate:.0f}s" if rate > 0 else "?"
    fill = int(30 * done / total) if total else 30
    sys.stderr.write(f"\r\033[K[{'#' * fill}{' ' * (30 - fill)}] {done}/{total} rows  {rate:.1f} rows/s  ETA {eta}")
    sys.stderr.flush()


def explore(sweep, out, scheduler=None, workers=2, models_dir="", functional=False, quiet=True):
    """Runs the sweep on Dask; returns a summary dict (as `opennpu explore --json` prints)."""
    ext = _ext()
    file = os.path.abspath(sweep)
    with open(file, "r", encoding="utf-8") as f:
        text = f.read()
    models_dir = os.path.abspath(models_dir) if models_dir else ""
    plan = ext._explore_plan(text, file, models_dir, functional, out)
    journal = ext._ExploreJournal(out)
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    t0 = time.monotonic()
    done = first = plan["resumed"]
    total = plan["rows"]
    ran = 0
    try:
        # One opennpu thread per Dask worker thread: the workers are the parallelism.
        futures = [client.submit(run_group, text, file, models_dir, functional, g, 1, pure=False)
                   for g in plan["groups"]]
        _progress(done, total, t0, first, quiet)
        for fut in as_completed(futures):
            for row in fut.result():
                journal.append(row)
                ran += 1
                done += 1
            _progress(done, total, t0, first, quiet)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    seconds = time.monotonic() - t0
    if not quiet and sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    s = ext._explore_finish(text, file, models_dir, functional, out)
    return {
        "sweep": plan["name"], "out": out, "fidelity": "functional" if functional else "timing",
        "grid_size": plan["grid_size"], "points": s["points"], "models": plan["models"], "rows": s["rows"],
        "resumed_rows": plan["resumed"], "ran_rows": ran, "seconds": seconds,
        "rows_per_second": ran / seconds if seconds > 0 else 0,
        "points_per_second": ran / seconds / len(plan["models"]) if seconds > 0 else 0,
        "pareto_rows": s["pareto_rows"], "scheduler": scheduler or f"local ({workers} workers)",
        "results": os.path.join(out, "results.csv"), "pareto": os.path.join(out, "pareto.csv"),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m opennpu.explore", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", help="sweep file (TOML)")
    ap.add_argument("--out", "-o", required=True, help="output directory")
    ap.add_argument("--scheduler", help="Dask scheduler address (default: start a local cluster)")
    ap.add_argument("--workers", type=int, default=2, help="local cluster worker processes (default 2)")
    ap.add_argument("--models-dir", default="", help="where model names resolve (overrides the sweep's models_dir)")
    ap.add_argument("--functional", action="store_true", help="also simulate values and compare with the CPU")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    if a.workers < 1:
        ap.error("--workers must be >= 1")
    import opennpu
    try:
        r = explore(a.sweep, a.out, a.scheduler, a.workers, a.models_dir, a.functional, quiet=a.json)
    except opennpu.Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(r, indent=2))
    else:
        print(f"{r['sweep']}: {r['points']} design points x {len(r['models'])} models = {r['rows']} rows "
              f"on {r['scheduler']}")
        print(f"  ran {r['ran_rows']} rows in {r['seconds']:.1f} s ({r['points_per_second']:.1f} points/s), "
              f"{r['resumed_rows']} resumed from the journal")
        print(f"  {r['results']}\n  {r['pareto']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
