import functools
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401
from model.layers.id_match import id_match, match_pairs
from model.layers.stca_attention import STCAAttention
from tests.helpers.env import REPO, subprocess_env
from tests.helpers.layers import (REFERENCE_ATOL, REORDER_ATOL, SAME_PATH_ATOL,
                                  assert_config_round_trip)


def naive_attention(layer, view, queries, mask, match=None, age=None):
    """Textbook multi-head attention with explicit [L, d] K / V projections (float64),
    plus the ID-match logit bonus, the recency logit and the sink when the layer has them."""
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
        scores = scores + np.einsum("bfml,fh->bmhl", match.astype(np.float64), beta)
    if age is not None:
        rho = layer.recency_bias.numpy().astype(np.float64)                 # [A, h]
        scores = scores + np.transpose(rho[age], [0, 2, 1])[:, None]          # [B, 1, h, L]
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


FORMS = ("reordered", "projected")


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("length,targets,heads", [(1, 1, 1), (7, 3, 2), (33, 5, 4), (64, 2, 8)])
def test_matches_naive_kv_attention(length, targets, heads, form):
    rng = np.random.default_rng(length)
    d, batch = 16, 3
    view = rng.normal(size=(batch, length, d)).astype(np.float32)
    queries = rng.normal(size=(batch, targets, d)).astype(np.float32)
    lengths = np.array([length, max(length // 2, 1), 0])  # full, partial, empty history
    mask = np.arange(length)[None, :] < lengths[:, None]
    layer = STCAAttention(d, heads, attention_form=form)
    out = layer(tf.constant(view), tf.constant(queries), tf.constant(mask)).numpy()
    np.testing.assert_allclose(out, naive_attention(layer, view, queries, mask),
                               atol=REFERENCE_ATOL)
    np.testing.assert_array_equal(out[2], np.zeros((targets, d)))  # empty history: zeros


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("fields,sink", [(2, False), (0, True), (2, True), (1, True)])
def test_id_match_bonus_and_sink_match_the_naive_reference(fields, sink, form):
    rng = np.random.default_rng(fields + 10 * sink)
    d, heads, batch, length, targets = 16, 4, 3, 19, 5
    view = rng.normal(size=(batch, length, d)).astype(np.float32)
    queries = rng.normal(size=(batch, targets, d)).astype(np.float32)
    mask = np.arange(length)[None, :] < np.array([length, 6, 0])[:, None]
    match = rng.random((batch, fields, targets, length)) < 0.2      # [B, F, M, L]
    layer = STCAAttention(d, heads, num_match_fields=fields, attention_sink=sink,
                          attention_form=form)
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


def _twin_layers(d, heads, fields, sink, seed):
    """A reordered and a projected layer with the same random weights (O(1) outputs)."""
    rng = np.random.default_rng(seed)
    layers = [STCAAttention(d, heads, num_match_fields=fields, attention_sink=sink,
                            attention_form=form) for form in FORMS]
    for layer in layers:
        layer.build(None)
    for weights in zip(*(layer.weights for layer in layers)):
        scale = 1.0 / np.sqrt(weights[0].shape[0]) if weights[0].shape.rank == 2 else 1.0
        value = (scale * rng.normal(size=weights[0].shape)).astype(np.float32)
        for w in weights:
            w.assign(value)
    return layers


def test_the_two_forms_have_equal_outputs_and_gradients():
    """Training may run either form (by M): values and every gradient agree to 1e-5."""
    rng = np.random.default_rng(4)
    d, heads, batch, length, targets, fields = 16, 4, 3, 23, 6, 2
    view = tf.constant(rng.normal(size=(batch, length, d)).astype(np.float32))
    queries = tf.constant(rng.normal(size=(batch, targets, d)).astype(np.float32))
    mask = tf.constant(np.arange(length)[None, :] < np.array([length, 9, 0])[:, None])
    match = tf.constant(rng.random((batch, fields, targets, length)) < 0.2)
    weights = tf.constant(rng.normal(size=(batch, targets, d)).astype(np.float32))
    results = []
    for layer in _twin_layers(d, heads, fields, True, seed=5):
        with tf.GradientTape() as tape:
            tape.watch([view, queries])
            loss = tf.reduce_sum(layer(view, queries, mask, id_match=match) * weights)
        grads = tape.gradient(loss, [view, queries] + layer.trainable_weights)
        results.append([loss] + grads)
    for reordered, projected in zip(*results):
        np.testing.assert_allclose(projected.numpy(), reordered.numpy(), rtol=1e-5,
                                   atol=REORDER_ATOL * max(1.0, np.abs(reordered).max()))


@pytest.mark.parametrize("form", FORMS)
def test_recency_logit_per_age_bucket_and_head(form):
    """rho[a(j), h] is added to every target's logit of event j in head h (both forms, and
    attend_projected over cached K / V), on top of the ID-match bonus."""
    rng = np.random.default_rng(21)
    d, heads, buckets, length, targets = 16, 4, 6, 9, 3
    view = rng.normal(size=(3, length, d)).astype(np.float32)
    queries = rng.normal(size=(3, targets, d)).astype(np.float32)
    mask = np.arange(length)[None, :] < np.array([[9], [4], [0]])
    match = rng.random((3, 2, targets, length)) < 0.3
    age = rng.integers(0, buckets, size=(3, length))
    layer = STCAAttention(d, heads, num_match_fields=2, recency_buckets=buckets,
                          attention_form=form)
    layer.build(None)
    assert layer.recency_bias.dtype == tf.float32 and not layer.recency_bias.numpy().any()
    layer.recency_bias.assign(rng.normal(scale=2.0, size=(buckets, heads)))
    expected = naive_attention(layer, view, queries, mask, match, age)
    out = layer(view, queries, mask, id_match=match, age_bucket=age)
    np.testing.assert_allclose(out.numpy(), expected, atol=REFERENCE_ATOL)
    keys, values = layer.project_history(view)
    np.testing.assert_allclose(layer.attend_projected(keys, values, queries, mask, match,
                                                      age).numpy(), expected,
                               atol=REFERENCE_ATOL)
    assert np.abs(expected - naive_attention(layer, view, queries, mask, match)).max() > 0.1
    with pytest.raises(ValueError, match="age_bucket is required"):
        layer(view, queries, mask, id_match=match)
    with pytest.raises(ValueError, match="recency_buckets must be >= 0"):
        STCAAttention(d, heads, recency_buckets=-1)
    assert_config_round_trip(layer, view, queries, mask, id_match=match, age_bucket=age)


def test_cached_keys_and_values_give_the_attention_output():
    rng = np.random.default_rng(6)
    d, heads = 16, 4
    view = rng.normal(size=(2, 11, d)).astype(np.float32)
    queries = rng.normal(size=(2, 30, d)).astype(np.float32)
    mask = np.arange(11)[None, :] < np.array([[11], [4]])
    match = rng.random((2, 2, 30, 11)) < 0.3
    reordered, projected = _twin_layers(d, heads, 2, False, seed=7)
    keys, values = projected.project_history(view)
    assert keys.shape == values.shape == (2, heads, 11, d // heads)
    np.testing.assert_allclose(
        projected.attend_projected(keys, values, queries, mask, id_match=match).numpy(),
        reordered(view, queries, mask, id_match=match).numpy(), atol=REORDER_ATOL)


def test_auto_picks_the_cheaper_form_statically_or_per_call():
    """d = 16, h = 4: projected once M (h - 1) > d, i.e. from M = 6 (model.flops)."""
    def ops(layer, targets):
        fn = tf.function(layer).get_concrete_function(
            tf.TensorSpec([2, 50, 16]), tf.TensorSpec([2, targets, 16]),
            tf.TensorSpec([2, 50], tf.bool))
        return {op.type for op in fn.graph.get_operations()}

    layer = STCAAttention(16, 4)
    assert "Einsum" in ops(layer, 5)                    # reordered: u = W_K q per target
    assert "Einsum" not in ops(layer, 6)                # projected
    assert ops(layer, None) & {"If", "StatelessIf"}     # unknown M: chosen per call
    # Training calls take the reordered form at any M (measured faster with gradients).
    for targets in (6, 40, None):
        assert "Einsum" in ops(functools.partial(layer, training=True), targets)
        assert not ops(functools.partial(layer, training=True), targets) & {"If",
                                                                          "StatelessIf"}
    assert "Einsum" not in ops(functools.partial(layer, training=False), 6)
    forced = STCAAttention(16, 4, attention_form="projected")
    assert "Einsum" not in ops(functools.partial(forced, training=True), 40)
    reordered, projected = _twin_layers(16, 4, 0, False, seed=8)
    auto = STCAAttention(16, 4)
    auto.build(None)
    auto.set_weights(projected.get_weights())
    dynamic = tf.function(auto, input_signature=[
        tf.TensorSpec([None, None, 16]), tf.TensorSpec([None, None, 16]),
        tf.TensorSpec([None, None], tf.bool)])
    rng = np.random.default_rng(9)
    view = rng.normal(size=(1, 50, 16)).astype(np.float32)
    mask = np.ones((1, 50), bool)
    for targets in (1, 5, 6, 40):
        queries = rng.normal(size=(1, targets, 16)).astype(np.float32)
        np.testing.assert_allclose(dynamic(view, queries, mask).numpy(),
                                   reordered(view, queries, mask).numpy(), atol=REORDER_ATOL)


def test_no_key_value_projection_of_the_history_is_built():
    """The reordering trick: every [.., L, ..] intermediate has h*M rows, never width d."""
    layer = STCAAttention(16, 4, attention_form="reordered")
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
    match = tf.constant(np.random.default_rng(0).random((1, 2, 3, 2)) < 0.5)
    assert_config_round_trip(STCAAttention(4, 2, 2, 3.0, True), tf.ones([1, 2, 4]),
                             tf.ones([1, 3, 4]), mask, id_match=match)
    with pytest.raises(ValueError, match="must divide"):
        STCAAttention(6, 4)
    with pytest.raises(ValueError, match="attention_form must be one of"):
        STCAAttention(8, 4, attention_form="fast")
    assert STCAAttention(8, 4, attention_form="projected").get_config()[
        "attention_form"] == "projected"


def _pair_case(seed, vocab):
    """Random IDs from `vocab` values (collisions: matches), padded rows, an empty row."""
    rng = np.random.default_rng(seed)
    d, batch, length, targets = 16, 3, 40, 5
    hist = [rng.integers(0, vocab, size=(batch, length)) for _ in range(2)]
    tgt = [rng.integers(0, vocab, size=(batch, targets)) for _ in range(2)]
    hist_len = np.array([40, 13, 0])
    view = rng.normal(size=(batch, length, d)).astype(np.float32)
    queries = rng.normal(size=(batch, targets, d)).astype(np.float32)
    mask = np.arange(length)[None, :] < hist_len[:, None]
    dense = id_match([tf.constant(h, tf.int64) for h in hist],
                     [tf.constant(t, tf.int64) for t in tgt]).numpy()
    pairs = match_pairs([tf.constant(h, tf.int64) for h in hist],
                        [tf.constant(t, tf.int64) for t in tgt],
                        tf.constant(hist_len), tf.fill([batch], targets))
    return rng, view, queries, mask, dense, pairs


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("sink,recency", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("case", ["sparse", "negative bias", "bias above the cap", "dense"])
def test_match_pairs_give_the_dense_prior_in_each_way(form, sink, recency, case, monkeypatch):
    """Pairs applied sparsely (non-negative bias up to the cap, few pairs) or scattered
    into a dense bias (otherwise) give the naive reference of the dense matches."""
    rng, view, queries, mask, dense, pairs = _pair_case(7, 40 if case != "dense" else 3)
    layer = STCAAttention(16, 4, num_match_fields=2, attention_sink=sink, attention_form=form,
                          recency_buckets=5 if recency else 0)
    layer.build(None)
    beta = {"sparse": rng.uniform(0.5, 9.0, size=(2, 4)),
            "negative bias": rng.uniform(-3.0, 3.0, size=(2, 4)),
            "bias above the cap": rng.uniform(61.0, 70.0, size=(2, 4)),
            "dense": rng.uniform(0.5, 9.0, size=(2, 4))}[case]
    layer.match_bias.assign(beta)
    age = None
    if recency:
        layer.recency_bias.assign(rng.normal(size=(5, 4)))
        age = rng.integers(0, 5, size=mask.shape)
    if sink:
        layer.sink_logit.assign(rng.normal(size=4))
    sparse_calls = []
    original = STCAAttention._attend_pairs
    monkeypatch.setattr(STCAAttention, "_attend_pairs",
                        lambda self, *a: sparse_calls.append(1) or original(self, *a))
    out = layer(view, queries, mask, id_match=pairs, age_bucket=age).numpy()
    expected = naive_attention(layer, view, queries, mask, dense, age)
    np.testing.assert_allclose(out, expected, atol=REFERENCE_ATOL, rtol=1e-5)
    assert bool(sparse_calls) == (case == "sparse")      # eager tf.cond runs one branch
    keys, values = layer.project_history(view)
    np.testing.assert_allclose(
        layer.attend_projected(keys, values, queries, mask, pairs, age).numpy(), expected,
        atol=REFERENCE_ATOL, rtol=1e-5)
    assert int(tf.size(pairs.row)) > (40 if case == "dense" else 3)
    # The prior matters here: without it the outputs differ.
    assert np.abs(expected - naive_attention(layer, view, queries, mask, None, age)).max() > 1e-2


_DETERMINISTIC_PAIRS = """
import json
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import config
from model.layers.stca_attention import STCAAttention
from tests.model.test_stca_attention import _pair_case, naive_attention

def op_types(fn, *args):
    graph = fn.get_concrete_function(*args).graph.as_graph_def()
    return {n.op for n in graph.node} | {n.op for f in graph.library.function
                                         for n in f.node_def}

rng, view, queries, mask, dense, pairs = _pair_case(7, 40)
layer = STCAAttention(16, 4, num_match_fields=2)
layer.build(None)
layer.match_bias.assign(rng.uniform(0.5, 9.0, size=(2, 4)))
out = {}
for deterministic in (True, False):
    (config.enable_op_determinism if deterministic else config.disable_op_determinism)()
    fn = tf.function(lambda v, q: layer(v, q, mask, id_match=pairs))
    out[deterministic] = {"ops": sorted(op_types(fn, view, queries)),
                          "y": fn(view, queries).numpy().tolist()}
out["reference"] = naive_attention(layer, view, queries, mask, dense).tolist()
print(json.dumps(out, default=str))
"""


@pytest.mark.slow  # a child process
def test_op_determinism_keeps_the_pairs_off_the_sparse_matmul():
    """Under op determinism (train.deterministic) the pairs' sum runs as a gather and a
    segment sum: TF's GPU sparse x dense kernel raises there. Same outputs either way."""
    proc = subprocess.run([sys.executable, "-c", _DETERMINISTIC_PAIRS], cwd=REPO,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    on, off = out["true"], out["false"]
    assert "SparseTensorDenseMatMul" not in on["ops"] and "UnsortedSegmentSum" in on["ops"]
    assert "SparseTensorDenseMatMul" in off["ops"]
    np.testing.assert_allclose(on["y"], out["reference"], atol=REFERENCE_ATOL, rtol=1e-5)
    np.testing.assert_allclose(on["y"], off["y"], atol=SAME_PATH_ATOL, rtol=1e-6)
