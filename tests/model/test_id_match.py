import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401
from model.layers.id_match import id_match, match_bias


def test_matches_a_python_loop_over_raw_ids():
    rng = np.random.default_rng(0)
    # Large raw IDs that agree modulo a typical bucket count must not match.
    hist = [rng.integers(0, 5, size=(2, 9)) * 200_003 + 7, rng.integers(0, 4, size=(2, 9))]
    tgt = [rng.integers(0, 5, size=(2, 3)) * 200_003 + 7, rng.integers(0, 4, size=(2, 3))]
    out = id_match([tf.constant(h, tf.int64) for h in hist],
                   [tf.constant(t, tf.int64) for t in tgt]).numpy()
    assert out.shape == (2, 2, 3, 9) and out.dtype == bool          # [B, F, M, L]
    for b in range(2):
        for m in range(3):
            for f in range(2):
                for j in range(9):
                    assert out[b, f, m, j] == (tgt[f][b, m] == hist[f][b, j])
    assert out.any() and not out.all()


def test_field_counts_must_agree():
    with pytest.raises(ValueError, match="same non-zero number"):
        id_match([tf.zeros([1, 2], tf.int64)], [])


def test_match_bias_is_the_weighted_sum_over_fields_with_its_gradient():
    rng = np.random.default_rng(1)
    match = rng.random((2, 2, 3, 7)) < 0.3                            # [B, F, M, L]
    weights = tf.Variable(rng.normal(size=(2, 4)).astype(np.float32))
    with tf.GradientTape() as tape:
        bias = match_bias(tf.constant(match), weights)
        loss = tf.reduce_sum(bias * tf.range(7, dtype=tf.float32))
    expected = np.einsum("bfml,fh->bhml", match.astype(np.float32), weights.numpy())
    assert bias.shape == (2, 4, 3, 7) and bias.dtype == tf.float32  # [B, h, M, L]
    np.testing.assert_allclose(bias.numpy(), expected, atol=1e-6)
    # d loss / d w[f, h] = sum over b, m, l of match[b, f, m, l] * l.
    grad = np.einsum("bfml,l->f", match.astype(np.float32), np.arange(7.0))[:, None]
    np.testing.assert_allclose(tape.gradient(loss, weights).numpy(),
                               np.broadcast_to(grad, (2, 4)), atol=1e-5)
