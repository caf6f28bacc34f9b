"""Exact ranking metrics in numpy: AUC, per-user GAUC and a per-task report.

AUC is the Mann-Whitney statistic with ties counted one half (the average-rank formula),
optionally weighted: sum over (pos i, neg j) of w_i w_j ([s_i > s_j] + 0.5 [s_i == s_j]),
divided by (sum of positive weights) x (sum of negative weights). An input with only one
class has no pairs: its AUC is NaN (not an error); `ranking_report` says why.

Example:
    auc([1, 0, 1, 0], [0.9, 0.1, 0.5, 0.5])                        # 0.875
    gauc([7, 7, 8, 8, 8], [1, 0, 1, 0, 0], [.9, .1, .2, .3, .1])   # (0.7, 2)
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

ONE_CLASS_NOTE = "NaN: only one label class present, AUC is undefined"


def _check_inputs(labels, scores, weights=None):
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"labels has {labels.size} values, scores has {scores.size}")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0 or 1")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite (found NaN or inf)")
    if weights is None:
        weights = np.ones_like(scores)
    else:
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        if weights.shape != scores.shape:
            raise ValueError(f"weights has {weights.size} values, scores has {scores.size}")
        if np.any(weights < 0) or not np.all(np.isfinite(weights)):
            raise ValueError("weights must be finite and >= 0")
    return labels, scores, weights


def _grouped_auc_sums(groups, labels, scores, weights):
    """Per group g: (sum over pairs as in the module doc, positive weight, negative weight).

    Sorting by (group, score) makes each run of equal scores a tie block; a positive beats
    the negatives of lower blocks of its group and ties half the negatives of its block.
    """
    order = np.lexsort((scores, groups))
    g, s = groups[order], scores[order]
    pos = weights[order] * labels[order]
    neg = weights[order] * (1.0 - labels[order])
    new_block = np.r_[True, (g[1:] != g[:-1]) | (s[1:] != s[:-1])]
    block = np.cumsum(new_block) - 1
    block_pos = np.bincount(block, pos)
    block_neg = np.bincount(block, neg)
    block_group = g[new_block]
    new_group = np.r_[True, block_group[1:] != block_group[:-1]]
    group_index = np.cumsum(new_group) - 1
    cum_neg = np.cumsum(block_neg) - block_neg                    # negatives in earlier blocks
    neg_before = cum_neg - cum_neg[new_group][group_index]        # ... of the same group
    pair_sum = np.bincount(group_index, block_pos * (neg_before + 0.5 * block_neg))
    return (block_group[new_group], pair_sum, np.bincount(group_index, block_pos),
            np.bincount(group_index, block_neg))


def auc(labels, scores, weights=None) -> float:
    """Exact, tie-aware ROC AUC.

    Args:
      labels: 0/1 values, any shape (flattened).
      scores: same number of finite scores.
      weights: optional non-negative per-example weights.

    Returns:
      AUC in [0, 1]; NaN when one class has zero total weight (`ONE_CLASS_NOTE`).

    Example:
      auc([1, 0, 1], [0.8, 0.8, 0.1])  # 0.25
    """
    labels, scores, weights = _check_inputs(labels, scores, weights)
    if labels.size == 0:
        return float("nan")
    _, pair_sum, w_pos, w_neg = _grouped_auc_sums(np.zeros(labels.size, np.int64), labels,
                                                  scores, weights)
    denom = w_pos[0] * w_neg[0]
    return float(pair_sum[0] / denom) if denom > 0 else float("nan")


def gauc(user_ids, labels, scores) -> tuple[float, int]:
    """Per-user AUC averaged with weights = impressions per user.

    Only users with at least one positive and one negative impression count.

    Args:
      user_ids: one id per impression (any hashable numpy dtype, e.g. int64).
      labels, scores: as in `auc`.

    Returns:
      (gauc, number of users counted); (NaN, 0) when no user has both classes.

    Example:
      gauc([1, 1, 2, 2, 2], [1, 0, 1, 0, 0], [.9, .1, .2, .3, .1])  # (0.7, 2)
    """
    labels, scores, _ = _check_inputs(labels, scores)
    user_ids = np.asarray(user_ids).reshape(-1)
    if user_ids.shape != labels.shape:
        raise ValueError(f"user_ids has {user_ids.size} values, labels has {labels.size}")
    if labels.size == 0:
        return float("nan"), 0
    _, pair_sum, n_pos, n_neg = _grouped_auc_sums(user_ids, labels, scores,
                                                  np.ones_like(scores))
    counted = (n_pos > 0) & (n_neg > 0)
    if not counted.any():
        return float("nan"), 0
    per_user = pair_sum[counted] / (n_pos[counted] * n_neg[counted])
    impressions = (n_pos + n_neg)[counted]
    return float(np.sum(per_user * impressions) / np.sum(impressions)), int(counted.sum())


def ranking_report(tasks: Sequence[str], user_ids, labels_by_task: Mapping[str, np.ndarray],
                   scores_by_task: Mapping[str, np.ndarray]) -> dict:
    """AUC and GAUC per task over the same impressions.

    Args:
      tasks: task names (keys of the two mappings).
      user_ids: [n] user of each impression (padded targets already removed).
      labels_by_task, scores_by_task: task -> [n] labels / scores.

    Returns:
      {task: {"auc", "gauc", "gauc_users", "impressions", "positives"[, "note"]}}; "note"
      explains a NaN.

    Example:
      ranking_report(["click"], uids, {"click": y}, {"click": p})["click"]["gauc"]
    """
    report = {}
    for t in tasks:
        labels = np.asarray(labels_by_task[t]).reshape(-1)
        value, users = gauc(user_ids, labels, scores_by_task[t])
        entry = {"auc": auc(labels, scores_by_task[t]), "gauc": value, "gauc_users": users,
                 "impressions": int(labels.size), "positives": int(np.sum(labels == 1))}
        notes = []
        if np.isnan(entry["auc"]):
            notes.append(f"auc {ONE_CLASS_NOTE}")
        if users == 0:
            notes.append("gauc NaN: no user has both a positive and a negative impression")
        if notes:
            entry["note"] = "; ".join(notes)
        report[t] = entry
    return report
