"""LONGER: token merge + hybrid attention with global tokens (arXiv 2505.04421)."""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from model.encoders.base import HIST_LEN, SequenceEncoder
from model.flops import swiglu_flops
from model.layers.common import check_heads_divide, check_positive, unstack_axis1
from model.layers.id_match import match_bias
from model.layers.longer_attention import LongerAttention
from model.layers.masking import length_mask
from model.layers.token_merge import TokenMerge
from model.recompute import recompute
from model.registry import register_encoder

SEQUENCE_KV = "sequence_kv"   # [B, 2, P0 + G, d]: layer-1 keys / values of [global; merged]
SHORT_KV = "short_kv"         # [B, N, 2, P0 + k, d]: keys / values of the short set, per layer


def hybrid_mask(num_candidates, num_globals: int, sequence_valid, num_recent: int):
    """Who may attend to whom in one LONGER layer: bool [B, M + P0 + R, M + P0 + S].

    Rows (queries): M candidates, P0 global tokens, R sequence tokens of recency rank
    0..R-1 (0 = most recent). Columns (keys): the same M candidates and P0 global tokens,
    then S sequence tokens of rank 0..S-1 with validity `sequence_valid` [B, S]
    (the R query tokens are the first R of them).

      candidate c -> itself, every global token, every valid sequence token
      global      -> every global token, every valid sequence token (never a candidate)
      sequence r  -> every global token, valid sequence tokens of rank j >= r (itself and
                     older: causal), never a candidate

    So nothing but a candidate's own output depends on that candidate. Every row has a
    valid key (the globals; P0 >= 1), so no softmax row is empty.
    """
    valid = tf.cast(sequence_valid, tf.bool)
    batch, length = tf.shape(valid)[0], tf.shape(valid)[1]
    rows = num_candidates + num_globals + num_recent

    def full(block, height):
        return tf.broadcast_to(block, [batch, height, tf.shape(block)[-1]])

    candidate_cols = tf.concat([tf.eye(num_candidates, dtype=tf.bool),
                                tf.zeros([num_globals + num_recent, num_candidates], tf.bool)],
                               axis=0)
    causal = tf.range(length)[None, :] >= tf.range(num_recent)[:, None]     # [R, S]
    sequence_rule = tf.concat([tf.ones([num_candidates + num_globals, length], tf.bool),
                               causal], axis=0)                              # [rows, S]
    return tf.concat([full(candidate_cols, rows),
                      tf.ones([batch, rows, num_globals], tf.bool),
                      valid[:, None, :] & sequence_rule[None]], axis=-1)


