"""The client without a server: request building and validation (errors before anything is
sent), the LRU cache (bytes, TTL), chunked scoring and caching over the in-process
transport, non-finite caches, serving.timeout_s, gRPC over TLS against a loopback server,
and the rule that the client never imports the `model` package. More bad inputs:
tests/serving/test_client_faults.py."""
import contextlib
import dataclasses
import datetime
import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from core import features, idhash
from core.config import ServingConfig
from serving import requests as req
from serving import signatures as sigs
from serving.cache import LRUCache
from serving.client import RankingClient
from serving.requests import RequestError
from serving.transport import GrpcTransport, InProcessTransport, RestTransport, ServingError
from tests.helpers.env import subprocess_env

TS = 1_700_000_000_000
USER = {"user_id": "user-1", "request_ts": TS}


def history(n, seed=0):
    rng = np.random.default_rng(seed)
    return [(f"item-{int(i)}", int(a), int(x), TS - 1000 * (k + 1))
            for k, (i, a, x) in enumerate(zip(rng.integers(0, 10**6, n),
                                              rng.integers(0, 1000, n), rng.integers(0, 4, n)))]


def candidates(m, seed=1):
    rng = np.random.default_rng(seed)
    return [(int(i), f"author-{int(a)}") for i, a in zip(rng.integers(0, 10**6, m),
                                                          rng.integers(0, 1000, m))]


class RecordingTransport:
    """Wraps a transport and records every call (or refuses them all)."""

    def __init__(self, inner=None, contract=None):
        self.inner, self._contract, self.calls = inner, contract, []

    def contract(self):
        return self._contract or self.inner.contract()

    def predict(self, signature_name, inputs):
        self.calls.append(signature_name)
        if self.inner is None:
            raise AssertionError("nothing should have been sent")
        return self.inner.predict(signature_name, inputs)

    def close(self):
        pass


@pytest.fixture(scope="module")
def transport(export_f32):
    return InProcessTransport(export_f32["path"])


# ------------------------------------------------------------------ request building
def test_requests_use_the_training_builder_and_id_hash():
    events = [("b", "x", 1, TS - 5000), ("a", "y", 2, TS - 1000), ("c", 7, 0, TS - 9000)]
    r = req.normalize(USER, events, [("i9", "a9")])
    assert r.user_id == idhash.stable_id("user-1")
    assert r.hist_ts == (TS - 1000, TS - 5000, TS - 9000)          # most recent first
    assert r.hist_item_id == tuple(idhash.stable_id(i) for i in ("a", "b", "c"))
    assert r.hist_author_id[2] == 7
    inputs = req.dense_inputs([r, req.normalize({"user_id": 5, "request_ts": TS}, [], [])])
    assert set(inputs) == set(features.MODEL_INPUTS)
    assert inputs["hist_item_id"].shape == (2, 3) and inputs["hist_len"].tolist() == [3, 0]
    assert inputs["tgt_item_id"].shape == (2, 1) and inputs["tgt_len"].tolist() == [1, 0]
    assert inputs["hist_len"].dtype == np.int32 and inputs["user_id"].dtype == np.int64
    # Dict events are the same request as tuples.
    as_dicts = req.normalize(USER, [dict(zip(req.EVENT_FIELDS, e)) for e in events],
                             [{"item_id": "i9", "author_id": "a9"}])
    assert as_dicts == r and as_dicts.user_key() == r.user_key()
    later = req.normalize({**USER, "request_ts": TS + 1}, events, [("i9", "a9")])
    assert later.user_key() != r.user_key()  # time deltas differ: another cache entry


