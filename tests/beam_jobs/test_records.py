"""The per-user record writer gives, byte for byte, what encode_request gives per request."""
import numpy as np
import pytest

from beam_jobs import history, records
from core import features

TASKS = ["click", "like"]


def _events(rng, n, n_requests):
    request = rng.integers(0, n_requests, n) * 7919 - 3        # negative IDs too
    ts = rng.integers(0, n // 3 + 1, n) * 1000
    item = rng.choice([0, 5, 2**62, 2**63 - 1, 300], n)
    return np.stack([request, ts, item, item % 7, rng.integers(0, 4, n)], 1).astype(np.int64)


@pytest.mark.parametrize("layout, max_history, positive_only", [
    ("request", 50, False), ("request", 3, True), ("pointwise", 10, False)])
def test_user_records_equal_encode_request(layout, max_history, positive_only):
    rng = np.random.default_rng(max_history)
    for n in (1, 7, 300):
        events = _events(rng, n, max(1, n // 6))
        index = history.index_requests(events, max_history, positive_only)
        expected = []
        for r, req in enumerate(history.user_requests(events, max_history, positive_only)):
            labels = {t: (req.tgt_action >> i) & 1 for i, t in enumerate(TASKS)}
            targets = [slice(None)] if layout == "request" else [
                slice(j, j + 1) for j in range(len(req.tgt_item_id))]
            expected += [(r, features.encode_request(
                request_id=req.request_id, user_id=-42, request_ts=req.request_ts,
                hist_item_id=req.hist_item_id, hist_author_id=req.hist_author_id,
                hist_action=req.hist_action, hist_ts=req.hist_ts,
                tgt_item_id=req.tgt_item_id[t], tgt_author_id=req.tgt_author_id[t],
                labels={k: v[t] for k, v in labels.items()})) for t in targets]
        assert list(records.user_records(-42, index, TASKS, layout)) == expected
