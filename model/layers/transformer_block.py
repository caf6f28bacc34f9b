"""Pre-norm self-attention block for the BST-like transformer baseline."""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from model.layers.common import check_heads_divide, check_positive
from model.layers.masking import masked_attention
from model.layers.swiglu import SwiGLU


@keras.utils.register_keras_serializable(package="stca")
class TransformerBlock(keras.layers.Layer):
    """x = x + MHSA(LN(x)); x = x + SwiGLU(LN(x)), attending only to valid keys.

    Quadratic in the sequence length: the [B, h, S, S] score matrix is materialized.

    Args:
      d_model: width d. num_heads: heads (must divide d_model).
      ffn_mult: SwiGLU inner width multiplier.

    Inputs: tokens [B, S, d], token_mask [B, S] bool. Output: [B, S, d].

    Example:
        y = TransformerBlock(64, 4)(tokens, token_mask)
    """

    def __init__(self, d_model: int, num_heads: int, ffn_mult: int = 2,
                 epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        check_positive(d_model=d_model, num_heads=num_heads, ffn_mult=ffn_mult)
        check_heads_divide(d_model, num_heads)
        self.d_model = d_model
        self.num_heads = num_heads
        self.ffn_mult = ffn_mult
        self.epsilon = epsilon

    def build(self, input_shape=None):
        d, policy, shape = self.d_model, self.dtype_policy, (None, None, self.d_model)
        self.attn_norm = keras.layers.LayerNormalization(epsilon=self.epsilon, dtype=policy,
                                                         name="attn_norm")
        self.qkv = keras.layers.Dense(3 * d, use_bias=False, dtype=policy, name="qkv")
        self.out = keras.layers.Dense(d, use_bias=False, dtype=policy, name="output")
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=self.epsilon, dtype=policy,
                                                        name="ffn_norm")
        self.ffn = SwiGLU(d, self.ffn_mult, dtype=policy, name="ffn")
        for layer in (self.attn_norm, self.qkv, self.out, self.ffn_norm, self.ffn):
            layer.build(shape)
        super().build(input_shape)

    def call(self, tokens, token_mask):
        shape = tf.shape(tokens)
        heads, head_dim = self.num_heads, self.d_model // self.num_heads

        def split(x):
            x = tf.reshape(x, [shape[0], shape[1], heads, head_dim])
            return tf.transpose(x, [0, 2, 1, 3])

        q, k, v = tf.split(self.qkv(self.attn_norm(tokens)), 3, axis=-1)
        context = masked_attention(split(q), split(k), split(v), token_mask[:, None, None, :])
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), shape)
        tokens = tokens + self.out(context)
        return tokens + self.ffn(self.ffn_norm(tokens))

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "num_heads": self.num_heads,
                "ffn_mult": self.ffn_mult, "epsilon": self.epsilon}
