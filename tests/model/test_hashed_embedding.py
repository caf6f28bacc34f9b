import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401
from model import precision
from model.layers.hashed_embedding import HashedEmbedding
from tests.helpers.layers import assert_config_round_trip


def test_ids_are_bucketed_by_floormod():
    layer = HashedEmbedding(7, 3)
    ids = tf.constant([[0, 7, 10, -1, 2**62 + 5]], tf.int64)
    table = (layer(ids), layer.table.embeddings.numpy())[1]
    rows = np.array([0, 0, 3, 6, (2**62 + 5) % 7])
    np.testing.assert_array_equal(layer.bucket(ids).numpy()[0], rows)
    np.testing.assert_array_equal(layer(ids).numpy()[0], table[rows])


def test_mixed_policy_keeps_a_float32_table_and_sparse_gradients():
    layer = HashedEmbedding(11, 4, dtype=precision.policy("mixed_bfloat16"))
    with tf.GradientTape() as tape:
        out = layer(tf.constant([1, 5], tf.int64))
        loss = tf.reduce_sum(tf.cast(out, tf.float32))
    assert out.dtype == tf.bfloat16
    assert layer.table.embeddings.dtype == tf.float32
    assert isinstance(tape.gradient(loss, layer.trainable_variables)[0], tf.IndexedSlices)


def test_round_trip_and_argument_checks():
    assert_config_round_trip(HashedEmbedding(13, 2), tf.constant([[3, 4]], tf.int64))
    with pytest.raises(ValueError, match="num_buckets"):
        HashedEmbedding(0, 4)
