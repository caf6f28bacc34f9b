"""model.recency=attention: request-free user caches that can be extended with new events."""
import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401
from core import features
from core.config import ConfigError
from model import build_model
from model.ranking_model import HIST_TS, USER_TOKENS
from tests.helpers.layers import REORDER_ATOL
from tests.helpers.model import TASKS, random_requests, tiny_config

HOUR_MS = 3_600_000


def _model(**overrides):
    """64 age buckets: the test requests' events are 1 s - 1 h old, and buckets of
    log1.5(1 + seconds) reach 1 h at 20 (the unit tables' 16 would merge most of them)."""
    net = build_model(tiny_config(recency="attention", time_buckets=64, **overrides), TASKS)
    rng = np.random.default_rng(0)
    for attention in net.encoder.attentions:  # trained-like recency logits (they start at 0)
        attention.recency_bias.assign(rng.normal(scale=2.0,
                                                 size=attention.recency_bias.shape))
    return net


def _valid(logits, inputs):
    """Logits of the valid targets, [N, T]."""
    mask = np.arange(logits.shape[1])[None, :] < inputs[features.TGT_LEN].numpy()[:, None]
    return logits.numpy()[mask]


def _candidates(net, inputs):
    return {name: inputs[name] for name in net.candidate_inputs}


def test_cache_is_request_free_and_scoring_reads_request_ts():
    net = _model()
    inputs, _ = random_requests(batch=3, length=10, num_targets=5, seed=1)
    later = {**inputs, "request_ts": inputs["request_ts"] + 5 * HOUR_MS}
    cache, cache_later = net.encode_user(inputs), net.encode_user(later)
    assert set(cache) == set(net.user_cache_spec()) and HIST_TS in cache
    for name in cache:
        np.testing.assert_array_equal(cache[name].numpy(), cache_later[name].numpy())
    assert net.candidate_inputs == features.CANDIDATE_INPUTS + ("request_ts",)
    assert net.embedding.time is None and not any("time" in v.name for v in net.weights)
    for batch in (inputs, later):  # the one-pass call (reordered form) = the cached path
        np.testing.assert_allclose(
            _valid(net.score_candidates(net.encode_user(batch), _candidates(net, batch)), batch),
            _valid(net(batch), batch), atol=REORDER_ATOL)
    moved = _valid(net.score_candidates(cache, _candidates(net, later)), inputs)
    assert np.abs(moved - _valid(net(inputs), inputs)).max() > 1e-3   # ages enter the scores
    assert not net.can_swap_histories


@pytest.mark.parametrize("cache_dtype", [tf.float32, tf.bfloat16])
def test_extended_cache_equals_encoding_the_whole_history(cache_dtype):
    """extend_user(encode_user(older events), newer events) scores like encode_user of the
    whole history, request by request: new events only, old only, both, neither."""
    net = _model()
    inputs, _ = random_requests(batch=5, length=12, num_targets=4, seed=2,
                                hist_len=[12, 0, 7, 5, 9], tgt_len=[4, 1, 3, 4, 2])
    old, new = features.split_history(inputs, [3, 0, 7, 0, 4])
    full = net.encode_user(inputs)
    cache = {k: tf.cast(v, cache_dtype) if v.dtype.is_floating else v
             for k, v in net.encode_user(old).items()}
    extended = net.extend_user(cache, new)
    assert set(extended) == set(full)
    assert extended[USER_TOKENS].dtype == cache_dtype
    np.testing.assert_array_equal(extended[features.HIST_LEN], inputs[features.HIST_LEN])
    lens = inputs[features.HIST_LEN].numpy()
    for name in (HIST_TS, "hist_item_id", "hist_author_id"):
        for b, n in enumerate(lens):
            np.testing.assert_array_equal(extended[name][b, :n], full[name][b, :n])
    tol = REORDER_ATOL if cache_dtype == tf.float32 else 0.05
    np.testing.assert_allclose(tf.cast(extended[USER_TOKENS], tf.float32),
                               full[USER_TOKENS], atol=tol)
    candidates = _candidates(net, inputs)
    later = {**candidates, "request_ts": candidates["request_ts"] + HOUR_MS}
    for batch in (candidates, later):
        np.testing.assert_allclose(_valid(net.score_candidates(extended, batch), inputs),
                                   _valid(net.score_candidates(full, batch), inputs),
                                   atol=tol * 10 if cache_dtype == tf.bfloat16 else tol)


def test_extending_twice_equals_extending_once():
    net = _model()
    inputs, _ = random_requests(batch=2, length=9, num_targets=3, seed=3, hist_len=[9, 6],
                                tgt_len=[3, 2])
    old, new = features.split_history(inputs, [5, 2])
    middle, newest = features.split_history(new, [2, 1])
    middle = {k: middle[k] for k in features.HISTORY_FEATURES + (features.HIST_LEN,)}
    twice = net.extend_user(net.extend_user(net.encode_user(old), middle), newest)
    once = net.extend_user(net.encode_user(old), new)
    candidates = _candidates(net, inputs)
    np.testing.assert_allclose(_valid(net.score_candidates(twice, candidates), inputs),
                               _valid(net.score_candidates(once, candidates), inputs),
                               atol=REORDER_ATOL)


def test_trains_the_recency_logits():
    net = _model()
    inputs, labels = random_requests(batch=4, length=16, num_targets=4, seed=4)
    with tf.GradientTape() as tape:
        loss = net.compute_loss((inputs, labels), training=True)
    grads = tape.gradient(loss, [a.recency_bias for a in net.encoder.attentions])
    assert all(g is not None and np.abs(tf.convert_to_tensor(g).numpy()).max() > 0
               for g in grads)


def test_token_recency_models_cannot_extend_and_other_encoders_refuse_it():
    net = build_model(tiny_config(), TASKS)
    inputs, _ = random_requests(batch=2, length=6, num_targets=2, seed=5)
    with pytest.raises(ValueError, match="model.recency=attention"):
        net.extend_user(net.encode_user(inputs), inputs)
    assert HIST_TS not in net.user_cache_spec()
    assert net.candidate_inputs == features.CANDIDATE_INPUTS
    with pytest.raises(ConfigError, match="model.recency: 'attention' is invalid.*'stca'"):
        build_model(tiny_config(encoder="longer", recency="attention"), TASKS)
    with pytest.raises(ConfigError, match="model.recency"):
        tiny_config(recency="scoring")
