"""Per-user point-in-time history builder: one sort, then linear work
(docs/data.md, "Requests and histories").

A user's impressions are sorted once by time. A request's timestamp is the earliest
timestamp of its impressions, and its history is every event strictly before that
timestamp (so never one of its own impressions, nor anything later), most recent first,
capped at `max_history`. Because events are sorted, that history is a contiguous slice of
the time-reversed event array, found with one binary search: building all requests costs
O(n log n) for the sort plus the size of what is emitted, never a re-scan per request.
Requests are yielded lazily and their histories are numpy *views*, so a 50k-event user
with thousands of requests holds one history at a time, not all of them.

Example:
    events = np.array([[req, ts_ms, item, author, action], ...], dtype=np.int64)
    for r in user_requests(events, max_history=10240):
        r.request_id, r.request_ts, r.hist_item_id, r.tgt_item_id, r.tgt_action
"""
from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np

from beam_jobs.validate import ACTION, AUTHOR, ITEM, REQUEST, TS


class Request(NamedTuple):
    """One request with its history (most recent first) and targets (arrays, int64)."""
    request_id: int
    request_ts: int
    hist_item_id: np.ndarray
    hist_author_id: np.ndarray
    hist_action: np.ndarray
    hist_ts: np.ndarray
    tgt_item_id: np.ndarray
    tgt_author_id: np.ndarray
    tgt_action: np.ndarray


def user_requests(events: np.ndarray, max_history: int,
                  positive_only: bool = False) -> Iterator[Request]:
    """Yields one user's requests in time order, each with its point-in-time history.

    Args:
      events: [n, 5] int64 rows (request_id, ts_ms, item_id, author_id, action), any order.
      max_history: cap on history events per request (the most recent are kept).
      positive_only: history keeps only events with a non-zero action
        (data.history_events=positive); targets always keep every impression.

    Yields:
      `Request`s ordered by (request_ts, request_id). Targets are ordered by
      (ts, item, author, action); history ties on ts are broken the same way, reversed.
      Arrays are views into one shared buffer: copy them to keep them past the next yield.
    """
    events = np.asarray(events, dtype=np.int64).reshape(-1, 5)
    # One total order makes the output independent of the input order (determinism).
    order = np.lexsort((events[:, ACTION], events[:, AUTHOR], events[:, ITEM],
                        events[:, REQUEST], events[:, TS]))
    events = events[order]
    request_ids, first_row, request_of_row = np.unique(
        events[:, REQUEST], return_index=True, return_inverse=True)
    request_ts = events[first_row, TS]   # rows are time-sorted: first row = earliest
    # Rows of each request, contiguous, keeping the time order inside a request.
    rows_by_request = np.argsort(request_of_row, kind="stable")
    row_end = np.cumsum(np.bincount(request_of_row, minlength=len(request_ids)))
    row_start = row_end - np.bincount(request_of_row, minlength=len(request_ids))

    pool = events[events[:, ACTION] != 0] if positive_only else events
    pool_ts = pool[:, TS]
    recent_first = pool[::-1]            # a view; history = a slice of it
    n_pool = len(pool)
    # Number of pool events strictly before each request, by binary search.
    n_before = np.searchsorted(pool_ts, request_ts, side="left")

    for r in np.lexsort((request_ids, request_ts)):
        start = n_pool - int(n_before[r])
        hist = recent_first[start:start + max_history]
        tgt = events[rows_by_request[row_start[r]:row_end[r]]]
        yield Request(int(request_ids[r]), int(request_ts[r]),
                      hist[:, ITEM], hist[:, AUTHOR], hist[:, ACTION], hist[:, TS],
                      tgt[:, ITEM], tgt[:, AUTHOR], tgt[:, ACTION])
