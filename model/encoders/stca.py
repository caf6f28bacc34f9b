"""STCA: stacked target-to-history cross attention (arXiv 2511.06077)."""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from model.encoders.base import SequenceEncoder
from model.flops import stca_attention_flops, stca_attention_form, swiglu_flops
from model.layers.common import check_heads_divide, check_positive, unstack_axis1
from model.layers.history_view import HistoryView
from model.layers.id_match import MatchPairs
from model.layers.stca_attention import STCAAttention
from model.layers.token_fusion import TokenFusion
from model.recompute import recompute
from model.registry import register_encoder

# The serving cache: every layer's projected keys and values, [B, N, h, L, d_h] each.
HISTORY_KEYS = "history_keys"
HISTORY_VALUES = "history_values"


def _as_float(id_match):
    """Every layer reads the matches: cast dense ones once ([B, F, M, L] bool -> float32);
    `MatchPairs` pass as they are."""
    if id_match is None or isinstance(id_match, MatchPairs):
        return id_match
    return tf.cast(id_match, tf.float32)


def stca_flops(cfg, L: int, m: int = 1) -> tuple[int, int]:
    """(user, per-target) forward FLOPs of the encoder (model/flops.py has the formulas)."""
    d, h, n, f = cfg.d_model, cfg.num_heads, cfg.num_layers, cfg.ffn_mult
    attention = stca_attention_flops(stca_attention_form(cfg, m), L, d, h, m)
    user = n * (swiglu_flops(L, d, d, f * d) + attention["user"])
    per_target = 0
    for i in range(1, n + 1):
        fusion = (2 * i * d * d if i > 1 else 0) + swiglu_flops(1, d, d, f * d)
        per_target += fusion + attention["per_target"]
    per_target += 2 * (n + 1) * d * d + swiglu_flops(1, d, d, f * d)  # output token
    return user, per_target


