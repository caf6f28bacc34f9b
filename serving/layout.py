"""Where an export lives on disk (TF Serving's layout) and what sits next to it.

    EXPORT_BASE/
      models.config                     example model_config_list for tensorflow_model_server
      batching_parameters.txt           example --batching_parameters_file
      <model_name>/
        <version>/                      what TF Serving loads (numeric dirs only)
          saved_model.pb  variables/
          assets.extra/tf_serving_warmup_requests
          assets.extra/stca_metadata.json
        verify-<version>/               `stca verify-export` reports (ignored by TF Serving:
          verify_report.json            it only loads numeric directory names)
          saved_model_cli.txt

Imports nothing heavy: the client, the exporter and the verifier share it.

Example:
    version_dir = resolve_version_dir("runs/demo/export")   # newest version of the one model
    meta = read_metadata(version_dir)
"""
from __future__ import annotations

import json
import os

ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
METADATA_FILE = "stca_metadata.json"
MODELS_CONFIG = "models.config"
BATCHING_FILE = "batching_parameters.txt"


def versions(model_dir: str) -> list[int]:
    """Numeric version directories under EXPORT_BASE/<model_name>, ascending."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(n) for n in os.listdir(model_dir)
                  if n.isdigit() and os.path.isdir(os.path.join(model_dir, n)))


def is_version_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def resolve_version_dir(path: str) -> str:
    """A version dir, a model dir (newest version) or an export base holding one model.

    Raises:
      FileNotFoundError: nothing loadable found; the message says what was looked for.
    """
    path = os.path.abspath(path)
    if is_version_dir(path):
        return path
    found = versions(path)
    if found:
        return os.path.join(path, str(found[-1]))
    if os.path.isdir(path):
        models = [n for n in sorted(os.listdir(path)) if versions(os.path.join(path, n))]
        if len(models) == 1:
            return resolve_version_dir(os.path.join(path, models[0]))
        if len(models) > 1:
            raise FileNotFoundError(
                f"{path} holds several models ({', '.join(models)}); pass "
                f"{path}/<model_name> or a version dir")
    raise FileNotFoundError(
        f"no SavedModel at {path}: expected a version dir with saved_model.pb, a model dir "
        "with numeric version subdirs, or an export base holding one model")


def metadata_path(version_dir: str) -> str:
    return os.path.join(version_dir, ASSETS_EXTRA, METADATA_FILE)


def warmup_path(version_dir: str) -> str:
    return os.path.join(version_dir, ASSETS_EXTRA, WARMUP_FILE)


def read_metadata(version_dir: str) -> dict:
    path = metadata_path(version_dir)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: {version_dir} was not written by "
                                "`stca export`")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def report_dir(version_dir: str) -> str:
    """Sibling of the version dir for verify reports (never inside what TF Serving loads)."""
    version_dir = os.path.abspath(version_dir)
    parent, version = os.path.split(version_dir)
    return os.path.join(parent, f"verify-{version}")
