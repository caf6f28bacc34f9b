"""`stca evaluate`: AUC and per-user GAUC per task, at several inference lengths.

The same trained model scores the eval split at every length in `eval.lengths` (the most
recent L events of each history), including lengths longer than any seen in training, to
show the length-extrapolation curve. The split is read once, in token-budget batches for
the longest length; each batch is cut to every shorter length and scored there too.
Writes OUT/eval_report.{json,md} and OUT/auc_vs_length.png (OUT defaults to
MODEL_DIR/eval).

Example:
    stca evaluate --data runs/demo/data --model-dir runs/demo/model --lengths 256,1024,4096
"""
from __future__ import annotations

import io
import json
import time

import numpy as np
import tensorflow as tf

from core import config as config_lib
from core import features, fileio
from core import input as input_lib
from core import metrics as metrics_lib
from model.checkpoint import load_trained_model


def mean_training_length(cfg: config_lib.Config) -> float:
    """Expected training history length under the configured sampler (before rounding)."""
    s = cfg.train.length
    if s.mode == "fixed":
        return float(s.l_max)
    return s.l_min + s.beta_a / (s.beta_a + s.beta_b) * (s.l_max - s.l_min)


# What `predict` feeds the model as the history (the history-use check):
#   real     the request's own history
#   empty    no history at all (hist_len = 0)
#   swapped  the history (and request time) of a request of another user in the batch
HISTORY_MODES = ("real", "empty", "swapped")
_SWAPPED_INPUTS = ("request_ts", "hist_item_id", "hist_author_id", "hist_action", "hist_ts",
                   features.HIST_LEN)


def other_user_permutation(user_ids: np.ndarray) -> tuple[np.ndarray, int]:
    """A permutation of the batch rows that gives every row another user's row if it can.

    Rolls by the smallest shift that moves no row onto its own user (the shift with the
    fewest such rows when none is perfect, e.g. a batch of one user).

    Returns:
      (perm, rows still holding their own user's history).
    """
    n = len(user_ids)
    best, best_same = np.arange(n), n
    for shift in range(1, n):
        perm = np.roll(np.arange(n), shift)
        same = int(np.sum(user_ids[perm] == user_ids))
        if same < best_same:
            best, best_same = perm, same
        if same == 0:
            break
    return best, best_same


def _with_history(inputs, mode: str, perm):
    """The batch with its history replaced as `mode` says (`perm`: the batch's
    `other_user_permutation`, used by the swapped mode)."""
    if mode == "real":
        return inputs
    inputs = dict(inputs)
    if mode == "empty":
        # No event at all: one zero column keeps the shapes valid, and the model does no
        # work over a history it may not read (scores equal those with the full padding).
        for name in features.HISTORY_FEATURES:
            inputs[name] = tf.zeros_like(inputs[name][:, :1])
        inputs[features.HIST_LEN] = tf.zeros_like(inputs[features.HIST_LEN])
        return inputs
    for name in _SWAPPED_INPUTS:
        inputs[name] = tf.gather(inputs[name], perm)
    return inputs


def _truncated(inputs, length):
    """The batch with every history cut to its `length` most recent events (histories are
    stored most recent first, so this is a prefix); None keeps it as read. `length` may be
    a scalar tensor (a cut longer than the batch's histories keeps them whole)."""
    if length is None:
        return inputs
    if isinstance(length, int) and length >= inputs["hist_item_id"].shape[1]:
        return inputs
    out = dict(inputs)
    for name in features.HISTORY_FEATURES:
        out[name] = inputs[name][:, :length]
    out[features.HIST_LEN] = tf.minimum(inputs[features.HIST_LEN],
                                        tf.cast(length, inputs[features.HIST_LEN].dtype))
    return out


_NO_CUT = np.iinfo(np.int32).max  # the `length` of a pass that keeps histories as read


