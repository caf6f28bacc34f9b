"""Training throughput of the results config (d = 32) before / after each change, side by side.

    .venv/bin/python benchmarks/bench_train.py [--quick] [--data DIR] [--steps 200]
                                               [--rounds 1] [--before-commit c6a3be9]

Every variant is the same `stca train` run (the synthetic results config of
benchmarks/run_results.py, defined in results_config.py: STCA, d = 32, 3 layers,
Beta(0.35, 1.5) lengths on [32, 1024], 16k-token budget) with a few overrides, run as its
own process, one after another, in `--rounds` interleaved rounds. From each run's
train_metrics.json it reports the steady state (every step after the first one of each
padded length, input wait included): padded and valid history tokens/s, and the first-step
cost per padded length (trace, plus the XLA compile of that shape when XLA is on). Ratios
are against the "before" variant, the code and defaults before the throughput work
(--before-commit: dense Adam, no XLA, results-config buckets).

Prints a table and writes JSON that docs/performance.md quotes.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import common
import results_config  # the results config and its data
from common import BEFORE_COMMIT, median, source_tree, write_result

REPO = str(common.REPO)
FINE_BUCKETS = "train.bucket_boundaries=[64,96,128,192,256,384,512,768,1024]"
OLD_BUCKETS = "train.bucket_boundaries=[128,256,512,1024]"  # the results config's before
LAZY_FINE = ["train.optimizer=lazy_adam", "train.jit_compile=false", FINE_BUCKETS]
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
    "lazy_xla": ("lazy Adam, XLA on (train.jit_compile=auto picks it on GPUs; on CPU it is off)",
                 ["train.optimizer=lazy_adam", "train.jit_compile=true", OLD_BUCKETS]),
    "lazy_fine": ("lazy Adam, XLA off, 9 buckets (the results config now; STCA trains in "
                  "the reordered attention form under model.attention_form=auto)",
                  LAZY_FINE),
    "lazy_fine_projected": ("lazy Adam, XLA off, 9 buckets, the projected attention form "
                            "(what auto picked for training at d=32, M=16 before)",
                            LAZY_FINE + ["model.attention_form=projected"]),
    "lazy_xla_fine": ("lazy Adam, XLA on, 9 buckets",
                      ["train.optimizer=lazy_adam", "train.jit_compile=true", FINE_BUCKETS]),
    # A/B of a later model change: run with --before-commit set to the commit before it.
    "before_lazy_fine": ("the code of --before-commit with lazy_fine's overrides",
                         LAZY_FINE),
}


def base_overrides(steps: int) -> list[str]:
    """The synthetic results config, minus what the variants set (optimizer, XLA, buckets),
    at `steps` steps."""
    s = results_config.settings("synth", quick=False)
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
                          *results_config.sets(overrides)], check=True, cwd=tree,
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
        row["history_tokens_per_s"] = round(median(rates[1:] or rates), 1)
    return row


# The op types of matrix products in a TF profile of the CPU step (oneDNN's _Mkl* kernels).
MATMUL_OPS = ("_MklMatMul", "_MklBatchMatMulV2", "_MklEinsum", "_MklFusedMatMul", "MatMul",
              "BatchMatMulV2", "Einsum")
# (rows, inner, cols) of the d = 32 step's matrix products (event FFN, view FFN, head) and a
# large square one: the matmul rate each shape reaches on this machine.
MATMUL_SHAPES = ((16384, 32, 64), (16384, 64, 32), (4096, 128, 256), (2048, 2048, 2048))


def profile_steps(lengths, budget: int, slots: int, steps: int = 3) -> dict:
    """Where a step of the results config's model goes (lazy Adam, XLA off; TF profiler op
    time): at each L, a budget-sized batch of full histories with `slots` target slots,
    4-12 of them valid (as the synthetic log's requests), and the share of matrix
    products. If every other op took no time, a step would be at most 1 / share faster."""
    import tensorflow as tf  # lazy: only this part of the benchmark uses TF in-process
    import profile_ops
    from bench_perf import _step, matmul_fn, round_robin, train_step_fn
    from common import synthetic_batch
    from core.config import load_config
    cfg = load_config(None, results_config.settings("synth", quick=False)["model"])
    step_fn = train_step_fn(cfg.model, optimizer="lazy_adam")
    rows = []
    for length in lengths:
        requests = max(1, budget // length)
        valid = [min(slots, 4 + i % 9) for i in range(requests)]
        step = _step(step_fn, synthetic_batch(requests, length, slots, tgt_len=valid))
        seconds = round_robin({"step": step}, rounds=8)["step"]["median_s"]
        with tempfile.TemporaryDirectory() as logdir:
            tf.profiler.experimental.start(logdir)
            for _ in range(steps):
                step()
            tf.profiler.experimental.stop()
            summary = profile_ops.summarize(logdir, steps, top=40)
        share = sum(r["share"] for r in summary["by_type"] if r["op"] in MATMUL_OPS)
        rows.append({"L": length, "requests": requests, "target_slots": slots,
                     "valid_targets": sum(valid), "step_ms": 1e3 * seconds,
                     "valid_tokens_per_s": requests * length / seconds,
                     "op_ms_per_step": summary["op_ms_per_step"], "matmul_share": share,
                     "by_type": summary["by_type"][:10], "by_scope": summary["by_scope"]})
        print(f"profile L={length}: step {rows[-1]['step_ms']:.1f} ms, matmul share "
              f"{share:.0%}", flush=True)
    smallest = min(r["matmul_share"] for r in rows)
    products = round_robin({shape: matmul_fn(*shape) for shape in MATMUL_SHAPES}, rounds=30)
    return {"model": {"d_model": cfg.model.d_model, "num_heads": cfg.model.num_heads,
                      "num_layers": cfg.model.num_layers, "head_width": cfg.model.head_width},
            "token_budget": budget, "rows": rows, "smallest_matmul_share": smallest,
            "max_speedup_if_only_matmuls": 1 / smallest,
            "matmul_gflops": [{"shape": list(s), "gflops": 2 * s[0] * s[1] * s[2]
                               / products[s]["median_s"] / 1e9} for s in MATMUL_SHAPES]}


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
    ap.add_argument("--profile-lengths", default="64,256,1024",
                    help="L of the op-time profile of the step ('' skips it)")
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results",
                                                  "bench_train.json"))
    args = ap.parse_args(argv)
    steps = args.steps or (80 if args.quick else 200)
    data = args.data
    if data is None:
        s = results_config.settings("synth", quick=args.quick)
        data = results_config.prepare_data("synth", args.workdir, s, pointwise=False)["request"]
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
        padded = median([x["history_tokens_per_s"] for x in runs[n]])
        valid = median([x.get("valid_history_tokens_per_s") or x["history_tokens_per_s"]
                         * fraction[FINE_BUCKETS in VARIANTS[n][1]] for x in runs[n]])
        rows.append({"variant": n, "what": VARIANTS[n][0], "overrides": VARIANTS[n][1],
                     "history_tokens_per_s": padded, "valid_history_tokens_per_s": valid,
                     "wall_seconds": median([x["wall_seconds"] for x in runs[n]]),
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
    if args.profile_lengths:
        lazy_fine = next((r for r in rows if r["variant"] == "lazy_fine"), None)
        result["profile"] = profile_steps(
            [int(x) for x in args.profile_lengths.split(",")],
            results_config.settings("synth", quick=args.quick)["budget"], slots=16)
        if lazy_fine is not None:  # the most the aim's ratio could reach by removing ops
            result["profile"]["lazy_fine_ratio_bound"] = (
                lazy_fine["valid_ratio"] * result["profile"]["max_speedup_if_only_matmuls"])
    return write_result(result, args.out, load_start)


if __name__ == "__main__":
    main()
