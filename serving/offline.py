"""Offline scoring over an export loaded in this process, and the demo's serving check.

Example:
    from serving import demo_score
    demo_score("runs/demo/export", "runs/demo/data")["max_abs_diff"]   # ~1e-7
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import tensorflow as tf

from core import config as config_lib
from core import features
from core import input as input_lib
from serving import layout
from serving.client import RankingClient
from serving.transport import InProcessTransport


def read_request(data_dir: str, split: str = "eval", index: int = 0) -> tuple:
    """The index-th request of DATA/split as raw (user, history, candidates) for the client."""
    shards = input_lib.list_shards(data_dir, split)
    dataset = tf.data.TFRecordDataset(shards[:1], input_lib.compression_type(shards[0]))
    serialized = next(iter(dataset.skip(index).take(1)))
    ex = {k: v.numpy() for k, v in features.parse_example(serialized, []).items()}
    user = {"user_id": int(ex["user_id"]), "request_ts": int(ex["request_ts"])}
    history = list(zip(*(ex[n].tolist() for n in features.HISTORY_FEATURES)))
    candidates = list(zip(*(ex[n].tolist() for n in features.TARGET_FEATURES)))
    return user, history, candidates


def demo_score(export_dir: str, data_dir: str) -> dict:
    """Scores one held-out request both ways through `RankingClient` in process.

    serving_default (cache off) vs encode_user + score_candidates (cache on, chunks of
    serving.chunk_size), then the same request again to show the cache hit.

    Args:
      export_dir: version dir, model dir or export base (newest version).
      data_dir: preprocess output dir with an eval/ split.

    Returns:
      {"serving_default": {task: [m floats]}, "encode_user+score_candidates": {...},
       "max_abs_diff", "second_call_cache_hit", "history_length", "candidates", ...}.
    """
    transport = InProcessTransport(export_dir)
    meta = layout.read_metadata(transport.version_dir)
    serving_cfg = config_lib.config_from_dict(meta["config"]).serving
    user, history, candidates = read_request(data_dir)
    direct = RankingClient(transport, dataclasses.replace(serving_cfg, cache_bytes=0))
    cached = RankingClient(transport, serving_cfg)
    t0 = time.perf_counter()
    a = direct.rank(user, history, candidates)
    t1 = time.perf_counter()
    b = cached.rank(user, history, candidates)
    t2 = time.perf_counter()
    again = cached.rank(user, history, candidates)
    t3 = time.perf_counter()
    diff = max(float(np.max(np.abs(a.scores[t] - b.scores[t]), initial=0.0)) for t in a.scores)
    return {
        "export": transport.version_dir,
        "history_length": len(history),
        "candidates": len(candidates),
        "serving_default": {t: v.tolist() for t, v in a.scores.items()},
        "encode_user+score_candidates": {t: v.tolist() for t, v in b.scores.items()},
        "max_abs_diff": diff,
        "second_call_cache_hit": bool(again.cache_hit),
        "cache": cached.cache.stats(),
        "calls": dict(cached.calls),
        "ms": {"serving_default": round(1e3 * (t1 - t0), 1),
               "encode_user+score_candidates": round(1e3 * (t2 - t1), 1),
               "cached_user": round(1e3 * (t3 - t2), 1)},
    }