def _length_scorer(model, modes: tuple[str, ...], shared: bool):
    """One compiled function scoring a batch in every history mode of one length:
    (inputs, perm, length) -> {mode: (probabilities [B, M, T] float32, history lengths used
    [B])}. With `shared`, the real and swapped modes encode the user side once (the
    swapped mode scores the same cache with its rows permuted); the empty mode reads no
    history.

    One trace serves every batch shape and length (relaxed signature), and autograph is
    off: the model has no Python control flow on tensors, and converting every layer's
    call made tracing the larger part of a short evaluation.
    """
    def probabilities(logits):
        return tf.sigmoid(tf.cast(logits, tf.float32))

    def score(inputs, perm, length):
        cut = _truncated(inputs, length)
        lens = cut[features.HIST_LEN]
        cache = (model.encode_user({n: cut[n] for n in features.USER_INPUTS})
                 if shared else None)
        out = {}
        for mode in modes:
            if cache is not None and mode != "empty":
                candidates = {n: cut[n] for n in model.candidate_inputs}
                user = cache if mode == "real" else model.swap_histories(cache, perm)
                logits = model.score_candidates(user, candidates)
            else:
                logits = model(_with_history(cut, mode, perm), training=False)
            used = {"real": lens, "swapped": tf.gather(lens, perm),
                    "empty": tf.zeros_like(lens)}[mode]
            out[mode] = (probabilities(logits), used)
        return out

    return tf.function(score, autograph=False, reduce_retracing=True, input_signature=[
        features.input_signature(), tf.TensorSpec([None], tf.int64, name="perm"),
        tf.TensorSpec([], tf.int32, name="length")])


def score_passes(model, dataset, tasks, passes):
    """Scores every batch of an eval dataset once per (length, history mode) in `passes`,
    reading the data once (a dataset made for the longest length serves every shorter one).
    The real and swapped passes of one length encode the user side once (the swapped
    pass scores the same cache with its rows permuted, `RankingModel.swap_histories`)
    when the model allows it; the empty pass reads no history.

    Args:
      model: a RankingModel.
      dataset: `input.eval_dataset` batches (inputs, labels, meta).
      tasks: label tasks, in the model's output order.
      passes: (length or None, mode) pairs; length cuts histories to their most recent
        events (None: as read), mode is one of HISTORY_MODES.

    Returns:
      dict with users [N], labels {task: [N]} over every valid target, and per pass:
      scores {pass: {task: [N]}}, hist_lens {pass: [requests]} (history lengths used);
      seconds {length: model time of that length's passes}; requests (distinct request
      ids) and wall_seconds.
    """
    passes = [tuple(p) for p in passes]
    lengths = list(dict.fromkeys(length for length, _ in passes))
    modes = {length: tuple(m for pl, m in passes if pl == length) for length in lengths}
    can_share = getattr(model, "can_swap_histories", False)
    swapping = any(mode == "swapped" for _, mode in passes)
    compiled, scorer = {}, {}  # one compiled function per distinct set of modes
    for length in lengths:
        key = (modes[length], can_share and {"real", "swapped"} <= set(modes[length]))
        if key not in compiled:
            compiled[key] = _length_scorer(model, *key)
        scorer[length] = compiled[key]
    users, labels = [], {t: [] for t in tasks}
    scores = {p: {t: [] for t in tasks} for p in passes}
    hist_lens = {p: [] for p in passes}
    seconds = dict.fromkeys(lengths, 0.0)
    request_ids, t0 = set(), time.time()
    for inputs, batch_labels, meta in dataset:
        mask = np.arange(batch_labels[tasks[0]].shape[1])[None, :] \
            < inputs[features.TGT_LEN].numpy()[:, None]
        users.append(np.broadcast_to(meta["user_id"].numpy()[:, None], mask.shape)[mask])
        for t in tasks:
            labels[t].append(batch_labels[t].numpy()[mask])
        # A request with more than train.max_targets targets spans several rows.
        first_piece = meta["target_start"].numpy() == 0
        request_ids.update(meta["request_id"].numpy().tolist())
        # One permutation per batch serves every length's swapped pass (unused without one).
        user_ids = meta["user_id"].numpy()
        perm = tf.constant(other_user_permutation(user_ids)[0] if swapping
                           else np.arange(len(user_ids)), tf.int64)
        for length in lengths:
            start = time.perf_counter()
            out = scorer[length](
                inputs, perm, tf.constant(_NO_CUT if length is None else length, tf.int32))
            out = {mode: (p.numpy(), used.numpy()) for mode, (p, used) in out.items()}
            seconds[length] += time.perf_counter() - start
            for mode, (probs, used) in out.items():
                for i, t in enumerate(tasks):
                    scores[(length, mode)][t].append(probs[:, :, i][mask])
                hist_lens[(length, mode)].append(used[first_piece])
    cat = lambda parts: np.concatenate(parts) if parts else np.zeros([0])  # noqa: E731
    return {"users": cat(users), "labels": {t: cat(v) for t, v in labels.items()},
            "scores": {p: {t: cat(v) for t, v in s.items()} for p, s in scores.items()},
            "hist_lens": {p: cat(v) for p, v in hist_lens.items()}, "seconds": seconds,
            "requests": len(request_ids), "wall_seconds": time.time() - t0}


