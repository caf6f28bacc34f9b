"""The client end to end over REST and gRPC against the TF Serving test double (a separate
process on 127.0.0.1 serving the export through the TF1 loader): rank() equals
serving_default, the second call is a cache hit (encode_user counted on the server),
server errors surface clearly, and a bfloat16 cache works over gRPC only."""
import json
import os
import urllib.request

import numpy as np
import pytest

from core.config import ServingConfig
from serving import layout
from serving.client import RankingClient
from serving.transport import GrpcTransport, RestTransport, ServingError
from tests.helpers.serving import start_double, stop

pytestmark = pytest.mark.slow  # the TF Serving double is a separate process

TS = 1_700_000_000_000
USER = {"user_id": "user-7", "request_ts": TS}


def events(n, seed=0):
    rng = np.random.default_rng(seed)
    return [(int(i), int(a), int(x), TS - 997 * (k + 1)) for k, (i, a, x) in enumerate(
        zip(rng.integers(1, 10**9, n), rng.integers(1, 1000, n), rng.integers(0, 4, n)))]


def items(m, seed=1):
    rng = np.random.default_rng(seed)
    return [(f"v{int(i)}", int(a)) for i, a in zip(rng.integers(1, 10**9, m),
                                                    rng.integers(1, 1000, m))]


@pytest.fixture(scope="module")
def double(export_f32, tmp_path_factory):
    proc, ports = start_double(os.path.dirname(export_f32["path"]), "stca",
                               str(tmp_path_factory.mktemp("double")))
    yield ports
    stop(proc)


def server_calls(ports) -> dict:
    url = f"http://127.0.0.1:{ports['rest']}/double/stats"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())["calls"]


def make_transport(kind, ports, version=None):
    if kind == "rest":
        return RestTransport(f"http://127.0.0.1:{ports['rest']}", "stca", version, timeout_s=60)
    return GrpcTransport(f"127.0.0.1:{ports['grpc']}", "stca", version, timeout_s=60)


@pytest.mark.parametrize("kind", ["rest", "grpc"])
def test_rank_over_the_wire_equals_serving_default_and_caches_users(kind, double, export_f32):
    transport = make_transport(kind, double)
    # The served contract (TF Serving's model metadata API) is the exported one.
    assert transport.contract() == layout.read_metadata(export_f32["path"])["signatures"]
    direct = RankingClient(transport, ServingConfig(cache_bytes=0))
    client = RankingClient(transport, ServingConfig(chunk_size=16))
    hist, cands = events(10240 if kind == "grpc" else 2000), items(40)
    before = server_calls(double)
    want = direct.rank(USER, hist, cands)
    first = client.rank(USER, hist, cands)
    second = client.rank(USER, hist, cands)
    calls = {k: v - before.get(k, 0) for k, v in server_calls(double).items()}
    assert calls == {"serving_default": 1, "encode_user": 1, "score_candidates": 6}
    assert (first.cache_hit, second.cache_hit) == (False, True)
    for task in ("click", "like"):
        np.testing.assert_allclose(first.scores[task], want.scores[task], rtol=0, atol=1e-5)
        np.testing.assert_array_equal(second.scores[task], first.scores[task])
    transport.close()


def test_server_errors_are_clear(double):
    for kind in ("rest", "grpc"):
        client = RankingClient(make_transport(kind, double, version=99))
        with pytest.raises(ServingError, match="Servable not found"):
            client.rank(USER, events(3), items(2))
    rest = make_transport("rest", double)
    with pytest.raises(ServingError, match="REST 400.*not found in signature def"):
        rest._call("/v1/models/stca:predict", {"signature_name": "nope", "inputs": {}})
    bad = RestTransport("http://127.0.0.1:1", "stca", timeout_s=2)
    with pytest.raises(ServingError, match="failed"):
        bad.contract()


def test_bfloat16_cache_over_grpc_and_a_clear_error_over_rest(export_bf16, tmp_path):
    proc, ports = start_double(os.path.dirname(export_bf16["path"]), "stca", str(tmp_path))
    try:
        grpc_client = RankingClient(make_transport("grpc", ports))
        direct = RankingClient(make_transport("grpc", ports), ServingConfig(cache_bytes=0))
        hist, cands = events(500), items(10)
        got, want = grpc_client.rank(USER, hist, cands), direct.rank(USER, hist, cands)
        from serving.verify import BF16_TOL
        assert np.abs(got.scores["click"] - want.scores["click"]).max() <= BF16_TOL
        rest_client = RankingClient(make_transport("rest", ports))
        with pytest.raises(ServingError, match="bfloat16"):
            rest_client.rank(USER, hist, cands)
    finally:
        stop(proc)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_lru_eviction_by_bytes_and_ttl_counted_on_the_server(double):
    clock = Clock()
    # One 300-event user's cache (d=16, N=2 layers): K and V per layer, the raw item /
    # author IDs of the id-match, 2 user tokens, hist_len.
    entry = 2 * 2 * 300 * 16 * 4 + 2 * 300 * 8 + 2 * 16 * 4 + 4
    client = RankingClient(make_transport("grpc", double),
                           ServingConfig(cache_bytes=int(entry * 1.5), cache_ttl_s=30),
                           clock=clock)
    alice, bob = ({"user_id": u, "request_ts": TS} for u in ("alice", "bob"))
    hist, cands = events(300), items(5)

    def encodes(fn):
        before = server_calls(double).get("encode_user", 0)
        fn()
        return server_calls(double).get("encode_user", 0) - before

    assert encodes(lambda: client.rank(alice, hist, cands)) == 1
    assert encodes(lambda: client.rank(alice, hist, cands)) == 0     # hit
    assert encodes(lambda: client.rank(bob, hist, cands)) == 1       # evicts alice (bytes)
    assert encodes(lambda: client.rank(alice, hist, cands)) == 1     # evicted: encode again
    assert client.cache.stats()["evictions"] == 2
    clock.now = 31.0                                                 # TTL passed
    assert encodes(lambda: client.rank(alice, hist, cands)) == 1
    assert client.cache.stats()["expirations"] == 1


@pytest.mark.parametrize("kind", ["rest", "grpc"])
def test_a_users_next_request_extends_its_cache_over_the_wire(kind, tmp_path):
    """A model.recency=attention export: the second request, with 7 newer events, costs
    one extend_user call on the server (no encode_user) and scores like serving_default."""
    from tests.helpers.serving import export_recency_model
    _, info = export_recency_model(str(tmp_path / "export"))
    proc, ports = start_double(os.path.dirname(info["path"]), "stca", str(tmp_path))
    try:
        client = RankingClient(make_transport(kind, ports))
        direct = RankingClient(make_transport(kind, ports), ServingConfig(cache_bytes=0))
        hist, cands = events(400), items(12)
        first = client.rank(USER, hist, cands)
        later = {**USER, "request_ts": TS + 30_000}
        newer = [(int(10**9 + k), 5, 1, TS + 1000 * (k + 1)) for k in range(7)]
        before = server_calls(ports)
        grown = client.rank(later, newer + hist, cands)
        after = server_calls(ports)
        assert first.cache_hit is False and grown.cache_extended
        assert after.get("extend_user", 0) - before.get("extend_user", 0) == 1
        assert after.get("encode_user", 0) == before.get("encode_user", 0)
        want = direct.rank(later, newer + hist, cands)
        np.testing.assert_allclose(grown.scores["click"], want.scores["click"], rtol=0,
                                   atol=1e-5)
    finally:
        stop(proc)
