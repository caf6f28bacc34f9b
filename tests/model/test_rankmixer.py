import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401
from model.layers.rankmixer import RankMixerBlock
from tests.helpers.layers import NORM_ATOL, assert_config_round_trip


def _ln(x):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)


def _gelu(x):
    return tf.nn.gelu(tf.constant(x)).numpy()


def test_token_mixing_and_per_token_ffn_match_numpy():
    rng = np.random.default_rng(0)
    t, d = 3, 6
    tokens = rng.normal(size=(2, 4, t, d)).astype(np.float32)
    layer = RankMixerBlock(t, d)
    out = layer(tokens).numpy()
    chunks = tokens.reshape(2, 4, t, t, d // t)               # [.., token s, chunk c, :]
    mixed = np.stack([chunks[:, :, :, c].reshape(2, 4, d) for c in range(t)], axis=2)
    x = _ln(mixed + tokens)
    w1, b1, w2, b2 = (w.numpy() for w in (layer.w1, layer.b1, layer.w2, layer.b2))
    hidden = _gelu(np.einsum("bmtd,tdf->bmtf", x, w1) + b1)
    expected = _ln(np.einsum("bmtf,tfd->bmtd", hidden, w2) + b2 + x)
    np.testing.assert_allclose(out, expected, atol=NORM_ATOL)
    assert not np.allclose(w1[0], w1[1])  # every token has its own FFN


def test_round_trip_and_argument_checks():
    assert_config_round_trip(RankMixerBlock(2, 4, ffn_mult=1), tf.ones([1, 3, 2, 4]))
    with pytest.raises(ValueError, match="multiple of num_tokens"):
        RankMixerBlock(3, 4)
    with pytest.raises(ValueError, match="expected inputs"):
        RankMixerBlock(2, 4)(tf.ones([1, 3, 4]))


def test_gradients_match_the_einsum_formulation():
    """The token-major matmuls differentiate like the textbook per-token einsums."""
    rng = np.random.default_rng(1)
    t, d = 3, 6
    tokens = tf.constant(rng.normal(size=(2, 5, t, d)), tf.float64)
    layer = RankMixerBlock(t, d, dtype="float64")
    layer(tokens)

    def reference(x):
        chunks = tf.reshape(x, [2, 5, t, t, d // t])
        mixed = tf.reshape(tf.transpose(chunks, [0, 1, 3, 2, 4]), x.shape)
        h = layer.mix_norm(mixed + x)
        hidden = tf.nn.gelu(tf.einsum("bmtd,tdf->bmtf", h, layer.w1) + layer.b1)
        return layer.ffn_norm(tf.einsum("bmtf,tfd->bmtd", hidden, layer.w2) + layer.b2 + h)

    weights = np.linspace(-1.0, 1.0, int(np.prod(tokens.shape)))
    grads = []
    for fn in (layer, reference):
        with tf.GradientTape() as tape:
            tape.watch(tokens)
            loss = tf.reduce_sum(tf.reshape(fn(tokens), [-1]) * weights)
        grads.append(tape.gradient(loss, [tokens] + layer.trainable_variables))
    assert len(grads[0]) == 9  # tokens, w1, b1, w2, b2, both norms' gamma and beta
    for got, want in zip(*grads):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-9, atol=1e-10)
