import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401
from core import features
from core.config import ConfigError, LongerConfig, ModelConfig
from model import build_model, registry
from model.ranking_model import RankingModel
from tests.helpers.layers import REORDER_ATOL, SAME_PATH_ATOL
from tests.helpers.model import TASKS, random_requests, tiny_config

ENCODERS = registry.encoder_names()  # every registered encoder


def valid_logits(logits, inputs):
    """Logits of valid targets only, as a flat array."""
    mask = features.target_mask(inputs["tgt_len"], tf.shape(logits)[1])
    return tf.boolean_mask(logits, mask).numpy()


@pytest.mark.parametrize("encoder", ENCODERS)
def test_padding_has_no_influence(encoder):
    net = build_model(tiny_config(encoder=encoder), TASKS)
    inputs, _ = random_requests(batch=4, length=10, num_targets=5, seed=1)
    base = net(inputs).numpy()
    rng = np.random.default_rng(7)
    noisy = {k: v.numpy().copy() for k, v in inputs.items()}
    hist_pad = np.arange(10)[None, :] >= noisy["hist_len"][:, None]
    tgt_pad = np.arange(5)[None, :] >= noisy["tgt_len"][:, None]
    for name, pad in (("hist_item_id", hist_pad), ("hist_author_id", hist_pad),
                      ("hist_action", hist_pad), ("hist_ts", hist_pad),
                      ("tgt_item_id", tgt_pad), ("tgt_author_id", tgt_pad)):
        noisy[name] = np.where(pad, rng.integers(1, 10**12, size=pad.shape), noisy[name])
    noisy = {k: tf.constant(v) for k, v in noisy.items()}
    assert np.isfinite(base).all()
    np.testing.assert_allclose(valid_logits(net(noisy), inputs), valid_logits(base, inputs),
                               rtol=0, atol=REORDER_ATOL)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_a_target_score_does_not_depend_on_the_other_targets(encoder):
    net = build_model(tiny_config(encoder=encoder), TASKS)
    inputs, _ = random_requests(batch=3, length=8, num_targets=4, seed=2, tgt_len=[4, 4, 4])
    changed = dict(inputs)
    for name in ("tgt_item_id", "tgt_author_id"):
        changed[name] = tf.concat([inputs[name][:, :1], inputs[name][:, 1:] + 12345], axis=1)
    np.testing.assert_allclose(net(changed)[:, 0], net(inputs)[:, 0], rtol=0, atol=REORDER_ATOL)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_request_level_batching_equals_pointwise(encoder):
    rlb = build_model(tiny_config(encoder=encoder), TASKS)
    pointwise = build_model(tiny_config(encoder=encoder, rlb=False), TASKS)
    pointwise.set_weights(rlb.get_weights())
    inputs, _ = random_requests(batch=3, length=9, num_targets=4, seed=3)
    np.testing.assert_allclose(valid_logits(pointwise(inputs), inputs),
                               valid_logits(rlb(inputs), inputs), rtol=0,
                               atol=REORDER_ATOL)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_encode_user_then_score_candidates_equals_call_for_longer_histories(encoder):
    net = build_model(tiny_config(encoder=encoder), TASKS)
    train_inputs, train_labels = random_requests(batch=2, length=6, num_targets=3, seed=4)
    net.compile(optimizer=tf.keras.optimizers.SGD(0.1))
    net.fit(tf.data.Dataset.from_tensors((train_inputs, train_labels)), verbose=0)
    # Serving functions traced with unknown lengths, fed 10x the training length.
    encode = tf.function(net.encode_user, input_signature=[
        features.input_signature(features.USER_INPUTS)])
    score = tf.function(net.score_candidates, input_signature=[
        net.user_cache_spec(), features.input_signature(features.CANDIDATE_INPUTS)])
    inputs, _ = random_requests(batch=3, length=60, num_targets=5, seed=5)
    cache = encode({k: inputs[k] for k in features.USER_INPUTS})
    assert set(cache) == set(net.user_cache_spec())
    for name, spec in net.user_cache_spec().items():
        assert cache[name].dtype == spec.dtype and spec.shape.is_compatible_with(cache[name].shape)
    served = score(cache, {k: inputs[k] for k in features.CANDIDATE_INPUTS})
    np.testing.assert_allclose(valid_logits(served, inputs),
                               valid_logits(net(inputs), inputs), rtol=0,
                               atol=REORDER_ATOL)


