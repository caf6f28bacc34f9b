"""`stca train` / `stca evaluate` end to end: buckets without retracing, resume after
SIGKILL, multi-worker training, bad configs. Real processes and real files."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from core import config as config_lib
from model import checkpoint as checkpoint_lib
from tests.helpers.env import subprocess_env
from tests.helpers.model import tiny_overrides
from tests.helpers.records import write_dataset

TINY = tiny_overrides(("click",))  # the tests' tiny model (tests/helpers/model.py)
# Every test trains (the 80-step `trained` run, train.run) or starts `stca` processes.
pytestmark = pytest.mark.slow

BUCKETED = ["train.length.mode=beta", "train.length.l_min=8", "train.length.l_max=256",
            "train.bucket_boundaries=[32,64,128,256]", "train.token_budget=2048",
            "train.learning_rate=0.005", "train.warmup_steps=5", "train.max_targets=8"]


def stca(*args, timeout=300, **env):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=subprocess_env(**env))


def sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def checkpoint_weights(ckpt_dir):
    reader = tf.train.load_checkpoint(ckpt_dir)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if k.startswith("model/") and "OPTIMIZER_SLOT" not in k}


def assert_weights_close(a, b, atol):
    assert a.keys() == b.keys() and len(a) > 10
    worst = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    assert worst <= atol, f"max weight difference {worst} > {atol}"
    return worst


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_dataset(str(tmp_path_factory.mktemp("records")), requests=160, files=2)


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """One in-process bucketed training run shared by the tests below."""
    from pipeline import train
    model_dir = str(tmp_path_factory.mktemp("model"))
    cfg = config_lib.load_config(None, TINY + BUCKETED + ["train.steps=80"])
    return model_dir, cfg, train.run(cfg, data_dir, model_dir)


def test_buckets_never_retrace_and_loss_falls(trained):
    model_dir, _, metrics = trained
    # Several padded lengths went through the one traced step function.
    assert len(metrics["padded_history_lengths"]) >= 3
    assert set(metrics["padded_history_lengths"]) <= {32, 64, 128, 256}
    assert metrics["step_traces"] == 1
    assert metrics["xla"] is False  # train.jit_compile=auto on a CPU
    assert metrics["steps"] == 80
    # Steady state: every step after the first of each padded length.
    assert metrics["steady_steps"] == 80 - len(metrics["padded_history_lengths"])
    assert 0 < metrics["valid_history_tokens_per_s"] < metrics["history_tokens_per_s"]
    assert set(metrics["first_step_extra_seconds"]) == set(metrics["padded_history_lengths"])
    assert metrics["final_loss_avg_last_20"] < 0.85 * metrics["loss_avg_first_20"]
    saved = json.load(open(os.path.join(model_dir, "train_metrics.json")))
    assert saved["steps"] == 80
    assert config_lib.load_config(os.path.join(model_dir, "config.yaml")).train.steps == 80
    assert tf.io.gfile.glob(os.path.join(model_dir, "logs", "train", "events.out.*"))


def test_evaluate_across_lengths_writes_report(trained, data_dir, tmp_path):
    model_dir, cfg, _ = trained
    out = tmp_path / "eval"
    proc = stca("evaluate", "--data", data_dir, "--model-dir", model_dir, "--lengths",
                "16,64,512", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.load(open(out / "eval_report.json"))
    assert [r["length"] for r in report["rows"]] == [16, 64, 512]
    # Every eval target is scored once at every length (32 eval requests, 1-8 targets).
    targets = {r["targets"] for r in report["rows"]}
    assert len(targets) == 1 and targets.pop() >= 32
    assert all(r["requests"] == 32 for r in report["rows"])
    used = [r["mean_history_used"] for r in report["rows"]]
    assert used[0] <= 16 < used[1] <= 64 < used[2]   # histories are 8..200 events
    assert (out / "auc_vs_length.png").stat().st_size > 1000
    assert "| 512 |" in (out / "eval_report.md").read_text()


def test_evaluation_scores_line_up_with_labels(trained, data_dir):
    """On the split it was fit on, evaluation must reproduce the fit: scores misaligned
    with their labels, targets or requests would give an AUC near 0.5."""
    from pipeline import evaluate
    model_dir, cfg, metrics = trained
    model, _ = checkpoint_lib.load_trained_model(cfg, model_dir)
    (row,) = evaluate.evaluate_lengths(model, cfg, data_dir, [256], split="train")
    assert row["click"]["auc"] > 0.8 and row["click"]["gauc"] > 0.75
    assert row["requests"] == 160


def test_one_read_scores_every_length_as_one_read_per_length_does(trained, data_dir):
    """evaluate_lengths reads the data once, batched for the longest length, and cuts each
    batch to the shorter ones: every score equals the one of a dataset made for that
    length (other batches, so compared as sorted score lists and AUCs)."""
    from core import input as input_lib
    from core import metrics as metrics_lib
    from pipeline import evaluate
    model_dir, cfg, _ = trained
    model, _ = checkpoint_lib.load_trained_model(cfg, model_dir)
    lengths = [16, 64, 200]
    one = evaluate.score_passes(model, input_lib.eval_dataset(data_dir, cfg, max(lengths)),
                                cfg.tasks, [(n, "real") for n in lengths] + [(16, "empty")])
    assert one["requests"] == 32
    for n in lengths:
        users, labels, scores, used, requests = evaluate.predict(
            model, input_lib.eval_dataset(data_dir, cfg, n), cfg.tasks)
        assert requests == 32 and len(users) == len(one["users"])
        np.testing.assert_allclose(np.sort(one["scores"][(n, "real")]["click"]),
                                   np.sort(scores["click"]), atol=1e-5)
        np.testing.assert_array_equal(np.sort(one["hist_lens"][(n, "real")]), np.sort(used))
        assert abs(metrics_lib.ranking_report(cfg.tasks, one["users"], one["labels"],
                                              one["scores"][(n, "real")])["click"]["auc"]
                   - metrics_lib.ranking_report(cfg.tasks, users, labels, scores)["click"]["auc"]
                   ) < 1e-4
    assert not np.allclose(one["scores"][(16, "empty")]["click"],
                           one["scores"][(16, "real")]["click"])
    assert (one["hist_lens"][(16, "empty")] == 0).all()


RESUME = TINY + ["train.length.mode=fixed", "train.length.l_min=8", "train.length.l_max=64",
                 "train.bucket_boundaries=[64]", "train.token_budget=1024",
                 "train.deterministic=true", "train.steps=300",
                 "train.checkpoint_every=20", "train.max_targets=8"]


def test_resume_after_sigkill_matches_uninterrupted_run(data_dir, tmp_path):
    reference = tmp_path / "reference"
    proc = stca("train", "--data", data_dir, "--model-dir", str(reference), *sets(RESUME))
    assert proc.returncode == 0, proc.stderr[-3000:]

    killed = tmp_path / "killed"
    args = [sys.executable, "-m", "pipeline.cli", "train", "--data", data_dir,
            "--model-dir", str(killed), *sets(RESUME)]
    log = open(tmp_path / "killed.log", "w")
    child = subprocess.Popen(args, env=subprocess_env(), stdout=log, stderr=log)
    state = killed / "checkpoints" / "checkpoint"
    deadline = time.time() + 120
    while time.time() < deadline and child.poll() is None:
        if state.exists() and "ckpt-" in state.read_text():
            step = tf.train.get_checkpoint_state(str(state.parent)).model_checkpoint_path
            if int(step.rsplit("-", 1)[1]) >= 40:
                break
        time.sleep(0.02)
    assert child.poll() is None, ("training ended before it could be killed:\n"
                                  + (tmp_path / "killed.log").read_text()[-3000:])
    child.send_signal(signal.SIGKILL)
    child.wait()
    killed_at = int(tf.train.latest_checkpoint(str(killed / "checkpoints")).rsplit("-", 1)[1])
    assert 40 <= killed_at < 300 and not (killed / "train_metrics.json").exists()

    proc = stca("train", "--data", data_dir, "--model-dir", str(killed), *sets(RESUME))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"at step {killed_at}" in proc.stdout
    metrics = json.loads((killed / "train_metrics.json").read_text())
    assert metrics["start_step"] == killed_at and metrics["steps"] == 300
    # Weights, optimizer slots and data position were restored: same result as no kill.
    assert_weights_close(checkpoint_weights(str(killed / "checkpoints")),
                         checkpoint_weights(str(reference / "checkpoints")), atol=1e-5)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


# XLA off in both runs: multi_worker turns jit_compile=auto off, the single run must match.
MULTI = TINY + ["train.jit_compile=false",
                "train.length.mode=fixed", "train.length.l_min=8", "train.length.l_max=32",
                "train.bucket_boundaries=[32]", "train.deterministic=true",
                "train.steps=6", "train.max_targets=8", "train.token_budget=256",
                "train.learning_rate=0.01", "train.warmup_steps=0"]


def test_multi_worker_matches_single_process(data_dir, tmp_path):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    model_dir = tmp_path / "multi"
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers},
                                "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "train", "--data", data_dir,
             "--model-dir", str(model_dir), *sets(MULTI + [
                 "train.strategy=multi_worker", "train.keep_worker_checkpoints=true"])],
            env=subprocess_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    metrics = json.loads((model_dir / "train_metrics.json").read_text())
    assert metrics["num_replicas"] == 2 and metrics["steps"] == 6

    single = tmp_path / "single"
    proc = stca("train", "--data", data_dir, "--model-dir", str(single), *sets(MULTI))
    assert proc.returncode == 0, proc.stderr[-3000:]

    chief = checkpoint_weights(str(model_dir / "checkpoints"))
    other = checkpoint_weights(str(model_dir / ".worker-1" / "checkpoints"))
    assert_weights_close(chief, other, atol=0.0)       # all-reduce: identical on both workers
    # Each worker read half of every global batch; together they equal the single run.
    assert_weights_close(chief, checkpoint_weights(str(single / "checkpoints")), atol=2e-5)
    initial = {k: v for k, v in chief.items()}
    assert any(np.abs(v).sum() > 0 for v in initial.values())


@pytest.mark.parametrize("override, message", [
    ("train.length.l_min=-8", "train.length.l_min: -8 is invalid; it must be >= 1"),
    ("train.length.l_min=2048", "train.length.l_max: 1024 is invalid; it must be >= "
                                "train.length.l_min (2048)"),
    ("train.strategy=parameter_server", "train.strategy: 'parameter_server' is not allowed; "
                                        "allowed values: 'default', 'mirrored', 'multi_worker'"),
])
def test_bad_config_fails_before_any_work(override, message, tmp_path, data_dir):
    model_dir = tmp_path / "never"
    proc = stca("train", "--data", data_dir, "--model-dir", str(model_dir), "--set", override)
    assert proc.returncode == 2 and message in proc.stderr
    assert not model_dir.exists()


def test_missing_data_path_fails_before_any_work(tmp_path):
    model_dir = tmp_path / "never"
    proc = stca("train", "--data", str(tmp_path / "nothing"), "--model-dir", str(model_dir))
    assert proc.returncode == 3  # errors.EXIT_DATA
    assert "--data: no TFRecord shards (*.tfrecord*) in" in proc.stderr
    assert not model_dir.exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_a_checkpoint_exits_and_the_rerun_resumes(sig, code, data_dir, tmp_path):
    """What a preempted cluster job expects: a checkpoint at the next step boundary, the
    documented exit code (core/errors.py), and a rerun that continues from there."""
    model_dir = tmp_path / "model"
    args = [sys.executable, "-m", "pipeline.cli", "train", "--data", data_dir, "--model-dir",
            str(model_dir), *sets(RESUME + ["train.checkpoint_every=100000",
                                            "train.log_every=1", "train.steps=100000"])]
    child = subprocess.Popen(args, env=subprocess_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    for line in child.stdout:  # a few steps in (no periodic checkpoint before the signal)
        if line.startswith("step 5/"):
            break
    child.send_signal(sig)
    out, err = child.communicate(timeout=120)
    assert child.returncode == code, err[-3000:]
    assert "Traceback" not in err
    name = signal.Signals(sig).name
    stopped = int(re.search(rf"stopped by {name} at step (\d+) of 100000", err).group(1))
    assert stopped >= 5
    latest = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    assert latest.endswith(f"ckpt-{stopped}") and f"checkpoint {latest} saved" in err
    assert not (model_dir / "train_metrics.json").exists()  # the run did not finish
    if sig == signal.SIGTERM:
        proc = stca("train", "--data", data_dir, "--model-dir", str(model_dir),
                    *sets(RESUME + [f"train.steps={stopped + 2}"]))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"resumed from {latest} at step {stopped}" in proc.stdout
        assert json.loads((model_dir / "train_metrics.json").read_text())["steps"] == stopped + 2


def test_multi_worker_without_tf_config_is_a_config_error(tmp_path, data_dir):
    proc = stca("train", "--data", data_dir, "--model-dir", str(tmp_path / "m"),
                "--set", "train.strategy=multi_worker", TF_CONFIG="")
    assert proc.returncode == 2 and "needs the TF_CONFIG environment variable" in proc.stderr


def test_jit_compiled_training_matches_plain_training(data_dir, tmp_path):
    """train.jit_compile=true through the tf.distribute loop (with recomputation)."""
    from pipeline import train
    runs = {}
    for jit in ("false", "true"):
        cfg = config_lib.load_config(None, MULTI + ["model.recompute=true",
                                                    f"train.jit_compile={jit}"])
        runs[jit] = train.run(cfg, data_dir, str(tmp_path / jit))
    assert runs["true"]["xla"] is True and runs["false"]["xla"] is False
    assert runs["true"]["steps"] == 6 and runs["true"]["step_traces"] == 1
    assert abs(runs["true"]["final_loss_avg_last_20"]
               - runs["false"]["final_loss_avg_last_20"]) <= 1e-5
    assert_weights_close(checkpoint_weights(str(tmp_path / "true" / "checkpoints")),
                         checkpoint_weights(str(tmp_path / "false" / "checkpoints")), atol=1e-4)
