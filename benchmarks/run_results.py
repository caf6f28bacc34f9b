"""Quality experiments behind docs/results.md, run through the real `stca` CLI, with seeds.

    python benchmarks/run_results.py [--quick] [--only synth|movielens] [--seeds 0,1,2]
                                     [--out runs/results] [--write-docs]

Per dataset (the synthetic log with a planted long-range signal, and MovieLens 100K),
every run is trained and evaluated once per seed (train.seed; the data stays fixed):
  a  AUC against inference length, with the history-use check (AUC minus AUC without
     history / with another user's history): STCA, LONGER, DIN and mean pooling, all
     trained on the same Beta-sampled windows, token budget and steps; STCA
     as the paper specifies it (no ID-match prior) shows the failure this page explains
  b  extrapolation: the Beta-trained STCA at 5x its mean training length vs at the mean,
     and STCA trained at a fixed long length (the expensive alternative)
  c  outside reference: DeepCTR's DIN (benchmarks/deepctr_din.py) on the same records,
     trained on as many targets as the STCA run saw (skipped when deepctr is missing)
  d  RLB vs point-wise: the same model on request-grouped vs point-wise records over the
     same number of targets
Results go to OUT/results.json; `--write-docs` copies them to
benchmarks/results/run_results.json and renders docs/results.md and its plots from that
copy (benchmarks/render_docs.py). Runs whose outputs exist are reused (delete a run's
directory to redo it). The sizes and the data of every dataset: results_config.py.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import common
from results_config import COMMANDS, MOVIELENS, REPO, prepare_data, run, sets, settings, stca


def load(path: str):
    with open(path) as f:
        return json.load(f)


# name -> (model overrides, sampler: "beta" | "fixed")
ENCODER_RUNS = {
    "stca": ([], "beta"),
    "stca_paper": (["model.id_match=[]"], "beta"),
    "longer": (["model.encoder=longer"], "beta"),
    "din": (["model.encoder=din"], "beta"),
    "mean": (["model.encoder=mean"], "beta"),
    "stca_fixed": ([], "fixed"),
}


def train_eval(model_dir: str, data: str, overrides: list[str], lengths,
               eval_data: str | None = None) -> dict:
    stca("train", "--data", data, "--model-dir", model_dir, *sets(overrides),
         done=os.path.exists(os.path.join(model_dir, "train_metrics.json")))
    report = os.path.join(model_dir, "eval", "eval_report.json")
    stca("evaluate", "--data", eval_data or data, "--model-dir", model_dir,
         "--lengths", ",".join(map(str, sorted(set(lengths)))),
         *sets(o for o in overrides if o.startswith("eval.")), done=os.path.exists(report))
    return finished_run(model_dir, overrides)


def finished_run(model_dir: str, overrides=None) -> dict:
    """A trained and evaluated run's metrics, as the report reads them."""
    return {"train": load(os.path.join(model_dir, "train_metrics.json")),
            "eval": load(os.path.join(model_dir, "eval", "eval_report.json")),
            "overrides": overrides}


def deepctr_din(out_json: str, data: str, length: int, targets: int, tasks, seed: int):
    """DeepCTR's DIN on the same records, or None when deepctr is not installed."""
    try:
        import deepctr  # noqa: F401
    except ImportError:
        return None
    args = ["--data", data, "--length", str(length), "--targets", str(targets),
            "--tasks", ",".join(tasks), "--seed", str(seed), "--out", out_json]
    run([sys.executable, os.path.join(REPO, "benchmarks", "deepctr_din.py"), *args],
        ["python", "benchmarks/deepctr_din.py", *args], done=os.path.exists(out_json))
    return load(out_json)


