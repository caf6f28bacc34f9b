"""Performance report: matmul limit, STCA FLOP fraction, transformer ratio, RLB, XLA, profile.

    .venv/bin/python benchmarks/bench_perf.py            # L 1024/2048/4096, 4 requests x 16
    .venv/bin/python benchmarks/bench_perf.py --quick    # 2 requests, fewer rounds (~3 min)

Model: STCA at d_model=128 (4 heads, 3 layers, RankMixer head, 3 tasks), float32, Adam
(the train.optimizer default) with clip_norm 1, on synthetic request batches (--requests
requests x 16 targets, full histories of L events) from common.synthetic_batch.
Compared ways run in one process and take turns step by step (round robin), so load from
other jobs hits all of them alike. Each way keeps its fastest round (other jobs only slow
a call down; medians are in the JSON too); ratios are of those.

  matmul      dense float32 tf.matmul n x n (2 n^3 FLOP), GFLOP/s: the machine's limit
  flops       STCA training step at each L: dense Adam with XLA off and on, and the train
              defaults (lazy Adam; XLA as train.jit_compile=auto decides on this device:
              off on CPU): achieved GFLOP/s = 3 x the analytic forward FLOPs
              (model/flops.py) / step time, as a fraction of matmul
  transformer STCA vs model.encoder=transformer (same d, heads, layers); above
              --max-attention-gb the transformer runs on fewer (request, target) sequences
              and its time is scaled linearly (common.fitting_sequences)
  rlb         the same STCA model, request-grouped (history once per request, 16 targets)
              vs point-wise (model.rlb=false: 16 one-target copies of each request);
              targets per second, XLA off and on
  (largest L) model.precision=mixed_bfloat16, and lazy Adam alone (XLA off)
  profile     TF profiler trace of the XLA-off step at the largest L: op time by type,
              by name group and by scope (benchmarks/profile_ops.py)

Every section runs in its own subprocess. Writes benchmarks/results/bench_perf.json and .png.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import aims
from common import (REPO, TASKS, fitting_sequences, machine_info, run_job, synthetic_batch,
                    transformer_attention_bytes, write_json)

D_MODEL, TARGETS = 128, 16


# --------------------------------------------------------------------------- worker side
def model_cfg(encoder: str = "stca", rlb: bool = True, precision: str = "float32"):
    from core.config import ModelConfig
    cfg = ModelConfig(encoder=encoder, d_model=D_MODEL, rlb=rlb, precision=precision)
    cfg.validate()
    return cfg


def train_step_fn(cfg, jit: bool = False, optimizer: str = "adam"):
    """A fresh model's tf.function train step; `optimizer` as train.optimizer (the
    training CLI's own optimizer, constant rate 1e-3), clip_norm 1."""
    import tensorflow as tf
    from model import build_model
    from core.config import TrainConfig
    from pipeline.train import make_optimizer
    net = build_model(cfg, TASKS, clip_norm=1.0)
    train = TrainConfig(optimizer=optimizer, learning_rate=1e-3, warmup_steps=0, decay="none")
    net.compile(optimizer=make_optimizer(train, cfg.precision))
    net.optimizer.build(net.trainable_variables)
    return tf.function(net.train_step, jit_compile=jit)


def matmul_fn(n: int, k: int | None = None, m: int | None = None):
    """A [n, k] x [k, m] float32 product (square n x n by default) as a callable."""
    import tensorflow as tf
    a, b = tf.random.normal([n, k or n]), tf.random.normal([k or n, m or n])
    fn = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    return lambda: fn().numpy()


