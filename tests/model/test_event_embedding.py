import math

import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401
from model.layers.event_embedding import EventEmbedding, time_delta_bucket
from tests.helpers.layers import SAME_PATH_ATOL, assert_config_round_trip
from tests.helpers.model import REQUEST_TS, random_requests


def make_layer(**kwargs):
    args = dict(d_model=8, item_buckets=50, author_buckets=20, action_buckets=8,
                time_buckets=16, time_log_base=2.0)
    args.update(kwargs)
    return EventEmbedding(**args)


def test_time_delta_bucket_is_log_of_age_in_seconds():
    ts = tf.constant([[REQUEST_TS, REQUEST_TS - 999, REQUEST_TS - 3_000, REQUEST_TS - 10**12,
                       REQUEST_TS + 5_000]], tf.int64)
    buckets = time_delta_bucket(tf.constant([REQUEST_TS], tf.int64), ts, 16, 2.0).numpy()[0]
    # ages 0 s, 0.999 s, 3 s, 1e9 s (capped to the last bucket), future (clipped to 0 s)
    expected = [0, math.floor(math.log2(1.999)), math.floor(math.log2(4.0)), 15, 0]
    np.testing.assert_array_equal(buckets, expected)


def test_history_and_target_tokens_follow_the_equations():
    inputs, _ = random_requests(batch=2, length=5, num_targets=3)
    layer = make_layer()
    history, targets = layer(inputs)
    item = layer.item(inputs["hist_item_id"])
    features = tf.concat([item, layer.action(inputs["hist_action"]),
                          layer.author(inputs["hist_author_id"]),
                          layer.time(time_delta_bucket(inputs["request_ts"], inputs["hist_ts"],
                                                       16, 2.0))], -1)
    np.testing.assert_allclose(history, item + layer.event_ffn(features), atol=SAME_PATH_ATOL)
    # Targets reuse the item and author tables.
    t_item = layer.item(inputs["tgt_item_id"])
    t_feat = tf.concat([t_item, layer.author(inputs["tgt_author_id"])], -1)
    np.testing.assert_allclose(targets, t_item + layer.target_ffn(t_feat), atol=SAME_PATH_ATOL)
    assert len(layer.trainable_variables) == 4 + 2 * 2  # 4 tables, 2 SwiGLUs


def test_no_absolute_positions_reordering_history_reorders_tokens():
    inputs, _ = random_requests(batch=2, length=6, num_targets=2, hist_len=[6, 6])
    layer = make_layer()
    perm = [3, 0, 5, 1, 4, 2]
    shuffled = dict(inputs)
    for name in ("hist_item_id", "hist_author_id", "hist_action", "hist_ts"):
        shuffled[name] = tf.gather(inputs[name], perm, axis=1)
    np.testing.assert_allclose(layer.embed_history(shuffled),
                               tf.gather(layer.embed_history(inputs), perm, axis=1),
                               atol=SAME_PATH_ATOL)


def test_round_trip_and_argument_checks():
    inputs, _ = random_requests(batch=2, length=4, num_targets=2)
    assert_config_round_trip(make_layer(time_log_base=1.5), inputs)
    with pytest.raises(ValueError, match="time_log_base"):
        make_layer(time_log_base=1.0)
    with pytest.raises(ValueError, match="item_buckets"):
        make_layer(item_buckets=0)
