import numpy as np
import tensorflow as tf

import model  # noqa: F401
from model.layers.history_view import HistoryView
from tests.helpers.layers import NORM_ATOL, assert_config_round_trip


def test_view_is_layer_norm_of_swiglu():
    x = tf.random.stateless_normal([2, 7, 8], seed=[3, 4])
    layer = HistoryView(8)
    y = layer(x).numpy()
    h = layer.ffn(x).numpy()
    expected = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(y, expected, atol=NORM_ATOL)  # LN starts with gamma=1, beta=0
    assert layer.norm.gamma.shape == (8,)


def test_round_trip():
    assert_config_round_trip(HistoryView(4, ffn_mult=3), tf.ones([1, 2, 4]))
