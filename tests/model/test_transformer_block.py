import numpy as np
import pytest

import model  # noqa: F401
from model.layers.transformer_block import TransformerBlock
from tests.helpers.layers import NORM_ATOL, SAME_PATH_ATOL, assert_config_round_trip


def _ln(x):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)


def test_matches_numpy_pre_norm_block():
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(2, 5, 8)).astype(np.float32)
    mask = np.arange(5)[None, :] < np.array([[3], [5]])
    layer = TransformerBlock(8, 2)
    out = layer(tokens, mask).numpy()
    q, k, v = np.split(_ln(tokens) @ layer.qkv.kernel.numpy(), 3, axis=-1)
    split = lambda x: x.reshape(2, 5, 2, 4)  # noqa: E731
    scores = np.einsum("bshk,bthk->bhst", split(q), split(k)) / 2.0
    scores = np.where(mask[:, None, None], scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    context = np.einsum("bhst,bthk->bshk", weights, split(v)).reshape(2, 5, 8)
    x = tokens + context @ layer.out.kernel.numpy()
    expected = x + layer.ffn(_ln(x).astype(np.float32)).numpy()
    np.testing.assert_allclose(out, expected, atol=NORM_ATOL)


def test_masked_keys_do_not_influence_valid_tokens_and_round_trip():
    rng = np.random.default_rng(1)
    tokens = rng.normal(size=(1, 4, 4)).astype(np.float32)
    mask = np.array([[True, True, False, True]])
    layer = TransformerBlock(4, 1)
    base = layer(tokens, mask).numpy()
    tokens[0, 2] = 100.0
    np.testing.assert_allclose(layer(tokens, mask).numpy()[0, [0, 1, 3]], base[0, [0, 1, 3]],
                               atol=SAME_PATH_ATOL)
    assert_config_round_trip(TransformerBlock(4, 2, ffn_mult=1), tokens, mask)
    with pytest.raises(ValueError):
        TransformerBlock(4, 3)
