"""`stca export`: a TF-Serving-ready SavedModel with serving_default, encode_user and
score_candidates (contract: serving/signatures.py, layout: serving/layout.py).

What is written, atomically (a temp dir renamed into place, so a polling TF Serving never
sees half a version):

    EXPORT_BASE/<model_name>/<version>/saved_model.pb, variables/
        assets.extra/tf_serving_warmup_requests   PredictionLogs, one per signature, built
                                                  by the client's request builders
        assets.extra/stca_metadata.json           config, signature contract, version,
                                                  checkpoint, training metrics, precision
    EXPORT_BASE/models.config, EXPORT_BASE/batching_parameters.txt   (examples for
                                                  tensorflow_model_server, docs/serving.md)

Precision: the export computes in float32 by default even when training used mixed
precision (variables are float32 in every mode, so the checkpoint restores unchanged);
`export.precision=as_trained` keeps model.precision. Only variables the signatures use are
saved (no optimizer slots, no metric state).

Example:
    stca export --model-dir runs/demo/model --export-dir runs/demo/export \\
        --set export.cache_dtype=bfloat16
"""
from __future__ import annotations

import copy
import datetime
import json
import os
import shutil

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from core import config as config_lib
from core import features, fileio
from core.random_inputs import random_requests
from model import checkpoint as checkpoint_lib
from serving import layout
from serving import requests as req
from serving import signatures as sigs

FORMAT = "stca-export/1"
WARMUP_TS = 1_700_000_000_000  # Unix ms of the synthetic warmup request


def export_config(cfg: config_lib.Config) -> config_lib.Config:
    """The config the exported graph is built with (model.precision per export.precision)."""
    out = copy.deepcopy(cfg)
    if cfg.export.precision == "float32":
        out.model.precision = "float32"
    return out


def run(cfg: config_lib.Config, model_dir: str, export_dir: str) -> dict:
    """Restores the newest checkpoint of MODEL_DIR and exports it under EXPORT_DIR.

    Returns:
      Summary dict (path, version, signatures, sizes) also printed by the CLI.
    """
    cfg.validate()
    model, checkpoint = checkpoint_lib.load_trained_model(export_config(cfg), model_dir)
    metrics_path = fileio.join(model_dir, checkpoint_lib.METRICS_FILE)
    train_metrics = (json.loads(fileio.read_text(metrics_path))
                     if fileio.exists(metrics_path) else None)
    if not fileio.is_remote(checkpoint):
        checkpoint = os.path.abspath(checkpoint)  # verify may run from another directory
    return export_model(model, cfg, export_dir, checkpoint=checkpoint,
                        train_metrics=train_metrics)


def _model_base(export_base: str, ex: config_lib.ExportConfig) -> str:
    """EXPORT_BASE/<model_name>, refused unless it is a directory directly inside the base.

    The name is checked (ExportConfig.validate) even when the caller skipped validation,
    and the path must also resolve inside the base: a name like '..' or a symlink would
    otherwise put the version (and delete its temp dir) outside EXPORT_BASE.

    Raises:
      ConfigError naming export.model_name.
    """
    ex.validate()
    base = os.path.abspath(export_base)
    model_base = os.path.join(base, ex.model_name)
    resolved = os.path.realpath(model_base)
    if os.path.dirname(resolved) != os.path.realpath(base):
        raise config_lib.ConfigError(
            f"export.model_name: {ex.model_name!r} resolves to {resolved}, outside the export "
            f"base {base} (a symlink?); export to a plain directory inside the base")
    return model_base


def next_version(model_base: str) -> int:
    found = layout.versions(model_base)
    return found[-1] + 1 if found else 1


