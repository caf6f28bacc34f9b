"""Quality experiments behind docs/results.md, run through the real `stca` CLI.

    python benchmarks/run_results.py [--quick] [--only synth|movielens] [--out runs/results]

Per dataset (the synthetic logs with a planted long-range signal, and MovieLens 100K):
  a  AUC against inference length: STCA and LONGER (Beta-sampled training lengths) vs
     mean pooling
  b  extrapolation: the Beta-trained STCA at 5x its mean training length vs at the mean,
     and against STCA trained at a fixed long length (the expensive alternative)
  c  encoders at the same fixed L and token budget: STCA, LONGER, target attention, DIN,
     transformer (same steps, same batches)
  d  RLB vs point-wise: the same model trained on request-grouped records vs point-wise
     records over the same number of targets; AUC on the same eval split, wall-clock

Every command is logged; results go to OUT/results.json, and `--write-docs` renders
docs/results.md and its plots. Runs whose train_metrics.json / eval_report.json exist are
reused (delete OUT/<run> to redo one), so an interrupted run continues where it stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOVIELENS = os.path.join(os.path.dirname(REPO), "shared", "data", "movielens_100k", "u.data")
COMMANDS: list[str] = []
NO_RUN = False  # --collect: only gather the runs that exist, run nothing
SKIP: set[str] = set()  # --skip: runs left out of this invocation


class NotRun(Exception):
    pass


def stca(*args: str, done: bool = False) -> None:
    """Runs `stca ARGS` (logged for the docs even when DONE: an earlier run made its output)."""
    cmd = ["stca", *args]
    COMMANDS.append(" ".join(shlex.quote(a) for a in cmd))
    if done:
        return
    if NO_RUN:
        COMMANDS.pop()
        raise NotRun(cmd)
    print("+", COMMANDS[-1], flush=True)
    env = dict(os.environ, PYTHONPATH=REPO)
    subprocess.run([sys.executable, "-m", "pipeline.cli", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL if not os.environ.get("VERBOSE") else None)


def sets(overrides) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def load(path: str):
    with open(path) as f:
        return json.load(f)


# ------------------------------------------------------------------ experiment settings
def settings(dataset: str, quick: bool) -> dict:
    """Sizes per dataset. Sampler: Beta(0.35, 1.5) on [l_min, l_max]: mean ~ 1/5 of the max.

    MovieLens histories are short (p90 276, max 684 ratings), so its window is [8, 640]."""
    l_min, l_max = (32, 2048) if dataset == "synth" else (8, 640)
    beta = ["train.length.mode=beta", f"train.length.l_min={l_min}",
            f"train.length.l_max={l_max}", "train.length.beta_a=0.35", "train.length.beta_b=1.5"]
    mean_len = l_min + 0.35 / (0.35 + 1.5) * (l_max - l_min)
    s = {
        "beta": beta,
        "window": [l_min, l_max],
        "fixed_len": l_max,
        # (a): STCA at ~2048 (5x the mean, 2080, is evaluated) > at 256; MovieLens: 640 > 64
        "check_lengths": (256, 2080) if dataset == "synth" else (64, 640),
        "mean_len": int(-(-mean_len // 8) * 8),
        "steps": 150 if quick else 500,
        "budget": 32768,
        "compare_len": 256,
        "compare_budget": 4096,
        "compare_steps": 60 if quick else 300,
        "rlb_steps": 40 if quick else 150,
        "common": ["train.learning_rate=0.002", "train.warmup_steps=50",
                   "train.checkpoint_every=1000", "train.log_every=100"],
    }
    if dataset == "synth":
        s["tasks"] = ["click", "like", "finish"]
        s["data"] = ["data.max_history=8192", "data.num_shards=8"]
        s["synth"] = (["synth.users=16", "synth.events_median=3000"] if quick else
                      ["synth.users=48", "synth.events_median=5000", "synth.events_min=1500",
                       "synth.events_max=30000"])
        s["lengths"] = [64, 128, 256, s["mean_len"], 1024, 5 * s["mean_len"], 4096, 8192]
    else:
        s["tasks"] = ["like"]
        s["data"] = ["data.max_history=2048", "data.schema.tasks=[like]", "data.num_shards=4"]
        s["lengths"] = [16, 32, 64, s["mean_len"], 256, 5 * s["mean_len"], 1024]
        # 2262 train requests of ~100 ratings: a smaller budget keeps this to a few epochs.
        s["steps"], s["budget"] = (100, 8192) if quick else (200, 8192)
    s["lengths"] = sorted(set(s["lengths"]))
    return s


def prepare_data(dataset: str, root: str, s: dict) -> dict:
    data = {"request": os.path.join(root, "data"), "pointwise": os.path.join(root, "pointwise")}
    done = os.path.exists(os.path.join(data["request"], "stats.json"))
    if dataset == "synth":
        raw = os.path.join(root, "raw")
        stca("synth", "--out", raw, *sets(s["synth"]), done=done)
        source = ["--input", os.path.join(raw, "*.csv")]
    else:
        source = ["--input", MOVIELENS, "--format", "movielens"]
    stca("preprocess", *source, "--out", data["request"], *sets(s["data"]), done=done)
    done = os.path.exists(os.path.join(data["pointwise"], "stats.json"))
    # Point-wise records copy the history per impression: cap it at the length (d) trains
    # on, or the synthetic set would need ~1e9 history slots.
    stca("preprocess", *source, "--out", data["pointwise"], "--layout", "pointwise",
         *sets(s["data"] + [f"data.max_history={s['compare_len']}"]), done=done)
    return data


def train_eval(root: str, name: str, data: str, overrides: list[str], lengths: list[int],
               eval_data: str | None = None) -> dict:
    model_dir = os.path.join(root, name)
    if name in SKIP and not os.path.exists(os.path.join(model_dir, "eval", "eval_report.json")):
        return None
    try:
        return _train_eval(model_dir, data, overrides, lengths, eval_data)
    except NotRun:
        return None


def _train_eval(model_dir, data, overrides, lengths, eval_data) -> dict:
    stca("train", "--data", data, "--model-dir", model_dir, *sets(overrides),
         done=os.path.exists(os.path.join(model_dir, "train_metrics.json")))
    report_path = os.path.join(model_dir, "eval", "eval_report.json")
    stca("evaluate", "--data", eval_data or data, "--model-dir", model_dir,
         "--lengths", ",".join(map(str, sorted(set(lengths)))), done=os.path.exists(report_path))
    return {"train": load(os.path.join(model_dir, "train_metrics.json")),
            "eval": load(report_path), "overrides": overrides}


def run_dataset(dataset: str, out: str, quick: bool) -> dict:
    s = settings(dataset, quick)
    root = os.path.join(out, dataset)
    data = prepare_data(dataset, root, s)
    base = s["data"] + s["common"]
    runs, budget = {}, [f"train.token_budget={s['budget']}", f"train.steps={s['steps']}"]
    # a + b: Beta-sampled short windows, evaluated up to 4-8x longer; mean pooling baseline.
    for enc in ("stca", "longer", "mean"):
        runs[f"{enc}_beta"] = train_eval(root, f"{enc}_beta", data["request"],
                                         base + s["beta"] + budget + [f"model.encoder={enc}"],
                                         s["lengths"])
    # b: the expensive alternative: always train at the long length.
    fixed_long = ["train.length.mode=fixed", f"train.length.l_max={s['fixed_len']}"]
    runs["stca_fixed_long"] = train_eval(root, "stca_fixed_long", data["request"],
                                         base + fixed_long + budget,
                                         [s["mean_len"], 5 * s["mean_len"], s["fixed_len"]])
    # Diagnosis (synthetic data): the fixed-length run with one change each: no item-ID
    # embedding (one bucket; synthetic items are nearly unique), a 5x learning rate.
    # diag_short_64: short fixed windows (64 events, a 4096-token budget) instead of 2048.
    ext_lengths = [s["mean_len"], 5 * s["mean_len"], s["fixed_len"]]
    diagnoses = {
        "diag_no_item_id": (["model.item_buckets=1"], ext_lengths),
        "diag_lr_0.01": (["train.learning_rate=0.01"], ext_lengths),
        "diag_short_64": (["train.length.l_max=64", "train.length.l_min=8",
                           "train.token_budget=4096"], [64, s["mean_len"], s["fixed_len"]]),
    } if dataset == "synth" else {}
    for name, (change, eval_lengths) in diagnoses.items():
        runs[name] = train_eval(root, name, data["request"], base + fixed_long + budget + change,
                                eval_lengths)
    # c: encoders at the same fixed L, token budget and steps.
    L = s["compare_len"]
    same = [f"train.length.mode=fixed", f"train.length.l_min=8", f"train.length.l_max={L}",
            f"train.token_budget={s['compare_budget']}", f"train.steps={s['compare_steps']}"]
    for enc in ("stca", "longer", "target_attention", "din", "transformer", "mean"):
        runs[f"compare_{enc}"] = train_eval(root, f"compare_{enc}", data["request"],
                                            base + same + [f"model.encoder={enc}"], [L])
    # d: RLB vs point-wise over the same number of targets (point-wise: one per record, so
    # a step holds budget / L targets).
    stats = load(os.path.join(data["request"], "stats.json"))
    per_request = stats["splits"]["train"]["targets"] / stats["splits"]["train"]["requests"]
    rlb = same[:-2] + [f"train.token_budget={s['compare_budget']}",
                       "train.max_targets=16"]
    runs["rlb"] = train_eval(root, "rlb", data["request"],
                             base + rlb + [f"train.steps={s['rlb_steps']}"], [L])
    pw_steps = -(-runs["rlb"]["train"]["targets_seen"] // (s["compare_budget"] // L)) \
        if runs["rlb"] else 0
    runs["pointwise"] = train_eval(root, "pointwise", data["pointwise"],
                                   base + rlb + [f"train.steps={pw_steps}"], [L],
                                   eval_data=data["request"])
    runs = {k: v for k, v in runs.items() if v is not None}
    out = {"settings": s, "targets_per_request": per_request, "data_stats": stats, "runs": runs}
    if dataset == "synth":  # MovieLens has no authors: the reference would be meaningless
        import oracle
        out["oracle"] = oracle.oracle_report(data["request"], s["lengths"], s["tasks"])
        if "stca_fixed_long" in runs:  # the reference on the batches that run trained on
            from pipeline import config as config_lib
            cfg = config_lib.load_config(os.path.join(root, "stca_fixed_long", "config.yaml"))
            out["oracle_train_batches"] = oracle.training_batches_report(data["request"], cfg)
    return out


def machine() -> dict:
    import multiprocessing
    return {"platform": platform.platform(), "cpu_count": multiprocessing.cpu_count(),
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, minutes not hours")
    parser.add_argument("--only", choices=("synth", "movielens"))
    parser.add_argument("--out", default=os.path.join(REPO, "runs", "results"))
    parser.add_argument("--collect", action="store_true",
                        help="run nothing: gather the finished runs (docs mark the missing)")
    parser.add_argument("--skip", default="", help="comma-separated run names to leave out")
    parser.add_argument("--write-docs", action="store_true",
                        help="render docs/results.md and its plots from OUT/results.json")
    args = parser.parse_args(argv)
    global NO_RUN
    NO_RUN = args.collect
    SKIP.update(filter(None, args.skip.split(",")))
    results = {"machine": machine(), "quick": args.quick, "datasets": {}}
    results_path = os.path.join(args.out, "results.json")
    if os.path.exists(results_path):
        earlier = load(results_path)
        results["datasets"] = earlier.get("datasets", {})
        if args.collect:  # the machine and date of the runs, not of this collection
            results["machine"] = earlier.get("machine", results["machine"])
    datasets = [args.only] if args.only else ["synth", "movielens"]
    for dataset in datasets:
        if dataset == "movielens" and not os.path.exists(MOVIELENS):
            print(f"skipping MovieLens: {MOVIELENS} not found (not redistributable)")
            continue
        t0, earlier = time.time(), results["datasets"].get(dataset, {})
        results["datasets"][dataset] = run_dataset(dataset, args.out, args.quick)
        # --collect runs nothing: the wall time is that of the run that trained the models
        results["datasets"][dataset]["seconds"] = (
            earlier.get("seconds") if args.collect and earlier.get("seconds")
            else round(time.time() - t0, 1))
        results["datasets"][dataset]["commands"] = list(COMMANDS)
        COMMANDS.clear()
        os.makedirs(args.out, exist_ok=True)
        if os.path.exists(results_path):  # another dataset's run may have finished meanwhile
            done = load(results_path).get("datasets", {})
            results["datasets"] = {**done, dataset: results["datasets"][dataset]}
        with open(results_path, "w") as f:
            json.dump(results, f, indent=2)
    if args.write_docs:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import results_doc
        results_doc.write(results, os.path.join(REPO, "docs"))
    print(f"wrote {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