@register_encoder("stca", flops=stca_flops)
@keras.utils.register_keras_serializable(package="stca")
class STCAEncoder(SequenceEncoder):
    """N layers of target-to-history cross attention over per-layer history views.

        X~(i) = LN(SwiGLU_i(X))                                   user side, per layer
        q(1) = LN(SwiGLU(x_t)),  q(i) = LN(SwiGLU([o(1)..o(i-1); x_t] W_C))
        o(i) = STCAAttention_i(X~(i), q(i) [, ID matches])        per target
        z = SwiGLU([o(1)..o(N); x_t] W_Z)

    History tokens are never updated by attention, so all X~(i) are computed once per
    request and the m targets of the request attend to them with batched matmuls, in the
    cheaper of the two attention forms (`STCAAttention`, `model.flops`): cost per request
    N * 12 L d^2 (views) + m * N * 4 L d h (reordered, few targets) or
    N * 16 L d^2 + m * N * 4 L d (projected K / V, many targets). `encode_user` caches the
    projected K / V of every layer ([B, N, h, L, d_h] each), so a cached user costs
    m * N * 4 L d in attention whatever m is.

    Args:
      d_model: width d. num_heads: attention heads. num_layers: N.
      ffn_mult: SwiGLU inner width multiplier.
      recompute: in `call` (training), recompute each layer's view + attention in the
        backward pass instead of keeping its [B, L, d]-sized activations.
      num_match_fields: F ID fields of the ID-match attention prior (0: off); see
        `STCAAttention`. match_bias_init: its initial logit bonus.
      attention_sink: a learned sink logit per head and layer (`STCAAttention`).
      attention_form: "auto" (cheaper form for the call's number of targets),
        "reordered" or "projected"; `score` always reads projected K / V.
      recency_buckets: A > 0 adds a learned logit per (age bucket, head) in every layer
        (`STCAAttention`, model.recency=attention); call and score then take age_bucket.

    Inputs of `call`: events [B, L, d], history_mask [B, L] bool, targets [B, M, d],
    id_match [B, F, M, L] bool or `MatchPairs` when num_match_fields > 0, and
    age_bucket [B, L] int in [0, A) when recency_buckets > 0 (also inputs of `score`).
    Output: z [B, M, d].

    Example:
        enc = STCAEncoder(64, num_heads=4, num_layers=3)
        z = enc(events, history_mask, targets)
        z_serving = enc.score({**enc.encode_user(events, history_mask), "hist_len": n}, targets)
    """

    supports_recompute = True
    supports_id_match = True
    supports_match_pairs = True
    supports_recency_bias = True

    @classmethod
    def from_model_config(cls, model_cfg, num_user_tokens: int = 0, **kwargs):
        return cls(model_cfg.d_model, model_cfg.num_heads, model_cfg.num_layers,
                   model_cfg.ffn_mult, recompute=model_cfg.recompute,
                   num_match_fields=len(model_cfg.id_match),
                   match_bias_init=model_cfg.id_match_init,
                   attention_sink=model_cfg.attention_sink,
                   attention_form=model_cfg.attention_form,
                   recency_buckets=model_cfg.time_buckets if model_cfg.recency == "attention"
                   else 0, **kwargs)

    def __init__(self, d_model: int, num_heads: int = 4, num_layers: int = 3,
                 ffn_mult: int = 2, recompute: bool = False, num_match_fields: int = 0,
                 match_bias_init: float = 8.0, attention_sink: bool = False,
                 attention_form: str = "auto", recency_buckets: int = 0, **kwargs):
        super().__init__(d_model, **kwargs)
        check_positive(num_heads=num_heads, num_layers=num_layers, ffn_mult=ffn_mult)
        check_heads_divide(d_model, num_heads)
        if num_match_fields < 0:
            raise ValueError(f"num_match_fields must be >= 0, got {num_match_fields}")
        self.num_heads = num_heads
        self.num_layers = num_layers
        self.ffn_mult = ffn_mult
        self.recompute = bool(recompute)
        self.num_match_fields = int(num_match_fields)
        self.match_bias_init = float(match_bias_init)
        self.attention_sink = bool(attention_sink)
        self.attention_form = attention_form
        self.recency_buckets = int(recency_buckets)

    def build(self, input_shape=None):
        d, n, policy = self.d_model, self.num_layers, self.dtype_policy
        token = (None, None, d)
        self.views = [HistoryView(d, self.ffn_mult, dtype=policy, name=f"view_{i}")
                      for i in range(n)]
        self.queries = [TokenFusion(d, i + 1, self.ffn_mult, normalize=True, dtype=policy,
                                    name=f"query_{i}") for i in range(n)]
        self.attentions = [STCAAttention(d, self.num_heads, self.num_match_fields,
                                         self.match_bias_init, self.attention_sink,
                                         self.attention_form, self.recency_buckets,
                                         dtype=policy,
                                         name=f"attention_{i}")
                           for i in range(n)]
        self.output_token = TokenFusion(d, n + 1, self.ffn_mult, normalize=False,
                                        dtype=policy, name="output_token")
        # Everything is built here: recomputation must not create variables.
        for i in range(n):
            self.views[i].build(token)
            self.queries[i].build([token] * (i + 1))
            self.attentions[i].build(token)
        self.output_token.build([token] * (n + 1))
        super().build(input_shape)

    def _layer_block(self, i, history_mask, id_match, age_bucket, training):
        """(events, queries) -> o(i); the unit that recomputation wraps."""
        def block(events, queries):
            return self.attentions[i](self.views[i](events), queries, history_mask,
                                      id_match=id_match, age_bucket=age_bucket,
                                      training=training)
        return recompute(block) if self.recompute else block

    def call(self, events, history_mask, targets, user_tokens=None, training=None,
             id_match=None, age_bucket=None):
        # View and attention are interleaved per layer so a layer's activations can be
        # dropped (recompute) before the next layer runs.
        events = tf.cast(events, self.compute_dtype)
        id_match = _as_float(id_match)
        outputs = []
        for i in range(self.num_layers):
            queries = self.queries[i](outputs + [targets])
            block = self._layer_block(i, history_mask, id_match, age_bucket, training)
            outputs.append(block(events, queries))
        return self.output_token(outputs + [targets])

    def encode_user(self, events, history_mask, user_tokens=None, training=None):
        events = tf.cast(events, self.compute_dtype)
        keys, values = zip(*(attention.project_history(view(events))
                             for view, attention in zip(self.views, self.attentions)))
        return {HISTORY_KEYS: tf.stack(keys, axis=1), HISTORY_VALUES: tf.stack(values, axis=1)}

    def score(self, cache, targets, training=None, id_match=None, age_bucket=None):
        keys = self.cast_cache(cache[HISTORY_KEYS])
        values = self.cast_cache(cache[HISTORY_VALUES])
        history_mask = self.history_mask(cache, tf.shape(keys)[3])
        id_match = _as_float(id_match)
        keys, values = (unstack_axis1(x, self.num_layers) for x in (keys, values))
        outputs = []
        for i in range(self.num_layers):
            queries = self.queries[i](outputs + [targets])
            outputs.append(self.attentions[i].attend_projected(
                keys[i], values[i], queries, history_mask, id_match=id_match,
                age_bucket=age_bucket, training=training))
        return self.output_token(outputs + [targets])

    def cache_spec(self):
        shape = [None, self.num_layers, self.num_heads, None, self.d_model // self.num_heads]
        return {name: tf.TensorSpec(shape, self.compute_dtype, name=name)
                for name in (HISTORY_KEYS, HISTORY_VALUES)}

    def cache_length_axes(self):
        return {HISTORY_KEYS: 3, HISTORY_VALUES: 3}   # [B, N, h, L, d_h]

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads,
                "num_layers": self.num_layers, "ffn_mult": self.ffn_mult,
                "recompute": self.recompute, "num_match_fields": self.num_match_fields,
                "match_bias_init": self.match_bias_init, "attention_sink": self.attention_sink,
                "attention_form": self.attention_form, "recency_buckets": self.recency_buckets}
