"""`stca train`: a custom tf.distribute loop with checkpoints, resume, TensorBoard and logs.

The loop is deliberately small: the step itself is `RankingModel.train_step` (loss scaling,
global loss normalisation), run with `strategy.run` inside one tf.function whose input
signature has None batch / length dims, so token-budget buckets never retrace it.

A restarted run resumes from the newest checkpoint in MODEL_DIR/checkpoints: weights,
optimizer slots and the step counter (`optimizer.iterations`). The input pipeline is not
checkpointed; a resumed run reshuffles with a seed derived from the step it resumes at.
SIGTERM / SIGINT save a checkpoint at the next step boundary and exit with 143 / 130.

Nothing is written to MODEL_DIR before the run is known to fit it: the data is checked
(an empty or unreadable split fails at once) and a config that describes another model
than the one MODEL_DIR holds is refused with the differing fields (`check_model_dir`).

Example:
    stca train --data runs/demo/data --model-dir runs/demo/model --set train.steps=300
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time

import numpy as np
import tensorflow as tf

from core import config as config_lib
from core import errors, features, fileio
from core import input as input_lib
from model import build_model
from model import precision as precision_lib
from model.checkpoint import CHECKPOINT_SUBDIR, METRICS_FILE, check_model_dir, restore_objects
from model.lazy_adam import LazyAdam


def _tf_config() -> dict:
    return json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")


def make_strategy(name: str):
    """train.strategy -> a tf.distribute strategy (created before any other TF work)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if not _tf_config().get("cluster"):
            raise config_lib.ConfigError(
                "train.strategy: 'multi_worker' needs the TF_CONFIG environment variable "
                "with a cluster spec, e.g. {\"cluster\": {\"worker\": [\"host1:port\", "
                "\"host2:port\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}")
        return tf.distribute.MultiWorkerMirroredStrategy()
    config_lib._choice("train.strategy", name, ("default", "mirrored", "multi_worker"))


def is_chief(strategy) -> bool:
    """The chief writes checkpoints, logs and reports; other workers write to scratch dirs."""
    task = _tf_config().get("task", {})
    if not getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)():
        return True
    if task.get("type") == "chief":
        return True
    has_chief = "chief" in _tf_config().get("cluster", {})
    return not has_chief and task.get("type") == "worker" and task.get("index", 0) == 0


def make_optimizer(train_cfg: config_lib.TrainConfig, precision: str):
    """Optimizer with linear warmup and cosine decay (or none).

    Global-norm clipping is done by `RankingModel.train_step` after the cross-replica sum,
    so it clips the global gradient as a single-device run would.
    """
    warmup = train_cfg.warmup_steps
    # alpha=1 turns the cosine into a constant: decay "none" is the same schedule, flat.
    lr = tf.keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else train_cfg.learning_rate,
        decay_steps=max(train_cfg.steps - warmup, 1),
        alpha=train_cfg.min_lr_ratio if train_cfg.decay == "cosine" else 1.0,
        warmup_target=train_cfg.learning_rate if warmup else None,
        warmup_steps=warmup)
    if train_cfg.optimizer == "adam":
        opt = tf.keras.optimizers.Adam(lr)
    elif train_cfg.optimizer == "lazy_adam":
        opt = LazyAdam(lr)
    elif train_cfg.optimizer == "adamw":
        opt = tf.keras.optimizers.AdamW(lr, weight_decay=train_cfg.weight_decay)
    else:
        opt = tf.keras.optimizers.Adagrad(lr)
    return precision_lib.wrap_optimizer(opt, precision)


class _StopFlag:
    """Within `with`: SIGTERM / SIGINT set `signum`; the loop stops at the next step boundary.

    The previous handlers come back on exit and at the first signal, so a second signal
    acts at once (SIGTERM ends the process, SIGINT raises KeyboardInterrupt).
    """

    EXIT_CODES = {signal.SIGTERM: errors.EXIT_SIGTERM, signal.SIGINT: errors.EXIT_SIGINT}

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        for sig in self.EXIT_CODES:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside a test runner thread)
                pass
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        self.signum = signum
        self._restore()


