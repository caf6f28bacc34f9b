"""Serving latency of the exported SavedModel: shared user side vs per-candidate copies.

    .venv/bin/python benchmarks/bench_serving.py          # L: 1024, 4096, 10240; m: 64, 256, 1024
    .venv/bin/python benchmarks/bench_serving.py --quick  # L: 1024, 4096; m: 64, 256

The default model (d=64, 4 heads, 3 layers, RankMixer head, 3 tasks), freshly initialised
(latency does not depend on the weights), is exported by `serving.export.export_model`
twice (float32 and bfloat16 cache) and loaded in this process with tf.saved_model.load;
each signature is called directly (no RPC, no JSON/proto encoding). One request (B=1)
with a full history of L events and m candidates, built by the client's request builders.
After --warmup calls of each way, --repeats timed calls of each give p50 and p99 (with 20
repeats p99 is close to the maximum); the ways take turns call by call, so load from
other processes on a shared machine affects all of them alike.

Ways to score the m candidates of one request:
  serving_default   one call with all m candidates (user side computed once, shared)
  encode+score      encode_user once, then score_candidates in chunks of --chunk (128):
                    the per-request total of a cold user
  cached            only the score_candidates chunks: a user already in the cache
  cached bf16       the same with a bfloat16 cache
  sd chunks         serving_default per chunk of --chunk candidates, no cache: what
                    chunked scoring costs when every chunk recomputes the user side
  no sharing        the point-wise baseline: every candidate with its own copy of the
                    history (serving_default on a batch of m one-candidate requests, in
                    calls of --copy-budget history tokens). Above --max-copies copies the
                    time is measured on that many and scaled linearly to m (every copy is
                    the same work), marked "scaled".

Also reported: cache bytes per user (float32 and bfloat16) and the time to build the gRPC
PredictRequest of one score_candidates chunk (the cache travels with every chunk call).
Writes benchmarks/results/bench_serving.json and bench_serving.png.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

import pipeline  # noqa: E402,F401
from bench_encoders import machine_info  # noqa: E402  (one machine description for all)

RESULTS = REPO / "benchmarks" / "results"
FULL = ((1024, 4096, 10240), (64, 256, 1024))
QUICK = ((1024, 4096), (64, 256))
AIM_L, AIM_M = 4096, 256
AIM_CACHED, AIM_SHARING = 5.0, 20.0


def export_default(base: str):
    """Default-size model, freshly initialised, exported with both cache dtypes."""
    from model import build_model
    from pipeline import config as config_lib
    from serving import export as export_lib
    cfg = config_lib.Config().validate()
    model = build_model(cfg.model, cfg.tasks)
    paths = {}
    for dtype in ("float32", "bfloat16"):
        cfg.export.cache_dtype = dtype
        paths[dtype] = export_lib.export_model(model, cfg, base)["path"]
    return cfg, paths


def timed(fn, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def pct(times: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(times) * 1e3, q))


def run_config(fns: dict, cfg, length: int, m: int, args) -> dict:
    import tensorflow as tf
    from pipeline import features
    from serving import requests as req
    from serving.export import synthetic_inputs
    inputs = synthetic_inputs([length], [m], seed=length + m)
    const = {k: tf.constant(v) for k, v in inputs.items()}
    user = {n: const[n] for n in features.USER_INPUTS}
    chunks = []
    for start in range(0, m, args.chunk):
        stop = min(start + args.chunk, m)
        chunk = {n: const[n][:, start:stop] for n in features.TARGET_FEATURES}
        chunk["tgt_len"] = tf.constant([stop - start], tf.int32)
        chunks.append(chunk)

    def sync(out):
        for v in out.values():
            v.numpy()

    f32, b16 = fns["float32"], fns["bfloat16"]
    cache32 = f32["encode_user"](**user)
    cache16 = b16["encode_user"](**user)

    def serving_default():
        sync(f32["serving_default"](**const))

    def score_chunks(sig, cache):
        for chunk in chunks:
            sync(sig["score_candidates"](**cache, **chunk))

    def serving_default_chunks():
        for chunk in chunks:
            sync(f32["serving_default"](**user, **chunk))

    def encode_and_score():
        cache = f32["encode_user"](**user)
        score_chunks(f32, cache)

    copies_per_call = max(1, args.copy_budget // length)
    measured = min(m, args.max_copies)
    copy_batches = []
    for start in range(0, measured, copies_per_call):
        n = min(copies_per_call, measured - start)
        batch = {k: tf.repeat(v[:1], n, axis=0) for k, v in const.items()
                 if k in features.USER_INPUTS}
        batch.update({k: tf.reshape(const[k][0, start:start + n], [n, 1])
                      for k in features.TARGET_FEATURES})
        batch["tgt_len"] = tf.ones([n], tf.int32)
        copy_batches.append(batch)

    def no_sharing():
        for batch in copy_batches:
            sync(f32["serving_default"](**batch))

    row = {"L": length, "m": m, "chunk": args.chunk}
    methods = [("serving_default", serving_default, args.repeats),
               ("encode+score", encode_and_score, args.repeats),
               ("cached", lambda: score_chunks(f32, cache32), args.repeats),
               ("cached_bf16", lambda: score_chunks(b16, cache16), args.repeats),
               ("sd_chunks", serving_default_chunks, max(2, args.repeats // 2)),
               ("no_sharing", no_sharing, max(2, args.repeats // 5))]
    for name, fn, _ in methods:
        timed(fn, args.warmup if name != "no_sharing" else 1, 0)
    # Round robin: load changes on a shared machine hit every method alike.
    times = {name: [] for name, _, _ in methods}
    for r in range(args.repeats):
        for name, fn, repeats in methods:
            if r < repeats:
                times[name] += timed(fn, 0, 1)
    for name, _, repeats in methods:
        scale = m / measured if name == "no_sharing" else 1.0
        row[name] = {"p50_ms": pct(times[name], 50) * scale,
                     "p99_ms": pct(times[name], 99) * scale, "repeats": repeats}
    row["no_sharing"].update(scaled=measured < m, measured_copies=measured,
                             copies_per_call=copies_per_call)
    row["cache_bytes"] = {"float32": int(sum(v.numpy().nbytes for v in cache32.values())),
                          "bfloat16": int(sum(v.numpy().nbytes for v in cache16.values()))}
    numpy_cache = {k: v.numpy() for k, v in cache32.items()}
    chunk_np = {k: v.numpy() for k, v in chunks[0].items()}
    proto = timed(lambda: req.grpc_request("stca", "score_candidates",
                                           {**numpy_cache, **chunk_np}).SerializeToString(),
                  1, 5)
    row["grpc_chunk_request_ms"] = pct(proto, 50)
    from model.flops import encoder_flops
    flops = encoder_flops(cfg.model, length, m, len(cfg.tasks))
    targets = m * flops["per_target"]
    # A cache can at most remove the user side: (user + targets) / targets.
    row["flops"] = {"user": flops["user"], "per_target": flops["per_target"],
                    "cached_speedup_bound": (flops["user"] + targets) / targets}
    p50 = lambda k: row[k]["p50_ms"]  # noqa: E731
    row["ratios"] = {
        "serving_default / cached": p50("serving_default") / p50("cached"),
        "encode+score / serving_default": p50("encode+score") / p50("serving_default"),
        "no_sharing / serving_default": p50("no_sharing") / p50("serving_default"),
        "no_sharing / cached": p50("no_sharing") / p50("cached"),
        "sd_chunks / encode+score": p50("sd_chunks") / p50("encode+score"),
    }
    return row


def table(rows: list[dict]) -> str:
    head = ("| L | m | serving_default p50 / p99 ms | encode+score p50 / p99 | cached p50 / p99 "
            "| cached bf16 p50 | sd chunks p50 | no sharing p50 | sd / cached "
            "| no sharing / sd | sd / cached FLOP bound | cache f32 / bf16 MB |\n|" + "---|" * 12)
    lines = [head]
    for r in rows:
        ns = f"{r['no_sharing']['p50_ms']:.0f}" + (" (scaled)" if r["no_sharing"]["scaled"]
                                                    else "")
        lines.append(
            f"| {r['L']} | {r['m']} | {r['serving_default']['p50_ms']:.1f} / "
            f"{r['serving_default']['p99_ms']:.1f} | {r['encode+score']['p50_ms']:.1f} / "
            f"{r['encode+score']['p99_ms']:.1f} | {r['cached']['p50_ms']:.1f} / "
            f"{r['cached']['p99_ms']:.1f} | {r['cached_bf16']['p50_ms']:.1f} | "
            f"{r['sd_chunks']['p50_ms']:.1f} | {ns} | "
            f"{r['ratios']['serving_default / cached']:.2f}x | "
            f"{r['ratios']['no_sharing / serving_default']:.1f}x | "
            f"{r['flops']['cached_speedup_bound']:.2f}x | "
            f"{r['cache_bytes']['float32'] / 1e6:.2f} / {r['cache_bytes']['bfloat16'] / 1e6:.2f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lengths = sorted({r["L"] for r in rows})
    fig, axes = plt.subplots(1, len(lengths), figsize=(5 * len(lengths), 4), squeeze=False)
    for ax, length in zip(axes[0], lengths):
        sub = sorted((r for r in rows if r["L"] == length), key=lambda r: r["m"])
        ms = [r["m"] for r in sub]
        for key, label in (("no_sharing", "no sharing (per-candidate history)"),
                           ("serving_default", "serving_default (shared)"),
                           ("encode+score", "encode_user + score chunks"),
                           ("cached", "cached user: score chunks only"),
                           ("cached_bf16", "cached user, bf16 cache"),
                           ("sd_chunks", "serving_default per chunk, no cache")):
            ax.plot(ms, [r[key]["p50_ms"] for r in sub], marker="o", label=label)
        ax.set(xscale="log", yscale="log", xlabel="candidates m", ylabel="p50 latency (ms)",
               title=f"L = {length}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("STCA serving latency per request (d=64, h=4, N=3, in-process SavedModel)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--copy-budget", type=int, default=65536,
                        help="history tokens per no-sharing call (memory bound)")
    parser.add_argument("--max-copies", type=int, default=64,
                        help="no-sharing copies measured; more are scaled linearly")
    parser.add_argument("--out", default=str(RESULTS / "bench_serving.json"))
    args = parser.parse_args(argv)
    lengths, ms = QUICK if args.quick else FULL
    args.repeats = args.repeats or (5 if args.quick else 20)
    import tensorflow as tf
    t0 = time.time()
    machine = machine_info()
    with tempfile.TemporaryDirectory() as base:
        cfg, paths = export_default(base)
        # Keep the loaded objects alive: their variables die with them.
        loaded = {dtype: tf.saved_model.load(path) for dtype, path in paths.items()}
        fns = {dtype: obj.signatures for dtype, obj in loaded.items()}
        rows = []
        for length in lengths:
            for m in ms:
                row = run_config(fns, cfg, length, m, args)
                rows.append(row)
                print(f"L={length:>5} m={m:>4}  sd={row['serving_default']['p50_ms']:8.1f} ms  "
                      f"enc+score={row['encode+score']['p50_ms']:8.1f}  "
                      f"cached={row['cached']['p50_ms']:8.1f}  "
                      f"no-sharing={row['no_sharing']['p50_ms']:9.0f}", flush=True)
        del loaded
    aim_row = next((r for r in rows if r["L"] == AIM_L and r["m"] == AIM_M), None)
    aims = []
    if aim_row:
        cached = aim_row["ratios"]["serving_default / cached"]
        sharing = aim_row["ratios"]["no_sharing / serving_default"]
        aims = [
            {"aim": f"cached user vs serving_default at L={AIM_L}, m={AIM_M}",
             "measured": round(cached, 2), "target": AIM_CACHED, "met": cached >= AIM_CACHED,
             "flop_bound": round(aim_row["flops"]["cached_speedup_bound"], 2)},
            {"aim": f"sharing (serving_default) vs no sharing at L={AIM_L}, m={AIM_M}",
             "measured": round(sharing, 1), "target": AIM_SHARING,
             "met": sharing >= AIM_SHARING},
        ]
    result = {
        "command": "python benchmarks/bench_serving.py" + (" --quick" if args.quick else ""),
        "machine": machine,
        "workload": {"model": "defaults: d_model=64, num_heads=4, num_layers=3, rankmixer "
                              "head; freshly initialised (latency does not depend on weights)",
                     "tasks": cfg.tasks, "requests_per_call": 1, "chunk": args.chunk,
                     "repeats": args.repeats, "warmup": args.warmup,
                     "compute": "float32", "transport": "in-process tf.saved_model.load"},
        "wall_seconds": round(time.time() - t0, 1),
        "rows": rows,
        "aims": aims,
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    plot(rows, out.with_suffix(".png"))
    print()
    print(table(rows))
    for a in aims:
        print(f"aim: {a['aim']}: {a['measured']}x (target >= {a['target']}x) "
              f"{'met' if a['met'] else 'NOT met'}")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
