"""The outside reference: DeepCTR's DIN trained and scored on the project's own records.

DeepCTR (https://github.com/shenweichen/DeepCTR) is not a dependency of the project; it
installs beside the pinned stack with `pip install --no-deps deepctr==0.9.4`. This script
expands the request-grouped TFRecords point-wise (one sample per target, the request's
L most recent events as the behaviour sequence), trains one DIN per task on the first
`--targets` training targets in a shuffled order, and reports AUC / GAUC on the eval split
with the same L, so the numbers sit beside `stca evaluate`'s.

    pip install --no-deps deepctr==0.9.4
    python benchmarks/deepctr_din.py --data runs/data --length 1024 --targets 90000 \\
        --tasks click,like --seed 0 --out runs/din.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import core  # noqa: F401  (sets the Keras environment before TensorFlow loads)
import numpy as np

from core import features
from core import input as input_lib
from core import metrics as metrics_lib

ITEM_VOCAB = 200_003      # the project's model.item_buckets / author_buckets
AUTHOR_VOCAB = 20_011
USER_VOCAB = 100_003


def _bucket(ids: np.ndarray, vocab: int) -> np.ndarray:
    """Raw int64 IDs -> [1, vocab) (0 is DeepCTR's padding / mask value)."""
    return (np.mod(ids, vocab - 1) + 1).astype(np.int32)


def pointwise(data_dir: str, split: str, length: int, tasks, limit: int = 0, seed: int = 0):
    """Expands a split into per-target arrays with the L most recent events per sample."""
    import tensorflow as tf
    files = input_lib.list_shards(data_dir, split)
    ds = tf.data.TFRecordDataset(files, compression_type=input_lib.compression_type(files[0]))
    cols = {k: [] for k in ("user", "item", "author", "hist_item", "hist_author", "seq_length")}
    labels = {t: [] for t in tasks}
    for serialized in ds.batch(256):
        parsed = features.parse_examples(serialized, tasks)
        inputs, batch_labels = features.model_inputs(parsed, tasks, max_history=length,
                                                     pad_history_to=length)
        x = {k: v.numpy() for k, v in inputs.items()}
        valid = np.arange(x["tgt_item_id"].shape[1])[None, :] < x["tgt_len"][:, None]
        rows = np.nonzero(valid)[0]
        hist_valid = np.arange(length)[None, :] < x["hist_len"][:, None]
        cols["user"].append(_bucket(x["user_id"][rows], USER_VOCAB))
        cols["item"].append(_bucket(x["tgt_item_id"][valid], ITEM_VOCAB))
        cols["author"].append(_bucket(x["tgt_author_id"][valid], AUTHOR_VOCAB))
        cols["hist_item"].append(np.where(hist_valid, _bucket(x["hist_item_id"], ITEM_VOCAB),
                                          0)[rows])
        cols["hist_author"].append(np.where(hist_valid, _bucket(x["hist_author_id"],
                                                                AUTHOR_VOCAB), 0)[rows])
        cols["seq_length"].append(x["hist_len"][rows].astype(np.int32))
        for t in tasks:
            labels[t].append(batch_labels[t].numpy()[valid])
    cols = {k: np.concatenate(v) for k, v in cols.items()}
    labels = {t: np.concatenate(v) for t, v in labels.items()}
    users = cols["user"].copy()
    if limit:
        order = np.random.default_rng(seed).permutation(len(users))[:limit]
        cols = {k: v[order] for k, v in cols.items()}
        labels = {t: v[order] for t, v in labels.items()}
        users = users[order]
    return cols, labels, users


def build_din(length: int, dim: int, seed: int):
    from deepctr.feature_column import SparseFeat, VarLenSparseFeat
    from deepctr.models import DIN
    feats = [SparseFeat("user", USER_VOCAB, embedding_dim=dim),
             SparseFeat("item", ITEM_VOCAB, embedding_dim=dim),
             SparseFeat("author", AUTHOR_VOCAB, embedding_dim=dim),
             VarLenSparseFeat(SparseFeat("hist_item", ITEM_VOCAB, embedding_dim=dim,
                                         embedding_name="item"), maxlen=length,
                              length_name="seq_length"),
             VarLenSparseFeat(SparseFeat("hist_author", AUTHOR_VOCAB, embedding_dim=dim,
                                         embedding_name="author"), maxlen=length,
                              length_name="seq_length")]
    return DIN(feats, ["item", "author"], seed=seed)


def run(data_dir: str, length: int, targets: int, tasks, seed: int, dim: int = 8,
        batch_size: int = 256, epochs: int = 1) -> dict:
    import tensorflow as tf
    tf.keras.utils.set_random_seed(seed)
    train_x, train_y, _ = pointwise(data_dir, "train", length, tasks, targets, seed)
    eval_x, eval_y, eval_users = pointwise(data_dir, "eval", length, tasks)
    result = {"length": length, "targets": int(len(train_x["item"])), "seed": seed,
              "embedding_dim": dim, "batch_size": batch_size, "epochs": epochs, "tasks": {}}
    for task in tasks:
        t0 = time.time()
        model = build_din(length, dim, seed)
        model.compile("adam", "binary_crossentropy")
        model.fit(train_x, train_y[task], batch_size=batch_size, epochs=epochs, verbose=0)
        scores = model.predict(eval_x, batch_size=1024, verbose=0).reshape(-1)
        report = metrics_lib.ranking_report([task], eval_users, {task: eval_y[task]},
                                            {task: scores})[task]
        result["tasks"][task] = {"auc": report["auc"], "gauc": report["gauc"],
                                 "seconds": round(time.time() - t0, 1)}
        print(f"deepctr DIN L={length} {task}: auc={report['auc']:.4f} "
              f"gauc={report['gauc']:.4f} ({time.time() - t0:.0f}s)", flush=True)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--length", type=int, default=1024)
    p.add_argument("--targets", type=int, default=0, help="training targets (0: all)")
    p.add_argument("--tasks", default="click,like")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dim", type=int, default=8, help="embedding width per ID field")
    p.add_argument("--out")
    args = p.parse_args(argv)
    result = run(args.data, args.length, args.targets, args.tasks.split(","), args.seed,
                 args.dim)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