def predict(model, dataset, tasks, history: str = "real"):
    """Runs the model over an eval dataset at its length; returns (users, labels, scores,
    history lengths used, requests) over every valid target.

    history: one of HISTORY_MODES (the request's own history, none, or another user's).
    """
    out = score_passes(model, dataset, tasks, [(None, history)])
    return (out["users"], out["labels"], out["scores"][(None, history)],
            out["hist_lens"][(None, history)], out["requests"])


def evaluate_lengths(model, cfg: config_lib.Config, data_dir: str, lengths, split="eval"):
    """One row per length: AUC / GAUC per task, and with eval.history_ablation the same
    model scored without any history and with another user's history ("history_use").

    The data is read once, batched for the longest length; each batch is scored at every
    length (and history mode). Each row's "seconds" is its model time; the returned rows
    carry the whole pass's requests per second too ("pass_requests_per_s").
    """
    lengths = [int(v) for v in lengths]
    modes = ("real", "swapped") if cfg.eval.history_ablation else ("real",)
    passes = [(length, mode) for length in lengths for mode in modes]
    if cfg.eval.history_ablation:
        passes.append((min(lengths), "empty"))  # without history the length does not matter
    dataset = input_lib.eval_dataset(data_dir, cfg, max(lengths), split=split)
    out = score_passes(model, dataset, cfg.tasks, passes)
    users, labels = out["users"], out["labels"]

    def report(p):
        return metrics_lib.ranking_report(cfg.tasks, users, labels, out["scores"][p])

    empty = report((min(lengths), "empty")) if cfg.eval.history_ablation else None
    rows = []
    for length in lengths:
        real = report((length, "real"))
        used = out["hist_lens"][(length, "real")]
        row = {"length": length, "requests": out["requests"], "targets": int(len(users)),
               "mean_history_used": float(used.mean()) if len(used) else 0.0, **real}
        if empty is not None:
            swapped = report((length, "swapped"))
            row["history_use"] = {t: history_use(real[t], empty[t], swapped[t])
                                  for t in cfg.tasks}
        row["seconds"] = round(out["seconds"][length], 2)
        row["pass_requests_per_s"] = round(out["requests"] / max(out["wall_seconds"], 1e-9), 2)
        rows.append(row)
        print(f"L={length:>6}  " + "  ".join(
            f"{t}: auc={real[t]['auc']:.4f} gauc={real[t]['gauc']:.4f}"
            + (f" (-hist {row['history_use'][t]['auc_delta_empty']:+.4f}"
               f" swap {row['history_use'][t]['auc_delta_swapped']:+.4f})" if empty else "")
            for t in cfg.tasks), flush=True)
    print(f"{out['requests']} requests x {len(passes)} scoring passes in "
          f"{out['wall_seconds']:.1f} s ({rows[0]['pass_requests_per_s']:.1f} requests/s, "
          "every length and history check from one read)", flush=True)
    return rows


def history_use(real: dict, empty: dict, swapped: dict) -> dict:
    """AUC / GAUC with the real history minus the same without history and with another
    user's history: how much of the score comes from the history itself."""
    return {"auc_empty": empty["auc"], "auc_swapped": swapped["auc"],
            "auc_delta_empty": real["auc"] - empty["auc"],
            "auc_delta_swapped": real["auc"] - swapped["auc"],
            "gauc_delta_empty": real["gauc"] - empty["gauc"],
            "gauc_delta_swapped": real["gauc"] - swapped["gauc"]}


