"""Per-layer, target-independent view of the history for STCA."""
from __future__ import annotations

import tf_keras as keras

from model.layers.common import check_positive
from model.layers.swiglu import SwiGLU


@keras.utils.register_keras_serializable(package="stca")
class HistoryView(keras.layers.Layer):
    """X~(i) = LN(SwiGLU_i(X)).

    Every STCA layer reads the raw events X through its own view: history tokens are
    never updated by attention, so the views depend only on the user and are computed
    once per request (and cached for serving).

    Args:
      d_model: token width d.
      ffn_mult: SwiGLU inner width multiplier.
      epsilon: layer-norm epsilon.

    Input shape: [B, L, d]. Output shape: [B, L, d].

    Example:
        view = HistoryView(64)(events)   # [B, L, 64]
    """

    def __init__(self, d_model: int, ffn_mult: int = 2, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        check_positive(d_model=d_model, ffn_mult=ffn_mult)
        self.d_model = d_model
        self.ffn_mult = ffn_mult
        self.epsilon = epsilon

    def build(self, input_shape=None):
        self.ffn = SwiGLU(self.d_model, self.ffn_mult, dtype=self.dtype_policy, name="ffn")
        self.norm = keras.layers.LayerNormalization(epsilon=self.epsilon,
                                                    dtype=self.dtype_policy, name="norm")
        self.ffn.build((None, None, self.d_model))
        self.norm.build((None, None, self.d_model))
        super().build(input_shape)

    def call(self, events):
        return self.norm(self.ffn(events))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.d_model,)

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "ffn_mult": self.ffn_mult,
                "epsilon": self.epsilon}
