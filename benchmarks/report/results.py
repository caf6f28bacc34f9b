"""docs/results.md and its plots from the quality experiments' results
(benchmarks/run_results.py; the committed copy is benchmarks/results/run_results.json).

Numbers are computed here from the JSON and placed by the Jinja2 template
benchmarks/templates/results.md.j2; each check the page states is computed, never typed.
Over seeds, a value is shown as "mean ± half the range" (max - min over the seeds, / 2).
"""
from __future__ import annotations

import os
import pathlib
import re

import numpy as np

import aims
import report

REPO = str(pathlib.Path(__file__).resolve().parents[2])
_RUN_PREFIX = re.compile(r"(?:/[^\s'/]+)+/(?=(?:runs|benchmarks)/)")
FINDINGS = pathlib.Path(__file__).resolve().parents[1] / "results_findings.md"
TITLES = {"synth": "Synthetic log (planted long-range signal)", "movielens": "MovieLens 100K"}
LABELS = {"stca": "STCA", "stca_paper": "STCA as in the paper (no ID-match prior)",
          "longer": "LONGER", "din": "DIN (project)", "target_attention": "target attention",
          "mean": "mean pooling", "stca_fixed": "STCA, fixed long L",
          "deepctr_din": "DeepCTR DIN 0.9.4"}
CURVES = ("stca", "stca_paper", "longer", "din", "mean")


class Stat:
    """A value over seeds: mean, half range, count."""

    def __init__(self, values):
        self.values = [float(v) for v in values if v is not None and np.isfinite(v)]
        self.mean = float(np.mean(self.values)) if self.values else float("nan")
        self.half = float(np.ptp(self.values) / 2) if len(self.values) > 1 else 0.0

    def __str__(self):
        if not self.values:
            return "n/a"
        return f"{self.mean:.4f} ± {self.half:.4f}" if len(self.values) > 1 \
            else f"{self.mean:.4f}"

    def signed(self):
        if not self.values:
            return "n/a"
        return f"{self.mean:+.4f} ± {self.half:.4f}" if len(self.values) > 1 \
            else f"{self.mean:+.4f}"


def _row(run, length):
    return next(r for r in run["eval"]["rows"] if r["length"] == length)


def over_seeds(runs: dict, fn) -> Stat:
    out = []
    for run in runs.values():
        try:
            out.append(fn(run))
        except (KeyError, StopIteration):
            pass
    return Stat(out)


def auc(runs, length, task, metric="auc"):
    return over_seeds(runs, lambda r: _row(r, length)[task][metric])


def use(runs, length, task, key):
    return over_seeds(runs, lambda r: _row(r, length)["history_use"][task][key])


def plot_auc_vs_length(ds, name, path):
    """AUC against L per task: every curve's mean and half range over seeds."""
    from report import plots
    s, runs = ds["settings"], ds["runs"]
    oracle = {r["length"]: r for r in ds.get("oracle", [])}
    curves = {task: {LABELS[m]: [auc(runs[m], L, task) for L in s["lengths"]]
                     for m in CURVES if m in runs} for task in s["tasks"]}
    reference = ({task: [oracle[L][task]["auc"] for L in s["lengths"]] for task in s["tasks"]}
                 if oracle else None)
    plots.auc_vs_length(curves, reference, s["lengths"], s["mean_len"],
                        f"{TITLES[name]}: AUC vs L (mean ± half range over seeds)", path)


