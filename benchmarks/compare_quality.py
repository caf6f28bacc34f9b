"""Quality before / after a training-speed change: the same runs of run_results.py, 3 seeds.

    .venv/bin/python benchmarks/compare_quality.py --before runs/results/synth \
        --after runs/results_fast/synth [--encoder stca] [--seeds 0,1,2]

Reads MODEL_DIR/{train_metrics.json, eval/eval_report.json} of `<encoder>_s<seed>` under
both roots (made by `benchmarks/run_results.py --out ...`, e.g. before and after the
throughput change) and reports, per length and task, AUC mean and half range over the
seeds, the difference of the means, and whether it lies within the seed spread (the
larger of the two half ranges); also training wall seconds. Writes JSON that
docs/performance.md quotes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from common import RESULTS, write_result


def _runs(root: str, encoder: str, seeds) -> list[dict]:
    out = []
    for seed in seeds:
        d = os.path.join(root, f"{encoder}_s{seed}")
        with open(os.path.join(d, "train_metrics.json")) as f:
            train = json.load(f)
        with open(os.path.join(d, "eval", "eval_report.json")) as f:
            report = json.load(f)
        out.append({"seed": seed, "train_seconds": train["wall_seconds"],
                    "targets_seen": train["targets_seen"], "report": report})
    return out


def _spread(values: list[float]) -> dict:
    return {"mean": sum(values) / len(values), "half_range": (max(values) - min(values)) / 2,
            "values": values}


def compare(before: list[dict], after: list[dict], tasks) -> list[dict]:
    rows = []
    lengths = [r["length"] for r in before[0]["report"]["rows"]]
    for length in lengths:
        for task in tasks:
            b, a = ([next(r for r in run["report"]["rows"] if r["length"] == length)[task]["auc"]
                     for run in runs] for runs in (before, after))
            b, a = _spread(b), _spread(a)
            diff = a["mean"] - b["mean"]
            rows.append({"length": length, "task": task, "before": b, "after": a,
                         "difference": diff,
                         "within_spread": abs(diff) <= max(b["half_range"], a["half_range"])})
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--encoder", default="stca")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--tasks", default="click,like")
    ap.add_argument("--out", default=str(RESULTS / "quality_throughput.json"))
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    before, after = (_runs(r, args.encoder, seeds) for r in (args.before, args.after))
    rows = compare(before, after, args.tasks.split(","))
    result = {"command": " ".join(["python", "benchmarks/compare_quality.py"]
                                  + (argv if argv is not None else sys.argv[1:])),
              "encoder": args.encoder, "seeds": seeds,
              "train_seconds": {"before": _spread([r["train_seconds"] for r in before]),
                                "after": _spread([r["train_seconds"] for r in after])},
              "targets_seen": {"before": [r["targets_seen"] for r in before],
                               "after": [r["targets_seen"] for r in after]},
              "rows": rows}
    for r in rows:
        print(f"L={r['length']:>5} {r['task']:<6} before {r['before']['mean']:.4f} "
              f"± {r['before']['half_range']:.4f}  after {r['after']['mean']:.4f} "
              f"± {r['after']['half_range']:.4f}  diff {r['difference']:+.4f}"
              f"{'' if r['within_spread'] else '  OUTSIDE the seed spread'}")
    t = result["train_seconds"]
    print(f"train seconds: before {t['before']['mean']:.0f}, after {t['after']['mean']:.0f}")
    return write_result(result, args.out)


if __name__ == "__main__":
    main()
