"""A user's requests -> serialized tf.train.Examples (request-grouped or point-wise) and
per-request stats.

The request layout (Request Level Batching) writes a request's history once with its m
targets; the point-wise layout writes one record per impression with the history copied
(m = 1), only as the baseline for measuring what RLB saves.

The bytes are those of `core.features.encode_request` for the same request (the
reference writer of the record schema; tests/beam_jobs/test_records.py checks the equality), built
per user instead of per request: a varint encodes one value on its own, so each of the
user's event columns is encoded once (`core.example_writer.Varints`) and a request's
history, a contiguous run of events (beam_jobs.history), is a byte slice of it. Encoding
per request would cost a numpy call per column per request, and each history event would
be encoded once per later request, up to max_history times.

Example:
    for r, data in user_records(user_id, history.index_requests(events, 100), ["click"],
                                "request"):
        ...  # r: the request's index; data: bytes of one tf.train.Example
"""
from __future__ import annotations

from typing import Iterator, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from beam_jobs import blocks, history
from beam_jobs.validate import ACTION, AUTHOR, ITEM, TS
from core import schema
from core.example_writer import Varints, example, varint

TRAIN, EVAL, STATS, DUPLICATES = "train", "eval", "stats", "duplicates"
_HISTORY_COLUMNS = (("hist_item_id", ITEM), ("hist_author_id", AUTHOR),
                    ("hist_action", ACTION), ("hist_ts", TS))
_TARGET_COLUMNS = (("tgt_item_id", ITEM), ("tgt_author_id", AUTHOR))


def label_bits(actions: np.ndarray, n_tasks: int) -> np.ndarray:
    """[n] action bitmasks -> [n, n_tasks] 0/1 labels (label i is bit i)."""
    return (actions[:, None] >> np.arange(n_tasks)) & 1


def user_records(user_id: int, index: history.UserRequests, tasks: Sequence[str],
                 layout: str) -> Iterator[tuple[int, bytes]]:
    """Yields (request index, serialized Example) for every record of one user's requests.

    Args:
      user_id: int64 user ID.
      index: the user's requests (`history.index_requests`).
      tasks: label names; label i is bit i of the target's action.
      layout: "request" (one record, m targets) or "pointwise" (one record per target).
    """
    hist = [(name, Varints(index.history[:, column])) for name, column in _HISTORY_COLUMNS]
    labels = label_bits(index.targets[:, ACTION], len(tasks))
    tgt = [(name, Varints(index.targets[:, column])) for name, column in _TARGET_COLUMNS]
    tgt += [(schema.label_feature(t), Varints(labels[:, i])) for i, t in enumerate(tasks)]
    request_ids, request_ts = Varints(index.request_id), Varints(index.request_ts)
    user = ("user_id", varint(user_id))
    for r, (h0, h1, t0, t1) in enumerate(zip(
            index.hist_start.tolist(), (index.hist_start + index.hist_len).tolist(),
            index.target_start.tolist(), index.target_end.tolist())):
        shared = [user, ("request_id", request_ids.span(r, r + 1)),
                  ("request_ts", request_ts.span(r, r + 1))]
        shared += [(name, values.span(h0, h1)) for name, values in hist]
        if layout == "request":
            yield r, example(shared + [(name, values.span(t0, t1)) for name, values in tgt])
            continue
        for j in range(t0, t1):
            yield r, example(shared + [(name, values.span(j, j + 1)) for name, values in tgt])


class BuildUserRecords(beam.DoFn):
    """(user_id, impression blocks) -> tagged outputs: train / eval records, per-request
    stats and the number of the user's duplicate impressions (DUPLICATES, only when > 0).

    Requests with request_ts >= the eval cutoff (a side input, Unix ms) go to eval.
    Stats are one tuple per request: (split, targets, history length, positives per task,
    records), for stats.StatsFn.
    Duplicates are impressions equal in every field (request, ts, item, author, labels; the
    user is the key): a logged row written twice. They are always counted and, with
    `drop_duplicates`, kept once.
    """

    def __init__(self, tasks: Sequence[str], max_history: int, positive_only: bool,
                 layout: str, drop_duplicates: bool = True):
        self.tasks = list(tasks)
        self.max_history = max_history
        self.positive_only = positive_only
        self.layout = layout
        self.drop_duplicates = drop_duplicates
        self.requests = Metrics.counter("stca.preprocess", "requests")
        self.records = Metrics.counter("stca.preprocess", "records")
        self.duplicates = Metrics.counter("stca.preprocess", "duplicate_rows")

    def process(self, element, eval_cutoff_ms: int):
        user_id, user_blocks = element
        events = blocks.concat(user_blocks)
        unique = np.unique(events, axis=0)
        if len(unique) < len(events):
            self.duplicates.inc(len(events) - len(unique))
            yield beam.pvalue.TaggedOutput(DUPLICATES, len(events) - len(unique))
            if self.drop_duplicates:
                events = unique
        index = history.index_requests(events, self.max_history, self.positive_only)
        splits = [EVAL if ts >= eval_cutoff_ms else TRAIN for ts in index.request_ts.tolist()]
        for r, data in user_records(user_id, index, self.tasks, self.layout):
            yield beam.pvalue.TaggedOutput(splits[r], data)
        targets = (index.target_end - index.target_start).tolist()
        positives = np.add.reduceat(label_bits(index.targets[:, ACTION], len(self.tasks)),
                                    index.target_start, axis=0).tolist()
        per_request = targets if self.layout == "pointwise" else [1] * len(targets)
        for split, n_targets, hist_len, pos, records in zip(
                splits, targets, index.hist_len.tolist(), positives, per_request):
            yield beam.pvalue.TaggedOutput(STATS, (split, n_targets, hist_len, tuple(pos),
                                                   records))
        self.requests.inc(len(splits))
        self.records.inc(sum(per_request))