@pytest.mark.parametrize("user, hist, cands, message", [
    ({"user_id": 1}, [], [], "user: missing field.*request_ts"),
    ({"user_id": None, "request_ts": TS}, [], [], "user.user_id: not an ID"),
    ({"user_id": 1, "request_ts": "now"}, [], [], "user.request_ts: expected an integer"),
    ({"user_id": 1, "request_ts": -5}, [], [], "user.request_ts: must be >= 0"),
    (USER, [(1, 2, 3)], [], r"history\[0\]: expected a \(item_id, author_id, action, ts\)"),
    (USER, [{"item_id": 1, "author_id": 2, "ts": TS}], [], r"history\[0\]: missing field.*action"),
    (USER, [(1, 2, -1, TS)], [], r"history\[0\].action: must be >= 0"),
    (USER, [(1, 2, 0, float(TS))], [], r"history\[0\].ts: expected an integer"),
    (USER, [(1.5, 2, 0, TS)], [], r"history\[0\].item_id: not an integral ID"),
    (USER, [(True, 2, 0, TS)], [], r"history\[0\].item_id: not an ID"),
    (USER, [], [(1,)], r"candidates\[0\]: expected a \(item_id, author_id\)"),
    (USER, [], [{"item_id": 3}], r"candidates\[0\]: missing field.*author_id"),
    (USER, [], [(1, "")], r"candidates\[0\].author_id: empty ID"),
    (USER, history(11), [], "history: 11 events > serving.max_history=10"),
    (USER, [], candidates(6), "candidates: 6 > serving.max_candidates=5"),
])
def test_bad_requests_fail_before_anything_is_sent(user, hist, cands, message):
    sent = RecordingTransport(contract={})
    client = RankingClient(sent, ServingConfig(max_history=10, max_candidates=5))
    with pytest.raises(RequestError, match=message):
        client.rank(user, hist, cands)
    assert sent.calls == []


def test_dense_inputs_are_checked_against_the_served_contract(transport):
    sent = RecordingTransport(contract=transport.contract())
    client = RankingClient(sent, ServingConfig(max_history=64, max_candidates=8))
    good = req.dense_inputs([req.normalize(USER, history(5), candidates(3))])
    bad_cases = [
        ({**good, "user_id": good["user_id"].astype(np.int32)}, "user_id: dtype int32 != int64"),
        ({k: v for k, v in good.items() if k != "hist_len"}, "missing \\['hist_len'\\]"),
        ({**good, "extra": good["hist_len"]}, "unexpected \\['extra'\\]"),
        ({**good, "hist_len": np.array([6], np.int32)}, "hist_len: values must be in \\[0, 5\\]"),
        ({**good, "tgt_len": np.array([-1], np.int32)}, "tgt_len: values must be in"),
        ({**good, "hist_ts": good["hist_ts"][0]}, "hist_ts: shape \\[5\\] does not match"),
        ({**good, "request_ts": np.array([TS, TS])}, "request_ts: batch size 2 != 1"),
        ({**good, "hist_item_id": np.zeros([1, 65], np.int64)}, "must have one shape"),
        ({**good, "hist_item_id": good["hist_item_id"].tolist()}, "expected a numpy array"),
    ]
    for inputs, message in bad_cases:
        with pytest.raises(RequestError, match=message):
            client.predict("serving_default", inputs)
    with pytest.raises(RequestError, match="unknown signature 'predict'"):
        client.predict("predict", good)
    hist = np.zeros([1, 65], np.int64)
    too_long = {**good, **{n: hist for n in features.HISTORY_FEATURES},
                "hist_len": np.array([65], np.int32)}
    with pytest.raises(RequestError, match="hist_len: values must be in \\[0, 64\\]"):
        client.predict("serving_default", too_long)
    assert sent.calls == []


