"""Checkpoints of a trained model: where they live, which config they belong to, and the
one restore used by training (resume), evaluation, export and export verification.

MODEL_DIR/checkpoints holds tf.train.CheckpointManager's checkpoints (weights, optimizer
slots, step counter); MODEL_DIR/config.yaml the config that defines the trained model;
MODEL_DIR/train_metrics.json the summary of the last training run.

Example:
    model, checkpoint = load_trained_model(cfg, "runs/demo/model")
"""
from __future__ import annotations

import tensorflow as tf

from core import config as config_lib
from core import errors, fileio
from model.ranking_model import build_model

CHECKPOINT_SUBDIR = "checkpoints"
METRICS_FILE = "train_metrics.json"  # MODEL_DIR/train_metrics.json: the last run's summary


def latest_checkpoint(model_dir: str) -> str | None:
    """The newest checkpoint prefix in MODEL_DIR/checkpoints, or None."""
    return tf.train.latest_checkpoint(fileio.join(model_dir, CHECKPOINT_SUBDIR))


def check_model_dir(cfg: config_lib.Config, model_dir: str) -> None:
    """Refuses a config that describes another model than the one MODEL_DIR holds.

    The config saved with the checkpoints (MODEL_DIR/config.yaml) defines the trained
    architecture; `config_lib.architecture_diff` says which fields must match it (model.*
    but a few runtime fields, data.schema.tasks); the rest may change (e.g. train.steps).
    A model dir without a checkpoint holds no model.

    Raises:
      ConfigError naming every differing field with its trained value.
    """
    path = fileio.join(model_dir, "config.yaml")
    if latest_checkpoint(model_dir) is None or not fileio.exists(path):
        return
    diff = config_lib.architecture_diff(config_lib.load_config(path, validate=False), cfg)
    if diff:
        raise config_lib.ConfigError(
            f"--model-dir {model_dir} holds a model with another architecture: "
            + "; ".join(diff) + f" ({path} defines the trained model; drop these values or "
            "use a new --model-dir)")


def restore_objects(ckpt, checkpoint: str, partial: bool, what: str) -> None:
    """ckpt.restore(checkpoint) with every existing object matched (`partial`: objects of the
    checkpoint that ckpt lacks, e.g. optimizer slots, are fine).

    Raises:
      ConfigError when the checkpoint holds another model (`what` says which settings
      decide it), DataError when it cannot be read.
    """
    try:
        status = ckpt.restore(checkpoint)
        (status.expect_partial() if partial else status).assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise config_lib.ConfigError(
            f"--model-dir: checkpoint {checkpoint} does not fit the model of the config "
            f"({what}): {' '.join(str(e).split())[:300]}") from None
    except (tf.errors.OpError, IndexError) as e:  # IndexError: TF's reader on a short file
        raise errors.DataError(f"--model-dir: cannot read checkpoint {checkpoint}: "
                               f"{' '.join(str(e).split())[:300]}") from None


def load_trained_model(cfg: config_lib.Config, model_dir: str):
    """The model of MODEL_DIR with the weights of its newest checkpoint (no optimizer state),
    after `check_model_dir`; returns (model, checkpoint). Used by evaluate and export.

    Raises:
      DataError (no checkpoint, or an unreadable one), ConfigError (cfg describes another
      model than the trained one).
    """
    fileio.ensure_filesystem(model_dir)
    latest = latest_checkpoint(model_dir)
    if latest is None:
        raise errors.DataError(f"--model-dir: no checkpoint in "
                               f"{fileio.join(model_dir, CHECKPOINT_SUBDIR)}; run "
                               f"`stca train --model-dir {model_dir}` first")
    check_model_dir(cfg, model_dir)
    return restore_checkpoint(cfg, latest), latest


def restore_checkpoint(cfg: config_lib.Config, checkpoint: str):
    """The one restore of a trained model: built from cfg, weights from `checkpoint`.

    Raises:
      ConfigError when the checkpoint holds another architecture, DataError when it
      cannot be read.
    """
    model = build_model(cfg.model, cfg.tasks)  # built: restore is matched at once
    restore_objects(tf.train.Checkpoint(model=model), checkpoint, partial=True,  # no optimizer
             what="model.*, data.schema.tasks")
    return model
