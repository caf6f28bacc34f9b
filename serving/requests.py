"""Request building for TF Serving: raw requests -> dense inputs -> REST JSON / gRPC protos.

The one way to build model inputs is the training one: `features.encode_request` (IDs
through `idhash.stable_id`) -> `features.parse_examples` -> `features.model_inputs`. This
module adds only what serving needs around it: validation with clear errors before
anything is sent, and the two wire formats of TF Serving's Predict API.

A raw request is (user, history, candidates):
    user       {"user_id": int | str, "request_ts": int (Unix ms)}
    history    a list (or tuple) of events, each (item_id, author_id, action, ts) or a dict
               with those keys; any order (sorted here, most recent first); action =
               bitmask of positive labels (int >= 0), ts = Unix ms strictly before
               request_ts (training histories hold only earlier events)
    candidates a list (or tuple) of (item_id, author_id) pairs or dicts with those keys
Integers must fit in int64 (the wire and record type). Every problem raises RequestError
naming the field; nothing else escapes for bad input.

Example:
    req = normalize({"user_id": "u1", "request_ts": 1_700_000_000_000},
                    [("i9", "a1", 1, 1_699_999_000_000)], [("i3", "a2")], Limits())
    inputs = dense_inputs([req])                     # dict of numpy arrays, batch of 1
    body = rest_body("serving_default", inputs)      # POST /v1/models/stca:predict
    proto = grpc_request("stca", "serving_default", inputs)
"""
from __future__ import annotations

import dataclasses
import hashlib
import numbers
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from core import features, idhash
from serving import signatures as sigs

EVENT_FIELDS = ("item_id", "author_id", "action", "ts")
CANDIDATE_FIELDS = ("item_id", "author_id")
INT64_MAX = (1 << 63) - 1
# Cache entries holding raw history IDs ([B, L], e.g. cache_hist_item_id): the only cache
# entries whose width is the padded history length for every encoder that has them.
CACHE_HISTORY_ENTRIES = tuple(sigs.cache_name(n) for n in features.HISTORY_FEATURES)


class RequestError(ValueError):
    """A request is malformed; raised before anything is sent. The message names the field."""


@dataclass(frozen=True)
class Limits:
    """Largest accepted history / candidate counts (serving.max_history / max_candidates)."""
    max_history: int = 10240
    max_candidates: int = 4096

    @classmethod
    def from_config(cls, serving_cfg) -> "Limits":
        return cls(serving_cfg.max_history, serving_cfg.max_candidates)


@dataclass(frozen=True)
class Request:
    """A validated request: int64 IDs (stable_id), history most recent first."""
    user_id: int
    request_ts: int
    hist_item_id: tuple
    hist_author_id: tuple
    hist_action: tuple
    hist_ts: tuple
    tgt_item_id: tuple
    tgt_author_id: tuple

    def user_key(self, request_free: bool = False) -> str:
        """Cache key of the user side: user, request time and the whole history content.

        request_ts is part of it because the cache holds time-delta embeddings
        (request_ts - hist_ts): the same history at another time is another cache entry.
        `request_free`: without request_ts, for a cache that holds no request-relative
        feature (an export with extend_user, model.recency=attention).
        """
        h = hashlib.blake2b(digest_size=16)
        for values in (self.hist_item_id, self.hist_author_id, self.hist_action, self.hist_ts):
            h.update(np.asarray(values, np.int64).tobytes())
            h.update(b"|")
        when = "" if request_free else f"{self.request_ts}:"
        return f"{self.user_id}:{when}{len(self.hist_item_id)}:{h.hexdigest()}"

    def history_slice(self, start: int, stop: int | None = None) -> "Request":
        """The request with history events [start, stop) only (most recent first: [0, k)
        are the k newest events, [k, None) the older ones)."""
        cut = slice(start, stop)
        return dataclasses.replace(
            self, hist_item_id=self.hist_item_id[cut], hist_author_id=self.hist_author_id[cut],
            hist_action=self.hist_action[cut], hist_ts=self.hist_ts[cut])

    def without_history(self) -> "Request":
        return dataclasses.replace(self, hist_item_id=(), hist_author_id=(), hist_action=(),
                                   hist_ts=())

    def without_candidates(self) -> "Request":
        return dataclasses.replace(self, tgt_item_id=(), tgt_author_id=())

    def encoded(self) -> bytes:
        return features.encode_request(
            request_id=0, user_id=self.user_id, request_ts=self.request_ts,
            hist_item_id=self.hist_item_id, hist_author_id=self.hist_author_id,
            hist_action=self.hist_action, hist_ts=self.hist_ts,
            tgt_item_id=self.tgt_item_id, tgt_author_id=self.tgt_author_id, labels={})


