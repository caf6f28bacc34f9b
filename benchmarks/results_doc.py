"""Renders docs/results.md and its plots from OUT/results.json (benchmarks/run_results.py).

Numbers are computed here from the JSON and placed by the Jinja2 template
benchmarks/templates/results.md.j2; each check the page states is computed, never typed.
Over seeds, a value is shown as "mean ± half the range" (max - min over the seeds, / 2).
"""
from __future__ import annotations

import os

import jinja2
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
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


def verdict(ok: bool) -> str:
    return "holds" if ok else "**does NOT hold**"


def plot_auc_vs_length(ds, name, path):
    s, runs, tasks = ds["settings"], ds["runs"], ds["settings"]["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.4 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for model in CURVES:
            if model not in runs:
                continue
            stats = [auc(runs[model], L, task) for L in s["lengths"]]
            ax.errorbar(s["lengths"], [x.mean for x in stats], yerr=[x.half for x in stats],
                        marker="o", ms=3, capsize=2, label=LABELS[model])
        oracle = {r["length"]: r for r in ds.get("oracle", [])}
        if oracle:
            ax.plot(s["lengths"], [oracle[L][task]["auc"] for L in s["lengths"]], "k--",
                    lw=1, label="model-free reference")
        ax.axvline(s["mean_len"], color="gray", ls="--", lw=0.8)
        ax.axvline(5 * s["mean_len"], color="gray", ls=":", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("inference history length L")
        ax.set_ylabel(f"{task} AUC")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"{TITLES[name]}: AUC vs L (mean ± half range over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    checks = []
    stca = runs.get("stca", {})
    if stca:
        for t in tasks:
            delta = use(stca, at, t, "auc_delta_empty")
            checks.append(f"STCA history-ablation delta ({t}, L = {at}): {delta.signed()} "
                          f"(aim >= 0.02): {verdict(delta.mean >= 0.02)}")
        g = auc(stca, at, long_task, "gauc")
        checks.append(f"STCA {long_task} GAUC at L = {at}: {g} (aim >= 0.56): "
                      f"{verdict(g.mean >= 0.56)}")
        lo, hi = s["check_lengths"]
        rise = Stat([a - b for a, b in zip(auc(stca, hi, long_task).values,
                                             auc(stca, lo, long_task).values)])
        if oracle:
            ref = oracle[hi][long_task]["auc"] - oracle[lo][long_task]["auc"]
            checks.append(f"STCA {long_task} AUC rise from L = {lo} to {hi}: {rise.signed()}; "
                          f"model-free reference: {ref:+.4f} (aim: at least half, "
                          f"{ref / 2:+.4f}): {verdict(rise.mean >= ref / 2)}")
        else:
            checks.append(f"STCA {long_task} AUC rise from L = {lo} to {hi}: {rise.signed()}")
        for other in ("mean", "din", "longer", "stca_paper"):
            if other not in runs:
                continue
            for t in tasks:
                a, b = auc(stca, at, t), auc(runs[other], at, t)
                margin = a.mean - b.mean
                ok = margin > a.half + b.half
                outcome = "STCA ahead beyond the spread" if ok else "**not beyond the spread**"
                checks.append(f"STCA vs {LABELS[other]} ({t}, L = {at}): {a} vs {b}, "
                              f"difference {margin:+.4f} against a combined spread of "
                              f"{a.half + b.half:.4f}: {outcome}")
        m, m5 = s["mean_len"], 5 * s["mean_len"]
        gain = Stat([a - b for a, b in zip(auc(stca, m5, long_task).values,
                                             auc(stca, m, long_task).values)])
        checks.append(f"Extrapolation: Beta-trained STCA (mean training length {m}) on "
                      f"{long_task} at {m5} minus at {m}: {gain.signed()}: "
                      f"{verdict(gain.mean >= 0)}")
    deepctr = runs.get("deepctr_din", {})
    outside = []
    if deepctr:
        for t in deepctr[next(iter(deepctr))]["tasks"]:
            d_auc = Stat([r["tasks"][t]["auc"] for r in deepctr.values()])
            d_gauc = Stat([r["tasks"][t]["gauc"] for r in deepctr.values()])
            outside.append({"task": t, "deepctr": (str(d_auc), str(d_gauc)),
                            "stca": (str(auc(stca, at, t)), str(auc(stca, at, t, "gauc"))),
                            "targets": int(np.mean([r["targets"] for r in deepctr.values()]))})
            checks.append(f"STCA vs DeepCTR DIN ({t}, L = {at}, same number of training "
                          f"targets): {auc(stca, at, t)} vs {d_auc}: "
                          f"{verdict(auc(stca, at, t).mean >= d_auc.mean)}")
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
    return list(dict.fromkeys(c.replace(REPO + os.sep, "") for c in commands))


def write(results: dict, doc_dir: str) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    findings = ""
    path = os.path.join(HERE, "results_findings.md")
    if os.path.exists(path):  # the hand-written reading of the tables
        with open(path) as f:
            findings = f.read().strip()
    datasets = [dataset_context(n, results["datasets"][n], doc_dir)
                for n in ("synth", "movielens") if n in results["datasets"]]
    ablation = results.get("ablation")
    if ablation:
        ablation = dict(ablation, commands=shown_commands(ablation.get("commands", [])))
    text = env.get_template("results.md.j2").render(
        machine=results["machine"], quick=results.get("quick", False), findings=findings,
        datasets=datasets, ablation=ablation)
    out = os.path.join(doc_dir, "results.md")
    with open(out, "w") as f:
        f.write(text)
    return out
