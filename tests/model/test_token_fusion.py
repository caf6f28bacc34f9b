import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401
from model.layers.token_fusion import TokenFusion
from tests.helpers.layers import NORM_ATOL, REFERENCE_ATOL, assert_config_round_trip


def _ln(h):
    return (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-6)


def test_first_query_has_no_projection():
    x_t = tf.random.stateless_normal([2, 3, 8], seed=[0, 0])
    layer = TokenFusion(8, num_inputs=1)
    np.testing.assert_allclose(layer([x_t]), _ln(layer.ffn(x_t).numpy()),
                               atol=NORM_ATOL)
    assert layer.project is None


def test_later_queries_project_the_concatenation_and_output_token_skips_norm():
    o1, x_t = (tf.random.stateless_normal([2, 3, 8], seed=[i, 1]) for i in range(2))
    layer = TokenFusion(8, num_inputs=2, normalize=False)
    concat = tf.concat([o1, x_t], -1)
    np.testing.assert_allclose(layer([o1, x_t]), layer.ffn(concat @ layer.project.kernel),
                               atol=REFERENCE_ATOL)
    with pytest.raises(ValueError, match="expects 2 tokens"):
        layer([x_t])


def test_round_trip():
    a = tf.ones([1, 2, 4])
    assert_config_round_trip(TokenFusion(4, num_inputs=3, ffn_mult=1), [a, a, a])
