"""Results config (d = 32) with the RankMixer head at model.head_width 128 (the default)
vs 64: eval AUC over 3 seeds and training throughput.

    .venv/bin/python benchmarks/head_width.py [--seeds 0,1,2] [--widths 128,64]
        [--data runs/results/synth/data] [--out runs/head_width]

Why: at d = 32 the head is 128 wide whatever d is, and the results config's short Beta
windows pack thousands of targets into each 16k-token batch, so the head is 26-57% of a
training step's op time (docs/performance.md, the d = 32 aim). This measures what a
narrower head costs in quality and buys in speed. Each (seed, width) trains the results
config (benchmarks/results_config.py: 800 steps, XLA off, 9 buckets) with
`stca train` and scores 3,000 eval requests at L 64 / 224 / 1024 / 2048 with
`stca evaluate`; widths alternate within each seed, so load hits both alike. Runs whose
eval report exists are reused. Writes benchmarks/results/head_width.json and prints a
Markdown table: AUC mean ± half range per width, the difference, whether it is within
the combined half ranges, and valid history tokens/s of each training run
(train_metrics.json, steady state).
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


def overrides(width: int, seed: int) -> list[str]:
    s = rc.settings("synth", quick=False)
    return (s["data"] + s["model"] + s["train"] + s["sampler"] + s["eval"]
            + [f"eval.lengths={LENGTHS}".replace(" ", ""), f"model.head_width={width}",
               f"train.seed={seed}"])


def spread(values: list[float]) -> dict:
    return {"mean": sum(values) / len(values), "half_range": (max(values) - min(values)) / 2,
            "values": values}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--widths", default="128,64")
    ap.add_argument("--data", default="runs/results/synth/data")
    ap.add_argument("--out", default="runs/head_width")
    ap.add_argument("--json", default=os.path.join(REPO, "benchmarks", "results",
                                                   "head_width.json"))
    args = ap.parse_args(argv)
    os.chdir(REPO)
    load_start = os.getloadavg()
    seeds = [int(s) for s in args.seeds.split(",")]
    widths = [int(w) for w in args.widths.split(",")]
    if not os.path.exists(os.path.join(args.data, "stats.json")):
        rc.prepare_data("synth", os.path.dirname(args.data.rstrip("/")),
                        rc.settings("synth", quick=False), pointwise=False)
    runs = {}
    for seed in seeds:
        for width in widths:  # alternating: a burst of load hits both widths
            run_dir = os.path.join(args.out, f"w{width}_s{seed}")
            report = os.path.join(run_dir, "eval", "eval_report.json")
            done = os.path.exists(report)
            rc.stca("train", "--data", args.data, "--model-dir", run_dir,
                    *rc.sets(overrides(width, seed)), done=done)
            rc.stca("evaluate", "--data", args.data, "--model-dir", run_dir,
                    "--out", os.path.join(run_dir, "eval"), done=done)
            rows = {r["length"]: r for r in json.load(open(report))["rows"]}
            metrics = json.load(open(os.path.join(run_dir, "train_metrics.json")))
            runs[(width, seed)] = {
                "auc": {str(n): {t: rows[n][t]["auc"] for t in TASKS_SHOWN} for n in LENGTHS},
                "valid_history_tokens_per_s": metrics["valid_history_tokens_per_s"],
                "wall_seconds": metrics["wall_seconds"]}
    base, other = widths[0], widths[1:]
    table = []
    for n in LENGTHS:
        for t in TASKS_SHOWN:
            row = {"L": n, "task": t}
            for w in widths:
                row[str(w)] = spread([runs[(w, s)]["auc"][str(n)][t] for s in seeds])
            for w in other:
                diff = row[str(w)]["mean"] - row[str(base)]["mean"]
                row[f"{w}_minus_{base}"] = diff
                row[f"{w}_within_spread"] = abs(diff) <= (row[str(w)]["half_range"]
                                                          + row[str(base)]["half_range"])
            table.append(row)
    speed = {str(w): spread([runs[(w, s)]["valid_history_tokens_per_s"] for s in seeds])
             for w in widths}
    lines = ["| L | task | " + " | ".join(f"head_width {w}" for w in widths) + " | "
             + " | ".join(f"{w} - {base} | within spread" for w in other) + " |",
             "|---:|---|" + "---|" * len(widths) + "---:|---|" * len(other)]
    for r in table:
        lines.append(f"| {r['L']} | {r['task']} | " + " | ".join(
            f"{r[str(w)]['mean']:.4f} ± {r[str(w)]['half_range']:.4f}" for w in widths)
            + " | " + " | ".join(f"{r[f'{w}_minus_{base}']:+.4f} | "
                                 f"{'yes' if r[f'{w}_within_spread'] else '**no**'}"
                                 for w in other) + " |")
    lines += ["", "Valid history tokens/s while training (steady state, mean ± half range "
              "over seeds): " + ", ".join(
                  f"head_width {w}: {speed[str(w)]['mean']:,.0f} ± "
                  f"{speed[str(w)]['half_range']:,.0f}" for w in widths)
              + "; " + ", ".join(f"{w} / {base}: {speed[str(w)]['mean'] / speed[str(base)]['mean']:.2f}x"
                                 for w in other)]
    result = {"benchmark": "head_width",
              "command": "python benchmarks/head_width.py " + " ".join(
                  sys.argv[1:] if argv is None else argv),
              "seeds": seeds, "widths": widths, "lengths": LENGTHS,
              "stca_train_overrides": overrides(widths[0], seeds[0])[:-2],
              "runs": {f"w{w}_s{s}": v for (w, s), v in runs.items()},
              "auc": table, "valid_history_tokens_per_s": speed,
              "markdown": "\n".join(lines)}
    write_result(result, args.json, load_start)
    print(result["markdown"])
    return result


if __name__ == "__main__":
    main()
