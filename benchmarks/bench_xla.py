"""STCA training step with XLA off vs on (train.jit_compile), over d and L, on this device.

    .venv/bin/python benchmarks/bench_xla.py [--rounds 6] [--grid 32x512,32x1024,...]

Why: `train.jit_compile=auto` decides whether the training step is XLA-compiled. This
measures what XLA buys for the train defaults (lazy Adam, the attention form training
uses) at each grid point d x L: an STCA model (4 heads, 3 layers, RankMixer head, 3 tasks,
float32) trained on one synthetic request batch (common.synthetic_batch: 16384 // L
requests of L events and 16 targets, the 16k-token budget of the results config) with
XLA off and on. The two ways of a point run in one process and take turns step by step
(bench_perf.round_robin) and keep their median step; the first call of each (trace, and
the XLA compile when on) is reported apart, since it is paid once per padded length.
Every point runs in its own subprocess. Prints a table; writes
benchmarks/results/bench_xla.json, which docs/performance.md quotes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from common import REPO, run_job, synthetic_batch, write_result

GRID = "32x512,32x1024,64x512,64x2048,128x1024,128x4096"
TOKENS, TARGETS = 16384, 16


def worker(job: dict) -> dict:
    from bench_perf import round_robin, train_step_fn
    from core.config import ModelConfig
    from pipeline.train import accelerator_present
    requests = max(1, TOKENS // job["length"])
    batch = synthetic_batch(requests, job["length"], TARGETS)
    cfg = ModelConfig(d_model=job["d"])
    cfg.validate()
    ways = {}
    for name, jit in (("off", False), ("on", True)):
        step = train_step_fn(cfg, jit=jit, optimizer="lazy_adam")
        ways[name] = lambda step=step: step(batch)["loss"].numpy()
    times = round_robin(ways, job["rounds"])
    return {"d": job["d"], "L": job["length"], "requests": requests, "targets": TARGETS,
            "device": "GPU / TPU" if accelerator_present() else "CPU",
            **{f"{w}_ms": round(1000 * times[w]["median_s"], 1) for w in ways},
            **{f"{w}_first_s": round(times[w]["first_s"], 1) for w in ways},
            "xla_speedup": round(times["off"]["median_s"] / times["on"]["median_s"], 3),
            # Steps after which the XLA compile has paid for itself (None: never).
            "break_even_steps": (round((times["on"]["first_s"] - times["off"]["first_s"])
                                       / (times["off"]["median_s"] - times["on"]["median_s"]))
                                 if times["on"]["median_s"] < times["off"]["median_s"]
                                 else None)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--grid", default=GRID, help="d x L points, comma separated")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results",
                                                  "bench_xla.json"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        import core  # noqa: F401  (sets the Keras environment before TensorFlow loads)
        print(json.dumps(worker(json.loads(args.worker))))
        return {}
    load_start = os.getloadavg()
    rows = []
    print(f"{'d':>4} {'L':>5} {'off ms':>8} {'on ms':>8} {'XLA x':>6} {'compile s':>9} "
          f"{'break-even steps':>16}", flush=True)
    for point in args.grid.split(","):
        d, length = (int(x) for x in point.split("x"))
        r = run_job(__file__, dict(d=d, length=length, rounds=args.rounds), args.timeout)
        if "error" in r:
            raise SystemExit(f"d={d} L={length}: {r['error']}")
        rows.append(r)
        print(f"{d:>4} {length:>5} {r['off_ms']:>8.1f} {r['on_ms']:>8.1f} "
              f"{r['xla_speedup']:>6.2f} {r['on_first_s']:>9.1f} "
              f"{str(r['break_even_steps'] or 'never'):>16}", flush=True)
    result = {"benchmark": "bench_xla",
              "command": "python benchmarks/bench_xla.py " + " ".join(
                  sys.argv[1:] if argv is None else argv),
              "tokens_per_batch": TOKENS, "rounds": args.rounds, "rows": rows}
    write_result(result, args.out, load_start)
    return result


if __name__ == "__main__":
    main()
