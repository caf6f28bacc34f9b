"""The quality experiments' configuration (docs/results.md) and their data: the sizes per
dataset and the logged `stca` commands that make the records. Used by run_results.py
(which runs the experiments) and bench_train.py (which times the same training config).
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys

import common

REPO = str(common.REPO)
MOVIELENS = os.path.join(os.path.dirname(REPO), "shared", "data", "movielens_100k", "u.data")
COMMANDS: list[str] = []


def run(cmd: list[str], shown: list[str], done: bool) -> None:
    COMMANDS.append(" ".join(shlex.quote(a) for a in shown))
    if done:
        return
    print("+", COMMANDS[-1], flush=True)
    env = dict(os.environ, PYTHONPATH=REPO)
    subprocess.run(cmd, check=True, env=env,
                   stdout=None if os.environ.get("VERBOSE") else subprocess.DEVNULL)


def stca(*args: str, done: bool = False) -> None:
    """Runs `stca ARGS` (logged for the docs even when an earlier run made the output)."""
    run([sys.executable, "-m", "pipeline.cli", *args], ["stca", *args], done)


def sets(overrides) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def settings(dataset: str, quick: bool) -> dict:
    """Sizes per dataset, chosen so that one seed of everything runs in about an hour on
    the 2-core machine. Sampler: Beta(0.35, 1.5) on [l_min, l_max], mean ~1/5 of l_max.
    MovieLens histories are short (p90 ~280 ratings), so its window is [8, 640]."""
    l_min, l_max = (32, 1024) if dataset == "synth" else (8, 640)
    a, b = 0.35, 1.5
    mean_len = l_min + a / (a + b) * (l_max - l_min)
    mean_len = int(-(-mean_len // 8) * 8)
    s = {"window": [l_min, l_max], "beta": [a, b], "mean_len": mean_len,
         "sampler": ["train.length.mode=beta", f"train.length.l_min={l_min}",
                     f"train.length.l_max={l_max}", f"train.length.beta_a={a}",
                     f"train.length.beta_b={b}"],
         "model": ["model.d_model=32", "model.num_heads=4", "model.num_layers=3"],
         # XLA off (explicitly, so the config means the same on any device) and 9 buckets:
         # at d = 32 on the 2-core CPU the XLA step is slower and costs a ~16 s compile per
         # bucket; without compiles finer buckets cut the padding (docs/performance.md:
         # bench_xla, bench_train).
         "train": ["train.learning_rate=0.002", "train.warmup_steps=50",
                   "train.checkpoint_every=100000", "train.log_every=100",
                   "train.jit_compile=false",
                   "train.bucket_boundaries=[64,96,128,192,256,384,512,768,1024]"],
         "compare_len": 256, "rlb_budget": 4096}
    if dataset == "synth":
        s.update(tasks=["click", "like", "finish"], long_task="like",
                 data=["data.max_history=4096", "data.num_shards=8"],
                 synth=["synth.users=40", "synth.events_median=1500"] if quick
                 else ["synth.users=200"],
                 steps=120 if quick else 800, budget=16384, rlb_steps=40 if quick else 150,
                 lengths=sorted({64, mean_len, 1024, 5 * mean_len, 2048}),
                 check_lengths=(64, 2048), compare_at=1024,
                 # 3,000 of the 6,700 eval requests (a random subset: shards are shuffled):
                 # ~24k targets, 11 scoring passes per run (5 lengths, history checks).
                 eval=["eval.max_requests=3000"])
    else:
        s.update(tasks=["like"], long_task="like",
                 data=["data.max_history=2048", "data.schema.tasks=[like]",
                       "data.num_shards=4"],
                 steps=60 if quick else 300, budget=8192, rlb_steps=30 if quick else 100,
                 lengths=sorted({16, 64, mean_len, 256, 5 * mean_len, 1024}),
                 check_lengths=(16, 1024), compare_at=256, eval=["eval.max_requests=0"])
    s["train"].append(f"train.steps={s['steps']}")
    s["train"].append(f"train.token_budget={s['budget']}")
    return s


def prepare_data(dataset: str, root: str, s: dict, pointwise: bool = True) -> dict:
    data = {"request": os.path.join(root, "data"), "pointwise": os.path.join(root, "pointwise")}
    if dataset == "synth":
        raw = os.path.join(root, "raw")
        stca("synth", "--out", raw, *sets(s["synth"]),
             done=os.path.exists(os.path.join(raw, "config.yaml")))
        source = ["--input", os.path.join(raw, "*.csv")]
    else:
        source = ["--input", MOVIELENS, "--format", "movielens"]
    stca("preprocess", *source, "--out", data["request"], *sets(s["data"]),
         done=os.path.exists(os.path.join(data["request"], "stats.json")))
    if not pointwise:
        return data
    # Point-wise records copy the history per impression: cap it at the length (d) uses.
    stca("preprocess", *source, "--out", data["pointwise"], "--layout", "pointwise",
         *sets(s["data"] + [f"data.max_history={s['compare_len']}"]),
         done=os.path.exists(os.path.join(data["pointwise"], "stats.json")))
    return data
