"""STCA's single-query multi-head cross attention with the reordering trick."""
from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras

from model.layers.common import check_heads_divide, check_positive, clone_initializer
from model.layers.masking import masked_softmax


@keras.utils.register_keras_serializable(package="stca")
class STCAAttention(keras.layers.Layer):
    """Each target's query attends over a shared, target-independent history view X~.

    The four kernels are [d, d] matrices; column block h of W_Q, W_K, W_V (row block h
    of W_O) belongs to head h, with d_h = d / num_heads:

        u_h     = W_K,h (q W_Q,h) / sqrt(d_h)          [d]      (per target)
        alpha_h = masked_softmax(X~ u_h)               [L]      (float32, exact)
        o_h     = (alpha_h X~) W_V,h                   [d_h]
        out     = [o_1; ...; o_h] W_O                  [d]

    This equals softmax((q W_Q)(X~ W_K)^T / sqrt(d_h)) (X~ W_V) but never builds the
    [L, d] key / value projections: per target the cost is two [L, d] x [d, h] products,
    and for the m targets of one request they are two batched matmuls against the one
    shared X~ ([B, m*h, d] x [B, L, d]^T and [B, m*h, L] x [B, L, d]).

    Args:
      d_model: width d of the view and the queries.
      num_heads: heads h (must divide d_model).
      kernel_initializer: initializer of the four kernels.

    Inputs: history_view [B, L, d], queries [B, M, d], history_mask [B, L] bool.
    Output: [B, M, d]; a request without valid history gives the zero vector before W_O.

    Example:
        out = STCAAttention(64, 4)(view, queries, history_mask)   # [B, M, 64]
    """

    def __init__(self, d_model: int, num_heads: int, kernel_initializer="glorot_uniform",
                 **kwargs):
        super().__init__(**kwargs)
        check_positive(d_model=d_model, num_heads=num_heads)
        check_heads_divide(d_model, num_heads)
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape=None):
        def kernel(name):
            return self.add_weight(name=name, shape=(self.d_model, self.d_model),
                                   initializer=clone_initializer(self.kernel_initializer),
                                   trainable=True)
        self.query_kernel = kernel("query_kernel")
        self.key_kernel = kernel("key_kernel")
        self.value_kernel = kernel("value_kernel")
        self.output_kernel = kernel("output_kernel")
        super().build(input_shape)

    def call(self, history_view, queries, history_mask):
        d, h, k = self.d_model, self.num_heads, self.head_dim
        view = tf.cast(history_view, self.compute_dtype)
        queries = tf.cast(queries, self.compute_dtype)
        batch, targets = tf.shape(queries)[0], tf.shape(queries)[1]
        q = tf.reshape(tf.matmul(queries, self.query_kernel), [batch, targets, h, k])
        # The 1/sqrt(d_h) scale goes on u ([B, M, h, d]) instead of the [B, M*h, L] scores.
        u = tf.einsum("bmhk,ehk->bmhe", q, tf.reshape(self.key_kernel, [d, h, k]))
        u = tf.reshape(u * (1.0 / math.sqrt(k)), [batch, targets * h, d])
        scores = tf.matmul(u, view, transpose_b=True)                    # [B, M*h, L]
        alpha = masked_softmax(scores, history_mask[:, None, :])
        context = tf.matmul(tf.cast(alpha, self.compute_dtype), view)    # [B, M*h, d]
        context = tf.reshape(context, [batch, targets, h, d])
        heads = tf.einsum("bmhe,ehk->bmhk", context, tf.reshape(self.value_kernel, [d, h, k]))
        return tf.matmul(tf.reshape(heads, [batch, targets, d]), self.output_kernel)

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "num_heads": self.num_heads,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}
