"""What every head shares: its arguments, their checks, its config, its logits layer."""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from model.layers.common import check_positive


def head_tokens(model_cfg) -> int:
    """Tokens the ranking model hands the head per target: [z, user tokens, candidate]."""
    return 3 if model_cfg.use_user_id else 2


class TaskHead(keras.layers.Layer):
    """Base of the heads: tokens [B, M, T, d] -> logits [B, M, num_tasks] float32.

    Args:
      num_tasks: logits per target. num_tokens, token_dim: input tokens T x d.
      width: hidden width. num_layers: the head's layers. dropout: the head's dropout rate.
    """

    @classmethod
    def from_model_config(cls, model_cfg, num_tasks: int, num_tokens: int, **kwargs):
        """The head sized by the model config (model.head_width, head_layers, dropout)."""
        return cls(num_tasks, num_tokens, model_cfg.d_model, width=model_cfg.head_width,
                   num_layers=model_cfg.head_layers, dropout=model_cfg.dropout, **kwargs)

    def __init__(self, num_tasks: int, num_tokens: int, token_dim: int, width: int = 128,
                 num_layers: int = 2, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        check_positive(num_tasks=num_tasks, num_tokens=num_tokens, token_dim=token_dim,
                       width=width, num_layers=num_layers)
        self.num_tasks = num_tasks
        self.num_tokens = num_tokens
        self.token_dim = token_dim
        self.width = width
        self.num_layers = num_layers
        self.dropout = dropout

    def build_logits(self, in_width: int) -> None:
        """Dropout and the float32 logits layer over IN_WIDTH features."""
        self.drop = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.logits = keras.layers.Dense(self.num_tasks, dtype="float32", name="logits")
        self.logits.build((None, None, in_width))

    def flat_tokens(self, tokens) -> tf.Tensor:
        """[B, M, T, d] -> [B, M, T d] in the compute dtype."""
        shape = tf.shape(tokens)
        return tf.reshape(tf.cast(tokens, self.compute_dtype),
                          [shape[0], shape[1], self.num_tokens * self.token_dim])

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks,
                "num_tokens": self.num_tokens, "token_dim": self.token_dim,
                "width": self.width, "num_layers": self.num_layers, "dropout": self.dropout}
