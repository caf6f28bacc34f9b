"""Exact ID matches between each target and each history event (attention priors)."""
from __future__ import annotations

from typing import NamedTuple, Sequence

import tensorflow as tf

from model.layers.masking import length_mask

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


class MatchPairs(NamedTuple):
    """The exact ID matches as a list: every (request b, target m, event j) where at
    least one field matches, each once. A few per target in real logs (0.1% of the
    target x event pairs on the synthetic data), so attention can add the prior at these
    pairs instead of over the whole [B, h, M, L] score tensor (`STCAAttention`).

    row: [n] int32, b * M + m. event: [n] int32, j. fields: [n, F] float32, 1 where
    field f matches. shape: [3] int32, (B, M, L).
    """
    row: tf.Tensor
    event: tf.Tensor
    fields: tf.Tensor
    shape: tf.Tensor


def match_pairs(history_ids: Sequence[tf.Tensor], target_ids: Sequence[tf.Tensor],
                history_len: tf.Tensor, target_len: tf.Tensor) -> MatchPairs:
    """The matches of `id_match` among valid events and targets, as `MatchPairs`.

    Per field, the targets' IDs are sorted once per row and each history event finds its
    run of equal target IDs by binary search: O((M + L) log M + n) instead of the M x L
    comparisons of `id_match` (M <= L in serving and training; the history is not
    sorted). Padded events (j >= history_len) and padded targets (m >= target_len) never
    match (attention gives them no weight, or their scores are discarded).

    Args:
      history_ids: F tensors [B, L] int64. target_ids: F tensors [B, M] int64.
      history_len: [B] valid events per row. target_len: [B] valid targets per row.

    Example:
        pairs = match_pairs([hist_item, hist_author], [tgt_item, tgt_author],
                            hist_len, tgt_len)    # pairs.fields: [n, 2]
    """
    if len(history_ids) != len(target_ids) or not history_ids:
        raise ValueError(f"need the same non-zero number of history and target ID fields, "
                         f"got {len(history_ids)} and {len(target_ids)}")
    shape_h, shape_t = tf.shape(history_ids[0]), tf.shape(target_ids[0])
    batch, length, targets = shape_h[0], shape_h[1], shape_t[1]
    hist_valid = length_mask(history_len, length)                               # [B, L]
    tgt_valid = length_mask(target_len, targets)                                # [B, M]
    keys, field_of = [], []
    for f, (hist, tgt) in enumerate(zip(history_ids, target_ids)):
        hist, tgt = tf.cast(hist, tf.int64), tf.cast(tgt, tf.int64)
        order = tf.argsort(tgt, axis=-1)                                        # [B, M]
        ordered = tf.gather(tgt, order, batch_dims=1)
        start = tf.searchsorted(ordered, hist, side="left")                     # [B, L]
        stop = tf.where(hist_valid, tf.searchsorted(ordered, hist, side="right"), start)
        runs = tf.ragged.range(tf.reshape(start, [-1]), tf.reshape(stop, [-1]))
        event_row = tf.cast(runs.value_rowids(), tf.int32)                      # b * L + j
        b = event_row // length
        row = b * targets + tf.gather(tf.reshape(order, [-1]),
                                      b * targets + runs.flat_values)          # b * M + m
        # A padded target holds any ID (often 0): drop it here.
        keep = tf.gather(tf.reshape(tgt_valid, [-1]), row)
        row = tf.boolean_mask(row, keep)
        event = tf.boolean_mask(event_row - b * length, keep)
        keys.append(tf.cast(row, tf.int64) * tf.cast(length, tf.int64)
                    + tf.cast(event, tf.int64))
        field_of.append(tf.fill(tf.shape(row), f))
    num_fields = len(history_ids)
    if num_fields == 1:
        key, fields = keys[0], tf.ones([tf.size(keys[0]), 1], tf.float32)
    else:  # one pair per (b, m, j), whichever fields match there
        key, pair = tf.unique(tf.concat(keys, 0), out_idx=tf.int32)
        fields = tf.math.unsorted_segment_sum(
            tf.one_hot(tf.concat(field_of, 0), num_fields, dtype=tf.float32), pair,
            tf.size(key))
    length64 = tf.cast(length, tf.int64)
    return MatchPairs(row=tf.cast(key // length64, tf.int32),
                      event=tf.cast(key % length64, tf.int32), fields=fields,
                      shape=tf.stack([batch, targets, length]))


def pair_bias(pairs: MatchPairs, weights: tf.Tensor) -> tf.Tensor:
    """[n, h] float32: sum_f weights[f, h] over the fields that match at each pair."""
    return tf.matmul(pairs.fields, tf.cast(weights, tf.float32))


def pair_head_rows(pairs: MatchPairs, heads) -> tf.Tensor:
    """[n, h] int64 (b * h + head) * M + m: each pair's row of a [B, h, M, ...] tensor
    whose first three axes are flattened into one."""
    targets = tf.cast(pairs.shape[1], tf.int64)
    row = tf.cast(pairs.row, tf.int64)
    b, m = row // targets, row % targets
    head = tf.range(tf.cast(heads, tf.int64), dtype=tf.int64)
    return ((b * tf.cast(heads, tf.int64))[:, None] + head[None, :]) * targets + m[:, None]


def dense_pair_bias(pairs: MatchPairs, bias: tf.Tensor) -> tf.Tensor:
    """Per-pair biases [n, h] -> the `match_bias` layout [B, h, M, L] float32."""
    heads = tf.shape(bias)[1]
    head_row = pair_head_rows(pairs, heads)                                 # [n, h]
    event = tf.broadcast_to(tf.cast(pairs.event, tf.int64)[:, None], tf.shape(head_row))
    shape = tf.stack([pairs.shape[0], heads, pairs.shape[1], pairs.shape[2]])
    rows = tf.cast(tf.reduce_prod(shape[:3]), tf.int64)
    flat = tf.scatter_nd(tf.stack([head_row, event], axis=-1), bias,
                         tf.stack([rows, tf.cast(pairs.shape[2], tf.int64)]))  # [B h M, L]
    return tf.reshape(flat, shape)
