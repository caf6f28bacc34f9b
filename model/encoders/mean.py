"""Baseline: mean pooling of the history (target-independent)."""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from model.encoders.base import SequenceEncoder
from model.layers.masking import masked_mean
from model.registry import register_encoder

HISTORY_MEAN = "history_mean"


def mean_flops(cfg, L: int, m: int = 1) -> tuple[int, int]:
    """The masked mean is already counted with the user tokens (model/flops.py)."""
    return 0, 0


@register_encoder("mean", flops=mean_flops)
@keras.utils.register_keras_serializable(package="stca")
class MeanEncoder(SequenceEncoder):
    """z = mean of the valid history events, the same for every target of a request.

    Args:
      d_model: width d.

    Inputs of `call`: events [B, L, d], history_mask [B, L], targets [B, M, d].
    Output: z [B, M, d].

    Example:
        z = MeanEncoder(64)(events, history_mask, targets)
    """

    @classmethod
    def from_model_config(cls, model_cfg, num_user_tokens: int = 0, **kwargs):
        return cls(model_cfg.d_model, **kwargs)

    def encode_user(self, events, history_mask, user_tokens=None, training=None):
        return {HISTORY_MEAN: masked_mean(tf.cast(events, self.compute_dtype), history_mask)}

    def score(self, cache, targets, training=None, id_match=None):
        pooled = self.cast_cache(cache[HISTORY_MEAN])
        return tf.broadcast_to(pooled[:, None, :], tf.shape(targets))

    def cache_spec(self):
        return {HISTORY_MEAN: tf.TensorSpec([None, self.d_model], self.compute_dtype,
                                            name=HISTORY_MEAN)}