def test_rest_body_and_grpc_request_formats():
    inputs = req.dense_inputs([req.normalize(USER, history(3), candidates(2))])
    body = req.rest_body("encode_user", {n: inputs[n] for n in features.USER_INPUTS})
    assert body["signature_name"] == "encode_user" and body["inputs"]["hist_len"] == [3]
    json.dumps(body)  # plain JSON
    assert req.rest_path("stca") == "/v1/models/stca:predict"
    assert req.rest_path("stca", 3) == "/v1/models/stca/versions/3:predict"
    proto = req.grpc_request("stca", "serving_default", inputs, version=3)
    assert proto.model_spec.signature_name == "serving_default"
    assert proto.model_spec.version.value == 3
    import tensorflow as tf
    np.testing.assert_array_equal(tf.make_ndarray(proto.inputs["hist_ts"]), inputs["hist_ts"])
    # A single output comes back unnamed from TF Serving's REST API.
    out = req.parse_rest_response({"outputs": [[0.5, 0.25]]},
                                  {"score_click": {"dtype": "float32", "shape": [-1, -1]}})
    assert out["score_click"].dtype == np.float32 and out["score_click"].shape == (1, 2)
    bf16 = np.zeros([1, 2], tf.bfloat16.as_numpy_dtype)
    with pytest.raises(RequestError, match="bfloat16 tensors cannot travel over TF Serving's REST"):
        req.rest_body("score_candidates", {"cache_user_tokens": bf16})


# ------------------------------------------------------------------ LRU cache
class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_lru_evicts_by_bytes_and_expires_by_ttl():
    clock = Clock()
    cache = LRUCache(capacity_bytes=3000, ttl_s=10, clock=clock)
    entry = lambda: {"x": np.zeros(250, np.float32)}  # noqa: E731  (1000 bytes)
    for key in "abc":
        assert cache.put(key, entry())
    assert cache.get("a") is not None            # a is now the most recent
    cache.put("d", entry())                      # evicts b, the least recently used
    assert "b" not in cache and "a" in cache and cache.stats()["evictions"] == 1
    assert cache.stats()["bytes"] == 3000
    assert not cache.put("huge", {"x": np.zeros(1000, np.float32)})   # 4000 > capacity
    clock.now = 10.5
    assert cache.get("a") is None and cache.stats()["expirations"] == 1
    assert len(cache) == 2 and "c" not in cache  # expired entries are gone on access
    assert not LRUCache(0, 1).enabled and not LRUCache(0, 1).put("k", entry())
    with pytest.raises(ValueError, match="serving.cache_ttl_s"):
        LRUCache(10, 0)


# ------------------------------------------------------------------ in-process client
def test_rank_chunks_caches_and_equals_serving_default(transport):
    cfg = ServingConfig(chunk_size=128)
    direct = RankingClient(transport, dataclasses.replace(cfg, cache_bytes=0))
    sent = RecordingTransport(transport)
    client = RankingClient(sent, cfg)
    hist, cands = history(300), candidates(300)
    want = direct.rank(USER, hist, cands)
    assert want.cache_hit is None and direct.calls == {"serving_default": 1}
    first = client.rank(USER, hist, cands)
    assert first.cache_hit is False
    assert sent.calls == ["encode_user"] + ["score_candidates"] * 3   # 128 + 128 + 44
    for task in ("click", "like"):
        assert first.scores[task].shape == (300,)
        np.testing.assert_allclose(first.scores[task], want.scores[task], rtol=0, atol=1e-5)
    second = client.rank(USER, list(reversed(hist)), cands)   # order does not matter
    assert second.cache_hit is True and sent.calls.count("encode_user") == 1
    np.testing.assert_array_equal(second.scores["click"], first.scores["click"])
    assert client.tasks == ["click", "like"]
    assert client.rank(USER, hist, []).scores["click"].shape == (0,)
    # score_requests: several requests through serving_default in one call.
    batch = client.score_requests([(USER, hist, cands[:5]),
                                   ({**USER, "user_id": 9}, [], cands[:2])])
    np.testing.assert_allclose(batch[0]["click"], want.scores["click"][:5], atol=1e-5)
    assert batch[1]["like"].shape == (2,)