def accelerator_present() -> bool:
    """Whether TensorFlow sees a GPU or TPU (train.jit_compile=auto turns XLA on there)."""
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def run(cfg: config_lib.Config, data_dir: str, model_dir: str) -> dict:
    """Trains cfg.train.steps steps (resuming if MODEL_DIR has checkpoints); returns metrics.

    Raises:
      ConfigError (a config that does not fit MODEL_DIR's model), DataError (empty or
      unreadable training data; mid-run after saving a checkpoint), Interrupted (SIGTERM /
      SIGINT, after saving a checkpoint).
    """
    cfg.validate()
    fileio.ensure_filesystem(data_dir)
    fileio.ensure_filesystem(model_dir)
    check_model_dir(cfg, model_dir)
    strategy = make_strategy(cfg.train.strategy)  # before other TF work (multi-worker)
    input_lib.check_split(data_dir, "train", cfg.tasks)


    # train.seed fixes weight initialisation (Python, NumPy and TF seeds) and input order.
    tf.keras.utils.set_random_seed(cfg.train.seed)
    if cfg.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    chief = is_chief(strategy)
    work_dir = model_dir if chief else fileio.join(
        model_dir, f".worker-{_tf_config().get('task', {}).get('index', 0)}")
    fileio.makedirs(work_dir)  # OutputError now, not after the model is built

    with strategy.scope():
        model = build_model(cfg.model, cfg.tasks, clip_norm=cfg.train.clip_norm)
        optimizer = make_optimizer(cfg.train, cfg.model.precision)
        model.compile(optimizer=optimizer)
        ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer)
        manager = tf.train.CheckpointManager(
            ckpt, fileio.join(work_dir, CHECKPOINT_SUBDIR), max_to_keep=cfg.train.keep_checkpoints,
            step_counter=optimizer.iterations)
        # Slots exist before the first step, so the step function is traced exactly once
        # (a first call that creates variables would be traced twice).
        optimizer.build(model.trainable_variables)
        restored = manager.latest_checkpoint
        if restored:
            restore_objects(ckpt, restored, partial=False, what="model.*, data.schema.tasks, or "
                     "model.precision mixed_float16 and its loss scale")
    if chief:
        config_lib.save_config(cfg, model_dir)  # only now: cfg fits the checkpoint
    start_step = int(optimizer.iterations.numpy())
    if restored:
        print(f"resumed from {restored} at step {start_step}", flush=True)

    def save_now() -> str:
        """A checkpoint of the current step if this run took one; says what is on disk."""
        now = int(optimizer.iterations.numpy())
        if now == start_step:
            return f"checkpoint {restored} kept" if restored else "no step taken, none saved"
        return f"checkpoint {manager.save(checkpoint_number=now, check_interval=False)} saved"

    # Shuffled runs draw a fresh order on resume; deterministic runs replay the order and
    # skip what the checkpointed steps consumed, so a resumed run equals an uninterrupted one.
    deterministic = cfg.train.deterministic
    dataset = input_lib.distributed_train_dataset(
        strategy, data_dir, cfg, seed_offset=0 if deterministic else start_step)
    traces = []

    xla, why = cfg.train.use_xla(accelerator=accelerator_present())
    if chief:
        print(why, flush=True)

    @tf.function(input_signature=[dataset.element_spec], jit_compile=xla)
    def dist_step(batch):
        traces.append(1)  # Python side effect: runs once per trace, never per step
        out = strategy.run(model.train_step, args=(batch,))
        # Each replica's loss is normalised by the GLOBAL number of valid targets.
        return strategy.reduce(tf.distribute.ReduceOp.SUM, out["loss"], axis=None)

    writer = tf.summary.create_file_writer(fileio.join(work_dir, "logs", "train"))
    interactive = chief and sys.stdout.isatty()
    progbar = tf.keras.utils.Progbar(cfg.train.steps, stateful_metrics=["loss"],
                                     verbose=1 if interactive else 0)
    with _StopFlag() as stop:
        iterator = iter(dataset)

        def next_batch():
            try:
                return next(iterator)
            except input_lib.READ_ERRORS as e:
                # tf.data names no file: find the bad shard, keep what was trained, stop.
                bad = input_lib.find_bad_shard(data_dir, "train", cfg.tasks)
                if bad is None:
                    raise
                raise errors.DataError(f"{bad}; training stopped at step "
                                       f"{int(optimizer.iterations.numpy())} ({save_now()}); "
                                       "replace or remove the shard and rerun") from e

        for _ in range(start_step if deterministic else 0):
            next_batch()
        losses, t0, step, targets_seen = [], time.time(), start_step, 0
        window_t0, window_tokens, window_requests = time.time(), 0, 0
        speed = _Throughput()
        while step < cfg.train.steps and stop.signum is None:
            step_t0 = time.perf_counter()  # a step's time includes waiting for its batch
            batch = next_batch()
            loss = float(dist_step(batch))
            step_seconds = time.perf_counter() - step_t0
            step = int(optimizer.iterations.numpy())
            losses.append(loss)
            tokens, requests, length, targets, valid = _batch_size(strategy, batch)
            speed.add(length, step_seconds, tokens, valid)
            targets_seen += targets
            window_tokens += tokens
            window_requests += requests
            progbar.update(step, [("loss", loss)])
            if step % cfg.train.checkpoint_every == 0:
                manager.save(checkpoint_number=step, check_interval=False)
            if step % cfg.train.log_every == 0 or step == cfg.train.steps:
                elapsed = max(time.time() - window_t0, 1e-9)
                with writer.as_default(step=step):
                    tf.summary.scalar("loss", loss)
                    tf.summary.scalar("learning_rate", _current_lr(optimizer))
                    tf.summary.scalar("history_tokens_per_s", window_tokens / elapsed)
                    tf.summary.scalar("requests_per_s", window_requests / elapsed)
                    for m in model.metrics:
                        tf.summary.scalar(m.name, m.result())
                if chief and not interactive:
                    print(f"step {step}/{cfg.train.steps} loss={loss:.4f} "
                          f"tokens/s={window_tokens / elapsed:,.0f} "
                          f"requests/s={window_requests / elapsed:,.1f}", flush=True)
                window_t0, window_tokens, window_requests = time.time(), 0, 0
    if stop.signum is not None and step < cfg.train.steps:
        writer.close()
        raise errors.Interrupted(
            f"stopped by {signal.Signals(stop.signum).name} at step {step} of "
            f"{cfg.train.steps} ({save_now()}); rerun the same command to resume",
            exit_code=_StopFlag.EXIT_CODES[stop.signum])
    manager.save(checkpoint_number=step, check_interval=False)
    writer.close()

    metrics = {
        "steps": step,
        "start_step": start_step,
        "resumed_from": restored,
        "loss_avg_first_20": float(np.mean(losses[:20])) if losses else None,
        "final_loss_avg_last_20": float(np.mean(losses[-20:])) if losses else None,
        "train_metrics": {m.name: float(m.result()) for m in model.metrics},
        "wall_seconds": round(time.time() - t0, 2),
        "steps_per_second": round(len(losses) / max(time.time() - t0, 1e-9), 3),
        "step_traces": len(traces),
        "targets_seen": targets_seen,  # valid (request, target) pairs trained on in this run
        "padded_history_lengths": sorted(speed.first_step),
        **speed.summary(),
        "num_replicas": strategy.num_replicas_in_sync,
        "xla": xla,
        "latest_checkpoint": manager.latest_checkpoint,
    }
    if chief:
        fileio.write_text(fileio.join(model_dir, METRICS_FILE), json.dumps(metrics, indent=2))
    elif not cfg.train.keep_worker_checkpoints and not fileio.is_remote(work_dir):
        shutil.rmtree(work_dir, ignore_errors=True)
    return metrics