def _int(value, where: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise RequestError(f"{where}: expected an integer, got {value!r} "
                           f"({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise RequestError(f"{where}: must be >= {minimum}, got {value}")
    if value > INT64_MAX:  # the records and the wire carry int64
        raise RequestError(f"{where}: must be <= {INT64_MAX} (int64), got {value}")
    return value


def sequence_of(value, where: str, what: str) -> Sequence:
    """`value` if it is a list / tuple (a Sequence other than text): it is measured against
    the limits before it is read, so generators and other one-shot iterables are refused."""
    if isinstance(value, (str, bytes, bytearray)) or not isinstance(value, Sequence):
        hint = " (pass list(...) of it)" if isinstance(value, Iterator) else ""
        raise RequestError(f"{where}: expected a list or tuple of {what}, got "
                           f"{type(value).__name__}{hint}")
    return value


def _id(value, where: str) -> int:
    try:
        return idhash.stable_id(value)
    except idhash.IdError as e:
        raise RequestError(f"{where}: {e}") from None


def _fields(item, names: Sequence[str], where: str) -> list:
    if isinstance(item, Mapping):
        missing = [n for n in names if n not in item]
        if missing:
            raise RequestError(f"{where}: missing field(s) {', '.join(missing)} "
                               f"(expected {', '.join(names)})")
        return [item[n] for n in names]
    if isinstance(item, (tuple, list)) and len(item) == len(names):
        return list(item)
    raise RequestError(f"{where}: expected a ({', '.join(names)}) tuple or a dict with "
                       f"those keys, got {item!r}")


def normalize(user: Mapping, history: Sequence, candidates: Sequence,
              limits: Limits = Limits()) -> Request:
    """Validates a raw request and converts it to int64 IDs, history most recent first.

    Raises:
      RequestError: missing fields, wrong types, values outside [0, int64 max], too many
        events / candidates, history events at or after request_ts.
    """
    if not isinstance(user, Mapping):
        raise RequestError(f"user: expected a dict with user_id and request_ts, got {user!r}")
    user_id, request_ts = _fields(user, ("user_id", "request_ts"), "user")
    user_id = _id(user_id, "user.user_id")
    request_ts = _int(request_ts, "user.request_ts", minimum=0)
    history = sequence_of(history, "history", "(item_id, author_id, action, ts) events")
    candidates = sequence_of(candidates, "candidates", "(item_id, author_id) pairs")
    if len(history) > limits.max_history:
        raise RequestError(f"history: {len(history)} events > serving.max_history="
                           f"{limits.max_history}; send the most recent events only")
    if len(candidates) > limits.max_candidates:
        raise RequestError(f"candidates: {len(candidates)} > serving.max_candidates="
                           f"{limits.max_candidates}")
    events = []
    for i, event in enumerate(history):
        item, author, action, ts = _fields(event, EVENT_FIELDS, f"history[{i}]")
        events.append((_int(ts, f"history[{i}].ts", minimum=0),
                       _id(item, f"history[{i}].item_id"), _id(author, f"history[{i}].author_id"),
                       _int(action, f"history[{i}].action", minimum=0)))
        if events[-1][0] >= request_ts:
            raise RequestError(f"history[{i}].ts: {events[-1][0]} is not before "
                               f"user.request_ts={request_ts}; a history holds only earlier "
                               "events (as in training): drop events at or after the request")
    # Most recent first (the training layout); a stable sort keeps ties in the given order.
    events.sort(key=lambda e: -e[0])
    cands = [_fields(c, CANDIDATE_FIELDS, f"candidates[{i}]") for i, c in enumerate(candidates)]
    return Request(
        user_id=user_id, request_ts=request_ts,
        hist_item_id=tuple(e[1] for e in events), hist_author_id=tuple(e[2] for e in events),
        hist_action=tuple(e[3] for e in events), hist_ts=tuple(e[0] for e in events),
        tgt_item_id=tuple(_id(c[0], f"candidates[{i}].item_id") for i, c in enumerate(cands)),
        tgt_author_id=tuple(_id(c[1], f"candidates[{i}].author_id")
                            for i, c in enumerate(cands)))


@tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
def _build(serialized):
    inputs, _ = features.model_inputs(features.parse_examples(serialized, []), [])
    return inputs


def dense_inputs(requests: Sequence[Request]) -> dict[str, np.ndarray]:
    """A batch of requests -> dense model inputs (features.MODEL_INPUTS), padded to the
    batch's longest history / candidate list by `features.model_inputs`."""
    if not requests:
        raise RequestError("no requests to build")
    built = _build(tf.constant([r.encoded() for r in requests]))
    return {name: built[name].numpy() for name in features.MODEL_INPUTS}


def check_inputs(inputs: Mapping[str, np.ndarray], expected: Mapping[str, dict],
                 limits: Limits = Limits(), finite: Collection[str] = ()) -> None:
    """Validates dense inputs against one signature's contract inputs (signatures.contract).

    Checks names, dtypes, ranks, fixed dims, a common batch size, one shape per group
    (history features, candidate features, the cache's raw history IDs), then the values
    (`_check_lengths`, `_check_values`).

    Args:
      inputs: name -> numpy array.
      expected: the signature's contract inputs ({name: {"dtype", "shape"}}).
      limits: serving.max_history / max_candidates.
      finite: float inputs already known to be finite (a user cache the client checked
        when it was encoded); the finiteness check reads every value, so it is skipped.

    Raises:
      RequestError naming the input.

    Example:
        check_inputs(inputs, client.contract["score_candidates"]["inputs"], Limits())
    """
    if not isinstance(inputs, Mapping):
        raise RequestError(f"inputs: expected a dict of numpy arrays, got "
                           f"{type(inputs).__name__}")
    missing = sorted(set(expected) - set(inputs))
    extra = sorted(map(str, set(inputs) - set(expected)))
    if missing or extra:
        raise RequestError(f"inputs: missing {missing or 'none'}, unexpected {extra or 'none'} "
                           f"(expected {sorted(expected)})")
    batch = None
    for name, want in expected.items():
        value = inputs[name]
        if not isinstance(value, np.ndarray):
            raise RequestError(f"{name}: expected a numpy array, got {type(value).__name__}")
        if value.dtype != tf.as_dtype(want["dtype"]).as_numpy_dtype:
            raise RequestError(f"{name}: dtype {value.dtype} != {want['dtype']}")
        shape = want["shape"]  # None: the server reports an unknown rank
        if value.ndim == 0 or shape is not None and (value.ndim != len(shape) or any(
                w not in (-1, h) for w, h in zip(shape, value.shape))):
            raise RequestError(f"{name}: shape {list(value.shape)} does not match "
                               f"{shape} (-1 = any)")
        if batch is None:
            batch = value.shape[0]
        elif value.shape[0] != batch:
            raise RequestError(f"{name}: batch size {value.shape[0]} != {batch} of the "
                               "other inputs")
    for group in (features.HISTORY_FEATURES, features.TARGET_FEATURES, CACHE_HISTORY_ENTRIES):
        shapes = {n: inputs[n].shape for n in group if n in inputs}
        if len(set(shapes.values())) > 1:
            raise RequestError(f"{', '.join(shapes)}: must have one shape, got "
                               + ", ".join(f"{n} {list(s)}" for n, s in shapes.items()))
    _check_lengths(inputs, limits)
    _check_values(inputs, expected, finite)


def _check_lengths(inputs: Mapping[str, np.ndarray], limits: Limits) -> None:
    """Every length within [0, padded width] and the serving limits.

    hist_len is bounded by hist_item_id's width; cache_hist_len by the width of the cache's
    raw history IDs (CACHE_HISTORY_ENTRIES) when the contract has them, else by
    serving.max_history only: other cache axes need not be the history length (LONGER
    merges K events into one token), so they bound nothing.
    """
    cache_ids = next((n for n in CACHE_HISTORY_ENTRIES if n in inputs), None)
    bounds = {features.HIST_LEN: ("hist_item_id", limits.max_history, "serving.max_history"),
              "cache_hist_len": (cache_ids, limits.max_history, "serving.max_history"),
              features.TGT_LEN: ("tgt_item_id", limits.max_candidates, "serving.max_candidates")}
    for name, (padded, limit, limit_name) in bounds.items():
        if name not in inputs or not inputs[name].size:
            continue
        lengths = inputs[name]
        bound, why = limit, limit_name
        if padded in inputs and inputs[padded].shape[1] <= limit:
            bound, why = inputs[padded].shape[1], f"the padded width of {padded}"
        if lengths.min() < 0 or lengths.max() > bound:
            raise RequestError(f"{name}: values must be in [0, {bound}] ({why}), "
                               f"got {lengths.tolist()[:16]}")
    if "tgt_item_id" in inputs and inputs["tgt_item_id"].shape[1] > limits.max_candidates:
        raise RequestError(f"tgt_item_id: {inputs['tgt_item_id'].shape[1]} candidates > "
                           f"serving.max_candidates={limits.max_candidates}")


def _check_values(inputs: Mapping[str, np.ndarray], expected: Mapping[str, dict],
                  finite: Collection[str]) -> None:
    """Float inputs finite (a NaN / Inf user cache scores NaN); valid history events
    strictly before request_ts (training never has later ones)."""
    for name, want in expected.items():
        if name in finite or not tf.as_dtype(want["dtype"]).is_floating:
            continue
        bad = inputs[name].size - int(np.count_nonzero(np.isfinite(inputs[name])))
        if bad:
            raise RequestError(f"{name}: {bad} of {inputs[name].size} values are NaN or Inf; "
                               "a user cache must be finite (it would score NaN): encode the "
                               "user again with encode_user")
    if {"hist_ts", features.HIST_LEN, "request_ts"} <= set(inputs):
        ts = inputs["hist_ts"]
        valid = np.arange(ts.shape[1])[None, :] < inputs[features.HIST_LEN][:, None]
        late = valid & (ts >= inputs["request_ts"][:, None])
        if late.any():
            rows = sorted(set(np.nonzero(late)[0].tolist()))
            raise RequestError(f"hist_ts: {int(late.sum())} valid event(s) at or after "
                               f"request_ts (batch rows {rows[:16]}); a history holds only "
                               "earlier events (as in training)")


# ------------------------------------------------------------------ wire formats
def rest_path(model_name: str, version: int | None = None) -> str:
    """TF Serving's REST predict path: /v1/models/NAME[/versions/V]:predict."""
    version_part = f"/versions/{int(version)}" if version else ""
    return f"/v1/models/{model_name}{version_part}:predict"


def rest_body(signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict:
    """Columnar ("inputs") JSON body of a REST predict call.

    Raises:
      RequestError: a bfloat16 tensor (TF Serving's JSON codec has no bfloat16; use gRPC
        or export.cache_dtype=float32).
    """
    body = {}
    for name, value in inputs.items():
        if value.dtype.name == "bfloat16":
            raise RequestError(
                f"{name}: bfloat16 tensors cannot travel over TF Serving's REST API (its "
                "JSON codec has no bfloat16); use the gRPC transport or export with "
                "export.cache_dtype=float32")
        body[name] = value.tolist()  # float32 -> Python float is exact; JSON keeps it
    return {"signature_name": signature_name, "inputs": body}


def parse_rest_response(body: Mapping, outputs: Mapping[str, dict]) -> dict[str, np.ndarray]:
    """{"outputs": ...} -> numpy arrays in the signature's dtypes.

    Args:
      body: the decoded JSON response.
      outputs: the signature's contract outputs ({name: {"dtype", "shape"}}); TF Serving
        drops the name when a signature has a single output, and JSON loses dtypes.
    """
    if "error" in body:
        raise RuntimeError(body["error"])
    values = body.get("outputs")
    if values is None:
        raise RuntimeError(f"REST response without 'outputs': {str(body)[:200]}")
    if not isinstance(values, Mapping):
        if len(outputs) != 1:
            raise RuntimeError("REST response holds one unnamed output but the signature "
                               f"has outputs {sorted(outputs)}")
        values = {next(iter(outputs)): values}
    return {name: np.asarray(value, tf.as_dtype(outputs[name]["dtype"]).as_numpy_dtype)
            for name, value in values.items()}


def grpc_request(model_name: str, signature_name: str, inputs: Mapping[str, np.ndarray],
                 version: int | None = None):
    """tensorflow_serving.apis.predict_pb2.PredictRequest with one TensorProto per input."""
    from tensorflow_serving.apis import predict_pb2  # lazy: only gRPC clients need the TF Serving protos
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version:
        request.model_spec.version.value = int(version)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def parse_grpc_response(response) -> dict[str, np.ndarray]:
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