def run_dataset(dataset: str, out: str, quick: bool, seeds, encoders=None,
                parts=("a", "c", "d")) -> dict:
    """`encoders`: the ENCODER_RUNS to train (default all); `parts`: which of c (DeepCTR)
    and d (RLB vs point-wise) to run. Runs of other seeds or encoders already in `out` are
    reported too, so a smaller invocation can add seeds to a subset of the models."""
    s = settings(dataset, quick)
    root = os.path.join(out, dataset)
    data = prepare_data(dataset, root, s, pointwise="d" in parts)
    base = s["data"] + s["model"] + s["train"] + s["eval"]
    fixed = ["train.length.mode=fixed", f"train.length.l_max={s['window'][1]}"]
    L = s["compare_len"]
    same = [o for o in base if not o.startswith(("train.steps", "train.token_budget"))] + [
        "train.length.mode=fixed", f"train.length.l_max={L}",
        f"train.token_budget={s['rlb_budget']}", "train.max_targets=16"]
    runs: dict = {}
    # Seed by seed: an interrupted invocation leaves every part with the same seeds done.
    for seed in seeds:
        for name, (change, sampler) in ENCODER_RUNS.items():
            if encoders is not None and name not in encoders:
                continue
            lengths = s["lengths"] if sampler == "beta" else [
                s["mean_len"], 5 * s["mean_len"], s["window"][1]]
            overrides = base + (s["sampler"] if sampler == "beta" else fixed) + change + [
                f"train.seed={seed}"]
            runs.setdefault(name, {})[seed] = train_eval(
                os.path.join(root, f"{name}_s{seed}"), data["request"], overrides, lengths)
        # c: the outside reference, as many targets as STCA saw, at the comparison length.
        din = None if "c" not in parts or seed not in runs.get("stca", {}) else deepctr_din(
            os.path.join(root, f"deepctr_din_s{seed}.json"), data["request"], s["compare_at"],
            runs["stca"][seed]["train"]["targets_seen"],
            [s["long_task"]] if dataset == "movielens" else ["click", "like"], seed)
        if din is not None:
            runs.setdefault("deepctr_din", {})[seed] = din
        if "d" not in parts:
            continue
        # d: RLB vs point-wise over the same number of targets at one fixed length.
        rlb = train_eval(os.path.join(root, f"rlb_s{seed}"), data["request"],
                         same + [f"train.steps={s['rlb_steps']}", f"train.seed={seed}"], [L])
        pw_steps = -(-rlb["train"]["targets_seen"] // (s["rlb_budget"] // L))
        pw = train_eval(os.path.join(root, f"pointwise_s{seed}"), data["pointwise"],
                        same + [f"train.steps={pw_steps}", f"train.seed={seed}"], [L],
                        eval_data=data["request"])
        runs.setdefault("rlb", {})[seed] = rlb
        runs.setdefault("pointwise", {})[seed] = pw
    _add_finished_runs(root, runs)
    result = {"settings": s, "seeds": sorted({x for r in runs.values() for x in r}),
              "runs": runs,
              "data_stats": load(os.path.join(data["request"], "stats.json"))}
    if dataset == "synth":  # MovieLens has no author column: the count would be empty
        import oracle
        result["oracle"] = oracle.oracle_report(data["request"], s["lengths"], s["tasks"])
    return result


def _add_finished_runs(root: str, runs: dict) -> None:
    """Runs finished by earlier invocations (other seeds or encoders) join the report."""
    for entry in sorted(os.listdir(root)):
        path = os.path.join(root, entry)
        name, _, seed = entry.removesuffix(".json").rpartition("_s")
        if not seed.isdigit() or int(seed) in runs.get(name, {}):
            continue
        if name == "deepctr_din" and entry.endswith(".json"):
            runs.setdefault(name, {})[int(seed)] = load(path)
        elif os.path.exists(os.path.join(path, "eval", "eval_report.json")):
            runs.setdefault(name, {})[int(seed)] = finished_run(path)


# The ablation table: (description, history_ablation.py variant, extra arguments). The
# project's pieces are swapped in one at a time; "fix" is the model's default config.
ABLATION = [
    ("count of exact author matches (no embeddings), logistic head",
     "feature=count,opt=plain", ["--lr", "0.01"]),
    ("exact-match attention over action embeddings (no learned matching)",
     "feature=match,opt=plain", ["--lr", "0.01"]),
    ("plain Keras DIN: shared tables (uniform init), MLP attention, sum pooling, MLP head, "
     "Adam", "embed=concat_uniform,encoder=din_sum,user=none,head=mlp,opt=plain,match=,"
     "sink=false", []),
    ("the same DIN with N(0, 1) tables", "embed=concat_normal,encoder=din_sum,user=none,"
     "head=mlp,opt=plain,match=,sink=false", []),
    ("STCA as the paper specifies it (the project before the fix)", "match=,sink=false", []),
    ("STCA + comparable tokens (shared item+author content on both sides, residual views "
     "and queries, W_K = W_Q at init)", "embed=shared,resid=1,tied=1,match=,sink=false", []),
    ("STCA + attention sink only", "match=,sink=true", []),
    ("**STCA + ID-match prior (item, author): the fix, default config**", "", []),
    ("fix, author matches only", "match=author", []),
    ("fix + attention sink", "sink=true", []),
    ("fix + comparable tokens", "embed=shared,resid=1,tied=1", []),
    ("fix without user tokens", "user=none", []),
    ("fix with the MLP head", "head=mlp", []),
    ("fix with plain Adam (1e-3, no warmup / decay / clipping)", "opt=plain", []),
]
ABLATION_STEPS, ABLATION_LENGTH, ABLATION_REQUESTS = 300, 1024, 1500


def run_ablation(out: str, data: str, only=None) -> dict:
    """Trains the ABLATION rows (`only`: their indices; default all) not yet in `out`."""
    rows = []
    for i, (description, variant, extra) in enumerate(ABLATION):
        if only is not None and i not in only:
            continue
        path = os.path.join(out, f"{i:02d}.json")
        args = ["--data", data, "--variant", variant, "--steps", str(ABLATION_STEPS),
                "--lengths", str(ABLATION_LENGTH), "--out", path, *extra]
        os.makedirs(out, exist_ok=True)
        run([sys.executable, os.path.join(REPO, "benchmarks", "history_ablation.py"), *args],
            ["python", "benchmarks/history_ablation.py", *args], done=os.path.exists(path))
        ev = load(path)["eval"][str(ABLATION_LENGTH)]
        row = {"description": description, "variant": variant}
        for t in ("click", "like"):
            row[f"{t}_auc"] = f"{ev['real'][t]['auc']:.4f}"
            row[f"{t}_gauc"] = f"{ev['real'][t]['gauc']:.4f}"
            row[f"{t}_delta"] = f"{ev['real'][t]['auc'] - ev['empty'][t]['auc']:+.4f}"
        rows.append(row)
    return {"steps": ABLATION_STEPS, "length": ABLATION_LENGTH,
            "eval_requests": ABLATION_REQUESTS, "rows": rows}


def _save(results: dict, out: str) -> None:
    path = os.path.join(out, "results.json")
    if os.path.exists(path):  # another part may have finished in a parallel invocation
        earlier = load(path)
        results["datasets"] = {**earlier.get("datasets", {}), **results["datasets"]}
        results.setdefault("ablation", earlier.get("ablation"))
        if results["ablation"] is None:
            results.pop("ablation")
    common.write_json(results, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, minutes not hours")
    parser.add_argument("--only", choices=("synth", "movielens", "ablation"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--encoders", help="comma list of " + ",".join(ENCODER_RUNS)
                        + " (default all)")
    parser.add_argument("--parts", default="a,c,d",
                        help="a (encoders), c (DeepCTR DIN), d (RLB vs point-wise)")
    parser.add_argument("--ablation-rows", help="comma list of ABLATION indices (default all)")
    parser.add_argument("--out", default=os.path.join(REPO, "runs", "results"))
    parser.add_argument("--write-docs", action="store_true",
                        help="copy OUT/results.json to benchmarks/results/run_results.json "
                             "and render docs/results.md and its plots from it")
    args = parser.parse_args(argv)
    seeds = [int(x) for x in args.seeds.split(",")]
    results_path = os.path.join(args.out, "results.json")
    results = load(results_path) if os.path.exists(results_path) else {"datasets": {}}
    results.update(machine=common.machine_info(), quick=args.quick)
    parts = [args.only] if args.only else ["ablation", "synth", "movielens"]
    if "ablation" in parts:  # on the synthetic data of section a
        data = prepare_data("synth", os.path.join(args.out, "synth"),
                            settings("synth", args.quick), pointwise=False)
        rows = ({int(x) for x in args.ablation_rows.split(",")} if args.ablation_rows
                else None)
        results["ablation"] = run_ablation(os.path.join(args.out, "ablation"), data["request"],
                                           rows)
        results["ablation"]["commands"] = list(COMMANDS)
        COMMANDS.clear()
        _save(results, args.out)
    for dataset in [p for p in parts if p != "ablation"]:
        if dataset == "movielens" and not os.path.exists(MOVIELENS):
            print(f"skipping MovieLens: {MOVIELENS} not found (not redistributable)")
            continue
        t0 = time.time()
        ds = run_dataset(dataset, args.out, args.quick, seeds,
                         args.encoders.split(",") if args.encoders else None,
                         tuple(args.parts.split(",")))
        earlier = results["datasets"].get(dataset, {})  # invocations add up
        ds["seconds"] = round(time.time() - t0 + earlier.get("seconds", 0), 1)
        ds["commands"] = list(dict.fromkeys(earlier.get("commands", []) + COMMANDS))
        COMMANDS.clear()
        results["datasets"][dataset] = ds
        _save(results, args.out)
    if args.write_docs:  # from the committed copy, as render_docs.py renders it
        import render_docs
        common.write_json(load(results_path), render_docs.RUN_RESULTS)
        docs = pathlib.Path(REPO) / "docs"
        (docs / "results.md").write_text(render_docs.results(render_docs.RUN_RESULTS, docs))
    print(f"wrote {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