def _batch_size(strategy, batch) -> tuple[int, int, int, int, int]:
    """(padded history tokens, requests, padded length, targets, valid history tokens) of a
    distributed batch, for logs and throughput."""
    parts = strategy.experimental_local_results(batch[0]["hist_item_id"])
    targets = strategy.experimental_local_results(batch[0][features.TGT_LEN])
    valid = strategy.experimental_local_results(batch[0][features.HIST_LEN])
    return (sum(int(p.shape[0]) * int(p.shape[1]) for p in parts),
            sum(int(p.shape[0]) for p in parts), max(int(p.shape[1]) for p in parts),
            sum(int(t.numpy().sum()) for t in targets), sum(int(v.numpy().sum()) for v in valid))


class _Throughput:
    """Step times split into first steps per padded length (trace, and with XLA the
    compile of that shape) and the steady state (every later step)."""

    def __init__(self):
        self.first_step: dict[int, float] = {}
        self.steady_seconds = 0.0
        self.steady_steps = self.steady_tokens = self.steady_valid = 0
        self.seconds_by_length: dict[int, list[float]] = {}

    def add(self, length: int, seconds: float, tokens: int, valid: int) -> None:
        if length not in self.first_step:
            self.first_step[length] = seconds
            return
        self.seconds_by_length.setdefault(length, []).append(seconds)
        self.steady_seconds += seconds
        self.steady_steps += 1
        self.steady_tokens += tokens
        self.steady_valid += valid

    def summary(self) -> dict:
        """Steady-state rates (input wait + step, excluding first steps) and the first-step
        cost per padded length over that length's median step."""
        rate = lambda n: round(n / self.steady_seconds, 1) if self.steady_seconds else None  # noqa: E731
        return {
            "steady_steps": self.steady_steps,
            "steady_step_seconds": round(self.steady_seconds / max(self.steady_steps, 1), 4),
            "history_tokens_per_s": rate(self.steady_tokens),
            "valid_history_tokens_per_s": rate(self.steady_valid),
            "first_step_extra_seconds": {
                int(k): round(v - float(np.median(self.seconds_by_length.get(k, [0.0]))), 2)
                for k, v in sorted(self.first_step.items())}}


def _current_lr(optimizer) -> float:
    lr = optimizer.learning_rate
    # Under a strategy the rate is a distributed variable, which float() refuses.
    return float(tf.convert_to_tensor(lr(optimizer.iterations) if callable(lr) else lr))