def test_cache_eviction_by_bytes_and_ttl_in_the_client(transport):
    clock = Clock()
    sent = RecordingTransport(transport)
    # K and V (2 x N x L x d floats) + user tokens + length + raw history IDs (2 x L int64)
    entry = 2 * 2 * 100 * 16 * 4 + 2 * 16 * 4 + 4 + 2 * 100 * 8
    one_user = int(entry * 1.5)                  # room for one 100-event user, not two
    client = RankingClient(sent, ServingConfig(cache_bytes=one_user, cache_ttl_s=60),
                           clock=clock)
    users = [{"user_id": u, "request_ts": TS} for u in ("a", "b")]
    for user in (users[0], users[1], users[0]):   # b evicts a: three encodes
        client.rank(user, history(100), candidates(4))
    assert sent.calls.count("encode_user") == 3
    assert client.cache.stats()["evictions"] == 2 and len(client.cache) == 1
    assert client.rank(users[0], history(100), candidates(4)).cache_hit is True
    clock.now = 61.0                                   # TTL passed: encode again
    assert client.rank(users[0], history(100), candidates(4)).cache_hit is False
    assert sent.calls.count("encode_user") == 4 and client.cache.stats()["expirations"] == 1


class GatedTransport(RecordingTransport):
    """encode_user blocks until `release` is set (after signalling `entered`)."""

    def __init__(self, inner):
        super().__init__(inner)
        self.entered, self.release = threading.Event(), threading.Event()

    def predict(self, signature_name, inputs):
        if signature_name == sigs.ENCODE_USER:
            self.entered.set()
            assert self.release.wait(30)
        return super().predict(signature_name, inputs)


def test_concurrent_cold_requests_of_one_user_encode_it_once(transport):
    gated = GatedTransport(transport)
    client = RankingClient(gated, ServingConfig(chunk_size=64))
    hist, cands = history(200), candidates(100)
    results = [None] * 5

    def rank(i):
        results[i] = client.rank(USER, hist, cands)
    threads = [threading.Thread(target=rank, args=(i,)) for i in range(5)]
    threads[0].start()
    assert gated.entered.wait(30)          # the first request is inside encode_user
    for t in threads[1:]:
        t.start()
    time.sleep(0.5)                        # the others miss the cache meanwhile
    gated.release.set()
    for t in threads:
        t.join(30)
    assert gated.calls.count("encode_user") == 1
    assert gated.calls.count("score_candidates") == 5 * 2
    assert sorted(r.cache_hit for r in results) == [False] + [True] * 4
    alone = RankingClient(transport, ServingConfig(chunk_size=64)).rank(USER, hist, cands)
    for r in results:
        np.testing.assert_array_equal(r.scores["click"], alone.scores["click"])
        assert r.cache_bytes == client.cache.stats()["bytes"] > 0


def test_bfloat16_cache_through_the_client(export_bf16):
    transport = InProcessTransport(export_bf16["path"])
    client = RankingClient(transport)
    direct = RankingClient(transport, ServingConfig(cache_bytes=0))
    hist, cands = history(2000), candidates(20)
    got, want = client.rank(USER, hist, cands), direct.rank(USER, hist, cands)
    from serving.verify import BF16_TOL
    assert np.abs(got.scores["click"] - want.scores["click"]).max() <= BF16_TOL
    entry = next(iter(client.cache._entries.values()))[0]
    assert entry["cache_history_keys"].dtype.name == "bfloat16"


