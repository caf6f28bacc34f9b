"""Benchmark of the Beam preprocessing job (a benchmark, not a test).

Measures, on synthetic logs:
  1. events per second of `beam_jobs.preprocess.run` on the DirectRunner, in-memory and
     multi-process (2 workers), on ~1M events (--quick: ~200k);
  2. TFRecord bytes per target of the request-grouped layout (RLB) against the point-wise
     baseline, GZIP and uncompressed, on a small user subset of the same distribution
     (point-wise copies the history per target, so the full set would be m times larger),
     with the default 4-12 targets per request, with 8-16, and with 8-16 on one user with
     8000 events (long histories).

Prints a table and writes benchmarks/results/bench_preprocess.json.

    .venv/bin/python benchmarks/bench_preprocess.py --quick
    .venv/bin/python benchmarks/bench_preprocess.py            # ~1M events

`--compare-commit COMMIT` (or `--compare-to TREE`) also runs the job of another source tree (e.g. the previous commit:
`git archive HEAD | tar -x -C /tmp/base`) on the same logs, alternating with this tree's
(base, this, base, this, ... `--repeats` times each, every run in its own process), and
adds to the JSON each tree's seconds per run, the median events/s and the speedup.
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import shlex
import shutil
import statistics
import subprocess
import sys

import core  # noqa: F401  (sets the Keras environment before TensorFlow loads)
from beam_jobs import preprocess
from core import config as config_lib
from pipeline import synth

import common
from common import write_result

REPO = str(common.REPO)
EVENTS_MEDIAN, EVENTS_SIGMA = 2000, 0.5
MEAN_EVENTS_PER_USER = 2266        # exp(sigma^2 / 2) * median, before clipping
MULTI_PROCESS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def _overrides(users: int, *overrides: str) -> list[str]:
    return [f"synth.users={users}", f"synth.events_median={EVENTS_MEDIAN}",
            f"synth.events_sigma={EVENTS_SIGMA}", "synth.files=4", *overrides]


def _config(users: int, *overrides: str) -> config_lib.Config:
    return config_lib.load_config(None, _overrides(users, *overrides))


# Subsets for bytes per target: (users, events per user or 0 for the default distribution,
# targets per request). The last one has long histories: records larger than GZIP's 32 KB
# window, so GZIP can no longer find the previous record's copy of the history.
BYTES_CASES = ((6, 0, (4, 12)), (6, 0, (8, 16)), (1, 8000, (8, 16)))


def _output_bytes(out_dir: str) -> int:
    return sum(os.path.getsize(p) for split in ("train", "eval")
               for p in glob.glob(os.path.join(out_dir, split, "*.tfrecord*")))


# Runs preprocess.run of the source tree given as argv[1] (its own process, started in
# that tree with it on PYTHONPATH, so it imports that tree's code) and prints the stats as
# the last line of stdout.
_RUN_TREE = """
import json, logging, sys
tree, overrides, input_glob, out, beam_args = json.loads(sys.argv[1])
try:  # trees from before the core package first: core/ of this checkout is importable too
    from pipeline import config as config_lib
except ImportError:
    from core import config as config_lib
