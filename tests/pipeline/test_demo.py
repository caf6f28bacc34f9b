"""`stca demo` end to end in a real process, on a tiny version of configs/demo.yaml."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.env import REPO

TINY = ["synth.users=4", "synth.events_median=300", "synth.events_min=100",
        "synth.events_max=600", "train.steps=4", "train.checkpoint_every=2",
        "train.log_every=2", "eval.lengths=[64,512]", "export.verify_history=512"]


@pytest.mark.slow  # the whole demo in a child process
def test_demo_runs_the_whole_path(tmp_path):
    workdir = tmp_path / "demo"
    args = [a for o in TINY for a in ("--set", o)]
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "demo", "--workdir",
                           str(workdir), *args], capture_output=True, text=True, timeout=900,
                          cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((workdir / "demo_summary.json").read_text())
    assert summary["dead_letters"] == 0 and summary["requests"] > 0
    assert summary["train_steps"] == 4
    assert set(summary["auc_by_inference_length"]) == {"64", "512"}
    # The history-use check is part of the demo's report (values are noise after 4 steps).
    use = summary["history_use_auc_delta"]
    assert set(use) == {"64", "512"} and set(use["64"]["click"]) == {"no_history", "other_users"}
    assert set(summary["auc_per_doubling_of_length"]) == {"click", "like", "finish"}
    assert "no history" in proc.stdout or "-hist" in proc.stdout
    assert summary["verify_export"] == "passed"
    sample = summary["sample_request"]
    assert sample["max_abs_diff_serving_default_vs_cached"] <= 1e-5
    assert sample["second_call_cache_hit"] is True
    assert list(summary["seconds"]) == ["synth", "preprocess", "train", "evaluate", "export",
                                        "verify-export", "score a sample request both ways"]
    # The stages' outputs are real files in the work dir.
    assert (workdir / "data" / "stats.json").exists()
    assert (workdir / "model" / "eval" / "auc_vs_length.png").exists()
    assert (workdir / "model" / "config.yaml").exists()
