"""Masking helpers shared by every attention and pooling layer (one home for masked math).

All helpers take boolean masks where True marks a valid position. Padded positions are
never read in a way that can change a valid output: they get exactly zero weight.

Example:
    mask = length_mask(tf.constant([2, 0]), 3)          # [[T, T, F], [F, F, F]]
    w = masked_softmax(tf.zeros([2, 3]), mask)           # [[.5, .5, 0], [0, 0, 0]]
"""
from __future__ import annotations

import tensorflow as tf

# Large but finite: exp(_MASKED - max) underflows to exactly 0 in float32 without
# producing inf - inf = NaN when a whole row is masked.
_MASKED_SCORE = -1e30


def length_mask(lengths: tf.Tensor, width) -> tf.Tensor:
    """[B] valid lengths -> [B, width] bool mask (valid positions are a prefix)."""
    return tf.sequence_mask(tf.minimum(tf.cast(lengths, tf.int32), width), width)


def prepend_valid(new: tf.Tensor, old: tf.Tensor, new_len: tf.Tensor,
                  axis: int) -> tf.Tensor:
    """The valid prefix of `new` followed by `old`, along `axis`.

    Both hold per-row sequences whose valid positions are a prefix; the result, of width
    K + L along `axis`, holds row b's new_len[b] valid new positions, then old's positions
    (what a history stored most recent first becomes when newer events arrive: with
    old_len valid old positions, the first new_len + old_len are valid). The positions
    after those are padding the caller masks (length_mask of new_len + old_len).

    Args:
      new: [B, ..., K, ...]; old: [B, ..., L, ...], the same shape except at `axis` (>= 1).
      new_len: [B] valid positions of `new`.
      axis: the sequence axis.

    Example:
        prepend_valid([[7, 0]], [[1, 2]], [1], axis=1)   # [[7, 1, 2, 2]] (valid: 3)
    """
    width_new, width_old = tf.shape(new)[axis], tf.shape(old)[axis]
    position = tf.range(width_new + width_old)[None, :]                  # [1, K + L]
    new_len = tf.cast(new_len, tf.int32)[:, None]
    from_old = tf.minimum(width_new + position - new_len, width_new + width_old - 1)
    index = tf.where(position < new_len, position, from_old)             # [B, K + L]
    return tf.gather(tf.concat([new, old], axis=axis), index, axis=axis, batch_dims=1)


def masked_softmax(scores: tf.Tensor, mask: tf.Tensor, axis: int = -1,
                   sink: tf.Tensor | None = None, zero_empty_rows: bool = True) -> tf.Tensor:
    """Exact softmax over the valid positions of `axis`, always computed in float32.

    With `sink`, the normaliser also counts one extra position with that logit and a zero
    value ("attention sink"): w_j = exp(s_j) / (exp(sink) + sum_k exp(s_k)). The weights
    then sum to less than 1 when no position scores above the sink, so how much matching
    evidence the history holds survives the normalisation.

    Args:
      scores: float tensor of any float dtype.
      mask: bool tensor broadcastable to `scores`, or None when every position is
        valid (no masking pass).
      axis: the axis normalized over (the last one when `sink` is given).
      sink: optional float logits broadcastable to `scores` without `axis`
        (e.g. one per head).
      zero_empty_rows: False skips the last pass over the weights, which only matters for
        rows without a valid position (they then hold uniform weights without a sink):
        for callers that zero those rows' much smaller outputs themselves.

    Returns:
      float32 weights; rows without a valid position (empty histories) are all zeros.
    """
    scores = tf.cast(scores, tf.float32)
    # The penalty and the final zeroing broadcast the mask in its own (small) shape: no
    # score-sized mask is built. s + (-1e30) rounds to -1e30 for any real score, so masked
    # positions of a row with a valid position get exactly 0; rows without one are
    # zeroed by the last step.
    if mask is not None:
        mask = tf.cast(mask, tf.bool)
        scores = scores + tf.where(mask, 0.0, _MASKED_SCORE)
    if sink is None:
        weights = tf.nn.softmax(scores, axis=axis)
    else:
        if axis not in (-1, scores.shape.rank - 1):
            raise ValueError("masked_softmax: a sink needs axis=-1")
        sink = tf.broadcast_to(tf.cast(sink, tf.float32)[..., None], tf.shape(scores[..., :1]))
        weights = tf.nn.softmax(tf.concat([sink, scores], axis=-1), axis=-1)[..., 1:]
    if mask is None or not zero_empty_rows:
        return weights
    return weights * tf.cast(mask, tf.float32)


def masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean of [B, L, d] over the valid positions of [B, L]; empty rows give zeros.

    The sum runs in float32 so long bf16 / fp16 histories do not lose precision; the
    result has the dtype of `values`.
    """
    weights = tf.cast(mask, tf.float32)[..., None]
    total = tf.reduce_sum(tf.cast(values, tf.float32) * weights, axis=-2)
    count = tf.maximum(tf.reduce_sum(weights, axis=-2), 1.0)
    return tf.cast(total / count, values.dtype)


def masked_attention(queries: tf.Tensor, keys: tf.Tensor, values: tf.Tensor,
                     key_mask: tf.Tensor) -> tf.Tensor:
    """softmax(q k^T / sqrt(d_k)) v over the valid keys, for explicit-K/V attention.

    Args:
      queries: [..., S_q, d_k]. keys: [..., S_k, d_k]. values: [..., S_k, d_v].
      key_mask: bool, broadcastable to [..., S_q, S_k].

    Returns:
      [..., S_q, d_v] in the dtype of `values`; the softmax runs in float32.
    """
    scale = tf.cast(1.0 / tf.sqrt(tf.cast(tf.shape(keys)[-1], tf.float32)), queries.dtype)
    scores = tf.matmul(queries * scale, keys, transpose_b=True)
    weights = masked_softmax(scores, key_mask)
    return tf.matmul(tf.cast(weights, values.dtype), values)
