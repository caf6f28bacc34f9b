import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401
from model.layers.stca_attention import STCAAttention
from layer_checks import REFERENCE_ATOL, REORDER_ATOL, SAME_PATH_ATOL, assert_config_round_trip


def naive_attention(layer, view, queries, mask, match=None):
    """Textbook multi-head attention with explicit [L, d] K / V projections (float64),
    plus the ID-match logit bonus and the sink when the layer has them."""
    w_q, w_k, w_v, w_o = (w.numpy().astype(np.float64) for w in (
        layer.query_kernel, layer.key_kernel, layer.value_kernel, layer.output_kernel))
    x, q = view.astype(np.float64), queries.astype(np.float64)
    h, dh = layer.num_heads, layer.head_dim
    batch, length, _ = x.shape
    keys = (x @ w_k).reshape(batch, length, h, dh)
    values = (x @ w_v).reshape(batch, length, h, dh)
    query = (q @ w_q).reshape(batch, q.shape[1], h, dh)
    scores = np.einsum("bmhk,blhk->bmhl", query, keys) / np.sqrt(dh)
    if match is not None:
        beta = layer.match_bias.numpy().astype(np.float64)                   # [F, h]
        scores = scores + np.einsum("bmfl,fh->bmhl", match.astype(np.float64), beta)
    valid = mask[:, None, None, :]
    scores = np.where(valid, scores, -np.inf)
    top = np.max(np.where(valid, scores, -1e300), axis=-1, keepdims=True)
    sink = None
    if layer.sink_logit is not None:
        sink = layer.sink_logit.numpy().astype(np.float64)[None, None, :, None]
        top = np.maximum(top, sink)
    weights = np.where(valid, np.exp(scores - top), 0.0)
    total = weights.sum(-1, keepdims=True) + (np.exp(sink - top) if sink is not None else 0)
    weights = weights / np.maximum(total, 1e-300)                            # empty rows -> 0
    heads = np.einsum("bmhl,blhk->bmhk", weights, values)
    return heads.reshape(batch, q.shape[1], h * dh) @ w_o


