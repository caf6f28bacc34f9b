"""Extendable user cache (model.recency=attention): its AUC cost against the default, where
the age is inside every event token, and what extending a cache saves at serving time.

    .venv/bin/python benchmarks/extendable_cache.py [--seeds 0,1,2] [--steps 800]
        [--lengths 64,224,1024,2048] [--eval-requests 3000]
        [--data runs/results/synth/data] [--out runs/extendable_cache] [--skip-train]
        [--recency-lengths 224,1024] [--timing-L 1024,4096,10240]

Why: serving's recurring case is the same user's next request a few seconds later. With
the default model.recency=token every event token holds a request-relative feature (the
log-bucketed age request_ts - hist_ts, `EventEmbedding`), so the per-user cache is rebuilt
for every request. model.recency=attention keeps the tokens request-free and adds the age
at scoring time (a learned logit per (age bucket, head) in every STCA layer), so a cache
can be EXTENDED with the new events (`RankingModel.extend_user`, the `extend_user`
signature; docs/model.md, "Recency at scoring time").

1. AUC cost. The results config of docs/results.md (benchmarks/results_config.py: d = 32,
   4 heads, 3 layers, Beta(0.35, 1.5) windows on [32, 1024], 16k-token budget, lr 2e-3,
   50 warmup steps, XLA off, 800 steps, the synthetic log), trained with seeds 0, 1, 2 on
   the same data in two variants, through the product's own loop and evaluation
   (`pipeline.train.run`, `pipeline.evaluate.run`: what `stca train` / `stca evaluate` run,
   including the history-use check: AUC minus the AUC with the history emptied):
     baseline    the product default (model.recency=token).
     extendable  the same with model.recency=attention (VARIANT_OVERRIDES).
   Reported per variant, eval length and task: AUC mean and half range (max - min) / 2
   over the seeds, the difference extendable - baseline against the combined half ranges,
   the per-seed paired difference, and the AUC drop when the history is emptied. A
   recency check says how much each trained model relies on event ages at all: the AUC
   minus the AUC with hist_ts shuffled among each request's events (ages destroyed, their
   distribution kept; the same ablation hits the baseline's time feature and the
   variant's age bias), at --recency-lengths.
2. What it saves, at the default serving config (d = 64, 4 heads, 3 layers):
   (i)  analytic user-side FLOPs (`model.flops.encoder_flops`, projected K / V as the cache
        holds them) to extend a cache by k events vs re-encoding L events;
   (ii) measured on a freshly initialised model.recency=attention model, one request
        (B = 1), each in a tf.function: `encode_user` of L events (--timing-L) vs
        `extend_user` of that cache with k = 16 new events (checked equal to encoding all
        L + k), and encode_user of the k alone; p50 over --timing-calls calls
        (interleaved, so load hits all);
   (iii) the same through the exported SavedModel: its `encode_user` and `extend_user`
        signatures (serving.export, loaded with tf.saved_model.load; the extended cache
        checked equal to the whole history's).

Every run is a fresh subprocess (log in RUN_DIR/log.txt) importing a snapshot of the
working tree's core/, model/ and pipeline/ (OUT/src/HASH), so every run trains the same product
code while others edit the tree: the snapshot of the runs already in OUT when they all
share one, else a new one of the current tree. Finished runs and checks are reused
(delete a run's directory to redo it; the JSON says whether all runs share one snapshot
and whether it is the current tree). Writes benchmarks/results/extendable_cache.json and
prints a Markdown table. The default invocation takes about 30 min on the 2-core machine
(6 runs of 4-5 min: training ~3 min, evaluation and the recency check ~1.5 min).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time

import common

REPO = common.REPO
OUT_JSON = common.RESULTS / "extendable_cache.json"
VARIANTS = ("baseline", "extendable")
TASKS_SHOWN = ("click", "like")

# The results config (benchmarks/results_config.py, synth): model, optimizer, sampler, eval.
RESULTS_CONFIG = [
    "data.max_history=4096", "data.num_shards=8",
    "model.d_model=32", "model.num_heads=4", "model.num_layers=3",
    "train.learning_rate=0.002", "train.warmup_steps=50", "train.checkpoint_every=100000",
    "train.log_every=100", "train.jit_compile=false",
    "train.bucket_boundaries=[64,96,128,192,256,384,512,768,1024]",
    "train.token_budget=16384",
    "train.length.mode=beta", "train.length.l_min=32", "train.length.l_max=1024",
    "train.length.beta_a=0.35", "train.length.beta_b=1.5",
]
DATA_COMMANDS = [
    ["synth", "--out", "{root}/raw", "--set", "synth.users=200"],
    ["preprocess", "--input", "{root}/raw/*.csv", "--out", "{root}/data",
     "--set", "data.max_history=4096", "--set", "data.num_shards=8"],
]


# What the extendable variant changes: the product option (docs/model.md, "Recency at
# scoring time").
VARIANT_OVERRIDES = {"baseline": [], "extendable": ["model.recency=attention"]}


def overrides(variant: str, steps: int, seed, lengths, eval_requests: int) -> list[str]:
    return RESULTS_CONFIG + VARIANT_OVERRIDES[variant] + [
        f"train.steps={steps}", f"train.seed={seed}",
        "eval.lengths=[" + ",".join(map(str, lengths)) + "]",
        f"eval.max_requests={eval_requests}"]


# ============================================================================ workers
def train_worker(job: dict) -> dict:
    """One (variant, seed): pipeline.train.run then pipeline.evaluate.run, in this process."""
    from core import config as config_lib
    from model import checkpoint as checkpoint_lib
    from pipeline import evaluate as evaluate_lib
    from pipeline import train as train_lib
    cfg = config_lib.load_config(None, job["overrides"])
    run_dir = job["run_dir"]
    if not os.path.exists(os.path.join(run_dir, checkpoint_lib.METRICS_FILE)):
        train_lib.run(cfg, job["data"], run_dir)
    summary = evaluate_lib.run(cfg, job["data"], run_dir)
    import model as model_pkg
    with open(os.path.join(run_dir, "variant.json"), "w") as f:
        json.dump({**{k: job[k] for k in ("variant", "seed", "source")},
                   "model_package": os.path.dirname(model_pkg.__file__)}, f)
    return summary


def recency_worker(job: dict) -> dict:
    """AUC of a trained run with its real event ages and with hist_ts shuffled among the
    valid events of each request (the same requests as `stca evaluate`), per length."""
    import numpy as np
    import tensorflow as tf
    from core import config as config_lib
    from core import input as input_lib
    from core import metrics as metrics_lib
    from model import checkpoint as checkpoint_lib
    run_dir, lengths = job["run_dir"], sorted(job["lengths"])
    cfg = config_lib.load_config(os.path.join(run_dir, "config.yaml"))
    model, _ = checkpoint_lib.load_trained_model(cfg, run_dir)
    rng = tf.random.Generator.from_seed(0)

    @tf.function(reduce_retracing=True)
    def scores_of(inputs):
        return tf.sigmoid(tf.cast(model(inputs, training=False), tf.float32))

    def shuffled_ages(inputs):
        ts, n = inputs["hist_ts"], inputs["hist_len"]
        pos = tf.range(tf.shape(ts)[1])[None, :]
        keys = tf.where(pos < n[:, None], rng.uniform(tf.shape(ts)), 2.0 + tf.cast(pos, tf.float32))
        return dict(inputs, hist_ts=tf.gather(ts, tf.argsort(keys, axis=1), batch_dims=1))

    def cut(inputs, length):  # the `length` most recent events (stored first)
        out = {k: (v[:, :length] if k.startswith("hist_") and k != "hist_len" else v)
               for k, v in inputs.items()}
        out["hist_len"] = tf.minimum(inputs["hist_len"], length)
        return out

    users, labels = [], {t: [] for t in cfg.tasks}
    scores = {(x, m): {t: [] for t in cfg.tasks} for x in lengths for m in ("real", "shuffled")}
    for inputs, batch_labels, meta in input_lib.eval_dataset(job["data"], cfg, max(lengths)):
        mask = np.arange(batch_labels[cfg.tasks[0]].shape[1])[None, :] \
            < inputs["tgt_len"].numpy()[:, None]
        users.append(np.broadcast_to(meta["user_id"].numpy()[:, None], mask.shape)[mask])
        for t in cfg.tasks:
            labels[t].append(batch_labels[t].numpy()[mask])
        for length in lengths:
            real = cut(inputs, length)
            for mode, batch in (("real", real), ("shuffled", shuffled_ages(real))):
                probs = scores_of(batch).numpy()
                for i, t in enumerate(cfg.tasks):
                    scores[(length, mode)][t].append(probs[:, :, i][mask])
    users = np.concatenate(users)
    labels = {t: np.concatenate(v) for t, v in labels.items()}
    out = {}
    for length in lengths:
        rep = {m: metrics_lib.ranking_report(
            cfg.tasks, users, labels, {t: np.concatenate(v)
                                       for t, v in scores[(length, m)].items()})
            for m in ("real", "shuffled")}
        out[str(length)] = {t: {"auc": rep["real"][t]["auc"],
                                "auc_ages_shuffled": rep["shuffled"][t]["auc"],
                                "auc_minus_ages_shuffled": rep["real"][t]["auc"]
                                - rep["shuffled"][t]["auc"]} for t in cfg.tasks}
    if model.can_extend:  # the learned recency logits rho (they start at 0)
        ages = np.stack([a.recency_bias.numpy() for a in model.encoder.attentions])  # [N, A, h]
        out["age_bias"] = {"max_abs": float(np.abs(ages).max()),
                           "mean_over_layers_heads_by_row": ages.mean(axis=(0, 2)).round(4)
                           .tolist()}
    with open(os.path.join(run_dir, "recency_check.json"), "w") as f:
        json.dump(out, f, indent=1)
    return out


def timing_worker(job: dict) -> dict:
    """encode_user of L events vs RankingModel.extend_user of a cached L-event user with k
    new events (and encode_user of the k alone), model.recency=attention, B = 1."""
    import dataclasses as dc

    import numpy as np
    import tensorflow as tf
    from core import features
    from core.config import ModelConfig
    from model import build_model
    from model.encoders import HIST_LEN

    tf.keras.utils.set_random_seed(0)
    cfg = dc.replace(ModelConfig(), recency="attention")
    model = build_model(cfg, list(common.TASKS))
    L, k, calls = job["L"], job["k"], job["calls"]
    full, _ = common.synthetic_batch(1, L + k, 1, seed=1)
    user = {n: full[n].numpy() for n in features.USER_INPUTS}
    older, newer = features.split_history(user, k)
    older = {n: v[:, :L] if n in features.HISTORY_FEATURES else v for n, v in older.items()}
    newer = {n: v[:, :k] if n in features.HISTORY_FEATURES else v for n, v in newer.items()}
    relaxed = lambda x: tf.TensorSpec([None] * x.ndim, x.dtype)  # noqa: E731
    encode = tf.function(model.encode_user,
                         input_signature=[{n: relaxed(v) for n, v in user.items()}])
    cache = encode(older)
    extend = tf.function(model.extend_user, input_signature=[
        {n: tf.TensorSpec([None] * len(v.shape), v.dtype) for n, v in cache.items()},
        {n: relaxed(v) for n, v in newer.items()}])
    grown, whole = extend(cache, newer), encode(user)
    assert int(grown[HIST_LEN][0]) == L + k
    # The extended cache is the whole history's (request-free tokens): same K / V.
    np.testing.assert_allclose(grown["history_keys"].numpy(), whole["history_keys"].numpy(),
                               rtol=1e-4, atol=1e-5)
    new_only = {**user, **newer}
    for _ in range(3):  # warm up
        encode(user), extend(cache, newer), encode(new_only)
    times = {"encode_L": [], "extend_k": [], "encode_k_only": []}
    for _ in range(calls):  # interleaved, so a burst of load hits all
        for name, fn in (("encode_L", lambda: encode(user)),
                         ("extend_k", lambda: extend(cache, newer)),
                         ("encode_k_only", lambda: encode(new_only))):
            t0 = time.perf_counter()
            fn()[HIST_LEN].numpy()  # CPU functions return when done
            times[name].append(1e3 * (time.perf_counter() - t0))
    cache_bytes = {n: int(np.prod(v.shape)) * v.dtype.size for n, v in cache.items()}
    served = served_timing(model, cfg, user, older, newer, calls)
    return {"L": L, "k": k, "calls": calls, "served": served, "model": {"d_model": cfg.d_model,
            "num_heads": cfg.num_heads, "num_layers": cfg.num_layers,
            "id_match": cfg.id_match, "recency": cfg.recency},
            "ms_all": {n: [round(t, 3) for t in v] for n, v in times.items()},
            "ms_p50": {n: round(common.median(v), 3) for n, v in times.items()},
            "cache_bytes": cache_bytes}


def served_timing(model, model_cfg, user: dict, older: dict, newer: dict, calls: int) -> dict:
    """The same as timing_worker through the exported SavedModel (serving.export, float32
    cache, loaded with tf.saved_model.load): the `encode_user` signature on the whole
    history vs the `extend_user` signature on the older events' served cache plus the k
    new ones; checks the extended cache equals the whole history's (1e-5)."""
    import tempfile

    import numpy as np
    import tensorflow as tf
    from core import config as config_lib
    from serving import export as export_lib
    from serving import signatures as sigs

    cfg = config_lib.Config()
    cfg.model = model_cfg
    cfg.validate()
    with tempfile.TemporaryDirectory() as base:
        path = export_lib.export_model(model, cfg, base)["path"]
        loaded = tf.saved_model.load(path)
        encode = loaded.signatures[sigs.ENCODE_USER]
        extend = loaded.signatures[sigs.EXTEND_USER]
        as_tf = lambda d: {n: tf.constant(v) for n, v in d.items()}  # noqa: E731
        user_t, older_t = as_tf(user), as_tf(older)
        new_t = {n: tf.constant(newer[n]) for n in sigs.EXTEND_INPUTS}
        cache = encode(**older_t)
        grown, whole = extend(**cache, **new_t), encode(**user_t)
        for name in whole:
            np.testing.assert_allclose(grown[name].numpy(), whole[name].numpy(),
                                       rtol=1e-5, atol=1e-5, err_msg=name)
        times = {"encode_L": [], "extend_k": []}
        for _ in range(3):  # warm up
            encode(**user_t), extend(**cache, **new_t)
        for _ in range(calls):  # interleaved, so a burst of load hits both
            for name, fn in (("encode_L", lambda: encode(**user_t)),
                             ("extend_k", lambda: extend(**cache, **new_t))):
                t0 = time.perf_counter()
                for v in fn().values():
                    v.numpy()
                times[name].append(1e3 * (time.perf_counter() - t0))
    return {"ms_all": {n: [round(t, 3) for t in v] for n, v in times.items()},
            "ms_p50": {n: round(common.median(v), 3) for n, v in times.items()}}


