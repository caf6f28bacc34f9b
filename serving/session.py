"""Run an export the way TF Serving does: a TF1 Session from the SavedModel loader, fed and
fetched by the tensor names in the MetaGraphDef's signature_def (no Python functions).

`stca verify-export` runs this module in a separate process (a fresh runtime, like a
server), and the TF Serving test double serves through `SessionModel`.

    python -m serving.session VERSION_DIR --inputs IN.npz --out OUT.npz

IN.npz holds dense model inputs (features.MODEL_INPUTS). The job runs serving_default,
encode_user, then score_candidates on encode_user's outputs, then replays every warmup
request; OUT.npz holds "<signature>/<output>" arrays (floats as float32) and OUT.npz.json
a summary (signature contract as loaded, warmup results, errors).

Example:
    model = SessionModel("export/stca/3")
    scores = model.run("serving_default", inputs)["score_click"]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Mapping

import numpy as np
import tensorflow as tf
from tensorflow.python.util import deprecation
from tensorflow_serving.apis import prediction_log_pb2

from core import features
from serving import layout
from serving import signatures as sigs


class SessionModel:
    """A SavedModel loaded with tf.compat.v1.saved_model.loader.load(sess, ['serve'], path).

    Args:
      version_dir: the version directory (what TF Serving loads).
    """

    def __init__(self, version_dir: str):
        self._tf = tf
        self.version_dir = version_dir
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default(), deprecation.silence():  # the TF1 API is the point here
            meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], version_dir)
        self.signature_defs = dict(meta.signature_def)

    def contract(self) -> dict:
        return sigs.contract_of(self.signature_defs)

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict:
        """Feeds `inputs` by the signature's tensor names and fetches every output.

        Raises:
          KeyError / ValueError with the offending name, as TF Serving would reject it.
        """
        if signature_name not in self.signature_defs:
            raise KeyError(f"Serving signature name: {signature_name!r} not found in "
                           f"signature def (have {sorted(self.signature_defs)})")
        sig = self.signature_defs[signature_name]
        unknown = sorted(set(inputs) - set(sig.inputs))
        missing = sorted(set(sig.inputs) - set(inputs))
        if unknown or missing:
            raise ValueError(f"signature {signature_name!r}: unknown inputs {unknown}, "
                             f"missing inputs {missing}")
        feed = {sig.inputs[k].name: np.asarray(v) for k, v in inputs.items()}
        fetch = {k: info.name for k, info in sig.outputs.items()}
        return self.session.run(fetch, feed_dict=feed)

    def warmup_requests(self) -> list:
        """(signature_name, inputs) of every PredictionLog in assets.extra (may be empty)."""
        path = layout.warmup_path(self.version_dir)
        if not os.path.exists(path):
            return []
        out = []
        for record in self._tf.data.TFRecordDataset(path):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            request = log.predict_log.request
            out.append((request.model_spec.signature_name or sigs.SERVING_DEFAULT,
                        {k: self._tf.make_ndarray(v) for k, v in request.inputs.items()}))
        return out

    def close(self) -> None:
        self.session.close()


def _float32(value: np.ndarray) -> np.ndarray:
    return value.astype(np.float32) if value.dtype.kind == "f" or \
        value.dtype.name == "bfloat16" else value


def parity_job(version_dir: str, inputs: Mapping[str, np.ndarray]) -> tuple[dict, dict]:
    """serving_default, encode_user -> score_candidates, and the warmup replay.

    Returns:
      (arrays "<signature>/<output>", summary dict with the loaded contract and warmup).
    """
    model = SessionModel(version_dir)
    arrays = {}
    direct = model.run(sigs.SERVING_DEFAULT, inputs)
    cache = model.run(sigs.ENCODE_USER, {n: inputs[n] for n in features.USER_INPUTS})
    cands = {n: inputs[n] for n in sigs.candidate_inputs(
        model.contract()[sigs.SCORE_CANDIDATES]["inputs"])}
    cached = model.run(sigs.SCORE_CANDIDATES, {**cache, **cands})
    for sig_name, outputs in ((sigs.SERVING_DEFAULT, direct), (sigs.ENCODE_USER, cache),
                              (sigs.SCORE_CANDIDATES, cached)):
        for k, v in outputs.items():
            arrays[f"{sig_name}/{k}"] = _float32(v)
    warmup = []
    for sig_name, request in model.warmup_requests():
        try:
            out = model.run(sig_name, request)
            warmup.append({"signature": sig_name, "ok": True,
                           "outputs": {k: list(v.shape) for k, v in out.items()}})
        except Exception as e:  # noqa: BLE001  (reported, the verifier fails on it)
            warmup.append({"signature": sig_name, "ok": False, "error": str(e)[:500]})
    summary = {"contract": model.contract(), "warmup": warmup,
               "cache_dtypes": {k: str(v.dtype) for k, v in cache.items()}}
    model.close()
    return arrays, summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("version_dir")
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        with np.load(args.inputs) as data:
            inputs = {k: data[k] for k in data.files}
        arrays, summary = parity_job(args.version_dir, inputs)
        np.savez(args.out, **arrays)
        code = 0
    except Exception as e:  # noqa: BLE001
        summary = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        code = 1
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, default=str)
    return code


if __name__ == "__main__":
    sys.exit(main())
