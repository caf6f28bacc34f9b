import collections
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401
from model import build_model
from model.layers.history_view import HistoryView
from model.recompute import recompute
from tests.helpers.env import REPO, subprocess_env
from tests.helpers.model import TASKS, random_requests, tiny_config


def _grads(net, batch):
    with tf.GradientTape() as tape:
        loss = net.compute_loss(batch, training=True)
    return [tf.convert_to_tensor(g) for g in tape.gradient(loss, net.trainable_variables)]


@pytest.mark.parametrize("encoder", ["stca", "transformer"])
def test_recomputed_gradients_equal_stored_ones(encoder):
    plain = build_model(tiny_config(encoder=encoder), TASKS)
    recomputed = build_model(tiny_config(encoder=encoder, recompute=True), TASKS)
    recomputed.set_weights(plain.get_weights())
    batch = random_requests(batch=3, length=10, num_targets=4, seed=8)
    expected = _grads(plain, batch)
    for grads in (_grads(recomputed, batch),
                  tf.function(lambda: _grads(recomputed, batch))()):  # eager and graph
        assert len(grads) == len(expected)
        assert max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(grads, expected)) <= 1e-5


def test_each_history_block_reruns_once_in_the_backward_pass(monkeypatch):
    calls = collections.Counter()
    original = HistoryView.call

    def counting_call(self, events):
        calls[self.name] += 1
        return original(self, events)

    monkeypatch.setattr(HistoryView, "call", counting_call)
    batch = random_requests(batch=2, length=6, num_targets=2, seed=9)
    for flag, per_view in ((False, 1), (True, 2)):
        net = build_model(tiny_config(num_layers=3, recompute=flag), TASKS)
        calls.clear()
        _grads(net, batch)  # eager: one forward + one backward
        assert sorted(calls.values()) == [per_view] * 3, (flag, calls)


def test_recompute_helper_handles_variables_and_tensor_inputs():
    w = tf.Variable([[2.0]])

    def block(x):
        return tf.tanh(x @ w)

    x = tf.constant([[0.3], [0.7]])
    results = []
    for fn in (block, recompute(block)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(fn(x) ** 2)
        results.append(tape.gradient(y, [x, w]))
    for a, b in zip(*results):
        # The same eager ops on the same shapes, run twice: equal up to an ulp of O(1) values.
        np.testing.assert_allclose(a, b, atol=1e-7)


def _grappler_op_counts(recompute_flag):
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.grappler import tf_optimizer
    net = build_model(tiny_config(num_layers=3, recompute=recompute_flag), TASKS)
    batch = random_requests(batch=2, length=6, num_targets=2, seed=10)
    graph = tf.function(lambda: _grads(net, batch)).get_concrete_function().graph
    meta = tf.compat.v1.train.export_meta_graph(graph_def=graph.as_graph_def(), graph=graph)
    for out in graph.outputs:
        meta.collection_def["train_op"].node_list.value.append(out.name)
    optimized = tf_optimizer.OptimizeGraph(config_pb2.ConfigProto(), meta, graph_id=b"g")
    return collections.Counter(n.op for n in optimized.node)


def test_recomputation_survives_grappler():
    """CSE must not merge the recomputed forward ops back into the stored forward."""
    plain, recomputed = _grappler_op_counts(False), _grappler_op_counts(True)
    assert plain["Softmax"] == 3 and recomputed["Softmax"] == 6


MEMORY_CHECK = textwrap.dedent("""
    import json, os, sys
    import model, tensorflow as tf
    from model import build_model
    from tests.helpers.model import TASKS, random_requests, tiny_config
    batch = random_requests(batch=2, length=4096, num_targets=8, seed=11,
                            hist_len=[4096, 4096], tgt_len=[8, 8])
    peaks = {}
    for flag in (False, True):
        net = build_model(tiny_config(d_model=32, num_layers=3, recompute=flag), TASKS)
        net.compile(optimizer=tf.keras.optimizers.SGD(0.01))
        step = tf.function(net.train_step)
        step(batch)
        current = tf.config.experimental.get_memory_info("CPU:0")["current"]
        tf.config.experimental.reset_memory_stats("CPU:0")
        step(batch)
        peaks[str(flag)] = tf.config.experimental.get_memory_info("CPU:0")["peak"] - current
    print(json.dumps(peaks))
""")


@pytest.mark.slow  # a child process
def test_recomputation_lowers_the_peak_memory_of_a_training_step():
    out = subprocess.run([sys.executable, "-c", MEMORY_CHECK], cwd=REPO, timeout=240,
                         env=subprocess_env(TF_CPU_ALLOCATOR_USE_BFC="true"),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    peaks = json.loads(out.stdout.strip().splitlines()[-1])
    assert peaks["True"] < 0.7 * peaks["False"], peaks