# ============================================================================ analytic
def analytic_savings(lengths=(1024, 4096, 10240), ks=(1, 16, 64)) -> dict:
    """User-side forward FLOPs (model.flops, default d = 64 config, projected K / V as the
    cache holds them) of re-encoding L events vs encoding k new ones, plus the bytes the
    concat copies and the per-target cost of the age bias."""
    from model.flops import encoder_flops
    from core.config import ModelConfig
    cfg = dataclasses.replace(ModelConfig(), attention_form="projected")
    d, h, n = cfg.d_model, cfg.num_heads, cfg.num_layers
    user = {x: encoder_flops(cfg, x, 1)["user"] for x in sorted(set(lengths) | set(ks))}
    per_event = user[max(lengths)] / max(lengths)
    rows = []
    for L in lengths:
        for k in ks:
            rows.append({"L": L, "k": k, "reencode_user_flops": user[L],
                         "extend_user_flops": user[k],
                         "fraction": round(user[k] / user[L], 6),
                         "saving_x": round(user[L] / user[k], 1),
                         # K and V of every layer (float32) + 2 int64 raw IDs per event
                         "concat_bytes_copied": (L + k) * (2 * n * d * 4 + 2 * 8)})
    per_target = encoder_flops(cfg, 4096, 1)["per_target"]
    return {"config": {"d_model": d, "num_heads": h, "num_layers": n,
                       "ffn_mult": cfg.ffn_mult, "attention_form": "projected"},
            "user_flops_per_event": per_event, "linear_in_L": all(
                abs(user[x] / x - per_event) / per_event < 1e-9 for x in user),
            "rows": rows,
            "age_bias_scoring_cost": {
                "flops_per_target_per_event": n * h,
                "stca_attention_flops_per_target_per_event": n * 4 * d,
                "per_target_flops_L4096": per_target,
                "note": "STCAAttention gathers the [h, L] recency logits once per request "
                        "and layer and adds them to every target's scores (N h L adds per "
                        "target)"}}


