"""The ranking model: embeddings -> user tokens + sequence encoder -> head, as a tfrs.Model."""
from __future__ import annotations

import dataclasses
from typing import Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from core import features
from core.config import ModelConfig, config_from_dict

from model import precision
from model.encoders import HIST_LEN, build_encoder
from model.heads import build_head
from model.layers.common import ensure_built
from model.layers.event_embedding import EventEmbedding
from model.layers.id_match import ID_MATCH_INPUTS, id_match, match_pairs
from model.layers.masking import length_mask, masked_mean, prepend_valid
from model.layers.user_tokens import UserTokens

USER_TOKENS = "user_tokens"
HIST_TS = "hist_ts"  # cache key of the events' times (model.recency=attention)


class RankingModel(tfrs.Model):
    """Multi-task ranking over request-level batches (history once, M targets).

    Per target, the head reads the tokens [z, user tokens..., x_t] where z comes from the
    sequence encoder (model.encoder) and the user tokens are target-independent. With
    model.rlb (default) the user side is computed once per request and shared by its M
    targets; with rlb=false `call` copies the request once per target ([B*M, L], the
    point-wise baseline). encode_user / score_candidates always share the user side.

    With model.recency=attention the user cache holds no request-relative feature: event
    tokens leave the age out, the cache keeps the events' times (hist_ts) and
    score_candidates reads request_ts (`candidate_inputs`) to add the encoder's recency
    logits. Such a cache can be extended with a user's new events (`extend_user`) instead
    of being rebuilt for every request.

    Args:
      model_cfg: `core.config.ModelConfig` (validated here).
      tasks: task names; logits come in this order on the last axis.
      clip_norm: global-norm gradient clipping in train_step (train.clip_norm); 0 = off.

    Inputs: dict named as `core.features.MODEL_INPUTS`. Labels: dict task -> [B, M].
    Output of `call`: logits [B, M, T] float32.

    Example:
        model = build_model(ModelConfig(), ["click", "like"])
        model.compile(optimizer=precision.wrap_optimizer(keras.optimizers.Adam(1e-3), "float32"))
        model.fit(dataset_of_inputs_and_labels)
        cache = model.encode_user(inputs)
        logits = model.score_candidates(cache, inputs)
        cache = model.extend_user(cache, new_events)   # model.recency=attention only
    """

    def __init__(self, model_cfg: ModelConfig, tasks: Sequence[str], clip_norm: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        model_cfg.validate()
        if not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must be a non-empty list of unique names, got {tasks!r}")
        if clip_norm < 0:
            raise ValueError(f"clip_norm must be >= 0, got {clip_norm}")
        self.model_cfg = dataclasses.replace(model_cfg)
        self.task_names = list(tasks)
        self.clip_norm = float(clip_norm)
        cfg, policy = model_cfg, precision.policy(model_cfg.precision)
        self.embedding = EventEmbedding(
            cfg.d_model, cfg.item_buckets, cfg.author_buckets, cfg.action_buckets,
            cfg.time_buckets, cfg.time_log_base, cfg.ffn_mult,
            age_in_token=cfg.recency == "token", dtype=policy, name="embedding")
        self.user_tokens = UserTokens(cfg.d_model, cfg.user_buckets, cfg.use_user_id,
                                      dtype=policy, name="user_tokens")
        self.encoder = build_encoder(cfg, policy, num_user_tokens=self.user_tokens.num_tokens)
        # History ID inputs the encoder compares with each target's (cached for serving).
        self.match_fields = [ID_MATCH_INPUTS[f] for f in cfg.id_match] \
            if self.encoder.supports_id_match else []
        self.head = build_head(cfg, len(self.task_names),
                               num_tokens=self.user_tokens.num_tokens + 2, dtype=policy)
        self.ranking_tasks = [
            tfrs.tasks.Ranking(
                loss=keras.losses.BinaryCrossentropy(
                    from_logits=True, reduction=keras.losses.Reduction.SUM),
                metrics=[keras.metrics.AUC(from_logits=True, name=f"auc_{task}")],
                name=f"task_{task}")
            for task in self.task_names]

    # ---------------------------------------------------------------- building
    def build(self, input_shape=None):
        for layer in (self.embedding, self.user_tokens, self.encoder, self.head):
            ensure_built(layer)
        keras.layers.Layer.build(self, input_shape)  # Model.build would trace a call

    # ---------------------------------------------------------------- forward
    def call(self, inputs, training=False):
        if not self.model_cfg.rlb:
            return self._pointwise_call(inputs, training)
        events, history_mask = self._embed_history(inputs)
        targets = self.embedding.embed_targets(inputs)
        user_tokens = self.user_tokens(inputs["user_id"], events, history_mask)
        z = self.encoder(events, history_mask, targets, user_tokens=user_tokens,
                         training=training,
                         id_match=self._id_match(inputs, inputs, training),
                         **self._recency(inputs, inputs))
        return self._logits(z, user_tokens, targets, inputs[features.TGT_LEN], training)

    @property
    def recency_at_scoring(self) -> bool:
        """model.recency=attention: event ages enter the encoder's logits at scoring time."""
        return self.model_cfg.recency == "attention"

    @property
    def candidate_inputs(self) -> tuple[str, ...]:
        """The inputs of score_candidates besides the cache: `features.CANDIDATE_INPUTS`,
        and request_ts when the recency enters at scoring time (model.recency=attention)."""
        extra = ("request_ts",) if self.recency_at_scoring else ()
        return features.CANDIDATE_INPUTS + extra

    def _recency(self, history, inputs) -> dict:
        """The encoder's age_bucket keyword ([B, L] from history["hist_ts"] and
        inputs["request_ts"]) with model.recency=attention; {} otherwise."""
        if not self.recency_at_scoring:
            return {}
        return {"age_bucket": self.embedding.age_bucket(inputs["request_ts"],
                                                        history[HIST_TS])}

    def _id_match(self, history_ids, inputs, training):
        """The matches of raw IDs (history from inputs or a cache), or None: [B, F, M, L]
        bool in training; outside it, `MatchPairs` for encoders that take them (found by
        sorting, applied at the few matching pairs: measured faster, docs/serving.md)."""
        if not self.match_fields:
            return None
        history = [history_ids[h] for h, _ in self.match_fields]
        targets = [inputs[t] for _, t in self.match_fields]
        if not training and self.encoder.supports_match_pairs:
            return match_pairs(history, targets, history_ids[HIST_LEN],
                               inputs[features.TGT_LEN])
        return id_match(history, targets)

    def encode_user(self, inputs, training=False) -> dict:
        """Every target-independent tensor of the request (keys of `user_cache_spec`)."""
        ensure_built(self)
        events, history_mask = self._embed_history(inputs)
        user_tokens = self.user_tokens(inputs["user_id"], events, history_mask)
        cache = dict(self.encoder.encode_user(events, history_mask, user_tokens=user_tokens,
                                              training=training))
        cache[USER_TOKENS] = user_tokens
        cache[HIST_LEN] = tf.reduce_sum(tf.cast(history_mask, tf.int32), axis=-1)
        for name in self._cached_history_inputs():
            cache[name] = tf.cast(inputs[name], tf.int64)
        return cache

    def _cached_history_inputs(self) -> list[str]:
        """Raw history inputs the cache keeps: IDs of the ID match, times of the recency."""
        return [h for h, _ in self.match_fields] + ([HIST_TS] if self.recency_at_scoring else [])

    def score_candidates(self, cache: dict, inputs, training=False) -> tf.Tensor:
        """Logits [B, M, T] from a user cache and `candidate_inputs` only."""
        ensure_built(self)
        targets = self.embedding.embed_targets(inputs)
        z = self.encoder.score(cache, targets, training=training,
                               id_match=self._id_match(cache, inputs, training),
                               **self._recency(cache, inputs))
        return self._logits(z, cache[USER_TOKENS], targets, inputs[features.TGT_LEN],
                            training)

    @property
    def can_extend(self) -> bool:
        """Whether `extend_user` works: the cache holds no request-relative feature."""
        return self.recency_at_scoring

    def extend_user(self, cache: dict, new_events) -> dict:
        """The user cache after newer events: what encode_user gives for the history
        new_events + the cached one (most recent first), encoding only the new events.

        Needs model.recency=attention (the cached tensors are then per event and
        request-free). The history-mean user token becomes the running mean over both;
        the user-ID token stays. Nothing is dropped: a caller that caps the history
        re-encodes instead.

        Args:
          cache: a user cache (`user_cache_spec`; a bfloat16 cache stays bfloat16).
          new_events: the history features [B, K] of the new events, most recent first
            and all after the cached ones, and their valid counts "hist_len" [B].

        Returns:
          The extended cache, history width K + L.

        Raises:
          ValueError when the model's cache cannot be extended (model.recency=token).
        """
        if not self.can_extend:
            raise ValueError("extend_user needs model.recency=attention: with the age in "
                             "the event tokens every cached tensor depends on request_ts")
        ensure_built(self)
        events, mask = self._embed_history(new_events)
        new = dict(self.encoder.encode_user(events, mask))
        new_len = tf.cast(new_events[features.HIST_LEN], tf.int32)
        old_len = tf.cast(cache[HIST_LEN], tf.int32)
        out = dict(cache)
        sources = {**{name: (new[name], axis)
                      for name, axis in self.encoder.cache_length_axes().items()},
                   **{name: (new_events[name], 1) for name in self._cached_history_inputs()}}
        for name, (fresh, axis) in sources.items():
            out[name] = prepend_valid(tf.cast(fresh, cache[name].dtype), cache[name], new_len,
                                      axis)
        out[HIST_LEN] = old_len + new_len
        # Running mean of the events (the last user token): sums of old and new, in float32.
        count_old = tf.cast(old_len, tf.float32)[:, None]
        count_new = tf.cast(new_len, tf.float32)[:, None]
        mean_old = tf.cast(cache[USER_TOKENS][:, -1], tf.float32)
        sum_new = tf.cast(masked_mean(events, mask), tf.float32) * count_new
        mean = (mean_old * count_old + sum_new) / tf.maximum(count_old + count_new, 1.0)
        tokens = cache[USER_TOKENS]
        out[USER_TOKENS] = tf.concat([tokens[:, :-1], tf.cast(mean, tokens.dtype)[:, None]],
                                     axis=1)
        return out

    @property
    def can_swap_histories(self) -> bool:
        """Whether `swap_histories` can move a user cache between rows (request-level
        model whose encoder cache does not depend on the user-ID token)."""
        # With recency at scoring time the cache has event times but no request time, so
        # a moved row would read another user's events against its own request_ts.
        return (self.model_cfg.rlb and not self.encoder.cache_uses_user_tokens
                and not self.recency_at_scoring)

    def swap_histories(self, cache: dict, perm) -> dict:
        """The user cache of the same batch with row i's history (and request time)
        taken from row perm[i] and its own user ID kept: what `encode_user` gives for
        those inputs, without encoding again (evaluation's swapped-history pass).

        Raises:
          ValueError when `can_swap_histories` is False.
        """
        if not self.can_swap_histories:
            raise ValueError("swap_histories needs a request-level model whose encoder "
                             "cache does not depend on the user tokens")
        out = {name: tf.gather(value, perm) for name, value in cache.items()}
        if self.user_tokens.use_user_id:  # [e(user_id), history mean]: the ID stays
            tokens = cache[USER_TOKENS]
            out[USER_TOKENS] = tf.concat([tokens[:, :1], out[USER_TOKENS][:, 1:]], axis=1)
        return out

    def user_cache_spec(self) -> dict:
        ensure_built(self)
        compute = self.encoder.compute_dtype
        spec = dict(self.encoder.cache_spec())
        spec[USER_TOKENS] = tf.TensorSpec(
            [None, self.user_tokens.num_tokens, self.model_cfg.d_model], compute,
            name=USER_TOKENS)
        spec[HIST_LEN] = tf.TensorSpec([None], tf.int32, name=HIST_LEN)
        for name in self._cached_history_inputs():
            spec[name] = tf.TensorSpec([None, None], tf.int64, name=name)
        return spec

    def _embed_history(self, inputs):
        events = self.embedding.embed_history(inputs)
        width = tf.shape(inputs["hist_item_id"])[1]
        return events, length_mask(inputs[features.HIST_LEN], width)

    def _logits(self, z, user_tokens, targets, tgt_len, training):
        """Head logits [B, M, T] float32 of the valid targets (m < tgt_len); 0 at padded
        target slots. The head runs on the valid targets only: training batches pad every
        request to train.max_targets slots, about half of them empty on the synthetic log,
        and the head is the largest per-target cost (1.5x faster steps at d = 32, L = 64)."""
        dtype = self.head.compute_dtype
        shape = tf.shape(targets)
        index = tf.where(features.target_mask(tgt_len, shape[1]))          # [n, 2] (b, m)
        tokens = tf.concat([tf.gather_nd(tf.cast(z, dtype), index)[:, None],
                            tf.gather(tf.cast(user_tokens, dtype), index[:, 0]),
                            tf.gather_nd(tf.cast(targets, dtype), index)[:, None]], axis=1)
        logits = self.head(tokens[None], training=training)[0]              # [n, T]
        out_shape = tf.stack([shape[0], shape[1], tf.shape(logits)[1]])
        return tf.scatter_nd(index, logits, tf.cast(out_shape, index.dtype))

    def _pointwise_call(self, inputs, training):
        """Point-wise baseline: every target gets its own copy of the request."""
        shape = tf.shape(inputs["tgt_item_id"])
        copies = {name: tf.repeat(inputs[name], shape[1], axis=0)
                  for name in features.USER_INPUTS}
        for name in features.TARGET_FEATURES:
            copies[name] = tf.reshape(inputs[name], [-1, 1])
        copies[features.TGT_LEN] = tf.ones([shape[0] * shape[1]], tf.int32)
        events, history_mask = self._embed_history(copies)
        targets = self.embedding.embed_targets(copies)
        user_tokens = self.user_tokens(copies["user_id"], events, history_mask)
        z = self.encoder(events, history_mask, targets, user_tokens=user_tokens,
                         training=training,
                         id_match=self._id_match(copies, copies, training))
        logits = self._logits(z, user_tokens, targets, copies[features.TGT_LEN], training)
        return tf.reshape(logits, [shape[0], shape[1], len(self.task_names)])

    # ---------------------------------------------------------------- training
    def compute_loss(self, inputs, training=False) -> tf.Tensor:
        """Sum over tasks of BCE summed over valid targets / number of valid targets.

        Under tf.distribute the divisor is the global number of valid targets (all-reduced
        over replicas), so the per-replica gradients summed by the optimizer equal the
        gradient of one process over the whole global batch.
        """
        model_inputs, labels = inputs[0], inputs[1]
        logits = self(model_inputs, training=training)
        valid = features.target_mask(model_inputs[features.TGT_LEN], tf.shape(logits)[1])
        weights = tf.reshape(tf.cast(valid, tf.float32), [-1])
        num_valid = tf.maximum(_replica_sum(tf.reduce_sum(weights)), 1.0)
        loss = tf.constant(0.0)
        for i, (name, task) in enumerate(zip(self.task_names, self.ranking_tasks)):
            task_loss = task(labels=tf.reshape(tf.cast(labels[name], tf.float32), [-1, 1]),
                             predictions=tf.reshape(logits[..., i], [-1, 1]),
                             sample_weight=weights, training=training)
            loss += task_loss / num_valid
        return loss

    def train_step(self, batch):
        optimizer = self.optimizer
        scaled = precision.is_loss_scaled(optimizer)
        if precision.needs_loss_scaling(self.model_cfg.precision) and not scaled:
            raise ValueError("model.precision='mixed_float16' needs a LossScaleOptimizer: "
                             "compile with model.precision.wrap_optimizer(opt, precision)")
        replicas = _num_replicas()
        with tf.GradientTape() as tape:
            loss = self.compute_loss(batch, training=True)
            # Regularization is per model, not per replica: replicas' gradients are summed.
            regularization = tf.add_n(self.losses) / replicas if self.losses else 0.0
            total = loss + regularization
            objective = optimizer.get_scaled_loss(total) if scaled else total
        pairs = [(g, v) for g, v in zip(tape.gradient(objective, self.trainable_variables),
                                        self.trainable_variables) if g is not None]
        grads = [g for g, _ in pairs]
        if scaled:
            grads = optimizer.get_unscaled_gradients(grads)
        # Sum over replicas before clipping, so the clipped norm is the global one.
        grads = _replica_sum(grads)
        grad_norm = tf.linalg.global_norm(grads)
        if self.clip_norm > 0:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm, use_norm=grad_norm)
        optimizer.apply_gradients(zip(grads, [v for _, v in pairs]),
                                  experimental_aggregate_gradients=False)
        logs = {m.name: m.result() for m in self.metrics}
        logs.update(loss=_replica_sum(loss), regularization_loss=regularization,
                    total_loss=_replica_sum(total), grad_norm=grad_norm)
        if scaled:
            logs["loss_scale"] = optimizer.loss_scale
        return logs

    def test_step(self, batch):
        loss = self.compute_loss(batch, training=False)
        logs = {m.name: m.result() for m in self.metrics}
        logs["loss"] = _replica_sum(loss)
        return logs

    # ---------------------------------------------------------------- config
    def get_config(self):
        return {"model_cfg": dataclasses.asdict(self.model_cfg), "tasks": self.task_names,
                "clip_norm": self.clip_norm}

    @classmethod
    def from_config(cls, config):
        model_cfg = config_from_dict({"model": config["model_cfg"]}).model
        return cls(model_cfg, config["tasks"], config.get("clip_norm", 0.0))


def _num_replicas() -> int:
    return tf.distribute.get_strategy().num_replicas_in_sync


def _replica_sum(value):
    """Sum over replicas inside a replica context with several replicas; else identity."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return value
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)


def build_model(model_cfg: ModelConfig, tasks: Sequence[str],
                clip_norm: float = 0.0) -> RankingModel:
    """A built `RankingModel` (all variables exist, so checkpoints restore immediately)."""
    model = RankingModel(model_cfg, tasks, clip_norm=clip_norm)
    ensure_built(model)
    return model