def test_recency_at_scoring_export_through_the_client(tmp_path):
    """model.recency=attention: the client sends request_ts with the candidates (the
    served score_candidates asks for it), cached scores equal serving_default's, the
    cache key has no request time, and a request with newer events extends the user's
    cached entry (extend_user) instead of encoding the whole history."""
    from tests.helpers.serving import export_recency_model
    _, info = export_recency_model(str(tmp_path))
    sent = RecordingTransport(InProcessTransport(info["path"]))
    client = RankingClient(sent)
    direct = RankingClient(sent, ServingConfig(cache_bytes=0))
    hist, cands = history(500), candidates(40)
    got = []
    for user in (USER, {**USER, "request_ts": USER["request_ts"] + 86_400_000}):
        got.append(client.rank(user, hist, cands))
        want = direct.rank(user, hist, cands)
        for task in ("click", "like"):
            np.testing.assert_allclose(got[-1].scores[task], want.scores[task], rtol=0,
                                       atol=1e-5)
    assert got[0].cache_hit is False
    assert np.abs(got[0].scores["click"] - got[1].scores["click"]).max() > 1e-4
    # The cache is request-free: the second time was a hit, only scoring re-ran.
    assert got[1].cache_hit and sent.calls.count("encode_user") == 1
    # The user's next request, 6 newer events on top: extend_user with those 6 only.
    later = {**USER, "request_ts": USER["request_ts"] + 60_000}
    newer = [(f"new-{i}", f"author-{i}", 1, USER["request_ts"] + 1000 * (i + 1))
             for i in range(6)]
    grown = client.rank(later, newer + hist, cands)
    assert grown.cache_extended and not grown.cache_hit
    assert sent.calls.count("encode_user") == 1 and sent.calls.count("extend_user") == 1
    want = direct.rank(later, newer + hist, cands)
    np.testing.assert_allclose(grown.scores["like"], want.scores["like"], rtol=0, atol=1e-5)
    # Not an extension of the newest entry (an old event changed): encoded again.
    changed = client.rank(later, newer + hist[:-1], cands)
    assert not changed.cache_extended and sent.calls.count("encode_user") == 2


