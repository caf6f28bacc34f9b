import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import model  # noqa: F401
from model.layers.common import (check_positive, clone_initializer, ensure_built,
                                 per_token_initializer, unstack_axis1)
from model.layers.swiglu import SwiGLU


def test_clone_initializer_gives_a_new_equal_object():
    init = keras.initializers.GlorotUniform(seed=3)
    clone = clone_initializer(init)
    assert clone is not init and clone.get_config() == init.get_config()


def test_per_token_initializer_scales_each_token_like_a_dense_kernel():
    kernel = per_token_initializer(keras.initializers.GlorotUniform(), 3, 40, 60)((3, 40, 60))
    limit = np.sqrt(6 / (40 + 60))
    assert kernel.shape == (3, 40, 60) and float(tf.reduce_max(tf.abs(kernel))) <= limit
    assert not np.allclose(kernel[0], kernel[1])


def test_ensure_built_creates_variables_eagerly_inside_tf_function():
    layer = SwiGLU(4)

    @tf.function
    def build_then_call(x):
        ensure_built(layer, (None, 4))
        return layer(x)

    assert build_then_call(tf.ones([1, 4])).shape == (1, 4) and layer.built
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        check_positive(width=0)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("static", [True, False])
def test_unstack_axis1_gives_the_slices_of_axis1(batch, static):
    """Each of the n outputs is stacked[:, i], for one row (the reshape path) and several,
    with the batch known when tracing or not (the tf.cond path), bfloat16 too."""
    rng = np.random.default_rng(batch)
    for dtype in (tf.float32, tf.bfloat16):
        stacked = tf.cast(rng.normal(size=(batch, 3, 2, 5, 4)), dtype)
        spec = tf.TensorSpec([batch if static else None, 3, 2, None, 4], dtype)
        traced = []

        def split(x):
            parts = unstack_axis1(x, 3)
            traced.extend(p.shape.as_list() for p in parts)
            return parts
        parts = tf.function(split, input_signature=[spec])(stacked)
        # Static shapes survive (the attention reads the value width from them).
        assert traced == [[batch if static else None, 2, None, 4]] * 3
        assert len(parts) == 3
        for i, part in enumerate(parts):
            assert part.shape == (batch, 2, 5, 4) and part.dtype == dtype
            np.testing.assert_array_equal(part.numpy(), stacked.numpy()[:, i])
