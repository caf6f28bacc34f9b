import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import model  # noqa: F401
from core.config import ConfigError
from model import build_model, precision, registry
from tests.helpers.model import TASKS, random_requests, tiny_config

ENCODERS = registry.encoder_names()  # every registered encoder
# bfloat16 keeps 8 significand bits (relative rounding 2^-9 per op); over the embedding,
# encoder and head the logits (|logit| < 2 here) stay within this absolute tolerance.
BF16_LOGIT_TOLERANCE = 0.05
FP16_LOGIT_TOLERANCE = 0.01


def _pair(encoder, name):
    reference = build_model(tiny_config(encoder=encoder, d_model=32), TASKS)
    mixed = build_model(tiny_config(encoder=encoder, d_model=32, precision=name), TASKS)
    mixed.set_weights(reference.get_weights())
    return reference, mixed


@pytest.mark.parametrize("encoder", ENCODERS)
def test_mixed_precision_predictions_match_float32_within_tolerance(encoder):
    inputs, _ = random_requests(batch=4, length=64, num_targets=8, seed=1)
    for name, tolerance in (("mixed_bfloat16", BF16_LOGIT_TOLERANCE),
                            ("mixed_float16", FP16_LOGIT_TOLERANCE)):
        reference, mixed = _pair(encoder, name)
        logits = mixed(inputs)
        assert logits.dtype == tf.float32
        assert all(v.dtype == tf.float32 for v in mixed.variables)
        np.testing.assert_allclose(logits, reference(inputs), rtol=0, atol=tolerance)


def test_bfloat16_training_step_is_finite_and_keeps_float32_variables_and_softmax():
    net = build_model(tiny_config(precision="mixed_bfloat16", recompute=True), TASKS)
    net.compile(optimizer=keras.optimizers.Adam(1e-3))
    batch = random_requests(batch=3, length=16, num_targets=4, seed=2)
    with tf.GradientTape() as tape:
        loss = net.compute_loss(batch, training=True)
    grads = tape.gradient(loss, net.trainable_variables)
    assert np.isfinite(loss.numpy())
    assert all(np.isfinite(tf.convert_to_tensor(g).numpy()).all() for g in grads)
    assert all(g.dtype == tf.float32 for g in grads)
    logs = tf.function(net.train_step)(batch)
    assert np.isfinite(logs["loss"].numpy()) and np.isfinite(logs["grad_norm"].numpy())
    assert all(v.dtype == tf.float32 for v in net.variables)
    assert net.encode_user(batch[0])["history_keys"].dtype == tf.bfloat16
    # Inference graph, with the ops inside tf.cond branches (the unpadded-batch softmax).
    graph_def = tf.function(net.call).get_concrete_function(batch[0]).graph.as_graph_def()
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]

    def dtypes(op_type):
        return {tf.as_dtype(n.attr["T"].type) for n in nodes if n.op == op_type}
    assert dtypes("Softmax") == {tf.float32}
    assert tf.bfloat16 in dtypes("BatchMatMulV2")


def test_float16_step_with_loss_scaling_is_finite():
    net = build_model(tiny_config(precision="mixed_float16"), TASKS, clip_norm=1.0)
    net.compile(optimizer=precision.wrap_optimizer(keras.optimizers.Adam(1e-3),
                                                   "mixed_float16"))
    before = [w.copy() for w in net.get_weights()]
    step = tf.function(net.train_step)
    batch = random_requests(batch=3, length=16, num_targets=4)
    # Dynamic loss scaling starts at 2^15 and halves (skipping the update) on overflow.
    for _ in range(10):
        logs = step(batch)
        assert np.isfinite(logs["loss"].numpy()) and float(logs["loss_scale"]) >= 1
        if any(not np.array_equal(a, b) for a, b in zip(before, net.get_weights())):
            break
    else:
        pytest.fail("no update was applied in 10 loss-scaled steps")
    assert np.isfinite(logs["grad_norm"].numpy())
    assert all(np.isfinite(w).all() for w in net.get_weights())


def test_float16_without_loss_scaling_is_refused():
    net = build_model(tiny_config(precision="mixed_float16"), TASKS)
    net.compile(optimizer=keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="LossScaleOptimizer"):
        net.train_step(random_requests(batch=2, length=4, num_targets=2))


def test_policy_and_optimizer_wrapping():
    assert precision.policy("mixed_bfloat16").compute_dtype == "bfloat16"
    assert precision.policy("mixed_bfloat16").variable_dtype == "float32"
    adam = keras.optimizers.Adam()
    assert precision.wrap_optimizer(adam, "mixed_bfloat16") is adam
    wrapped = precision.wrap_optimizer(adam, "mixed_float16")
    assert precision.is_loss_scaled(wrapped)
    assert precision.wrap_optimizer(wrapped, "mixed_float16") is wrapped
    with pytest.raises(ConfigError, match="model.precision: 'fp8' is not allowed"):
        precision.policy("fp8")
    assert keras.mixed_precision.global_policy().name == "float32"  # nothing leaked
