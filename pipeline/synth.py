"""Synthetic impression logs with a planted long-range signal (docs/synthetic_data.md).

Every user has a few long-term favourite authors that recur only sparsely (by default 2% of
impressions spread over 8 favourites, so one favourite shows up about every 400 events)
and a short-term interest that drifts every `synth.drift_every` impressions. A target is
much more likely to be positive when its author is a favourite or in the current
short-term interest, so a model that sees more of the history can find more of the
evidence: the reachable AUC rises with the history length (tests/pipeline/test_synth.py proves it
with a plain numpy oracle).

The generator is vectorized numpy (about a second per million events) and deterministic:
the same config and seed give byte-identical files.

Example:
    cfg = load_config(None, ["synth.users=50"])
    summary = run(cfg, "runs/synth")   # runs/synth/events-00000-of-00002.csv, config.yaml
"""
from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core import config as config_lib
from core import fileio

MIN_REQUEST_GAP_S = 10          # requests of one user never overlap (> IMPRESSION_SPREAD_S)
IMPRESSION_SPREAD_S = 3         # impressions of a request fall in [t, t + 3) seconds
USER_START_SPREAD_S = 30 * 86400
CATEGORIES = 32
DURATION_MEDIAN_S = 30.0

# Per-task label model: logit = bias + fav * is_favourite + short * is_short_term
#                              + dur * standardised log-duration + user bias.
TASK_WEIGHTS = {
    "click": dict(bias=-2.0, fav=2.5, short=1.5, dur=-0.2),
    "like": dict(bias=-3.5, fav=3.5, short=0.8, dur=0.0),
    "finish": dict(bias=-1.0, fav=2.0, short=0.5, dur=-1.0),
}
DEFAULT_TASK_WEIGHTS = dict(bias=-2.5, fav=2.5, short=1.0, dur=0.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _favourites(rng: np.random.Generator, users: int, k: int, authors: int) -> np.ndarray:
    """[users, k] distinct authors per row (sorted draw + offset trick, no per-user loop)."""
    draw = np.sort(rng.integers(0, authors - k + 1, size=(users, k)), axis=1)
    return draw + np.arange(k)


def generate(cfg: config_lib.SynthConfig, tasks: list[str]) -> dict[str, np.ndarray]:
    """Draws the synthetic log as columns (one entry per impression, ordered by user, time).

    Args:
      cfg: the synth section of the config.
      tasks: label names; known names (click, like, finish) have their own weights.

    Returns:
      dict of equal-length arrays: user (int index), request (global int index), timestamp
      (int seconds), item_id, author_id, category (int), duration (float seconds),
      is_favourite, is_short_term (the latent causes, for tests and docs) and one 0/1
      int array per task.

    Example:
        cols = generate(SynthConfig(users=10), ["click"])
        cols["click"].mean()
    """
    rng = np.random.default_rng(cfg.seed)
    users = cfg.users
    n_per_user = np.exp(rng.normal(np.log(cfg.events_median), cfg.events_sigma, size=users))
    n_per_user = np.clip(np.rint(n_per_user), cfg.events_min, cfg.events_max).astype(np.int64)
    n = int(n_per_user.sum())
    user_first = np.cumsum(n_per_user) - n_per_user
    user = np.repeat(np.arange(users), n_per_user)
    pos = np.arange(n) - user_first[user]          # position in the user's own stream

    # Requests: consecutive impressions, sizes uniform in [targets_min, targets_max]; a
    # user's first impression always starts a new request, so requests never span users
    # (a user's last request may be shorter than targets_min).
    sizes = rng.integers(cfg.targets_min, cfg.targets_max + 1, size=n // cfg.targets_min + 1)
    starts = np.zeros(n, dtype=bool)
    starts[np.cumsum(sizes)[np.cumsum(sizes) < n]] = True
    starts[0] = True
    starts[user_first] = True
    request = np.cumsum(starts) - 1
    request_first = np.flatnonzero(starts)
    request_user = user[request_first]

    # Request times: exponential gaps (at least MIN_REQUEST_GAP_S) from a per-user start.
    gaps = MIN_REQUEST_GAP_S + rng.exponential(cfg.request_gap_s, size=len(request_first))
    first_request_of_user = request[user_first]
    gaps[first_request_of_user] = 0.0
    elapsed = np.cumsum(np.floor(gaps).astype(np.int64))
    elapsed -= elapsed[first_request_of_user][request_user]
    user_start = cfg.start_ts + rng.integers(0, USER_START_SPREAD_S, size=users)
    request_ts = user_start[request_user] + elapsed
    offset = rng.integers(0, IMPRESSION_SPREAD_S, size=n)
    offset = offset[np.lexsort((offset, request))]   # time never decreases within a user
    timestamp = request_ts[request] + offset

    # Interests: long-term favourites, a short-term set that drifts, and background.
    favourites = _favourites(rng, users, cfg.favorite_authors, cfg.authors)
    windows_per_user = (n_per_user - 1) // cfg.drift_every + 1
    window = (np.cumsum(windows_per_user) - windows_per_user)[user] + pos // cfg.drift_every
    short_term = rng.integers(0, cfg.authors, size=(int(windows_per_user.sum()),
                                                    cfg.short_term_authors))
    source = rng.random(n)
    fav_pick = favourites[user, rng.integers(0, cfg.favorite_authors, size=n)]
    short_pick = short_term[window, rng.integers(0, cfg.short_term_authors, size=n)]
    background = rng.integers(0, cfg.authors, size=n)
    author = np.where(source < cfg.favorite_rate, fav_pick,
                      np.where(source < cfg.favorite_rate + cfg.short_term_rate,
                               short_pick, background))
    items_per_author = max(1, cfg.items // cfg.authors)
    item = author + cfg.authors * rng.integers(0, items_per_author, size=n)
    log_duration = rng.normal(0.0, 0.6, size=n)
    duration = np.round(DURATION_MEDIAN_S * np.exp(log_duration), 1)

    # Latent causes are recomputed from the author, since a background draw can hit a
    # favourite too: the label depends on who the author is, not on how it was drawn.
    is_favourite = (favourites[user] == author[:, None]).any(axis=1)
    is_short_term = (short_term[window] == author[:, None]).any(axis=1)
    cols = dict(user=user, request=request, timestamp=timestamp, item_id=item,
                author_id=author, category=author % CATEGORIES, duration=duration,
                is_favourite=is_favourite, is_short_term=is_short_term)
    for task in tasks:
        w = TASK_WEIGHTS.get(task, DEFAULT_TASK_WEIGHTS)
        user_bias = rng.normal(0.0, 0.3, size=users)[user]
        logit = (w["bias"] + w["fav"] * is_favourite + w["short"] * is_short_term
                 + w["dur"] * log_duration / 0.6 + user_bias)
        cols[task] = (rng.random(n) < _sigmoid(logit)).astype(np.int64)
    return cols


def _raw_table(cols: dict[str, np.ndarray], cfg: config_lib.Config, rows: slice):
    """Columns of `rows` named and typed as the raw schema (data.schema) says."""
    schema = cfg.data.schema
    user = cols["user"][rows]
    user_names = np.array([f"u{u:06d}" for u in range(cfg.synth.users)])
    ts = cols["timestamp"][rows]
    if schema.timestamp_unit == "ms":
        ts = ts * 1000
    fields = {schema.user_id: pa.array(user_names[user])}
    if schema.request_id:
        first, last = int(cols["request"][rows][0]), int(cols["request"][rows][-1])
        names = np.array([f"r{r:09d}" for r in range(first, last + 1)])
        fields[schema.request_id] = pa.array(names[cols["request"][rows] - first])
    fields[schema.timestamp] = pa.array(ts)
    fields[schema.item_id] = pa.array(cols["item_id"][rows])
    if schema.author_id:
        fields[schema.author_id] = pa.array(cols["author_id"][rows])
    fields["category"] = pa.array(cols["category"][rows])
    fields["duration"] = pa.array(cols["duration"][rows])
    for task in schema.tasks:
        fields[task] = pa.array(cols[task][rows])
    return pa.table(fields)


def _write_jsonl(table, path: str) -> None:
    names = table.column_names
    columns = [c.to_pylist() for c in table.columns]
    lines = [json.dumps(dict(zip(names, values)), separators=(",", ":"))
             for values in zip(*columns)]
    fileio.write_text(path, "\n".join(lines) + "\n")


def _write(table, path: str, fmt: str) -> None:
    if fmt == "jsonl":
        _write_jsonl(table, path)
        return
    if fmt == "csv":
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table, sink, pacsv.WriteOptions(quoting_style="none"))
        data = sink.getvalue().to_pybytes()
    else:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="snappy")
        data = sink.getvalue().to_pybytes()
    fileio.write_bytes(path, data)


def run(cfg: config_lib.Config, out_dir: str) -> dict:
    """Writes `synth.files` shards of raw logs (and config.yaml) into `out_dir`.

    Users are split over the shards in contiguous blocks; rows inside a shard are ordered
    by user, then time.

    Args:
      cfg: the resolved config (synth section + data.schema for column names and tasks).
      out_dir: local, gs:// or s3:// directory.

    Returns:
      A summary dict: files, users, events, requests, label rates, seconds.

    Example:
        run(load_config(None, ["synth.users=20", "synth.format=jsonl"]), "/tmp/synth")
    """
    cfg.validate()
    sc = cfg.synth
    start = time.perf_counter()
    cols = generate(sc, cfg.tasks)
    generated_s = time.perf_counter() - start
    fileio.makedirs(out_dir)
    user_first = np.searchsorted(cols["user"], np.arange(sc.users + 1))
    bounds = np.linspace(0, sc.users, sc.files + 1).astype(int)
    files = []
    for k in range(sc.files):
        rows = slice(int(user_first[bounds[k]]), int(user_first[bounds[k + 1]]))
        if rows.stop <= rows.start:
            continue
        path = fileio.join(out_dir, f"events-{k:05d}-of-{sc.files:05d}.{sc.format}")
        _write(_raw_table(cols, cfg, rows), path, sc.format)
        files.append(path)
    config_lib.save_config(cfg, out_dir)
    return {
        "out": out_dir,
        "files": files,
        "format": sc.format,
        "users": sc.users,
        "events": int(len(cols["user"])),
        "requests": int(cols["request"][-1]) + 1,
        "label_rates": {t: round(float(cols[t].mean()), 4) for t in cfg.tasks},
        "favourite_share": round(float(cols["is_favourite"].mean()), 4),
        "generate_seconds": round(generated_s, 3),
        "seconds": round(time.perf_counter() - start, 3),
    }
