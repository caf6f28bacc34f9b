"""The request-grouped TFRecord schema and the ONE builder of model inputs from records.

One tf.train.Example per request (Request Level Batching): the history once, m targets.

    request_id, user_id, request_ts                 int64 scalars (timestamps in Unix ms)
    hist_item_id, hist_author_id, hist_action,
    hist_ts                                         int64 lists of length L, most recent first
    tgt_item_id, tgt_author_id                      int64 lists of length m
    label_<task>                                    int64 lists of length m, values 0/1

The point-wise baseline layout uses the same features with m = 1.

Writers call `encode_request` (the serving client, tests) or, in the Beam job, write the
same bytes per user from its encoded events (`beam_jobs/records.py`); readers (training,
evaluation, export checks, the serving client) call `parse_examples` / `parse_example` and
then `model_inputs`, which is the only place dense model inputs are built:

    user_id [B] int64, request_ts [B] int64,
    hist_item_id / hist_author_id / hist_action / hist_ts [B, L] int64, hist_len [B] int32,
    tgt_item_id / tgt_author_id [B, M] int64, tgt_len [B] int32

Padded positions hold 0; lengths say what is valid. History keeps the most recent events.

Example:
    data = encode_request(request_id=1, user_id=7, request_ts=1000, hist_item_id=[5, 4],
                          hist_author_id=[1, 1], hist_action=[1, 0], hist_ts=[900, 800],
                          tgt_item_id=[9], tgt_author_id=[2], labels={"click": [1]})
    inputs, labels = model_inputs(parse_examples(tf.constant([data]), ["click"]), ["click"])
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from core import example_writer
# The names live in core.schema (no TensorFlow there, for the Beam workers); they are part
# of this module's API.
from core.schema import (CANDIDATE_INPUTS, HIST_LEN, HISTORY_FEATURES,  # noqa: F401
                         LENGTH_FEATURES, MODEL_INPUTS, REQUEST_INPUTS, SCALAR_FEATURES,
                         TARGET_FEATURES, TGT_LEN, USER_INPUTS, label_feature)


def input_dtype(name: str) -> tf.DType:
    return tf.int32 if name in LENGTH_FEATURES else tf.int64


def input_shape(name: str) -> list:
    """Shape of a model input with unknown batch / length dims (for signatures)."""
    if name in REQUEST_INPUTS or name in LENGTH_FEATURES:
        return [None]
    return [None, None]


def input_signature(names: Sequence[str] = MODEL_INPUTS) -> dict[str, tf.TensorSpec]:
    return {n: tf.TensorSpec(input_shape(n), input_dtype(n), name=n) for n in names}


def feature_spec(tasks: Sequence[str]) -> dict:
    """tf.io parsing spec. List features parse to RaggedTensors (1-D tensors per example)."""
    spec = {n: tf.io.FixedLenFeature([], tf.int64) for n in SCALAR_FEATURES}
    for n in HISTORY_FEATURES + TARGET_FEATURES + tuple(label_feature(t) for t in tasks):
        spec[n] = tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64)
    return spec


def encode_request(*, request_id: int, user_id: int, request_ts: int,
                   hist_item_id: Sequence[int], hist_author_id: Sequence[int],
                   hist_action: Sequence[int], hist_ts: Sequence[int],
                   tgt_item_id: Sequence[int], tgt_author_id: Sequence[int],
                   labels: Mapping[str, Sequence[int]]) -> bytes:
    """One request -> serialized tf.train.Example. IDs must already be int64 (idhash)."""
    n_hist, n_tgt = len(hist_item_id), len(tgt_item_id)
    for name, values in (("hist_author_id", hist_author_id), ("hist_action", hist_action),
                         ("hist_ts", hist_ts)):
        if len(values) != n_hist:
            raise ValueError(f"{name} has {len(values)} values, hist_item_id has {n_hist}")
    if len(tgt_author_id) != n_tgt:
        raise ValueError(f"tgt_author_id has {len(tgt_author_id)} values, "
                         f"tgt_item_id has {n_tgt}")
    # Written in the wire format (core/example_writer.py): the bytes of the
    # tf.train.Example of these features, serialized deterministically.
    feats = [("request_id", example_writer.varint(int(request_id))),
             ("user_id", example_writer.varint(int(user_id))),
             ("request_ts", example_writer.varint(int(request_ts)))]
    for name, values in (("hist_item_id", hist_item_id), ("hist_author_id", hist_author_id),
                         ("hist_action", hist_action), ("hist_ts", hist_ts),
                         ("tgt_item_id", tgt_item_id), ("tgt_author_id", tgt_author_id)):
        feats.append((name, example_writer.Varints(values).data))
    for task, values in labels.items():
        if len(values) != n_tgt:
            raise ValueError(f"labels[{task!r}] has {len(values)} values, expected {n_tgt}")
        feats.append((label_feature(task), example_writer.Varints(values).data))
    return example_writer.example(feats)


def _check_labels(parsed: dict, tasks: Sequence[str], lengths) -> dict:
    """Every label list must have one value per target: a record written for other tasks
    (data.schema.tasks differs from the data) fails here with a message, not later."""
    checks = [tf.debugging.assert_equal(
        lengths(parsed[label_feature(t)]), lengths(parsed["tgt_item_id"]),
        message=f"{label_feature(t)} does not have one value per target: the records were "
                f"written for other tasks than data.schema.tasks={list(tasks)}")
        for t in tasks]
    with tf.control_dependencies(checks):
        return {k: tf.identity(v) for k, v in parsed.items()}


def parse_examples(serialized: tf.Tensor, tasks: Sequence[str]) -> dict:
    """[B] serialized Examples -> dict of [B] scalars and [B, None] RaggedTensors."""
    parsed = tf.io.parse_example(serialized, feature_spec(tasks))
    return _check_labels(parsed, tasks, lambda v: v.row_lengths())


def parse_example(serialized: tf.Tensor, tasks: Sequence[str]) -> dict:
    """One serialized Example -> dict of scalars and 1-D tensors."""
    parsed = tf.io.parse_single_example(serialized, feature_spec(tasks))
    return _check_labels(parsed, tasks, tf.size)


def _pad(ragged: tf.RaggedTensor, width) -> tf.Tensor:
    dense = ragged.to_tensor(default_value=0)
    if width is None:
        # Never a zero-size axis: a batch of empty histories still gets one padded slot.
        width = tf.maximum(tf.shape(dense)[1], 1)
        return tf.pad(dense, [[0, 0], [0, width - tf.shape(dense)[1]]])
    return ragged.to_tensor(default_value=0, shape=[None, width])


def model_inputs(parsed: Mapping[str, tf.Tensor], tasks: Sequence[str],
                 max_history: int | None = None, pad_history_to: int | None = None,
                 pad_targets_to: int | None = None) -> tuple[dict, dict]:
    """Parsed records (batched, ragged lists) -> (dense model inputs, labels).

    Args:
      parsed: output of `parse_examples` (or any dict with the same names whose list
        features are [B, None] RaggedTensors, e.g. after per-example truncation).
      tasks: label tasks to return (a subset of those parsed).
      max_history: keep only the most recent `max_history` events (records are stored
        most recent first, so this is a prefix).
      pad_history_to: static padded history length (must be >= the kept lengths);
        None pads to the longest history in the batch (at least 1).
      pad_targets_to: static padded target count; None pads to the batch maximum.

    Returns:
      inputs: dict named as `MODEL_INPUTS`.
      labels: dict task -> [B, M] float32 (0 at padded targets).
    """
    hist = {n: parsed[n] for n in HISTORY_FEATURES}
    if max_history is not None:
        hist = {n: v[:, :max_history] for n, v in hist.items()}
    inputs = {
        "user_id": tf.cast(parsed["user_id"], tf.int64),
        "request_ts": tf.cast(parsed["request_ts"], tf.int64),
    }
    for n, v in hist.items():
        inputs[n] = _pad(v, pad_history_to)
    inputs[HIST_LEN] = tf.cast(hist["hist_item_id"].row_lengths(), tf.int32)
    for n in TARGET_FEATURES:
        inputs[n] = _pad(parsed[n], pad_targets_to)
    inputs[TGT_LEN] = tf.cast(parsed["tgt_item_id"].row_lengths(), tf.int32)
    width = tf.shape(inputs["tgt_item_id"])[1]
    labels = {}
    for t in tasks:
        dense = parsed[label_feature(t)].to_tensor(default_value=0)
        dense = tf.pad(dense, [[0, 0], [0, width - tf.shape(dense)[1]]])
        labels[t] = tf.cast(dense, tf.float32)
    return inputs, labels


def target_mask(tgt_len: tf.Tensor, width) -> tf.Tensor:
    """[B] lengths -> [B, M] bool mask of valid targets."""
    return tf.sequence_mask(tgt_len, width)


def split_history(inputs: Mapping, newest) -> tuple[dict, dict]:
    """(older, newer) of dense model inputs: `newer` holds the history features of each
    request's `newest[b]` most recent valid events (stored first) and their count as
    HIST_LEN; `older` is `inputs` with those events removed (the rest moved to the front,
    zero padded). extend_user(encode_user(older), newer) is the cache of `inputs`.

    Args:
      inputs: name -> array (numpy or eager tensors) named as MODEL_INPUTS or USER_INPUTS.
      newest: [B] ints (or one int), clipped to each request's HIST_LEN.
    """
    lens = np.asarray(inputs[HIST_LEN], np.int32)
    k = np.minimum(np.broadcast_to(np.asarray(newest, np.int32), lens.shape), lens)
    width = np.asarray(inputs[HISTORY_FEATURES[0]]).shape[1]
    pos = np.arange(width)[None, :]
    newer, older = {HIST_LEN: k.astype(np.int32)}, dict(inputs)
    for name in HISTORY_FEATURES:
        x = np.asarray(inputs[name])
        newer[name] = np.where(pos < k[:, None], x, 0).astype(x.dtype)
        moved = np.take_along_axis(x, np.minimum(pos + k[:, None], width - 1), axis=1)
        older[name] = np.where(pos < (lens - k)[:, None], moved, 0).astype(x.dtype)
    older[HIST_LEN] = (lens - k).astype(np.int32)
    return older, newer
