"""The serving signature contract and the tf.functions that implement it.

One SavedModel, three signatures, dense padded inputs named as `core.features`
(no ragged tensors anywhere), raw int64 IDs hashed inside the model:

    serving_default    USER_INPUTS + CANDIDATE_INPUTS      -> score_<task> [B, M] float32
    encode_user        USER_INPUTS                         -> cache_<key>  (user_cache)
    score_candidates   cache_<key> + CANDIDATE_INPUTS      -> score_<task> [B, M] float32
                       (+ request_ts with model.recency=attention: the event ages are
                       taken at scoring time, and the cache holds cache_hist_ts)
    extend_user        cache_<key> + EXTEND_INPUTS         -> cache_<key>  (model.recency=
                       attention only: the cache after the newer events hist_* [B, K],
                       hist_len [B], encoding only those; `RankingModel.extend_user`)

`cache_<key>` are the model's `user_cache_spec()` entries (STCA: cache_history_keys and
cache_history_values [B, N, h, L, d/h], cache_user_tokens [B, U, d], cache_hist_len [B]
int32, the raw history IDs of the ID-match prior), so any encoder,
including LONGER with other keys, exports without code changes. Float cache entries
use `export.cache_dtype` (float32, or bfloat16 to halve the cache). Scores are sigmoid
probabilities; padded candidates get finite scores that mean nothing.

This module imports no model code: the client and the verifier use `contract()` and the
name helpers; `signature_functions(model, ...)` takes an already built model.

Example:
    fns = signature_functions(model, ["click"], "float32")
    tf.saved_model.save(module, path, signatures=fns)
    contract(model.user_cache_spec(), ["click"], "float32")["encode_user"]["outputs"]
"""
from __future__ import annotations

from typing import Mapping, Sequence

import tensorflow as tf

from core import features
from core.config import CACHE_DTYPES

SERVING_DEFAULT = "serving_default"
ENCODE_USER = "encode_user"
SCORE_CANDIDATES = "score_candidates"
EXTEND_USER = "extend_user"
SIGNATURES = (SERVING_DEFAULT, ENCODE_USER, SCORE_CANDIDATES)  # in every export
EXTEND_INPUTS = features.HISTORY_FEATURES + (features.HIST_LEN,)  # the new events
CACHE_PREFIX = "cache_"
SCORE_PREFIX = "score_"


def cache_name(key: str) -> str:
    """Signature name of a user_cache entry: 'history_keys' -> 'cache_history_keys'."""
    return CACHE_PREFIX + key


def candidate_inputs(signature_inputs) -> list[str]:
    """The score_candidates inputs that are not cache entries (the candidates' features,
    and request_ts for a model with model.recency=attention), from its input names."""
    return [n for n in signature_inputs if not n.startswith(CACHE_PREFIX)]


def score_name(task: str) -> str:
    return SCORE_PREFIX + task


def score_names(tasks: Sequence[str]) -> list[str]:
    return [score_name(t) for t in tasks]


def is_cache_name(name: str) -> bool:
    return name.startswith(CACHE_PREFIX)


def cache_specs(user_cache_spec: Mapping[str, tf.TensorSpec],
                cache_dtype: str) -> dict[str, tf.TensorSpec]:
    """Model cache spec -> signature specs (named cache_<key>, floats in cache_dtype)."""
    if cache_dtype not in CACHE_DTYPES:
        raise ValueError(f"export.cache_dtype: {cache_dtype!r} is not allowed; allowed "
                         f"values: {', '.join(map(repr, CACHE_DTYPES))}")
    out = {}
    for key, spec in user_cache_spec.items():
        dtype = tf.as_dtype(cache_dtype) if spec.dtype.is_floating else spec.dtype
        out[cache_name(key)] = tf.TensorSpec(spec.shape, dtype, name=cache_name(key))
    return out


def _entry(spec: tf.TensorSpec) -> dict:
    return {"dtype": spec.dtype.name,
            "shape": [-1 if d is None else int(d) for d in spec.shape.as_list()]}


def contract(user_cache_spec: Mapping[str, tf.TensorSpec], tasks: Sequence[str],
             cache_dtype: str,
             candidate_inputs: Sequence[str] = features.CANDIDATE_INPUTS,
             extendable: bool = False) -> dict:
    """The documented signature contract: {signature: {"inputs"|"outputs": {name: entry}}}.

    Each entry is {"dtype": "int64", "shape": [-1, -1]} (-1 = any size). Written into the
    export's metadata and compared with the SavedModel by `stca verify-export`.

    Args:
      user_cache_spec: `RankingModel.user_cache_spec()` of the exported model.
      tasks: task names; one `score_<task>` output per task.
      cache_dtype: "float32" | "bfloat16" (export.cache_dtype).
      candidate_inputs: `RankingModel.candidate_inputs` of the exported model.
      extendable: the model's caches can be extended (`RankingModel.can_extend`): adds
        the extend_user signature.
    """
    user = {n: _entry(s) for n, s in features.input_signature(features.USER_INPUTS).items()}
    cands = {n: _entry(s) for n, s in features.input_signature(candidate_inputs).items()}
    cache = {n: _entry(s) for n, s in cache_specs(user_cache_spec, cache_dtype).items()}
    scores = {n: {"dtype": "float32", "shape": [-1, -1]} for n in score_names(tasks)}
    out = {
        SERVING_DEFAULT: {"inputs": {**user, **cands}, "outputs": scores},
        ENCODE_USER: {"inputs": user, "outputs": cache},
        SCORE_CANDIDATES: {"inputs": {**cache, **cands}, "outputs": dict(scores)},
    }
    if extendable:
        new = {n: _entry(s) for n, s in features.input_signature(EXTEND_INPUTS).items()}
        out[EXTEND_USER] = {"inputs": {**cache, **new}, "outputs": dict(cache)}
    return out


