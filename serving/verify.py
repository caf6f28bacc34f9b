"""`stca verify-export`: the release gate of an export. Non-zero exit on any mismatch.

Checks, each recorded in EXPORT_BASE/<model>/verify-<version>/verify_report.json (next to
the version dir, never inside what TF Serving loads):

1. `saved_model_cli show --all` runs; its output is saved as saved_model_cli.txt.
2. Signatures: names, dtypes and shapes in saved_model.pb equal the contract recorded in
   the metadata, which equals the contract of the model rebuilt from the config.
3. TF Serving's way of loading, in a separate process (serving/session.py): a TF1 Session
   from the SavedModel loader, fed by signature tensor names. On a batch of synthetic
   requests (histories up to export.verify_history, e.g. 10240, an empty one, several
   candidate counts): score_candidates(encode_user(x)) == serving_default(x) within 1e-5
   (float32 cache) or 2e-2 (bfloat16 cache); every warmup request runs.
4. tf.saved_model.load in this process: the same parity, and equal to the loader's scores.
   A second batch has enough candidates that serving_default runs STCA's projected
   attention form (model/flops.py), so both forms are compared with the cached K / V.
5. The in-memory model rebuilt from the checkpoint recorded in the metadata gives the
   same scores as the export (1e-5 in float32) on both batches and, with --data, on up to
   export.verify_requests held-out requests of DATA/eval, whose AUC is reported for
   serving_default and for the cached path (the cache dtype's effect on quality).

Only valid candidates (j < tgt_len) are compared: padded slots carry no meaning.

Example:
    stca verify-export --export-dir runs/demo/export --data runs/demo/data
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf
from tensorflow.python.saved_model import loader_impl

from core import config as config_lib
from core import features, fileio
from core import input as input_lib
from core import metrics as metrics_lib
from core.errors import EXIT_GATE, UserError
from model import build_model
from model.checkpoint import restore_checkpoint
from model.flops import stca_attention_form
from serving import layout
from serving import signatures as sigs
from serving.export import export_config, synthetic_inputs

FLOAT32_TOL = 1e-5
# A bfloat16 cache keeps 8 significant bits (relative error <= 2^-9 per entry); measured
# differences are ~4e-4 in probability (d=64 demo model, docs/serving.md).
BF16_TOL = 1e-2
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class VerificationError(UserError, RuntimeError):
    """The export failed the release gate; the message lists every failed check."""

    exit_code = EXIT_GATE


class _Checks:
    def __init__(self):
        self.items = []

    def add(self, name: str, passed: bool, detail: str = "", **values) -> bool:
        self.items.append({"check": name, "passed": bool(passed), "detail": detail, **values})
        print(f"[{'ok' if passed else 'FAIL'}] {name}" + (f": {detail}" if detail else ""),
              flush=True)
        return passed

    def failed(self) -> list:
        return [c for c in self.items if not c["passed"]]


def _valid_max_diff(a: dict, b: dict, tasks, tgt_len: np.ndarray) -> float:
    mask = np.arange(a[sigs.score_name(tasks[0])].shape[1])[None, :] < tgt_len[:, None]
    return max(float(np.max(np.abs(a[sigs.score_name(t)] - b[sigs.score_name(t)])[mask],
                            initial=0.0)) for t in tasks)


def _saved_model_cli(version_dir: str, out_dir: str, checks: _Checks) -> None:
    exe = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    cmd = ([exe] if os.path.exists(exe) else
           [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"])
    proc = subprocess.run(cmd + ["show", "--all", "--dir", version_dir], capture_output=True,
                          text=True, timeout=600, env=_env())
    path = os.path.join(out_dir, "saved_model_cli.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(proc.stdout + ("\n# stderr\n" + proc.stderr if proc.returncode else ""))
    listed = all(f"signature_def['{s}']" in proc.stdout for s in sigs.SIGNATURES)
    checks.add("saved_model_cli show --all", proc.returncode == 0 and listed,
               f"saved to {path}" if proc.returncode == 0 else
               f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}")


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["TF_USE_LEGACY_KERAS"] = "1"
    return env


def _run_loader(version_dir: str, inputs: dict, work: str) -> tuple[dict, dict]:
    """serving/session.py in a separate process (fresh runtime, TF1 loader)."""
    in_path, out_path = os.path.join(work, "inputs.npz"), os.path.join(work, "outputs.npz")
    np.savez(in_path, **inputs)
    proc = subprocess.run([sys.executable, "-m", "serving.session", version_dir,
                           "--inputs", in_path, "--out", out_path], capture_output=True,
                          text=True, timeout=1800, env=_env(), cwd=REPO)
    summary = {}
    if os.path.exists(out_path + ".json"):
        with open(out_path + ".json", encoding="utf-8") as f:
            summary = json.load(f)
    if proc.returncode != 0:
        raise VerificationError(
            "the SavedModel loader (TF1 session, as TF Serving loads it) failed: "
            + summary.get("error", proc.stderr.strip()[-2000:]))
    with np.load(out_path) as data:
        arrays = {k: data[k] for k in data.files}
    split = {}
    for key, value in arrays.items():
        sig_name, name = key.split("/", 1)
        split.setdefault(sig_name, {})[name] = value
    return split, summary


def _restore_model(meta: dict, cfg: config_lib.Config, checks: _Checks):
    """The in-memory model in the export's compute precision, from the recorded checkpoint."""
    checkpoint = meta.get("checkpoint")
    if not checkpoint:
        checks.add("checkpoint recorded", True, "none recorded (exported from an untrained "
                   "model): in-memory comparisons skipped")
        return build_model(export_config(cfg).model, cfg.tasks), False
    fileio.ensure_filesystem(checkpoint)
    if not tf.io.gfile.exists(checkpoint + ".index"):
        raise VerificationError(f"the checkpoint recorded in the metadata, {checkpoint}, does "
                                "not exist; the in-memory comparison needs it")
    return restore_checkpoint(export_config(cfg), checkpoint), True


