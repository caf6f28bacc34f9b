"""Fault injection through the real `stca` command: bad configs, flags, data dirs and model
dirs given to train / evaluate / export.

Every case checks what a user sees: the documented exit code (core/errors.py, README
"Exit codes"), exactly one line on stderr that names the problem, no traceback, and that
nothing was written where nothing should be. Before these fixes most of them printed a
traceback (config files, absurd numbers, corrupt shards and checkpoints), one hung forever
(an empty training split), one exited 0 with NaN AUCs (an empty eval split) and one
overwrote the model dir's config.yaml before failing (a conflicting model.d_model).
"""
import os
import re
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from tests.helpers.env import subprocess_env
from tests.helpers.model import tiny_overrides
from tests.helpers.records import write_dataset

pytestmark = pytest.mark.slow  # every case starts a process

TINY = tiny_overrides(("click",))  # the tests' tiny model (tests/helpers/model.py)

_SCRIPT = os.path.join(os.path.dirname(sys.executable), "stca")
STCA = [_SCRIPT] if os.path.exists(_SCRIPT) else [sys.executable, "-m", "pipeline.cli"]
# TensorFlow's C++ runtime logs a few lines when it is imported ("... E external/...
# Unable to register cuFFT factory"); they are not ours and say nothing about the input.
# TensorFlow's own C++ log lines: TF logging ("2026-12-02 10:00:00.123: I ...") and absl
# logging, which the XLA compiler uses ("I0000 00:00:1796239935.017 ...", and absl's notice
# "WARNING: All log messages before absl::InitializeLog() ...").
TF_RUNTIME_LOG = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] "
                            r"|[IWEF]\d{4} \d\d:\d\d:[\d.]+ +\d+ \S+:\d+\] "
                            r"|WARNING: All log messages before absl::InitializeLog\(\))")
FAST = ["train.length.mode=fixed", "train.length.l_min=8", "train.length.l_max=64",
        "train.bucket_boundaries=[64]", "train.token_budget=1024", "train.max_targets=8",
        "eval.history_ablation=false"]


def sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def stca(*args, timeout=300):
    return subprocess.run([*STCA, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env())


def assert_user_error(proc, code: int, *expected: str) -> str:
    """Exit code `code`, one stderr line (besides TF's import logs) holding `expected`."""
    lines = [line for line in proc.stderr.splitlines()
             if line.strip() and not TF_RUNTIME_LOG.match(line)]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == code, proc.stderr[-3000:]
    assert len(lines) == 1, lines
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def _write_records(path, records, gzip=True):
    with tf.io.TFRecordWriter(path, options="GZIP" if gzip else None) as w:
        for r in records:
            w.write(r)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Data dirs (good and bad) and a trained tiny model shared by the cases."""
    root = tmp_path_factory.mktemp("faults")
    w = {"root": root, "data": write_dataset(str(root / "data"), requests=48, eval_requests=8)}
    # Shards that exist but hold no record (what preprocessing a header-only CSV gives).
    for split in ("train", "eval"):
        os.makedirs(root / "empty" / split)
        for i in range(2):
            _write_records(str(root / "empty" / split / f"part-{i}.tfrecord.gz"), [])
    os.makedirs(root / "garbage" / "train")
    (root / "garbage" / "train" / "part-0.tfrecord").write_bytes(os.urandom(3000))
    os.makedirs(root / "not_examples" / "train")
    _write_records(str(root / "not_examples" / "train" / "part-0.tfrecord.gz"),
                   [b"a record, not a tf.train.Example \xff\xfe"])
    shutil.copytree(w["data"], root / "trunc_eval")
    shard = root / "trunc_eval" / "eval" / "part-00000-of-00001.tfrecord.gz"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])

    from core import config as config_lib
    from pipeline import train
    model = str(root / "model")
    train.run(config_lib.load_config(None, TINY + FAST + ["train.steps=3"]),
              w["data"], model)
    w["model"] = model
    w.update({k: str(root / k) for k in ("empty", "garbage", "not_examples", "trunc_eval")})
    return w


def _config(tmp_path, text: str | bytes) -> str:
    path = tmp_path / "bad.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


# ---- bad configs and flags: refused before any work, the model dir is never created -------

CONFIG_CASES = {
    "config_missing": (lambda t: ["--config", t / "nope.yaml"], "nope.yaml: no such config file"),
    "config_invalid_yaml": (lambda t: ["--config", _config(t, "model: {d_model: 16\n  x: [\n")],
                            "invalid YAML at line 2"),
    "config_not_a_mapping": (lambda t: ["--config", _config(t, "- model\n- train\n")],
                             "the top level must be a mapping of sections"),
    "config_is_a_directory": (lambda t: ["--config", t], "cannot read the config file"),
    "config_not_utf8": (lambda t: ["--config", _config(t, b"model:\n  head: \xff\xfe\n")],
                        "cannot read the config file"),
    "steps_beyond_int64": (lambda t: ["--set", "train.steps=99999999999999999999999999"],
                           "train.steps: 99999999999999999999999999 is invalid; it must be "
                           "a signed 64-bit integer"),
    "steps_absurd": (lambda t: ["--set", "train.steps=10000000000000"],
                     "train.steps: 10000000000000 is invalid; it must be <= 1000000000000"),
    "seed_negative": (lambda t: ["--set", "train.seed=-1"],
                      "train.seed: -1 is invalid; it must be in [0, 4294967295]"),
    "learning_rate_infinite": (lambda t: ["--set", "train.learning_rate=inf"],
                               "train.learning_rate: inf is invalid; it must be a finite"),
    "learning_rate_beyond_float": (lambda t: ["--set", "train.learning_rate=1" + "0" * 400],
                                   "train.learning_rate: 1000", "is out of the range"),
    "embedding_rows_beyond_int32": (lambda t: ["--set", "model.item_buckets=3000000000"],
                                    "model.item_buckets: 3000000000 is invalid; it must be "
                                    "<= 2147483647"),
}


@pytest.mark.parametrize("kind", sorted(CONFIG_CASES))
def test_bad_config_is_refused_before_any_work(kind, ws, tmp_path):
    args, *expected = CONFIG_CASES[kind]
    never = tmp_path / "never"
    proc = stca("train", "--data", ws["data"], "--model-dir", never, *args(tmp_path))
    assert_user_error(proc, 2, "stca train: config error: ", *expected)
    assert not never.exists()


def test_yaml_python_tag_is_refused_not_run(ws, tmp_path):
    ran = tmp_path / "made-by-the-config"
    path = _config(tmp_path, f"train:\n  steps: !!python/object/apply:os.mkdir ['{ran}']\n")
    proc = stca("train", "--data", ws["data"], "--model-dir", tmp_path / "never",
                "--config", path)
    assert_user_error(proc, 2, "invalid YAML at line 2", "python/object/apply:os.mkdir")
    assert not ran.exists() and not (tmp_path / "never").exists()


def test_unknown_flag_is_a_usage_error(ws, tmp_path):
    proc = stca("train", "--data", ws["data"], "--model-dir", tmp_path / "m", "--stesp", "5")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unrecognized arguments: --stesp 5" in proc.stderr


# ---- bad training data: one message at start (never a hang), nothing written ----------------

DATA_CASES = {
    "data_missing": (lambda w: [w["root"] / "nothing"], [],
                     "--data: no TFRecord shards (*.tfrecord*) in"),
    "data_empty_split": (lambda w: [w["empty"]], [],
                         "--data: the train split is empty: its 2 shard(s) in"),
    "data_not_tfrecord": (lambda w: [w["garbage"]], [],
                          "part-0.tfrecord: neither a plain nor a GZIP TFRecord file"),
    "data_not_examples": (lambda w: [w["not_examples"]], [],
                          "part-0.tfrecord.gz: a record is not a tf.train.Example"),
    "data_other_tasks": (lambda w: [w["data"]], ["data.schema.tasks=[like]"],
                         "label_like does not have one value per target"),
}


@pytest.mark.parametrize("kind", sorted(DATA_CASES))
def test_bad_training_data_fails_at_start(kind, ws, tmp_path):
    data, overrides, expected = DATA_CASES[kind]
    never = tmp_path / "never"
    # Before: the empty split hung forever (timeout); the others printed tracebacks.
    proc = stca("train", "--data", *data(ws), "--model-dir", never,
                *sets(TINY + FAST + overrides + ["train.steps=5"]), timeout=180)
    assert_user_error(proc, 3, "stca train: ", expected)
    assert not never.exists()


def test_shard_truncated_mid_training_names_it_and_keeps_a_checkpoint(tmp_path):
    data = write_dataset(str(tmp_path / "data"), requests=400, files=2, eval_requests=4)
    shard = tmp_path / "data" / "train" / "part-00001-of-00002.tfrecord.gz"
    shard.write_bytes(shard.read_bytes()[: int(shard.stat().st_size * 0.6)])
    model = tmp_path / "model"
    # Deterministic input: no shuffle buffer reads the shard ahead, so steps run first.
    proc = stca("train", "--data", data, "--model-dir", model,
                *sets(TINY + FAST + ["train.deterministic=true", "train.steps=300"]))
    line = assert_user_error(proc, 3, f"{shard}: truncated record at",
                             "replace or remove the shard and rerun")
    step = int(re.search(r"training stopped at step (\d+)", line).group(1))
    assert step >= 1
    # The checkpoint named in the message is the newest one, at that step.
    latest = tf.train.latest_checkpoint(str(model / "checkpoints"))
    assert latest.endswith(f"ckpt-{step}") and f"checkpoint {latest} saved" in line


# ---- model dirs: the trained model's config defines the architecture ------------------------

def test_conflicting_model_config_is_refused_and_the_model_dir_kept(ws, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(ws["model"], model)
    before = {p: (model / p).read_bytes() for p in ("config.yaml", "checkpoints/checkpoint")}
    proc = stca("train", "--data", ws["data"], "--model-dir", model,
                "--set", "model.d_model=32", "--set", "train.steps=20")
    assert_user_error(proc, 2, "holds a model with another architecture: model.d_model: 32 "
                               "(trained: 16)")
    # Before: config.yaml said d_model=32 and the good model could no longer be exported.
    assert {p: (model / p).read_bytes() for p in before} == before
    proc = stca("export", "--model-dir", model, "--export-dir", tmp_path / "export")
    assert proc.returncode == 0, proc.stderr[-3000:]


MODEL_CASES = {
    "evaluate_config_other_head": (
        lambda w, t: ["evaluate", "--data", w["data"], "--model-dir", w["model"], "--config",
                      _config(t, "model:\n  head: mlp\n"), "--out", t / "eval"],
        2, "model.head: 'mlp' (trained: 'rankmixer')"),
    "export_other_num_layers": (
        lambda w, t: ["export", "--model-dir", w["model"], "--export-dir", t / "export",
                      "--set", "model.num_layers=3"],
        2, "model.num_layers: 3 (trained: 2)"),
    "evaluate_no_checkpoint": (
        lambda w, t: ["evaluate", "--data", w["data"], "--model-dir", t / "untrained"],
        3, "--model-dir: no checkpoint in"),
    "evaluate_corrupt_checkpoint": (
        lambda w, t: ["evaluate", "--data", w["data"], "--model-dir",
                      _corrupt_checkpoint(w, t), "--out", t / "eval"],
        3, "--model-dir: cannot read checkpoint"),
    "evaluate_invalid_model_dir_config": (
        lambda w, t: ["evaluate", "--data", w["data"], "--model-dir",
                      _corrupt_config(w, t), "--out", t / "eval"],
        2, "config.yaml: invalid YAML at line 2"),
    "evaluate_truncated_eval_shard": (
        lambda w, t: ["evaluate", "--data", w["trunc_eval"], "--model-dir", w["model"],
                      "--lengths", "16", "--out", t / "eval"],
        3, "part-00000-of-00001.tfrecord.gz: truncated record at"),
    "evaluate_empty_eval_split": (  # before: exit 0 and a report of NaN AUCs
        lambda w, t: ["evaluate", "--data", w["empty"], "--model-dir", w["model"],
                      "--out", t / "eval"],
        3, "--data: the eval split is empty"),
    "train_model_dir_is_a_file": (
        lambda w, t: ["train", "--data", w["data"], "--model-dir", _file(t),
                      *sets(TINY + FAST + ["train.steps=2"])],
        4, "is a file, not a directory"),
    "evaluate_out_is_a_file": (
        lambda w, t: ["evaluate", "--data", w["data"], "--model-dir", w["model"],
                      "--lengths", "16", "--out", _file(t)],
        4, "is a file, not a directory"),
}


def _copy_model(w, t):
    model = t / "model"
    shutil.copytree(w["model"], model)
    return model


def _corrupt_checkpoint(w, t):
    model = _copy_model(w, t)
    (data_file,) = (model / "checkpoints").glob("ckpt-3.data-*")
    data_file.write_bytes(data_file.read_bytes()[:100])
    return model


def _corrupt_config(w, t):
    model = _copy_model(w, t)
    (model / "config.yaml").write_text("model: [\n")
    return model


def _file(t):
    path = t / "a-file"
    path.write_text("not a directory\n")
    return path


@pytest.mark.parametrize("kind", sorted(MODEL_CASES))
def test_bad_model_dir_or_output_is_refused(kind, ws, tmp_path):
    args, code, expected = MODEL_CASES[kind]
    argv = args(ws, tmp_path)
    proc = stca(*argv)
    assert_user_error(proc, code, f"stca {argv[0]}: ", expected)
    assert not (tmp_path / "export").exists()
