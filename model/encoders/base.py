"""The sequence-encoder interface shared by STCA, the baselines and (later) LONGER.

An encoder turns the embedded history of one request and its m embedded targets into one
d-wide token z per target, split into a target-independent user side and a per-target
side so serving can encode a user once and score many candidate batches:

    cache = encoder.encode_user(events, history_mask, user_tokens=u)   # once per request
    z = encoder.score(cache, targets)                                  # per candidate batch

`cache` is a dict of batch-major tensors (`cache_spec()` gives their specs with None for
batch and length dims). Before `score`, the model adds "hist_len" ([B] int32, valid events
form a prefix), so `score` rebuilds masks from it and must not read anything else (no
raw inputs): this is what lets encode_user and score_candidates be separate serving
signatures, and lets a cache built from a history longer than any training history be
scored (no absolute positions anywhere).

`call(events, history_mask, targets, user_tokens, training)` computes the same z in one pass; it
defaults to `score(encode_user(...))` and encoders override it to order work for training
(e.g. STCA interleaves its per-layer view and attention so recomputation can drop each
layer's activations).

Encoders with `supports_id_match` also take `id_match` ([B, F, M, L] bool, which history
events share the target's item / author ID, `model.layers.id_match`) in call and score;
the model builds it from raw IDs (kept in the cache for serving). The others ignore it.

Every encoder also receives the model's target-independent user tokens ([B, U, d], keyword
`user_tokens` of encode_user and call); LONGER uses them as global tokens, the others
ignore them. LONGER's encode_user merges the history and caches the keys / values of every
target-independent token at every layer; its score runs only the candidate's path.
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from core import features
from model.layers.masking import length_mask

HIST_LEN = features.HIST_LEN  # the cache key of the valid history length


class SequenceEncoder(keras.layers.Layer):
    """Base class. Subclasses implement encode_user, score and cache_spec.

    Args:
      d_model: token width d (events, targets and the output z).
    """

    # Encoders with per-layer history blocks that `recompute` can wrap set this.
    supports_recompute = False
    # Encoders whose attention reads the target-history ID matches set this.
    supports_id_match = False
    # ... and that also take them as `MatchPairs` (model.layers.id_match) outside training.
    supports_match_pairs = False
    # Encoders that take the events' age buckets (`age_bucket`, [B, L]) in call and score
    # and add a learned recency logit at scoring time (model.recency=attention) set this.
    supports_recency_bias = False
    # Encoders whose encode_user cache depends on the user tokens (LONGER's global tokens)
    # set this: their cache cannot be moved to another user's row (RankingModel.swap_histories).
    cache_uses_user_tokens = False

    def __init__(self, d_model: int, **kwargs):
        super().__init__(**kwargs)
        if d_model < 1:
            raise ValueError(f"d_model must be >= 1, got {d_model}")
        self.d_model = d_model

    def encode_user(self, events, history_mask, user_tokens=None, training=None) -> dict:
        """events [B, L, d], history_mask [B, L] bool (and the user tokens [B, U, d], which
        encoders may ignore) -> dict of target-independent tensors."""
        raise NotImplementedError

    def score(self, cache: dict, targets, training=None, id_match=None) -> tf.Tensor:
        """cache (+ "hist_len") and targets [B, M, d] (+ id_match) -> z [B, M, d]."""
        raise NotImplementedError

    def cache_spec(self) -> dict:
        """name -> tf.TensorSpec of every tensor encode_user returns."""
        raise NotImplementedError

    def cache_length_axes(self) -> dict:
        """name -> the history axis of every encode_user tensor, for caches that can be
        extended with new events (encoders with supports_recency_bias: their cached
        tensors are per event, so new events' entries are prepended)."""
        raise NotImplementedError(f"{type(self).__name__} caches cannot be extended")

    def call(self, events, history_mask, targets, user_tokens=None, training=None,
             id_match=None):
        cache = dict(self.encode_user(events, history_mask, user_tokens=user_tokens,
                                      training=training))
        cache[HIST_LEN] = tf.reduce_sum(tf.cast(history_mask, tf.int32), axis=-1)
        return self.score(cache, targets, training=training, id_match=id_match)

    # Helpers for subclasses.
    @staticmethod
    def history_mask(cache: dict, length) -> tf.Tensor:
        """[B, length] bool mask rebuilt from cache["hist_len"]."""
        return length_mask(cache[HIST_LEN], length)

    def cast_cache(self, tensor):
        """Caches may arrive in another float dtype (e.g. a bfloat16 serving cache)."""
        return tf.cast(tensor, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model}
