"""Helpers for the serving tests: the tiny config, a briefly trained tiny model, exports,
and the TF Serving test double as a subprocess (fixtures in tests/serving/conftest.py).

Everything is real: records written with features.encode_request, a checkpoint written by
tf.train.Checkpoint after a few train steps, exports written by serving.export.run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from core import config as config_lib
from tests.helpers.env import REPO, subprocess_env
from tests.helpers.model import TASKS, tiny_overrides

# The tiny model (fast on 2 shared cores) with tasks click and like, trained on histories
# <= 256; served up to 10240.
OVERRIDES = tiny_overrides(TASKS) + [
    "train.length.l_min=8", "train.length.l_max=256", "train.bucket_boundaries=[64,256]",
    "train.max_targets=8", "eval.lengths=[256]", "eval.token_budget=4096",
    "export.warmup_history=64", "export.warmup_candidates=8", "export.verify_requests=16",
]
TRAIN_STEPS = 3


def tiny_config(*extra: str) -> config_lib.Config:
    return config_lib.load_config(None, OVERRIDES + list(extra))


def train_tiny(cfg: config_lib.Config, data_dir: str, model_dir: str) -> str:
    """A few Adam steps on the records, then a checkpoint + config.yaml like `stca train`."""
    import tensorflow as tf
    from model import build_model
    from core import input as input_lib
    model = build_model(cfg.model, cfg.tasks)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    batches = input_lib.eval_dataset(data_dir, cfg, 256, split="train")
    model.fit(batches.map(lambda x, y, meta: (x, y)).take(TRAIN_STEPS), verbose=0)
    config_lib.save_config(cfg, model_dir)
    path = tf.train.Checkpoint(model=model).save(os.path.join(model_dir, "checkpoints", "ckpt"))
    with open(os.path.join(model_dir, "train_metrics.json"), "w") as f:
        json.dump({"steps": TRAIN_STEPS, "latest_checkpoint": path}, f)
    return path


def export(model_dir: str, base: str, *extra: str) -> dict:
    from serving import export as export_lib
    cfg = config_lib.load_config(os.path.join(model_dir, "config.yaml"), list(extra))
    return export_lib.run(cfg, model_dir, base)


def export_recency_model(base: str) -> tuple:
    """An untrained tiny model.recency=attention model with random recency logits (they
    start at 0, which would hide request_ts), exported to `base`: (model, export info)."""
    import tensorflow as tf
    from model import build_model
    from serving import export as export_lib
    cfg = tiny_config("model.recency=attention")
    model = build_model(cfg.model, cfg.tasks)
    for i, attention in enumerate(model.encoder.attentions):
        attention.recency_bias.assign(tf.random.stateless_normal(
            attention.recency_bias.shape, seed=[1, i], stddev=2.0))
    return model, export_lib.export_model(model, cfg, base)


def start_double(model_dir: str, name: str, tmp_dir: str, timeout: float = 120.0):
    """Starts tests/serving/tf_serving_double.py; returns (Popen, ports dict)."""
    ports_file = os.path.join(tmp_dir, f"ports-{name}-{time.time_ns()}.json")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "tests", "serving", "tf_serving_double.py"),
         "--model-dir", model_dir, "--name", name, "--ports-file", ports_file],
        env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while not os.path.exists(ports_file):
        if proc.poll() is not None:
            raise RuntimeError(f"the TF Serving double exited: {proc.stderr.read()[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError("the TF Serving double did not start in time")
        time.sleep(0.2)
    with open(ports_file) as f:
        return proc, json.load(f)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
