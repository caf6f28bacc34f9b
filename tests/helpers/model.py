"""The one tiny model of the tests, and random request batches for the model tests.

TINY_MODEL is the model every test builds or trains unless it tests a size itself:
training / serving / CLI tests take it as `--set` overrides (tiny_overrides), the model
unit tests as a ModelConfig (tiny_config) with smaller tables and head (UNIT_TABLES: their
batches hash random IDs into a few rows; values as the unit tests were written with).
Small enough for a CPU test in seconds.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from core import random_inputs
from core.config import ModelConfig

TASKS = ("click", "like")
REQUEST_TS = random_inputs.REQUEST_TS

# ModelConfig fields; the rest keep their defaults (core/config.py).
TINY_MODEL = dict(d_model=16, num_heads=2, num_layers=2, item_buckets=5003,
                  author_buckets=1009, user_buckets=101, head_width=32, head_layers=1)
UNIT_TABLES = dict(item_buckets=101, author_buckets=31, user_buckets=17, action_buckets=8,
                   time_buckets=16, head_width=16)


def tiny_config(**overrides) -> ModelConfig:
    """TINY_MODEL with UNIT_TABLES as a validated ModelConfig, then `overrides`."""
    cfg = ModelConfig(**{**TINY_MODEL, **UNIT_TABLES, **overrides})
    cfg.validate()
    return cfg


def tiny_overrides(tasks=("click",)) -> list[str]:
    """TINY_MODEL and its tasks as `--set` / load_config overrides."""
    return ([f"data.schema.tasks=[{','.join(tasks)}]"]
            + [f"model.{k}={v}" for k, v in TINY_MODEL.items()])


def random_requests(batch=3, length=12, num_targets=4, seed=0, hist_len=None, tgt_len=None,
                    tasks=TASKS):
    """core.random_inputs.random_requests as tf constants: (inputs, labels).

    By default example 0 is full, example 1 has an empty history and a single target, and
    the rest have random lengths.
    """
    inputs, labels = random_inputs.random_requests(batch, length, num_targets, seed, hist_len,
                                                   tgt_len, tasks, REQUEST_TS)
    return ({k: tf.constant(v) for k, v in inputs.items()},
            {k: tf.constant(v) for k, v in labels.items()})


def author_task_batch(batch=16, length=24, num_targets=4, seed=0, authors=12, tasks=TASKS):
    """A learnable batch: a target is positive iff its author occurs in the user's history.

    Every user's history draws from 3 of `authors` authors; half of the targets come from
    those authors. Only an encoder that relates the target to the history can learn it.
    """
    rng = np.random.default_rng(seed)
    inputs, _ = random_requests(batch, length, num_targets, seed,
                                hist_len=np.full(batch, length),
                                tgt_len=np.full(batch, num_targets),
                                tasks=tasks)
    inputs = {k: v.numpy() for k, v in inputs.items()}
    labels = np.zeros((batch, num_targets), np.float32)
    for b in range(batch):
        favorites = rng.choice(authors, size=3, replace=False) + 1
        inputs["hist_author_id"][b] = rng.choice(favorites, size=length)
        for m in range(num_targets):
            author = rng.choice(favorites) if m % 2 == 0 else rng.integers(1, authors + 1)
            inputs["tgt_author_id"][b, m] = author
            labels[b, m] = float(author in favorites)
    return ({k: tf.constant(v) for k, v in inputs.items()},
            {t: tf.constant(labels) for t in tasks})
