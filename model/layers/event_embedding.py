"""Embeddings of history events and targets: the one place every encoder gets tokens from."""
from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras

from model.layers.common import check_positive, ensure_built
from model.layers.hashed_embedding import HashedEmbedding
from model.layers.swiglu import SwiGLU


def time_delta_bucket(request_ts: tf.Tensor, event_ts: tf.Tensor, num_buckets: int,
                      log_base: float) -> tf.Tensor:
    """Log-bucketed age of each event.

    bucket = min(floor(log_base(1 + dt)), num_buckets - 1), dt = (request_ts - event_ts)
    in seconds (timestamps are Unix ms), clipped at 0. Relative ages instead of absolute
    positions keep the model length-extrapolative.

    Args:
      request_ts: [B] int64 ms. event_ts: [B, L] int64 ms.

    Returns:
      [B, L] int64 buckets in [0, num_buckets).
    """
    dt_ms = tf.maximum(tf.cast(request_ts, tf.int64)[:, None] - tf.cast(event_ts, tf.int64), 0)
    dt_s = tf.cast(dt_ms, tf.float32) / 1000.0
    bucket = tf.floor(tf.math.log1p(dt_s) / math.log(log_base))
    return tf.minimum(tf.cast(bucket, tf.int64), num_buckets - 1)


@keras.utils.register_keras_serializable(package="stca")
class EventEmbedding(keras.layers.Layer):
    """History events and targets as d-wide tokens, sharing the item and author tables.

        x_j = e(item_j) + SwiGLU([e(item_j); e(action_j); e(author_j); e(timebucket_j)])
        x_t = e(item_t) + SwiGLU_t([e(item_t); e(author_t)])

    No absolute position embeddings: they would break length extrapolation. With
    age_in_token=False (model.recency=attention) the time bucket is left out,
    x_j = e(item_j) + SwiGLU([e(item_j); e(action_j); e(author_j)]): the token no longer
    depends on request_ts, and `age_bucket` gives the buckets to the encoder instead.

    Args:
      d_model: token width d.
      item_buckets, author_buckets, action_buckets: hashed table sizes.
      time_buckets: number of log time-delta buckets.
      time_log_base: base of the log bucketing (> 1).
      ffn_mult: SwiGLU inner width multiplier.
      age_in_token: embed the time bucket in every event token (default).

    Input: dict of model inputs (`core.features.MODEL_INPUTS` names).
    Output of `call`: (history [B, L, d], targets [B, M, d]); `embed_history` and
    `embed_targets` compute one side each.

    Example:
        emb = EventEmbedding(d_model=32, item_buckets=1000, author_buckets=100,
                             action_buckets=16, time_buckets=32)
        history, targets = emb(inputs)
    """

    def __init__(self, d_model: int, item_buckets: int, author_buckets: int,
                 action_buckets: int, time_buckets: int, time_log_base: float = 1.5,
                 ffn_mult: int = 2, age_in_token: bool = True, **kwargs):
        super().__init__(**kwargs)
        check_positive(d_model=d_model, item_buckets=item_buckets,
                       author_buckets=author_buckets, action_buckets=action_buckets,
                       time_buckets=time_buckets, ffn_mult=ffn_mult)
        if time_log_base <= 1.0:
            raise ValueError(f"time_log_base must be > 1, got {time_log_base}")
        self.d_model = d_model
        self.item_buckets = item_buckets
        self.author_buckets = author_buckets
        self.action_buckets = action_buckets
        self.time_buckets = time_buckets
        self.time_log_base = float(time_log_base)
        self.ffn_mult = ffn_mult
        self.age_in_token = bool(age_in_token)

    def build(self, input_shape=None):
        d, policy = self.d_model, self.dtype_policy
        self.item = HashedEmbedding(self.item_buckets, d, dtype=policy, name="item")
        self.author = HashedEmbedding(self.author_buckets, d, dtype=policy, name="author")
        self.action = HashedEmbedding(self.action_buckets, d, dtype=policy, name="action")
        self.time = (HashedEmbedding(self.time_buckets, d, dtype=policy, name="time_delta")
                     if self.age_in_token else None)
        self.event_ffn = SwiGLU(d, self.ffn_mult, dtype=policy, name="event_ffn")
        self.target_ffn = SwiGLU(d, self.ffn_mult, dtype=policy, name="target_ffn")
        for table in (self.item, self.author, self.action, self.time):
            if table is not None:
                table.build((None, None))
        self.event_ffn.build((None, None, (4 if self.age_in_token else 3) * d))
        self.target_ffn.build((None, None, 2 * d))
        super().build(input_shape)

    def call(self, inputs):
        return self.embed_history(inputs), self.embed_targets(inputs)

    def embed_history(self, inputs) -> tf.Tensor:
        """[B, L] history features (+ request_ts) -> [B, L, d] event tokens."""
        ensure_built(self)
        item = self.item(inputs["hist_item_id"])
        parts = [item, self.action(inputs["hist_action"]), self.author(inputs["hist_author_id"])]
        if self.age_in_token:
            parts.append(self.time(self.age_bucket(inputs["request_ts"], inputs["hist_ts"])))
        return item + self.event_ffn(tf.concat(parts, axis=-1))

    def age_bucket(self, request_ts, hist_ts) -> tf.Tensor:
        """[B] request_ts, [B, L] hist_ts (Unix ms) -> [B, L] int64 age buckets."""
        return time_delta_bucket(request_ts, hist_ts, self.time_buckets, self.time_log_base)

    def embed_targets(self, inputs) -> tf.Tensor:
        """[B, M] candidate features -> [B, M, d] target tokens x_t."""
        ensure_built(self)
        item = self.item(inputs["tgt_item_id"])
        features = tf.concat([item, self.author(inputs["tgt_author_id"])], axis=-1)
        return item + self.target_ffn(features)

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model,
                "item_buckets": self.item_buckets, "author_buckets": self.author_buckets,
                "action_buckets": self.action_buckets, "time_buckets": self.time_buckets,
                "time_log_base": self.time_log_base, "ffn_mult": self.ffn_mult,
                "age_in_token": self.age_in_token}
