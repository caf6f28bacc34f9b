"""Fault injection for the serving client: bad raw requests,
bad dense inputs and user caches, bad server answers and bad configs. Every kind asserts
the exact error type and a message naming the problem; a bad request never reaches the
transport. No export is needed: the contract is the real one of the tiny STCA model of
the serving tests (`signatures.contract` over its `user_cache_spec()`), served by the
recording transport of tests/serving/test_serving_client.py.

What each kind got before the fix (reproduced on the previous commit) -> now:
  crash   int64 overflow (request_ts 2**70 or uint64 max, hist ts 2**64, action 2**70):
          ValueError / OverflowError; history or candidates None or a generator,
          score_requests(None), predict(inputs=None), a list as signature name: TypeError;
          a batch item that is not a triple: ValueError; a server without score_candidates:
          KeyError; a hung REST server: TimeoutError; a non-JSON REST answer:
          JSONDecodeError; serving.timeout_s=inf: OverflowError at the first call; a
          Config instead of cfg.serving, a string / None in ServingConfig: AttributeError /
          TypeError; export_model with model_name '..' or a symlinked model dir: made its
          temp dir outside the export base (a real model's version would follow), then
          AttributeError (the test passes no model)
  silent  history events at / after request_ts (raw, in a batch or dense); a NaN / Inf
          user cache (NaN scores); NaN scores or a NaN cache from the server (returned,
          cached); cache_hist_len beyond the cache's width; cache ID entries of different
          widths; model_name '..', '.', 'a\\b', '.hidden', 'x y', '-rf', non-ASCII, a
          newline; serving.max_history=2**30; a transport timeout_s of -1; a hung gRPC
          server waited the fixed 10 s whatever serving.timeout_s said
  clear   user None; a str / dict history (named history[0], now named history);
          model_name '' or 'a/b'; serving.timeout_s 0 or NaN
  new     TLS settings (fields, unreadable or non-PEM files, server name without TLS)
Now: RequestError for requests, inputs and caches; ServingError for server answers and
hangs (after serving.timeout_s); ConfigError for configs.
"""
import contextlib
import dataclasses
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from core import features
from core.config import ConfigError, ExportConfig, ServingConfig, load_config
from serving import export as export_lib
from serving import requests as req
from serving import signatures as sigs
from serving.client import RankingClient
from serving.requests import RequestError
from serving.transport import GrpcTransport, RestTransport, ServingError
from tests.helpers.serving import TASKS, tiny_config
from tests.serving.test_serving_client import TS, USER, RecordingTransport, candidates, history

BIG = 2 ** 70


@contextlib.contextmanager
def fails_with(error: type, message: str):
    """Like pytest.raises, but the type must be exactly `error` (not a subclass or a
    parent) and the message must name the problem (regex)."""
    with pytest.raises(Exception) as info:
        yield info
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert re.search(message, str(info.value)), str(info.value)


@pytest.fixture(scope="module")
def contract():
    from model import build_model
    cfg = tiny_config()
    return sigs.contract(build_model(cfg.model, cfg.tasks).user_cache_spec(), TASKS, "float32")


def refusing_client(contract, **cfg) -> RankingClient:
    """A client whose transport fails the test if anything is sent."""
    return RankingClient(RecordingTransport(contract=contract), ServingConfig(**cfg))


class Answers:
    """A server double answering every signature from `answer(signature, inputs)`."""

    def __init__(self, answer):
        self.answer = answer

    def predict(self, signature_name, inputs):
        return self.answer(signature_name, inputs)


def fake_cache(contract, width=5, fill=0.5):
    """score_candidates inputs shaped like the contract: a `width`-event cache (floats all
    `fill`) and `width` candidates."""
    inputs = {}
    for name, spec in contract[sigs.SCORE_CANDIDATES]["inputs"].items():
        shape = [1] + [width if d == -1 else d for d in spec["shape"][1:]]
        dtype = np.dtype(spec["dtype"])
        inputs[name] = (np.full(shape, fill, dtype) if dtype.kind == "f"
                        else np.ones(shape, dtype))
    inputs["cache_hist_len"] = np.array([width], np.int32)
    inputs["tgt_len"] = np.array([inputs["tgt_item_id"].shape[1]], np.int32)
    return inputs


def gen(items):
    yield from items


