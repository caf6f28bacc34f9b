import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401
from model.encoders.longer import hybrid_mask
from model.layers.longer_attention import LongerAttention
from tests.helpers.layers import REFERENCE_ATOL, REORDER_ATOL, assert_config_round_trip


def _layer_norm(x, norm):
    gamma, beta = (w.numpy().astype(np.float64) for w in (norm.gamma, norm.beta))
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + norm.epsilon) * gamma + beta


def _swiglu(x, ffn):
    up, gate = np.split(x @ ffn.up_gate.kernel.numpy().astype(np.float64), 2, axis=-1)
    return (up * gate / (1.0 + np.exp(-gate))) @ ffn.down.kernel.numpy().astype(np.float64)


def naive_layer(layer, queries, key_tokens, mask):
    """Textbook pre-norm attention + FFN in float64: explicit Q, K, V, full masked softmax."""
    w = {n: getattr(layer, n).kernel.numpy().astype(np.float64)
         for n in ("query", "key_value", "out")}
    q_in, kv_in = queries.astype(np.float64), key_tokens.astype(np.float64)
    h, dh = layer.num_heads, layer.head_dim
    b, nq, d = q_in.shape
    q = (_layer_norm(q_in, layer.attn_norm) @ w["query"]).reshape(b, nq, h, dh)
    kv = _layer_norm(kv_in, layer.attn_norm) @ w["key_value"]
    k = kv[..., :d].reshape(b, -1, h, dh)
    v = kv[..., d:].reshape(b, -1, h, dh)
    scores = np.einsum("bqhe,bshe->bhqs", q, k) / np.sqrt(dh)
    allowed = np.broadcast_to(mask[:, None], scores.shape)
    scores = np.where(allowed, scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    context = np.einsum("bhqs,bshe->bqhe", weights, v).reshape(b, nq, d)
    x = q_in + context @ w["out"]
    return x + _swiglu(_layer_norm(x, layer.ffn_norm), layer.ffn)


def rule_mask(batch_valid, num_candidates, num_globals, num_recent):
    """The LONGER mask written out rule by rule (independent of hybrid_mask)."""
    batch, length = batch_valid.shape
    kinds_q = ["c"] * num_candidates + ["g"] * num_globals + ["s"] * num_recent
    kinds_k = ["c"] * num_candidates + ["g"] * num_globals + ["s"] * length
    mask = np.zeros((batch, len(kinds_q), len(kinds_k)), bool)
    for b in range(batch):
        for i, kq in enumerate(kinds_q):
            for j, kk in enumerate(kinds_k):
                if kk == "c":      # a candidate is seen only by itself
                    mask[b, i, j] = kq == "c" and i == j
                elif kk == "g":    # global tokens are seen by everyone
                    mask[b, i, j] = True
                else:              # sequence key of rank r_k
                    r_k = j - num_candidates - num_globals
                    ok = batch_valid[b, r_k]
                    if kq == "s":  # causal: a sequence token sees itself and older ones
                        ok = ok and r_k >= i - num_candidates - num_globals
                    mask[b, i, j] = ok
    return mask


@pytest.mark.parametrize("candidates,globals_,recent,length", [(3, 3, 2, 9), (1, 1, 0, 4),
                                                               (4, 2, 5, 5)])
def test_hybrid_mask_follows_the_rules(candidates, globals_, recent, length):
    valid = np.arange(length)[None, :] < np.array([[length], [2], [0]])
    mask = hybrid_mask(candidates, globals_, tf.constant(valid), recent).numpy()
    np.testing.assert_array_equal(mask, rule_mask(valid, candidates, globals_, recent))
    assert mask.any(-1).all()  # no empty softmax row


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_layer_1_cross_attention_matches_naive_attention(heads):
    """Layer 1: queries [candidates; globals; k recent], keys [candidates; globals; all
    merged tokens], LONGER mask; against explicit Q/K/V with a full masked softmax."""
    rng = np.random.default_rng(heads)
    b, m, p0, k, g, d = 3, 4, 3, 2, 7, 8
    cands, glob, merged = (rng.normal(size=(b, n, d)).astype(np.float32) for n in (m, p0, g))
    valid = np.arange(g)[None, :] < np.array([[g], [3], [0]])   # full, partial, empty
    key_tokens = np.concatenate([cands, glob, merged], axis=1)
    queries = np.concatenate([cands, glob, merged[:, :k]], axis=1)
    mask = rule_mask(valid, m, p0, k)
    layer = LongerAttention(d, heads)
    out = layer(tf.constant(queries), tf.constant(key_tokens), tf.constant(mask)).numpy()
    np.testing.assert_allclose(out, naive_layer(layer, queries, key_tokens, mask),
                               atol=REFERENCE_ATOL)

    # The cached split: non-candidates against [globals; merged] only, candidates against
    # the same cached keys plus their own key (self_attend) give the same rows.
    keys, values = layer.project(np.concatenate([glob, merged], axis=1))
    others = layer.attend(queries[:, m:], keys, values, mask[:, m:, m:]).numpy()
    np.testing.assert_allclose(others, out[:, m:], atol=REORDER_ATOL)
    cand_mask = np.concatenate([np.ones((b, p0), bool), valid], axis=1)[:, None]
    served = layer.attend(cands, keys, values, cand_mask, self_attend=True).numpy()
    np.testing.assert_allclose(served, out[:, :m], atol=REORDER_ATOL)


def test_masked_keys_have_no_influence():
    rng = np.random.default_rng(5)
    queries = rng.normal(size=(2, 3, 8)).astype(np.float32)
    tokens = rng.normal(size=(2, 6, 8)).astype(np.float32)
    mask = np.ones((2, 3, 6), bool)
    mask[:, :, 4:] = False
    layer = LongerAttention(8, 2)
    base = layer(queries, tokens, mask).numpy()
    noisy = tokens.copy()
    noisy[:, 4:] = 1e3 * rng.normal(size=(2, 2, 8))
    np.testing.assert_array_equal(layer(queries, noisy, mask).numpy(), base)


def test_round_trip_and_argument_checks():
    mask = tf.constant([[[True, False]]])
    assert_config_round_trip(LongerAttention(4, 2), tf.ones([1, 1, 4]), tf.ones([1, 2, 4]),
                             mask)
    with pytest.raises(ValueError, match="must divide"):
        LongerAttention(6, 4)
    with pytest.raises(ValueError, match="ffn_mult"):
        LongerAttention(4, 2, ffn_mult=0)
