"""The per-user history builder: point-in-time correctness, order, cap, memory and linearity."""
import time
import tracemalloc

import numpy as np
import pytest

from beam_jobs.history import user_requests


def _random_user(rng, n, n_requests):
    """Events with ties in time and requests whose impressions interleave with others."""
    request = rng.integers(0, n_requests, size=n) * 7919 + 11
    ts = rng.integers(0, n // 3 + 1, size=n) * 1000
    item = rng.integers(0, 50, size=n)
    author = item % 7
    action = rng.integers(0, 4, size=n) * (rng.random(n) < 0.5)
    return np.stack([request, ts, item, author, action], axis=1).astype(np.int64)


def _naive(events, max_history, positive_only=False):
    """Plain-Python reference: a full scan per request (quadratic, fine for tests)."""
    rows = sorted(map(tuple, events.tolist()), key=lambda r: (r[1], r[0], r[2], r[3], r[4]))
    out = []
    for req in sorted({r[0] for r in rows},
                      key=lambda q: (min(r[1] for r in rows if r[0] == q), q)):
        ts = min(r[1] for r in rows if r[0] == req)
        hist = [r for r in rows if r[1] < ts and (r[4] != 0 or not positive_only)]
        hist = hist[::-1][:max_history]
        tgt = [r for r in rows if r[0] == req]
        out.append((req, ts, [(r[2], r[3], r[4], r[1]) for r in hist],
                    [(r[2], r[3], r[4]) for r in tgt]))
    return out


def _as_tuples(requests):
    return [(r.request_id, r.request_ts,
             list(zip(r.hist_item_id.tolist(), r.hist_author_id.tolist(),
                      r.hist_action.tolist(), r.hist_ts.tolist())),
             list(zip(r.tgt_item_id.tolist(), r.tgt_author_id.tolist(), r.tgt_action.tolist())))
            for r in requests]


@pytest.mark.parametrize("max_history, positive_only", [(10240, False), (5, False),
                                                        (10240, True), (3, True)])
def test_matches_naive_reference(max_history, positive_only):
    rng = np.random.default_rng(max_history)
    for _ in range(5):
        events = _random_user(rng, 120, 25)
        got = _as_tuples(user_requests(events, max_history, positive_only))
        assert got == _naive(events, max_history, positive_only)


def test_no_leakage_most_recent_first_and_cap():
    events = _random_user(np.random.default_rng(1), 400, 60)
    n_capped = 0
    for r in user_requests(events, max_history=20):
        own = events[events[:, 0] == r.request_id]
        assert r.request_ts == own[:, 1].min()
        assert (r.hist_ts < r.request_ts).all()                   # strictly before
        assert (np.diff(r.hist_ts) <= 0).all()                    # most recent first
        assert len(r.hist_ts) <= 20
        n_before = int((events[:, 1] < r.request_ts).sum())
        assert len(r.hist_ts) == min(20, n_before)                # nothing earlier dropped
        n_capped += n_before > 20
        assert sorted(r.tgt_item_id.tolist()) == sorted(own[:, 2].tolist())
    assert n_capped > 0


def test_output_does_not_depend_on_input_order():
    events = _random_user(np.random.default_rng(2), 300, 40)
    shuffled = events[np.random.default_rng(3).permutation(len(events))]
    assert _as_tuples(user_requests(events, 50)) == _as_tuples(user_requests(shuffled, 50))


def _big_user(n, per_request=8):
    rng = np.random.default_rng(n)
    request = np.arange(n) // per_request
    ts = request * 60_000 + rng.integers(0, 3, size=n) * 1000
    item = rng.integers(0, 100_000, size=n)
    return np.stack([request, ts, item, item % 5000, rng.integers(0, 8, size=n)],
                    axis=1).astype(np.int64)


def test_50k_event_user_memory_stays_bounded():
    events = _big_user(50_000)
    max_history = 10240
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    emitted = 0
    for r in user_requests(events, max_history):
        emitted += len(r.hist_item_id) + int(r.hist_ts[:1].sum() > 0)   # touch the view
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    materialised = emitted * 4 * 8      # every history's 4 int64 columns held at once
    assert emitted > 40_000_000         # thousands of requests with long histories
    assert peak - base < 40 * 2**20, f"peak growth {(peak - base) / 2**20:.1f} MiB"
    assert peak - base < materialised / 100


def _cpu_seconds(events, max_history):
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for r in user_requests(events, max_history):
            len(r.hist_item_id)
        best = min(best, time.process_time() - start)
    return best


def test_work_is_linear_in_the_number_of_events():
    # With a small cap the output is linear, so a linear builder scales ~10x from 5k to
    # 50k events; a per-request re-scan of the history would scale ~100x.
    small, large = _cpu_seconds(_big_user(5_000), 64), _cpu_seconds(_big_user(50_000), 64)
    assert large / small < 30, (small, large)