# ------------------------------------------------------------------ raw requests (item 8, 9)
@pytest.mark.parametrize("user, hist, cands, message", [
    ({"user_id": 1, "request_ts": BIG}, [], [("i", "a")],
     r"user\.request_ts: must be <= 9223372036854775807 \(int64\), got 1180591620717411303424"),
    ({"user_id": 1, "request_ts": np.uint64(2 ** 64 - 1)}, [], [("i", "a")],
     r"user\.request_ts: must be <= 9223372036854775807 \(int64\)"),
    (USER, [("i", "a", 0, 2 ** 64)], [("i", "a")],
     r"history\[0\]\.ts: must be <= 9223372036854775807 \(int64\), got 18446744073709551616"),
    (USER, [("i", "a", 0, TS - 5), ("j", "b", BIG, TS - 9)], [("i", "a")],
     r"history\[1\]\.action: must be <= 9223372036854775807 \(int64\)"),
    (USER, None, [("i", "a")],
     r"^history: expected a list or tuple of \(item_id, author_id, action, ts\) events, "
     r"got NoneType$"),
    (USER, [], None, r"^candidates: expected a list or tuple of \(item_id, author_id\) pairs, "
                     r"got NoneType$"),
    (USER, [], gen([("i", "a")]), r"candidates: .* got generator \(pass list\(\.\.\.\) of it\)"),
    (USER, gen(history(3)), [("i", "a")], r"history: .* got generator \(pass list"),
    (USER, "i,a,0,1", [("i", "a")], r"history: expected a list or tuple .* got str"),
    (USER, {"item_id": "i", "author_id": "a", "action": 0, "ts": TS - 1}, [("i", "a")],
     r"history: expected a list or tuple .* got dict"),
    (USER, history(3) + [("i", "a", 1, TS)], [("i", "a")],
     r"history\[3\]\.ts: 1700000000000 is not before user\.request_ts=1700000000000; a "
     r"history holds only earlier events"),
    (USER, [("i", "a", 1, TS + 60_000)], [("i", "a")],
     r"history\[0\]\.ts: 1700000060000 is not before user\.request_ts"),
    (None, [], [("i", "a")], r"user: expected a dict with user_id and request_ts"),
])
def test_bad_raw_requests_raise_request_errors_before_anything_is_sent(
        contract, user, hist, cands, message):
    for cache_bytes in (0, 1 << 20):   # serving_default and encode_user + score_candidates
        client = refusing_client(contract, cache_bytes=cache_bytes)
        with fails_with(RequestError, message):
            client.rank(user, hist, cands)
        assert client.transport.calls == []


@pytest.mark.parametrize("batch, message", [
    (None, r"^batch: expected a list or tuple of \(user, history, candidates\) requests, "
           r"got NoneType$"),
    ([(USER, [], [("i", "a")]), (USER, [])], r"^batch\[1\]: expected a \(user, history, "
                                             r"candidates\) tuple, got \(\{'request_ts'"),
    ([(USER, [], [("i", "a")]), (USER, [("i", "a", 0, TS)], [("i", "a")])],
     r"^batch\[1\]: history\[0\]\.ts: 1700000000000 is not before user\.request_ts"),
])
def test_bad_batches_of_requests(contract, batch, message):
    client = refusing_client(contract, cache_bytes=0)
    with fails_with(RequestError, message):
        client.score_requests(batch)
    assert client.transport.calls == []


# ------------------------------------------------------------------ dense inputs and caches
def test_bad_dense_inputs_and_user_caches(contract):
    client = refusing_client(contract, max_history=64)
    good = fake_cache(contract, width=5)
    req.check_inputs(good, contract[sigs.SCORE_CANDIDATES]["inputs"], client.limits)
    keys, tokens = good["cache_history_keys"].copy(), good["cache_user_tokens"].copy()
    keys[0, 1, 1, 3, 7] = np.nan
    tokens[0, 0, 2] = -np.inf
    ids = good["cache_hist_item_id"]
    cases = [
        (None, r"^inputs: expected a dict of numpy arrays, got NoneType$"),
        ({**good, "cache_history_keys": keys},
         r"^cache_history_keys: 1 of \d+ values are NaN or Inf; a user cache must be finite"),
        ({**good, "cache_user_tokens": tokens}, r"^cache_user_tokens: 1 of \d+ values are NaN"),
        # 6 > the 5 events the cache holds (before: only serving.max_history=64 bounded it).
        ({**good, "cache_hist_len": np.array([6], np.int32)},
         r"^cache_hist_len: values must be in \[0, 5\] \(the padded width of "
         r"cache_hist_item_id\), got \[6\]$"),
        ({**good, "cache_hist_author_id": np.ones([1, 7], np.int64)},
         r"cache_hist_item_id, cache_hist_author_id: must have one shape, got "
         r"cache_hist_item_id \[1, 5\], cache_hist_author_id \[1, 7\]"),
        ({**good, "cache_hist_item_id": ids[:, :0], "cache_hist_author_id": ids[:, :0],
          "cache_hist_len": np.array([1], np.int32)},
         r"^cache_hist_len: values must be in \[0, 0\]"),
    ]
    for inputs, message in cases:
        with fails_with(RequestError, message):
            client.predict(sigs.SCORE_CANDIDATES, inputs)
    with fails_with(RequestError, r"^unknown signature \['encode_user'\]"):
        client.predict([sigs.ENCODE_USER], good)
    # Dense serving_default inputs with valid events at or after request_ts.
    dense = req.dense_inputs([req.normalize(USER, history(4), candidates(2))])
    late = dense["hist_ts"].copy()
    late[0, 2] = TS
    with fails_with(RequestError, r"^hist_ts: 1 valid event\(s\) at or after request_ts "
                                  r"\(batch rows \[0\]\); a history holds only earlier"):
        client.predict(sigs.SERVING_DEFAULT, {**dense, "hist_ts": late})
    # ... while padded slots (beyond hist_len) may hold anything.
    padded = {**dense, "hist_ts": late, "hist_len": np.array([2], np.int32)}
    req.check_inputs(padded, contract[sigs.SERVING_DEFAULT]["inputs"], client.limits)
    assert client.transport.calls == []


