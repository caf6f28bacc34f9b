"""LONGER encoder: cache parity, masking, padding, recomputation, precision, FLOPs, config."""
import collections

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import model  # noqa: F401
from model import build_model
from model.encoders import HIST_LEN, LongerEncoder, build_encoder
from model.encoders.longer import SEQUENCE_KV, SHORT_KV
from model.flops import encoder_flops
from model.layers.longer_attention import LongerAttention
from model.layers.token_merge import TokenMerge
from core import features
from core.config import ConfigError, LongerConfig
from tests.helpers.layers import REORDER_ATOL, assert_config_round_trip
from tests.helpers.model import TASKS, author_task_batch, random_requests, tiny_config

D = 8
CONFIGS = {  # name -> LongerEncoder kwargs
    "concat": dict(merge_k=4, recent_k=2),
    "no-merge": dict(merge_k=1, recent_k=3),
    "innertrans": dict(merge_k=2, merge_mode="innertrans", recent_k=3),
    "k-beyond-history": dict(merge_k=3, recent_k=9, self_attn_layers=1),
    "no-recent": dict(merge_k=2, recent_k=0, self_attn_layers=3),
}


def _encoder(**kwargs):
    return LongerEncoder(D, 2, num_user_tokens=2, **kwargs)


def _inputs(length=11, lengths=(11, 4, 0), num_targets=4, seed=0):
    rng = np.random.default_rng(seed)
    b = len(lengths)
    events = tf.constant(rng.normal(size=(b, length, D)), tf.float32)
    mask = tf.sequence_mask(lengths, length)
    targets = tf.constant(rng.normal(size=(b, num_targets, D)), tf.float32)
    users = tf.constant(rng.normal(size=(b, 2, D)), tf.float32)
    return events, mask, targets, users


