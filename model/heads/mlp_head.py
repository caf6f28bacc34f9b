"""MLP head over the concatenated tokens."""
from __future__ import annotations

import tf_keras as keras

from model.heads.base import TaskHead, head_tokens
from model.registry import register_head


def mlp_head_flops(cfg, num_tasks: int = 1) -> int:
    """Forward FLOPs per target of the MLP on the flat tokens."""
    flat, w = head_tokens(cfg) * cfg.d_model, cfg.head_width
    return 2 * flat * w + (cfg.head_layers - 1) * 2 * w * w + 2 * w * num_tasks


@register_head("mlp", flops=mlp_head_flops)
@keras.utils.register_keras_serializable(package="stca")
class MLPHead(TaskHead):
    """logits = Dense(ReLU(... ReLU(concat(tokens) W_1) ...)).

    Args:
      num_tasks: logits per target. num_tokens, token_dim: input tokens T x d.
      width: hidden width. num_layers: hidden layers. dropout: after each hidden layer.

    Input: tokens [B, M, T, d]. Output: logits [B, M, num_tasks] float32.

    Example:
        logits = MLPHead(3, num_tokens=4, token_dim=64)(tokens)
    """

    def build(self, input_shape=None):
        width = self.num_tokens * self.token_dim
        self.hidden = []
        for i in range(self.num_layers):
            layer = keras.layers.Dense(self.width, activation="relu", dtype=self.dtype_policy,
                                       name=f"hidden_{i}")
            layer.build((None, None, width))
            self.hidden.append(layer)
            width = self.width
        self.build_logits(width)
        super().build(input_shape)

    def call(self, tokens, training=None):
        x = self.flat_tokens(tokens)
        for layer in self.hidden:
            x = self.drop(layer(x), training=training)
        return self.logits(x)