from beam_jobs import preprocess
logging.getLogger().setLevel(logging.WARNING)
stats = preprocess.run(config_lib.load_config(None, overrides), input_glob, out, beam_args)
print(json.dumps(dict(stats, source=preprocess.__file__)))
"""


def _run_tree(tree: str, overrides: list[str], input_glob: str, out: str,
              beam_args: list[str]) -> dict:
    """preprocess.run of another source tree, in a subprocess; returns its stats."""
    tree = os.path.abspath(tree)
    proc = subprocess.run([sys.executable, "-c", _RUN_TREE, json.dumps(
        [tree, overrides, input_glob, out, beam_args])], cwd=tree, capture_output=True,
        text=True, env=dict(os.environ, PYTHONPATH=tree))
    if proc.returncode:
        raise RuntimeError(f"the job of {tree} failed:\n{proc.stderr[-3000:]}")
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    if not stats["source"].startswith(tree + os.sep):
        raise RuntimeError(f"{tree}: the job imported {stats['source']}")
    return stats


def _mode_result(stats: dict, events: int, out: str) -> dict:
    return {
        "seconds": stats["seconds"],
        "events_per_s": round(events / stats["seconds"]),
        # The output is dominated by the histories: 4 int64 values per history event.
        "history_values_per_s": round(4 * stats["history_length"]["mean"]
                                      * stats["requests"] / stats["seconds"]),
        "output_bytes": _output_bytes(out),
        "history_mean": stats["history_length"]["mean"],
        "history_p99": stats["history_length"]["p99"]}


# Stats that two versions of the job must agree on for the same input.
_SAME_STATS = ("requests", "targets", "records", "splits", "history_length", "label_rates",
               "valid_rows", "dead_letters", "duplicate_rows", "eval_cutoff_ms")


def _compare(base: str, overrides: list[str], input_glob: str, out: str, beam_args: list[str],
             events: int, repeats: int) -> tuple[dict, dict]:
    """Runs base and this tree alternately; (this tree's median run, the comparison)."""
    runs: dict[str, list[dict]] = {"base": [], "this": []}
    for _ in range(repeats):
        for name, tree in (("base", base), ("this", REPO)):
            stats = _run_tree(tree, overrides, input_glob, out, beam_args)
            runs[name].append(dict(stats, output_bytes=_output_bytes(out)))
            shutil.rmtree(out, ignore_errors=True)
    seconds = {name: [r["seconds"] for r in rs] for name, rs in runs.items()}
    median = {name: statistics.median(s) for name, s in seconds.items()}
    this = min(runs["this"], key=lambda r: abs(r["seconds"] - median["this"]))
    return this, {
        "base_seconds": seconds["base"], "seconds": seconds["this"],
        "base_events_per_s": round(events / median["base"]),
        "events_per_s": round(events / median["this"]),
        "speedup": round(median["base"] / median["this"], 2),
        "same_stats": all(r[k] == runs["base"][0][k] for r in runs["base"] + runs["this"]
                          for k in _SAME_STATS),
        "base_output_bytes": runs["base"][0]["output_bytes"]}


def throughput(workdir: str, events: int, modes: list[str], compare_to: str | None = None,
               repeats: int = 1) -> dict:
    users = max(1, round(events / MEAN_EVENTS_PER_USER))
    overrides = _overrides(users)
    raw = os.path.join(workdir, "raw")
    made = synth.run(config_lib.load_config(None, overrides), raw)
    result = {"events": made["events"], "users": users, "requests": made["requests"],
              "synth_seconds": made["seconds"], "modes": {}}
    if compare_to:
        result["comparison"] = {"base": os.path.abspath(compare_to), "repeats": repeats,
                                "modes": {}}
    for mode in modes:
        out = os.path.abspath(os.path.join(workdir, f"out_{mode}"))
        args = MULTI_PROCESS if mode == "multi_processing" else []
        input_glob = os.path.abspath(os.path.join(raw, "*.csv"))
        if compare_to:
            stats, compared = _compare(compare_to, overrides, input_glob, out, args,
                                       made["events"], repeats)
            result["comparison"]["modes"][mode] = compared
            result["modes"][mode] = dict(_mode_result(stats, made["events"], out),
                                         output_bytes=stats["output_bytes"])
            continue
        stats = preprocess.run(config_lib.load_config(None, overrides), input_glob, out,
                               beam_args=args)
        result["modes"][mode] = _mode_result(stats, made["events"], out)
        shutil.rmtree(out, ignore_errors=True)
    return result


def bytes_per_target(workdir: str, users: int, events: int, targets: tuple[int, int]) -> dict:
    overrides = [f"synth.targets_min={targets[0]}", f"synth.targets_max={targets[1]}"]
    if events:
        overrides += [f"synth.events_median={events}", "synth.events_sigma=0",
                      f"synth.events_max={events}"]
    cfg = _config(users, *overrides)
    raw = os.path.join(workdir, f"raw_bytes_{users}_{events}_{targets[0]}")
    synth.run(cfg, raw)
    result = {"targets_per_request": list(targets), "users": users}
    for compression in ("gzip", "none"):
        per_layout = {}
        for layout in ("request", "pointwise"):
            out = os.path.join(workdir, f"bytes_{layout}_{compression}")
            run_cfg = _config(users, *overrides, f"data.layout={layout}",
                              f"data.compression={compression}")
            stats = preprocess.run(run_cfg, os.path.join(raw, "*.csv"), out)
            per_layout[layout] = round(_output_bytes(out) / stats["targets"], 1)
            result["targets"] = stats["targets"]
            result["requests"] = stats["requests"]
            result["history_mean"] = stats["history_length"]["mean"]
            shutil.rmtree(out, ignore_errors=True)
        per_layout["ratio"] = round(per_layout["pointwise"] / per_layout["request"], 2)
        result[compression] = per_layout
    result["mean_targets"] = round(result["targets"] / result["requests"], 2)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="~200k events instead of ~1M")
    parser.add_argument("--events", type=int, help="override the number of events")
    parser.add_argument("--no-multi-process", action="store_true")
    parser.add_argument("--workdir", default="runs/bench_preprocess")
    parser.add_argument("--out", default=str(common.RESULTS / "bench_preprocess.json"))
    parser.add_argument("--bytes-cases", default=",".join(map(str, range(len(BYTES_CASES)))),
                        help="comma-separated indices into BYTES_CASES (default: all; "
                             "empty: none)")
    parser.add_argument("--compare-commit", metavar="COMMIT",
                        help="compare with the job of this commit (its tree is extracted "
                             "into WORKDIR/base_tree with git archive; sets --compare-to)")
    parser.add_argument("--compare-to", metavar="TREE",
                        help="source tree of another version of the job to compare with")
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs of each tree per mode with --compare-to (default 2)")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.WARNING)
    events = args.events or (200_000 if args.quick else 1_000_000)
    modes = ["in_memory"] + ([] if args.no_multi_process else ["multi_processing"])
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir, exist_ok=True)
    if args.compare_commit:
        args.compare_to = common.source_tree(args.compare_commit,
                                             os.path.join(args.workdir, "base_tree"))
    load_start = os.getloadavg()
    report = {
        "benchmark": "bench_preprocess", "quick": args.quick,
        "command": "python benchmarks/bench_preprocess.py " + " ".join(
            shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "data": {"max_history": config_lib.DataConfig().max_history,
                 "events_median": EVENTS_MEDIAN, "events_sigma": EVENTS_SIGMA},
        "throughput": throughput(args.workdir, events, modes, args.compare_to, args.repeats),
        "base_commit": args.compare_commit,
        "bytes_per_target": [bytes_per_target(args.workdir, *BYTES_CASES[int(i)])
                             for i in args.bytes_cases.split(",") if i],
    }
    t = report["throughput"]
    print(f"\nDirectRunner throughput on {t['events']:,} events, {t['requests']:,} requests")
    print(f"{'mode':<18}{'seconds':>10}{'events/s':>12}{'hist mean':>12}{'out MB':>10}"
          f"{'hist values/s':>16}")
    for mode, m in t["modes"].items():
        print(f"{mode:<18}{m['seconds']:>10.1f}{m['events_per_s']:>12,}"
              f"{m['history_mean']:>12.0f}{m['output_bytes'] / 1e6:>10.1f}"
              f"{m['history_values_per_s']:>16,}")
    for mode, c in t.get("comparison", {}).get("modes", {}).items():
        print(f"{mode}: {c['base_events_per_s']:,} events/s ({t['comparison']['base']}) -> "
              f"{c['events_per_s']:,} events/s (this tree), {c['speedup']}x; median of "
              f"{t['comparison']['repeats']} runs each; same stats: {c['same_stats']}")
    print("\nTFRecord bytes per target (request-grouped vs point-wise)")
    print(f"{'targets/request':<20}{'hist mean':>10}  {'compression':<13}{'request':>10}"
          f"{'pointwise':>12}{'ratio':>8}")
    for b in report["bytes_per_target"]:
        for c in ("gzip", "none"):
            label = f"{b['targets_per_request'][0]}-{b['targets_per_request'][1]} " \
                    f"(mean {b['mean_targets']})"
            print(f"{label:<20}{b['history_mean']:>10.0f}  {c:<13}{b[c]['request']:>10.1f}"
                  f"{b[c]['pointwise']:>12.1f}{b[c]['ratio']:>8.2f}")
    write_result(report, args.out, load_start)
    print(f"\nwrote {args.out}")
    return report


if __name__ == "__main__":
    main()
