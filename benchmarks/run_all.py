"""Runs every benchmark and writes docs/performance.md from their JSON results.

    .venv/bin/python benchmarks/run_all.py                 # quick (~6.5 min): benchmarks/results/quick/
    .venv/bin/python benchmarks/run_all.py --full          # full (~40 min): benchmarks/results/
    .venv/bin/python benchmarks/run_all.py --only perf,serving
    .venv/bin/python benchmarks/run_all.py --report-only   # re-render the doc from the JSONs
    make bench            # quick;   make bench FULL=1   # full

Each benchmark runs as a subprocess, one after another (never two at once: they would
compete for the 2 cores). Quick mode writes into benchmarks/results/quick/ so it never
overwrites the full results in benchmarks/results/; the doc says which set it shows. The
exact commands, exit codes, wall times and load averages go to RESULTS_DIR/run_all.json,
which docs/performance.md quotes (nothing in the doc is typed by hand). The page is
rendered by benchmarks/render_docs.py (templates in benchmarks/templates/, aims in
benchmarks/aims.yaml).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import subprocess
import sys
import time

import render_docs
from common import REPO, RESULTS, machine_info

DOC = render_docs.DOCS / "performance.md"


def commands(full: bool, out: pathlib.Path) -> dict[str, list[str]]:
    """Benchmark name -> argv (relative to the repo). Quick mode trims the slow ones."""
    rel = os.path.relpath(out, REPO)
    if full:
        return {
            "perf": ["benchmarks/bench_perf.py", "--out", f"{rel}/bench_perf.json"],
            "encoders": ["benchmarks/bench_encoders.py", "--out", f"{rel}/bench_encoders.json"],
            "serving": ["benchmarks/bench_serving.py", "--out", f"{rel}/bench_serving.json"],
            "preprocess": ["benchmarks/bench_preprocess.py", "--out",
                           f"{rel}/bench_preprocess.json"],
            "train": ["benchmarks/bench_train.py", "--out", f"{rel}/bench_train.json"],
            "xla": ["benchmarks/bench_xla.py", "--out", f"{rel}/bench_xla.json"],
        }
    return {
        "perf": ["benchmarks/bench_perf.py", "--quick", "--out", f"{rel}/bench_perf.json"],
        # STCA only (with and without recomputation): the linear-cost and memory claims;
        # the transformer ratio comes from bench_perf.
        "encoders": ["benchmarks/bench_encoders.py", "--quick", "--encoders", "stca",
                     "--lengths", "1024,4096,8192", "--out", f"{rel}/bench_encoders.json"],
        "serving": ["benchmarks/bench_serving.py", "--quick", "--out",
                    f"{rel}/bench_serving.json"],
        "preprocess": ["benchmarks/bench_preprocess.py", "--quick", "--events", "100000",
                       "--no-multi-process", "--bytes-cases", "0,2",
                       "--out", f"{rel}/bench_preprocess.json"],
        "train": ["benchmarks/bench_train.py", "--quick", "--variants", "before,lazy_fine",
                  "--out", f"{rel}/bench_train.json"],
        "xla": ["benchmarks/bench_xla.py", "--grid", "32x512,128x1024", "--rounds", "3",
                "--out", f"{rel}/bench_xla.json"],
    }


def run_benchmarks(names: list[str], full: bool, out: pathlib.Path) -> dict:
    manifest_path = out / "run_all.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.update(mode="full" if full else "quick", results_dir=os.path.relpath(out, REPO),
                    machine=machine_info())
    runs = manifest.setdefault("runs", {})
    started = time.time()
    for name in names:
        argv = commands(full, out)[name]
        print(f"=== {name}: python {' '.join(argv)}", flush=True)
        load_before, t0 = os.getloadavg(), time.time()
        proc = subprocess.run([sys.executable, *argv], cwd=REPO)
        runs[name] = {
            "command": "python " + " ".join(argv), "returncode": proc.returncode,
            "wall_seconds": round(time.time() - t0, 1),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds")}
        print(f"=== {name}: exit {proc.returncode} after {runs[name]['wall_seconds']} s",
              flush=True)
    manifest["wall_seconds_last_run"] = round(time.time() - started, 1)
    manifest["benchmarks_last_run"] = names
    out.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="full sizes (default: quick)")
    parser.add_argument("--only", help="comma-separated subset of: perf,encoders,serving,"
                                       "preprocess,train,xla")
    parser.add_argument("--report-only", action="store_true",
                        help="do not run; render docs/performance.md from existing JSONs")
    parser.add_argument("--results-dir", help="default: benchmarks/results (full) or "
                                              "benchmarks/results/quick")
    parser.add_argument("--doc", default=str(DOC))
    args = parser.parse_args(argv)
    out = pathlib.Path(args.results_dir or (RESULTS if args.full else RESULTS / "quick"))
    out = out if out.is_absolute() else (REPO / out)
    names = list(commands(args.full, out))
    if args.only:
        unknown = set(args.only.split(",")) - set(names)
        if unknown:
            parser.error(f"--only: unknown benchmark(s) {sorted(unknown)}; "
                         f"choose from {','.join(names)}")
        names = [n for n in names if n in args.only.split(",")]
    failed = []
    if not args.report_only:
        manifest = run_benchmarks(names, args.full, out)
        failed = [n for n in names if manifest["runs"][n]["returncode"] != 0]
    doc = pathlib.Path(args.doc)
    doc.write_text(render_docs.performance(out, doc.parent))
    print(f"wrote {args.doc}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
