"""train_metrics.json counts the (request, target) pairs a run trained on: the number the
RLB vs point-wise comparison (benchmarks/run_results.py) equalises its step counts with."""
from __future__ import annotations

import pytest
import tensorflow as tf

from core import config as config_lib
from core import input as input_lib
from tests.helpers.model import tiny_overrides
from tests.helpers.records import write_dataset

TINY = tiny_overrides(("click",))  # the tests' tiny model (tests/helpers/model.py)
RUN = TINY + ["train.length.mode=fixed", "train.length.l_min=8", "train.length.l_max=32",
              "train.bucket_boundaries=[32]", "train.deterministic=true",
              "train.steps=5", "train.max_targets=4", "train.token_budget=256"]


@pytest.mark.slow  # a training run through train.run (the loop `stca train` runs)
def test_targets_seen_equals_the_valid_targets_of_the_batches_trained_on(tmp_path):
    from pipeline import train
    data = write_dataset(str(tmp_path / "data"), requests=64, targets=(1, 8))
    cfg = config_lib.load_config(None, RUN)
    metrics = train.run(cfg, data, str(tmp_path / "model"))
    # The same deterministic order, read directly: the first 5 batches.
    dataset = input_lib.distributed_train_dataset(tf.distribute.get_strategy(), data, cfg)
    batches = [batch for _, batch in zip(range(5), dataset)]
    expected = sum(int(tf.reduce_sum(inputs["tgt_len"])) for inputs, _ in batches)
    # max_targets=4 splits requests of up to 8 targets, so this is not requests x 4.
    assert expected > 0 and metrics["targets_seen"] == expected
    rows = sum(int(inputs["tgt_len"].shape[0]) for inputs, _ in batches)
    assert expected < 4 * rows  # some rows carry fewer than max_targets targets
