"""Baseline: DIN (MLP attention over [h, t, h - t, h * t])."""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from model.encoders.base import SequenceEncoder
from model.layers.din_attention import DINAttention
from model.registry import register_encoder

HISTORY_EVENTS = "history_events"
HISTORY_KEYS = "history_keys"


DIN_HIDDEN = (80, 40)  # the attention MLP of DIN's paper and DeepCTR


def din_flops(cfg, L: int, m: int = 1) -> tuple[int, int]:
    """(user, per-target) forward FLOPs of the attention MLP over every event."""
    d, (h1, h2) = cfg.d_model, DIN_HIDDEN
    user = 2 * L * d * h1
    per_target = 2 * d * h1 + 2 * L * d * h1 + 2 * L * h1 * h2 + 2 * L * h2 + 2 * L * d
    return user, per_target


@register_encoder("din", flops=din_flops)
@keras.utils.register_keras_serializable(package="stca")
class DINEncoder(SequenceEncoder):
    """z = sum_j softmax_j(MLP([h_j; t; h_j - t; h_j * t])) h_j.

    The user-side part of the first MLP layer is cached with the events.

    Args:
      d_model: width d. hidden_units: attention MLP widths.

    Inputs of `call`: events [B, L, d], history_mask [B, L], targets [B, M, d].
    Output: z [B, M, d].

    Example:
        z = DINEncoder(64)(events, history_mask, targets)
    """

    @classmethod
    def from_model_config(cls, model_cfg, num_user_tokens: int = 0, **kwargs):
        return cls(model_cfg.d_model, hidden_units=DIN_HIDDEN, **kwargs)

    def __init__(self, d_model: int, hidden_units=(80, 40), **kwargs):
        super().__init__(d_model, **kwargs)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        if not self.hidden_units or min(self.hidden_units) < 1:
            raise ValueError(f"hidden_units must be positive widths, got {hidden_units!r}")

    def build(self, input_shape=None):
        self.attention = DINAttention(self.d_model, self.hidden_units, dtype=self.dtype_policy,
                                      name="attention")
        self.attention.build((None, None, self.d_model))
        super().build(input_shape)

    def encode_user(self, events, history_mask, user_tokens=None, training=None):
        events = tf.cast(events, self.compute_dtype)
        return {HISTORY_EVENTS: events, HISTORY_KEYS: self.attention.project_history(events)}

    def score(self, cache, targets, training=None, id_match=None):
        events = self.cast_cache(cache[HISTORY_EVENTS])
        history_mask = self.history_mask(cache, tf.shape(events)[1])
        return self.attention.attend(events, self.cast_cache(cache[HISTORY_KEYS]), targets,
                                     history_mask)

    def cache_spec(self):
        return {HISTORY_EVENTS: tf.TensorSpec([None, None, self.d_model], self.compute_dtype,
                                              name=HISTORY_EVENTS),
                HISTORY_KEYS: tf.TensorSpec([None, None, self.hidden_units[0]],
                                            self.compute_dtype, name=HISTORY_KEYS)}

    def get_config(self):
        return {**super().get_config(), "hidden_units": list(self.hidden_units)}
