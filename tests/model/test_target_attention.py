import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401
from model.layers.target_attention import TargetAttention
from tests.helpers.layers import REFERENCE_ATOL, assert_config_round_trip


def test_matches_numpy_multi_head_attention():
    rng = np.random.default_rng(0)
    events = rng.normal(size=(2, 6, 8)).astype(np.float32)
    targets = rng.normal(size=(2, 3, 8)).astype(np.float32)
    mask = np.arange(6)[None, :] < np.array([[4], [0]])
    layer = TargetAttention(8, 2)
    out = layer(events, targets, mask).numpy()
    w_q = layer.query.kernel.numpy()
    w_k, w_v = np.split(layer.key_value.kernel.numpy(), 2, axis=1)
    q = (targets @ w_q).reshape(2, 3, 2, 4)
    k, v = (events @ w_k).reshape(2, 6, 2, 4), (events @ w_v).reshape(2, 6, 2, 4)
    scores = np.einsum("bmhk,blhk->bmhl", q, k) / 2.0
    scores = np.where(mask[:, None, None], scores, -1e30)
    weights = np.exp(scores - scores.max(-1, keepdims=True)) * mask[:, None, None]
    weights = weights / np.maximum(weights.sum(-1, keepdims=True), 1e-30)  # empty -> 0
    context = np.einsum("bmhl,blhk->bmhk", weights, v).reshape(2, 3, 8)
    np.testing.assert_allclose(out, context @ layer.out.kernel.numpy(),
                               atol=REFERENCE_ATOL)
    np.testing.assert_array_equal(out[1], np.zeros((3, 8)))  # empty history


def test_cached_projection_path_equals_call_and_round_trip():
    events, targets = tf.ones([1, 4, 4]), tf.ones([1, 2, 4])
    mask = tf.constant([[True, True, True, False]])
    layer = TargetAttention(4, 2)
    keys, values = layer.project_history(events)
    assert keys.shape == (1, 2, 4, 2)
    np.testing.assert_allclose(layer.attend(keys, values, targets, mask),
                               layer(events, targets, mask))
    assert_config_round_trip(TargetAttention(4, 2), events, targets, mask)
    with pytest.raises(ValueError):
        TargetAttention(5, 2)
