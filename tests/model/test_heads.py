import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

import model  # noqa: F401
from model import precision
from model.heads import DCNHead, MLPHead, RankMixerHead, build_head
from tests.helpers.layers import REORDER_ATOL, assert_config_round_trip
from tests.helpers.model import tiny_config

HEADS = [lambda **kw: RankMixerHead(3, num_tokens=4, token_dim=8, width=12, num_layers=2, **kw),
         lambda **kw: DCNHead(3, num_tokens=4, token_dim=8, width=12, num_layers=2, **kw),
         lambda **kw: MLPHead(3, num_tokens=4, token_dim=8, width=12, num_layers=2, **kw)]


@pytest.mark.parametrize("make", HEADS)
def test_heads_give_float32_logits_per_target_and_task(make):
    tokens = tf.random.stateless_normal([2, 5, 4, 8], seed=[0, 0])
    head = make(dtype=precision.policy("mixed_bfloat16"))
    logits = head(tokens)
    assert logits.shape == (2, 5, 3) and logits.dtype == tf.float32
    assert all(v.dtype == tf.float32 for v in head.variables)
    # Targets are scored independently: changing target 1's tokens leaves target 0 alone.
    other = tf.concat([tokens[:, :1], tokens[:, 1:] + 1.0], axis=1)
    np.testing.assert_allclose(head(other)[:, 0], logits[:, 0], atol=REORDER_ATOL)


@pytest.mark.parametrize("make", HEADS)
def test_heads_round_trip(make):
    assert_config_round_trip(make(dropout=0.1), tf.ones([1, 2, 4, 8]))


def test_head_details():
    assert RankMixerHead(1, num_tokens=3, token_dim=8, width=16).hidden_width == 18
    dcn = DCNHead(1, num_tokens=2, token_dim=4, num_layers=3)
    dcn(tf.ones([1, 1, 2, 4]))
    assert sum(isinstance(layer, tfrs.layers.dcn.Cross) for layer in dcn.crosses) == 3
    for name, cls in (("rankmixer", RankMixerHead), ("dcn", DCNHead), ("mlp", MLPHead)):
        assert isinstance(build_head(tiny_config(head=name), 2, 4), cls)
