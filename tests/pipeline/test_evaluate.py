"""Evaluation's history modes: the empty pass reads no history and scores as the model does
on a fully padded one."""
import numpy as np
import pytest
import tensorflow as tf

from core import features
from model import build_model, registry
from pipeline import evaluate
from tests.helpers.model import TASKS, random_requests, tiny_config


@pytest.mark.parametrize("encoder", registry.encoder_names())
def test_empty_pass_equals_a_fully_masked_history_of_full_length(encoder):
    net = build_model(tiny_config(encoder=encoder), TASKS)
    inputs, _ = random_requests(batch=3, length=40, num_targets=4, seed=5)
    masked = dict(inputs, **{features.HIST_LEN: tf.zeros_like(inputs[features.HIST_LEN])})
    empty = evaluate._with_history(inputs, "empty", None)
    for name in features.HISTORY_FEATURES:
        assert empty[name].shape[1] == 1 and not np.any(empty[name].numpy())
    assert not np.any(empty[features.HIST_LEN].numpy())
    np.testing.assert_allclose(net(empty), net(masked), rtol=0, atol=1e-5)


def test_swapped_pass_moves_the_whole_user_side_to_another_user():
    inputs, _ = random_requests(batch=4, length=6, num_targets=2, seed=1)
    perm, same = evaluate.other_user_permutation(inputs["user_id"].numpy())
    assert same == 0 and sorted(perm) == [0, 1, 2, 3]
    swapped = evaluate._with_history(inputs, "swapped", perm)
    for name in evaluate._SWAPPED_INPUTS:
        np.testing.assert_array_equal(swapped[name], tf.gather(inputs[name], perm))
    np.testing.assert_array_equal(swapped["user_id"], inputs["user_id"])


@pytest.mark.parametrize("encoder", registry.encoder_names())
def test_swapped_cache_equals_encoding_the_swapped_inputs(encoder):
    net = build_model(tiny_config(encoder=encoder), TASKS)
    inputs, _ = random_requests(batch=4, length=24, num_targets=3, seed=2)
    perm, _ = evaluate.other_user_permutation(inputs["user_id"].numpy())
    expected = tf.sigmoid(net(evaluate._with_history(inputs, "swapped", perm)))
    if not net.can_swap_histories:
        assert encoder == "longer"  # its cache holds the user-ID token's attention
        with pytest.raises(ValueError, match="swap_histories"):
            net.swap_histories(net.encode_user(inputs), perm)
        return
    cache = net.swap_histories(net.encode_user(inputs), perm)
    candidates = {n: inputs[n] for n in features.CANDIDATE_INPUTS}
    got = tf.sigmoid(net.score_candidates(cache, candidates))
    valid = features.target_mask(inputs[features.TGT_LEN], 3).numpy()
    np.testing.assert_allclose(got.numpy()[valid], expected.numpy()[valid], rtol=0, atol=1e-5)


class _CallOnly:
    """The model behind `score_passes` without the shared user side (every pass calls it)."""
    can_swap_histories = False

    def __init__(self, net):
        self.net = net

    def __call__(self, inputs, training=False):
        return self.net(inputs, training=training)


def test_score_passes_with_a_shared_user_side_equal_separate_calls():
    net = build_model(tiny_config(), TASKS)
    batches = []
    for seed in range(2):
        inputs, labels = random_requests(batch=4, length=30, num_targets=3, seed=seed)
        meta = {"user_id": inputs["user_id"], "request_id": tf.range(4, dtype=tf.int64) + 4 * seed,
                "target_start": tf.zeros([4], tf.int32)}
        batches.append((inputs, labels, meta))
    passes = [(30, "real"), (30, "swapped"), (8, "real"), (8, "swapped"), (8, "empty")]
    shared = evaluate.score_passes(net, batches, TASKS, passes)
    separate = evaluate.score_passes(_CallOnly(net), batches, TASKS, passes)
    for p in passes:
        for t in TASKS:
            np.testing.assert_allclose(shared["scores"][p][t], separate["scores"][p][t],
                                       rtol=0, atol=1e-5)
        np.testing.assert_array_equal(shared["hist_lens"][p], separate["hist_lens"][p])


@pytest.mark.parametrize("recency,modes,shared", [
    ("token", ("real", "swapped", "empty"), True),
    # Recency at scoring: the real pass scores the cache with request_ts; the swapped one
    # re-encodes (a cache row cannot move to another request's time).
    ("attention", ("real", "empty"), True), ("attention", ("real", "swapped", "empty"), False)])
def test_one_trace_scores_every_batch_shape_and_length(recency, modes, shared):
    net = build_model(tiny_config(recency=recency, time_buckets=64), TASKS)
    if recency == "attention":
        for attention in net.encoder.attentions:  # recency logits as after training
            attention.recency_bias.assign(tf.random.stateless_normal(
                attention.recency_bias.shape, seed=[3, 4], stddev=2.0))
    scorer = evaluate._length_scorer(net, modes, shared=shared)
    for seed, (batch, length, targets, cut) in enumerate(
            [(4, 30, 3, 30), (3, 17, 5, 8), (5, 40, 2, evaluate._NO_CUT)]):
        inputs, _ = random_requests(batch=batch, length=length, num_targets=targets, seed=seed)
        perm, _ = evaluate.other_user_permutation(inputs["user_id"].numpy())
        out = scorer(inputs, tf.constant(perm, tf.int64), tf.constant(cut, tf.int32))
        valid = features.target_mask(inputs[features.TGT_LEN], targets).numpy()
        cut_inputs = evaluate._truncated(inputs, min(cut, length))
        for mode in modes:
            expected = tf.sigmoid(net(evaluate._with_history(cut_inputs, mode, perm)))
            np.testing.assert_allclose(out[mode][0].numpy()[valid], expected.numpy()[valid],
                                       rtol=0, atol=1e-5)
        np.testing.assert_array_equal(out["real"][1], cut_inputs[features.HIST_LEN])
        if "swapped" in modes:
            np.testing.assert_array_equal(out["swapped"][1],
                                          tf.gather(cut_inputs[features.HIST_LEN], perm))
    assert scorer.experimental_get_tracing_count() == 1
