"""The figures of the benchmark results (matplotlib, Agg): one function per figure."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402


def bench_perf(report: dict, path) -> None:
    """bench_perf.json: FLOP/s vs L, STCA vs transformer, RLB vs point-wise, profile."""
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    ax = axes[0]
    lengths = [r["L"] for r in report["flops"]]
    for way, name in (("plain", "XLA off"), ("jit", "XLA on")):
        ax.plot(lengths, [r[way]["gflops"] for r in report["flops"]], marker="o", label=name)
    ax.axhline(report["matmul"]["gflops"], color="black", linestyle="--", label="matmul limit")
    ax.set(xscale="log", xlabel="history length L", ylabel="GFLOP/s",
           title=f"STCA training FLOP/s (d={report['workload']['d_model']})")
    ax.set_xscale("log", base=2)
    ax = axes[1]
    rows = [r for r in report["transformer"] if "ratio" in r]
    ax.plot([r["L"] for r in rows], [r["stca_s"] for r in rows], marker="o", label="STCA")
    ax.plot([r["L"] for r in rows], [r["transformer_s"] for r in rows], marker="o",
            label="transformer (scaled)")
    ax.set(yscale="log", xlabel="history length L", ylabel="step seconds",
           title="STCA vs transformer training step")
    ax.set_xscale("log", base=2)
    r = report["rlb"]
    for i, (name, way) in enumerate((("XLA off", r), ("XLA on", r.get("xla")))):
        if way:
            axes[2].bar([i - 0.2, i + 0.2], [way["rlb_targets_per_s"],
                                             way["pointwise_targets_per_s"]], width=0.4,
                        color=["tab:blue", "tab:orange"])
    axes[2].set_xticks([0, 1], ["XLA off", "XLA on"])
    axes[2].legend(handles=[matplotlib.patches.Patch(color="tab:blue", label="RLB"),
                            matplotlib.patches.Patch(color="tab:orange", label="point-wise")])
    axes[2].set(ylabel="targets / s", title=f"training throughput at L={r['L']}, "
                f"m={report['workload']['targets_per_request']}")
    prof = report["profile"]["by_type"][:8][::-1]
    axes[3].barh([g["op"] for g in prof], [g["share"] for g in prof])
    axes[3].set(xlabel="share of op time", title=f"profile, XLA off, L={report['profile']['L']}")
    for ax in axes[:2]:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bench_encoders(rows: list[dict], path) -> None:
    """bench_encoders.json's rows: step time and step peak memory against L, log-log."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    series = {}
    for row in rows:
        if "step_s" in row:
            label = row["encoder"] + (" +recompute" if row["recompute"] else "")
            series.setdefault(label, []).append(row)
    for name, points in series.items():
        points.sort(key=lambda r: r["length"])
        lengths = [r["length"] for r in points]
        left.plot(lengths, [r["step_s"] for r in points], marker="o", label=name,
                  linestyle="--" if "recompute" in name else "-")
        scaled = [r for r in points if r["scale"] != 1.0]
        if scaled:
            left.scatter([r["length"] for r in scaled], [r["step_s"] for r in scaled],
                         facecolors="none", edgecolors="black", s=90, zorder=3)
        peaks = [(r["length"], r["step_peak_bytes"] / 2**20) for r in points
                 if r.get("step_peak_bytes") and r["scale"] == 1.0]
        if peaks:
            right.plot(*zip(*peaks), marker="o", label=name,
                       linestyle="--" if "recompute" in name else "-")
    for ax, title, unit in ((left, "training step time (circled: transformer time scaled "
                                   "from fewer sequences)", "seconds"),
                            (right, "peak memory of one training step", "MiB")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("history length L")
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def bench_serving(rows: list[dict], path, before_commit: str) -> None:
    """bench_serving.json: p50 latency per way vs candidates, one panel per L."""
    lengths = sorted({r["L"] for r in rows})
    fig, axes = plt.subplots(1, len(lengths), figsize=(5 * len(lengths), 4), squeeze=False)
    for ax, length in zip(axes[0], lengths):
        sub = sorted((r for r in rows if r["L"] == length), key=lambda r: r["m"])
        ms = [r["m"] for r in sub]
        for key, label, style in (
                ("no_sharing", "no sharing (per-candidate history)", "-"),
                ("before_serving_default", "serving_default, before", "--"),
                ("serving_default", "serving_default", "-"),
                ("encode+score", "encode_user + score chunks", "-"),
                ("before_cached", "cached user, before (X~ cache)", "--"),
                ("cached", "cached user (K / V cache)", "-"),
                ("cached_bf16", "cached user, bf16 K / V", ":")):
            ax.plot(ms, [r[key]["p50_ms"] for r in sub], style, marker="o", label=label)
        ax.set(xscale="log", yscale="log", xlabel="candidates m", ylabel="p50 latency (ms)",
               title=f"L = {length}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"STCA serving latency per request (d=64, h=4, N=3, in-process SavedModel; "
                 f"before = {before_commit})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def auc_vs_length(curves: dict, reference, lengths, mean_len: int, title: str, path) -> None:
    """One panel per task: {task: {label: [Stat per L]}}, the model-free reference
    ({task: [AUC per L]} or None), the mean training length (dashed) and 5x it (dotted)."""
    fig, axes = plt.subplots(1, len(curves), figsize=(4.4 * len(curves), 3.6), squeeze=False)
    for ax, (task, series) in zip(axes[0], curves.items()):
        for label, stats in series.items():
            ax.errorbar(lengths, [x.mean for x in stats], yerr=[x.half for x in stats],
                        marker="o", ms=3, capsize=2, label=label)
        if reference:
            ax.plot(lengths, reference[task], "k--", lw=1, label="model-free reference")
        ax.axvline(mean_len, color="gray", ls="--", lw=0.8)
        ax.axvline(5 * mean_len, color="gray", ls=":", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("inference history length L")
        ax.set_ylabel(f"{task} AUC")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
