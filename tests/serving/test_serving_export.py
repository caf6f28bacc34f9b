"""`stca export`: layout, metadata, signature contract, parity of the three signatures
(float32 and bfloat16 cache, several requests, histories up to 10240 after training on
<= 256), the TF1 loader path and the warmup requests."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.python.saved_model import loader_impl

from core import config as config_lib
from core import features
from model import checkpoint as checkpoint_lib
from model import registry
from serving import export as export_lib
from serving import layout
from serving import signatures as sigs
from serving.session import SessionModel
from serving.verify import BF16_TOL, FLOAT32_TOL
from tests.helpers.serving import TASKS, export, export_recency_model, tiny_config

# Several requests in one batch: 10240 (40x the training windows), medium, empty, short.
HISTORIES, CANDIDATES = [10240, 3000, 0, 17], [5, 1, 9, 3]


def valid(scores: dict, tgt_len) -> np.ndarray:
    mask = np.arange(scores[f"score_{TASKS[0]}"].shape[1])[None, :] < np.asarray(tgt_len)[:, None]
    return np.stack([np.asarray(scores[f"score_{t}"])[mask] for t in TASKS])


def call(fn, inputs):
    return {k: v.numpy() for k, v in fn(**inputs).items()}


def split(batch):
    return ({n: batch[n] for n in features.USER_INPUTS},
            {n: batch[n] for n in features.CANDIDATE_INPUTS})


@pytest.fixture(scope="module")
def batch():
    return export_lib.synthetic_inputs(HISTORIES, CANDIDATES, seed=3)


def test_layout_metadata_and_server_configs(export_f32, model_dir):
    path = export_f32["path"]
    assert os.path.basename(path) == "1" and layout.is_version_dir(path)
    assert os.path.isfile(layout.warmup_path(path))
    meta = layout.read_metadata(path)
    assert meta["version"] == 1 and meta["tasks"] == list(TASKS)
    assert meta["checkpoint"].startswith(os.path.join(model_dir, "checkpoints"))
    assert meta["train_metrics"]["steps"] > 0
    assert meta["precision"] == {"trained": "float32", "exported_compute": "float32",
                                 "cache_dtype": "float32"}
    assert config_lib.config_from_dict(meta["config"]).model.d_model == 16
    assert set(meta["signatures"]) == set(sigs.SIGNATURES)
    # Example server configs parse as TF Serving's own protos.
    from tensorflow_serving.config import model_server_config_pb2
    base = os.path.dirname(os.path.dirname(path))
    with open(os.path.join(base, layout.MODELS_CONFIG)) as f:
        models = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    assert [(c.name, c.base_path) for c in models.model_config_list.config] == [
        ("stca", "/models/stca")]
    with open(os.path.join(base, layout.BATCHING_FILE)) as f:
        # (BatchingParameters is not in the tensorflow-serving-api wheel: check the fields.)
        batching = f.read()
    for field in ("max_batch_size { value:", "batch_timeout_micros { value:",
                  "pad_variable_length_inputs: true"):
        assert field in batching
    # Nothing but the version dir (and non-numeric siblings) under the model dir.
    assert layout.versions(os.path.dirname(path)) == [1]


def test_version_numbering(model_dir, tmp_path):
    base = str(tmp_path)
    assert export(model_dir, base)["version"] == 1
    assert export(model_dir, base, "export.version=7")["version"] == 7
    assert export(model_dir, base)["version"] == 8            # 0 = next free
    with pytest.raises(config_lib.ConfigError, match="export.version: 7 already exists"):
        export(model_dir, base, "export.version=7")
    assert layout.resolve_version_dir(base).endswith(os.path.join("stca", "8"))
    assert not [n for n in os.listdir(os.path.join(base, "stca")) if n.startswith(".tmp")]


def test_signature_contract_dense_and_named(export_f32):
    saved = loader_impl.parse_saved_model(export_f32["path"]).meta_graphs[0].signature_def
    contract = sigs.contract_of(saved)
    recorded = layout.read_metadata(export_f32["path"])["signatures"]
    assert sigs.diff_contracts(contract, recorded) == []
    assert contract["serving_default"]["inputs"]["hist_item_id"] == {"dtype": "int64",
                                                                     "shape": [-1, -1]}
    assert contract["serving_default"]["inputs"]["tgt_len"] == {"dtype": "int32", "shape": [-1]}
    assert set(contract["serving_default"]["outputs"]) == {"score_click", "score_like"}
    assert contract["encode_user"]["outputs"] == {
        # Every layer's projected keys / values: [B, layers, heads, L, d / heads].
        "cache_history_keys": {"dtype": "float32", "shape": [-1, 2, 2, -1, 8]},
        "cache_history_values": {"dtype": "float32", "shape": [-1, 2, 2, -1, 8]},
        "cache_user_tokens": {"dtype": "float32", "shape": [-1, 2, 16]},
        "cache_hist_len": {"dtype": "int32", "shape": [-1]},
        # Raw history IDs for the ID-match attention prior (model.id_match).
        "cache_hist_item_id": {"dtype": "int64", "shape": [-1, -1]},
        "cache_hist_author_id": {"dtype": "int64", "shape": [-1, -1]}}
    assert set(contract["score_candidates"]["inputs"]) == (
        set(contract["encode_user"]["outputs"]) | set(features.CANDIDATE_INPUTS))
    for sig in saved.values():  # no ragged / composite tensors anywhere
        for info in list(sig.inputs.values()) + list(sig.outputs.values()):
            assert info.WhichOneof("encoding") == "name"


def test_round_trip_parity_float32_long_histories(export_f32, model_dir, batch):
    loaded = tf.saved_model.load(export_f32["path"]).signatures
    user, cands = split(batch)
    direct = call(loaded["serving_default"], batch)
    cache = call(loaded["encode_user"], user)
    assert cache["cache_history_keys"].shape == (4, 2, 2, 10240, 8)
    np.testing.assert_array_equal(cache["cache_hist_len"], HISTORIES)
    cached = call(loaded["score_candidates"], {**cache, **cands})
    tgt_len = batch["tgt_len"]
    np.testing.assert_allclose(valid(cached, tgt_len), valid(direct, tgt_len),
                               rtol=0, atol=FLOAT32_TOL)
    # The in-memory model restored from the checkpoint gives the same scores.
    model, _ = checkpoint_lib.load_trained_model(tiny_config(), model_dir)
    probs = tf.sigmoid(model(batch)).numpy()
    in_memory = {f"score_{t}": probs[..., i] for i, t in enumerate(TASKS)}
    np.testing.assert_allclose(valid(direct, tgt_len), valid(in_memory, tgt_len),
                               rtol=0, atol=FLOAT32_TOL)
    # A request scored alone, with its own (no) padding, scores the same: padding is masked.
    alone = {n: v[1:2, :HISTORIES[1]] if n in features.HISTORY_FEATURES else
             v[1:2, :CANDIDATES[1]] if n in features.TARGET_FEATURES else v[1:2]
             for n, v in batch.items()}
    np.testing.assert_allclose(valid(call(loaded["serving_default"], alone), [CANDIDATES[1]]),
                               valid(direct, tgt_len)[:, 5:6], rtol=0, atol=FLOAT32_TOL)


def test_bfloat16_cache_halves_bytes_within_tolerance(export_f32, export_bf16, batch):
    f32 = tf.saved_model.load(export_f32["path"]).signatures
    bf16 = tf.saved_model.load(export_bf16["path"]).signatures
    user, cands = split(batch)
    cache32, cache16 = call(f32["encode_user"], user), call(bf16["encode_user"], user)
    assert cache16["cache_history_keys"].dtype.name == "bfloat16"
    assert cache16["cache_history_values"].dtype.name == "bfloat16"
    assert cache16["cache_hist_len"].dtype == np.int32
    float_bytes = lambda c: sum(v.nbytes for v in c.values()  # noqa: E731
                                if v.dtype.kind == "f" or v.dtype.name == "bfloat16")
    assert float_bytes(cache16) * 2 == float_bytes(cache32)
    direct = call(bf16["serving_default"], batch)
    cached = call(bf16["score_candidates"], {**cache16, **cands})
    diff = np.abs(valid(cached, batch["tgt_len"]) - valid(direct, batch["tgt_len"])).max()
    assert 0 < diff <= BF16_TOL, diff
    meta = layout.read_metadata(export_bf16["path"])
    assert meta["signatures"]["score_candidates"]["inputs"]["cache_history_values"][
        "dtype"] == "bfloat16"


def test_tf1_loader_and_warmup_requests(export_f32, batch):
    """TF Serving's path: TF1 session from the loader, signature tensor names, warmup."""
    model = SessionModel(export_f32["path"])
    warmup = model.warmup_requests()
    assert [name for name, _ in warmup] == list(sigs.SIGNATURES)
    for name, inputs in warmup:
        out = model.run(name, inputs)
        assert set(out) == set(model.contract()[name]["outputs"])
    assert warmup[0][1]["hist_item_id"].shape == (1, 64)
    assert warmup[0][1]["tgt_item_id"].shape == (1, 8)
    loaded = tf.saved_model.load(export_f32["path"]).signatures
    via_session = model.run("serving_default", batch)
    via_load = call(loaded["serving_default"], batch)
    np.testing.assert_allclose(valid(via_session, batch["tgt_len"]),
                               valid(via_load, batch["tgt_len"]), atol=FLOAT32_TOL)
    with pytest.raises(ValueError, match="missing inputs \\['tgt_len'\\]"):
        model.run("serving_default", {k: v for k, v in batch.items() if k != "tgt_len"})
    model.close()


