"""The bench_perf plot: FLOP/s vs L, STCA vs transformer, RLB vs point-wise, profile."""
from __future__ import annotations

import pathlib


def plot(report, path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.patches  # noqa: F401
    import matplotlib.pyplot as plt
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