def longer_flops(cfg, L: int, m: int = 1) -> tuple[int, int]:
    """(user, per-target) forward FLOPs of the encoder (model/flops.py has the formulas)."""
    d, f, lc = cfg.d_model, cfg.ffn_mult, cfg.longer
    K, k, n = lc.merge_k, lc.recent_k, lc.self_attn_layers
    groups = max(-(-L // K), k)
    p0 = 1 + (2 if cfg.use_user_id else 1)  # CLS + UserTokens.num_tokens
    p = p0 + k

    def layer(keys: int) -> int:  # one query token: W_Q, W_O, attention over keys, FFN
        return 4 * d * d + 4 * keys * d + swiglu_flops(1, d, d, f * d)

    user = 0
    if K > 1:
        user += 2 * groups * K * d * d
        if lc.merge_mode == "innertrans":
            user += groups * K * (8 * d * d + 4 * K * d) + swiglu_flops(groups * K, d, d, f * d)
    user += 4 * (p0 + groups) * d * d + p * layer(p0 + groups)
    user += n * 4 * p * d * d + (n - 1) * p * layer(p)
    per_target = (n + 1) * 4 * d * d + layer(p0 + groups + 1) + n * layer(p + 1)
    return user, per_target


@register_encoder("longer", flops=longer_flops)
@keras.utils.register_keras_serializable(package="stca")
class LongerEncoder(SequenceEncoder):
    """LONGER over the shared event embedding, behind the SequenceEncoder interface.

    Tokens: global tokens g = [CLS; user tokens] (P0 = 1 + U, target-independent), the
    candidate x_t (a global token of its own), and the merged sequence
    s = TokenMerge(X) (G = ceil(L / K) tokens, padded with invalid tokens to >= k).

        layer 1   queries [x_t; g; s_0..s_k-1], keys / values [x_t; g; s_0..s_G-1]
        layer i   queries = keys = [x_t; g; r] (r: the k recent tokens after layer i-1),
                  i = 2 .. N + 1, each LongerAttention = attention + SwiGLU FFN
        z         = LN(x_t after layer N + 1)

    with the masks of `hybrid_mask`: candidates see all non-candidate tokens and
    themselves; global and sequence tokens never see a candidate (sequence tokens see the
    globals and, causally, themselves and older tokens). So the keys / values of every
    non-candidate token at every layer depend on the user only: `encode_user` computes
    them once per request (cache below) and `score` runs only the candidate's path, a
    query against the cached keys / values plus its own, at O((P0 + G) d) in layer 1 and
    O((P0 + k) d) after. `call` (training) runs the same layers jointly over
    [candidates; non-candidates] of a request with the full mask (the M candidates share
    the request's work: RLB); `call == score(encode_user)` is tested.

    No absolute positions: order inside a group is the concatenation order, the recent k
    are picked by rank from the most recent event (relative to the request), the causal
    mask orders them, and every event embedding carries its age bucket.

    Cache: SEQUENCE_KV [B, 2, P0 + G, d] (layer-1 keys / values of [g; s]) and SHORT_KV
    [B, N, 2, P0 + k, d] (keys / values of the short set at the input of layers 2..N+1).

    Args:
      d_model: width d. num_heads: heads h (must divide d_model).
      merge_k: K events per merged token (1: no merging). merge_mode: concat | innertrans.
      recent_k: k most recent merged tokens used as queries. self_attn_layers: N >= 1.
      ffn_mult: SwiGLU inner width multiplier.
      num_user_tokens: U, the number of user tokens `encode_user` / `call` receive (0:
        none; then the CLS token is the only non-candidate global token).
      recompute: in `call` (training), recompute the merge + layer 1 (everything holding
        [B, L, .] activations) in the backward pass.
      num_match_fields: F ID fields of the ID-match prior (0: off). In layer 1 a
        candidate's logit for a merged token gets a learned bonus beta_f,h (initialised to
        match_bias_init) when any of the token's K events has the candidate's ID f, as in
        STCA (docs/model.md, "Deviations from the paper").

    Inputs of `call`: events [B, L, d], history_mask [B, L] bool, targets [B, M, d],
    user_tokens [B, U, d] (keyword). Output: z [B, M, d].

    Example:
        enc = LongerEncoder(64, 4, merge_k=4, recent_k=32, num_user_tokens=2)
        z = enc(events, history_mask, targets, user_tokens=user_tokens)
        cache = enc.encode_user(events, history_mask, user_tokens=user_tokens)
        z_serving = enc.score({**cache, "hist_len": n}, targets)
    """

    supports_recompute = True
    supports_id_match = True
    cache_uses_user_tokens = True

    @classmethod
    def from_model_config(cls, model_cfg, num_user_tokens: int = 0, **kwargs):
        cfg = model_cfg.longer
        return cls(model_cfg.d_model, model_cfg.num_heads, merge_k=cfg.merge_k,
                   merge_mode=cfg.merge_mode, recent_k=cfg.recent_k,
                   self_attn_layers=cfg.self_attn_layers, ffn_mult=model_cfg.ffn_mult,
                   num_user_tokens=num_user_tokens, recompute=model_cfg.recompute,
                   num_match_fields=len(model_cfg.id_match),
                   match_bias_init=model_cfg.id_match_init, **kwargs)

    def __init__(self, d_model: int, num_heads: int = 4, merge_k: int = 4,
                 merge_mode: str = "concat", recent_k: int = 32, self_attn_layers: int = 2,
                 ffn_mult: int = 2, num_user_tokens: int = 0, recompute: bool = False,
                 num_match_fields: int = 0, match_bias_init: float = 8.0, **kwargs):
        super().__init__(d_model, **kwargs)
        check_positive(num_heads=num_heads, merge_k=merge_k, self_attn_layers=self_attn_layers,
                       ffn_mult=ffn_mult)
        check_heads_divide(d_model, num_heads)
        if recent_k < 0 or num_user_tokens < 0:
            raise ValueError(f"recent_k and num_user_tokens must be >= 0, got {recent_k}, "
                             f"{num_user_tokens}")
        self.num_heads = num_heads
        self.merge_k = merge_k
        self.merge_mode = merge_mode
        self.recent_k = recent_k
        self.self_attn_layers = self_attn_layers
        self.ffn_mult = ffn_mult
        self.num_user_tokens = num_user_tokens
        self.recompute = bool(recompute)
        if num_match_fields < 0:
            raise ValueError(f"num_match_fields must be >= 0, got {num_match_fields}")
        self.num_match_fields = int(num_match_fields)
        self.match_bias_init = float(match_bias_init)

    @property
    def num_globals(self) -> int:
        """P0: the non-candidate global tokens, CLS and the user tokens."""
        return 1 + self.num_user_tokens

    def build(self, input_shape=None):
        d, policy, token = self.d_model, self.dtype_policy, (None, None, self.d_model)
        self.cls_token = self.add_weight(
            name="cls_token", shape=(d,), trainable=True,
            initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        self.merge = TokenMerge(d, self.merge_k, self.merge_mode, self.num_heads,
                                self.ffn_mult, dtype=policy, name="token_merge")
        self.attention_layers = [
            LongerAttention(d, self.num_heads, self.ffn_mult, dtype=policy, name=f"layer_{i}")
            for i in range(1 + self.self_attn_layers)]
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, dtype=policy, name="norm")
        self.match_bias = None
        if self.num_match_fields:  # float32 like the softmax it feeds
            self.match_bias = self.add_weight(
                name="match_bias", shape=(self.num_match_fields, self.num_heads),
                initializer=keras.initializers.Constant(self.match_bias_init), trainable=True,
                dtype=tf.float32, experimental_autocast=False)
        # Everything is built here: recomputation must not create variables.
        self.merge.build(token)
        for layer in self.attention_layers:
            layer.build(token)
        self.norm.build(token)
        super().build(input_shape)

    # ------------------------------------------------------------ shared pieces
    def _globals(self, user_tokens, batch):
        """[CLS; user tokens] -> [B, P0, d]."""
        cls = tf.cast(self.cls_token, self.compute_dtype)
        tokens = [tf.broadcast_to(cls, [batch, 1, self.d_model])]
        if self.num_user_tokens:
            if user_tokens is None:
                raise ValueError(f"{self.name} was built for {self.num_user_tokens} user "
                                 "tokens; pass user_tokens=[B, U, d]")
            if user_tokens.shape[1] not in (None, self.num_user_tokens):
                raise ValueError(f"user_tokens has {user_tokens.shape[1]} tokens, expected "
                                 f"{self.num_user_tokens}")
            tokens.append(tf.cast(user_tokens, self.compute_dtype))
        elif user_tokens is not None:
            raise ValueError(f"{self.name} was built with num_user_tokens=0 but got "
                             "user_tokens; build it with num_user_tokens=U")
        return tf.concat(tokens, axis=1)

    def _pad_groups(self, x):
        """Pads the merged axis (1) with zeros / False to at least k tokens."""
        pad = tf.maximum(self.recent_k - tf.shape(x)[1], 0)
        return tf.pad(x, [[0, 0], [0, pad]] + [[0, 0]] * (x.shape.rank - 2))

    def _sequence(self, events, history_mask):
        """Merged tokens [B, G', d] and their validity [B, G'], G' = max(G, k)."""
        merged, valid = self.merge(events, history_mask)
        return self._pad_groups(merged), self._pad_groups(valid)

    def _sequence_valid(self, history_mask):
        return self._pad_groups(self.merge.group_mask(history_mask))

    def _match_bias(self, id_match):
        """[B, F, M, L] bool -> [B, h, M, G'] float32: beta_f,h summed over the fields in
        which any event of a merged token matches the candidate (0 without the prior)."""
        if self.match_bias is None:
            return None
        if id_match is None:
            raise ValueError(f"{self.name}: built with num_match_fields="
                             f"{self.num_match_fields}, so id_match is required")
        k = self.merge_k
        match = tf.cast(id_match, tf.bool)
        pad = (-tf.shape(match)[-1]) % k
        match = tf.pad(match, [[0, 0], [0, 0], [0, 0], [0, pad]])
        s = tf.shape(match)
        match = tf.reduce_any(tf.reshape(match, [s[0], s[1], s[2], -1, k]), axis=-1)
        extra = tf.maximum(self.recent_k - tf.shape(match)[-1], 0)         # G' = max(G, k)
        match = tf.pad(match, [[0, 0], [0, 0], [0, 0], [0, extra]])
        return match_bias(match, self.match_bias)                          # [B, h, M, G']

    # ------------------------------------------------------------ training: joint pass
    def call(self, events, history_mask, targets, user_tokens=None, training=None,
             id_match=None):
        events = tf.cast(events, self.compute_dtype)
        targets = tf.cast(targets, self.compute_dtype)
        globals_ = self._globals(user_tokens, tf.shape(events)[0])
        m, p0, k = tf.shape(targets)[1], self.num_globals, self.recent_k
        sequence_valid = self._sequence_valid(history_mask)
        first_mask = hybrid_mask(m, p0, sequence_valid, k)
        short_mask = hybrid_mask(m, p0, sequence_valid[:, :k], k)

        def layer_1(events, globals_, targets):
            """The sequence block: merge + layer 1 -> [candidates; g; recent] tokens."""
            merged, _ = self._sequence(events, history_mask)
            first = self.attention_layers[0]
            keys, values = first.project(tf.concat([targets, globals_, merged], axis=1))
            queries = tf.concat([targets, globals_, merged[:, :k]], axis=1)
            bias = self._match_bias(id_match)  # candidate rows x merged-token columns
            if bias is not None:
                bias = tf.pad(bias, [[0, 0], [0, 0], [0, p0 + k], [m + p0, 0]])
            return first.attend(queries, keys, values, first_mask, bias=bias)

        tokens = (recompute(layer_1) if self.recompute else layer_1)(events, globals_, targets)
        for i, layer in enumerate(self.attention_layers[1:]):
            keys, values = layer.project(tokens)
            if i + 1 == self.self_attn_layers:  # last layer: only the candidates are read
                tokens = layer.attend(tokens[:, :m], keys, values, short_mask[:, :m])
            else:
                tokens = layer.attend(tokens, keys, values, short_mask)
        return self.norm(tokens[:, :m])

    # ------------------------------------------------------------ serving: cached split
    def encode_user(self, events, history_mask, user_tokens=None, training=None):
        events = tf.cast(events, self.compute_dtype)
        globals_ = self._globals(user_tokens, tf.shape(events)[0])
        p0, k = self.num_globals, self.recent_k
        merged, sequence_valid = self._sequence(events, history_mask)
        first = self.attention_layers[0]
        keys, values = first.project(tf.concat([globals_, merged], axis=1))
        sequence_kv = tf.stack([keys, values], axis=1)
        short = first.attend(tf.concat([globals_, merged[:, :k]], axis=1), keys, values,
                             hybrid_mask(0, p0, sequence_valid, k))
        short_mask = hybrid_mask(0, p0, sequence_valid[:, :k], k)
        short_kv = []
        for i, layer in enumerate(self.attention_layers[1:]):
            keys, values = layer.project(short)
            short_kv.append(tf.stack([keys, values], axis=1))
            if i + 1 < self.self_attn_layers:
                short = layer.attend(short, keys, values, short_mask)
        return {SEQUENCE_KV: sequence_kv, SHORT_KV: tf.stack(short_kv, axis=1)}

    def score(self, cache, targets, training=None, id_match=None):
        sequence_kv = self.cast_cache(cache[SEQUENCE_KV])
        short_kv = self.cast_cache(cache[SHORT_KV])
        p0, k = self.num_globals, self.recent_k
        batch, groups = tf.shape(sequence_kv)[0], tf.shape(sequence_kv)[2] - p0
        valid_groups = (tf.cast(cache[HIST_LEN], tf.int32) + self.merge_k - 1) // self.merge_k
        sequence_valid = length_mask(valid_groups, groups)
        always = tf.ones([batch, p0], tf.bool)
        masks = [tf.concat([always, sequence_valid], 1)[:, None],
                 tf.concat([always, sequence_valid[:, :k]], 1)[:, None]]
        bias = self._match_bias(id_match)
        if bias is not None:  # no bonus for the global tokens' columns
            bias = tf.pad(bias, [[0, 0], [0, 0], [0, 0], [p0, 0]])
        sequence_keys, sequence_values = unstack_axis1(sequence_kv, 2)
        x = self.attention_layers[0].attend(targets, sequence_keys, sequence_values,
                                            masks[0], self_attend=True, bias=bias)
        for i, layer in enumerate(self.attention_layers[1:]):
            x = layer.attend(x, short_kv[:, i, 0], short_kv[:, i, 1], masks[1],
                             self_attend=True)
        return self.norm(x)

    def cache_spec(self):
        d, dtype = self.d_model, self.compute_dtype
        short = self.num_globals + self.recent_k
        return {SEQUENCE_KV: tf.TensorSpec([None, 2, None, d], dtype, name=SEQUENCE_KV),
                SHORT_KV: tf.TensorSpec([None, self.self_attn_layers, 2, short, d], dtype,
                                        name=SHORT_KV)}

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "merge_k": self.merge_k,
                "merge_mode": self.merge_mode, "recent_k": self.recent_k,
                "self_attn_layers": self.self_attn_layers, "ffn_mult": self.ffn_mult,
                "num_match_fields": self.num_match_fields,
                "match_bias_init": self.match_bias_init,
                "num_user_tokens": self.num_user_tokens, "recompute": self.recompute}
