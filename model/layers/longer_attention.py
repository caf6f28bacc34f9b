"""One LONGER attention layer: pre-norm masked multi-head attention + SwiGLU FFN."""
from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras

from model.layers.common import check_heads_divide, check_positive, clone_initializer
from model.layers.masking import masked_softmax
from model.layers.swiglu import SwiGLU


@keras.utils.register_keras_serializable(package="stca")
class LongerAttention(keras.layers.Layer):
    """Queries (a subset of the key tokens) attend over explicit keys / values.

        K, V = LN(T) W_K, LN(T) W_V                         project(T), all key tokens T
        x    = x + MHA(LN(x) W_Q, K, V; mask) W_O            attend(x, K, V, mask)
        x    = x + SwiGLU(LN_f(x))

    Both of LONGER's layer kinds are this layer with different token sets and masks:
    layer 1 (cross attention) has keys [global; all merged sequence tokens] and queries
    [global; k recent]; layers 2.. (causal self-attention) have queries = keys = the short
    set. `project` and `attend` are separate so the keys / values of target-independent
    tokens can be computed once per request and cached. With `self_attend=True` each query
    also attends to its own key / value (computed from the query token here): a candidate
    scored against a cache sees the cached tokens and itself, never the other candidates,
    at O(S d) per candidate (no [M, M] block).

    Scores are scaled by 1 / sqrt(d_h); the masked softmax runs in float32
    (`masking.masked_softmax`: masked keys get exactly zero weight).

    Args:
      d_model: width d. num_heads: heads h (must divide d_model).
      ffn_mult: SwiGLU inner width multiplier. epsilon: layer-norm epsilon.
      kernel_initializer: initializer of W_Q, [W_K W_V] and W_O.

    Inputs of `call`: queries [B, Q, d], key tokens [B, S, d], mask bool broadcastable to
    [B, Q, S]. Output: updated queries [B, Q, d].

    Example:
        layer = LongerAttention(64, 4)
        keys, values = layer.project(tokens)                    # [B, S, 64] each
        out = layer.attend(tokens[:, :8], keys, values, mask)   # [B, 8, 64]
    """

    def __init__(self, d_model: int, num_heads: int, ffn_mult: int = 2,
                 epsilon: float = 1e-6, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        check_positive(d_model=d_model, num_heads=num_heads, ffn_mult=ffn_mult)
        check_heads_divide(d_model, num_heads)
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.ffn_mult = ffn_mult
        self.epsilon = epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape=None):
        d, policy, shape = self.d_model, self.dtype_policy, (None, None, self.d_model)

        def dense(units, name):
            return keras.layers.Dense(
                units, use_bias=False, dtype=policy, name=name,
                kernel_initializer=clone_initializer(self.kernel_initializer))
        self.attn_norm = keras.layers.LayerNormalization(epsilon=self.epsilon, dtype=policy,
                                                         name="attn_norm")
        self.query = dense(d, "query")
        self.key_value = dense(2 * d, "key_value")
        self.out = dense(d, "output")
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=self.epsilon, dtype=policy,
                                                        name="ffn_norm")
        self.ffn = SwiGLU(d, self.ffn_mult, dtype=policy, name="ffn")
        for layer in (self.attn_norm, self.query, self.key_value, self.out, self.ffn_norm,
                      self.ffn):
            layer.build(shape)
        super().build(input_shape)

    def project(self, tokens):
        """Key tokens [B, S, d] -> (keys, values), each [B, S, d] in the compute dtype."""
        keys, values = tf.split(self.key_value(self.attn_norm(tokens)), 2, axis=-1)
        return keys, values

    def attend(self, queries, keys, values, mask, self_attend: bool = False, bias=None):
        """Queries [B, Q, d] attend over keys / values [B, S, d] (mask [B, Q|1, S]);
        `bias`: float32 logits broadcastable to [B, h, Q, S] added to the scores (the
        encoder's ID-match prior); a query's own key (self_attend) gets none."""
        queries = tf.cast(queries, self.compute_dtype)
        keys, values = tf.cast(keys, self.compute_dtype), tf.cast(values, self.compute_dtype)
        x = self.attn_norm(queries)
        q = self._split(self.query(x) * (1.0 / math.sqrt(self.head_dim)))   # [B, h, Q, d_h]
        k, v = self._split(keys), self._split(values)                       # [B, h, S, d_h]
        scores = tf.matmul(q, k, transpose_b=True)                          # [B, h, Q, S]
        if bias is not None:
            scores = tf.cast(scores, tf.float32) + bias
        mask = tf.broadcast_to(tf.cast(mask, tf.bool)[:, None], tf.shape(scores))
        if self_attend:
            own_k, own_v = (self._split(t) for t in tf.split(self.key_value(x), 2, axis=-1))
            own = tf.cast(tf.reduce_sum(q * own_k, -1, keepdims=True), scores.dtype)
            scores = tf.concat([scores, own], -1)
            mask = tf.concat([mask, tf.ones_like(mask[..., :1])], axis=-1)
        weights = tf.cast(masked_softmax(scores, mask), self.compute_dtype)
        context = tf.matmul(weights[..., :tf.shape(k)[2]], v)              # [B, h, Q, d_h]
        if self_attend:
            context += weights[..., -1:] * own_v
        shape = tf.shape(queries)
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), shape)
        queries = queries + self.out(context)
        return queries + self.ffn(self.ffn_norm(queries))

    def call(self, queries, key_tokens, mask):
        keys, values = self.project(key_tokens)
        return self.attend(queries, keys, values, mask)

    def _split(self, x):
        """[B, S, d] -> [B, h, S, d_h]."""
        shape = tf.shape(x)
        x = tf.reshape(x, [shape[0], shape[1], self.num_heads, self.head_dim])
        return tf.transpose(x, [0, 2, 1, 3])

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "num_heads": self.num_heads,
                "ffn_mult": self.ffn_mult, "epsilon": self.epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}
