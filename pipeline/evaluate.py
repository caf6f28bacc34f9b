"""`stca evaluate`: AUC and per-user GAUC per task, at several inference lengths.

The same trained model scores the eval split once per length in `eval.lengths` (the most
recent L events of each history), including lengths longer than any seen in training, to
show the length-extrapolation curve. Writes OUT/eval_report.{json,md} and
OUT/auc_vs_length.png (OUT defaults to MODEL_DIR/eval).

Example:
    stca evaluate --data runs/demo/data --model-dir runs/demo/model --lengths 256,1024,4096
"""
from __future__ import annotations

import json
import time

import numpy as np

import pipeline  # noqa: F401
from pipeline import config as config_lib
from pipeline import fileio
from pipeline import input as input_lib
from pipeline import metrics as metrics_lib


def mean_training_length(cfg: config_lib.Config) -> float:
    """Expected training history length under the configured sampler (before rounding)."""
    s = cfg.train.length
    if s.mode == "fixed":
        return float(s.l_max)
    return s.l_min + s.beta_a / (s.beta_a + s.beta_b) * (s.l_max - s.l_min)


def predict(model, dataset, tasks):
    """Runs the model over an eval dataset; returns arrays over every valid target."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def scores_of(inputs):
        return tf.sigmoid(tf.cast(model(inputs, training=False), tf.float32))

    users, labels, scores, hist_lens = [], {t: [] for t in tasks}, {t: [] for t in tasks}, []
    request_ids = set()
    for inputs, batch_labels, meta in dataset:
        probs = scores_of(inputs).numpy()
        mask = np.arange(probs.shape[1])[None, :] < inputs["tgt_len"].numpy()[:, None]
        users.append(np.broadcast_to(meta["user_id"].numpy()[:, None], mask.shape)[mask])
        for i, t in enumerate(tasks):
            labels[t].append(batch_labels[t].numpy()[mask])
            scores[t].append(probs[:, :, i][mask])
        # A request with more than train.max_targets targets spans several rows.
        first_piece = meta["target_start"].numpy() == 0
        hist_lens.append(inputs["hist_len"].numpy()[first_piece])
        request_ids.update(meta["request_id"].numpy().tolist())
    cat = lambda parts: np.concatenate(parts) if parts else np.zeros([0])  # noqa: E731
    return (cat(users), {t: cat(v) for t, v in labels.items()},
            {t: cat(v) for t, v in scores.items()}, cat(hist_lens), len(request_ids))


def evaluate_lengths(model, cfg: config_lib.Config, data_dir: str, lengths, split="eval"):
    rows = []
    for length in lengths:
        t0 = time.time()
        dataset = input_lib.eval_dataset(data_dir, cfg, length, split=split)
        users, labels, scores, hist_lens, requests = predict(model, dataset, cfg.tasks)
        report = metrics_lib.ranking_report(cfg.tasks, users, labels, scores)
        rows.append({"length": int(length), "requests": requests,
                     "targets": int(len(users)),
                     "mean_history_used": float(hist_lens.mean()) if len(hist_lens) else 0.0,
                     "seconds": round(time.time() - t0, 2), **report})
        print(f"L={length:>6}  " + "  ".join(
            f"{t}: auc={report[t]['auc']:.4f} gauc={report[t]['gauc']:.4f}" for t in cfg.tasks),
            flush=True)
    return rows


def write_report(rows, cfg: config_lib.Config, out_dir: str, title: str) -> dict:
    fileio.makedirs(out_dir)
    train_mean = mean_training_length(cfg)
    report = {"title": title, "tasks": cfg.tasks, "train_length_mean": train_mean,
              "train_length_max": cfg.train.length.l_max, "rows": rows}
    fileio.write_text(fileio.join(out_dir, "eval_report.json"), json.dumps(report, indent=2))
    fileio.write_text(fileio.join(out_dir, "eval_report.md"), markdown_table(rows, cfg.tasks))
    plot_auc_vs_length(rows, cfg.tasks, train_mean, cfg.train.length.l_max,
                       fileio.join(out_dir, "auc_vs_length.png"), title)
    return report


def markdown_table(rows, tasks) -> str:
    head = ["L", "requests", "targets", "mean hist used"]
    for t in tasks:
        head += [f"{t} AUC", f"{t} GAUC"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["length"]), str(r["requests"]), str(r["targets"]),
                 f"{r['mean_history_used']:.0f}"]
        for t in tasks:
            cells += [f"{r[t]['auc']:.4f}", f"{r[t]['gauc']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_auc_vs_length(rows, tasks, train_mean, train_max, path: str, title: str) -> None:
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["length"] for r in rows]
    for t in tasks:
        ax.plot(xs, [r[t]["auc"] for r in rows], marker="o", label=f"{t} AUC")
    ax.axvline(train_mean, color="gray", linestyle="--", label=f"mean train L ({train_mean:.0f})")
    ax.axvline(train_max, color="gray", linestyle=":", label=f"max train L ({train_max})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("inference history length L")
    ax.set_ylabel("AUC")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    fileio.write_bytes(path, buf.getvalue())


def run(cfg: config_lib.Config, data_dir: str, model_dir: str, out_dir: str | None = None) -> dict:
    cfg.validate()
    fileio.ensure_filesystem(data_dir)
    try:
        input_lib.list_shards(data_dir, "eval")
    except FileNotFoundError as e:
        raise config_lib.ConfigError(f"--data: {e}") from None
    from pipeline.train import load_trained_model
    model, checkpoint = load_trained_model(cfg, model_dir)
    rows = evaluate_lengths(model, cfg, data_dir, cfg.eval.lengths)
    out_dir = out_dir or fileio.join(model_dir, "eval")
    config_lib.save_config(cfg, out_dir)
    report = write_report(rows, cfg, out_dir, f"{cfg.model.encoder}: AUC vs inference length")
    report["checkpoint"] = checkpoint
    return {"out_dir": out_dir, "checkpoint": checkpoint,
            "auc": {r["length"]: {t: round(r[t]["auc"], 4) for t in cfg.tasks} for r in rows}}