def round_robin(ways: dict, rounds: int) -> dict:
    """{name: callable} -> {name: {"best_s", "median_s", "times_s", "first_s"}}, round robin."""
    out = {}
    for name, fn in ways.items():  # first call: tracing / XLA compile, not timed
        start = time.perf_counter()
        fn()
        out[name] = {"first_s": time.perf_counter() - start, "times_s": []}
    for _ in range(rounds):
        for name, fn in ways.items():
            start = time.perf_counter()
            fn()
            out[name]["times_s"].append(time.perf_counter() - start)
    for row in out.values():
        row["median_s"] = sorted(row["times_s"])[len(row["times_s"]) // 2]
        row["best_s"] = min(row["times_s"])  # other jobs only slow a call down
    return out


def _step(fn, batch):
    return lambda: fn(batch)["loss"].numpy()


def default_xla() -> bool:
    """Whether the train defaults (train.jit_compile=auto) XLA-compile the step here."""
    from core.config import TrainConfig
    from pipeline.train import accelerator_present
    return TrainConfig().use_xla(accelerator=accelerator_present())[0]


def worker(job: dict) -> dict:
    section, rounds, requests = job["section"], job["rounds"], job["requests"]
    if section == "flops":
        ways = {"matmul": matmul_fn(job["matmul_n"])}
        # plain: the defaults before the throughput work (dense Adam, XLA off); jit: dense
        # Adam, XLA on; default: today's train defaults (lazy Adam, XLA as auto decides).
        steps = {"plain": train_step_fn(model_cfg()),
                 "jit": train_step_fn(model_cfg(), jit=True),
                 "default": train_step_fn(model_cfg(), jit=default_xla(),
                                          optimizer="lazy_adam")}
        for length in job["lengths"]:
            batch = synthetic_batch(requests, length, TARGETS)
            for way, fn in steps.items():
                ways[f"{way}@{length}"] = _step(fn, batch)
        # At the largest L: bfloat16 compute, and lazy Adam alone (XLA off).
        ways["bf16"] = _step(train_step_fn(model_cfg(precision="mixed_bfloat16")), batch)
        ways["lazy_adam"] = _step(train_step_fn(model_cfg(), optimizer="lazy_adam"), batch)
        return dict(round_robin(ways, rounds), default_xla=default_xla())
    if section == "transformer":
        return round_robin({"stca": _step(train_step_fn(model_cfg()), synthetic_batch(
                                requests, job["length"], TARGETS)),
                            "transformer": _step(train_step_fn(model_cfg("transformer")),
                                                 synthetic_batch(1, job["length"],
                                                                    job["sequences"]))}, rounds)
    if section == "rlb":
        batch = synthetic_batch(requests, job["length"], TARGETS)
        return round_robin({f"{name}{'_xla' if jit else ''}": _step(
            train_step_fn(model_cfg(rlb=name == "rlb"), jit=jit), batch)
            for jit in (False, True) for name in ("rlb", "pointwise")}, rounds)
    if section == "profile":
        import tensorflow as tf
        import profile_ops
        step = _step(train_step_fn(model_cfg()), synthetic_batch(requests, job["length"],
                                                                    TARGETS))
        step(), step()
        with tempfile.TemporaryDirectory() as logdir:
            tf.profiler.experimental.start(logdir)
            for _ in range(job["steps"]):
                step()
            tf.profiler.experimental.stop()
            return profile_ops.summarize(logdir, job["steps"])
    raise ValueError(f"unknown section {section!r}")


# --------------------------------------------------------------------------- driver side
def train_flops(cfg, length: int, requests: int, targets: int) -> float:
    from model.flops import encoder_flops
    return 3.0 * requests * encoder_flops(cfg, length, targets, len(TASKS))["total"]


def run(job: dict, timeout: float) -> dict:
    result = run_job(__file__, job, timeout)
    if "error" in result:
        raise RuntimeError(f"section {job['section']} failed: {result['error']}")
    return result


def measure(args) -> dict:
    from core.config import ModelConfig
    base = {"rounds": args.rounds, "requests": args.requests}
    report = {"flops": [], "transformer": [], "optimizations": []}
    timing = run(dict(base, section="flops", lengths=args.lengths, matmul_n=args.matmul_n),
                 args.timeout)
    n = args.matmul_n
    matmul = report["matmul"] = dict(timing["matmul"], n=n,
                                     gflops=2 * n**3 / timing["matmul"]["best_s"] / 1e9)
    report["default_xla"] = timing["default_xla"]
    for length in args.lengths:
        flops = train_flops(model_cfg(), length, args.requests, TARGETS)
        row = {"L": length, "requests": args.requests, "targets": TARGETS,
               "train_flops": flops}
        for way in ("plain", "jit", "default"):
            t = timing[f"{way}@{length}"]
            row[way] = dict(t, gflops=flops / t["best_s"] / 1e9,
                            fraction=flops / t["best_s"] / 1e9 / matmul["gflops"])
        row["jit_speedup"] = row["plain"]["best_s"] / row["jit"]["best_s"]
        report["flops"].append(row)
    heads, layers = ModelConfig().num_heads, ModelConfig().num_layers
    for length in args.transformer_lengths:
        full = args.requests * TARGETS
        limit = args.max_attention_gb * 2**30
        fits = ([full] if transformer_attention_bytes(full, length, heads, layers) <= limit
                else fitting_sequences(full, length, heads, layers, limit))
        if not fits:
            report["transformer"].append({"L": length, "skipped": "one sequence does not fit"})
            continue
        sequences = max(fits)
        t = run(dict(base, section="transformer", length=length, sequences=sequences,
                     rounds=min(args.rounds, 3)), args.timeout)  # the transformer is slow
        scale = full / sequences
        report["transformer"].append({
            "L": length, "stca_s": t["stca"]["best_s"], "measured_sequences": sequences,
            "scale": scale, "transformer_s": t["transformer"]["best_s"] * scale,
            "ratio": t["transformer"]["best_s"] * scale / t["stca"]["best_s"],
            "flop_ratio": train_flops(model_cfg("transformer"), length, args.requests, TARGETS)
            / train_flops(model_cfg(), length, args.requests, TARGETS), "timing": t})
    t = run(dict(base, section="rlb", length=args.rlb_length), args.timeout)
    targets = args.requests * TARGETS
    report["rlb"] = {
        "L": args.rlb_length, "requests": args.requests, "targets_per_step": targets,
        "rlb_targets_per_s": targets / t["rlb"]["best_s"],
        "pointwise_targets_per_s": targets / t["pointwise"]["best_s"],
        "ratio": t["pointwise"]["best_s"] / t["rlb"]["best_s"],
        "xla": {"rlb_targets_per_s": targets / t["rlb_xla"]["best_s"],
                "pointwise_targets_per_s": targets / t["pointwise_xla"]["best_s"],
                "ratio": t["pointwise_xla"]["best_s"] / t["rlb_xla"]["best_s"]},
        "flop_ratio": train_flops(model_cfg(rlb=False), args.rlb_length, args.requests, TARGETS)
        / train_flops(model_cfg(), args.rlb_length, args.requests, TARGETS), "timing": t}
    report["profile"] = dict(run(dict(base, section="profile", length=args.lengths[-1],
                                      steps=args.profile_steps), args.timeout),
                             L=args.lengths[-1], requests=args.requests, xla=False)
    top = report["flops"][-1]
    for way, name, kept in (
            ("bf16", "model.precision=mixed_bfloat16 (AMX / AVX512-BF16 matmuls)",
             "existing opt-in model.precision; not made the default (changes numerics)"),
            ("lazy_adam", "train.optimizer=lazy_adam (row-sparse embedding updates instead of "
                          "Adam's dense decay of every table row), XLA off",
             "the train.optimizer default")):
        t = timing[way]
        report["optimizations"].append({
            "name": name, "L": top["L"], "before_s": {top["L"]: top["plain"]["best_s"]},
            "after_s": {top["L"]: t["best_s"]},
            "speedup": {top["L"]: top["plain"]["best_s"] / t["best_s"]},
            "pays": top["plain"]["best_s"] / t["best_s"] > 1.05, "kept": kept,
            "timing": t})
    speedups = [r["jit_speedup"] for r in report["flops"]]
    report["optimizations"].append({
        "name": "XLA: tf.function(train_step, jit_compile=True) (train.jit_compile)",
        "before_s": {r["L"]: r["plain"]["best_s"] for r in report["flops"]},
        "after_s": {r["L"]: r["jit"]["best_s"] for r in report["flops"]},
        "speedup": {r["L"]: r["jit_speedup"] for r in report["flops"]},
        "compile_s": {r["L"]: r["jit"]["first_s"] for r in report["flops"]},
        "pays": min(speedups) > 1.05,
        "kept": "train.jit_compile=auto (the default) turns it on for GPUs / TPUs and off on "
                "CPU (slower there at every d and L of bench_xla) and under multi_worker; "
                "train.jit_compile=true forces it"})
    report["optimizations"].append({
        "name": f"the train defaults: lazy Adam, XLA {'on' if report['default_xla'] else 'off'}"
                " (vs dense Adam, XLA off)",
        "before_s": {r["L"]: r["plain"]["best_s"] for r in report["flops"]},
        "after_s": {r["L"]: r["default"]["best_s"] for r in report["flops"]},
        "speedup": {r["L"]: r["plain"]["best_s"] / r["default"]["best_s"]
                    for r in report["flops"]},
        "pays": min(r["plain"]["best_s"] / r["default"]["best_s"] for r in report["flops"]) > 1.05,
        "kept": "default"})
    return report


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/bench_perf.json"))
    p.add_argument("--max-attention-gb", type=float, default=3.0)
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.lengths = [1024, 2048, 4096]
    if args.quick:
        args.requests, args.rounds, args.matmul_n, args.profile_steps = 2, 5, 2048, 2
        args.transformer_lengths, args.rlb_length = [1024, 4096], 1024
    else:
        args.requests, args.rounds, args.matmul_n, args.profile_steps = 4, 7, 4096, 3
        args.transformer_lengths, args.rlb_length = [512, 1024, 2048, 4096], 2048
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import core  # noqa: F401  (sets the Keras environment before TensorFlow loads)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    started, info = time.time(), machine_info()
    report = {"command": " ".join(["python", "benchmarks/bench_perf.py"] + (argv or sys.argv[1:])),
              "machine": info, "quick": args.quick,
              "workload": {"d_model": D_MODEL, "num_heads": model_cfg().num_heads,
                           "num_layers": model_cfg().num_layers,
                           "targets_per_request": TARGETS, "requests_per_step": args.requests,
                           "optimizer": "adam (plain, jit); lazy_adam (default)",
                           "precision": "float32", "rounds": args.rounds,
                           "tasks": list(TASKS)}}
    report.update(measure(args))
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    report["wall_seconds"] = time.time() - started
    out = write_json(report, args.out)
    report = json.loads(out.read_text())  # as the report reads it (string keys)
    from report import macro, plots
    plots.bench_perf(report, out.with_suffix(".png"))
    for section in ("flops", "transformer", "rlb", "optimizations", "profile"):
        print(f"\n[{section}]\n{macro('sections/bench_perf.md.j2', section, report)}")
    aims.print_rows(aims.check("bench_perf", report))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
