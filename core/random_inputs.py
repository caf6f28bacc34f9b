"""The one builder of random model inputs: tests, export warmup / verification and benchmarks.

`random_requests` returns numpy arrays named and typed as `features.MODEL_INPUTS` (int64
IDs and timestamps, int32 lengths), zero-padded past each request's history / target
length as the input builder pads real records, with histories ordered most recent first.

Example:
    inputs, labels = random_requests(batch=4, length=1024, num_targets=16,
                                     hist_len=[1024] * 4, tgt_len=[16] * 4)
    model({k: tf.constant(v) for k, v in inputs.items()})
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from core import features

REQUEST_TS = 1_700_000_000_000  # Unix ms of every random request


def random_requests(batch: int = 3, length: int = 12, num_targets: int = 4, seed: int = 0,
                    hist_len: Sequence[int] | None = None,
                    tgt_len: Sequence[int] | None = None, tasks: Sequence[str] = (),
                    request_ts: int = REQUEST_TS) -> tuple[dict, dict]:
    """(inputs, labels) of `batch` random requests.

    Args:
      batch, length, num_targets: B, the padded history length L and targets M.
      hist_len, tgt_len: valid events / targets per request; by default request 0 is full,
        request 1 has an empty history and one target, the rest random lengths.
      tasks: label names; labels are random 0/1 floats, 0 on padded targets.
      request_ts: every request's timestamp; event ages are 1 s to 1 h apart.

    Returns:
      inputs {MODEL_INPUTS name: np.ndarray}, labels {task: float32 [B, M]}.
    """
    rng = np.random.default_rng(seed)
    if hist_len is None:
        hist_len = rng.integers(1, length + 1, size=batch)
        hist_len[0] = length
        if batch > 1:
            hist_len[1] = 0
    if tgt_len is None:
        tgt_len = rng.integers(1, num_targets + 1, size=batch)
        tgt_len[0] = num_targets
        if batch > 1:
            tgt_len[1] = 1
    hist_len, tgt_len = np.asarray(hist_len, np.int32), np.asarray(tgt_len, np.int32)
    if hist_len.shape != (batch,) or tgt_len.shape != (batch,):
        raise ValueError(f"hist_len and tgt_len need {batch} values, got {hist_len.shape} "
                         f"and {tgt_len.shape}")
    if hist_len.max(initial=0) > length or tgt_len.max(initial=0) > num_targets:
        raise ValueError(f"lengths exceed the padded shape ({length}, {num_targets})")
    hist_valid = np.arange(length)[None, :] < hist_len[:, None]
    tgt_valid = np.arange(num_targets)[None, :] < tgt_len[:, None]

    def ids(shape, valid, high=10**12):
        return np.where(valid, rng.integers(1, high, size=shape), 0).astype(np.int64)

    ages = np.cumsum(rng.integers(1_000, 3_600_000, size=(batch, length)), axis=1)
    inputs = {
        "user_id": rng.integers(1, 10**12, size=batch).astype(np.int64),
        "request_ts": np.full(batch, request_ts, np.int64),
        "hist_item_id": ids((batch, length), hist_valid),
        "hist_author_id": ids((batch, length), hist_valid, 10**6),
        "hist_action": ids((batch, length), hist_valid, 8),
        "hist_ts": np.where(hist_valid, request_ts - ages, 0).astype(np.int64),
        features.HIST_LEN: hist_len,
        "tgt_item_id": ids((batch, num_targets), tgt_valid),
        "tgt_author_id": ids((batch, num_targets), tgt_valid, 10**6),
        features.TGT_LEN: tgt_len,
    }
    assert tuple(inputs) == features.MODEL_INPUTS  # the contract's names and order
    labels = {t: np.where(tgt_valid, rng.integers(0, 2, size=(batch, num_targets)), 0)
              .astype(np.float32) for t in tasks}
    return inputs, labels
