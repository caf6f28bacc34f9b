"""Baseline: single-layer multi-head target attention with explicit keys and values."""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from model.encoders.base import SequenceEncoder
from model.layers.common import check_heads_divide
from model.layers.target_attention import TargetAttention
from model.registry import register_encoder

HISTORY_KEYS = "history_keys"
HISTORY_VALUES = "history_values"


def target_attention_flops(cfg, L: int, m: int = 1) -> tuple[int, int]:
    """(user, per-target) forward FLOPs: K / V once, then scores + context per target."""
    d = cfg.d_model
    return 4 * L * d * d, 4 * L * d + 4 * d * d


@register_encoder("target_attention", flops=target_attention_flops)
@keras.utils.register_keras_serializable(package="stca")
class TargetAttentionEncoder(SequenceEncoder):
    """z = MultiHead(x_t, X W_K, X W_V) W_O; keys / values are cached per request.

    Args:
      d_model: width d. num_heads: attention heads.

    Inputs of `call`: events [B, L, d], history_mask [B, L], targets [B, M, d].
    Output: z [B, M, d].

    Example:
        z = TargetAttentionEncoder(64, 4)(events, history_mask, targets)
    """

    @classmethod
    def from_model_config(cls, model_cfg, num_user_tokens: int = 0, **kwargs):
        return cls(model_cfg.d_model, model_cfg.num_heads, **kwargs)

    def __init__(self, d_model: int, num_heads: int = 4, **kwargs):
        super().__init__(d_model, **kwargs)
        check_heads_divide(d_model, num_heads)
        self.num_heads = num_heads

    def build(self, input_shape=None):
        self.attention = TargetAttention(self.d_model, self.num_heads, dtype=self.dtype_policy,
                                         name="attention")
        self.attention.build((None, None, self.d_model))
        super().build(input_shape)

    def encode_user(self, events, history_mask, user_tokens=None, training=None):
        keys, values = self.attention.project_history(tf.cast(events, self.compute_dtype))
        return {HISTORY_KEYS: keys, HISTORY_VALUES: values}

    def score(self, cache, targets, training=None, id_match=None):
        keys, values = self.cast_cache(cache[HISTORY_KEYS]), self.cast_cache(cache[HISTORY_VALUES])
        history_mask = self.history_mask(cache, tf.shape(keys)[2])
        return self.attention.attend(keys, values, targets, history_mask)

    def cache_spec(self):
        shape = [None, self.num_heads, None, self.d_model // self.num_heads]
        return {name: tf.TensorSpec(shape, self.compute_dtype, name=name)
                for name in (HISTORY_KEYS, HISTORY_VALUES)}

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads}
