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
