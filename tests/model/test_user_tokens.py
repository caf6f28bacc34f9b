import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401
from model.layers.user_tokens import UserTokens
from tests.helpers.layers import SAME_PATH_ATOL, assert_config_round_trip


def test_tokens_are_user_embedding_and_masked_history_mean():
    history = tf.random.stateless_normal([2, 4, 6], seed=[1, 2])
    mask = tf.constant([[True, True, False, False], [False] * 4])
    layer = UserTokens(6, 17)
    tokens = layer(tf.constant([3, 20], tf.int64), history, mask).numpy()
    assert tokens.shape == (2, 2, 6) and layer.num_tokens == 2
    np.testing.assert_allclose(tokens[:, 0], layer.user(tf.constant([3, 20], tf.int64)))
    np.testing.assert_allclose(tokens[0, 1], history.numpy()[0, :2].mean(0),
                               atol=SAME_PATH_ATOL)  # a mean of two O(1) values
    np.testing.assert_array_equal(tokens[1, 1], np.zeros(6))  # empty history


def test_without_user_id_and_round_trip():
    history, mask = tf.ones([1, 3, 4]), tf.constant([[True, False, True]])
    layer = UserTokens(4, 5, use_user_id=False)
    assert layer(tf.constant([1], tf.int64), history, mask).shape == (1, 1, 4)
    assert not layer.trainable_variables
    assert_config_round_trip(UserTokens(4, 5), tf.constant([1], tf.int64), history, mask)
    with pytest.raises(ValueError):
        UserTokens(0, 5)
