"""Target-independent user tokens, computed once per request."""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from model.layers.common import check_positive
from model.layers.hashed_embedding import HashedEmbedding
from model.layers.masking import masked_mean


@keras.utils.register_keras_serializable(package="stca")
class UserTokens(keras.layers.Layer):
    """[e(user_id)] (optional) and the masked mean of the history events, as head tokens.

    Args:
      d_model: token width.
      user_buckets: hashed user table size.
      use_user_id: include the hashed user-ID embedding token.

    Inputs: user_id [B] int64, history events [B, L, d], history_mask [B, L] bool.
    Output: [B, U, d] with U = `num_tokens` (2 with the user ID, else 1).

    Example:
        tokens = UserTokens(32, 1000)(user_id, history, history_mask)   # [B, 2, 32]
    """

    def __init__(self, d_model: int, user_buckets: int, use_user_id: bool = True, **kwargs):
        super().__init__(**kwargs)
        check_positive(d_model=d_model, user_buckets=user_buckets)
        self.d_model = d_model
        self.user_buckets = user_buckets
        self.use_user_id = bool(use_user_id)

    @property
    def num_tokens(self) -> int:
        return 2 if self.use_user_id else 1

    def build(self, input_shape=None):
        if self.use_user_id:
            self.user = HashedEmbedding(self.user_buckets, self.d_model,
                                        dtype=self.dtype_policy, name="user")
            self.user.build((None,))
        super().build(input_shape)

    def call(self, user_id, history, history_mask):
        tokens = [masked_mean(tf.cast(history, self.compute_dtype), history_mask)]
        if self.use_user_id:
            tokens.insert(0, self.user(user_id))
        return tf.stack(tokens, axis=1)

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model,
                "user_buckets": self.user_buckets, "use_user_id": self.use_user_id}
