"""STCA training step in the reordered vs the projected attention form, over d and M.

    .venv/bin/python benchmarks/bench_attention_form.py [--length 512] [--rounds 6]
                                                        [--grid 32x16,32x32,...]

Why: `model.attention_form=auto` picks a form by the FLOP rule of model/flops.py
(projected once M (h - 1) > d). This measures whether the rule holds for the training
step (forward, backward, lazy Adam update) on this machine. Each grid point d x M is an
STCA model (4 heads, 3 layers, RankMixer head, 3 tasks, float32, XLA off) trained on one
synthetic request batch (common.synthetic_batch: 16384 // L requests of L events and M
targets) in each form; the two forms of a point run in one process and take turns step by
step (bench_perf.round_robin), and keep their median step. Every point runs in its own
subprocess. Prints a table; writes benchmarks/results/bench_attention_form.json, which
docs/model.md quotes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from common import REPO, run_job, synthetic_batch, write_result

GRID = "32x16,32x32,32x64,32x128,64x16,64x32,64x64"
FORMS = ("reordered", "projected")


def worker(job: dict) -> dict:
    from bench_perf import round_robin, train_step_fn
    from core.config import ModelConfig
    from model.flops import projected_attention_is_cheaper
    batch = synthetic_batch(16384 // job["length"], job["length"], job["targets"])
    ways = {}
    for form in FORMS:
        cfg = ModelConfig(d_model=job["d"], attention_form=form)
        cfg.validate()
        step = train_step_fn(cfg, optimizer="lazy_adam")
        ways[form] = lambda step=step: step(batch)["loss"].numpy()
    times = round_robin(ways, job["rounds"])
    return {"d": job["d"], "targets": job["targets"], "heads": cfg.num_heads,
            "rule_picks_projected": bool(projected_attention_is_cheaper(
                job["d"], cfg.num_heads, job["targets"])),
            **{f"{form}_ms": round(1000 * times[form]["median_s"], 1) for form in FORMS},
            "projected_over_reordered": round(times["projected"]["median_s"]
                                              / times["reordered"]["median_s"], 3)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--grid", default=GRID, help="d x M points, comma separated")
    ap.add_argument("--timeout", type=float, default=1200)
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results",
                                                  "bench_attention_form.json"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        import core  # noqa: F401  (sets the Keras environment before TensorFlow loads)
        print(json.dumps(worker(json.loads(args.worker))))
        return {}
    load_start = os.getloadavg()
    rows = []
    for point in args.grid.split(","):
        d, targets = (int(x) for x in point.split("x"))
        rows.append(run_job(__file__, dict(d=d, targets=targets, length=args.length,
                                           rounds=args.rounds), args.timeout))
        r = rows[-1]
        if "error" in r:
            raise SystemExit(f"d={d} M={targets}: {r['error']}")
        rule = "projected" if r["rule_picks_projected"] else "reordered"
        print(f"d={d:<4} M={targets:<4} rule: {rule:<10} reordered {r['reordered_ms']:>7.1f} ms"
              f"  projected {r['projected_ms']:>7.1f} ms  projected / reordered "
              f"{r['projected_over_reordered']:.2f}", flush=True)
    result = {"benchmark": "bench_attention_form",
              "command": "python benchmarks/bench_attention_form.py " + " ".join(
                  sys.argv[1:] if argv is None else argv),
              "length": args.length, "requests": 16384 // args.length, "rounds": args.rounds,
              "rows": rows}
    write_result(result, args.out, load_start)
    return result


if __name__ == "__main__":
    main()
