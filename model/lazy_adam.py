"""Adam with row-sparse updates for embedding tables ("lazy Adam").

Keras' Adam applies a gradient that arrives as `tf.IndexedSlices` (an embedding lookup's
gradient) densely: it decays both moment slots of every row and rewrites every row of the
table, so a step that touched a few thousand rows of a 200k-row table reads and writes
all of them three times. `LazyAdam` updates only the rows the step touched: their moments
and values follow Adam's rule exactly as dense Adam would on that step; rows the step did
not touch keep their moments and values (dense Adam would keep decaying their moments
and moving them by the leftover momentum). Dense gradients take Keras' Adam unchanged.

Everything has static shapes (sort + segment sums instead of `tf.unique`), so the update
compiles with XLA; duplicate indices (one item looked up twice) are summed first, as the
dense gradient would be. Slots are Adam's own (`m`, `v`), so checkpoints of either
optimizer restore into the other.

Example:
    opt = LazyAdam(learning_rate=2e-3)
    model.compile(optimizer=opt)
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras


def sum_duplicates(indices: tf.Tensor, values: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Sorted indices [n] and, for each, the sum of the values of all its duplicates [n, ...].

    Duplicates of one index carry identical rows, so a scatter *update* with them writes
    the same value several times (deterministic); static shapes, no tf.unique.
    """
    order = tf.argsort(indices)
    indices = tf.gather(indices, order)
    values = tf.gather(values, order)
    first = tf.concat([tf.ones([1], tf.bool), indices[1:] != indices[:-1]], axis=0)
    segment = tf.cumsum(tf.cast(first, tf.int32)) - 1
    summed = tf.math.unsorted_segment_sum(values, segment, tf.shape(indices)[0])
    return indices, tf.gather(summed, segment)


@keras.utils.register_keras_serializable(package="stca")
class LazyAdam(keras.optimizers.Adam):
    """Adam whose IndexedSlices updates touch only the looked-up rows (see module doc).

    Args: as `keras.optimizers.Adam` (amsgrad is not supported for sparse updates).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.amsgrad:
            raise ValueError("LazyAdam does not support amsgrad")

    def _deduplicate_sparse_grad(self, grads):
        # Keras sums duplicate indices with tf.unique; compiled with XLA, what it returned
        # broke the scatter *updates* below (a jit-compiled step diverged from the same
        # step as a graph; Keras' own scatter-adds were unaffected). update_step sums
        # duplicates itself, with static shapes.
        return grads

    def update_step(self, gradient, variable):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable)
        dtype = variable.dtype
        lr = tf.cast(self.learning_rate, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        alpha = lr * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
        epsilon = self.epsilon * tf.sqrt(1 - tf.pow(beta_2, step)) \
            if getattr(self, "adaptive_epsilon", False) else self.epsilon
        key = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[key], self._velocities[key]

        indices, grad = sum_duplicates(gradient.indices, tf.cast(gradient.values, dtype))
        m_rows = beta_1 * tf.gather(m, indices) + (1 - beta_1) * grad
        v_rows = beta_2 * tf.gather(v, indices) + (1 - beta_2) * tf.square(grad)
        rows = tf.gather(variable, indices) - alpha * m_rows / (tf.sqrt(v_rows) + epsilon)
        m.scatter_update(tf.IndexedSlices(m_rows, indices))
        v.scatter_update(tf.IndexedSlices(v_rows, indices))
        variable.scatter_update(tf.IndexedSlices(rows, indices))
