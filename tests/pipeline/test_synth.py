"""Synthetic logs: raw schema, determinism, time structure, and the planted long-range signal."""
import hashlib
import json
import pathlib

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from core import config as C
from pipeline import synth


def _cfg(*overrides):
    return C.load_config(None, ["synth.users=12", "synth.events_median=300",
                                "synth.events_min=50", *overrides])


def _digests(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(pathlib.Path(directory).glob("events-*"))}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_same_seed_gives_byte_identical_files(tmp_path, fmt):
    a = synth.run(_cfg(f"synth.format={fmt}"), str(tmp_path / "a"))
    synth.run(_cfg(f"synth.format={fmt}"), str(tmp_path / "b"))
    synth.run(_cfg(f"synth.format={fmt}", "synth.seed=1"), str(tmp_path / "c"))
    assert len(a["files"]) == 2 and all(p.endswith("." + fmt) for p in a["files"])
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert _digests(tmp_path / "a") != _digests(tmp_path / "c")
    saved = C.load_config(str(tmp_path / "a" / "config.yaml"))
    assert saved.synth.format == fmt and saved.synth.users == 12


def _read_all(directory, fmt):
    files = sorted(pathlib.Path(directory).glob(f"events-*.{fmt}"))
    if fmt == "csv":
        tables = [pacsv.read_csv(f).to_pydict() for f in files]
    elif fmt == "parquet":
        tables = [pq.read_table(f).to_pydict() for f in files]
    else:
        rows = [json.loads(line) for f in files for line in f.read_text().splitlines()]
        tables = [{k: [r[k] for r in rows] for k in rows[0]}]
    return {k: sum((t[k] for t in tables), []) for k in tables[0]}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_raw_schema_columns_and_time_structure(tmp_path, fmt):
    cfg = _cfg(f"synth.format={fmt}", "synth.targets_min=3", "synth.targets_max=5")
    summary = synth.run(cfg, str(tmp_path))
    cols = _read_all(tmp_path, fmt)
    assert list(cols) == ["user_id", "request_id", "timestamp", "item_id", "author_id",
                          "category", "duration", "click", "like", "finish"]
    assert len(cols["user_id"]) == summary["events"]
    assert all(u.startswith("u") and len(u) == 7 for u in cols["user_id"])
    for task in ("click", "like", "finish"):
        assert set(cols[task]) == {0, 1}
    by_request = {}
    for user, req, ts in zip(cols["user_id"], cols["request_id"], cols["timestamp"]):
        by_request.setdefault((user, req), []).append(ts)
    assert len({r for _, r in by_request}) == len(by_request) == summary["requests"]
    per_user = {}
    for (user, _), stamps in by_request.items():
        assert max(stamps) - min(stamps) < synth.IMPRESSION_SPREAD_S   # within the request
        assert 1 <= len(stamps) <= 5
        per_user.setdefault(user, []).append((min(stamps), max(stamps)))
    for spans in per_user.values():          # requests of a user are separate in time
        spans.sort()
        assert all(b[0] > a[1] for a, b in zip(spans, spans[1:]))
    for user in per_user:                    # timestamps never decrease within a user
        stamps = [t for u, t in zip(cols["user_id"], cols["timestamp"]) if u == user]
        assert stamps == sorted(stamps)


def test_events_per_user_distribution_is_clipped():
    sc = C.SynthConfig(users=400, events_median=2000, events_sigma=1.5, events_min=300,
                       events_max=10_000)
    cols = synth.generate(sc, ["click"])
    counts = np.bincount(cols["user"])
    assert counts.min() == 300 and counts.max() == 10_000
    assert 1200 < np.median(counts) < 3000
    big = synth.generate(C.SynthConfig(users=3, events_median=30_000, events_sigma=0.3,
                                       events_min=10_000, events_max=50_000), ["click"])
    assert np.bincount(big["user"]).min() >= 10_000


def test_favourites_are_sparse_long_term_interests():
    cols = synth.generate(C.SynthConfig(users=50, events_median=4000, events_sigma=0.2),
                          ["click"])
    assert 0.015 < cols["is_favourite"].mean() < 0.03
    # One favourite author recurs only every few hundred events of its user.
    gaps = []
    for u in range(50):
        mine = cols["user"] == u
        authors = cols["author_id"][mine]
        fav = authors[cols["is_favourite"][mine]]
        some = np.bincount(fav).argmax()
        gaps.append(np.diff(np.flatnonzero(authors == some)).mean())
    assert np.median(gaps) > 150


def _auc(score, label):
    """Mann-Whitney AUC with average ranks for ties."""
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    pos = label == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _oracle_scores(cols, tasks, window, n_authors):
    """Per impression: how many of the user's last `window` events before its request had
    the same author and any positive label. Plain numpy: sorted (user, author, position)
    keys of positive events, counted by binary search."""
    n = len(cols["user"])
    user, author = cols["user"].astype(np.int64), cols["author_id"].astype(np.int64)
    positive = np.zeros(n, dtype=bool)
    for t in tasks:
        positive |= cols[t] == 1
    request_first = np.r_[0, np.flatnonzero(np.diff(cols["request"])) + 1][cols["request"]]
    user_first = np.searchsorted(user, user)
    key = (user * n_authors + author) * (n + 1)
    positive_keys = np.sort(key[positive] + np.flatnonzero(positive))
    low = np.maximum(request_first - window, user_first)
    return (np.searchsorted(positive_keys, key + request_first)
            - np.searchsorted(positive_keys, key + low))


def test_oracle_auc_rises_with_history_length():
    """The proof that the planted signal exists: a history-count predictor gets better the
    more of the history it sees, from L=64 to L=2048, and short-term interest matters."""
    sc = C.SynthConfig(users=120, events_median=4000, events_sigma=0.3, seed=3)
    tasks = ["click", "like", "finish"]
    cols = synth.generate(sc, tasks)
    pos = np.arange(len(cols["user"])) - np.searchsorted(cols["user"], cols["user"])
    judged = pos >= 2048                    # every window length fits for these targets
    auc = {L: {t: _auc(_oracle_scores(cols, tasks, L, sc.authors)[judged], cols[t][judged])
               for t in tasks} for L in (64, 256, 2048)}
    for t in tasks:
        assert auc[64][t] < auc[256][t] < auc[2048][t], (t, auc)
    assert auc[2048]["like"] - auc[64]["like"] > 0.05, auc
    assert auc[2048]["click"] - auc[64]["click"] > 0.01, auc
    assert auc[64]["click"] > 0.58, auc     # recent authors (short-term interest) matter


def test_invalid_synth_config_names_the_field():
    with pytest.raises(C.ConfigError, match="synth.format.*allowed values"):
        C.load_config(None, ["synth.format=xml"])
    with pytest.raises(C.ConfigError, match="synth.events_max"):
        C.load_config(None, ["synth.events_min=100", "synth.events_max=10"])
    with pytest.raises(C.ConfigError, match="synth.short_term_authors"):
        C.load_config(None, ["synth.short_term_authors=0"])
