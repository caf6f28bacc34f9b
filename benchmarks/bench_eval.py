"""`stca evaluate` throughput before / after, on one trained model, side by side.

    .venv/bin/python benchmarks/bench_eval.py --model-dir runs/results/synth/stca_s0 \
        --data runs/results/synth/data [--before-commit c6a3be9] [--rounds 2] \
        [--lengths 4096 --lengths 64,224,1024,1120,2048] [--max-requests 3000]

Runs the real `stca evaluate` command (history-use check on, as by default) of this tree
and of --before-commit (the code before the change) in turns, each in a fresh process, for each set of lengths. Requests/s = eval
requests / wall seconds of the whole command (TensorFlow import and model restore
included: what a user waits for). Also checks that both give the same AUCs. Prints a
table and writes JSON that docs/performance.md quotes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import common
from common import BEFORE_COMMIT, source_tree, write_result

REPO = str(common.REPO)


def evaluate_once(tree: str, model_dir: str, data: str, lengths: str, max_requests: int,
                  out: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.time()
    # cwd = tree: `python -m` puts the working directory first on sys.path.
    subprocess.run([sys.executable, "-m", "pipeline.cli", "evaluate", "--data", data,
                    "--model-dir", model_dir, "--lengths", lengths, "--out", out,
                    "--set", f"eval.max_requests={max_requests}"], check=True, cwd=tree,
                   env=dict(os.environ, PYTHONPATH=tree), stdout=subprocess.DEVNULL)
    seconds = time.time() - t0
    with open(os.path.join(out, "eval_report.json")) as f:
        rows = json.load(f)["rows"]
    return {"seconds": round(seconds, 1), "requests": rows[0]["requests"],
            "requests_per_s": round(rows[0]["requests"] / seconds, 2),
            "auc": {r["length"]: {t: r[t]["auc"] for t in r if isinstance(r[t], dict)
                                  and "auc" in r[t]} for r in rows}}


# Run in a source tree's own process: MODEL_DIR/config.yaml without the fields that tree's
# config does not know (fields added since), so older code can evaluate a newer model dir.
KNOWN_FIELDS_SNIPPET = """
import dataclasses, sys, yaml
try:  # trees from before the core package first: core/ of this checkout is importable too
    from pipeline import config as config_lib
except ImportError:
    from core import config as config_lib
def keep(saved, known):
    return {k: keep(v, known[k]) if isinstance(v, dict) and isinstance(known[k], dict) else v
            for k, v in saved.items() if k in known}
with open(sys.argv[1]) as f:
    saved = yaml.safe_load(f)
with open(sys.argv[2], "w") as f:
    yaml.safe_dump(keep(saved, dataclasses.asdict(config_lib.Config())), f)
"""


def model_dir_for(tree: str, model_dir: str, workdir: str) -> str:
    """MODEL_DIR as the code in `tree` reads it: the same checkpoints (linked) and a
    config.yaml restricted to the fields that code knows."""
    if tree == REPO:
        return model_dir
    out = os.path.join(workdir, "before_model_dir")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    for name in os.listdir(model_dir):
        if name != "config.yaml":
            os.symlink(os.path.join(model_dir, name), os.path.join(out, name))
    subprocess.run([sys.executable, "-c", KNOWN_FIELDS_SNIPPET,
                    os.path.join(model_dir, "config.yaml"), os.path.join(out, "config.yaml")],
                   check=True, cwd=tree, env=dict(os.environ, PYTHONPATH=tree))
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--before-commit", default=BEFORE_COMMIT)
    ap.add_argument("--lengths", action="append", help="comma-separated; repeatable")
    ap.add_argument("--max-requests", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--workdir", default=os.path.join(REPO, "runs", "bench_eval"))
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results",
                                                  "bench_eval.json"))
    args = ap.parse_args(argv)
    model_dir, data = os.path.abspath(args.model_dir), os.path.abspath(args.data)
    trees = {"before": source_tree(
        args.before_commit, os.path.join(args.workdir, "before_tree")), "after": REPO}
    model_dirs = {name: model_dir_for(tree, model_dir, args.workdir)
                  for name, tree in trees.items()}
    load_start = os.getloadavg()
    rows = []
    for lengths in args.lengths or ["4096"]:
        runs = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                out = os.path.abspath(os.path.join(args.workdir, f"{name}_{lengths}"))
                runs[name].append(evaluate_once(tree, model_dirs[name], data, lengths,
                                                args.max_requests, out))
                print(f"L={lengths} {name}: {runs[name][-1]['seconds']} s", flush=True)
        best = {n: min(r["seconds"] for r in v) for n, v in runs.items()}
        worst_auc = max(abs(a - runs["before"][0]["auc"][length][t])
                        for length, per in runs["after"][0]["auc"].items()
                        for t, a in per.items())
        rows.append({"lengths": lengths, "requests": runs["after"][0]["requests"],
                     "before_s": best["before"], "after_s": best["after"],
                     "before_requests_per_s": round(runs["after"][0]["requests"]
                                                    / best["before"], 2),
                     "after_requests_per_s": round(runs["after"][0]["requests"]
                                                   / best["after"], 2),
                     "speedup": round(best["before"] / best["after"], 2),
                     "max_auc_difference": worst_auc, "runs": runs})
    print(f"\n{'lengths':<24}{'requests':>9}{'before s':>10}{'after s':>9}"
          f"{'req/s before':>14}{'after':>8}{'speedup':>9}{'max |dAUC|':>12}")
    for r in rows:
        print(f"{r['lengths']:<24}{r['requests']:>9}{r['before_s']:>10.1f}{r['after_s']:>9.1f}"
              f"{r['before_requests_per_s']:>14.1f}{r['after_requests_per_s']:>8.1f}"
              f"{r['speedup']:>8.2f}x{r['max_auc_difference']:>12.1e}")
    result = {"benchmark": "bench_eval", "command": " ".join(
                  ["python", "benchmarks/bench_eval.py"] + (argv or sys.argv[1:])),
              "before_commit": args.before_commit, "model_dir": os.path.relpath(model_dir, REPO),
              "data": os.path.relpath(data, REPO), "max_requests": args.max_requests,
              "rounds": args.rounds, "rows": rows}
    return write_result(result, args.out, load_start)


if __name__ == "__main__":
    main()
