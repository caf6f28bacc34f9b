"""STCA's single-query multi-head cross attention in two equal forms, chosen by cost."""
from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras
from tensorflow.python.framework import config as tf_config  # is_op_determinism_enabled

from model.flops import ATTENTION_FORMS, projected_attention_is_cheaper
from model.layers.common import check_heads_divide, check_positive, clone_initializer
from model.layers.id_match import (MatchPairs, dense_pair_bias, match_bias, pair_bias,
                                   pair_head_rows)
from model.layers.masking import masked_softmax

# Largest per-pair ID-match logit (sum over fields) the sparse form applies: exp(60)
# times any number of matching events stays finite in float32. Larger (or negative)
# biases take the dense form, which is exact for any value.
_MAX_SPARSE_BIAS = 60.0


@keras.utils.register_keras_serializable(package="stca")
class STCAAttention(keras.layers.Layer):
    """Each target's query attends over a shared, target-independent history view X~.

    The four kernels are [d, d] matrices; column block h of W_Q, W_K, W_V (row block h
    of W_O) belongs to head h, with d_h = d / num_heads. Two forms compute the same
    attention softmax((q W_Q)(X~ W_K)^T / sqrt(d_h)) (X~ W_V) W_O:

      reordered (the paper's):  u_h = W_K,h (q W_Q,h) / sqrt(d_h)     [d]   per target
                                alpha_h = masked_softmax(X~ u_h)      [L]
                                o_h = (alpha_h X~) W_V,h              [d_h]
        never builds the [L, d] keys / values: 4 L d h FLOPs per target.
      projected (cached K / V): K = X~ W_K, V = X~ W_V                [h, L, d_h] per request
                                alpha_h = masked_softmax(K_h q_h / sqrt(d_h))
                                o_h = alpha_h V_h
        4 L d^2 FLOPs once per request, then 4 L d per target.

    Then out = [o_1; ...; o_h] W_O. The projected form is cheaper once a request has
    m > d / (h - 1) targets (`model.flops.projected_attention_is_cheaper`): 21 at d = 64,
    h = 4. `attention_form="auto"` picks by that rule from M (in Python when M is static,
    with tf.cond when it is not, e.g. a serving signature); serving caches K / V
    (`project_history`) and scores with `attend_projected`. A training call
    (`training=True`) under "auto" always takes the reordered form: with gradients the
    projected form was never faster at d 32 / 64 and M 16-128, although it has fewer FLOPs
    (docs/model.md, benchmarks/bench_attention_form.py).

    Additions to the paper's attention, each off by default here (docs/model.md,
    "Deviations from the paper"; the model's default config turns the ID match on):

        score_h,j += sum_f beta_f,h [ID f of event j == ID f of the target]   (ID match)
        score_h,j += rho_a(j),h      a(j): age bucket of event j             (recency)
        alpha_h    = exp(score_h) / (exp(sink_h) + sum_j exp(score_h,j))     (sink)

    The ID-match prior makes the events that share the target's item or author stand out
    from the first step (learned dot products start random); the sink keeps the amount
    of such evidence, which a plain softmax normalises away. The recency bias (rho starts
    at 0) lets the event tokens carry no request-relative feature (model.recency =
    attention): the age enters only here, at scoring time, so cached keys / values stay
    valid for a later request of the same user.

    Args:
      d_model: width d of the view and the queries.
      num_heads: heads h (must divide d_model).
      num_match_fields: F, the ID fields of the `id_match` input (0: no ID-match prior).
      match_bias_init: initial beta_f,h (the prior's logit bonus for a match).
      attention_sink: add a learned sink logit per head (initialised to 0).
      attention_form: "auto" (by cost), "reordered" or "projected".
      recency_buckets: A, the age buckets of the `age_bucket` input (0: no recency bias).
      kernel_initializer: initializer of the four kernels.

    Inputs: history_view [B, L, d], queries [B, M, d], history_mask [B, L] bool, and
    with num_match_fields > 0 id_match: [B, F, M, L] bool or float32
    (`model.layers.id_match`; an encoder with several layers casts it once) or the same
    matches as `MatchPairs` (`match_pairs`: inference, where matches are rare: the prior
    is then applied at the pairs, without a score-sized bias, see `_attend_pairs`); with
    recency_buckets > 0 age_bucket [B, L] int in [0, A) (`event_embedding.time_delta_bucket`);
    `training` (Python bool or None) steers the "auto" form, and outside training lets an
    unpadded batch skip the masking pass.
    Output: [B, M, d]; a request without valid history gives the zero vector before W_O.

    Example:
        out = STCAAttention(64, 4)(view, queries, history_mask)   # [B, M, 64]
        att = STCAAttention(64, 4, num_match_fields=2, attention_sink=True)
        out = att(view, queries, history_mask, id_match=match)    # match [B, 2, M, L]
        keys, values = att.project_history(view)                  # [B, 4, L, 16] each
        out = att.attend_projected(keys, values, queries, history_mask, id_match=match)
    """

    def __init__(self, d_model: int, num_heads: int, num_match_fields: int = 0,
                 match_bias_init: float = 8.0, attention_sink: bool = False,
                 attention_form: str = "auto", recency_buckets: int = 0,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        check_positive(d_model=d_model, num_heads=num_heads)
        check_heads_divide(d_model, num_heads)
        if num_match_fields < 0:
            raise ValueError(f"num_match_fields must be >= 0, got {num_match_fields}")
        if recency_buckets < 0:
            raise ValueError(f"recency_buckets must be >= 0, got {recency_buckets}")
        if attention_form not in ATTENTION_FORMS:
            raise ValueError(f"attention_form must be one of {ATTENTION_FORMS}, "
                             f"got {attention_form!r}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.num_match_fields = int(num_match_fields)
        self.match_bias_init = float(match_bias_init)
        self.attention_sink = bool(attention_sink)
        self.attention_form = attention_form
        self.recency_buckets = int(recency_buckets)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape=None):
        def kernel(name):
            return self.add_weight(name=name, shape=(self.d_model, self.d_model),
                                   initializer=clone_initializer(self.kernel_initializer),
                                   trainable=True)
        self.query_kernel = kernel("query_kernel")
        self.key_kernel = kernel("key_kernel")
        self.value_kernel = kernel("value_kernel")
        self.output_kernel = kernel("output_kernel")
        self.match_bias = self.sink_logit = self.recency_bias = None
        if self.num_match_fields:
            # Logit terms live with the float32 softmax: never autocast to bf16 / fp16.
            self.match_bias = self.add_weight(
                name="match_bias", shape=(self.num_match_fields, self.num_heads),
                initializer=keras.initializers.Constant(self.match_bias_init), trainable=True,
                dtype=tf.float32, experimental_autocast=False)
        if self.recency_buckets:
            self.recency_bias = self.add_weight(
                name="recency_bias", shape=(self.recency_buckets, self.num_heads),
                initializer="zeros", trainable=True, dtype=tf.float32,
                experimental_autocast=False)
        if self.attention_sink:
            self.sink_logit = self.add_weight(name="sink_logit", shape=(self.num_heads,),
                                              initializer="zeros", trainable=True,
                                              dtype=tf.float32, experimental_autocast=False)
        super().build(input_shape)

    def call(self, history_view, queries, history_mask, id_match=None, age_bucket=None,
             training=None):
        self._check_logit_inputs(id_match, age_bucket)
        form = self.attention_form
        if form == "auto" and training:  # measured: reordered trains faster at any M tried
            form = "reordered"
        if form == "auto":
            targets = queries.shape[1]
            if targets is None:  # decided per call, e.g. by a serving signature's M
                return tf.cond(
                    projected_attention_is_cheaper(self.d_model, self.num_heads,
                                                   tf.shape(queries)[1]),
                    lambda: self._projected(history_view, queries, history_mask, id_match,
                                            age_bucket, training),
                    lambda: self._reordered(history_view, queries, history_mask, id_match,
                                            age_bucket, training))
            cheaper = projected_attention_is_cheaper(self.d_model, self.num_heads, targets)
            form = "projected" if cheaper else "reordered"
        if form == "projected":
            return self._projected(history_view, queries, history_mask, id_match, age_bucket,
                                   training)
        return self._reordered(history_view, queries, history_mask, id_match, age_bucket,
                               training)

    def _check_logit_inputs(self, id_match, age_bucket):
        if self.match_bias is not None and id_match is None:
            raise ValueError(f"{self.name}: built with num_match_fields="
                             f"{self.num_match_fields}, so id_match is required")
        if self.recency_bias is not None and age_bucket is None:
            raise ValueError(f"{self.name}: built with recency_buckets="
                             f"{self.recency_buckets}, so age_bucket is required")

    def _logit_bias(self, scores, id_match, age_bucket):
        """[B, h, M, L] scores plus the recency term and a dense ID-match term ([B, F, M, L]
        matches; `MatchPairs` are applied by `_attend`), float32 when any."""
        if self.match_bias is not None and not isinstance(id_match, MatchPairs):
            scores = tf.cast(scores, tf.float32) + match_bias(id_match, self.match_bias)
        if self.recency_bias is not None:
            rho = tf.gather(self.recency_bias, age_bucket)                   # [B, L, h]
            scores = tf.cast(scores, tf.float32) + tf.transpose(rho, [0, 2, 1])[:, :, None]
        return scores

    def project_history(self, history_view):
        """X~ [B, L, d] -> (keys, values), each [B, h, L, d_h] in the compute dtype."""
        h, k = self.num_heads, self.head_dim
        view = tf.cast(history_view, self.compute_dtype)
        batch, length = tf.shape(view)[0], tf.shape(view)[1]
        # Casts: these methods also run outside __call__ (serving), without autocast.
        kernel = tf.cast(tf.concat([self.key_kernel, self.value_kernel], axis=1),
                         self.compute_dtype)                                # one [d, 2d] pass
        kv = tf.reshape(tf.matmul(view, kernel), [batch, length, 2, h, k])
        kv = tf.transpose(kv, [2, 0, 3, 1, 4])                              # [2, B, h, L, k]
        return kv[0], kv[1]

    def attend_projected(self, keys, values, queries, history_mask, id_match=None,
                         age_bucket=None, training=None):
        """Queries [B, M, d] over projected keys / values [B, h, L, d_h] -> [B, M, d]."""
        self._check_logit_inputs(id_match, age_bucket)
        d, h, k = self.d_model, self.num_heads, self.head_dim
        keys = tf.cast(keys, self.compute_dtype)
        values = tf.cast(values, self.compute_dtype)
        queries = tf.cast(queries, self.compute_dtype)
        batch, targets = tf.shape(queries)[0], tf.shape(queries)[1]
        q = tf.matmul(queries, tf.cast(self.query_kernel, self.compute_dtype))
        q = q * (1.0 / math.sqrt(k))
        q = tf.transpose(tf.reshape(q, [batch, targets, h, k]), [0, 2, 1, 3])  # [B, h, M, k]
        scores = tf.matmul(q, keys, transpose_b=True)                       # [B, h, M, L]
        context = self._attend(scores, values, history_mask, id_match, age_bucket, training)
        context = context * self._has_history(history_mask)                 # [B, h, M, k]
        heads = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch, targets, d])
        return tf.matmul(heads, tf.cast(self.output_kernel, self.compute_dtype))

    def _attend(self, scores, rows, history_mask, id_match, age_bucket, training):
        """softmax(scores + logit terms) times rows -> [B, h, M, c] in the compute dtype.

        scores: [B, h, M, L]; rows: the values [B, h, L, c] of each head (projected form)
        or the view [B, L, c] all heads read (reordered form). With `MatchPairs`, the
        ID-match prior is applied at the matching pairs only when that is cheaper and
        exact in float32 (`_attend_pairs`); otherwise it is scattered into a dense bias.
        """
        if self.match_bias is None or not isinstance(id_match, MatchPairs):
            scores = self._logit_bias(scores, id_match, age_bucket)
            return self._mix(self._softmax(scores, history_mask, training), rows)
        bias = pair_bias(id_match, self.match_bias)                          # [n, h]
        batch, targets, length = id_match.shape[0], id_match.shape[1], id_match.shape[2]
        # The sparse form touches n x h x c values, the dense bias h x B x M x L.
        cheaper = (tf.cast(tf.size(id_match.row), tf.int64) * rows.shape[-1]
                   <= tf.cast(batch * targets, tf.int64) * tf.cast(length, tf.int64))
        exact = tf.logical_and(tf.reduce_min(bias) >= 0.0,
                               tf.reduce_max(bias) <= _MAX_SPARSE_BIAS)
        scores = self._logit_bias(scores, id_match, age_bucket)   # recency only

        def dense():
            dense_scores = tf.cast(scores, tf.float32) + dense_pair_bias(id_match, bias)
            return self._mix(self._softmax(dense_scores, history_mask, training), rows)

        return tf.cond(tf.logical_and(cheaper, exact),
                       lambda: self._attend_pairs(scores, rows, history_mask, id_match, bias,
                                                  training),
                       dense)

    def _attend_pairs(self, scores, rows, history_mask, pairs, bias, training):
        """The ID-match prior at its n pairs only, exactly: with p the softmax weights
        without it and e_j = exp(b_j) - 1 (0 where nothing matches),

            sum_j p_j exp(b_j) r_j / sum_j p_j exp(b_j)
              = (sum_j p_j r_j + sum_pairs p_j e_j r_j) / (1 + sum_pairs p_j e_j)

        (the sink, if any, is part of p's normaliser, so it stays exact). The score-sized
        bias and its addition disappear; for 0 <= b <= _MAX_SPARSE_BIAS every term is
        finite and non-negative, so nothing cancels."""
        alpha = self._softmax(scores, history_mask, training)                # [B, h, M, L]
        context = tf.cast(self._mix(alpha, rows), tf.float32)                # [B, h, M, c]
        targets = tf.cast(pairs.shape[1], tf.int64)
        length = tf.cast(pairs.shape[2], tf.int64)
        head_row = pair_head_rows(pairs, self.num_heads)                     # [n, h]
        event = tf.cast(pairs.event, tf.int64)[:, None]
        weight = (tf.gather(tf.reshape(alpha, [-1]), head_row * length + event)
                  * tf.math.expm1(bias))                                     # [n, h]
        # sum_pairs weight * row as a sparse [B h M, rows] x dense [rows, c] product (one
        # kernel, no [n, h, c] gather and segment sum): 2.3x faster than those at M = 256.
        if rows.shape.rank == 4:   # per-head values [B, h, L, c]: row (b h + head) L + j
            column = head_row // targets * length + event
        else:                      # the view [B, L, c] all heads read: row b L + j
            column = tf.broadcast_to(head_row // (targets * self.num_heads) * length + event,
                                     tf.shape(head_row))
        width = rows.shape[-1]
        dense = tf.cast(tf.reshape(rows, [-1, width]), tf.float32)
        num_rows = tf.cast(tf.size(context) // width, tf.int64)                # B h M
        if tf_config.is_op_determinism_enabled():
            # The GPU sparse x dense kernel raises under op determinism; a gather and a
            # segment sum (deterministic on every device) compute the same sum.
            num = tf.math.unsorted_segment_sum(
                weight[..., None] * tf.gather(dense, column), head_row, num_rows)
        else:
            sparse = tf.sparse.SparseTensor(
                tf.stack([tf.reshape(head_row, [-1]), tf.reshape(column, [-1])], axis=1),
                tf.reshape(weight, [-1]),
                tf.stack([num_rows, tf.cast(tf.shape(dense)[0], tf.int64)]))
            num = tf.sparse.sparse_dense_matmul(sparse, dense)
        num = tf.reshape(num, tf.shape(context))
        den = tf.math.unsorted_segment_sum(tf.reshape(weight, [-1]), tf.reshape(head_row, [-1]),
                                           num_rows)
        den = tf.reshape(den, tf.shape(context)[:3])
        return tf.cast((context + num) / (1.0 + den[..., None]), self.compute_dtype)

    def _mix(self, alpha, rows):
        """Weights [B, h, M, L] times rows ([B, h, L, c] or [B, L, c]) -> [B, h, M, c]."""
        alpha = tf.cast(alpha, self.compute_dtype)
        if rows.shape.rank == 4:
            return tf.matmul(alpha, rows)
        shape = tf.shape(alpha)
        heads_rows = tf.reshape(alpha, [shape[0], shape[1] * shape[2], shape[3]])
        out = tf.matmul(heads_rows, rows)                                    # [B, h M, c]
        return tf.reshape(out, [shape[0], shape[1], shape[2], rows.shape[-1]])

    def _softmax(self, scores, history_mask, training=None):
        """[B, h, M, L] scores -> float32 weights; rows of empty histories are left
        uniform (no score-sized zeroing pass): `_has_history` zeroes their outputs.
        Outside training, a batch without padded positions (one serving request is
        padded to its own length) skips the masking pass."""
        sink = None if self.sink_logit is None else self.sink_logit[None, :, None]

        def masked():
            return masked_softmax(scores, history_mask[:, None, None, :], sink=sink,
                                  zero_empty_rows=False)
        if training:  # training batches are padded; no branch in the training graph
            return masked()
        return tf.cond(tf.reduce_all(history_mask),
                       lambda: masked_softmax(scores, None, sink=sink), masked)

    def _has_history(self, history_mask):
        """[B, 1, 1, 1] 1 / 0 in the compute dtype: does the request have a valid event."""
        has = tf.reduce_any(history_mask, axis=-1)[:, None, None, None]
        return tf.cast(has, self.compute_dtype)

    def _projected(self, history_view, queries, history_mask, id_match, age_bucket, training):
        keys, values = self.project_history(history_view)
        return self.attend_projected(keys, values, queries, history_mask, id_match,
                                     age_bucket, training)

    def _reordered(self, history_view, queries, history_mask, id_match, age_bucket, training):
        d, h, k = self.d_model, self.num_heads, self.head_dim
        view = tf.cast(history_view, self.compute_dtype)
        queries = tf.cast(queries, self.compute_dtype)
        batch, targets = tf.shape(queries)[0], tf.shape(queries)[1]
        length = tf.shape(view)[1]
        q = tf.reshape(tf.matmul(queries, self.query_kernel), [batch, targets, h, k])
        # Head-major rows (h * M), the layout of the projected form's scores and of the
        # ID-match bias. The 1/sqrt(d_h) scale goes on u, not on the [B, h*M, L] scores.
        u = tf.einsum("bmhk,ehk->bhme", q, tf.reshape(self.key_kernel, [d, h, k]))
        u = tf.reshape(u * (1.0 / math.sqrt(k)), [batch, h * targets, d])
        scores = tf.reshape(tf.matmul(u, view, transpose_b=True),
                            [batch, h, targets, length])                  # [B, h, M, L]
        context = self._attend(scores, view, history_mask, id_match, age_bucket, training)
        context = context * self._has_history(history_mask)                  # [B, h, M, d]
        heads = tf.einsum("bhme,ehk->bmhk", context, tf.reshape(self.value_kernel, [d, h, k]))
        return tf.matmul(tf.reshape(heads, [batch, targets, d]), self.output_kernel)

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "num_heads": self.num_heads,
                "num_match_fields": self.num_match_fields,
                "match_bias_init": self.match_bias_init, "attention_sink": self.attention_sink,
                "attention_form": self.attention_form, "recency_buckets": self.recency_buckets,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}