# ============================================================================ orchestration
def run_worker(args_json: dict, kind: str, log_path: pathlib.Path, timeout: float,
               src: str) -> dict:
    """Runs this script as `--worker KIND JOB` in a fresh process importing the product
    code from `src` (`snapshot_sources`), output to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=src)
    cmd = [sys.executable, __file__, "--worker", kind, json.dumps(args_json)]
    with open(log_path, "a") as log:
        log.write(f"\n+ {' '.join(shlex.quote(c) for c in cmd)}\n")
        log.flush()
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
                              timeout=timeout, cwd=str(REPO))
        log.write(proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {kind} failed (exit {proc.returncode}), see {log_path}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


PRODUCT_PACKAGES = ("core", "model", "pipeline")


def tree_hash() -> str:
    """Content hash of the working tree's product packages."""
    import hashlib
    files = sorted(p for pkg in PRODUCT_PACKAGES for p in (REPO / pkg).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(REPO)).encode() + b"\0" + p.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def snapshot_sources(out: str) -> tuple[str, str]:
    """The product packages (core/, model/, pipeline/) every worker imports (PYTHONPATH): the
    snapshot the runs already in `out` were made with when they share one, else a new
    copy of the working tree. Returns (directory, content hash); the hash names it."""
    import shutil
    made = {json.loads(p.read_text()).get("source")
            for p in pathlib.Path(out).glob("*_s*/variant.json")}
    if len(made) == 1:
        pinned = pathlib.Path(out).resolve() / "src" / next(iter(made))
        if pinned.exists():
            return str(pinned), pinned.name
    digest = tree_hash()
    dest = pathlib.Path(out).resolve() / "src" / digest
    if not dest.exists():
        tmp = dest.with_name(digest + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for pkg in PRODUCT_PACKAGES:
            shutil.copytree(REPO / pkg, tmp / pkg,
                            ignore=shutil.ignore_patterns("__pycache__"))
        tmp.rename(dest)
    return str(dest), digest


def ensure_data(data: str, root: str) -> str:
    if os.path.exists(os.path.join(data, "stats.json")):
        return data
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for cmd in DATA_COMMANDS:
        cmd = [c.format(root=root) for c in cmd]
        print("+ stca", " ".join(cmd), flush=True)
        subprocess.run([sys.executable, "-m", "pipeline.cli", *cmd], check=True, env=env,
                       cwd=str(REPO), stdout=subprocess.DEVNULL)
    return os.path.join(root, "data")


def git_head() -> str:
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    return out.stdout.strip()


def spread(values):
    return {"mean": sum(values) / len(values), "half_range": (max(values) - min(values)) / 2,
            "values": values}


def aggregate(runs: dict, lengths, tasks) -> list[dict]:
    """Per (length, task): both variants over seeds, the difference and the paired one."""
    rows = []
    seeds = sorted(set(runs["baseline"]) & set(runs["extendable"]))
    for length in lengths:
        for task in tasks:
            row = {"length": length, "task": task, "seeds": seeds}
            for variant in VARIANTS:
                reps = [runs[variant][s]["rows"][str(length)] for s in seeds]
                row[variant] = {
                    "auc": spread([r[task]["auc"] for r in reps]),
                    "gauc": spread([r[task]["gauc"] for r in reps]),
                    "auc_minus_no_history": spread(
                        [r["history_use"][task]["auc_delta_empty"] for r in reps]),
                    "auc_minus_other_users": spread(
                        [r["history_use"][task]["auc_delta_swapped"] for r in reps])}
            b, e = row["baseline"]["auc"], row["extendable"]["auc"]
            diff = e["mean"] - b["mean"]
            combined = b["half_range"] + e["half_range"]
            paired = spread([x - y for x, y in zip(e["values"], b["values"])])
            row.update(diff=diff, combined_half_range=combined, paired_diff=paired,
                       within_spread=abs(diff) <= combined,
                       paired_sign_consistent=(min(paired["values"]) > 0
                                               or max(paired["values"]) < 0))
            rows.append(row)
    return rows


def aggregate_recency(runs: dict, lengths, tasks) -> list[dict]:
    seeds = sorted(set(runs["baseline"]) & set(runs["extendable"]))
    rows = []
    for length in lengths:
        for task in tasks:
            row = {"length": length, "task": task, "seeds": seeds}
            for variant in VARIANTS:
                checks = [runs[variant][s]["recency_check"][str(length)][task] for s in seeds]
                row[variant] = {k: spread([c[k] for c in checks])
                                for k in ("auc", "auc_ages_shuffled", "auc_minus_ages_shuffled")}
            rows.append(row)
    return rows


def markdown(result: dict) -> str:
    pm = lambda s: f"{s['mean']:.4f} ± {s['half_range']:.4f}"  # noqa: E731
    sd = lambda s: f"{s['mean']:+.4f} ± {s['half_range']:.4f}"  # noqa: E731
    lines = ["| L | task | baseline AUC | extendable AUC | diff (ext − base) | combined ± "
             "| within spread | paired diff per seed | base AUC − no hist | ext AUC − no hist |",
             "|---:|---|---:|---:|---:|---:|---|---|---:|---:|"]
    for r in result["auc"]:
        if r["task"] not in TASKS_SHOWN:
            continue
        lines.append(
            f"| {r['length']} | {r['task']} | {pm(r['baseline']['auc'])} | "
            f"{pm(r['extendable']['auc'])} | {r['diff']:+.4f} | {r['combined_half_range']:.4f} "
            f"| {'yes' if r['within_spread'] else '**no**'} | "
            + ", ".join(f"{v:+.4f}" for v in r["paired_diff"]["values"]) + " | "
            f"{sd(r['baseline']['auc_minus_no_history'])} | "
            f"{sd(r['extendable']['auc_minus_no_history'])} |")
    if result.get("train_cost"):
        c = result["train_cost"]
        f = lambda x, n: f"{x['mean']:.{n}f} ± {x['half_range']:.{n}f}"  # noqa: E731
        lines += ["", "Training wall time per run (s): baseline "
                  f"{f(c['baseline']['train_wall_s'], 0)}, extendable "
                  f"{f(c['extendable']['train_wall_s'], 0)}; steady step (s): baseline "
                  f"{f(c['baseline']['steady_step_seconds'], 3)}, extendable "
                  f"{f(c['extendable']['steady_step_seconds'], 3)} (shared machine: "
                  "other jobs' load varies between runs)."]
    if result.get("recency_check"):
        lines += ["", "Recency check: AUC minus AUC with each request's event ages (hist_ts) "
                  "shuffled among its events:", "",
                  "| L | task | baseline AUC − ages shuffled | extendable AUC − ages shuffled |",
                  "|---:|---|---:|---:|"]
        for r in result["recency_check"]:
            if r["task"] in TASKS_SHOWN:
                lines.append(f"| {r['length']} | {r['task']} | "
                             f"{sd(r['baseline']['auc_minus_ages_shuffled'])} | "
                             f"{sd(r['extendable']['auc_minus_ages_shuffled'])} |")
        biases = [r["recency_check"]["age_bias"]["max_abs"]
                  for r in result["runs"]["extendable"].values()
                  if "age_bias" in r["recency_check"]]
        if biases:
            lines += ["", "Largest learned recency logit |rho| (they start at 0), per "
                      "seed: " + ", ".join(f"{b:.3f}" for b in biases)]
    a = result["savings"]["analytic"]
    lines += ["", f"User-side FLOPs, extend by k vs re-encode L (d = {a['config']['d_model']}, "
              f"h = {a['config']['num_heads']}, N = {a['config']['num_layers']}, projected K/V; "
              f"{a['user_flops_per_event'] / 1e6:.2f} MFLOP per event):", "",
              "| L | k | re-encode L (MFLOP) | extend k (MFLOP) | fraction | saving | "
              "concat copies (MB) |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in a["rows"]:
        lines.append(f"| {r['L']} | {r['k']} | {r['reencode_user_flops'] / 1e6:,.1f} | "
                     f"{r['extend_user_flops'] / 1e6:,.2f} | {r['fraction']:.5f} | "
                     f"{r['saving_x']:,.0f}x | {r['concat_bytes_copied'] / 2**20:.2f} |")
    measured = result["savings"].get("measured") or []
    if isinstance(measured, dict):  # results written before the served columns
        measured = [measured]
    if measured:
        t = measured[0]
        lines += ["", f"Measured (d = {t['model']['d_model']}, B = 1, p50 of {t['calls']} "
                  "calls, freshly initialised, model.recency=attention): in process "
                  "(RankingModel methods in a tf.function) and served (the exported "
                  "SavedModel's signatures, loaded with tf.saved_model.load):", "",
                  "| L | k | encode_user L | extend_user k | encode_user k only | speed-up "
                  "| served encode_user | served extend_user | served speed-up |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for t in measured:
            p, sv = t["ms_p50"], (t.get("served") or {}).get("ms_p50")
            served = (f"{sv['encode_L']:.2f} ms | {sv['extend_k']:.2f} ms | "
                      f"{sv['encode_L'] / sv['extend_k']:.1f}x" if sv else "- | - | -")
            lines.append(f"| {t['L']} | {t['k']} | {p['encode_L']:.2f} ms | "
                         f"{p['extend_k']:.2f} ms | {p['encode_k_only']:.2f} ms | "
                         f"{p['encode_L'] / p['extend_k']:.1f}x | {served} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "JOB"), help=argparse.SUPPRESS)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--lengths", default="64,224,1024,2048")
    ap.add_argument("--eval-requests", type=int, default=3000)
    ap.add_argument("--data", default="runs/results/synth/data")
    ap.add_argument("--out", default="runs/extendable_cache")
    ap.add_argument("--timing-L", default="1024,4096,10240", help="comma-separated")
    ap.add_argument("--timing-k", type=int, default=16)
    ap.add_argument("--timing-calls", type=int, default=20)
    ap.add_argument("--recency-lengths", default="224,1024")
    ap.add_argument("--skip-train", action="store_true",
                    help="savings only; the training side of an existing --json is kept")
    ap.add_argument("--json", default=str(OUT_JSON))
    args = ap.parse_args(argv)
    if args.worker:
        kind, job = args.worker[0], json.loads(args.worker[1])
        out = {"train": train_worker, "recency": recency_worker,
               "timing": timing_worker}[kind](job)
        print(json.dumps(out, default=str))
        return out

    t_start, load_start = time.time(), os.getloadavg()
    os.chdir(REPO)
    seeds = [int(s) for s in args.seeds.split(",")]
    lengths = [int(x) for x in args.lengths.split(",")]
    recency_lengths = [int(x) for x in args.recency_lengths.split(",")]
    result = {"command": " ".join(["python", "benchmarks/extendable_cache.py"]
                                  + [shlex.quote(a) for a in (argv or sys.argv[1:])]),
              "machine": common.machine_info(),
              "settings": {"seeds": seeds, "steps": args.steps, "eval_lengths": lengths,
                           "eval_requests": args.eval_requests,
                           "data": args.data,
                           "recency_lengths": recency_lengths,
                           "results_config": RESULTS_CONFIG},
              "runs": {}}
    # What the runs are, as CLI commands.
    result["settings"]["as_stca_commands"] = {v: [
        "stca train --data DATA --model-dir RUN " + " ".join(
            f"--set {shlex.quote(o)}" for o in overrides(v, args.steps, "SEED", lengths,
                                                         args.eval_requests)),
        "stca evaluate --data DATA --model-dir RUN"] for v in VARIANTS}
    src, source = snapshot_sources(args.out)
    current = tree_hash()
    result["settings"]["product_source"] = {
        "snapshot": src, "hash": source, "git_head": git_head(),
        "working_tree_hash_now": current, "snapshot_is_working_tree_now": current == source}
    if args.skip_train and os.path.exists(args.json):
        # Savings only: keep the training side of the result already there, and say so.
        previous = json.loads(pathlib.Path(args.json).read_text())
        for key in ("runs", "auc", "recency_check", "train_cost"):
            if key in previous:
                result[key] = previous[key]
        result["training_from"] = {k: previous.get(k) for k in ("command", "machine",
                                                                  "settings")}
    if not args.skip_train:
        data = ensure_data(args.data, os.path.join(args.out, "synth"))
        result["settings"]["data"] = data
        runs = {v: {} for v in VARIANTS}
        for seed in seeds:  # seed by seed: an interrupted run leaves both variants paired
            for variant in VARIANTS:
                run_dir = pathlib.Path(args.out) / f"{variant}_s{seed}"
                report = run_dir / "eval" / "eval_report.json"
                t0, seconds_file = time.time(), run_dir / "worker_seconds.json"
                if not report.exists():
                    print(f"[{time.strftime('%H:%M:%S')}] {variant} seed {seed} -> {run_dir}",
                          flush=True)
                    run_worker({"variant": variant, "seed": seed, "data": data,
                                "run_dir": str(run_dir), "source": source,
                                "overrides": overrides(variant, args.steps, seed, lengths,
                                                       args.eval_requests)},
                               "train", run_dir / "log.txt", timeout=3 * 3600, src=src)
                    common.write_json({"train_and_evaluate": round(time.time() - t0, 1)},
                                      seconds_file)
                made = json.loads((run_dir / "variant.json").read_text())
                check = run_dir / "recency_check.json"
                if not check.exists() or not set(map(str, recency_lengths)) <= set(
                        json.loads(check.read_text())):
                    print(f"[{time.strftime('%H:%M:%S')}] recency check {run_dir}", flush=True)
                    t1 = time.time()
                    run_worker({"variant": variant, "run_dir": str(run_dir), "data": data,
                                "lengths": recency_lengths},
                               "recency", run_dir / "log.txt", timeout=3600,
                               src=str(pathlib.Path(args.out).resolve() / "src"
                                       / made["source"]))
                    common.write_json({**json.loads(seconds_file.read_text()),
                                       "recency_check": round(time.time() - t1, 1)},
                                      seconds_file)
                ev = json.loads(report.read_text())
                tm = json.loads((run_dir / "train_metrics.json").read_text())
                runs[variant][seed] = {
                    "run_dir": str(run_dir), "train_wall_s": tm["wall_seconds"],
                    "steps": tm["steps"], "targets_seen": tm["targets_seen"],
                    "final_loss_avg_last_20": tm["final_loss_avg_last_20"],
                    "steady_step_seconds": tm.get("steady_step_seconds"),
                    "source": made["source"], "model_package": made["model_package"],
                    "rows": {str(r["length"]): r for r in ev["rows"]},
                    "recency_check": json.loads(check.read_text()),
                    "worker_seconds": json.loads(seconds_file.read_text())
                    if seconds_file.exists() else None,
                    "this_invocation_s": round(time.time() - t0, 1)}
                r = runs[variant][seed]["rows"]
                print(f"  {variant} s{seed}: train {tm['wall_seconds']:.0f} s; " + "; ".join(
                    f"L={x} " + " ".join(f"{t}={r[str(x)][t]['auc']:.4f}" for t in TASKS_SHOWN)
                    for x in lengths), flush=True)
        result["runs"] = runs
        result["settings"]["runs_share_one_source"] = len(
            {r["source"] for v in runs.values() for r in v.values()} | {source}) == 1
        tasks = list(next(iter(runs["baseline"].values()))["rows"][str(lengths[0])]
                     ["history_use"].keys())
        result["auc"] = aggregate(runs, lengths, tasks)
        result["recency_check"] = aggregate_recency(runs, recency_lengths, tasks)
        result["train_cost"] = {v: {
            "train_wall_s": spread([r["train_wall_s"] for r in runs[v].values()]),
            "steady_step_seconds": spread([r["steady_step_seconds"] for r in runs[v].values()])}
            for v in VARIANTS}
    result["savings"] = {"analytic": analytic_savings()}
    print(f"[{time.strftime('%H:%M:%S')}] timing encode_user", flush=True)
    result["savings"]["measured"] = [run_worker(
        {"L": int(length), "k": args.timing_k, "calls": args.timing_calls}, "timing",
        pathlib.Path(args.out) / f"timing_log_{length}.txt", timeout=1800, src=src)
        for length in args.timing_L.split(",")]
    result["wall_seconds"] = round(time.time() - t_start, 1)
    result["machine"]["load_average_start"] = [round(x, 2) for x in load_start]
    result["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result.setdefault("auc", [])
    result["markdown"] = markdown(result)
    common.write_json(result, args.json)
    print(result["markdown"])
    print(f"\nwrote {args.json} in {result['wall_seconds'] / 60:.1f} min")
    return result


if __name__ == "__main__":
    main()
