"""Per-user point-in-time history builder: one sort, then linear work
(docs/data.md, "Requests and histories").

A user's impressions are sorted once by time. A request's timestamp is the earliest
timestamp of its impressions, and its history is every event strictly before that
timestamp (so never one of its own impressions, nor anything later), most recent first,
capped at `max_history`. Because events are sorted, that history is a contiguous slice of
the time-reversed event array, found with one binary search: `index_requests` finds every
request's slice at once (numpy, no loop over requests), so building all requests costs
O(n log n) for the sort and nothing per history event. Histories are never copied: the
record writer slices each one out of the user's encoded events (beam_jobs/records.py), and
`user_requests` yields numpy *views*, so a 50k-event user with thousands of requests holds
one history at a time, not all of them.

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


class UserRequests(NamedTuple):
    """All requests of one user, in output order, as slices of two event arrays.

    Request r (ordered by (request_ts, request_id)) has the history
    `history[hist_start[r]:hist_start[r] + hist_len[r]]` (most recent first) and the
    targets `targets[target_start[r]:target_end[r]]`. Event rows are
    (request_id, ts_ms, item_id, author_id, action), int64.
    """
    request_id: np.ndarray        # [R]
    request_ts: np.ndarray        # [R]
    history: np.ndarray           # [P, 5] history events, most recent first (a view)
    hist_start: np.ndarray        # [R]
    hist_len: np.ndarray          # [R]
    targets: np.ndarray           # [N, 5] every event, grouped by request in output order
    target_start: np.ndarray      # [R]
    target_end: np.ndarray        # [R]


def index_requests(events: np.ndarray, max_history: int,
                   positive_only: bool = False) -> UserRequests:
    """One user's events -> every request's history and targets, as slices.

    Args:
      events: [n, 5] int64 rows (request_id, ts_ms, item_id, author_id, action), any order.
      max_history: cap on history events per request (the most recent are kept).
      positive_only: history keeps only events with a non-zero action
        (data.history_events=positive); targets always keep every impression.

    Returns:
      `UserRequests`. Targets of a request are ordered by (ts, item, author, action);
      history ties on ts are broken the same way, reversed.
    """
    events = np.asarray(events, dtype=np.int64).reshape(-1, 5)
    # One total order makes the output independent of the input order (determinism).
    order = np.lexsort((events[:, ACTION], events[:, AUTHOR], events[:, ITEM],
                        events[:, REQUEST], events[:, TS]))
    events = events[order]
    request_ids, first_row, request_of_row = np.unique(
        events[:, REQUEST], return_index=True, return_inverse=True)
    request_ts = events[first_row, TS]   # rows are time-sorted: first row = earliest
    out = np.lexsort((request_ids, request_ts))
    rank = np.empty_like(out)
    rank[out] = np.arange(len(out))
    # Rows of each request, contiguous in output order, keeping the time order inside.
    row_rank = rank[request_of_row]
    target_end = np.cumsum(np.bincount(row_rank, minlength=len(out)))
    pool = events[events[:, ACTION] != 0] if positive_only else events
    # Number of pool events strictly before each request, by binary search; the history
    # is the slice of the reversed pool that starts right after them.
    n_before = np.searchsorted(pool[:, TS], request_ts[out], side="left")
    return UserRequests(
        request_id=request_ids[out], request_ts=request_ts[out], history=pool[::-1],
        hist_start=len(pool) - n_before, hist_len=np.minimum(n_before, max_history),
        targets=events[np.argsort(row_rank, kind="stable")],
        target_start=target_end - np.bincount(row_rank, minlength=len(out)),
        target_end=target_end)


def user_requests(events: np.ndarray, max_history: int,
                  positive_only: bool = False) -> Iterator[Request]:
    """Yields one user's requests in time order, each with its point-in-time history.

    Args: as `index_requests`.

    Yields:
      `Request`s ordered by (request_ts, request_id). Arrays are views into shared
      buffers: copy them to keep them past the next yield.
    """
    index = index_requests(events, max_history, positive_only)
    for r in range(len(index.request_id)):
        start = int(index.hist_start[r])
        hist = index.history[start:start + int(index.hist_len[r])]
        tgt = index.targets[index.target_start[r]:index.target_end[r]]
        yield Request(int(index.request_id[r]), int(index.request_ts[r]),
                      hist[:, ITEM], hist[:, AUTHOR], hist[:, ACTION], hist[:, TS],
                      tgt[:, ITEM], tgt[:, AUTHOR], tgt[:, ACTION])