def auc_per_doubling(rows, tasks) -> dict:
    """Least-squares slope of AUC against log2(L) per task (NaN with fewer than 2 lengths)."""
    x = np.log2([r["length"] for r in rows])
    out = {}
    for t in tasks:
        y = np.array([r[t]["auc"] for r in rows], dtype=np.float64)
        ok = np.isfinite(y)
        out[t] = (float(np.polyfit(x[ok], y[ok], 1)[0]) if ok.sum() >= 2
                  and np.ptp(x[ok]) > 0 else float("nan"))
    return out


def write_report(rows, cfg: config_lib.Config, out_dir: str, title: str) -> dict:
    fileio.makedirs(out_dir)
    train_mean = mean_training_length(cfg)
    report = {"title": title, "tasks": cfg.tasks, "train_length_mean": train_mean,
              "train_length_max": cfg.train.length.l_max, "rows": rows,
              "auc_per_doubling": auc_per_doubling(rows, cfg.tasks)}
    fileio.write_text(fileio.join(out_dir, "eval_report.json"), json.dumps(report, indent=2))
    fileio.write_text(fileio.join(out_dir, "eval_report.md"),
                      markdown_table(rows, cfg.tasks, report["auc_per_doubling"]))
    plot_auc_vs_length(rows, cfg.tasks, train_mean, cfg.train.length.l_max,
                       fileio.join(out_dir, "auc_vs_length.png"), title)
    return report


def markdown_table(rows, tasks, per_doubling=None) -> str:
    ablation = all("history_use" in r for r in rows)
    head = ["L", "requests", "targets", "mean hist used"]
    for t in tasks:
        head += [f"{t} AUC", f"{t} GAUC"]
        if ablation:
            head += [f"{t} AUC - no history", f"{t} AUC - other user's"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["length"]), str(r["requests"]), str(r["targets"]),
                 f"{r['mean_history_used']:.0f}"]
        for t in tasks:
            cells += [f"{r[t]['auc']:.4f}", f"{r[t]['gauc']:.4f}"]
            if ablation:
                use = r["history_use"][t]
                cells += [f"{use['auc_delta_empty']:+.4f}", f"{use['auc_delta_swapped']:+.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if ablation:
        text += ("\n\"AUC - no history\": AUC with the request's history minus AUC with the "
                 "history emptied; \"AUC - other user's\": minus AUC with the history of "
                 "another user's request. Near 0: the model does not use the history.\n")
    if per_doubling:
        text += "\nAUC gained per doubling of L (least-squares slope over the lengths): " + \
            ", ".join(f"{t} {v:+.4f}" for t, v in per_doubling.items()) + "\n"
    return text


def plot_auc_vs_length(rows, tasks, train_mean, train_max, path: str, title: str) -> None:

    import matplotlib  # lazy: only the optional plot needs matplotlib; its backend is set
    matplotlib.use("Agg")  # before pyplot loads
    import matplotlib.pyplot as plt  # lazy: as above
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
    model, checkpoint = load_trained_model(cfg, model_dir)
    input_lib.check_split(data_dir, "eval", cfg.tasks)  # DataError: missing, empty, unreadable
    try:
        rows = evaluate_lengths(model, cfg, data_dir, cfg.eval.lengths)
    except input_lib.READ_ERRORS as e:
        bad = input_lib.find_bad_shard(data_dir, "eval", cfg.tasks)  # tf.data names no file
        if bad is None:
            raise
        raise bad from e
    out_dir = out_dir or fileio.join(model_dir, "eval")
    config_lib.save_config(cfg, out_dir)
    report = write_report(rows, cfg, out_dir, f"{cfg.model.encoder}: AUC vs inference length")
    report["checkpoint"] = checkpoint
    summary = {"out_dir": out_dir, "checkpoint": checkpoint,
               "auc": {r["length"]: {t: round(r[t]["auc"], 4) for t in cfg.tasks}
                       for r in rows},
               "auc_per_doubling": {t: round(v, 4)
                                    for t, v in report["auc_per_doubling"].items()},
               "requests_per_s": rows[0]["pass_requests_per_s"]}
    if cfg.eval.history_ablation:
        summary["history_use_auc_delta"] = {
            r["length"]: {t: {"no_history": round(r["history_use"][t]["auc_delta_empty"], 4),
                              "other_users": round(r["history_use"][t]["auc_delta_swapped"], 4)}
                          for t in cfg.tasks} for r in rows}
    return summary
