"""The results config (d = 32) under two or more override sets: eval AUC over 3 seeds and
training throughput, side by side.

    .venv/bin/python benchmarks/config_ab.py --preset head_width   # 128 (default) vs 64
        [--seeds 0,1,2] [--data runs/results/synth/data] [--out runs/<preset>]

Why: a change that buys training speed by changing what a step computes (e.g. a narrower
head) must leave quality within the seed spread. Each (seed,
variant) trains the results config (benchmarks/results_config.py: 800 steps, XLA off,
9 buckets) plus the variant's overrides with `stca train` and scores 3,000 eval requests at
L 64 / 224 / 1024 / 2048 with `stca evaluate`; variants alternate within each seed, so load
hits all alike. Runs whose eval report exists are reused. Writes
benchmarks/results/<preset>.json and prints a Markdown table: AUC mean ± half range per
variant, each variant's difference from the first, whether it is within the combined half
ranges, and valid history tokens/s of each training run (train_metrics.json, steady state).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import results_config as rc
from common import REPO, write_result

LENGTHS = [64, 224, 1024, 2048]
TASKS_SHOWN = ("click", "like")
# preset -> [(variant name, overrides on top of the results config)], the baseline first.
PRESETS = {
    "head_width": [("head_width 128", ["model.head_width=128"]),
                   ("head_width 64", ["model.head_width=64"])],
}


def overrides(variant: list[str], seed: int) -> list[str]:
    s = rc.settings("synth", quick=False)
    return (s["data"] + s["model"] + s["train"] + s["sampler"] + s["eval"]
            + [f"eval.lengths={LENGTHS}".replace(" ", ""), *variant, f"train.seed={seed}"])


def spread(values: list[float]) -> dict:
    return {"mean": sum(values) / len(values), "half_range": (max(values) - min(values)) / 2,
            "values": values}


def run_dir_name(variant: str, seed: int) -> str:
    return f"{variant.replace(' ', '_').replace(',', '').replace('[', '').replace(']', '')}_s{seed}"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--data", default="runs/results/synth/data")
    ap.add_argument("--out", help="run directories (default runs/<preset>)")
    ap.add_argument("--json", help="default benchmarks/results/<preset>.json")
    args = ap.parse_args(argv)
    os.chdir(REPO)
    load_start = os.getloadavg()
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = PRESETS[args.preset]
    out = args.out or os.path.join("runs", args.preset)
    if not os.path.exists(os.path.join(args.data, "stats.json")):
        rc.prepare_data("synth", os.path.dirname(args.data.rstrip("/")),
                        rc.settings("synth", quick=False), pointwise=False)
    runs = {}
    for seed in seeds:
        for name, variant in variants:  # alternating: a burst of load hits every variant
            run_dir = os.path.join(out, run_dir_name(name, seed))
            report = os.path.join(run_dir, "eval", "eval_report.json")
            done = os.path.exists(report)
            rc.stca("train", "--data", args.data, "--model-dir", run_dir,
                    *rc.sets(overrides(variant, seed)), done=done)
            rc.stca("evaluate", "--data", args.data, "--model-dir", run_dir,
                    "--out", os.path.join(run_dir, "eval"), done=done)
            rows = {r["length"]: r for r in json.load(open(report))["rows"]}
            metrics = json.load(open(os.path.join(run_dir, "train_metrics.json")))
            runs[(name, seed)] = {
                "auc": {str(n): {t: rows[n][t]["auc"] for t in TASKS_SHOWN} for n in LENGTHS},
                "valid_history_tokens_per_s": metrics["valid_history_tokens_per_s"],
                "wall_seconds": metrics["wall_seconds"]}
    names = [name for name, _ in variants]
    base, other = names[0], names[1:]
    table = []
    for n in LENGTHS:
        for t in TASKS_SHOWN:
            row = {"L": n, "task": t}
            for v in names:
                row[v] = spread([runs[(v, s)]["auc"][str(n)][t] for s in seeds])
            for v in other:
                diff = row[v]["mean"] - row[base]["mean"]
                row[f"{v} minus {base}"] = diff
                row[f"{v} within spread"] = abs(diff) <= (row[v]["half_range"]
                                                          + row[base]["half_range"])
            table.append(row)
    speed = {v: spread([runs[(v, s)]["valid_history_tokens_per_s"] for s in seeds])
             for v in names}
    lines = ["| L | task | " + " | ".join(names) + " | "
             + " | ".join(f"{v} - {base} | within spread" for v in other) + " |",
             "|---:|---|" + "---|" * len(names) + "---:|---|" * len(other)]
    for r in table:
        lines.append(f"| {r['L']} | {r['task']} | " + " | ".join(
            f"{r[v]['mean']:.4f} ± {r[v]['half_range']:.4f}" for v in names)
            + " | " + " | ".join(f"{r[f'{v} minus {base}']:+.4f} | "
                                 f"{'yes' if r[f'{v} within spread'] else '**no**'}"
                                 for v in other) + " |")
    lines += ["", "Valid history tokens/s while training (steady state, mean ± half range "
              "over seeds): " + ", ".join(
                  f"{v}: {speed[v]['mean']:,.0f} ± {speed[v]['half_range']:,.0f}"
                  for v in names)
              + "; " + ", ".join(f"{v} / {base}: "
                                 f"{speed[v]['mean'] / speed[base]['mean']:.2f}x"
                                 for v in other)]
    result = {"benchmark": "config_ab", "preset": args.preset,
              "command": "python benchmarks/config_ab.py " + " ".join(
                  sys.argv[1:] if argv is None else argv),
              "seeds": seeds, "variants": dict(variants), "lengths": LENGTHS,
              "stca_train_overrides": overrides([], seeds[0])[:-1],
              "runs": {run_dir_name(v, s): r for (v, s), r in runs.items()},
              "auc": table, "valid_history_tokens_per_s": speed,
              "markdown": "\n".join(lines)}
    write_result(result, args.json or os.path.join(REPO, "benchmarks", "results",
                                                   f"{args.preset}.json"), load_start)
    print(result["markdown"])
    return result


if __name__ == "__main__":
    main()