def _serve(encoder, events, mask, targets, users):
    cache = dict(encoder.encode_user(events, mask, user_tokens=users))
    cache[HIST_LEN] = tf.reduce_sum(tf.cast(mask, tf.int32), axis=-1)
    return encoder.score(cache, targets), cache


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cached_scoring_equals_the_joint_pass_also_for_5x_longer_histories(name):
    encoder = _encoder(**CONFIGS[name])
    for length, lengths in ((11, (11, 4, 0)), (55, (55, 23, 1))):
        events, mask, targets, users = _inputs(length, lengths)
        z = encoder(events, mask, targets, user_tokens=users)
        served, cache = _serve(encoder, events, mask, targets, users)
        assert z.shape == (3, 4, D) and np.isfinite(z.numpy()).all()
        np.testing.assert_allclose(served, z, rtol=0, atol=REORDER_ATOL)
        spec = encoder.cache_spec()
        assert set(spec) == {SEQUENCE_KV, SHORT_KV}
        for key in spec:
            assert spec[key].shape.is_compatible_with(cache[key].shape), key
            assert spec[key].dtype == cache[key].dtype
    # Cache sizes: layer 1 holds P0 + max(ceil(L / K), k) tokens, later layers P0 + k.
    k, K = encoder.recent_k, encoder.merge_k
    assert cache[SEQUENCE_KV].shape == (3, 2, 3 + max(-(-55 // K), k), D)
    assert cache[SHORT_KV].shape == (3, encoder.self_attn_layers, 2, 3 + k, D)


def _record_attend(monkeypatch):
    outputs = []
    original = LongerAttention.attend

    def recording(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        outputs.append(out.numpy())
        return out

    monkeypatch.setattr(LongerAttention, "attend", recording)
    return outputs


def test_candidates_never_reach_the_user_side(monkeypatch):
    """Changing the candidates leaves every non-candidate state of the joint (training)
    pass bit-identical, and equal to the states encode_user caches."""
    encoder = _encoder(merge_k=2, recent_k=3, self_attn_layers=2)
    events, mask, targets, users = _inputs()
    other = tf.constant(np.random.default_rng(9).normal(size=targets.shape) * 5, tf.float32)
    outputs = _record_attend(monkeypatch)
    z = encoder(events, mask, targets, user_tokens=users).numpy()
    joint, outputs[:] = list(outputs), []
    z_other = encoder(events, mask, other, user_tokens=users).numpy()
    joint_other, outputs[:] = list(outputs), []
    assert _differs(z, z_other)
    m = targets.shape[1]
    assert [o.shape[1] for o in joint] == [m + 6, m + 6, m]  # last layer: candidates only
    for a, b in zip(joint[:-1], joint_other[:-1]):
        np.testing.assert_array_equal(a[:, m:], b[:, m:])
    cache = encoder.encode_user(events, mask, user_tokens=users)
    user_side = list(outputs)
    assert len(user_side) == 2  # layer 1 and layer 2 update the short set; layer 3 caches
    for a, b in zip(joint[:-1], user_side):
        np.testing.assert_allclose(a[:, m:], b, rtol=0, atol=REORDER_ATOL)
    again = encoder.encode_user(events, mask, user_tokens=users)
    for key in cache:
        np.testing.assert_array_equal(cache[key], again[key])


def test_padding_and_other_candidates_have_no_influence():
    encoder = _encoder(merge_k=3, recent_k=2)
    events, mask, targets, users = _inputs(seed=1)
    z = encoder(events, mask, targets, user_tokens=users).numpy()
    noisy = np.where(mask.numpy()[..., None], events.numpy(),
                     1e3 * np.random.default_rng(2).normal(size=events.shape))
    z_noisy = encoder(tf.constant(noisy, tf.float32), mask, targets, user_tokens=users)
    np.testing.assert_array_equal(z_noisy, z)
    wider = tf.concat([events, tf.ones([3, 7, D])], axis=1)        # more padding
    z_wide = encoder(wider, tf.pad(mask, [[0, 0], [0, 7]]), targets, user_tokens=users)
    np.testing.assert_allclose(z_wide, z, rtol=0, atol=REORDER_ATOL)
    changed = tf.concat([targets[:, :1], targets[:, 1:] * -3.0 + 1.0], axis=1)
    z_changed = encoder(events, mask, changed, user_tokens=users).numpy()
    np.testing.assert_allclose(z_changed[:, 0], z[:, 0], rtol=0, atol=REORDER_ATOL)
    assert _differs(z_changed[:, 1], z[:, 1])


def _differs(a, b, by=1e-3):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) > by


def test_every_input_kind_reaches_the_candidate():
    """The candidate reads history (beyond the k recent), user tokens and CLS. (A constant
    shift of a token is invisible: every token is layer-normed before K / V.)"""
    encoder = _encoder(merge_k=2, recent_k=1)
    events, mask, targets, users = _inputs(lengths=(11, 11, 11))
    z = encoder(events, mask, targets, user_tokens=users).numpy()
    old = events.numpy().copy()
    old[:, -1] = -old[:, -1]                           # the oldest event only
    assert _differs(encoder(tf.constant(old), mask, targets, user_tokens=users), z)
    other_users = tf.constant(np.random.default_rng(3).normal(size=users.shape), tf.float32)
    assert _differs(encoder(events, mask, targets, user_tokens=other_users), z)
    encoder.cls_token.assign(tf.constant(np.random.default_rng(4).normal(size=D), tf.float32))
    assert _differs(encoder(events, mask, targets, user_tokens=users), z)


def test_ranking_model_serving_split_with_5x_longer_histories():
    cfg = tiny_config(encoder="longer", longer=LongerConfig(merge_k=2, recent_k=3))
    net = build_model(cfg, TASKS)
    batch = random_requests(batch=2, length=12, num_targets=3, seed=4)
    net.compile(optimizer=keras.optimizers.SGD(0.1))
    net.fit(tf.data.Dataset.from_tensors(batch), epochs=2, verbose=0)
    encode = tf.function(net.encode_user, input_signature=[
        features.input_signature(features.USER_INPUTS)])
    score = tf.function(net.score_candidates, input_signature=[
        net.user_cache_spec(), features.input_signature(features.CANDIDATE_INPUTS)])
    # Random IDs (no matches) and an author task batch (most targets match events).
    for inputs in (random_requests(batch=3, length=60, num_targets=5, seed=5)[0],
                   author_task_batch(batch=3, length=60, num_targets=5, seed=6)[0]):
        cache = encode({k: inputs[k] for k in features.USER_INPUTS})
        assert set(cache) == {SEQUENCE_KV, SHORT_KV, "user_tokens", HIST_LEN,
                              "hist_item_id", "hist_author_id"}
        served = score(cache, {k: inputs[k] for k in features.CANDIDATE_INPUTS})
        valid = features.target_mask(inputs["tgt_len"], 5)
        np.testing.assert_allclose(tf.boolean_mask(served, valid),
                                   tf.boolean_mask(net(inputs), valid),
                                   rtol=0, atol=REORDER_ATOL)


def test_id_match_bonus_reaches_merged_tokens_whose_events_match():
    """The layer-1 bonus lands on the merged token holding a matching event, in the joint
    pass and in `score`, and only there (a NumPy any-match over each group of K events)."""
    cfg = tiny_config(encoder="longer", longer=LongerConfig(merge_k=3, recent_k=2))
    encoder = build_encoder(cfg, num_user_tokens=0)
    rng = np.random.default_rng(0)
    B, L, M = 2, 8, 3
    events = tf.constant(rng.normal(size=(B, L, 16)), tf.float32)
    targets = tf.constant(rng.normal(size=(B, M, 16)), tf.float32)
    mask = tf.constant(np.arange(L)[None] < np.array([[8], [5]]))
    match = np.zeros((B, 2, M, L), bool)                       # [B, F, M, L]
    match[0, 1, 0, 4] = True          # event 4 -> merged token 1 (events 3..5)
    match[1, 0, 2, 0] = True
    z_plain = encoder(events, mask, targets, id_match=tf.zeros_like(match))
    z_match = encoder(events, mask, targets, id_match=tf.constant(match))
    moved = np.abs(z_match.numpy() - z_plain.numpy()).max(-1) > 1e-4
    np.testing.assert_array_equal(moved, match.any(axis=(1, 3)))
    bias = encoder._match_bias(tf.constant(match)).numpy()       # [B, h, M, G']
    assert bias.shape == (B, 2, M, 3)
    np.testing.assert_allclose(bias[0, :, 0, 1], encoder.match_bias.numpy()[1])
    assert np.count_nonzero(bias) == 2 * 2
    cache = {**encoder.encode_user(events, mask),
             HIST_LEN: tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)}
    np.testing.assert_allclose(encoder.score(cache, targets, id_match=tf.constant(match)),
                               z_match, rtol=0, atol=REORDER_ATOL)
    with pytest.raises(ValueError, match="id_match is required"):
        encoder.score(cache, targets)
    with pytest.raises(ValueError, match="id_match is required"):
        encoder(events, mask, targets)


def _grads(net, batch):
    with tf.GradientTape() as tape:
        loss = net.compute_loss(batch, training=True)
    return [tf.convert_to_tensor(g) for g in tape.gradient(loss, net.trainable_variables)]


def test_recomputed_gradients_equal_stored_ones_and_the_block_reruns(monkeypatch):
    longer = LongerConfig(merge_k=2, merge_mode="innertrans", recent_k=2)
    plain = build_model(tiny_config(encoder="longer", longer=longer), TASKS)
    recomputed = build_model(tiny_config(encoder="longer", longer=longer, recompute=True),
                             TASKS)
    recomputed.set_weights(plain.get_weights())
    batch = random_requests(batch=3, length=10, num_targets=4, seed=8)
    expected = _grads(plain, batch)
    for grads in (_grads(recomputed, batch), tf.function(lambda: _grads(recomputed, batch))()):
        assert len(grads) == len(expected)
        assert max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(grads, expected)) <= 1e-5
    calls = collections.Counter()
    original = TokenMerge.call
    monkeypatch.setattr(TokenMerge, "call", lambda self, *a: calls.update([self.name])
                        or original(self, *a))
    for net, runs in ((plain, 1), (recomputed, 2)):
        calls.clear()
        _grads(net, batch)  # eager: one forward + one backward
        assert calls["token_merge"] == runs


def test_recomputation_survives_grappler():
    """CSE must not merge the recomputed layer 1 back into the stored forward pass."""
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.grappler import tf_optimizer
    batch = random_requests(batch=2, length=8, num_targets=2, seed=10)
    counts = []
    for flag in (False, True):
        net = build_model(tiny_config(encoder="longer", recompute=flag), TASKS)
        graph = tf.function(lambda: _grads(net, batch)).get_concrete_function().graph
        meta = tf.compat.v1.train.export_meta_graph(graph_def=graph.as_graph_def(), graph=graph)
        for out in graph.outputs:
            meta.collection_def["train_op"].node_list.value.append(out.name)
        optimized = tf_optimizer.OptimizeGraph(config_pb2.ConfigProto(), meta, graph_id=b"g")
        counts.append(sum(node.op == "Softmax" for node in optimized.node))
    assert counts == [3, 4]  # layers 1..3 once; layer 1 again in the backward pass


def test_mixed_bfloat16_step_is_finite_with_float32_softmax_and_variables():
    net = build_model(tiny_config(encoder="longer", precision="mixed_bfloat16",
                                  recompute=True), TASKS)
    net.compile(optimizer=keras.optimizers.Adam(1e-3))
    batch = random_requests(batch=3, length=10, num_targets=4, seed=3)
    logs = tf.function(net.train_step)(batch)
    assert np.isfinite(float(logs["loss"])) and np.isfinite(float(logs["grad_norm"]))
    assert all(v.dtype == tf.float32 for v in net.encoder.variables)
    cache = net.encode_user(batch[0])
    assert cache[SEQUENCE_KV].dtype == tf.bfloat16 and cache[SHORT_KV].dtype == tf.bfloat16
    # A bfloat16 serving cache and a float32 one score alike.
    f32_cache = {k: tf.cast(v, tf.float32) if v.dtype == tf.bfloat16 else v
                 for k, v in cache.items()}
    np.testing.assert_array_equal(net.score_candidates(f32_cache, batch[0]),
                                  net.score_candidates(cache, batch[0]))
    graph = tf.function(lambda: net(batch[0])).get_concrete_function().graph
    ops = graph.get_operations()
    assert {op.get_attr("T") for op in ops if op.type == "Softmax"} == {tf.float32}
    assert tf.bfloat16 in {op.get_attr("T") for op in ops if op.type == "BatchMatMulV2"}


def _matmul_flops(graph):
    total = 0
    for op in graph.get_operations():
        if op.type in ("MatMul", "BatchMatMulV2"):
            a = op.inputs[0].shape.as_list()
            transposed = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
            total += 2 * int(np.prod(op.outputs[0].shape.as_list())) * a[-2 if transposed else -1]
    return total


@pytest.mark.parametrize("mode", ["concat", "innertrans"])
def test_flop_formula_counts_every_matmul_of_the_traced_graphs(mode):
    longer = LongerConfig(merge_k=4, merge_mode=mode, recent_k=3, self_attn_layers=2)
    # Without the ID-match prior: its bonus is an elementwise add, not a matmul.
    cfg = tiny_config(encoder="longer", d_model=D, longer=longer, id_match=[])
    encoder = build_encoder(cfg, num_user_tokens=2)
    length, spec = 40, tf.TensorSpec
    events, mask, targets, users = _inputs(length, (40,), num_targets=1)
    encoder(events, mask, targets, user_tokens=users)
    user_graph = tf.function(lambda e, m, u: encoder.encode_user(e, m, user_tokens=u)) \
        .get_concrete_function(spec([1, length, D]), spec([1, length], tf.bool),
                               spec([1, 2, D])).graph
    cache_spec = {SEQUENCE_KV: spec([1, 2, 3 + 10, D]), SHORT_KV: spec([1, 2, 2, 6, D]),
                  HIST_LEN: spec([1], tf.int32)}
    target_graph = tf.function(encoder.score).get_concrete_function(
        cache_spec, spec([1, 1, D])).graph
    with_encoder = encoder_flops(cfg, length, 1)
    without = encoder_flops(tiny_config(encoder="mean", d_model=D), length, 1)
    assert with_encoder["user"] - without["user"] == _matmul_flops(user_graph)
    # The candidate's score with its own key and its own context are elementwise (2 d + 2 d
    # per layer); the formula counts them with the attention.
    own = 4 * D * (1 + longer.self_attn_layers)
    assert with_encoder["per_target"] - without["per_target"] == \
        _matmul_flops(target_graph) + own


def test_per_candidate_cost_grows_with_merged_tokens_only():
    cfg = tiny_config(encoder="longer", d_model=64, longer=LongerConfig(merge_k=4, recent_k=8))
    a, b = encoder_flops(cfg, 4096, 16), encoder_flops(cfg, 8192, 16)
    assert b["per_target"] - a["per_target"] == 4 * (8192 - 4096) // 4 * 64  # 4 d per token
    stca = encoder_flops(tiny_config(encoder="stca", d_model=64), 8192, 16)
    assert b["per_target"] < stca["per_target"] / 5 and b["user"] < stca["user"]


def test_config_round_trip_build_encoder_and_errors():
    events, mask, targets, users = _inputs()
    assert_config_round_trip(_encoder(merge_k=2, merge_mode="innertrans", recent_k=2,
                                      recompute=True), events, mask, targets, user_tokens=users)
    cfg = tiny_config(encoder="longer", recompute=True,
                      longer=LongerConfig(merge_k=8, merge_mode="innertrans", recent_k=5,
                                          self_attn_layers=3))
    encoder = build_encoder(cfg, num_user_tokens=2)
    assert type(encoder) is LongerEncoder and encoder.recompute
    assert (encoder.merge_k, encoder.merge_mode, encoder.recent_k, encoder.self_attn_layers,
            encoder.num_user_tokens, encoder.num_match_fields) == (8, "innertrans", 5, 3, 2, 2)
    with pytest.raises(ConfigError, match="model.longer.merge_mode: 'innertrans' is invalid"):
        tiny_config(encoder="longer", longer=LongerConfig(merge_k=1, merge_mode="innertrans"))
    with pytest.raises(ConfigError, match="model.longer.merge_k"):
        tiny_config(encoder="longer", longer=LongerConfig(merge_k=0))
    with pytest.raises(ValueError, match="user_tokens"):
        _encoder()(events, mask, targets)
    with pytest.raises(ValueError, match="num_user_tokens=0"):
        LongerEncoder(D, 2)(events, mask, targets, user_tokens=users)