# ------------------------------------------------------------------ bad server answers
def test_nan_scores_and_nan_caches_from_the_server_are_never_returned_nor_cached(contract):
    def answer(signature, inputs):
        m = inputs["tgt_item_id"].shape[1] if "tgt_item_id" in inputs else 0
        scores = {sigs.score_name(t): np.full([1, m], np.nan, np.float32) for t in TASKS}
        if signature == sigs.ENCODE_USER:
            cache = fake_cache(contract, width=inputs["hist_item_id"].shape[1], fill=np.inf)
            return {n: cache[n] for n in contract[sigs.ENCODE_USER]["outputs"]}
        return scores

    sent = RecordingTransport(Answers(answer), contract)
    direct = RankingClient(sent, ServingConfig(cache_bytes=0))
    with fails_with(ServingError, r"^serving_default: the server returned NaN / Inf in "
                                  r"score_(click|like); nothing was returned or cached"):
        direct.rank(USER, history(3), candidates(2))
    cached = RankingClient(sent, ServingConfig())
    with fails_with(ServingError, r"^encode_user: the server returned NaN / Inf in "
                                  r"cache_(history_keys|history_values|user_tokens)"):
        cached.rank(USER, history(3), candidates(2))
    assert len(cached.cache) == 0 and sent.calls.count(sigs.SCORE_CANDIDATES) == 0


def test_a_server_without_the_cached_signatures(contract):
    partial = {sigs.SERVING_DEFAULT: contract[sigs.SERVING_DEFAULT],
               sigs.ENCODE_USER: contract[sigs.ENCODE_USER]}

    def answer(signature, inputs):
        cache = fake_cache(contract, width=inputs["hist_item_id"].shape[1])
        return {n: cache[n] for n in contract[sigs.ENCODE_USER]["outputs"]}

    client = RankingClient(RecordingTransport(Answers(answer), partial))
    with fails_with(ServingError, r"^the served model has no 'score_candidates' signature"):
        client.rank(USER, history(3), candidates(2))


