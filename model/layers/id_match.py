"""Exact ID matches between each target and each history event (attention priors)."""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

# model.id_match names (core.config.ID_MATCH_FIELDS) -> (history input, target input).
ID_MATCH_INPUTS = {"item": ("hist_item_id", "tgt_item_id"),
                   "author": ("hist_author_id", "tgt_author_id")}


def id_match(history_ids: Sequence[tf.Tensor], target_ids: Sequence[tf.Tensor]) -> tf.Tensor:
    """match[b, f, m, j] = (target m of row b has the same ID f as history event j).

    Raw int64 IDs are compared, not hashed buckets, so embedding-table collisions never
    count as matches. Padded history positions may match (ID 0); attention masks them.
    Field-major, so the bias of every head comes out head-major ([B, h, M, L], the
    layout of the attention scores) from one matmul without a transpose (`match_bias`).

    Args:
      history_ids: F tensors [B, L] int64.
      target_ids: F tensors [B, M] int64, in the same field order.

    Returns:
      [B, F, M, L] bool.

    Example:
        match = id_match([hist_item, hist_author], [tgt_item, tgt_author])   # [B, 2, M, L]
    """
    if len(history_ids) != len(target_ids) or not history_ids:
        raise ValueError(f"need the same non-zero number of history and target ID fields, "
                         f"got {len(history_ids)} and {len(target_ids)}")
    return tf.stack([tf.equal(tf.cast(t, tf.int64)[:, :, None], tf.cast(h, tf.int64)[:, None, :])
                     for h, t in zip(history_ids, target_ids)], axis=1)


def match_bias(match: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """bias[b, h, m, j] = sum_f weights[f, h] * match[b, f, m, j], float32.

    One broadcast batched matmul [h, F] x [B, F, M*L] (a transposing einsum was 3-5x
    slower on the CPU, forward and gradient). Pass `match` already cast to float32 when
    several layers read it: the bool -> float cast costs as much as the matmul.

    Args:
      match: [B, F, M, L] bool or float (`id_match`).
      weights: [F, h] float32, the per-field, per-head logit bonus.

    Returns:
      [B, h, M, L] float32.
    """
    kernel = tf.transpose(tf.cast(weights, tf.float32))                 # [h, F]
    match = tf.cast(match, tf.float32)
    shape = tf.shape(match)                                            # [B, F, M, L]
    flat = tf.reshape(match, [shape[0], shape[1], shape[2] * shape[3]])
    bias = tf.matmul(kernel[None], flat)                               # [B, h, M*L]
    return tf.reshape(bias, [shape[0], tf.shape(kernel)[0], shape[2], shape[3]])