def export_model(model, cfg: config_lib.Config, export_base: str, checkpoint: str | None = None,
                 train_metrics: dict | None = None) -> dict:
    """Exports a built RankingModel (already restored) with the three signatures.

    Args:
      model: the model whose weights are exported (built with `export_config(cfg)`).
      cfg: the run config (tasks, export.*).
      export_base: EXPORT_BASE; the version goes to EXPORT_BASE/<model_name>/<version>.
      checkpoint, train_metrics: recorded in the metadata (verify rebuilds the in-memory
        model from `checkpoint`).

    Returns:
      {"path", "model_name", "version", "signatures", "variables_bytes", ...}.
    """
    ex = cfg.export
    if export_base.startswith(("gs://", "s3://", "hdfs://")):
        raise config_lib.ConfigError(f"--export-dir: {export_base!r}; exports are written to a "
                                     "local directory (copy the version dir to object storage)")
    model_base = _model_base(export_base, ex)
    version = ex.version or next_version(model_base)
    final = os.path.join(model_base, str(version))
    if os.path.exists(final):
        raise config_lib.ConfigError(f"export.version: {version} already exists at {final}; "
                                     "use export.version=0 for the next free version")
    os.makedirs(model_base, exist_ok=True)
    tmp = os.path.join(model_base, f".tmp-{version}-{os.getpid()}")  # non-numeric: ignored
    shutil.rmtree(tmp, ignore_errors=True)

    functions = sigs.signature_functions(model, cfg.tasks, ex.cache_dtype)
    module = tf.Module()
    # Only what the signatures read (no metric state), in the model's own deterministic
    # order: same architecture -> same variable layout in variables/.
    captured = {id(v) for fn in functions.values() for v in fn.variables}
    module.serving_variables = [v for v in model.variables if id(v) in captured]
    if len(module.serving_variables) != len(captured):
        raise RuntimeError("the signatures read variables the model does not track")
    try:
        tf.saved_model.save(module, tmp, signatures=functions)
        contract = sigs.contract(model.user_cache_spec(), cfg.tasks, ex.cache_dtype,
                                 model.candidate_inputs, model.can_extend)
        warmup = write_warmup(tmp, functions, ex)
        metadata = {
            "format": FORMAT,
            "model_name": ex.model_name,
            "version": version,
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "tasks": cfg.tasks,
            "signatures": contract,
            "feature_spec": {
                "user_inputs": list(features.USER_INPUTS),
                "candidate_inputs": list(model.candidate_inputs),
                "history_order": "most recent first; valid events are a prefix of hist_len",
                "timestamps": "Unix milliseconds (int64)",
                "ids": "raw int64 IDs from core.idhash.stable_id; hashed into embedding "
                       "buckets inside the model",
            },
            "precision": {"trained": cfg.model.precision,
                          "exported_compute": model.model_cfg.precision,
                          "cache_dtype": ex.cache_dtype},
            "checkpoint": checkpoint,
            "train_metrics": train_metrics,
            "warmup": warmup,
            "variables": len(module.serving_variables),
            "tensorflow": tf.__version__,
            "config": config_lib.config_to_dict(cfg),
        }
        with open(layout.metadata_path(tmp), "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=2, default=str)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_server_configs(os.path.abspath(export_base), ex.model_name)
    return {"path": final, "model_name": ex.model_name, "version": version,
            "signatures": sorted(contract), "cache_dtype": ex.cache_dtype,
            "compute_precision": metadata["precision"]["exported_compute"],
            "variables_bytes": _dir_bytes(os.path.join(final, "variables")),
            "checkpoint": checkpoint,
            "models_config": os.path.join(os.path.abspath(export_base), layout.MODELS_CONFIG)}


def synthetic_inputs(histories: list[int], candidates: list[int], seed: int = 0
                     ) -> dict[str, np.ndarray]:
    """Dense inputs of random requests, one per (history length, candidates) pair
    (core.random_inputs): the warmup requests and verify-export's parity batch."""
    inputs, _ = random_requests(len(histories), max(max(histories), 1),
                                max(max(candidates), 1), seed, hist_len=histories,
                                tgt_len=candidates, request_ts=WARMUP_TS)
    return inputs


def write_warmup(version_dir: str, functions: dict, ex: config_lib.ExportConfig) -> dict:
    """assets.extra/tf_serving_warmup_requests: one PredictRequest per signature, as
    tensorflow.serving.PredictionLog records (TF Serving replays them when it loads)."""
    inputs = synthetic_inputs([ex.warmup_history], [ex.warmup_candidates])
    user = {n: inputs[n] for n in features.USER_INPUTS}
    cache = {k: v.numpy() for k, v in functions[sigs.ENCODE_USER](user).items()}
    per_signature = {
        sigs.SERVING_DEFAULT: inputs,
        sigs.ENCODE_USER: user,
        sigs.SCORE_CANDIDATES: {**cache, **{n: inputs[n] for n in sigs.candidate_inputs(
            functions[sigs.SCORE_CANDIDATES].structured_input_signature[0][0])}},
        # A call of the right shapes (its 8 newest events again onto the cache): warms the graph.
        sigs.EXTEND_USER: {**cache, **{n: inputs[n][:, :8] for n in features.HISTORY_FEATURES},
                           features.HIST_LEN: np.minimum(inputs[features.HIST_LEN], 8)},
    }
    path = layout.warmup_path(version_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for name in functions:  # the exported signatures, extend_user included when there
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(
                    request=req.grpc_request(ex.model_name, name, per_signature[name])))
            writer.write(log.SerializeToString())
    return {"requests": len(functions), "history": ex.warmup_history,
            "candidates": ex.warmup_candidates}


MODELS_CONFIG_HEAD = """\
# tensorflow_model_server --model_config_file=models.config (written by `stca export`).
# base_path is where EXPORT_BASE/<name> is mounted in the container, e.g.
#   docker run -v EXPORT_BASE:/models ... tensorflow/serving:2.17.1
"""
MODEL_ENTRY = """\
  config {{
    name: "{name}"
    base_path: "/models/{name}"
    model_platform: "tensorflow"
    model_version_policy {{ latest {{ num_versions: 1 }} }}
  }}
"""

# Explicit lengths make server-side padding harmless: padded history / candidate slots
# are masked by hist_len / tgt_len, so pad_variable_length_inputs is safe here.
BATCHING_TEXT = """\
max_batch_size { value: 32 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 64 }
num_batch_threads { value: 4 }
pad_variable_length_inputs: true
"""


def write_server_configs(export_base: str, model_name: str) -> None:
    """EXPORT_BASE/models.config (every model with versions under the base) and
    batching_parameters.txt: examples for tensorflow_model_server (docs/serving.md)."""
    names = sorted({model_name} | {n for n in os.listdir(export_base)
                                   if layout.versions(os.path.join(export_base, n))})
    entries = "".join(MODEL_ENTRY.format(name=n) for n in names)
    with open(os.path.join(export_base, layout.MODELS_CONFIG), "w", encoding="utf-8") as f:
        f.write(MODELS_CONFIG_HEAD + "model_config_list {\n" + entries + "}\n")
    with open(os.path.join(export_base, layout.BATCHING_FILE), "w", encoding="utf-8") as f:
        f.write(BATCHING_TEXT)


def _dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, n))
               for root, _, names in os.walk(path) for n in names)
