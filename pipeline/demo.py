"""`stca demo`: synth -> preprocess -> train -> evaluate -> export -> verify -> score, then a summary.

Runs every stage in this process on built-in synthetic data (configs/demo.yaml when no
--config is given), so a fresh clone shows the whole path with one command: `make demo`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from beam_jobs import preprocess
from core import config as config_lib
from core import fileio
from pipeline import evaluate, synth, train
from serving import export, offline

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "configs", "demo.yaml")


def _stage(name: str, timings: dict):
    class _Timer:
        def __enter__(self):
            print(f"\n=== {name} ===", flush=True)
            self.t0 = time.time()

        def __exit__(self, *exc):
            timings[name] = round(time.time() - self.t0, 1)
    return _Timer()


def _verify_in_subprocess(export_path: str, data_dir: str) -> str:
    """verify-export is a release gate: it runs in its own process, as in CI/CD."""
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "verify-export",
                           "--export-dir", export_path, "--data", data_dir],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"verify-export failed:\n{proc.stderr[-4000:]}")
    return "passed"


def run(cfg: config_lib.Config, workdir: str) -> dict:
    raw, data = fileio.join(workdir, "raw"), fileio.join(workdir, "data")
    model_dir = fileio.join(workdir, "model")
    timings: dict = {}
    with _stage("synth", timings):
        synth_summary = synth.run(cfg, raw)
    with _stage("preprocess", timings):
        stats = preprocess.run(cfg, fileio.join(raw, "*.csv"), data)
    with _stage("train", timings):
        train_metrics = train.run(cfg, data, model_dir)
    with _stage("evaluate", timings):
        eval_summary = evaluate.run(cfg, data, model_dir)
    with _stage("export", timings):
        exported = export.run(cfg, model_dir, fileio.join(workdir, "export"))
    with _stage("verify-export", timings):
        verified = _verify_in_subprocess(exported["path"], data)
    with _stage("score a sample request both ways", timings):
        sample = offline.demo_score(exported["path"], data)
    summary = {
        "workdir": workdir,
        "events": synth_summary["events"],
        "requests": stats["requests"],
        "dead_letters": stats["dead_letters"],
        "history_length_p50_p99": [stats["history_length"]["p50"], stats["history_length"]["p99"]],
        "train_steps": train_metrics["steps"],
        "train_loss_last_20": round(train_metrics["final_loss_avg_last_20"], 4),
        "auc_by_inference_length": eval_summary["auc"],
        # "Does the model use the history?": AUC minus AUC without it / with another user's.
        "history_use_auc_delta": eval_summary.get("history_use_auc_delta"),
        "auc_per_doubling_of_length": eval_summary["auc_per_doubling"],
        "export": exported["path"],
        "verify_export": verified,
        "sample_request": {
            "history_length": sample["history_length"], "candidates": sample["candidates"],
            "max_abs_diff_serving_default_vs_cached": sample["max_abs_diff"],
            "second_call_cache_hit": sample["second_call_cache_hit"], "ms": sample["ms"]},
        "seconds": timings,
    }
    fileio.write_text(fileio.join(workdir, "demo_summary.json"), json.dumps(summary, indent=2))
    print("\n=== demo summary ===")
    return summary
