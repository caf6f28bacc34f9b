"""Training throughput of the results config (d = 32) before / after each change, side by side.

    .venv/bin/python benchmarks/bench_train.py [--quick] [--data DIR] [--steps 200]
                                               [--rounds 1] [--before-commit c6a3be9]

Every variant is the same `stca train` run (the synthetic results config of
benchmarks/run_results.py: STCA, d = 32, 3 layers, Beta(0.35, 1.5) lengths on [32, 1024],
16k-token budget) with a few overrides, run as its own process, one after another, in
`--rounds` interleaved rounds. From each run's train_metrics.json it reports the steady
state (every step after the first one of each padded length, input wait included):
padded and valid history tokens/s, and the first-step cost per padded length (trace, plus
the XLA compile of that shape when XLA is on). Ratios are against the "before" variant,
the code and defaults before the throughput work (--before-commit: dense Adam, no XLA,
results-config buckets).

Prints a table and writes JSON that docs/performance.md quotes.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import run_results  # noqa: E402  (the results config and its data)

# The last commit before the throughput work (dense Adam and XLA off by default).
BEFORE_COMMIT = "c6a3be9"
FINE_BUCKETS = "train.bucket_boundaries=[64,96,128,192,256,384,512,768,1024]"
OLD_BUCKETS = "train.bucket_boundaries=[128,256,512,1024]"  # the results config's before
# name -> (what changes, overrides on top of the results config); "before*" variants run
# the code of --before-commit (the commit before the throughput work), the rest this tree.
VARIANTS = {
    "before": ("old code: dense Adam, XLA off (the old defaults)",
               ["train.optimizer=adam", "train.jit_compile=false", OLD_BUCKETS]),
    "before_xla": ("old code: dense Adam, XLA on (how docs/results.md was trained)",
                   ["train.optimizer=adam", "train.jit_compile=true", OLD_BUCKETS]),
    "adam": ("dense Adam, XLA off",
             ["train.optimizer=adam", "train.jit_compile=false", OLD_BUCKETS]),
    "lazy": ("lazy Adam, XLA off",
             ["train.optimizer=lazy_adam", "train.jit_compile=false", OLD_BUCKETS]),
    "lazy_xla": ("lazy Adam, XLA on (the new train defaults)",
                 ["train.optimizer=lazy_adam", "train.jit_compile=true", OLD_BUCKETS]),
    "lazy_fine": ("lazy Adam, XLA off, 9 buckets (the results config now)",
                  ["train.optimizer=lazy_adam", "train.jit_compile=false", FINE_BUCKETS]),
    "lazy_xla_fine": ("lazy Adam, XLA on, 9 buckets",
                      ["train.optimizer=lazy_adam", "train.jit_compile=true", FINE_BUCKETS]),
}


def source_tree(commit: str, dest: str) -> str:
    """The repository's files at `commit` (git archive), in `dest`."""
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    archive = subprocess.run(["git", "-C", REPO, "archive", commit], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return dest


def base_overrides(steps: int) -> list[str]:
    """The synthetic results config, minus what the variants set (optimizer, XLA, buckets),
    at `steps` steps."""
    s = run_results.settings("synth", quick=False)
    keep = [o for o in s["model"] + s["train"] + s["sampler"]
            if not o.startswith(("train.jit_compile", "train.steps", "train.optimizer",
                                 "train.bucket_boundaries"))]
    return keep + [f"train.steps={steps}", f"train.log_every={max(steps // 8, 1)}"]


def train_once(data: str, model_dir: str, overrides: list[str], tree: str) -> dict:
    """One `stca train` process of `tree`'s code; its steady-state throughput.

    Code from before the throughput work has no steady-state fields in train_metrics.json:
    its rate is read from the per-window log lines (tokens/s, padded), every window but
    the first (which holds the trace and compiles)."""
    shutil.rmtree(model_dir, ignore_errors=True)
    t0 = time.time()
    # cwd = tree: `python -m` puts the working directory first on sys.path.
    log = subprocess.run([sys.executable, "-m", "pipeline.cli", "train",
                          "--data", os.path.abspath(data), "--model-dir", model_dir,
                          *run_results.sets(overrides)], check=True, cwd=tree,
                         env=dict(os.environ, PYTHONPATH=tree), stdout=subprocess.PIPE,
                         text=True).stdout
    with open(os.path.join(model_dir, "train_metrics.json")) as f:
        m = json.load(f)
    row = {"process_seconds": round(time.time() - t0, 1), "wall_seconds": m["wall_seconds"],
           "xla": m.get("xla", "train.jit_compile=true" in overrides)}
    if "history_tokens_per_s" in m:
        row.update({k: m[k] for k in ("steady_steps", "history_tokens_per_s",
                                      "valid_history_tokens_per_s",
                                      "first_step_extra_seconds")})
    else:
        rates = [float(x.replace(",", "")) for x in re.findall(r"tokens/s=([\d,.]+)", log)]
        row["history_tokens_per_s"] = round(_median(rates[1:] or rates), 1)
    return row


def write_result(result: dict, path: str, load_start=None) -> dict:
    """Adds the time and machine (load averages at start and now) and writes the JSON."""
    machine = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
               "load_average_end": [round(x, 2) for x in os.getloadavg()]}
    if load_start is not None:
        machine["load_average_start"] = [round(x, 2) for x in load_start]
    result.update(timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), machine=machine)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    return result


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else 0.5 * (xs[len(xs) // 2 - 1] + xs[len(xs) // 2])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="40 users, 80 steps")
    ap.add_argument("--data", help="preprocessed records (default: made under --workdir)")
    ap.add_argument("--workdir", default=os.path.join(REPO, "runs", "bench_train"))
    ap.add_argument("--steps", type=int)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--before-commit", default=BEFORE_COMMIT,
                    help="the code before* variants run ('' skips them)")
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results",
                                                  "bench_train.json"))
    args = ap.parse_args(argv)
    steps = args.steps or (80 if args.quick else 200)
    data = args.data
    if data is None:
        s = run_results.settings("synth", quick=args.quick)
        data = run_results.prepare_data("synth", args.workdir, s, pointwise=False)["request"]
    names = [n for n in args.variants.split(",")
             if args.before_commit or not n.startswith("before")]
    before_tree = (source_tree(args.before_commit, os.path.join(args.workdir, "before_tree"))
                   if any(n.startswith("before") for n in names) else None)
    load_start = os.getloadavg()
    runs = {n: [] for n in names}
    for r in range(args.rounds):
        for n in names:
            tree = before_tree if n.startswith("before") else REPO
            runs[n].append(train_once(data, os.path.abspath(os.path.join(args.workdir,
                                                                         f"model_{n}")),
                                      base_overrides(steps) + VARIANTS[n][1], tree))
            print(f"round {r} {n}: {runs[n][-1]}", flush=True)
    rows = []
    # Valid tokens / padded tokens depends on the buckets and the data only: old-code runs
    # take it from this tree's run with the same buckets.
    fraction = {}
    for n in names:
        for x in runs[n]:
            if "valid_history_tokens_per_s" in x:
                fraction[FINE_BUCKETS in VARIANTS[n][1]] = (x["valid_history_tokens_per_s"]
                                                            / x["history_tokens_per_s"])
    for n in names:
        padded = _median([x["history_tokens_per_s"] for x in runs[n]])
        valid = _median([x.get("valid_history_tokens_per_s") or x["history_tokens_per_s"]
                         * fraction[FINE_BUCKETS in VARIANTS[n][1]] for x in runs[n]])
        rows.append({"variant": n, "what": VARIANTS[n][0], "overrides": VARIANTS[n][1],
                     "history_tokens_per_s": padded, "valid_history_tokens_per_s": valid,
                     "wall_seconds": _median([x["wall_seconds"] for x in runs[n]]),
                     "first_step_extra_seconds": runs[n][0].get("first_step_extra_seconds", {}),
                     "runs": runs[n]})
    before = next((r for r in rows if r["variant"] == "before"), rows[0])
    for r in rows:
        r["valid_ratio"] = round(r["valid_history_tokens_per_s"]
                                 / before["valid_history_tokens_per_s"], 2)
        r["wall_ratio"] = round(before["wall_seconds"] / r["wall_seconds"], 2)
    print(f"\n{'variant':<15}{'tokens/s':>12}{'valid/s':>12}{'x before':>10}"
          f"{'wall s':>9}{'x before':>10}  first-step extra s per padded length")
    for r in rows:
        print(f"{r['variant']:<15}{r['history_tokens_per_s']:>12,.0f}"
              f"{r['valid_history_tokens_per_s']:>12,.0f}{r['valid_ratio']:>9.2f}x"
              f"{r['wall_seconds']:>9.1f}{r['wall_ratio']:>9.2f}x  "
              f"{r['first_step_extra_seconds']}")
    result = {"benchmark": "bench_train", "command": " ".join(
                  ["python", "benchmarks/bench_train.py"] + (argv or sys.argv[1:])),
              "before_commit": args.before_commit, "quick": args.quick, "steps": steps,
              "rounds": args.rounds, "data": os.path.relpath(data, REPO),
              "base_overrides": base_overrides(steps), "rows": rows}
    return write_result(result, args.out, load_start)


if __name__ == "__main__":
    main()
