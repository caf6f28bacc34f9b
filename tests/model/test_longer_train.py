"""LONGER trains through the real CLI (`python -m pipeline.cli train`) on TFRecords written
with the real writer, and its loss falls on a task that needs the history."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from core import features
from tests.helpers.env import REPO, subprocess_env

TS = 1_700_000_000_000


def write_requests(directory, requests=192, authors=40, seed=0):
    """A target is positive iff its author occurs in the request's history. Every user
    draws the history from 4 favourite authors; half of the targets come from them."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory)
    path = os.path.join(directory, "part-00000-of-00001.tfrecord.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for r in range(requests):
            favourites = rng.choice(authors, size=4, replace=False) + 1
            n_hist, n_tgt = int(rng.integers(8, 121)), int(rng.integers(2, 9))
            hist_author = rng.choice(favourites, size=n_hist)
            tgt_author = np.where(np.arange(n_tgt) % 2 == 0, rng.choice(favourites, n_tgt),
                                  rng.integers(1, authors + 1, n_tgt))
            seen = set(hist_author.tolist())
            ts = TS + r * 60_000
            writer.write(features.encode_request(
                request_id=r, user_id=int(rng.integers(1, 1000)), request_ts=ts,
                hist_item_id=(hist_author * 1000 + rng.integers(0, 50, n_hist)).tolist(),
                hist_author_id=hist_author.tolist(),
                hist_action=rng.integers(0, 2, n_hist).tolist(),
                hist_ts=sorted((ts - rng.integers(1, 10**9, n_hist)).tolist(), reverse=True),
                tgt_item_id=(tgt_author * 1000 + rng.integers(0, 50, n_tgt)).tolist(),
                tgt_author_id=tgt_author.tolist(),
                labels={"click": [int(a in seen) for a in tgt_author.tolist()]}))


def logged_losses(model_dir):
    """(step, loss) pairs from the TensorBoard event files train.py writes."""
    points = []
    for path in tf.io.gfile.glob(os.path.join(model_dir, "logs", "train", "events.out.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "loss":
                    points.append((event.step, float(tf.make_ndarray(value.tensor))))
    return [loss for _, loss in sorted(points)]


@pytest.mark.slow  # 70 steps through `stca train` in a child process
def test_longer_trains_through_the_cli_and_its_loss_falls(tmp_path):
    write_requests(str(tmp_path / "data" / "train"))
    overrides = [
        "model.encoder=longer", "model.longer.merge_k=4", "model.longer.recent_k=4",
        "model.longer.self_attn_layers=1", "model.d_model=16", "model.num_heads=2",
        "model.item_buckets=5003", "model.author_buckets=101", "model.user_buckets=101",
        "model.head_width=32", "model.head_layers=1", "data.schema.tasks=[click]",
        "train.steps=70", "train.log_every=1", "train.learning_rate=0.01",
        "train.warmup_steps=5", "train.length.l_min=8", "train.length.l_max=128",
        "train.bucket_boundaries=[32,64,128]", "train.token_budget=1024",
        "train.max_targets=8", "train.checkpoint_every=1000"]
    args = [sys.executable, "-m", "pipeline.cli", "train", "--data", str(tmp_path / "data"),
            "--model-dir", str(tmp_path / "model")]
    for override in overrides:
        args += ["--set", override]
    proc = subprocess.run(args, cwd=REPO, env=subprocess_env(), capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = logged_losses(str(tmp_path / "model"))
    assert len(losses) == 70 and np.isfinite(losses).all()
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < 0.8 * first, (first, last)
    metrics = json.load(open(tmp_path / "model" / "train_metrics.json"))
    assert metrics["steps"] == 70 and metrics["final_loss_avg_last_20"] < 0.85 * first
