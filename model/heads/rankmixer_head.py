"""RankMixer head over [z, user tokens, candidate token]."""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from model.heads.base import TaskHead, head_tokens
from model.layers.common import check_positive, per_token_initializer
from model.layers.rankmixer import RankMixerBlock
from model.registry import register_head


def rankmixer_head_flops(cfg, num_tasks: int = 1) -> int:
    """Forward FLOPs per target: token projections, RankMixer blocks, task outputs."""
    d, w, layers = cfg.d_model, cfg.head_width, cfg.head_layers
    tokens = head_tokens(cfg)
    w = -(-w // tokens) * tokens
    return 2 * tokens * d * w + layers * 4 * cfg.ffn_mult * tokens * w * w + 2 * w * num_tasks


@register_head("rankmixer", flops=rankmixer_head_flops)
@keras.utils.register_keras_serializable(package="stca")
class RankMixerHead(TaskHead):
    """Per-token projection to width D, `num_layers` RankMixer blocks, token mean, logits.

    D is `width` rounded up to a multiple of the token count (token mixing splits every
    token into T chunks).

    Args:
      num_tasks: logits per target. num_tokens: T. token_dim: input token width d.
      width: hidden token width. num_layers: RankMixer blocks. ffn_mult: per-token FFN
      multiplier. dropout: dropout on the pooled vector.

    Input: tokens [B, M, T, d]. Output: logits [B, M, num_tasks] float32.

    Example:
        logits = RankMixerHead(3, num_tokens=4, token_dim=64)(tokens)
    """

    @classmethod
    def from_model_config(cls, model_cfg, num_tasks: int, num_tokens: int, **kwargs):
        return cls(num_tasks, num_tokens, model_cfg.d_model, width=model_cfg.head_width,
                   num_layers=model_cfg.head_layers, dropout=model_cfg.dropout,
                   ffn_mult=model_cfg.ffn_mult, **kwargs)

    def __init__(self, num_tasks: int, num_tokens: int, token_dim: int, width: int = 128,
                 num_layers: int = 2, ffn_mult: int = 2, dropout: float = 0.0, **kwargs):
        super().__init__(num_tasks, num_tokens, token_dim, width, num_layers, dropout, **kwargs)
        check_positive(ffn_mult=ffn_mult)
        self.ffn_mult = ffn_mult
        self.hidden_width = -(-width // num_tokens) * num_tokens

    def build(self, input_shape=None):
        t, d, w = self.num_tokens, self.token_dim, self.hidden_width
        self.tokenizer = self.add_weight(
            name="tokenizer", shape=(t, d, w), trainable=True,
            initializer=per_token_initializer("glorot_uniform", t, d, w))
        self.blocks = [RankMixerBlock(t, w, self.ffn_mult, dtype=self.dtype_policy,
                                      name=f"block_{i}") for i in range(self.num_layers)]
        for block in self.blocks:
            block.build((None, None, t, w))
        self.build_logits(w)
        super().build(input_shape)

    def call(self, tokens, training=None):
        x = tf.einsum("bmtd,tdw->bmtw", tf.cast(tokens, self.compute_dtype), self.tokenizer)
        for block in self.blocks:
            x = block(x)
        return self.logits(self.drop(tf.reduce_mean(x, axis=-2), training=training))

    def get_config(self):
        return {**super().get_config(), "ffn_mult": self.ffn_mult}
