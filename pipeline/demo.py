"""`stca demo`: synth -> preprocess -> train -> evaluate -> export -> verify, then a summary.

Runs every stage in this process on built-in synthetic data (configs/demo.yaml when no
--config is given), so a fresh clone shows the whole path with one command: `make demo`.
"""
from __future__ import annotations

import json
import os
import time

import pipeline  # noqa: F401
from pipeline import config as config_lib
from pipeline import fileio

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


def run(cfg: config_lib.Config, workdir: str) -> dict:
    from beam_jobs import preprocess
    from pipeline import evaluate, synth, train

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
    summary = {
        "workdir": workdir,
        "events": synth_summary["events"],
        "requests": stats["requests"],
        "dead_letters": stats["dead_letters"],
        "history_length_p50_p99": [stats["history_length"]["p50"], stats["history_length"]["p99"]],
        "train_steps": train_metrics["steps"],
        "train_loss_last_20": round(train_metrics["final_loss_avg_last_20"], 4),
        "auc_by_inference_length": eval_summary["auc"],
        "seconds": timings,
    }
    fileio.write_text(fileio.join(workdir, "demo_summary.json"), json.dumps(summary, indent=2))
    print("\n=== demo summary ===")
    return summary
