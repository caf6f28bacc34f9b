import numpy as np
import tensorflow as tf

import model  # noqa: F401
from model.layers.masking import (
    length_mask,
    masked_attention,
    masked_mean,
    masked_softmax,
    prepend_valid,
)
from tests.helpers.layers import REFERENCE_ATOL


def test_length_mask_clips_to_width():
    np.testing.assert_array_equal(length_mask(tf.constant([0, 2, 9]), 3).numpy(),
                                  [[0, 0, 0], [1, 1, 0], [1, 1, 1]])


def test_masked_softmax_is_exact_over_valid_positions_and_zero_for_empty_rows():
    scores = tf.constant([[3.0, 1.0, 50.0], [1.0, 2.0, 3.0]])
    mask = tf.constant([[True, True, False], [False, False, False]])
    weights = masked_softmax(scores, mask).numpy()
    expected = np.exp([3.0, 1.0]) / np.exp([3.0, 1.0]).sum()
    np.testing.assert_allclose(weights[0, :2], expected, rtol=1e-6)
    assert weights[0, 2] == 0.0
    np.testing.assert_array_equal(weights[1], [0.0, 0.0, 0.0])


def test_masked_softmax_with_a_sink_counts_one_zero_value_position():
    scores = tf.constant([[[3.0, 1.0, 50.0], [1.0, 2.0, 3.0]]])        # [1, 2, 3]
    mask = tf.constant([[True, True, False]])
    sink = tf.constant([[0.5, -2.0]])                                 # one logit per row
    weights = masked_softmax(scores, mask[:, None, :], sink=sink).numpy()
    for row, s in enumerate([0.5, -2.0]):
        valid = scores.numpy()[0, row, :2]
        expected = np.exp(valid) / (np.exp(s) + np.exp(valid).sum())
        np.testing.assert_allclose(weights[0, row, :2], expected, rtol=1e-6)
        assert weights[0, row, 2] == 0.0
    assert np.all(weights.sum(-1) < 1.0)
    # An empty history gives all weight to the sink: zeros, as without a sink.
    empty = masked_softmax(scores, tf.zeros([1, 1, 3], tf.bool), sink=sink).numpy()
    np.testing.assert_array_equal(empty, np.zeros_like(empty))


def test_masked_softmax_runs_in_float32_and_has_finite_gradients_for_empty_rows():
    scores = tf.Variable(tf.zeros([2, 4], tf.bfloat16))
    mask = tf.constant([[True, False, True, False], [False] * 4])
    with tf.GradientTape() as tape:
        weights = masked_softmax(scores, mask)
        loss = tf.reduce_sum(weights * tf.constant([1.0, 2.0, 3.0, 4.0]))
    assert weights.dtype == tf.float32
    assert np.all(np.isfinite(tape.gradient(loss, scores).numpy().astype(np.float32)))


def test_masked_mean_ignores_padding_and_empty_rows_give_zero():
    values = tf.constant([[[1.0], [3.0], [100.0]], [[5.0], [6.0], [7.0]]])
    mask = tf.constant([[True, True, False], [False, False, False]])
    np.testing.assert_allclose(masked_mean(values, mask).numpy(), [[2.0], [0.0]])


def test_masked_attention_matches_numpy():
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=s).astype(np.float32) for s in ([2, 3, 4], [2, 5, 4], [2, 5, 6]))
    mask = np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], bool)
    out = masked_attention(tf.constant(q), tf.constant(k), tf.constant(v),
                           tf.constant(mask)[:, None, :]).numpy()
    scores = q @ k.transpose(0, 2, 1) / 2.0
    scores = np.where(mask[:, None, :], scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    np.testing.assert_allclose(out, weights @ v, atol=REFERENCE_ATOL)


def test_prepend_valid_puts_each_rows_new_prefix_before_its_old_values():
    """Against a per-row Python reference, along axis 1 and along an inner axis (the STCA
    cache's [B, N, h, L, d_h] layout), with empty new and empty old rows."""
    rng = np.random.default_rng(3)
    new_len, old_len = np.array([2, 0, 3, 1]), np.array([4, 2, 0, 0])
    new = rng.normal(size=(4, 3, 5)).astype(np.float32)        # [B, K, d]
    old = rng.normal(size=(4, 4, 5)).astype(np.float32)        # [B, L, d]
    out = prepend_valid(new, old, new_len, axis=1).numpy()
    assert out.shape == (4, 7, 5)
    for b in range(4):
        expected = np.concatenate([new[b, :new_len[b]], old[b, :old_len[b]]])
        np.testing.assert_array_equal(out[b, :new_len[b] + old_len[b]], expected)
    inner = prepend_valid(np.moveaxis(new, 1, 2)[:, None], np.moveaxis(old, 1, 2)[:, None],
                          new_len, axis=3).numpy()                # [B, 1, d, K + L]
    np.testing.assert_array_equal(np.moveaxis(inner[:, 0], 2, 1), out)
