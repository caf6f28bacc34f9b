"""Renders docs/results.md and its plots from the JSON that benchmarks/run_results.py writes.

Every number in the page comes from that JSON; the checks the issues ask for are computed
here and reported as they come out ("holds" / "does NOT hold"), never edited by hand.
"""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ENCODER_ORDER = ("stca", "longer", "target_attention", "din", "transformer", "mean")
TITLES = {"synth": "Synthetic logs (planted long-range signal)", "movielens": "MovieLens 100K"}


def _row(run: dict, length: int) -> dict:
    for r in run["eval"]["rows"]:
        if r["length"] == length:
            return r
    raise KeyError(f"L={length}")


def _auc(run: dict, length: int, task: str) -> float:
    return _row(run, length)[task]["auc"]


def _mean_auc(run: dict, length: int, tasks) -> float:
    return sum(_auc(run, length, t) for t in tasks) / len(tasks)


NOISE = 0.005  # AUC differences below this are within run-to-run noise on these eval sets


def _holds(ok: bool, margin: float | None = None) -> str:
    if not ok:
        return "**does NOT hold**"
    if margin is not None and margin < NOISE:
        return f"holds, but by {margin:.4f} AUC, within noise"
    return "holds"


def _fmt(x: float) -> str:
    return f"{x:.4f}"


def _train_s(run: dict) -> float:
    return run["train"]["wall_seconds"]