@contextlib.contextmanager
def silent_server():
    """127.0.0.1 port that accepts connections and never answers (a hung server)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.mark.parametrize("kind", ["rest", "grpc"])
def test_a_hung_server_fails_after_serving_timeout_s(kind):
    with silent_server() as port:
        transport = (RestTransport(f"http://127.0.0.1:{port}", "stca") if kind == "rest"
                     else GrpcTransport(f"127.0.0.1:{port}", "stca"))
        client = RankingClient(transport, ServingConfig(timeout_s=0.5))
        start = time.monotonic()
        message = (r"REST call to .* timed out after 0\.5 s \(serving\.timeout_s\)"
                   if kind == "rest" else
                   r"gRPC DEADLINE_EXCEEDED: .* after 0\.5 s \(serving\.timeout_s\)")
        with fails_with(ServingError, message):
            client.rank(USER, history(3), candidates(2))
        assert time.monotonic() - start < 5     # not the old fixed 10 s
        transport.close()


def test_a_rest_server_answering_garbage():
    class Garbage(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>proxy login</html>")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        transport = RestTransport(f"http://127.0.0.1:{server.server_port}", "stca", timeout_s=5)
        with fails_with(ServingError, r"^REST response from /v1/models/stca/metadata is not "
                                      r"a JSON object: b'<html>proxy login</html>'"):
            RankingClient(transport).rank(USER, history(3), candidates(2))
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------ bad configs (item 12)
@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\\b", "", ".hidden", "x y", "-rf",
                                  "naïve", "stca\n"])
def test_export_model_name_must_be_a_plain_directory_name(name):
    with fails_with(ConfigError, r"^export\.model_name: .* is invalid; it must be a plain "
                                 r"directory name"):
        ExportConfig(model_name=name).validate()
    if "\n" not in name:   # the same through --set
        with fails_with(ConfigError, r"^export\.model_name: "):
            load_config(None, [f"export.model_name={name}"])
    ExportConfig(model_name="stca_v2.1-b").validate()   # plain names pass


def test_export_refuses_a_model_dir_outside_the_export_base(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    before = sorted(os.listdir(tmp_path))
    cfg = load_config(None)
    cfg.export.model_name = ".."                         # set after validation
    # The model is never touched: the path is refused first.
    with fails_with(ConfigError, r"^export\.model_name: '\.\.' is invalid"):
        export_lib.export_model(None, cfg, str(base))
    assert sorted(os.listdir(tmp_path)) == before and os.listdir(base) == []
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.symlink(outside, base / "stca")
    cfg.export.model_name = "stca"
    with fails_with(ConfigError, r"^export\.model_name: 'stca' resolves to .*elsewhere, "
                                 r"outside the export base"):
        export_lib.export_model(None, cfg, str(base))
    assert os.listdir(outside) == []


@pytest.mark.parametrize("fields, message", [
    (dict(timeout_s=float("inf")), r"^serving\.timeout_s: inf is invalid; it must be <= 1e9"),
    (dict(timeout_s=float("nan")), r"^serving\.timeout_s: nan is invalid; it must be a number"),
    (dict(timeout_s=0), r"^serving\.timeout_s: 0 is invalid; it must be a number of seconds"),
    (dict(timeout_s="5"), r"^serving\.timeout_s: '5' is invalid"),
    (dict(max_history="10"), r"^serving\.max_history: '10' is invalid; it must be an integer"),
    (dict(max_history=1 << 30), r"^serving\.max_history: 1073741824 is invalid; it must be "
                                r"<= 1048576"),
    (dict(cache_bytes=None), r"^serving\.cache_bytes: None is invalid"),
    (dict(grpc_root_certs="ca.pem"),
     r"^serving\.grpc_root_certs: 'ca\.pem' is invalid; it must be empty unless "
     r"serving\.grpc_tls=true"),
    (dict(grpc_tls=True, grpc_client_cert="client.pem"),
     r"^serving\.grpc_client_key: '' is invalid; it must be set together with "
     r"serving\.grpc_client_cert"),
])
def test_bad_serving_configs(contract, fields, message):
    with fails_with(ConfigError, message):
        RankingClient(RecordingTransport(contract=contract), ServingConfig(**fields))


def test_bad_transport_and_tls_settings(contract, tmp_path):
    with fails_with(ConfigError, r"^serving\.timeout_s: -1 is invalid"):
        RestTransport("http://127.0.0.1:1", "stca", timeout_s=-1)
    with fails_with(ConfigError, r"^serving_cfg: expected a core\.config\.ServingConfig "
                                 r"\(e\.g\. cfg\.serving\), got Config"):
        RankingClient(RecordingTransport(contract=contract), load_config(None))
    tls = ServingConfig(grpc_tls=True, grpc_root_certs=str(tmp_path / "missing.pem"))
    with fails_with(ConfigError, r"^serving\.grpc_root_certs: cannot read '.*missing\.pem': "
                                 r"No such file or directory$"):
        GrpcTransport.from_config("127.0.0.1:1", "stca", tls)
    (tmp_path / "key.der").write_bytes(b"\x30\x82\x01\x0a")
    (tmp_path / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    mutual = dataclasses.replace(tls, grpc_root_certs="", grpc_client_cert=str(
        tmp_path / "cert.pem"), grpc_client_key=str(tmp_path / "key.der"))
    with fails_with(ConfigError, r"^serving\.grpc_client_key: '.*key\.der' is not a PEM file"):
        GrpcTransport.from_config("127.0.0.1:1", "stca", mutual)
    with fails_with(ConfigError, r"^serving\.grpc_server_name: set, but the channel is not "
                                 r"TLS"):
        GrpcTransport("127.0.0.1:1", "stca", server_name="ranker")


def test_contract_fixture_is_the_cached_stca_contract(contract):
    # The suite depends on the cache holding raw history IDs next to the float entries.
    cache = contract[sigs.ENCODE_USER]["outputs"]
    assert {"cache_history_keys", "cache_history_values", "cache_user_tokens", "cache_hist_len",
            "cache_hist_item_id", "cache_hist_author_id"} <= set(cache)
    assert set(features.CANDIDATE_INPUTS) <= set(contract[sigs.SCORE_CANDIDATES]["inputs"])
