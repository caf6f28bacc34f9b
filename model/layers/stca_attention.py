"""STCA's single-query multi-head cross attention with the reordering trick."""
from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras

from model.layers.common import check_heads_divide, check_positive, clone_initializer
from model.layers.id_match import match_bias
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

    Two additions to the paper's attention, each off by default here and on in the
    model's default config (docs/model.md, "Deviations from the paper"):

        score_h,j += sum_f beta_f,h [ID f of event j == ID f of the target]   (ID match)
        alpha_h    = exp(score_h) / (exp(sink_h) + sum_j exp(score_h,j))     (sink)

    The ID-match prior makes the events that share the target's item or author stand out
    from the first step (learned dot products start random); the sink keeps the amount
    of such evidence, which a plain softmax normalises away.

    Args:
      d_model: width d of the view and the queries.
      num_heads: heads h (must divide d_model).
      num_match_fields: F, the ID fields of the `id_match` input (0: no ID-match prior).
      match_bias_init: initial beta_f,h (the prior's logit bonus for a match).
      attention_sink: add a learned sink logit per head (initialised to 0).
      kernel_initializer: initializer of the four kernels.

    Inputs: history_view [B, L, d], queries [B, M, d], history_mask [B, L] bool, and
    with num_match_fields > 0 id_match [B, M, F, L] bool (`model.layers.id_match`).
    Output: [B, M, d]; a request without valid history gives the zero vector before W_O.

    Example:
        out = STCAAttention(64, 4)(view, queries, history_mask)   # [B, M, 64]
        att = STCAAttention(64, 4, num_match_fields=2, attention_sink=True)
        out = att(view, queries, history_mask, id_match=match)    # match [B, M, 2, L]
    """

    def __init__(self, d_model: int, num_heads: int, num_match_fields: int = 0,
                 match_bias_init: float = 8.0, attention_sink: bool = False,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        check_positive(d_model=d_model, num_heads=num_heads)
        check_heads_divide(d_model, num_heads)
        if num_match_fields < 0:
            raise ValueError(f"num_match_fields must be >= 0, got {num_match_fields}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.num_match_fields = int(num_match_fields)
        self.match_bias_init = float(match_bias_init)
        self.attention_sink = bool(attention_sink)
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
        self.match_bias = self.sink_logit = None
        if self.num_match_fields:
            # Logit terms live with the float32 softmax: never autocast to bf16 / fp16.
            self.match_bias = self.add_weight(
                name="match_bias", shape=(self.num_match_fields, self.num_heads),
                initializer=keras.initializers.Constant(self.match_bias_init), trainable=True,
                dtype=tf.float32, experimental_autocast=False)
        if self.attention_sink:
            self.sink_logit = self.add_weight(name="sink_logit", shape=(self.num_heads,),
                                              initializer="zeros", trainable=True,
                                              dtype=tf.float32, experimental_autocast=False)
        super().build(input_shape)

    def call(self, history_view, queries, history_mask, id_match=None):
        d, h, k = self.d_model, self.num_heads, self.head_dim
        view = tf.cast(history_view, self.compute_dtype)
        queries = tf.cast(queries, self.compute_dtype)
        batch, targets = tf.shape(queries)[0], tf.shape(queries)[1]
        q = tf.reshape(tf.matmul(queries, self.query_kernel), [batch, targets, h, k])
        # The 1/sqrt(d_h) scale goes on u ([B, M, h, d]) instead of the [B, M*h, L] scores.
        u = tf.einsum("bmhk,ehk->bmhe", q, tf.reshape(self.key_kernel, [d, h, k]))
        u = tf.reshape(u * (1.0 / math.sqrt(k)), [batch, targets * h, d])
        scores = tf.matmul(u, view, transpose_b=True)                    # [B, M*h, L]
        sink = None
        if self.match_bias is not None:
            if id_match is None:
                raise ValueError(f"{self.name}: built with num_match_fields="
                                 f"{self.num_match_fields}, so id_match is required")
            bias = match_bias(id_match, self.match_bias)                  # [B, M, h, L]
            scores = tf.cast(scores, tf.float32) + tf.reshape(bias, tf.shape(scores))
        if self.sink_logit is not None:
            sink = tf.tile(self.sink_logit, [targets])[None, :]           # [1, M*h]
        alpha = masked_softmax(scores, history_mask[:, None, :], sink=sink)
        context = tf.matmul(tf.cast(alpha, self.compute_dtype), view)    # [B, M*h, d]
        context = tf.reshape(context, [batch, targets, h, d])
        heads = tf.einsum("bmhe,ehk->bmhk", context, tf.reshape(self.value_kernel, [d, h, k]))
        return tf.matmul(tf.reshape(heads, [batch, targets, d]), self.output_kernel)

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "num_heads": self.num_heads,
                "num_match_fields": self.num_match_fields,
                "match_bias_init": self.match_bias_init, "attention_sink": self.attention_sink,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}
