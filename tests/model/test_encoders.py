import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401
from model.encoders import (HIST_LEN, DINEncoder, LongerEncoder, MeanEncoder, STCAEncoder,
                            TargetAttentionEncoder, TransformerEncoder, build_encoder)
from tests.helpers.layers import REORDER_ATOL, SAME_PATH_ATOL, assert_config_round_trip
from tests.helpers.model import tiny_config

ENCODERS = [lambda: STCAEncoder(8, 2, 2), lambda: LongerEncoder(8, 2, merge_k=2, recent_k=2),
            lambda: TargetAttentionEncoder(8, 2),
            lambda: DINEncoder(8, (6, 3)), lambda: TransformerEncoder(8, 2, 2),
            lambda: MeanEncoder(8)]


def _inputs(seed=0, length=7):
    rng = np.random.default_rng(seed)
    events = tf.constant(rng.normal(size=(3, length, 8)), tf.float32)
    targets = tf.constant(rng.normal(size=(3, 4, 8)), tf.float32)
    mask = tf.sequence_mask([length, 3, 0], length)
    return events, mask, targets


@pytest.mark.parametrize("make", ENCODERS)
def test_score_of_cache_equals_call_and_matches_the_spec(make):
    encoder = make()
    events, mask, targets = _inputs()
    z = encoder(events, mask, targets)
    cache = encoder.encode_user(events, mask)
    spec = encoder.cache_spec()
    assert set(cache) == set(spec)
    for name, tensor in cache.items():
        assert spec[name].shape.is_compatible_with(tensor.shape)
        assert spec[name].dtype == tensor.dtype
    cache[HIST_LEN] = tf.constant([7, 3, 0], tf.int32)
    assert z.shape == (3, 4, 8) and np.isfinite(z.numpy()).all()
    np.testing.assert_allclose(encoder.score(cache, targets), z, atol=REORDER_ATOL)


@pytest.mark.parametrize("make", ENCODERS)
def test_encoder_config_round_trip(make):
    assert_config_round_trip(make(), *_inputs())


def test_stca_z_follows_the_query_fusion_equations():
    encoder = STCAEncoder(8, 2, 3)
    events, mask, targets = _inputs(1)
    z = encoder(events, mask, targets)
    outputs = []
    for i in range(3):
        q = encoder.queries[i](outputs + [targets])            # q(1) = LN(SwiGLU(x_t)), ...
        outputs.append(encoder.attentions[i](encoder.views[i](events), q, mask))
    np.testing.assert_allclose(z, encoder.output_token(outputs + [targets]),
                               atol=SAME_PATH_ATOL)
    assert encoder.queries[0].project is None and encoder.queries[2].num_inputs == 3
    assert not encoder.output_token.normalize


@pytest.mark.parametrize("recompute", [False, True])
def test_stca_training_call_takes_the_reordered_form(recompute):
    """`training` reaches every attention layer (also through recomputation): at M = 12
    targets, d = 8, h = 2 "auto" picks projected for inference (M (h - 1) > d) and
    reordered for training (its Einsum u = W_K q), with the same outputs."""
    encoder = STCAEncoder(8, 2, 2, recompute=recompute)
    events, mask, _ = _inputs(2)
    targets = tf.random.stateless_normal([3, 12, 8], seed=[2, 3])

    def graph_ops(training):
        fn = tf.function(lambda e, m, t: encoder(e, m, t, training=training))
        return {op.type for op in fn.get_concrete_function(events, mask, targets)
                .graph.get_operations()}

    assert "Einsum" in graph_ops(True) and "Einsum" not in graph_ops(False)
    np.testing.assert_allclose(encoder(events, mask, targets, training=True),
                               encoder(events, mask, targets, training=False),
                               atol=REORDER_ATOL)


def test_build_encoder_maps_the_config():
    expected = {"stca": STCAEncoder, "longer": LongerEncoder,
                "target_attention": TargetAttentionEncoder,
                "din": DINEncoder, "transformer": TransformerEncoder, "mean": MeanEncoder}
    for name, cls in expected.items():
        assert type(build_encoder(tiny_config(encoder=name))) is cls
    assert build_encoder(tiny_config(recompute=True)).recompute
