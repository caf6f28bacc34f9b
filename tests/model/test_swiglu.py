import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401
from model.layers.swiglu import SwiGLU
from tests.helpers.layers import REFERENCE_ATOL, assert_config_round_trip


def test_swiglu_matches_formula():
    x = tf.random.stateless_normal([2, 3, 8], seed=[0, 1])
    layer = SwiGLU(output_dim=4, ffn_mult=3)
    y = layer(x).numpy()
    up_gate = layer.up_gate.kernel.numpy()
    w_u, w_v = up_gate[:, :12], up_gate[:, 12:]
    gate = x.numpy() @ w_v
    expected = ((x.numpy() @ w_u) * gate / (1 + np.exp(-gate))) @ layer.down.kernel.numpy()
    assert y.shape == (2, 3, 4) and up_gate.shape == (8, 24)  # inner = ffn_mult * output_dim
    np.testing.assert_allclose(y, expected, atol=REFERENCE_ATOL)


def test_swiglu_with_biases_matches_formula():
    x = tf.random.stateless_normal([2, 3, 8], seed=[2, 3])
    layer = SwiGLU(output_dim=4, ffn_mult=2, use_bias=True)
    layer.build(x.shape)
    for v in layer.weights:  # non-zero biases, so a wrong half would show
        v.assign(tf.random.stateless_normal(v.shape, seed=[len(v.name), 5]))
    w, b = layer.up_gate.kernel.numpy(), layer.up_gate.bias.numpy()
    up, gate = x.numpy() @ w[:, :8] + b[:8], x.numpy() @ w[:, 8:] + b[8:]
    expected = (up * gate / (1 + np.exp(-gate))) @ layer.down.kernel.numpy() \
        + layer.down.bias.numpy()
    np.testing.assert_allclose(layer(x).numpy(), expected, atol=REFERENCE_ATOL)


def test_swiglu_defaults_keep_width_and_round_trip():
    layer = SwiGLU()
    x = tf.ones([2, 5])
    assert layer(x).shape == (2, 5) and layer.down.kernel.shape == (10, 5)
    assert_config_round_trip(SwiGLU(output_dim=3, inner_dim=7, use_bias=True), x)


@pytest.mark.parametrize("kwargs", [dict(output_dim=0), dict(ffn_mult=0), dict(inner_dim=-1)])
def test_swiglu_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        SwiGLU(**kwargs)