def signature_functions(model, tasks: Sequence[str], cache_dtype: str) -> dict:
    """The signatures as concrete functions over `model` (a built RankingModel): the
    three of SIGNATURES, and extend_user when `model.can_extend`.

    Every function takes one dict of named tensors (the TensorSpec names become the
    signature's input keys) and returns a dict of named outputs.

    Returns:
      {signature name: tf ConcreteFunction}, ready for `tf.saved_model.save(signatures=)`.
    """
    tasks = list(tasks)
    user_spec = features.input_signature(features.USER_INPUTS)
    cand_spec = features.input_signature(model.candidate_inputs)
    model_cache_spec = model.user_cache_spec()
    cache_spec = cache_specs(model_cache_spec, cache_dtype)

    def scores(logits):
        # Logits are float32 [B, M, T]; one named [B, M] probability output per task.
        probs = tf.sigmoid(tf.cast(logits, tf.float32))
        return {score_name(t): probs[..., i] for i, t in enumerate(tasks)}

    def serving_default(inputs):
        return scores(model(inputs, training=False))

    def encode_user(inputs):
        return served_cache(model.encode_user(inputs, training=False))

    def served_cache(cache):
        # ensure_shape: the outputs carry the spec's static dims (what score_candidates
        # accepts), also where the encoder's trace lost them.
        return {cache_name(k): tf.ensure_shape(tf.cast(v, cache_spec[cache_name(k)].dtype),
                                               cache_spec[cache_name(k)].shape)
                for k, v in cache.items()}

    def score_candidates(inputs):
        # Float entries may be bfloat16: the model casts them to its compute dtype.
        cache = {k: inputs[cache_name(k)] for k in model_cache_spec}
        return scores(model.score_candidates(cache, inputs, training=False))

    def extend_user(inputs):
        cache = {k: inputs[cache_name(k)] for k in model_cache_spec}
        return served_cache(model.extend_user(cache, {n: inputs[n] for n in EXTEND_INPUTS}))

    specs = {SERVING_DEFAULT: {**user_spec, **cand_spec}, ENCODE_USER: user_spec,
             SCORE_CANDIDATES: {**cache_spec, **cand_spec},
             EXTEND_USER: {**cache_spec, **features.input_signature(EXTEND_INPUTS)}}
    fns = {SERVING_DEFAULT: serving_default, ENCODE_USER: encode_user,
           SCORE_CANDIDATES: score_candidates, EXTEND_USER: extend_user}
    names = SIGNATURES + ((EXTEND_USER,) if model.can_extend else ())
    return {name: tf.function(fns[name], input_signature=[specs[name]]).get_concrete_function()
            for name in names}


def contract_of(signature_defs: Mapping) -> dict:
    """A SignatureDef map (MetaGraphDef.signature_def, or TF Serving's model metadata)
    -> the `contract()` format, so both can be compared and clients can learn the dtypes."""
    out = {}
    for sig_name, sig in signature_defs.items():
        if sig_name.startswith("__"):  # e.g. __saved_model_init_op, not a serving signature
            continue
        out[sig_name] = {}
        for side in ("inputs", "outputs"):
            entries = {}
            for name, info in getattr(sig, side).items():
                shape = (None if info.tensor_shape.unknown_rank else
                         [int(d.size) for d in info.tensor_shape.dim])
                entries[name] = {"dtype": tf.dtypes.as_dtype(info.dtype).name
                                 if info.dtype else "invalid (not a dense tensor)",
                                 "shape": shape}
            out[sig_name][side] = entries
    return out


def diff_contracts(actual: Mapping, expected: Mapping) -> list[str]:
    """Differences between two contracts (names, dtypes, shapes); empty when they match.

    Example:
        diff_contracts(contract_of(meta_graph.signature_def), metadata["signatures"])
    """
    problems = []
    for sig_name, want in expected.items():
        if sig_name not in actual:
            problems.append(f"signature {sig_name!r} is missing (found: {sorted(actual)})")
            continue
        for side in ("inputs", "outputs"):
            have, need = actual[sig_name][side], want[side]
            for name in sorted(set(need) - set(have)):
                problems.append(f"signature {sig_name!r}: {side[:-1]} {name!r} is missing")
            for name in sorted(set(have) - set(need)):
                problems.append(f"signature {sig_name!r}: unexpected {side[:-1]} {name!r}")
            for name in sorted(set(need) & set(have)):
                for what in ("dtype", "shape"):
                    if have[name][what] != need[name][what]:
                        problems.append(
                            f"signature {sig_name!r}: {side[:-1]} {name!r} has {what} "
                            f"{have[name][what]}, the contract says {need[name][what]}")
    return problems
