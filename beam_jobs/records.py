"""Requests -> serialized tf.train.Examples (request-grouped or point-wise) and per-request stats.

The request layout (Request Level Batching) writes a request's history once with its m
targets; the point-wise layout writes one record per impression with the history copied
(m = 1), only as the baseline for measuring what RLB saves. Both go through
`pipeline.features.encode_request`, the one writer of the record schema.

Example:
    for data in encode_records(user_id, request, ["click", "like"], "request"):
        ...  # bytes of one tf.train.Example
"""
from __future__ import annotations

from typing import Iterator, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from beam_jobs import history
from pipeline import features

TRAIN, EVAL, STATS, DUPLICATES = "train", "eval", "stats", "duplicates"


def encode_records(user_id: int, request: history.Request, tasks: Sequence[str],
                   layout: str) -> Iterator[bytes]:
    """Yields the serialized Example(s) of one request.

    Args:
      user_id: int64 user ID.
      request: a `history.Request`.
      tasks: label names; label i is bit i of the target's action.
      layout: "request" (one record, m targets) or "pointwise" (one record per target).
    """
    hist = dict(hist_item_id=request.hist_item_id.tolist(),
                hist_author_id=request.hist_author_id.tolist(),
                hist_action=request.hist_action.tolist(),
                hist_ts=request.hist_ts.tolist())
    items = request.tgt_item_id.tolist()
    authors = request.tgt_author_id.tolist()
    labels = {t: ((request.tgt_action >> i) & 1).tolist() for i, t in enumerate(tasks)}
    if layout == "request":
        yield features.encode_request(
            request_id=request.request_id, user_id=user_id, request_ts=request.request_ts,
            tgt_item_id=items, tgt_author_id=authors, labels=labels, **hist)
        return
    for j in range(len(items)):
        yield features.encode_request(
            request_id=request.request_id, user_id=user_id, request_ts=request.request_ts,
            tgt_item_id=items[j:j + 1], tgt_author_id=authors[j:j + 1],
            labels={t: v[j:j + 1] for t, v in labels.items()}, **hist)


def request_stats(split: str, request: history.Request, n_tasks: int,
                  records: int) -> tuple:
    """(split, targets, history length, positives per task, records) for the stats combiner."""
    positives = tuple(int(((request.tgt_action >> i) & 1).sum()) for i in range(n_tasks))
    return split, len(request.tgt_item_id), len(request.hist_item_id), positives, records


class BuildUserRecords(beam.DoFn):
    """(user_id, impressions) -> tagged outputs: train / eval records, per-request stats and
    the number of the user's duplicate impressions (DUPLICATES, only when > 0).

    Requests with request_ts >= the eval cutoff (a side input, Unix ms) go to eval.
    Records are yielded lazily, one request at a time (see beam_jobs.history).
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
        user_id, impressions = element
        events = np.array([(v[0], v[1], v[2], v[3], v[4]) for v in impressions], dtype=np.int64)
        unique = np.unique(events, axis=0)
        if len(unique) < len(events):
            self.duplicates.inc(len(events) - len(unique))
            yield beam.pvalue.TaggedOutput(DUPLICATES, len(events) - len(unique))
            if self.drop_duplicates:
                events = unique
        for request in history.user_requests(events, self.max_history, self.positive_only):
            split = EVAL if request.request_ts >= eval_cutoff_ms else TRAIN
            written = 0
            for data in encode_records(user_id, request, self.tasks, self.layout):
                written += 1
                yield beam.pvalue.TaggedOutput(split, data)
            self.requests.inc()
            self.records.inc(written)
            yield beam.pvalue.TaggedOutput(
                STATS, request_stats(split, request, len(self.tasks), written))
