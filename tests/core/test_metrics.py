"""Ranking metrics against brute-force pairwise references and hand-computed values."""
import math

import numpy as np
import pytest

from core import metrics as M


def _pairwise_auc(labels, scores, weights=None):
    """O(n^2) reference: weighted pairs pos > neg, ties count one half."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights)
    num = den = 0.0
    for i in np.flatnonzero(labels == 1):
        for j in np.flatnonzero(labels == 0):
            w = weights[i] * weights[j]
            num += w * (1.0 if scores[i] > scores[j] else 0.5 if scores[i] == scores[j] else 0.0)
            den += w
    return num / den


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pairwise_reference_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 300
    labels = (rng.random(n) < 0.3).astype(np.int64)
    scores = np.round(rng.random(n) + 0.3 * labels, 1)  # few distinct values: many ties
    assert len(np.unique(scores)) < n // 5
    assert M.auc(labels, scores) == pytest.approx(_pairwise_auc(labels, scores), abs=1e-12)
    weights = rng.integers(0, 4, n).astype(float)
    assert M.auc(labels, scores, weights) == pytest.approx(
        _pairwise_auc(labels, scores, weights), abs=1e-12)


def test_auc_small_hand_values():
    assert M.auc([1, 0, 1, 0], [0.9, 0.1, 0.5, 0.5]) == pytest.approx(0.875)
    assert M.auc([1, 0], [0.2, 0.2]) == pytest.approx(0.5)
    assert M.auc([0, 1], [0.9, 0.1]) == 0.0
    assert M.auc([[1, 0], [0, 1]], [[3, 1], [2, 4]]) == 1.0  # any shape, flattened


def test_gauc_hand_computed():
    users = [7, 7, 7, 8, 8, 8, 8, 9, 9]
    labels = [1, 0, 0, 1, 0, 1, 0, 1, 1]
    scores = [0.9, 0.1, 0.9, 0.2, 0.3, 0.6, 0.6, 0.5, 0.4]
    # user 7: pos .9 vs negs .1 (1), .9 (0.5) -> 0.75, 3 impressions
    # user 8: pos .2 vs .3 (0) .6 (0); pos .6 vs .3 (1) .6 (0.5) -> 1.5 / 4 = 0.375, 4 imp.
    # user 9: positives only -> not counted
    value, users_counted = M.gauc(users, labels, scores)
    assert users_counted == 2
    assert value == pytest.approx((3 * 0.75 + 4 * 0.375) / 7)


def test_gauc_matches_per_user_reference_on_random_data():
    rng = np.random.default_rng(11)
    n = 2000
    users = rng.integers(0, 60, n)
    labels = (rng.random(n) < 0.25).astype(int)
    labels[users < 5] = 0  # users with one class only are not counted
    scores = np.round(rng.random(n), 2)
    num = den = 0.0
    counted = 0
    for u in np.unique(users):
        sel = users == u
        if 0 < labels[sel].sum() < sel.sum():
            num += sel.sum() * _pairwise_auc(labels[sel], scores[sel])
            den += sel.sum()
            counted += 1
    value, got_users = M.gauc(users, labels, scores)
    assert got_users == counted == 55
    assert value == pytest.approx(num / den, abs=1e-12)
    # string user ids group the same way
    assert M.gauc(users.astype(str), labels, scores)[0] == pytest.approx(value, abs=1e-12)


def test_degenerate_inputs_give_nan_not_errors():
    assert math.isnan(M.auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(M.auc([0, 0], [0.1, 0.2]))
    assert math.isnan(M.auc([], []))
    assert math.isnan(M.auc([1, 0], [0.3, 0.2], weights=[1, 0]))  # no negative weight
    value, users = M.gauc([1, 1, 2], [1, 1, 0], [0.1, 0.2, 0.3])
    assert math.isnan(value) and users == 0
    report = M.ranking_report(["click", "like"], [1, 1, 2, 2],
                              {"click": [1, 0, 1, 0], "like": [0, 0, 0, 0]},
                              {"click": [0.9, 0.1, 0.2, 0.4], "like": [0.5, 0.1, 0.2, 0.3]})
    assert report["click"]["auc"] == pytest.approx(0.75)
    assert report["click"]["gauc"] == pytest.approx(0.5) and report["click"]["gauc_users"] == 2
    assert "note" not in report["click"]
    assert math.isnan(report["like"]["auc"]) and math.isnan(report["like"]["gauc"])
    assert "only one label class" in report["like"]["note"]
    assert report["like"]["impressions"] == 4 and report["like"]["positives"] == 0


@pytest.mark.parametrize("args, message", [
    (([1, 0], [0.1]), "labels has 2 values, scores has 1"),
    (([1, 2], [0.1, 0.2]), "labels must be 0 or 1"),
    (([1, 0], [0.1, float("nan")]), "scores must be finite"),
    (([1, 0], [0.1, 0.2], [1.0, -1.0]), "weights must be finite and >= 0"),
])
def test_invalid_inputs_raise_clear_errors(args, message):
    with pytest.raises(ValueError, match=message):
        M.auc(*args)
