"""Embedding of raw int64 IDs hashed into a fixed number of rows inside the model."""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from model.layers.common import check_positive


@keras.utils.register_keras_serializable(package="stca")
class HashedEmbedding(keras.layers.Layer):
    """row = floormod(id, num_buckets); output = table[row].

    IDs come from `core.idhash.stable_id` (63-bit hashes of string IDs, or the integer
    itself), so taking them modulo a prime-ish bucket count spreads them evenly and
    serving clients send raw IDs without any vocabulary file. floormod keeps negative
    IDs in range. Padding ID 0 maps to row 0 like any other ID: padded positions are
    masked downstream, so they never influence a valid output.

    Under a mixed policy the table stays float32 and only the gathered rows are cast to
    the compute dtype (the table itself is never cast, and its gradient stays sparse).

    Rows start with unit variance per component (as PyTorch's nn.Embedding), not Keras'
    uniform(+-0.05): embeddings feed SwiGLUs, whose output is second order in a small
    input; at +-0.05 the event SwiGLU gave ~1e-3 activations (variance below the layer-norm
    epsilon) and STCA did not learn a history-dependent toy task at all.

    Args:
      num_buckets: number of embedding rows.
      output_dim: embedding width.
      embeddings_initializer: initializer of the table (default N(0, 1)).

    Input shape: any shape of integer IDs. Output shape: input shape + [output_dim].

    Example:
        e = HashedEmbedding(1000, 16)(tf.constant([[123456789012, 0]], tf.int64))  # [1, 2, 16]
    """

    def __init__(self, num_buckets: int, output_dim: int, embeddings_initializer=None,
                 **kwargs):
        super().__init__(**kwargs)
        check_positive(num_buckets=num_buckets, output_dim=output_dim)
        self.num_buckets = int(num_buckets)
        self.output_dim = int(output_dim)
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer or keras.initializers.RandomNormal(stddev=1.0))

    def build(self, input_shape):
        self.table = keras.layers.Embedding(
            self.num_buckets, self.output_dim, dtype=self.dtype_policy, name="table",
            embeddings_initializer=self.embeddings_initializer)
        self.table.build(input_shape)
        super().build(input_shape)

    def call(self, ids):
        return self.table(self.bucket(ids))

    def bucket(self, ids) -> tf.Tensor:
        """Row index of each ID."""
        return tf.math.floormod(tf.cast(ids, tf.int64), self.num_buckets)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def get_config(self):
        return {**super().get_config(), "num_buckets": self.num_buckets,
                "output_dim": self.output_dim,
                "embeddings_initializer":
                    keras.initializers.serialize(self.embeddings_initializer)}
