"""Training-step time, peak memory and achieved FLOP/s of every encoder vs history length.

    .venv/bin/python benchmarks/bench_encoders.py            # L = 256 ... 8192
    .venv/bin/python benchmarks/bench_encoders.py --quick    # L = 256, 1024, 4096, 8192
    .venv/bin/python benchmarks/bench_encoders.py --lengths 512,2048 --encoders stca,din
    .venv/bin/python benchmarks/bench_encoders.py --runs 2        # best of 2 per row
    .venv/bin/python benchmarks/bench_encoders.py --encoders stca,longer \
        --longer-merge-mode innertrans --out /tmp/innertrans.json   # LONGER variants

Workload: a fixed batch of `--requests` requests (default 4) per step, each with a full
history of L events and `--targets` targets (default 16): the request-level batch of
Request Level Batching. Default model sizes (d=64, 4 heads, 3 layers, RankMixer head,
3 tasks), float32, Adagrad (sparse embedding updates; Adam's dense update of the 200k-row
item table would add a constant ~0.1 s per step on this class of machine).

Every configuration runs in a fresh subprocess with TensorFlow's BFC allocator on the CPU
(TF_CPU_ALLOCATOR_USE_BFC=true), so tf.config.experimental.get_memory_info gives the peak
bytes allocated during the timed steps; "step peak" is that peak minus the memory held
before the step (weights, optimizer slots, the batch): the activations and temporaries of
one training step. ru_maxrss of the process is reported too.

LONGER runs with its config defaults (model.longer: merge_k K=4 concat, recent_k k=32,
self_attn_layers 2; the workload records them). Per row the worker also measures the
serving split on the same batch: encode_user (ms for the `--requests` users), then
score_candidates of the `--targets` candidates per request from that cache (ms), and the
encoder's cache size per user (float32 bytes, without the user tokens every encoder shares).

STCA and LONGER run with and without activation recomputation. With --runs R every
configuration runs R times (in R passes over all of them, so a burst of load from other
jobs on a shared machine does not hit every run of one row) and the row keeps its fastest
run (other jobs can only slow a run down); all runs' step times are kept in the JSON.

The transformer baseline's attention memory is estimated as
sequences * h * (L+1)^2 * 4 B * (2N + 2); above --max-attention-gb the full batch is
skipped, and it is measured instead on the largest power-of-two number of
(request, target) sequences that fits, with the time scaled linearly to the full batch
(its targets share no work, so its cost is linear in the number of sequences). Such rows
are marked "scaled"; if even one sequence does not fit, the row is "skipped".

Writes benchmarks/results/bench_encoders.json (machine info, rows) and a log-log plot
benchmarks/results/bench_encoders.png (report/plots.py), and prints every row and the aims
of benchmarks/aims.yaml.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import aims
from common import (
    REPO,
    TASKS,
    fitting_sequences,
    machine_info,
    run_job,
    synthetic_batch,
    transformer_attention_bytes,
    write_json,
)

import core  # noqa: F401  (sets the Keras environment before TensorFlow loads)
from model import registry

FULL_LENGTHS = (256, 512, 1024, 2048, 4096, 8192)
QUICK_LENGTHS = (256, 1024, 4096, 8192)


# --------------------------------------------------------------------------- worker
def model_config(job: dict):
    """The benchmarked ModelConfig: defaults, the job's encoder / recompute / precision and
    the --longer-* overrides."""
    from core.config import LongerConfig, ModelConfig
    cfg = ModelConfig(encoder=job["encoder"], recompute=job["recompute"],
                      precision=job["precision"], longer=LongerConfig(**job["longer"]))
    cfg.validate()
    return cfg


def run_worker(job: dict) -> dict:
    import resource

    import tensorflow as tf
    import tf_keras as keras

    from model import build_model

    net = build_model(model_config(job), TASKS)
    net.compile(optimizer=keras.optimizers.Adagrad(0.01))
    batch = synthetic_batch(job["requests"], job["length"], job["targets"])
    step = tf.function(net.train_step)
    start = time.perf_counter()
    step(batch)["loss"].numpy()
    first_step_s = time.perf_counter() - start
    step(batch)["loss"].numpy()
    try:
        held = tf.config.experimental.get_memory_info("CPU:0")["current"]
        tf.config.experimental.reset_memory_stats("CPU:0")
    except (ValueError, tf.errors.OpError):
        held = None
    times = []
    while len(times) < job["max_steps"] and (len(times) < job["min_steps"]
                                             or sum(times) < job["min_seconds"]):
        start = time.perf_counter()
        step(batch)["loss"].numpy()
        times.append(time.perf_counter() - start)
    peak = None if held is None else tf.config.experimental.get_memory_info("CPU:0")["peak"]
    # Serving is measured once per encoder and length (not for recompute rows, which serve
    # alike, nor for a transformer measured on fewer sequences than the batch).
    serving = ({} if job["recompute"] or job["scale"] != 1.0
               else measure_serving(net, batch[0], job["min_steps"]))
    return {"step_times_s": times, "first_step_s": first_step_s,
            "step_peak_bytes": None if peak is None else peak - held,
            "held_bytes": held,
            "maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            **serving}


def measure_serving(net, inputs, repeats: int) -> dict:
    """Median encode_user / score_candidates times and the encoder cache bytes per user."""
    import tensorflow as tf

    from core import features
    user = {k: inputs[k] for k in features.USER_INPUTS}
    candidates = {k: inputs[k] for k in features.CANDIDATE_INPUTS}
    encode, score = tf.function(net.encode_user), tf.function(net.score_candidates)
    cache = encode(user)
    score(cache, candidates)
    timings = {}
    for name, fn in (("encode_user_s", lambda: encode(user)),
                     ("score_candidates_s", lambda: score(cache, candidates))):
        runs = []
        for _ in range(max(repeats, 3)):
            start = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), fn())
            runs.append(time.perf_counter() - start)
        timings[name] = sorted(runs)[len(runs) // 2]
    requests = int(inputs["hist_len"].shape[0])
    encoder_keys = set(net.encoder.cache_spec())
    timings["cache_bytes_per_user"] = sum(
        int(tf.size(cache[k])) * 4 for k in encoder_keys) / requests
    return timings


# --------------------------------------------------------------------------- planning
def plan_jobs(args) -> list[dict]:
    from core.config import ModelConfig
    cfg = ModelConfig()
    base = dict(requests=args.requests, targets=args.targets, precision=args.precision,
                longer=args.longer,
                min_steps=args.min_steps, max_steps=args.max_steps,
                min_seconds=args.min_seconds, recompute=False, scale=1.0)
    limit = args.max_attention_gb * 2**30
    jobs = []
    for length in args.lengths:
        for encoder in args.encoders:
            job = dict(base, encoder=encoder, length=length)
            if encoder == "transformer":
                full = args.requests * args.targets
                estimate = transformer_attention_bytes(full, length, cfg.num_heads, cfg.num_layers)
                job["attention_estimate_bytes"] = estimate
                if estimate > limit:
                    fits = fitting_sequences(full, length, cfg.num_heads, cfg.num_layers, limit)
                    if not fits:
                        one = transformer_attention_bytes(1, length, cfg.num_heads,
                                                          cfg.num_layers)
                        jobs.append(dict(job, skipped=f"attention estimate {one / 2**30:.1f} GiB "
                                                      "for one sequence (full batch "
                                                      f"{estimate / 2**30:.0f} GiB) > "
                                                      f"{args.max_attention_gb} GiB"))
                        continue
                    sequences = max(fits)
                    job.update(requests=max(1, sequences // args.targets),
                               targets=min(sequences, args.targets), scale=full / sequences,
                               note=f"full batch estimate {estimate / 2**30:.1f} GiB > "
                                    f"{args.max_attention_gb} GiB: measured on {sequences} "
                                    f"sequence(s), time x{full // sequences}")
            jobs.append(job)
            if encoder in registry.recompute_encoders() and not args.no_recompute:
                jobs.append(dict(job, recompute=True))
    return jobs


# --------------------------------------------------------------------------- reporting
def finish_row(job: dict, result: dict) -> dict:
    from model.flops import encoder_flops
    row = {k: job[k] for k in ("encoder", "length", "recompute", "requests", "targets", "scale")}
    for key in ("skipped", "note", "attention_estimate_bytes"):
        if key in job:
            row[key] = job[key]
    row.update(result)
    if "step_times_s" in result:
        times = sorted(result["step_times_s"])
        row["step_s"] = times[len(times) // 2] * job["scale"]
        forward = encoder_flops(model_config(dict(job, recompute=False)), job["length"],
                                job["targets"], len(TASKS))["total"]
        row["train_flops_per_step"] = 3 * forward * job["requests"] * job["scale"]
        row["achieved_gflops"] = row["train_flops_per_step"] / row["step_s"] / 1e9
    return row


def label(row) -> str:
    return row["encoder"] + (" +recompute" if row["recompute"] else "")


# --------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="L in %s, fewer timed steps"
                   % ",".join(map(str, QUICK_LENGTHS)))
    p.add_argument("--lengths", type=lambda s: [int(v) for v in s.split(",") if v],
                   help="comma-separated history lengths")
    p.add_argument("--encoders", type=lambda s: [v for v in s.split(",") if v],
                   default=list(registry.encoder_names()))
    p.add_argument("--out", default=str(REPO / "benchmarks/results/bench_encoders.json"),
                   help="JSON path; the PNG is written next to it")
    p.add_argument("--requests", type=int, default=4, help="requests per step")
    p.add_argument("--targets", type=int, default=16, help="targets per request (m)")
    p.add_argument("--precision", default="float32")
    p.add_argument("--max-attention-gb", type=float, default=6.0)
    p.add_argument("--no-recompute", action="store_true",
                   help="skip the STCA / LONGER +recompute runs")
    p.add_argument("--timeout", type=float, default=900.0, help="per configuration, seconds")
    p.add_argument("--runs", type=int, default=1,
                   help="run every configuration this many times (in passes over all of them) "
                        "and keep the fastest: on a shared machine other jobs only slow a run")
    p.add_argument("--longer-merge-k", type=int, help="model.longer.merge_k (default 4)")
    p.add_argument("--longer-merge-mode", choices=("concat", "innertrans"))
    p.add_argument("--longer-recent-k", type=int, help="model.longer.recent_k (default 32)")
    p.add_argument("--longer-layers", type=int, help="model.longer.self_attn_layers")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.lengths is None:
        args.lengths = list(QUICK_LENGTHS if args.quick else FULL_LENGTHS)
    args.min_steps, args.max_steps, args.min_seconds = (2, 3, 1.0) if args.quick else (3, 7, 3.0)
    unknown = set(args.encoders) - set(registry.encoder_names())
    if unknown:
        p.error(f"unknown encoders {sorted(unknown)}; "
                f"choose from {', '.join(registry.encoder_names())}")
    if args.runs < 1:
        p.error("--runs must be >= 1")
    from core.config import LongerConfig
    longer = dataclasses.asdict(LongerConfig())
    for key, value in (("merge_k", args.longer_merge_k), ("merge_mode", args.longer_merge_mode),
                       ("recent_k", args.longer_recent_k),
                       ("self_attn_layers", args.longer_layers)):
        if value is not None:
            longer[key] = value
    args.longer = longer
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0
    info = machine_info()
    jobs = plan_jobs(args)
    best, times, started = [None] * len(jobs), [[] for _ in jobs], time.time()
    for run in range(1, args.runs + 1):
        for i, job in enumerate(jobs):
            row = finish_row(job, {} if "skipped" in job else run_job(__file__, job, args.timeout))
            previous = best[i]
            if previous is None or ("step_s" in row and (
                    "step_s" not in previous or row["step_s"] < previous["step_s"])):
                best[i] = row
            if "step_s" in row:
                times[i].append(row["step_s"])
            status = (f"{row['step_s']:.3f} s" if "step_s" in row
                      else row.get("skipped") or row.get("error"))
            print(f"[run {run}/{args.runs} {i + 1}/{len(jobs)} {time.time() - started:5.0f}s] "
                  f"{label(row):22s} L={row['length']:5d} {status}", flush=True)
    rows = [dict(row, run_step_s=t) if t else row for row, t in zip(best, times)]
    report = {"command": " ".join([pathlib.Path(sys.executable).name,
                                   "benchmarks/bench_encoders.py"] + (argv or sys.argv[1:])),
              "machine": info, "workload": {
                  "requests_per_step": args.requests, "targets_per_request": args.targets,
                  "tasks": list(TASKS), "precision": args.precision, "optimizer": "adagrad",
                  "model": "defaults: d_model=64, num_heads=4, num_layers=3, rankmixer head",
                  "longer": args.longer, "runs": args.runs,
                  "max_attention_gb": args.max_attention_gb},
              "wall_seconds": time.time() - started, "rows": rows}
    out = write_json(report, args.out)
    from report import macro, plots
    plots.bench_encoders(rows, out.with_suffix(".png"))
    print(macro("sections/bench_encoders.md.j2", "detail", rows))
    aims.print_rows(aims.check("bench_encoders", report))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
