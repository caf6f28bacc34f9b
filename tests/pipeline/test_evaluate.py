"""Evaluation's history modes: the empty pass reads no history and scores as the model does
on a fully padded one."""
import numpy as np
import pytest
import tensorflow as tf

from core import features
from model import build_model, registry
from pipeline import evaluate
from tests.helpers.model import TASKS, random_requests, tiny_config


@pytest.mark.parametrize("encoder", registry.encoder_names())
def test_empty_pass_equals_a_fully_masked_history_of_full_length(encoder):
    net = build_model(tiny_config(encoder=encoder), TASKS)
    inputs, _ = random_requests(batch=3, length=40, num_targets=4, seed=5)
    masked = dict(inputs, **{features.HIST_LEN: tf.zeros_like(inputs[features.HIST_LEN])})
    empty = evaluate._with_history(inputs, "empty", None)
    for name in features.HISTORY_FEATURES:
        assert empty[name].shape[1] == 1 and not np.any(empty[name].numpy())
    assert not np.any(empty[features.HIST_LEN].numpy())
    np.testing.assert_allclose(net(empty), net(masked), rtol=0, atol=1e-5)


def test_swapped_pass_moves_the_whole_user_side_to_another_user():
    inputs, _ = random_requests(batch=4, length=6, num_targets=2, seed=1)
    perm, same = evaluate.other_user_permutation(inputs["user_id"].numpy())
    assert same == 0 and sorted(perm) == [0, 1, 2, 3]
    swapped = evaluate._with_history(inputs, "swapped", perm)
    for name in evaluate._SWAPPED_INPUTS:
        np.testing.assert_array_equal(swapped[name], tf.gather(inputs[name], perm))
    np.testing.assert_array_equal(swapped["user_id"], inputs["user_id"])
