"""MLP head over the concatenated tokens."""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from model.layers.common import check_positive


@keras.utils.register_keras_serializable(package="stca")
class MLPHead(keras.layers.Layer):
    """logits = Dense(ReLU(... ReLU(concat(tokens) W_1) ...)).

    Args:
      num_tasks: logits per target. num_tokens, token_dim: input tokens T x d.
      width: hidden width. num_layers: hidden layers. dropout: after each hidden layer.

    Input: tokens [B, M, T, d]. Output: logits [B, M, num_tasks] float32.

    Example:
        logits = MLPHead(3, num_tokens=4, token_dim=64)(tokens)
    """

    def __init__(self, num_tasks: int, num_tokens: int, token_dim: int, width: int = 128,
                 num_layers: int = 2, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        check_positive(num_tasks=num_tasks, num_tokens=num_tokens, token_dim=token_dim,
                       width=width, num_layers=num_layers)
        self.num_tasks = num_tasks
        self.num_tokens = num_tokens
        self.token_dim = token_dim
        self.width = width
        self.num_layers = num_layers
        self.dropout = dropout

    def build(self, input_shape=None):
        width = self.num_tokens * self.token_dim
        self.hidden = []
        for i in range(self.num_layers):
            layer = keras.layers.Dense(self.width, activation="relu", dtype=self.dtype_policy,
                                       name=f"hidden_{i}")
            layer.build((None, None, width))
            self.hidden.append(layer)
            width = self.width
        self.drop = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.logits = keras.layers.Dense(self.num_tasks, dtype="float32", name="logits")
        self.logits.build((None, None, width))
        super().build(input_shape)

    def call(self, tokens, training=None):
        shape = tf.shape(tokens)
        x = tf.reshape(tf.cast(tokens, self.compute_dtype),
                       [shape[0], shape[1], self.num_tokens * self.token_dim])
        for layer in self.hidden:
            x = self.drop(layer(x), training=training)
        return self.logits(x)

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks,
                "num_tokens": self.num_tokens, "token_dim": self.token_dim,
                "width": self.width, "num_layers": self.num_layers, "dropout": self.dropout}
