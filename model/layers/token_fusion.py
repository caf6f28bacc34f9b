"""Fuses several d-wide tokens into one: STCA's query fusion and output token."""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from model.layers.common import check_positive
from model.layers.swiglu import SwiGLU


@keras.utils.register_keras_serializable(package="stca")
class TokenFusion(keras.layers.Layer):
    """y = [LN](SwiGLU([t_1; ...; t_k] W)), with W only when k > 1.

    STCA uses it for the queries, q(1) = LN(SwiGLU(x_t)) and
    q(i) = LN(SwiGLU([o(1)..o(i-1); x_t] W_C)), and for the output token
    z = SwiGLU([o(1)..o(N); x_t] W_Z) (normalize=False).

    Args:
      d_model: token width d (inputs and output).
      num_inputs: k, the number of tokens fused.
      ffn_mult: SwiGLU inner width multiplier.
      normalize: apply a final layer norm.

    Input: list of k tensors [..., d] (rank 3 unless built from a shape). Output: [..., d].

    Example:
        q2 = TokenFusion(64, num_inputs=2)([o1, x_t])
    """

    def __init__(self, d_model: int, num_inputs: int = 1, ffn_mult: int = 2,
                 normalize: bool = True, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        check_positive(d_model=d_model, num_inputs=num_inputs, ffn_mult=ffn_mult)
        self.d_model = d_model
        self.num_inputs = num_inputs
        self.ffn_mult = ffn_mult
        self.normalize = bool(normalize)
        self.epsilon = epsilon

    def build(self, input_shape=None):
        d, policy = self.d_model, self.dtype_policy
        # Layer norm resolves its axis against the input rank at build time.
        rank = 3
        if isinstance(input_shape, (list, tuple)) and input_shape and \
                isinstance(input_shape[0], (list, tuple, tf.TensorShape)):
            rank = len(input_shape[0])
        lead = (None,) * (rank - 1)
        self.project = None
        if self.num_inputs > 1:
            self.project = keras.layers.Dense(d, use_bias=False, dtype=policy, name="project")
            self.project.build(lead + (self.num_inputs * d,))
        self.ffn = SwiGLU(d, self.ffn_mult, dtype=policy, name="ffn")
        self.ffn.build(lead + (d,))
        self.norm = None
        if self.normalize:
            self.norm = keras.layers.LayerNormalization(epsilon=self.epsilon, dtype=policy,
                                                        name="norm")
            self.norm.build(lead + (d,))
        super().build(input_shape)

    def call(self, tokens):
        tokens = list(tokens) if isinstance(tokens, (list, tuple)) else [tokens]
        if len(tokens) != self.num_inputs:
            raise ValueError(f"{self.name} expects {self.num_inputs} tokens, got {len(tokens)}")
        x = tf.concat([tf.cast(t, self.compute_dtype) for t in tokens], axis=-1)
        if self.project is not None:
            x = self.project(x)
        x = self.ffn(x)
        return self.norm(x) if self.norm is not None else x

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model,
                "num_inputs": self.num_inputs, "ffn_mult": self.ffn_mult,
                "normalize": self.normalize, "epsilon": self.epsilon}
