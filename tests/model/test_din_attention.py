import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401
from model.layers.din_attention import DINAttention
from tests.helpers.layers import REFERENCE_ATOL, assert_config_round_trip


def test_decomposed_first_layer_equals_explicit_concatenation():
    rng = np.random.default_rng(0)
    events = rng.normal(size=(2, 5, 6)).astype(np.float32)
    targets = rng.normal(size=(2, 3, 6)).astype(np.float32)
    mask = np.arange(5)[None, :] < np.array([[3], [5]])
    layer = DINAttention(6, hidden_units=(7, 4))
    out = layer(events, targets, mask).numpy()
    # Naive DIN: MLP on [h; t; h - t; h * t] for every (target, event) pair.
    h = np.broadcast_to(events[:, None], (2, 3, 5, 6))
    t = np.broadcast_to(targets[:, :, None], (2, 3, 5, 6))
    hidden = np.concatenate([h, t, h - t, h * t], -1)
    for i, dense in enumerate([layer.first] + layer.rest):
        hidden = hidden @ dense.kernel.numpy() + dense.bias.numpy()
        if i < len(layer.rest):
            hidden = 1 / (1 + np.exp(-hidden))
    scores = np.where(mask[:, None], hidden[..., 0], -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    np.testing.assert_allclose(out, weights @ events, atol=REFERENCE_ATOL)


def test_round_trip_and_argument_checks():
    events, targets, mask = tf.ones([1, 3, 4]), tf.ones([1, 2, 4]), tf.constant([[1, 1, 0]]) > 0
    assert_config_round_trip(DINAttention(4, (5,), activation="relu"), events, targets, mask)
    with pytest.raises(ValueError):
        DINAttention(4, hidden_units=(0,))
