"""Baseline: BST-like self-attention transformer over [history; target], per target."""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from model.encoders.base import SequenceEncoder
from model.flops import swiglu_flops
from model.layers.common import check_positive
from model.layers.transformer_block import TransformerBlock
from model.recompute import recompute
from model.registry import register_encoder

HISTORY_EVENTS = "history_events"


def transformer_flops(cfg, L: int, m: int = 1) -> tuple[int, int]:
    """(user, per-target) forward FLOPs: full self-attention over [history; target] per target."""
    d, n, f, s = cfg.d_model, cfg.num_layers, cfg.ffn_mult, L + 1
    return 0, n * (8 * s * d * d + 4 * s * s * d + swiglu_flops(s, d, d, f * d))


@register_encoder("transformer", flops=transformer_flops)
@keras.utils.register_keras_serializable(package="stca")
class TransformerEncoder(SequenceEncoder):
    """For every target t: S = [x_1..x_L; x_t], N bidirectional self-attention blocks,
    z = LN(S_N[target position]).

    Each target gets its own copy of the history (history tokens attend to the target),
    so the cost is m * N * (20 S d^2 + 4 S^2 d) per request with S = L + 1, and the score
    matrices take m * N * h * S^2 floats: the quadratic baseline STCA is compared with.

    Args:
      d_model: width d. num_heads: heads. num_layers: blocks N. ffn_mult: SwiGLU mult.
      recompute: recompute each block in the backward pass.

    Inputs of `call`: events [B, L, d], history_mask [B, L], targets [B, M, d].
    Output: z [B, M, d].

    Example:
        z = TransformerEncoder(64, 4, 1)(events, history_mask, targets)
    """

    supports_recompute = True

    @classmethod
    def from_model_config(cls, model_cfg, num_user_tokens: int = 0, **kwargs):
        return cls(model_cfg.d_model, model_cfg.num_heads, model_cfg.num_layers,
                   model_cfg.ffn_mult, recompute=model_cfg.recompute, **kwargs)

    def __init__(self, d_model: int, num_heads: int = 4, num_layers: int = 1,
                 ffn_mult: int = 2, recompute: bool = False, **kwargs):
        super().__init__(d_model, **kwargs)
        check_positive(num_heads=num_heads, num_layers=num_layers, ffn_mult=ffn_mult)
        self.num_heads = num_heads
        self.num_layers = num_layers
        self.ffn_mult = ffn_mult
        self.recompute = bool(recompute)

    def build(self, input_shape=None):
        policy, shape = self.dtype_policy, (None, None, self.d_model)
        self.blocks = [TransformerBlock(self.d_model, self.num_heads, self.ffn_mult,
                                        dtype=policy, name=f"block_{i}")
                       for i in range(self.num_layers)]
        for block in self.blocks:
            block.build(shape)
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, dtype=policy, name="norm")
        self.norm.build((None, self.d_model))  # applied to the [B*M, d] target position
        super().build(input_shape)

    def encode_user(self, events, history_mask, user_tokens=None, training=None):
        return {HISTORY_EVENTS: tf.cast(events, self.compute_dtype)}

    def score(self, cache, targets, training=None, id_match=None):
        events = self.cast_cache(cache[HISTORY_EVENTS])
        targets = tf.cast(targets, self.compute_dtype)
        batch, length = tf.shape(events)[0], tf.shape(events)[1]
        num_targets = tf.shape(targets)[1]
        history_mask = self.history_mask(cache, length)
        # One sequence per target: [B*M, L + 1, d], the target last.
        sequence = tf.concat([tf.repeat(events, num_targets, axis=0),
                              tf.reshape(targets, [-1, 1, self.d_model])], axis=1)
        sequence_mask = tf.concat([tf.repeat(history_mask, num_targets, axis=0),
                                   tf.ones([batch * num_targets, 1], tf.bool)], axis=1)
        for block in self.blocks:
            def run(x, block=block):
                return block(x, sequence_mask)
            sequence = (recompute(run) if self.recompute else run)(sequence)
        z = self.norm(sequence[:, -1])
        return tf.reshape(z, [batch, num_targets, self.d_model])

    def cache_spec(self):
        return {HISTORY_EVENTS: tf.TensorSpec([None, None, self.d_model], self.compute_dtype,
                                              name=HISTORY_EVENTS)}

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads,
                "num_layers": self.num_layers, "ffn_mult": self.ffn_mult,
                "recompute": self.recompute}
