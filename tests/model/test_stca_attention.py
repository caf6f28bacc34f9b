import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401
from model.layers.stca_attention import STCAAttention
from layer_checks import assert_config_round_trip


def naive_attention(layer, view, queries, mask):
    """Textbook multi-head attention with explicit [L, d] K / V projections (float64)."""
    w_q, w_k, w_v, w_o = (w.numpy().astype(np.float64) for w in (
        layer.query_kernel, layer.key_kernel, layer.value_kernel, layer.output_kernel))
    x, q = view.astype(np.float64), queries.astype(np.float64)
    h, dh = layer.num_heads, layer.head_dim
    batch, length, _ = x.shape
    keys = (x @ w_k).reshape(batch, length, h, dh)
    values = (x @ w_v).reshape(batch, length, h, dh)
    query = (q @ w_q).reshape(batch, q.shape[1], h, dh)
    scores = np.einsum("bmhk,blhk->bmhl", query, keys) / np.sqrt(dh)
    valid = mask[:, None, None, :]
    scores = np.where(valid, scores, -np.inf)
    top = np.max(np.where(valid, scores, -1e300), axis=-1, keepdims=True)
    weights = np.where(valid, np.exp(scores - top), 0.0)
    weights = weights / np.maximum(weights.sum(-1, keepdims=True), 1e-300)  # empty rows -> 0
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
    np.testing.assert_allclose(out, naive_attention(layer, view, queries, mask), atol=1e-5)
    np.testing.assert_array_equal(out[2], np.zeros((targets, d)))  # empty history: zeros


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
    np.testing.assert_allclose(layer(view, other, mask).numpy()[:, 0], base[:, 0], atol=1e-6)


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
    with pytest.raises(ValueError, match="must divide"):
        STCAAttention(6, 4)
