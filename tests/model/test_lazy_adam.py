"""LazyAdam: Adam's rule on the rows a step touched, nothing on the others."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from model.lazy_adam import LazyAdam, sum_duplicates

ROWS, WIDTH = 50, 4


def _state(optimizer_cls, seed=0):
    """A table and an optimizer whose slots are non-zero on every row (one dense step)."""
    rng = np.random.default_rng(seed)
    table = tf.Variable(rng.normal(size=(ROWS, WIDTH)).astype(np.float32))
    opt = optimizer_cls(learning_rate=0.01)
    opt.apply_gradients([(tf.constant(rng.normal(size=(ROWS, WIDTH)), tf.float32), table)])
    return table, opt


def test_sum_duplicates_gives_every_duplicate_the_row_sum():
    indices, values = sum_duplicates(tf.constant([3, 1, 3, 0, 3]),
                                     tf.constant([[1.0], [2.0], [4.0], [8.0], [16.0]]))
    assert indices.numpy().tolist() == [0, 1, 3, 3, 3]
    assert values.numpy()[:, 0].tolist() == [8.0, 2.0, 21.0, 21.0, 21.0]


@pytest.mark.parametrize("jit", [False, True])
def test_touched_rows_follow_dense_adam_and_other_rows_stay(jit):
    rng = np.random.default_rng(1)
    indices = tf.constant([4, 17, 4, 33, 4, 0], tf.int32)        # duplicates are summed
    values = tf.constant(rng.normal(size=(6, WIDTH)), tf.float32)
    sparse = tf.IndexedSlices(values, indices, tf.constant([ROWS, WIDTH]))
    dense_table, dense_opt = _state(keras.optimizers.Adam)
    lazy_table, lazy_opt = _state(LazyAdam)
    np.testing.assert_array_equal(lazy_table.numpy(), dense_table.numpy())
    before = lazy_table.numpy().copy()
    lazy_m_before = lazy_opt._momentums[0].numpy().copy()

    dense_opt.apply_gradients([(tf.convert_to_tensor(sparse), dense_table)])
    step = tf.function(lambda: lazy_opt.apply_gradients([(sparse, lazy_table)]),
                       jit_compile=jit)
    step()
    touched = np.unique(indices.numpy())
    other = np.setdiff1d(np.arange(ROWS), touched)
    # Adam's rule on the touched rows. Keras writes it m + (g - m)(1 - b1), LazyAdam
    # b1 m + (1 - b1) g: the same value up to a float32 ulp of O(1) numbers (~1e-7).
    np.testing.assert_allclose(lazy_table.numpy()[touched], dense_table.numpy()[touched],
                               rtol=1e-6, atol=1e-7)
    for lazy_slot, dense_slot in ((lazy_opt._momentums[0], dense_opt._momentums[0]),
                                  (lazy_opt._velocities[0], dense_opt._velocities[0])):
        np.testing.assert_allclose(lazy_slot.numpy()[touched], dense_slot.numpy()[touched],
                                   rtol=1e-6, atol=1e-7)
    # Untouched rows keep values and moments bit for bit (dense Adam moves them).
    np.testing.assert_array_equal(lazy_table.numpy()[other], before[other])
    np.testing.assert_array_equal(lazy_opt._momentums[0].numpy()[other], lazy_m_before[other])
    assert not np.allclose(dense_table.numpy()[other], before[other])


def test_dense_gradients_take_keras_adam_unchanged():
    rng = np.random.default_rng(2)
    grad = tf.constant(rng.normal(size=(ROWS, WIDTH)), tf.float32)
    a, opt_a = _state(keras.optimizers.Adam)
    b, opt_b = _state(LazyAdam)
    opt_a.apply_gradients([(grad, a)])
    opt_b.apply_gradients([(grad, b)])
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_checkpoints_restore_across_adam_and_lazy_adam(tmp_path):
    table, opt = _state(LazyAdam)
    path = tf.train.Checkpoint(table=table, optimizer=opt).save(str(tmp_path / "ckpt"))
    other = tf.Variable(tf.zeros([ROWS, WIDTH]))
    dense = keras.optimizers.Adam(learning_rate=0.01)
    dense.build([other])
    tf.train.Checkpoint(table=other, optimizer=dense).restore(path).assert_consumed()
    np.testing.assert_array_equal(other.numpy(), table.numpy())
    np.testing.assert_array_equal(dense._velocities[0].numpy(), opt._velocities[0].numpy())


def test_amsgrad_is_refused():
    with pytest.raises(ValueError, match="amsgrad"):
        LazyAdam(amsgrad=True)


def test_train_optimizer_lazy_adam_builds_it(tmp_path):
    from core import config as config_lib
    from pipeline.train import make_optimizer
    cfg = config_lib.load_config(None, ["train.optimizer=lazy_adam"])
    assert isinstance(make_optimizer(cfg.train, "float32"), LazyAdam)