def test_the_client_never_imports_the_model_package(export_f32):
    code = f"""
import sys, json
from serving.client import RankingClient
from serving.transport import InProcessTransport, RestTransport, GrpcTransport
import serving.offline, serving.cache, serving.requests, serving.layout
client = RankingClient(InProcessTransport({export_f32['path']!r}))
result = client.rank({{"user_id": "u", "request_ts": {TS}}}, [("i", "a", 1, {TS - 1})],
                     [("j", "b")])
loaded = sorted(m for m in sys.modules if m == "model" or m.startswith("model."))
print(json.dumps({{"model_modules": loaded, "score": float(result.scores["click"][0])}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["model_modules"] == [] and 0.0 < out["score"] < 1.0


def test_demo_score_in_process(export_f32, data_dir):
    from serving import offline
    result = offline.demo_score(export_f32["path"], data_dir)
    assert result["max_abs_diff"] <= 1e-5 and result["second_call_cache_hit"]
    assert len(result["serving_default"]["click"]) == result["candidates"] > 0
    assert result["calls"]["encode_user"] == 1


def test_signature_names_are_shared():
    assert sigs.cache_name("history_keys") == "cache_history_keys"
    assert sigs.score_names(["click"]) == ["score_click"]


# ------------------------------------------------------------------ caches the model built
def test_the_real_cache_is_checked_for_nan_and_its_own_width(transport):
    client = RankingClient(transport, ServingConfig(max_history=64))
    user = req.dense_inputs([req.normalize(USER, history(5), candidates(3))])
    cache = client.predict("encode_user", {n: user[n] for n in features.USER_INPUTS})
    assert cache["cache_hist_item_id"].shape == (1, 5)   # raw IDs: the cache's history width
    cands = {n: user[n] for n in features.CANDIDATE_INPUTS}
    good = client.predict("score_candidates", {**cache, **cands})
    assert np.isfinite(good["score_click"]).all()
    poisoned = cache["cache_history_values"].copy()
    poisoned[0, 0, 1, 1, 2] = np.nan      # before: accepted, every score came back NaN
    with pytest.raises(RequestError, match="cache_history_values: 1 of .* values are NaN or Inf"):
        client.predict("score_candidates", {**cache, **cands, "cache_history_values": poisoned})
    too_long = np.array([6], np.int32)  # before: only max_history=64 bounded it
    with pytest.raises(RequestError, match=r"cache_hist_len: values must be in \[0, 5\] \(the "
                                           r"padded width of cache_hist_item_id\)"):
        client.predict("score_candidates", {**cache, **cands, "cache_hist_len": too_long})


# ------------------------------------------------------------------ timeouts
def test_transports_use_serving_timeout_s_unless_given_one():
    rest = RestTransport("http://127.0.0.1:1", "stca")
    grpc_t = GrpcTransport("127.0.0.1:1", "stca")
    pinned = RestTransport("http://127.0.0.1:1", "stca", timeout_s=60)
    for t in (rest, grpc_t, pinned):
        RankingClient(t, ServingConfig(timeout_s=2.5))
    assert (rest.timeout_s, grpc_t.timeout_s, pinned.timeout_s) == (2.5, 2.5, 60)
    cfg = ServingConfig(timeout_s=4.0)
    assert GrpcTransport.from_config("127.0.0.1:1", "stca", cfg).timeout_s == 4.0
    grpc_t.close()


# ------------------------------------------------------------------ gRPC over TLS
def _pem_pair(name, issuer=None, ca=False):
    """(certificate PEM, key PEM, (cert, key)) for `name`, signed by issuer (or itself)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_cert, issuer_key = issuer or (None, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer_cert.subject if issuer_cert else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]),
                                        critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem, (cert, key)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A test CA, a server certificate for 'ranker.test' and a client certificate."""
    root = tmp_path_factory.mktemp("tls")
    ca_pem, _, ca = _pem_pair("stca test CA", ca=True)
    files = {"ca": ca_pem}
    for who, name in (("server", "ranker.test"), ("client", "stca-client")):
        files[who], files[who + "_key"], _ = _pem_pair(name, issuer=ca)
    for name, data in files.items():
        (root / f"{name}.pem").write_bytes(data)
    return {name: str(root / f"{name}.pem") for name in files}


@contextlib.contextmanager
def tls_server(files, require_client_auth):
    """A loopback gRPC PredictionService over TLS answering GetModelMetadata with no
    signatures (enough to prove the handshake and the call went through)."""
    from concurrent import futures

    import grpc
    from tensorflow_serving.apis import get_model_metadata_pb2

    def metadata(request, context):
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.metadata["signature_def"].Pack(get_model_metadata_pb2.SignatureDefMap())
        return response

    handler = grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
        "GetModelMetadata": grpc.unary_unary_rpc_method_handler(
            metadata, get_model_metadata_pb2.GetModelMetadataRequest.FromString,
            get_model_metadata_pb2.GetModelMetadataResponse.SerializeToString)})
    read = {k: open(v, "rb").read() for k, v in files.items()}
    credentials = grpc.ssl_server_credentials(
        [(read["server_key"], read["server"])], root_certificates=read["ca"],
        require_client_auth=require_client_auth)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers([handler])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def test_grpc_over_tls_and_mutual_tls(tls_files):
    tls = ServingConfig(timeout_s=10, grpc_tls=True, grpc_root_certs=tls_files["ca"],
                        grpc_server_name="ranker.test")
    mutual = dataclasses.replace(tls, grpc_client_cert=tls_files["client"],
                                 grpc_client_key=tls_files["client_key"])
    with tls_server(tls_files, require_client_auth=False) as target:
        secure = GrpcTransport.from_config(target, "stca", tls)
        assert secure.secure and secure.contract() == {}       # handshake + call went through
        for bad in (GrpcTransport(target, "stca", timeout_s=5),             # plaintext
                    GrpcTransport.from_config(target, "stca", dataclasses.replace(
                        tls, grpc_server_name="other.test"))):              # wrong name
            with pytest.raises(ServingError, match="gRPC UNAVAILABLE"):
                bad.contract()
            bad.close()
        secure.close()
    with tls_server(tls_files, require_client_auth=True) as target:
        with pytest.raises(ServingError, match="gRPC UNAVAILABLE"):
            GrpcTransport.from_config(target, "stca", tls).contract()     # no client cert
        client = RankingClient(GrpcTransport.from_config(target, "stca", mutual), mutual)
        assert client.contract == {}
        client.close()
