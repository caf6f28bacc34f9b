"""Regression test for "the model does not use the history" (docs/results.md).

A short STCA run on the planted-signal synthetic log (synth -> Beam preprocess -> train ->
evaluate, all real) must score clearly better with each request's own history than with
no history or with another user's history. Before the ID-match prior and the attention
sink, every encoder ended as a constant of the history: both differences were below 0.005.
"""
import json

import pytest

from core import config as config_lib

SETUP = ["synth.users=40", "synth.events_median=1200", "synth.events_sigma=0.3",
         "synth.events_min=600", "synth.seed=1", "data.max_history=1024",
         "data.num_shards=2", "model.d_model=16", "model.num_heads=2", "model.num_layers=2",
         "model.head_width=32", "model.head_layers=1", "model.item_buckets=20011",
         "model.author_buckets=5003", "model.user_buckets=1009",
         "train.length.l_min=32", "train.length.l_max=256",
         "train.bucket_boundaries=[64,128,256]", "train.token_budget=8192",
         "train.steps=250", "train.warmup_steps=20", "train.checkpoint_every=250",
         "train.log_every=250", "eval.lengths=[256]"]


@pytest.mark.slow
def test_a_short_stca_run_uses_the_history(tmp_path):
    from beam_jobs import preprocess
    from pipeline import evaluate, synth, train
    cfg = config_lib.load_config(None, SETUP)
    synth.run(cfg, str(tmp_path / "raw"))
    preprocess.run(cfg, str(tmp_path / "raw" / "*.csv"), str(tmp_path / "data"))
    train.run(cfg, str(tmp_path / "data"), str(tmp_path / "model"))
    summary = evaluate.run(cfg, str(tmp_path / "data"), str(tmp_path / "model"))
    use = summary["history_use_auc_delta"][256]["click"]
    report = json.loads((tmp_path / "model" / "eval" / "eval_report.json").read_text())
    row = report["rows"][0]
    assert use["no_history"] >= 0.03, row
    assert use["other_users"] >= 0.03, row
    assert row["click"]["gauc"] >= 0.55, row
