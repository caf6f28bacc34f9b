"""A model-free reference on preprocessed records: how much AUC the history holds at each L.

Score of a target = the number of events among the request's L most recent history events
that have the target's author and a positive action (any task). It needs no training, so
its AUC against L shows what the *data* offers at each length; docs/results.md puts it
next to the trained models to tell a data problem from a model problem.

    python benchmarks/oracle.py --data runs/results/synth/data --lengths 64,256,2048
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from core import features
from core import input as input_lib
from core import metrics as metrics_lib


def read_requests(data_dir: str, split: str, tasks):
    """Yields (user_id, hist_author, hist_action, tgt_author, labels) per request."""
    import tensorflow as tf
    files = input_lib.list_shards(data_dir, split)
    ds = tf.data.TFRecordDataset(files, compression_type=input_lib.compression_type(files[0]))
    for serialized in ds.batch(256):
        parsed = features.parse_examples(serialized, tasks)
        cols = {k: parsed[k].numpy() if not hasattr(parsed[k], "to_list") else
                [np.asarray(r) for r in parsed[k].to_list()]
                for k in ["user_id", "hist_author_id", "hist_action", "tgt_author_id",
                          *[features.label_feature(t) for t in tasks]]}
        for i in range(len(cols["user_id"])):
            yield (int(cols["user_id"][i]), cols["hist_author_id"][i], cols["hist_action"][i],
                   cols["tgt_author_id"][i],
                   {t: cols[features.label_feature(t)][i] for t in tasks})


def oracle_report(data_dir: str, lengths, tasks, split: str = "eval") -> list[dict]:
    users, labels, scores = [], {t: [] for t in tasks}, {L: [] for L in lengths}
    for user, h_author, h_action, t_author, lab in read_requests(data_dir, split, tasks):
        positive = h_author[h_action > 0]  # most recent first, like the history
        order = np.flatnonzero(h_action > 0)  # positions of positive events
        for L in lengths:
            recent = positive[order < L]
            scores[L].append((recent[None, :] == t_author[:, None]).sum(axis=1))
        users.append(np.full(len(t_author), user))
        for t in tasks:
            labels[t].append(lab[t])
    users = np.concatenate(users)
    labels = {t: np.concatenate(v).astype(np.float32) for t, v in labels.items()}
    rows = []
    for L in lengths:
        s = np.concatenate(scores[L]).astype(np.float32)
        report = metrics_lib.ranking_report(tasks, users, labels, {t: s for t in tasks})
        rows.append({"length": int(L), **report})
    return rows


def training_batches_report(data_dir: str, cfg, batches: int = 40) -> dict:
    """The same reference on what the model trains on: the first BATCHES batches of
    `input.train_dataset` (sampled lengths, most recent events kept, target splitting).
    Tells an input-pipeline problem from a model problem."""
    import tensorflow as tf
    users, labels, scores = [], {t: [] for t in cfg.tasks}, []
    for inputs, batch_labels in input_lib.train_dataset(data_dir, cfg, epochs=1).take(batches):
        x = {k: v.numpy() for k, v in inputs.items()}
        for b in range(len(x["hist_len"])):
            n = x["hist_len"][b]
            positive = x["hist_author_id"][b, :n][x["hist_action"][b, :n] > 0]
            m = x["tgt_len"][b]
            scores.append((positive[None, :] == x["tgt_author_id"][b, :m, None]).sum(axis=1))
            users.append(np.full(m, x["user_id"][b]))
            for t in cfg.tasks:
                labels[t].append(batch_labels[t].numpy()[b, :m])
    del tf
    s = np.concatenate(scores).astype(np.float32)
    report = metrics_lib.ranking_report(
        cfg.tasks, np.concatenate(users),
        {t: np.concatenate(v).astype(np.float32) for t, v in labels.items()},
        {t: s for t in cfg.tasks})
    return {"batches": batches, "targets": int(len(s)), **report}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--lengths", default="64,256,1024,2048,4096")
    p.add_argument("--tasks", default="click,like,finish")
    p.add_argument("--split", default="eval")
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args(argv)
    tasks = args.tasks.split(",")
    rows = oracle_report(args.data, [int(v) for v in args.lengths.split(",")], tasks,
                         args.split)
    for r in rows:
        print(f"L={r['length']:>6} " + " ".join(f"{t}: auc={r[t]['auc']:.4f}" for t in tasks))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
