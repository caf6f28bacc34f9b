import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import model  # noqa: F401
from model import build_model
from tests.helpers.env import REPO, subprocess_env
from tests.helpers.model import TASKS, random_requests, tiny_config


def _bce(labels, logits):
    return np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))


def test_loss_is_masked_bce_summed_over_valid_targets_over_their_count():
    net = build_model(tiny_config(), TASKS)
    inputs, labels = random_requests(batch=4, length=6, num_targets=5, seed=3)
    logits = net(inputs).numpy().astype(np.float64)
    valid = np.arange(5)[None, :] < inputs["tgt_len"].numpy()[:, None]
    expected = sum(_bce(labels[t].numpy(), logits[..., i])[valid].sum() / valid.sum()
                   for i, t in enumerate(TASKS))
    loss = net.compute_loss((inputs, labels)).numpy()
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # Labels at padded targets are never read.
    flipped = {t: tf.where(valid, v, 1.0 - v) for t, v in labels.items()}
    np.testing.assert_allclose(net.compute_loss((inputs, flipped)).numpy(), loss, rtol=1e-6)


def test_auc_metrics_ignore_padded_targets():
    net = build_model(tiny_config(), TASKS)
    inputs, labels = random_requests(batch=6, length=6, num_targets=5, seed=4)
    valid = (np.arange(5)[None, :] < inputs["tgt_len"].numpy()[:, None])
    # Padded targets labelled positive would change the AUC if they were counted.
    labels = {t: tf.where(valid, v, 1.0) for t, v in labels.items()}
    net.compute_loss((inputs, labels))
    logits = net(inputs).numpy()
    results = {m.name: float(m.result()) for m in net.metrics}
    for i, task in enumerate(TASKS):
        reference = keras.metrics.AUC(from_logits=True)
        reference.update_state(labels[task].numpy()[valid], logits[..., i][valid])
        with_padding = keras.metrics.AUC(from_logits=True)
        with_padding.update_state(labels[task].numpy().ravel(), logits[..., i].ravel())
        assert results[f"auc_{task}"] == float(reference.result())
        assert results[f"auc_{task}"] != float(with_padding.result())


DISTRIBUTED_CHECK = textwrap.dedent("""
    import json, sys
    import model, numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from model import build_model
    from tests.helpers.model import TASKS, random_requests, tiny_config

    # Replica 0 gets 1 + 4 valid targets, replica 1 gets 4 + 4: an unequal split.
    inputs, labels = random_requests(batch=4, length=6, num_targets=4, seed=5,
                                     tgt_len=[1, 4, 4, 4])
    def half(i):
        sl = slice(2 * i, 2 * i + 2)
        return ({k: v[sl] for k, v in inputs.items()}, {k: v[sl] for k, v in labels.items()})

    def make(strategy):
        with strategy.scope():
            net = build_model(tiny_config(), TASKS, clip_norm=0.05)  # clipping is active
            net.compile(optimizer=tf.keras.optimizers.SGD(1.0))
        return net

    single = make(tf.distribute.get_strategy())
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    dist = make(mirrored)
    dist.set_weights(single.get_weights())
    start = single.get_weights()

    logs = single.train_step((inputs, labels))
    batches = mirrored.experimental_distribute_values_from_function(
        lambda ctx: half(ctx.replica_id_in_sync_group))
    dist_logs = mirrored.run(tf.function(dist.train_step), args=(batches,))
    dist_loss = mirrored.experimental_local_results(dist_logs["loss"])
    moved = max(float(np.abs(a - b).max()) for a, b in zip(single.get_weights(), start))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(single.get_weights(), dist.get_weights()))
    print(json.dumps({"loss": float(logs["loss"]), "dist_loss": [float(x) for x in dist_loss],
                      "grad_norm": float(logs["grad_norm"]), "moved": moved, "diff": diff}))
""")


@pytest.mark.slow  # a child process
def test_distributed_step_equals_single_process_step_over_the_global_batch():
    """Two replicas with unequal valid targets: loss divided by the GLOBAL valid count,
    gradients summed across replicas, then clipped by the global norm."""
    out = subprocess.run([sys.executable, "-c", DISTRIBUTED_CHECK], cwd=REPO, env=subprocess_env(),
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["grad_norm"] > 0.05 and result["moved"] > 1e-3
    assert result["diff"] < 1e-6, result
    np.testing.assert_allclose(result["dist_loss"], [result["loss"]] * 2, rtol=1e-6)