def test_export_precision_is_float32_unless_as_trained():
    cfg = tiny_config("model.precision=mixed_bfloat16")
    assert export_lib.export_config(cfg).model.precision == "float32"
    cfg = tiny_config("model.precision=mixed_bfloat16", "export.precision=as_trained")
    assert export_lib.export_config(cfg).model.precision == "mixed_bfloat16"
    with pytest.raises(config_lib.ConfigError, match="export.precision"):
        tiny_config("export.precision=float16")


def test_metadata_is_json_and_names_the_contract(export_f32):
    with open(layout.metadata_path(export_f32["path"])) as f:
        meta = json.load(f)
    assert meta["feature_spec"]["user_inputs"] == list(features.USER_INPUTS)
    assert meta["warmup"] == {"requests": 3, "history": 64, "candidates": 8}


@pytest.mark.parametrize("encoder", [e for e in registry.encoder_names() if e != "stca"])
def test_every_encoder_exports_without_code_changes(encoder, tmp_path):
    """The cache outputs come from user_cache_spec(), so encoders with other cache keys
    (LONGER's KV caches, DIN's keys, ...) export and keep the parity."""
    from model import build_model
    cfg = tiny_config(f"model.encoder={encoder}", "model.recompute=false")
    try:
        model = build_model(cfg.model, cfg.tasks)
    except NotImplementedError as e:
        pytest.skip(str(e))
    info = export_lib.export_model(model, cfg, str(tmp_path))
    loaded = tf.saved_model.load(info["path"]).signatures
    batch = export_lib.synthetic_inputs([700, 0, 33], [5, 2, 9], seed=4)
    user, cands = split(batch)
    cache = call(loaded["encode_user"], user)
    assert set(cache) == {sigs.cache_name(k) for k in model.user_cache_spec()}
    assert sigs.diff_contracts(sigs.contract_of(loader_impl.parse_saved_model(
        info["path"]).meta_graphs[0].signature_def), layout.read_metadata(
        info["path"])["signatures"]) == []
    np.testing.assert_allclose(
        valid(call(loaded["score_candidates"], {**cache, **cands}), batch["tgt_len"]),
        valid(call(loaded["serving_default"], batch), batch["tgt_len"]),
        rtol=0, atol=FLOAT32_TOL)


