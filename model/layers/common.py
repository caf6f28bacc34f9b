"""Small helpers shared by the layers (initializers, argument checks)."""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras


def clone_initializer(initializer):
    """A fresh copy, so two weights never share one (possibly seeded) initializer object."""
    initializer = keras.initializers.get(initializer)
    return initializer.__class__.from_config(initializer.get_config())


def check_positive(**values) -> None:
    for name, value in values.items():
        if value is None or int(value) < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def check_heads_divide(d_model: int, num_heads: int) -> None:
    """Multi-head layers split d_model into num_heads equal heads."""
    if num_heads < 1 or d_model % num_heads:
        raise ValueError(f"num_heads ({num_heads}) must divide d_model ({d_model})")


def ensure_built(layer, input_shape=None) -> None:
    """Builds a layer whose weights do not depend on the input shape, before a method
    other than `call` uses it (variables are created eagerly, even inside tf.function)."""
    if not layer.built:
        with tf.init_scope():
            layer.build(input_shape)


def per_token_initializer(initializer, tokens: int, fan_in: int, fan_out: int):
    """Initializes a [tokens, fan_in, fan_out] kernel as `tokens` independent
    [fan_in, fan_out] dense kernels (so fan-in / fan-out scaling is per token)."""
    def init(shape, dtype=None):
        return tf.stack([clone_initializer(initializer)((fan_in, fan_out), dtype=dtype)
                         for _ in range(tokens)])
    return init


def unstack_axis1(stacked: tf.Tensor, n: int) -> list[tf.Tensor]:
    """[B, n, ...] -> n tensors [B, ...] (a cache's per-layer K / V), without copying
    when B = 1.

    TensorFlow's strided slice copies unless it cuts along axis 0, so `stacked[:, i]`
    copies the whole slice (3 MB each for STCA's keys and values at L = 4096, d = 64).
    With one row, which is every served request, the slices are taken along axis 0 of
    a [n, ...] reshape instead and share the input's buffer; other batches copy.

    Example:
        keys = unstack_axis1(keys, 3)   # [B, 3, h, L, d_h] -> 3 x [B, h, L, d_h]
    """
    def one_row():
        flat = tf.reshape(stacked, tf.shape(stacked)[1:])
        return [flat[i:i + 1] for i in range(n)]

    def rows():
        return [stacked[:, i] for i in range(n)]
    if stacked.shape[0] is not None:    # static batch: no branch
        return one_row() if stacked.shape[0] == 1 else rows()
    return tf.cond(tf.equal(tf.shape(stacked)[0], 1), one_row, rows)
