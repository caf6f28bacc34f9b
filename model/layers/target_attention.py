"""Classic multi-head target attention with explicit key / value projections (baseline)."""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from model.layers.common import check_heads_divide, check_positive, clone_initializer, ensure_built
from model.layers.masking import masked_attention


@keras.utils.register_keras_serializable(package="stca")
class TargetAttention(keras.layers.Layer):
    """out = MultiHead(q = x_t W_Q, K = X W_K, V = X W_V) W_O over the valid history.

    Unlike `STCAAttention` it materializes the [B, L, d] keys and values; they depend only
    on the user, so `project_history` runs once per request and `attend` once per batch of
    targets.

    Args:
      d_model: width d. num_heads: heads (must divide d_model).
      kernel_initializer: initializer of the four [d, d] kernels.

    Inputs: events [B, L, d], queries [B, M, d], history_mask [B, L] bool.
    Output: [B, M, d].

    Example:
        layer = TargetAttention(64, 4)
        keys, values = layer.project_history(events)          # [B, h, L, d_h] each
        out = layer.attend(keys, values, targets, history_mask)
    """

    def __init__(self, d_model: int, num_heads: int, kernel_initializer="glorot_uniform",
                 **kwargs):
        super().__init__(**kwargs)
        check_positive(d_model=d_model, num_heads=num_heads)
        check_heads_divide(d_model, num_heads)
        self.d_model = d_model
        self.num_heads = num_heads
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape=None):
        def dense(name):
            layer = keras.layers.Dense(
                self.d_model, use_bias=False, dtype=self.dtype_policy, name=name,
                kernel_initializer=clone_initializer(self.kernel_initializer))
            layer.build((None, self.d_model))
            return layer
        self.query = dense("query")
        self.key_value = keras.layers.Dense(
            2 * self.d_model, use_bias=False, dtype=self.dtype_policy, name="key_value",
            kernel_initializer=clone_initializer(self.kernel_initializer))
        self.key_value.build((None, self.d_model))
        self.out = dense("output")
        super().build(input_shape)

    def _split_heads(self, x):
        """[B, S, d] -> [B, h, S, d_h]."""
        shape = tf.shape(x)
        x = tf.reshape(x, [shape[0], shape[1], self.num_heads, self.d_model // self.num_heads])
        return tf.transpose(x, [0, 2, 1, 3])

    def project_history(self, events):
        """[B, L, d] -> (keys, values), each [B, h, L, d_h] (target-independent)."""
        ensure_built(self)
        keys, values = tf.split(self.key_value(events), 2, axis=-1)
        return self._split_heads(keys), self._split_heads(values)

    def attend(self, keys, values, queries, history_mask):
        """Targets [B, M, d] attend over projected history -> [B, M, d]."""
        ensure_built(self)
        q = self._split_heads(self.query(queries))
        context = masked_attention(q, tf.cast(keys, q.dtype), tf.cast(values, q.dtype),
                                   history_mask[:, None, None, :])        # [B, h, M, d_h]
        shape = tf.shape(queries)
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]),
                             [shape[0], shape[1], self.d_model])
        return self.out(context)

    def call(self, events, queries, history_mask):
        keys, values = self.project_history(events)
        return self.attend(keys, values, queries, history_mask)

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "num_heads": self.num_heads,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}