def dataset_context(name: str, ds: dict, doc_dir: str) -> dict:
    s, runs = ds["settings"], ds["runs"]
    tasks, at, long_task = s["tasks"], s["compare_at"], s["long_task"]
    plot = f"results_{name}_auc_vs_length.png"
    plot_auc_vs_length(ds, name, os.path.join(doc_dir, plot))
    models = [m for m in CURVES if m in runs]
    oracle = {r["length"]: r for r in ds.get("oracle", [])}
    table_a = [{"length": L, "cells": [str(auc(runs[m], L, t)) for m in models for t in tasks],
                "oracle": [f"{oracle[L][t]['auc']:.4f}" for t in tasks] if oracle else []}
               for L in s["lengths"]]
    history = [{"model": LABELS[m], "seeds": len(runs[m]), "cells": [
        (str(auc(runs[m], at, t)), str(auc(runs[m], at, t, "gauc")),
         use(runs[m], at, t, "auc_delta_empty").signed(),
         use(runs[m], at, t, "auc_delta_swapped").signed()) for t in tasks]} for m in models]
    checks = []  # {"kind", the numbers}: worded by results.md.j2
    aim = aims.quality()
    stca = runs.get("stca", {})
    if stca:
        for t in tasks:
            delta = use(stca, at, t, "auc_delta_empty")
            checks.append({"kind": "history_delta", "task": t, "value": delta,
                           "aim": aim["history_delta"],
                           "ok": aims.holds(aim["history_delta"], delta.mean)})
        g = auc(stca, at, long_task, "gauc")
        checks.append({"kind": "long_task_gauc", "value": g, "aim": aim["long_task_gauc"],
                       "ok": aims.holds(aim["long_task_gauc"], g.mean)})
        lo, hi = s["check_lengths"]
        rise = Stat([a - b for a, b in zip(auc(stca, hi, long_task).values,
                                             auc(stca, lo, long_task).values)])
        check = {"kind": "rise", "lo": lo, "hi": hi, "value": rise, "reference": None}
        if oracle:
            ref = oracle[hi][long_task]["auc"] - oracle[lo][long_task]["auc"]
            share = aims.parse_target(aim["rise_over_reference"])[1]  # worded for 0.5
            check.update(reference=ref, needed=ref * share, ok=rise.mean >= ref * share)
        checks.append(check)
        for other in ("mean", "din", "longer", "stca_paper"):
            if other not in runs:
                continue
            for t in tasks:
                a, b = auc(stca, at, t), auc(runs[other], at, t)
                checks.append({"kind": "versus", "label": LABELS[other], "task": t, "stca": a,
                               "other": b, "margin": a.mean - b.mean, "spread": a.half + b.half,
                               "ok": a.mean - b.mean > a.half + b.half})
        m = s["mean_len"]
        gain = Stat([a - b for a, b in zip(auc(stca, 5 * m, long_task).values,
                                             auc(stca, m, long_task).values)])
        checks.append({"kind": "extrapolation", "value": gain, "ok": gain.mean >= 0})
    deepctr = runs.get("deepctr_din", {})
    outside = []
    if deepctr:
        for t in deepctr[next(iter(deepctr))]["tasks"]:
            d_auc = Stat([r["tasks"][t]["auc"] for r in deepctr.values()])
            d_gauc = Stat([r["tasks"][t]["gauc"] for r in deepctr.values()])
            outside.append({"task": t, "deepctr": (str(d_auc), str(d_gauc)),
                            "stca": (str(auc(stca, at, t)), str(auc(stca, at, t, "gauc"))),
                            "targets": int(np.mean([r["targets"] for r in deepctr.values()]))})
            checks.append({"kind": "deepctr", "task": t, "stca": auc(stca, at, t),
                           "other": d_auc, "ok": auc(stca, at, t).mean >= d_auc.mean})
    extrap = []
    for model in ("stca", "stca_fixed"):
        if model in runs:
            for t in tasks:
                a, b = auc(runs[model], s["mean_len"], t), auc(runs[model], 5 * s["mean_len"], t)
                extrap.append({"model": LABELS[model], "task": t, "at_mean": str(a),
                               "at_5x": str(b), "train_s": str(over_seeds(
                                   runs[model], lambda r: r["train"]["wall_seconds"]))})
    rlb = []
    for layout in ("rlb", "pointwise"):
        if layout in runs:
            r = runs[layout]
            rlb.append({"layout": "RLB" if layout == "rlb" else "point-wise",
                        "aucs": [str(auc(r, s["compare_len"], t)) for t in tasks],
                        "targets": str(over_seeds(r, lambda x: x["train"]["targets_seen"])),
                        "seconds": str(over_seeds(r, lambda x: x["train"]["wall_seconds"])),
                        "rate": over_seeds(r, lambda x: x["train"]["targets_seen"]
                                           / x["train"]["wall_seconds"])})
    speedup = (Stat([a / b for a, b in zip(rlb[0]["rate"].values, rlb[1]["rate"].values)])
               if len(rlb) == 2 else None)
    st = ds["data_stats"]["splits"]
    scored = next(iter(next(iter(runs.values())).values()))["eval"]["rows"][0]
    return {"name": name, "title": TITLES[name], "s": s, "tasks": tasks, "models": models,
            "labels": LABELS, "table_a": table_a, "oracle": bool(oracle), "plot": plot,
            "history": history, "checks": checks, "outside": outside, "extrap": extrap,
            "rlb": rlb, "speedup": speedup, "train_requests": st["train"]["requests"],
            "eval_requests": st["eval"]["requests"], "scored_requests": scored["requests"],
            "scored_targets": scored["targets"],
            "hours": ds.get("seconds", 0) / 3600,
            "commands": shown_commands(ds.get("commands", [])),
            "seeds": ds["seeds"]}


def shown_commands(commands) -> list[str]:
    """Commands relative to the repository, each once (invocations that reuse earlier runs
    log them again)."""
    # Commands are logged with absolute paths of the checkout that ran them; shown
    # relative (runs/..., benchmarks/...) so the page renders the same from any checkout.
    return list(dict.fromkeys(_RUN_PREFIX.sub("", c.replace(REPO + os.sep, ""))
                              for c in commands))


def render(results: dict, doc_dir) -> str:
    """The page for `results` (run_results.py's results.json); its plots go to `doc_dir`."""
    findings = FINDINGS.read_text().strip() if FINDINGS.exists() else ""  # hand-written
    datasets = [dataset_context(n, results["datasets"][n], str(doc_dir))
                for n in ("synth", "movielens") if n in results["datasets"]]
    ablation = results.get("ablation")
    if ablation:
        ablation = dict(ablation, commands=shown_commands(ablation.get("commands", [])))
    return report.render("results.md.j2", machine=results["machine"],
                         quick=results.get("quick", False), findings=findings,
                         datasets=datasets, ablation=ablation)
