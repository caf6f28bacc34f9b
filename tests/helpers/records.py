"""Request-grouped TFRecords: small datasets for training tests, written with the real
writer (write_dataset), and the records of a preprocessing run read back (read_records,
parse_all).

write_dataset's label is learnable from the history: a target is positive when its author
appears in the request's history (plus a little noise), so a working model's loss falls.
"""
from __future__ import annotations

import glob
import os

import numpy as np
import tensorflow as tf

from core import features


def write_dataset(root: str, requests: int = 96, files: int = 2, history=(8, 200),
                  targets=(1, 8), tasks=("click",), seed: int = 0, authors: int = 500,
                  eval_requests: int = 32) -> str:
    """Writes ROOT/train/part-*.tfrecord.gz and ROOT/eval/... ; returns ROOT.

    Every train file holds the same number of requests (sharding tests rely on it).
    """
    rng = np.random.default_rng(seed)
    for split, count in (("train", requests), ("eval", eval_requests)):
        os.makedirs(os.path.join(root, split), exist_ok=True)
        n_files = files if split == "train" else 1
        writers = [tf.io.TFRecordWriter(
            os.path.join(root, split, f"part-{i:05d}-of-{n_files:05d}.tfrecord.gz"),
            options="GZIP") for i in range(n_files)]
        for r in range(count):
            writers[r % n_files].write(_request(rng, r, history, targets, tasks, authors))
        for w in writers:
            w.close()
    return root


def _request(rng, r, history, targets, tasks, authors) -> bytes:
    n_hist = int(rng.integers(history[0], history[1] + 1))
    n_tgt = int(rng.integers(targets[0], targets[1] + 1))
    ts = 1_700_000_000_000 + r * 60_000
    hist_author = rng.integers(1, authors, n_hist)
    seen = set(hist_author.tolist())
    # Half the targets come from the history's authors: a balanced, learnable label.
    tgt_author = np.where(rng.random(n_tgt) < 0.5, rng.choice(hist_author, n_tgt),
                          rng.integers(1, authors, n_tgt))
    positive = np.array([a in seen for a in tgt_author.tolist()])
    noisy = np.where(rng.random(n_tgt) < 0.1, ~positive, positive).astype(np.int64)
    return features.encode_request(
        request_id=r, user_id=int(rng.integers(1, 50)), request_ts=ts,
        hist_item_id=(hist_author * 1000 + rng.integers(0, 3, n_hist)).tolist(),
        hist_author_id=hist_author.tolist(), hist_action=rng.integers(0, 2, n_hist).tolist(),
        hist_ts=sorted((ts - rng.integers(1, 10**9, n_hist)).tolist(), reverse=True),
        tgt_item_id=(tgt_author * 1000 + rng.integers(0, 3, n_tgt)).tolist(),
        tgt_author_id=tgt_author.tolist(), labels={t: noisy.tolist() for t in tasks})


# The tasks of `stca synth` logs (the preprocessing tests' default schema).
SYNTH_TASKS = ["click", "like", "finish"]


def read_records(out_dir: str, split: str) -> list[bytes]:
    """Every serialized record of one split (all shards, any compression)."""
    data = []
    for path in sorted(glob.glob(os.path.join(out_dir, split, "*.tfrecord*"))):
        kind = "GZIP" if path.endswith(".gz") else ""
        data += [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type=kind)]
    return data


def parse_all(records: list[bytes], tasks=SYNTH_TASKS) -> list[dict]:
    """Records -> list of dicts of Python ints / lists (through features.parse_example)."""
    out = []
    for data in records:
        parsed = features.parse_example(tf.constant(data), tasks)
        out.append({k: v.numpy().tolist() for k, v in parsed.items()})
    return out
