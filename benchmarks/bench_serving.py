"""Serving latency of the exported SavedModel, this code beside the code before the change.

    .venv/bin/python benchmarks/bench_serving.py          # L: 1024, 4096, 10240; m: 64, 256, 1024
    .venv/bin/python benchmarks/bench_serving.py --quick  # L: 1024, 4096; m: 64, 256

The default model (d=64, 4 heads, 3 layers, RankMixer head, 3 tasks), freshly initialised
(latency depends on the weights only through the ID-match prior's size, which decides
whether its sparse form applies), is exported by `serving.export.export_model` of two
source trees, each in its own process: this checkout (float32 and bfloat16
cache) and the code of BEFORE_COMMIT (`common.BEFORE_COMMIT`: STCA's reordered attention
everywhere and an X~ cache). All SavedModels are loaded in this process with
tf.saved_model.load and each signature is called directly (no RPC, no JSON/proto
encoding). One request (B=1) with a full history of L events and m candidates, built by
the client's request builders, with ID matches planted at the density of the synthetic
logs (`plant_id_matches`; the share is in each row's id_match_share). After --warmup
calls of each way, --repeats timed calls give p50 and p99; the ways take turns call by
call, so load from other processes on a shared machine affects all of them alike.

Ways to score the m candidates of one request (after = this code, before = BEFORE_COMMIT):
  serving_default   one call with all m candidates (user side computed once, shared);
                    after: the attention form the FLOP model picks for m (model/flops.py)
  encode+score      encode_user once, then score_candidates in chunks of --chunk
                    (default serving.chunk_size):
                    the per-request total of a cold user (after)
  cached            only the score_candidates chunks: a user already in the cache
  cached bf16       the same with a bfloat16 cache (after)
  no sharing        the point-wise baseline: every candidate with its own copy of the
                    history (serving_default on a batch of m one-candidate requests, in
                    calls of --copy-budget history tokens). Above --max-copies copies the
                    time is measured on that many and scaled linearly to m (every copy is
                    the same work), marked "scaled" (after).

Also reported: cache bytes per user (before float32 X~; after float32 and bfloat16 K / V),
the FLOP bound of each ratio (model/flops.py), and the time to build the gRPC
PredictRequest of one score_candidates chunk (the cache travels with every chunk call).
Writes benchmarks/results/bench_serving.json and bench_serving.png (report/plots.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

import aims as aims_lib
from common import BEFORE_COMMIT, REPO, RESULTS, machine_info, source_tree
from report import plots

FULL = ((1024, 4096, 10240), (64, 256, 1024))
QUICK = ((1024, 4096), (64, 256))

# Run in a source tree's own process (cwd first on sys.path): exports the default model.
EXPORT_SNIPPET = """
import json, sys
try:  # trees from before the core package first: core/ of this checkout is importable too
    from pipeline import config as config_lib
except ImportError:
    from core import config as config_lib
from model import build_model
from serving import export as export_lib
cfg = config_lib.Config().validate()
model = build_model(cfg.model, cfg.tasks)
paths = {}
for dtype in sys.argv[2].split(","):
    cfg.export.cache_dtype = dtype
    paths[dtype] = export_lib.export_model(model, cfg, sys.argv[1] + "/" + dtype)["path"]