def test_stca_cache_holds_every_layer_projected_keys_and_values():
    net = build_model(tiny_config(num_layers=3), TASKS)
    inputs, _ = random_requests(batch=2, length=7, num_targets=2)
    cache = net.encode_user(inputs)
    heads = net.encoder.num_heads
    for name in ("history_keys", "history_values"):
        assert cache[name].shape == (2, 3, heads, 7, 16 // heads)
    # Layer i's entries are X~(i) = view_i(events) times W_K / W_V, split into heads.
    events, _ = net._embed_history(inputs)
    for i, (view, attention) in enumerate(zip(net.encoder.views, net.encoder.attentions)):
        x = view(events).numpy()
        for name, kernel in (("history_keys", attention.key_kernel),
                             ("history_values", attention.value_kernel)):
            expected = (x @ kernel.numpy()).reshape(2, 7, heads, 16 // heads)
            np.testing.assert_allclose(cache[name][:, i].numpy(),
                                       expected.transpose(0, 2, 1, 3), atol=REORDER_ATOL)
    assert cache["user_tokens"].shape == (2, 2, 16)
    np.testing.assert_array_equal(cache["hist_len"], inputs["hist_len"])


def test_paper_scale_builds_and_runs_from_config_alone():
    cfg = tiny_config(d_model=1024, num_heads=16, num_layers=4)
    net = build_model(cfg, TASKS)
    inputs, _ = random_requests(batch=1, length=4, num_targets=2, seed=6)
    logits = net(inputs)
    assert logits.shape == (1, 2, len(TASKS)) and np.isfinite(logits.numpy()).all()
    keys = net.encode_user(inputs)["history_keys"]
    assert keys.shape == (1, 4, 16, 4, 64)
    assert net.encoder.attentions[0].head_dim == 64


def test_model_config_round_trip_gives_the_same_model():
    net = build_model(tiny_config(head="dcn"), TASKS, clip_norm=0.5)
    clone = RankingModel.from_config(net.get_config())
    clone.build(None)
    clone.set_weights(net.get_weights())
    inputs, _ = random_requests()
    np.testing.assert_allclose(clone(inputs), net(inputs), atol=SAME_PATH_ATOL)
    assert clone.clip_norm == 0.5 and clone.task_names == list(TASKS)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="model.encoder: 'nope' is not allowed; allowed "
                       "values: .*'stca'"):
        build_model(ModelConfig(encoder="nope"), TASKS)
    with pytest.raises(ConfigError, match="model.longer.merge_mode"):
        build_model(ModelConfig(encoder="longer", longer=LongerConfig(merge_k=1,
                                                                      merge_mode="innertrans")),
                    TASKS)
    with pytest.raises(ConfigError, match="model.recompute: True is invalid"):
        build_model(ModelConfig(encoder="din", recompute=True), TASKS)
    with pytest.raises(ValueError, match="tasks"):
        build_model(ModelConfig(), [])


@pytest.mark.parametrize("encoder,head", [(e, "rankmixer") for e in ENCODERS]
                         + [("stca", "dcn"), ("stca", "mlp")])
def test_build_model_creates_every_variable(encoder, head):
    net = build_model(tiny_config(encoder=encoder, head=head, use_user_id=False), TASKS)
    before = [v.name for v in net.variables]
    net(random_requests()[0])
    assert [v.name for v in net.variables] == before


@pytest.mark.parametrize("form", ["reordered", "projected"])
def test_inference_with_match_pairs_equals_the_dense_matches(form, monkeypatch):
    """Outside training STCA gets the ID matches as pairs (applied sparsely); the scores
    equal those from the dense [B, F, M, L] matches of training, called and cached."""
    net = build_model(tiny_config(attention_form=form), TASKS)
    inputs, _ = random_requests(batch=4, length=40, num_targets=6, seed=3)
    rng = np.random.default_rng(3)
    ids = {k: v.numpy() for k, v in inputs.items()}
    for name, vocab in (("item_id", 30), ("author_id", 20)):  # collisions: some matches
        for side in ("hist", "tgt"):
            ids[f"{side}_{name}"] = rng.integers(1, vocab, size=ids[f"{side}_{name}"].shape)
    inputs = {k: tf.constant(v) for k, v in ids.items()}
    pairs = net._id_match(inputs, inputs, training=False)
    # Enough pairs to matter, few enough for the sparse form (n d <= B M L; beta = 8 >= 0).
    assert 10 < int(tf.size(pairs.row)) and int(tf.size(pairs.row)) * 16 <= 4 * 6 * 40
    with_pairs = net(inputs, training=False)
    cached = net.score_candidates(net.encode_user(inputs), inputs)
    monkeypatch.setattr(type(net.encoder), "supports_match_pairs", False)
    assert net._id_match(inputs, inputs, training=False).shape == (4, 2, 6, 40)
    dense = valid_logits(net(inputs, training=False), inputs)
    np.testing.assert_allclose(valid_logits(with_pairs, inputs), dense, atol=REORDER_ATOL)
    np.testing.assert_allclose(valid_logits(cached, inputs), dense, atol=REORDER_ATOL)
