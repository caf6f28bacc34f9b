"""docs/performance.md from the benchmark JSONs of one results folder.

Template benchmarks/templates/performance.md.j2; each JSON below is a template variable
of its name (None when the file is missing: its sections are left out). The aims come
from benchmarks/aims.yaml, measured on the same JSONs.
"""
from __future__ import annotations

import json
import os
import pathlib

import aims as aims_lib
import report

JSONS = ("bench_perf", "bench_encoders", "bench_serving", "bench_serving_previous",
         "bench_preprocess", "bench_train", "bench_xla",
         "bench_eval", "quality_throughput", "bench_preprocess_quick_compare", "run_all")
PLOTS = ("bench_perf", "bench_encoders", "bench_serving")
NOT_EXPLAINED = "See the section of this claim above."


def load(results: pathlib.Path) -> dict:
    """{name: JSON or None} of JSONS in the folder `results`."""
    paths = {name: results / f"{name}.json" for name in JSONS}
    return {name: json.loads(p.read_text()) if p.exists() else None for name, p in paths.items()}


def measured_aims(data: dict, explain_all: bool = False) -> list[dict]:
    """The aims' rows on `data`; a missed one (every one with `explain_all`) also gets its
    "explanation" (aims.yaml)."""
    from core.config import ModelConfig
    rows = aims_lib.evaluate({k: v for k, v in data.items() if v is not None})
    by_claim = {a["claim"]: a for a in rows}
    missed = {aim["claim"]: aim.get("missed") for aim in aims_lib.load()}
    for a in rows:
        if explain_all or not a["met"]:
            a["explanation"] = report.render_string(
                missed[a["claim"]] or NOT_EXPLAINED, **data, data=data[a["json"]], aim=a,
                aims=by_claim, model=ModelConfig())
    return rows


def machines(data: dict) -> list[tuple[str, dict]]:
    """(JSON name, its machine with a "load" text: 1-min load average at start -> end)
    for every loaded JSON that records the machine it ran on."""
    rows = []
    for name, result in data.items():
        m = (result or {}).get("machine") if name != "run_all" else None
        if not m:
            continue
        start = m.get("load_average_start") or m.get("load_average_at_start")
        end = m.get("load_average_end")
        load = (f"{start[0]:.2f} -> {end[0]:.2f}" if start and end else
                f"{start[0]:.2f} at start" if start else
                f"{end[0]:.2f} at the end" if end else "not recorded")
        rows.append((name, dict(m, load=load)))
    return rows


def render(results: pathlib.Path, doc_dir: pathlib.Path, repo: pathlib.Path) -> str:
    """The page for the JSONs in `results`; plot links relative to `doc_dir`."""
    data = load(results)
    manifest = data["run_all"] or {}
    rel = os.path.relpath(results, doc_dir)
    text = report.render(
        "performance.md.j2", **data, machines=machines(data), mode=manifest.get("mode", "?"),
        results_rel=os.path.relpath(results, repo), aims=measured_aims(data),
        plots={n: f"{rel}/{n}.png" for n in PLOTS if (results / f"{n}.png").exists()})
    return text.rstrip() + "\n"