print(json.dumps(paths))
"""


def export_tree(tree: str, base: str, dtypes: tuple) -> dict:
    """{cache dtype: version dir} of the default model exported by the code in `tree`."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=tree)
    out = subprocess.run([sys.executable, "-c", EXPORT_SNIPPET, base, ",".join(dtypes)],
                         cwd=tree, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"export in {tree} failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


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


AUTHOR_POOL = 500  # history authors drawn from 500: ~0.1% author matches, as in the logs
ITEM_REPEATS = 0.05  # share of candidates that are an item of the history


def plant_id_matches(inputs: dict, seed: int) -> dict:
    """Gives the random request (unique random IDs: no ID ever matches) the ID-match
    density of real logs, which decides the cost of the ID-match prior: history authors
    from a pool of AUTHOR_POOL, half the candidates' authors from that pool (~0.1% of
    candidate x event pairs match by author; 0.09% on the synthetic data's eval split)
    and ITEM_REPEATS of the candidates are history items (0.005% there).
    Returns the measured match shares."""
    rng = np.random.default_rng(seed)
    hist_len, tgt_len = int(inputs["hist_len"][0]), int(inputs["tgt_len"][0])
    pool = rng.integers(1, 10**12, size=AUTHOR_POOL)
    inputs["hist_author_id"][0, :hist_len] = rng.choice(pool, hist_len)
    from_pool = rng.random(tgt_len) < 0.5
    inputs["tgt_author_id"][0, :tgt_len] = np.where(
        from_pool, rng.choice(pool, tgt_len), inputs["tgt_author_id"][0, :tgt_len])
    repeat = rng.random(tgt_len) < ITEM_REPEATS
    picked = inputs["hist_item_id"][0, rng.integers(0, max(hist_len, 1), tgt_len)]
    inputs["tgt_item_id"][0, :tgt_len] = np.where(repeat, picked,
                                                  inputs["tgt_item_id"][0, :tgt_len])

    def share(field):
        match = (inputs[f"tgt_{field}_id"][0, :tgt_len, None]
                 == inputs[f"hist_{field}_id"][0, None, :hist_len])
        return float(match.mean())
    return {"author": share("author"), "item": share("item")}


def flop_bounds(cfg, length: int, m: int) -> dict:
    """Forward FLOPs of each way (model/flops.py) and the ratios they bound."""
    from model.flops import encoder_flops
    tasks = len(cfg.tasks)

    def total(form):
        model_cfg = dataclasses.replace(cfg.model, attention_form=form)
        return encoder_flops(model_cfg, length, m, tasks)

    before, after, projected = total("reordered"), total("auto"), total("projected")
    cached = m * projected["per_target"]  # the cache holds projected K / V
    return {"before_serving_default": before["total"], "serving_default": after["total"],
            "cached": cached, "before_cached": m * before["per_target"],
            "serving_default_speedup_bound": before["total"] / after["total"],
            "cached_speedup_bound": after["total"] / cached}


def run_config(fns: dict, cfg, length: int, m: int, args) -> dict:
    """fns: {"before": {dtype: signatures}, "after": {dtype: signatures}}."""
    import tensorflow as tf
    from core import features
    from serving import requests as req
    from serving.export import synthetic_inputs
    inputs = synthetic_inputs([length], [m], seed=length + m)
    match_share = plant_id_matches(inputs, seed=length + m)
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

    before, f32, b16 = fns["before"]["float32"], fns["after"]["float32"], fns["after"]["bfloat16"]
    caches = {"before": before["encode_user"](**user), "float32": f32["encode_user"](**user),
              "bfloat16": b16["encode_user"](**user)}

    def score_chunks(sig, cache):
        for chunk in chunks:
            sync(sig["score_candidates"](**cache, **chunk))

    def encode_and_score():
        score_chunks(f32, f32["encode_user"](**user))

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

    row = {"L": length, "m": m, "chunk": args.chunk, "id_match_share": match_share}
    methods = [("before_serving_default", lambda: sync(before["serving_default"](**const)),
                args.repeats),
               ("before_cached", lambda: score_chunks(before, caches["before"]), args.repeats),
               ("serving_default", lambda: sync(f32["serving_default"](**const)), args.repeats),
               ("encode+score", encode_and_score, args.repeats),
               ("cached", lambda: score_chunks(f32, caches["float32"]), args.repeats),
               ("cached_bf16", lambda: score_chunks(b16, caches["bfloat16"]), args.repeats),
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
    def nbytes(cache, floats_only=False):
        return int(sum(v.numpy().nbytes for v in cache.values()
                       if v.dtype.is_floating or not floats_only))

    row["cache_bytes"] = {"before_float32": nbytes(caches["before"]),
                          "float32": nbytes(caches["float32"]),
                          "bfloat16": nbytes(caches["bfloat16"])}
    # The float entries only (what export.cache_dtype changes; IDs and lengths stay int).
    row["cache_float_bytes"] = {"before_float32": nbytes(caches["before"], True),
                                "float32": nbytes(caches["float32"], True),
                                "bfloat16": nbytes(caches["bfloat16"], True)}
    numpy_cache = {k: v.numpy() for k, v in caches["float32"].items()}
    chunk_np = {k: v.numpy() for k, v in chunks[0].items()}
    proto = timed(lambda: req.grpc_request("stca", "score_candidates",
                                           {**numpy_cache, **chunk_np}).SerializeToString(),
                  1, 5)
    row["grpc_chunk_request_ms"] = pct(proto, 50)
    row["flops"] = flop_bounds(cfg, length, m)
    row["attention_form"] = _form(cfg, m)
    p50 = lambda k: row[k]["p50_ms"]  # noqa: E731
    row["ratios"] = {
        "before_serving_default / serving_default":
            p50("before_serving_default") / p50("serving_default"),
        "serving_default / cached": p50("serving_default") / p50("cached"),
        "before_serving_default / before_cached":
            p50("before_serving_default") / p50("before_cached"),
        "before_cached / cached": p50("before_cached") / p50("cached"),
        "cached / cached_bf16": p50("cached") / p50("cached_bf16"),
        "encode+score / serving_default": p50("encode+score") / p50("serving_default"),
        "no_sharing / serving_default": p50("no_sharing") / p50("serving_default"),
    }
    return row


def _form(cfg, m: int) -> str:
    from model.flops import stca_attention_form
    return stca_attention_form(cfg.model, m)


def table(rows: list[dict]) -> str:
    head = ("| L | m | sd before p50 ms | sd after p50 / p99 ms | sd before / after (FLOP bound) "
            "| cached before | cached after p50 / p99 | cached bf16 | sd / cached after "
            "(FLOP bound) | sd / cached before | encode+score | no sharing / sd "
            "| cache MB before / f32 / bf16 |\n|" + "---|" * 13)
    lines = [head]
    for r in rows:
        ratio, flops = r["ratios"], r["flops"]
        lines.append(
            f"| {r['L']} | {r['m']} | {r['before_serving_default']['p50_ms']:.1f} | "
            f"{r['serving_default']['p50_ms']:.1f} / {r['serving_default']['p99_ms']:.1f} | "
            f"{ratio['before_serving_default / serving_default']:.2f}x "
            f"({flops['serving_default_speedup_bound']:.2f}x) | "
            f"{r['before_cached']['p50_ms']:.1f} | {r['cached']['p50_ms']:.1f} / "
            f"{r['cached']['p99_ms']:.1f} | {r['cached_bf16']['p50_ms']:.1f} | "
            f"{ratio['serving_default / cached']:.2f}x ({flops['cached_speedup_bound']:.2f}x) | "
            f"{ratio['before_serving_default / before_cached']:.2f}x | "
            f"{r['encode+score']['p50_ms']:.1f} | "
            f"{ratio['no_sharing / serving_default']:.1f}x | "
            f"{r['cache_bytes']['before_float32'] / 1e6:.2f} / "
            f"{r['cache_bytes']['float32'] / 1e6:.2f} / {r['cache_bytes']['bfloat16'] / 1e6:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=None,
                        help="candidates per score_candidates call (default serving.chunk_size)")
    parser.add_argument("--copy-budget", type=int, default=65536,
                        help="history tokens per no-sharing call (memory bound)")
    parser.add_argument("--max-copies", type=int, default=64,
                        help="no-sharing copies measured; more are scaled linearly")
    parser.add_argument("--before", default=BEFORE_COMMIT,
                        help="commit whose code is measured as 'before'")
    parser.add_argument("--out", default=str(RESULTS / "bench_serving.json"))
    args = parser.parse_args(argv)
    lengths, ms = QUICK if args.quick else FULL
    args.repeats = args.repeats or (5 if args.quick else 20)
    from core import config as config_lib  # first: the Keras environment, then TensorFlow
    import tensorflow as tf
    cfg = config_lib.Config().validate()
    args.chunk = args.chunk or cfg.serving.chunk_size
    t0 = time.time()
    machine = machine_info()
    with tempfile.TemporaryDirectory() as base:
        trees = {"before": source_tree(args.before, os.path.join(base, "before_tree")),
                 "after": str(REPO)}
        paths = {"before": export_tree(trees["before"], base + "/before", ("float32",)),
                 "after": export_tree(trees["after"], base + "/after", ("float32", "bfloat16"))}
        # Keep the loaded objects alive: their variables die with them.
        loaded = {k: {dt: tf.saved_model.load(p) for dt, p in v.items()}
                  for k, v in paths.items()}
        fns = {k: {dt: obj.signatures for dt, obj in v.items()} for k, v in loaded.items()}
        rows = []
        for length in lengths:
            for m in ms:
                row = run_config(fns, cfg, length, m, args)
                rows.append(row)
                print(f"L={length:>5} m={m:>4}  sd before={row['before_serving_default']['p50_ms']:7.1f} "
                      f"after={row['serving_default']['p50_ms']:7.1f} ms  "
                      f"cached before={row['before_cached']['p50_ms']:7.1f} "
                      f"after={row['cached']['p50_ms']:7.1f}  "
                      f"no-sharing={row['no_sharing']['p50_ms']:9.0f}", flush=True)
        del loaded
    result = {
        "command": "python benchmarks/bench_serving.py" + (" --quick" if args.quick else ""),
        "machine": machine,
        "before_commit": args.before,
        "workload": {"model": "defaults: d_model=64, num_heads=4, num_layers=3, rankmixer "
                              "head; freshly initialised (latency depends on the weights only "
                              "through the ID-match prior's size)",
                     "id_match": "planted at about the density of the synthetic logs "
                                 "(plant_id_matches): the ID-match prior's cost depends "
                                 "on it",
                     "tasks": cfg.tasks, "requests_per_call": 1, "chunk": args.chunk,
                     "repeats": args.repeats, "warmup": args.warmup,
                     "compute": "float32", "transport": "in-process tf.saved_model.load"},
        "wall_seconds": round(time.time() - t0, 1),
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
        "rows": rows,
    }
    result["aims"] = aims_lib.check("bench_serving", result)  # benchmarks/aims.yaml
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    plots.bench_serving(rows, out.with_suffix(".png"), args.before)
    print()
    print(table(rows))
    aims_lib.print_rows(result["aims"])
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