def _quality(model, loaded, cfg: config_lib.Config, data_dir: str, checks: _Checks) -> dict:
    """Exported vs in-memory scores and AUC on held-out requests of DATA/eval."""
    eval_cfg = copy.deepcopy(cfg)
    eval_cfg.eval.max_requests = cfg.export.verify_requests
    length = max(cfg.eval.lengths)
    fns = loaded.signatures
    users, labels = [], {t: [] for t in cfg.tasks}
    scores, cached_scores = {t: [] for t in cfg.tasks}, {t: [] for t in cfg.tasks}
    worst, worst_cached, t0 = 0.0, 0.0, time.time()
    for inputs, batch_labels, meta in input_lib.eval_dataset(data_dir, eval_cfg, length):
        exported = {k: v.numpy() for k, v in fns[sigs.SERVING_DEFAULT](**inputs).items()}
        cache = fns[sigs.ENCODE_USER](**{n: inputs[n] for n in features.USER_INPUTS})
        cached = {k: v.numpy() for k, v in fns[sigs.SCORE_CANDIDATES](
            **cache, **{n: inputs[n] for n in model.candidate_inputs}).items()}
        logits = tf.sigmoid(model(inputs, training=False)).numpy()
        in_memory = {sigs.score_name(t): logits[..., i] for i, t in enumerate(cfg.tasks)}
        tgt_len = inputs[features.TGT_LEN].numpy()
        worst = max(worst, _valid_max_diff(exported, in_memory, cfg.tasks, tgt_len))
        worst_cached = max(worst_cached, _valid_max_diff(cached, exported, cfg.tasks, tgt_len))
        mask = features.target_mask(tgt_len, logits.shape[1]).numpy()
        users.append(np.broadcast_to(meta["user_id"].numpy()[:, None], mask.shape)[mask])
        for t in cfg.tasks:
            labels[t].append(batch_labels[t].numpy()[mask])
            scores[t].append(exported[sigs.score_name(t)][mask])
            cached_scores[t].append(cached[sigs.score_name(t)][mask])
    if not users:
        raise VerificationError(f"no held-out requests found in {data_dir}/eval")
    cat = np.concatenate
    labels = {t: cat(v) for t, v in labels.items()}
    report = metrics_lib.ranking_report(cfg.tasks, cat(users), labels,
                                        {t: cat(v) for t, v in scores.items()})
    # The cache's own effect on quality (e.g. a bfloat16 cache): AUC of the cached path.
    report_cached = metrics_lib.ranking_report(cfg.tasks, cat(users), labels,
                                               {t: cat(v) for t, v in cached_scores.items()})
    tol = FLOAT32_TOL if _float32_compute(cfg) else BF16_TOL
    cache_tol = tol if cfg.export.cache_dtype == "float32" else BF16_TOL
    where = f"over {int(cat(users).size)} held-out targets at history length {length}"
    checks.add("held-out: exported == in-memory model", worst <= tol,
               f"max |diff| {worst:.2e} (tolerance {tol:g}) {where}", max_abs_diff=worst)
    checks.add("held-out: score_candidates(encode_user(x)) == serving_default(x)",
               worst_cached <= cache_tol,
               f"max |diff| {worst_cached:.2e} (tolerance {cache_tol:g}) {where}",
               max_abs_diff=worst_cached)
    return {"history_length": length, "targets": int(cat(users).size),
            "seconds": round(time.time() - t0, 1), "max_abs_diff": worst,
            "cache_parity_max_abs_diff": worst_cached,
            "auc": {t: report[t]["auc"] for t in cfg.tasks},
            "gauc": {t: report[t]["gauc"] for t in cfg.tasks},
            "cache_dtype": cfg.export.cache_dtype,
            "auc_cached": {t: report_cached[t]["auc"] for t in cfg.tasks},
            "auc_cached_minus_serving_default": {
                t: report_cached[t]["auc"] - report[t]["auc"] for t in cfg.tasks}}