def test_recency_at_scoring_exports_a_request_free_cache(tmp_path):
    """model.recency=attention: score_candidates takes request_ts (metadata and contract
    say so), the cache holds hist_ts and no request time, cached == serving_default,
    and the TF1 loader path (parity and warmup replay) reads the same contract."""
    from serving.session import parity_job
    model, info = export_recency_model(str(tmp_path))
    meta = layout.read_metadata(info["path"])
    assert meta["feature_spec"]["candidate_inputs"] == list(features.CANDIDATE_INPUTS) + [
        "request_ts"]
    assert "request_ts" in meta["signatures"]["score_candidates"]["inputs"]
    loaded = tf.saved_model.load(info["path"]).signatures
    batch = export_lib.synthetic_inputs([700, 0, 33], [5, 2, 9], seed=5)
    user = {n: batch[n] for n in features.USER_INPUTS}
    cands = {n: batch[n] for n in model.candidate_inputs}
    cache = call(loaded["encode_user"], user)
    assert sigs.cache_name("hist_ts") in cache
    later = call(loaded["encode_user"], {**user, "request_ts": user["request_ts"] + 86_400_000})
    for name in cache:
        np.testing.assert_array_equal(cache[name], later[name])
    direct = valid(call(loaded["serving_default"], batch), batch["tgt_len"])
    np.testing.assert_allclose(valid(call(loaded["score_candidates"], {**cache, **cands}),
                                     batch["tgt_len"]), direct, rtol=0, atol=FLOAT32_TOL)
    moved = {**cands, "request_ts": cands["request_ts"] + 86_400_000}
    assert np.abs(valid(call(loaded["score_candidates"], {**cache, **moved}),
                        batch["tgt_len"]) - direct).max() > 1e-4
    # extend_user: the cache of the older events, extended with the newer ones, scores
    # like the whole history (rows: 700 = 690 old + 10 new, empty, 33 new and no old).
    older, newer = features.split_history(user, [10, 0, 33])
    extended = call(loaded["extend_user"], {**call(loaded["encode_user"], older), **newer})
    np.testing.assert_array_equal(extended["cache_hist_len"], batch["hist_len"])
    np.testing.assert_allclose(valid(call(loaded["score_candidates"], {**extended, **cands}),
                                     batch["tgt_len"]), direct, rtol=0, atol=FLOAT32_TOL)
    assert set(meta["signatures"]["extend_user"]["inputs"]) == set(cache) | set(
        sigs.EXTEND_INPUTS)
    arrays, summary = parity_job(info["path"], batch)
    np.testing.assert_allclose(valid({k.split("/")[1]: v for k, v in arrays.items()
                                      if k.startswith("score_candidates/")}, batch["tgt_len"]),
                               direct, rtol=0, atol=FLOAT32_TOL)
    assert [w["signature"] for w in summary["warmup"]] == [
        "serving_default", "encode_user", "score_candidates", "extend_user"]
    assert all(w["ok"] for w in summary["warmup"])