@pytest.mark.parametrize("length,targets,heads", [(1, 1, 1), (7, 3, 2), (33, 5, 4), (64, 2, 8)])
def test_matches_naive_kv_attention(length, targets, heads):
    rng = np.random.default_rng(length)
    d, batch = 16, 3
    view = rng.normal(size=(batch, length, d)).astype(np.float32)
    queries = rng.normal(size=(batch, targets, d)).astype(np.float32)
    lengths = np.array([length, max(length // 2, 1), 0])  # full, partial, empty history
    mask = np.arange(length)[None, :] < lengths[:, None]
    layer = STCAAttention(d, heads)
    out = layer(tf.constant(view), tf.constant(queries), tf.constant(mask)).numpy()
    np.testing.assert_allclose(out, naive_attention(layer, view, queries, mask),
                               atol=REFERENCE_ATOL)
    np.testing.assert_array_equal(out[2], np.zeros((targets, d)))  # empty history: zeros


@pytest.mark.parametrize("fields,sink", [(2, False), (0, True), (2, True), (1, True)])
def test_id_match_bonus_and_sink_match_the_naive_reference(fields, sink):
    rng = np.random.default_rng(fields + 10 * sink)
    d, heads, batch, length, targets = 16, 4, 3, 19, 5
    view = rng.normal(size=(batch, length, d)).astype(np.float32)
    queries = rng.normal(size=(batch, targets, d)).astype(np.float32)
    mask = np.arange(length)[None, :] < np.array([length, 6, 0])[:, None]
    match = rng.random((batch, targets, fields, length)) < 0.2
    layer = STCAAttention(d, heads, num_match_fields=fields, attention_sink=sink)
    layer.build(None)
    # Distinct values per field and head, so a swapped axis would show.
    if fields:
        layer.match_bias.assign(rng.normal(2.0, 1.0, size=(fields, heads)))
    if sink:
        layer.sink_logit.assign(rng.normal(size=heads))
    out = layer(view, queries, mask, id_match=match if fields else None).numpy()
    expected = naive_attention(layer, view, queries, mask, match if fields else None)
    np.testing.assert_allclose(out, expected, atol=REFERENCE_ATOL)
    np.testing.assert_array_equal(out[2], np.zeros((targets, d)))  # empty history: zeros


def test_id_match_bonus_moves_the_weight_onto_matching_events():
    """With no learned preference yet (zero query kernel: every score is 0), the bonus
    alone puts exp(b) / (3 exp(b) + 197 + 1) of the weight on each of 3 matching events
    out of 200 (the 1 is the sink at logit 0)."""
    rng = np.random.default_rng(3)
    layer = STCAAttention(16, 4, num_match_fields=1, match_bias_init=8.0, attention_sink=True)
    layer.build(None)
    layer.query_kernel.assign(np.zeros((16, 16)))
    layer.value_kernel.assign(np.eye(16))                  # o = alpha X~: read the weights
    layer.output_kernel.assign(np.eye(16))
    view = rng.normal(size=(1, 200, 16)).astype(np.float32)
    match = np.zeros((1, 1, 1, 200), bool)
    match[..., [7, 90, 150]] = True
    out = layer(view, rng.normal(size=(1, 1, 16)).astype(np.float32),
                np.ones((1, 200), bool), id_match=match).numpy()[0, 0]
    w_match = np.exp(8.0) / (3 * np.exp(8.0) + 197 + 1)
    w_other = 1.0 / (3 * np.exp(8.0) + 197 + 1)
    expected = w_match * view[0, [7, 90, 150]].sum(0) + w_other * (
        view[0].sum(0) - view[0, [7, 90, 150]].sum(0))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=SAME_PATH_ATOL)
    assert 3 * w_match > 0.97


def test_id_match_is_required_when_the_layer_has_match_fields():
    layer = STCAAttention(8, 2, num_match_fields=2)
    with pytest.raises(ValueError, match="id_match is required"):
        layer(tf.zeros([1, 3, 8]), tf.zeros([1, 2, 8]), tf.ones([1, 3], tf.bool))


def test_padding_and_other_targets_have_no_influence():
    rng = np.random.default_rng(1)
    view = rng.normal(size=(2, 9, 8)).astype(np.float32)
    queries = rng.normal(size=(2, 4, 8)).astype(np.float32)
    mask = np.arange(9)[None, :] < np.array([[5], [9]])
    layer = STCAAttention(8, 2)
    base = layer(view, queries, mask).numpy()
    noisy_view = view.copy()
    noisy_view[0, 5:] = 1e3 * rng.normal(size=(4, 8))
    np.testing.assert_array_equal(layer(noisy_view, queries, mask).numpy(), base)
    other = queries.copy()
    other[:, 1:] = rng.normal(size=(2, 3, 8))
    np.testing.assert_allclose(layer(view, other, mask).numpy()[:, 0], base[:, 0],
                               atol=REORDER_ATOL)


def test_no_key_value_projection_of_the_history_is_built():
    """The reordering trick: every [.., L, ..] intermediate has h*M rows, never width d."""
    layer = STCAAttention(16, 4)
    view, queries = tf.zeros([2, 50, 16]), tf.zeros([2, 3, 16])
    mask = tf.ones([2, 50], tf.bool)
    graph = tf.function(layer).get_concrete_function(view, queries, mask).graph
    for op in graph.get_operations():
        for t in op.outputs:
            shape = t.shape.as_list() if t.shape.rank is not None else []
            assert shape[-2:] != [50, 16] or op.type in ("Placeholder", "Identity", "Cast"), op


def test_round_trip_and_argument_checks():
    mask = tf.constant([[True, False]])
    assert_config_round_trip(STCAAttention(4, 2), tf.ones([1, 2, 4]), tf.ones([1, 3, 4]), mask)
    match = tf.constant(np.random.default_rng(0).random((1, 3, 2, 2)) < 0.5)
    assert_config_round_trip(STCAAttention(4, 2, 2, 3.0, True), tf.ones([1, 2, 4]),
                             tf.ones([1, 3, 4]), mask, id_match=match)
    with pytest.raises(ValueError, match="must divide"):
        STCAAttention(6, 4)