def _projected_candidates(cfg: config_lib.Config) -> int:
    """Candidates per request from which serving_default runs STCA's projected attention
    form (model/flops.py), so the parity checks cover both forms; 64 when no count does."""
    if cfg.model.encoder == "stca":
        for m in range(1, 4097):
            if stca_attention_form(cfg.model, m) == "projected":
                return max(m, 2)
    return 64


def _forms_label(cfg: config_lib.Config, candidates: int) -> str:
    """Which STCA attention forms a parity check compares (empty for other encoders)."""
    if cfg.model.encoder != "stca":
        return ""
    form = stca_attention_form(cfg.model, candidates)
    return (f" [M={candidates}: serving_default {form} attention, score_candidates cached "
            "projected K/V]")


def _float32_compute(cfg: config_lib.Config) -> bool:
    return export_config(cfg).model.precision == "float32"


def run(export_dir: str, data_dir: str | None = None) -> dict:
    """Verifies an export; returns the report or raises VerificationError.

    Args:
      export_dir: a version dir, a model dir (newest version) or an export base.
      data_dir: preprocess output dir; its eval/ split is used for the quality check.

    Returns:
      {"passed": True, "version_dir", "checks": [...], "held_out": {...} | None, ...}.
    """
    t0 = time.time()
    version_dir = layout.resolve_version_dir(export_dir)
    meta = layout.read_metadata(version_dir)
    cfg = config_lib.config_from_dict(meta["config"]).validate()
    out_dir = layout.report_dir(version_dir)
    os.makedirs(out_dir, exist_ok=True)
    checks, report = _Checks(), {"version_dir": version_dir, "report_dir": out_dir,
                                 "held_out": None}
    tasks, ex = cfg.tasks, cfg.export
    tol = FLOAT32_TOL if ex.cache_dtype == "float32" and _float32_compute(cfg) else BF16_TOL
    report["tolerances"] = {"cache_parity": tol, "float32": FLOAT32_TOL, "bfloat16": BF16_TOL}
    try:
        _saved_model_cli(version_dir, out_dir, checks)
        model, restored = _restore_model(meta, cfg, checks)
        expected = sigs.contract(model.user_cache_spec(), tasks, ex.cache_dtype,
                                 model.candidate_inputs, model.can_extend)
        problems = sigs.diff_contracts(meta["signatures"], expected)
        checks.add("metadata contract == model contract", not problems, "; ".join(problems))
        saved = loader_impl.parse_saved_model(version_dir).meta_graphs[0].signature_def
        problems = sigs.diff_contracts(sigs.contract_of(saved), expected)
        checks.add("saved_model.pb signatures == contract", not problems, "; ".join(problems))

        lengths = sorted({ex.verify_history, min(ex.verify_history, 777), 0,
                          min(ex.verify_history, 5)}, reverse=True)
        batch = synthetic_inputs(lengths, [16, 1, 7, 3][:len(lengths)], seed=1)
        tgt_len = batch[features.TGT_LEN]
        report["parity_batch"] = {"history_lengths": batch[features.HIST_LEN].tolist(),
                                  "candidates": tgt_len.tolist()}
        with tempfile.TemporaryDirectory() as work:
            served, summary = _run_loader(version_dir, batch, work)
        problems = sigs.diff_contracts(summary["contract"], expected)
        checks.add("TF1 loader: signature_def == contract", not problems, "; ".join(problems))
        warm = summary["warmup"]
        checks.add("warmup requests run", len(warm) == len(expected)
                   and all(w["ok"] for w in warm),
                   f"{sum(w['ok'] for w in warm)}/{len(warm)} ran" + "".join(
                       f"; {w['signature']}: {w['error']}" for w in warm if not w["ok"]))
        diff = _valid_max_diff(served[sigs.SCORE_CANDIDATES], served[sigs.SERVING_DEFAULT],
                               tasks, tgt_len)
        checks.add("TF1 loader: score_candidates(encode_user(x)) == serving_default(x)",
                   diff <= tol, f"max |diff| {diff:.2e} (tolerance {tol:g}), histories up to "
                   f"{max(lengths)}", max_abs_diff=diff)

        loaded = tf.saved_model.load(version_dir)
        fns = loaded.signatures
        many = _projected_candidates(cfg)
        large = synthetic_inputs([ex.verify_history, min(ex.verify_history, 777)], [many, 5],
                                 seed=2)
        report["parity_batch_many_candidates"] = {
            "history_lengths": large[features.HIST_LEN].tolist(), "candidates": [many, 5]}
        for inputs in (batch, large):
            label = _forms_label(cfg, inputs["tgt_item_id"].shape[1])
            direct = {k: v.numpy() for k, v in fns[sigs.SERVING_DEFAULT](**inputs).items()}
            cache = fns[sigs.ENCODE_USER](**{n: inputs[n] for n in features.USER_INPUTS})
            cached = {k: v.numpy() for k, v in fns[sigs.SCORE_CANDIDATES](
                **cache, **{n: inputs[n] for n in model.candidate_inputs}).items()}
            diff = _valid_max_diff(cached, direct, tasks, inputs[features.TGT_LEN])
            checks.add("tf.saved_model.load: score_candidates(encode_user(x)) == "
                       f"serving_default(x){label}", diff <= tol,
                       f"max |diff| {diff:.2e} (tolerance {tol:g})", max_abs_diff=diff)
            if sigs.EXTEND_USER in fns:  # the cache of older events + the 16 newest
                older, newer = features.split_history(
                    {n: inputs[n] for n in features.USER_INPUTS}, 16)
                grown = fns[sigs.EXTEND_USER](**fns[sigs.ENCODE_USER](**older), **newer)
                scored = {k: v.numpy() for k, v in fns[sigs.SCORE_CANDIDATES](
                    **grown, **{n: inputs[n] for n in model.candidate_inputs}).items()}
                diff = _valid_max_diff(scored, direct, tasks, inputs[features.TGT_LEN])
                checks.add("tf.saved_model.load: score_candidates(extend_user(encode_user("
                           f"older), 16 newest)) == serving_default(x){label}", diff <= tol,
                           f"max |diff| {diff:.2e} (tolerance {tol:g})", max_abs_diff=diff)
            if inputs is batch:
                diff = _valid_max_diff(direct, served[sigs.SERVING_DEFAULT], tasks, tgt_len)
                checks.add("tf.saved_model.load == TF1 loader", diff <= FLOAT32_TOL,
                           f"max |diff| {diff:.2e}", max_abs_diff=diff)
            if restored:
                logits = tf.sigmoid(model(inputs, training=False)).numpy()
                in_memory = {sigs.score_name(t): logits[..., i] for i, t in enumerate(tasks)}
                diff = _valid_max_diff(direct, in_memory, tasks, inputs[features.TGT_LEN])
                ftol = FLOAT32_TOL if _float32_compute(cfg) else BF16_TOL
                checks.add(f"exported == in-memory model (checkpoint){label}", diff <= ftol,
                           f"max |diff| {diff:.2e} (tolerance {ftol:g})", max_abs_diff=diff)
        if restored:
            if data_dir:
                report["held_out"] = _quality(model, loaded, cfg, data_dir, checks)
        elif data_dir:
            checks.add("held-out check", False, "--data given but the export records no "
                       "checkpoint to compare with")
    except VerificationError as e:
        checks.add("verification", False, str(e))
    except Exception as e:  # noqa: BLE001  (any crash is a failed gate, with its reason)
        checks.add("verification", False, f"{type(e).__name__}: {e}")
    failed = checks.failed()
    report.update(passed=not failed, checks=checks.items, seconds=round(time.time() - t0, 1),
                  model_name=meta.get("model_name"), version=meta.get("version"),
                  cache_dtype=ex.cache_dtype)
    with open(os.path.join(out_dir, "verify_report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, default=str)
    if failed:
        raise VerificationError(
            f"verify-export FAILED for {version_dir} ({len(failed)} check(s)):\n" + "\n".join(
                f"  - {c['check']}: {c['detail']}" for c in failed)
            + f"\nreport: {os.path.join(out_dir, 'verify_report.json')}")
    return report