def plot_auc_vs_length(ds: dict, tasks, path: str, title: str) -> None:
    runs, s = ds["runs"], ds["settings"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for name in ("stca_beta", "longer_beta", "mean_beta"):
            if name not in runs:
                continue
            rows = runs[name]["eval"]["rows"]
            ax.plot([r["length"] for r in rows], [r[task]["auc"] for r in rows], marker="o",
                    label=name.replace("_beta", " (Beta-trained)"))
        fixed = runs.get("stca_fixed_long")
        if fixed:
            rows = fixed["eval"]["rows"]
            ax.plot([r["length"] for r in rows], [r[task]["auc"] for r in rows], "s--",
                    label=f"stca (fixed L={s['fixed_len']})")
        ax.axvline(s["mean_len"], color="gray", ls="--", lw=0.8)
        ax.axvline(5 * s["mean_len"], color="gray", ls=":", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("inference history length L")
        ax.set_ylabel(f"{task} AUC")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_encoders(ds: dict, tasks, path: str, title: str) -> None:
    names = [e for e in ENCODER_ORDER if f"compare_{e}" in ds["runs"]]
    runs = [ds["runs"][f"compare_{e}"] for e in names]
    L = ds["settings"]["compare_len"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.bar(names, [_mean_auc(r, L, tasks) for r in runs], color="tab:blue")
    a1.set_ylim(min(_mean_auc(r, L, tasks) for r in runs) - 0.02,
                max(_mean_auc(r, L, tasks) for r in runs) + 0.01)
    a1.set_ylabel(f"mean AUC over tasks at L={L}")
    a2.bar(names, [_train_s(r) for r in runs], color="tab:orange")
    a2.set_ylabel("training wall seconds (same steps)")
    a2.set_yscale("log")
    for ax in (a1, a2):
        ax.tick_params(axis="x", rotation=30)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(name: str, ds: dict, doc_dir: str) -> list[str]:
    s, st = ds["settings"], ds["data_stats"]["splits"]
    out = [f"## {TITLES[name]}", "",
           f"Data: {st['train']['requests']:,} train / {st['eval']['requests']:,} eval requests, "
           f"{ds['targets_per_request']:.1f} targets per train request; training wall time "
           f"of all runs: {sum(_train_s(r) for r in ds['runs'].values()) / 60:.0f} min.", ""]
    for title, part in (("a. AUC against inference length", _part_a),
                        ("b. Length extrapolation", _part_b),
                        ("Diagnosis runs", _part_diag),
                        ("c. Encoders at the same L, token budget and steps", _part_c),
                        ("d. Request Level Batching vs point-wise training", _part_d)):
        out += [f"### {title}", ""]
        try:
            out += part(name, ds, s, ds["runs"]["stca_beta"]["eval"]["tasks"], doc_dir)
        except KeyError as e:  # a run that did not finish (run_results.py --collect)
            out += [f"*Not finished in this run (missing {e}).*", ""]
    return out


def _part_a(name, ds, s, tasks, doc_dir) -> list[str]:
    runs, mean_len = ds["runs"], s["mean_len"]
    lengths = [r["length"] for r in runs["stca_beta"]["eval"]["rows"]]
    out = []
    plot = f"results_{name}_auc_vs_length.png"
    plot_auc_vs_length(ds, tasks, os.path.join(doc_dir, plot), TITLES[name])
    out += [f"Trained on Beta({s['beta'][3].split('=')[1]}, {s['beta'][4].split('=')[1]}) "
            f"windows on {s['window']} (mean {mean_len}), {s['steps']} steps at a "
            f"{s['budget']}-token budget; evaluated on the eval split at each L "
            "(the most recent L events).", ""]
    models = [m for m in ("stca_beta", "longer_beta", "mean_beta") if m in runs]
    oracle = {r["length"]: r for r in ds.get("oracle", [])}
    head = ["L"] + [f"{m.replace('_beta', '')} {t}" for m in models for t in tasks]
    head += [f"reference {t}" for t in tasks] if oracle else []
    out += ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for L in lengths:
        cells = [str(L)] + [_fmt(_auc(runs[m], L, t)) for m in models for t in tasks]
        cells += [_fmt(oracle[L][t]["auc"]) for t in tasks] if oracle else []
        out.append("| " + " | ".join(cells) + " |")
    if oracle:
        out += ["", "\"reference\" is model-free (`benchmarks/oracle.py`): a target's score is the "
                "number of the request's L most recent events with the target's author and a "
                "positive action. It shows what the data offers at each L."]
    out += ["", f"![AUC vs L]({plot})", "",
            "(Dashed line: mean training length; dotted: 5x that.)", ""]
    lo, hi = s["check_lengths"]
    for t in tasks:
        a_hi, a_lo = _auc(runs["stca_beta"], hi, t), _auc(runs["stca_beta"], lo, t)
        a_mean = max(_auc(runs["mean_beta"], L, t) for L in lengths)
        out.append(f"- {t}: STCA@{hi} {_fmt(a_hi)} > STCA@{lo} {_fmt(a_lo)} > best mean "
                   f"pooling {_fmt(a_mean)}: "
                   f"{_holds(a_hi > a_lo > a_mean, min(a_hi - a_lo, a_lo - a_mean))}")
    return out + [""]


def _part_b(name, ds, s, tasks, doc_dir) -> list[str]:
    runs, mean_len = ds["runs"], s["mean_len"]
    ext = 5 * mean_len
    fixed, fixed_len = runs["stca_fixed_long"], s["fixed_len"]
    out = [f"The Beta-trained models evaluated at their mean training length ({mean_len}) and "
            f"at 5x that ({ext}); STCA trained at a fixed L = {fixed_len} for the same steps is the "
            "expensive reference.", "",
            "| model | task | AUC @ mean L | AUC @ 5x mean L | gain | train wall s |",
            "|---|---|---:|---:|---:|---:|"]
    for m in [m for m in ("stca_beta", "longer_beta") if m in runs]:
        for t in tasks:
            a, b = _auc(runs[m], mean_len, t), _auc(runs[m], ext, t)
            out.append(f"| {m} | {t} | {_fmt(a)} | {_fmt(b)} | {b - a:+.4f} | "
                       f"{_train_s(runs[m]):.0f} |")
    for t in tasks:
        a, b = _auc(fixed, mean_len, t), _auc(fixed, ext, t)
        out.append(f"| stca_fixed_{fixed_len} | {t} | {_fmt(a)} | {_fmt(b)} | {b - a:+.4f} | "
                   f"{_train_s(fixed):.0f} |")
    out.append("")
    for m in [m for m in ("stca_beta", "longer_beta") if m in runs]:
        gains = [_auc(runs[m], ext, t) - _auc(runs[m], mean_len, t) for t in tasks]
        out.append(f"- {m} at 5x its mean training length beats itself at the mean on "
                   f"{sum(g > 0 for g in gains)}/{len(tasks)} tasks: "
                   f"{_holds(all(g > 0 for g in gains), min(gains))}")
    for t in tasks:
        gap = _auc(fixed, ext, t) - _auc(runs["stca_beta"], ext, t)
        out.append(f"- {t} at {ext}: the fixed-{fixed_len} model is {gap:+.4f} AUC from the "
                   "Beta-trained one.")
    out.append(f"- Training cost: fixed-{fixed_len} took "
               f"{_train_s(fixed) / _train_s(runs['stca_beta']):.1f}x the wall time of the "
               "Beta-sampled run for the same steps and token budget (fewer requests per step).")
    return out + [""]


def _part_diag(name, ds, s, tasks, doc_dir) -> list[str]:
    runs, fixed_len, out = ds["runs"], s["fixed_len"], []
    diags = sorted(k for k in runs if k.startswith("diag_"))
    if diags:
        fixed = runs["stca_fixed_long"]["overrides"]
        changes = ", ".join(f"`{d}`: `{' '.join(o for o in runs[d]['overrides'] if o not in fixed)}`"
                            for d in diags)
        out += [f"Same settings as stca_fixed_{fixed_len} except ({changes}).", "",
                "| model | L | " + " | ".join(f"{t} AUC | {t} GAUC" for t in tasks) +
                " | final train loss |", "|---|---:|" + "---:|" * (2 * len(tasks) + 1)]
        for m in ["stca_fixed_long"] + diags:
            for row in runs[m]["eval"]["rows"]:
                out.append(f"| {m} | {row['length']} | " + " | ".join(
                    f"{_fmt(row[t]['auc'])} | {_fmt(row[t]['gauc'])}" for t in tasks) +
                    f" | {runs[m]['train']['final_loss_avg_last_20']:.4f} |")
        tb = ds.get("oracle_train_batches")
        if tb:
            out += ["", f"The model-free reference on the first {tb['batches']} training "
                    f"batches of stca_fixed_{fixed_len} ({tb['targets']:,} targets, after "
                    "length sampling and target splitting): " + ", ".join(
                        f"{t} AUC {_fmt(tb[t]['auc'])} / GAUC {_fmt(tb[t]['gauc'])}"
                        for t in tasks) + "."]
    else:
        out.append("None on this data set.")
    return out + [""]


def _part_c(name, ds, s, tasks, doc_dir) -> list[str]:
    runs, L = ds["runs"], s["compare_len"]
    plot = f"results_{name}_encoders.png"
    plot_encoders(ds, tasks, os.path.join(doc_dir, plot), f"{TITLES[name]}: L={L}")
    out = [f"Fixed L = {L}, {s['compare_budget']}-token budget, {s['compare_steps']} steps, "
            "same seed and batches.", "",
            "| encoder | " + " | ".join(f"{t} AUC | {t} GAUC" for t in tasks)
            + " | train wall s | s / step |", "|---|" + "---:|" * (2 * len(tasks) + 2)]
    for e in ENCODER_ORDER:
        r = runs.get(f"compare_{e}")
        if r is None:
            continue
        row = _row(r, L)
        cells = [f"{_fmt(row[t]['auc'])} | {_fmt(row[t]['gauc'])}" for t in tasks]
        steps = r["train"]["steps"] - r["train"]["start_step"]
        out.append(f"| {e} | " + " | ".join(cells) +
                   f" | {_train_s(r):.0f} | {_train_s(r) / max(steps, 1):.3f} |")
    out += ["", f"![encoders]({plot})", ""]
    best = max((e for e in ENCODER_ORDER if f"compare_{e}" in runs),
               key=lambda e: _mean_auc(runs[f"compare_{e}"], L, tasks))
    return out + [f"- Best mean AUC at L = {L}: **{best}**.", ""]


def _part_d(name, ds, s, tasks, doc_dir) -> list[str]:
    runs, L = ds["runs"], s["compare_len"]
    rlb, pw = runs["rlb"], runs["pointwise"]
    out = [f"The same model and L = {L}; RLB trains {rlb['train']['steps']} steps on "
            f"request-grouped records, point-wise {pw['train']['steps']} steps on one-target "
            "records (about the same number of targets); both are evaluated on the "
            "request-grouped eval split.", "",
            "| layout | " + " | ".join(f"{t} AUC" for t in tasks) +
            " | targets trained on | train wall s | targets / s |",
            "|---|" + "---:|" * (len(tasks) + 3)]
    for label, r in (("RLB", rlb), ("point-wise", pw)):
        seen = r["train"]["targets_seen"]
        out.append(f"| {label} | " + " | ".join(_fmt(_auc(r, L, t)) for t in tasks) +
                   f" | {seen:,} | {_train_s(r):.0f} | {seen / _train_s(r):,.0f} |")
    diffs = [abs(_auc(rlb, L, t) - _auc(pw, L, t)) for t in tasks]
    speedup = (rlb["train"]["targets_seen"] / _train_s(rlb)) / (
        pw["train"]["targets_seen"] / _train_s(pw))
    out += ["", f"- RLB trains **{speedup:.1f}x** more targets per second; "
            f"largest AUC difference {max(diffs):.4f}.", ""]
    return out


def write(results: dict, doc_dir: str) -> str:
    m = results["machine"]
    lines = ["# Results", "",
             "Quality experiments asked for by issues 3, 4 and 7, produced by one script "
             "through the real `stca` CLI (synth -> preprocess -> train -> evaluate):", "",
             "    .venv/bin/python benchmarks/run_results.py --write-docs", "",
             f"Machine: {m['platform']}, {m['cpu_count']} CPUs (shared), Python "
             f"{m['python']}, no GPU; last run_results invocation {m['date']}; every run "
             "shared the 2 cores with other jobs (load average 4-9)"
             + (" (**--quick sizes**)" if results.get("quick") else "") + ".",
             "Seeds: synth.seed = 0, train.seed = 0 for every run (the config defaults). "
             f"Single runs, no repeats: on these eval sets differences below ~{NOISE} AUC are "
             "within noise.", ""]
    findings = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results_findings.md")
    if os.path.exists(findings):  # the hand-written reading of the tables below
        with open(findings) as f:
            lines += [f.read().strip(), ""]
    for name in ("synth", "movielens"):
        if name in results["datasets"]:
            lines += section(name, results["datasets"][name], doc_dir)
    lines += ["## Exact commands", ""]
    for name, ds in results["datasets"].items():
        lines += [f"{TITLES[name]}:", ""] + [f"    {c}" for c in ds["commands"]] + [""]
    path = os.path.join(doc_dir, "results.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path
