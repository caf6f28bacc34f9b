"""Names of the request record's features and of the model inputs, without TensorFlow.

`core.features` (the record schema and the one builder of model inputs) re-exports every
name here; this module exists so that code which only writes records (the Beam job's
workers, `beam_jobs/records.py`) does not import TensorFlow: each Beam worker process
imports what its DoFns need, and TensorFlow's import is ~2 s of CPU per process.

Example:
    from core import schema
    schema.label_feature("click")   # "label_click"
"""
from __future__ import annotations

SCALAR_FEATURES = ("request_id", "user_id", "request_ts")
HISTORY_FEATURES = ("hist_item_id", "hist_author_id", "hist_action", "hist_ts")
TARGET_FEATURES = ("tgt_item_id", "tgt_author_id")
HIST_LEN = "hist_len"                # valid history events per request, int32 [B]
TGT_LEN = "tgt_len"                  # valid targets per request, int32 [B]
LENGTH_FEATURES = (HIST_LEN, TGT_LEN)

# Model inputs in signature order; every serving signature uses these names.
REQUEST_INPUTS = ("user_id", "request_ts")
USER_INPUTS = REQUEST_INPUTS + HISTORY_FEATURES + (HIST_LEN,)
CANDIDATE_INPUTS = TARGET_FEATURES + (TGT_LEN,)
MODEL_INPUTS = USER_INPUTS + CANDIDATE_INPUTS


def label_feature(task: str) -> str:
    """The record feature holding `task`'s 0/1 labels, one per target."""
    return f"label_{task}"
