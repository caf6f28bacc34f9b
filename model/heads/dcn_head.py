"""DCN-v2 head: cross layers (tfrs.layers.dcn.Cross) then a deep layer."""
from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from model.heads.base import TaskHead, head_tokens
from model.registry import register_head


def dcn_head_flops(cfg, num_tasks: int = 1) -> int:
    """Forward FLOPs per target: cross layers on the flat tokens, then the MLP."""
    flat, w = head_tokens(cfg) * cfg.d_model, cfg.head_width
    return cfg.head_layers * 2 * flat * flat + 2 * flat * w + 2 * w * num_tasks


@register_head("dcn", flops=dcn_head_flops)
@keras.utils.register_keras_serializable(package="stca")
class DCNHead(TaskHead):
    """x0 = concat(tokens); x_{i+1} = x0 * (x_i W_i + b_i) + x_i; logits = MLP(x_N).

    Args:
      num_tasks: logits per target. num_tokens, token_dim: input tokens T x d.
      width: deep layer width. num_layers: cross layers. dropout: after the deep layer.

    Input: tokens [B, M, T, d]. Output: logits [B, M, num_tasks] float32.

    Example:
        logits = DCNHead(3, num_tokens=4, token_dim=64)(tokens)
    """

    def build(self, input_shape=None):
        flat = (None, None, self.num_tokens * self.token_dim)
        self.crosses = [tfrs.layers.dcn.Cross(dtype=self.dtype_policy, name=f"cross_{i}")
                        for i in range(self.num_layers)]
        # Cross creates its dense kernel on first call; create it now so every variable
        # exists after build (checkpoint restore, set_weights, recomputation).
        probe = tf.zeros([1, 1, flat[-1]], self.compute_dtype)
        for cross in self.crosses:
            cross(probe, probe)
        self.deep = keras.layers.Dense(self.width, activation="relu", dtype=self.dtype_policy,
                                       name="deep")
        self.deep.build(flat)
        self.build_logits(self.width)
        super().build(input_shape)

    def call(self, tokens, training=None):
        x0 = x = self.flat_tokens(tokens)
        for cross in self.crosses:
            x = cross(x0, x)
        return self.logits(self.drop(self.deep(x), training=training))
