"""`RankingClient`: ranks a user's candidates through TF Serving, encoding each user once.

    rank(user, history, candidates)
      cache on (serving.cache_bytes > 0):
        key = user id + request_ts + digest of the history      (serving/requests.py)
        hit  -> the cached encode_user outputs
        miss -> encode_user (one call), stored in the LRU (bytes budget, TTL); concurrent
                misses of one key share that call (serving/single_flight.py)
        then score_candidates over chunks of serving.chunk_size candidates
      cache off (serving.cache_bytes = 0):
        serving_default with every candidate in one call
      an export with extend_user (model.recency=attention: a request-free cache):
        key = user id + digest of the history (no request_ts); a miss whose history is the
        user's last cached one plus k newer events calls extend_user with those k events
        instead of encode_user with the whole history

Cold users are encoded synchronously before scoring (the simplest correct design: the
first request pays encode_user + score_candidates, about what serving_default costs;
every later chunk or re-rank of the same request only pays score_candidates).

The key holds request_ts because the cache holds time-delta embeddings: a later request
of the same user with the same history is a new entry. Callers who accept slightly stale
time deltas (e.g. re-ranking within a session) may pass the session's first request_ts.
Exports of model.recency=attention take the ages at scoring time, so their key has no
request_ts and their warm entries are extended with new events.

Inputs are built by the training input builder (`core.features`, IDs by
`core.idhash.stable_id`) and validated against the signatures the server reports
before anything is sent. This module never imports the `model` package.

Errors: every bad request raises `RequestError` (nothing else escapes for bad input); a
server failure, a timeout (serving.timeout_s) or non-finite outputs (NaN / Inf scores or
user cache, never returned nor cached) raise `ServingError`; a bad config `ConfigError`.

Example:
    client = RankingClient(GrpcTransport("localhost:8500", "stca"), cfg.serving)
    result = client.rank({"user_id": "u42", "request_ts": 1_700_000_000_000},
                         history=[("v1", "a7", 1, 1_699_999_990_000), ...],
                         candidates=[("v9", "a7"), ("v3", "a2")])
    result.scores["click"]   # float32 [2], in candidate order
"""
from __future__ import annotations

import collections
import reprlib
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from core import features
from core.config import Config, ConfigError, ServingConfig
from serving import requests as req
from serving import signatures as sigs
from serving.cache import LRUCache, nbytes
from serving.requests import RequestError  # noqa: F401  (re-exported for callers)
from serving.single_flight import SingleFlight
from serving.transport import ServingError


_MAX_USERS_TRACKED = 1 << 16  # users whose newest cache entry extend_user can start from


@dataclass
class RankResult:
    """scores: task -> float32 [m] in candidate order; cache_hit: None when the cache is off
    (True also when a concurrent request of the same user encoded it); cache_bytes: the
    size of this user's encode_user outputs (None when the cache is off)."""
    scores: dict
    cache_hit: bool | None
    cache_bytes: int | None = None
    cache_extended: bool = False   # a miss served by extending the user's last entry


class RankingClient:
    """Builds, validates and sends ranking requests; caches encoded users.

    Args:
      transport: RestTransport | GrpcTransport | InProcessTransport (serving/transport.py).
        A transport built without an explicit timeout_s gets serving.timeout_s (of the
        first client it is given to, when shared).
      serving_cfg: `core.config.ServingConfig` (limits, chunk size, cache budget, TTL,
        timeout).
      clock: seconds for the cache TTL (injectable for tests).

    Raises:
      ConfigError: serving_cfg is not a valid ServingConfig.
    """

    def __init__(self, transport, serving_cfg: ServingConfig | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if serving_cfg is not None and not isinstance(serving_cfg, ServingConfig):
            raise ConfigError(f"serving_cfg: expected a core.config.ServingConfig (e.g. "
                              f"cfg.serving), got {type(serving_cfg).__name__}")
        self.cfg = serving_cfg or ServingConfig()
        self.cfg.validate()
        if getattr(transport, "timeout_s", 0) is None:  # not set by its caller
            transport.timeout_s = self.cfg.timeout_s
        self.transport = transport
        self.limits = req.Limits.from_config(self.cfg)
        self.cache = LRUCache(self.cfg.cache_bytes, self.cfg.cache_ttl_s, clock)
        self.calls: collections.Counter = collections.Counter()
        self._lock = threading.Lock()
        self._encodes = SingleFlight()
        # user id -> (history length, cache key) of the user's newest cached entry, for
        # extend_user; bounded like the cache is (least recently stored dropped first).
        self._latest: collections.OrderedDict = collections.OrderedDict()

    @classmethod
    def from_config(cls, cfg: Config, transport, **kwargs) -> "RankingClient":
        return cls(transport, cfg.serving, **kwargs)

    # ------------------------------------------------------------ the contract
    @property
    def contract(self) -> dict:
        """Signature names / dtypes / shapes as the server reports them."""
        return self.transport.contract()

    @property
    def tasks(self) -> list[str]:
        outputs = self._served(sigs.SERVING_DEFAULT)["outputs"]
        return [n[len(sigs.SCORE_PREFIX):] for n in sorted(outputs)
                if n.startswith(sigs.SCORE_PREFIX)]

    def _served(self, signature_name: str) -> dict:
        """The contract of a signature rank() needs; ServingError if the server lacks it."""
        contract = self.contract
        if signature_name not in contract:
            raise ServingError(f"the served model has no {signature_name!r} signature (it has "
                               f"{sorted(contract)}); serve an export of `stca export`")
        return contract[signature_name]

    # ------------------------------------------------------------ calls
    def predict(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict:
        """One validated call of a signature with dense inputs (numpy arrays).

        Raises:
          RequestError: unknown signature, missing / extra inputs, wrong dtypes or shapes,
            lengths outside [0, padded width] or above the serving limits, NaN / Inf
            floats, valid history events at or after request_ts.
          serving.transport.ServingError: the server failed the call or returned NaN / Inf.
        """
        return self._predict(signature_name, inputs)

    def _predict(self, signature_name: str, inputs: Mapping[str, np.ndarray],
                 finite: Sequence[str] = ()) -> dict:
        """predict(); `finite` names inputs known to be finite (a cache checked on arrival)."""
        if not isinstance(signature_name, str) or signature_name not in self.contract:
            raise RequestError(f"unknown signature {signature_name!r}; the server has "
                               f"{sorted(self.contract)}")
        req.check_inputs(inputs, self.contract[signature_name]["inputs"], self.limits, finite)
        with self._lock:
            self.calls[signature_name] += 1
        out = self.transport.predict(signature_name, inputs)
        # NaN scores would rank arbitrarily and a NaN cache would poison every later chunk:
        # neither is returned (nor cached).
        for name, value in out.items():
            value = np.asarray(value)
            if value.dtype.kind not in "biu" and not np.isfinite(value).all():
                raise ServingError(f"{signature_name}: the server returned NaN / Inf in "
                                   f"{name}; nothing was returned or cached (check the "
                                   "export with `stca verify-export`)")
        return out

    def rank(self, user: Mapping, history: Sequence, candidates: Sequence) -> RankResult:
        """Scores one user's candidates (see the module docstring for the argument formats).

        Returns:
          RankResult with one float32 [len(candidates)] score vector per task.

        Raises:
          RequestError: a bad request (see serving/requests.py), before anything is sent.
          serving.transport.ServingError: the server failed, timed out or returned NaN / Inf.
        """
        request = req.normalize(user, history, candidates, self.limits)
        m = len(request.tgt_item_id)
        if m == 0:
            return RankResult({t: np.zeros([0], np.float32) for t in self.tasks}, None)
        if not self.cache.enabled:
            out = self._predict(sigs.SERVING_DEFAULT, req.dense_inputs([request]))
            return RankResult(self._scores([(out, m)]), None)
        extendable = sigs.EXTEND_USER in self.contract
        key = request.user_key(request_free=extendable)
        cached = self.cache.get(key)
        hit, how = cached is not None, "hit"
        if not hit:
            (cached, how), shared = self._encodes.do(key, lambda: self._encode(key, request))
            hit = how == "hit" or shared
        # A warm user's history is not rebuilt: only the candidates are.
        inputs = req.dense_inputs([request.without_history()])
        wanted = self._served(sigs.SCORE_CANDIDATES)["inputs"]
        user_side = {n: v for n, v in cached.items() if n in wanted}
        # request_ts too when the model adds event ages at scoring (model.recency=attention)
        user_side.update({n: inputs[n] for n in sigs.candidate_inputs(wanted)
                          if n not in features.CANDIDATE_INPUTS})
        parts = []
        for start in range(0, m, self.cfg.chunk_size):
            stop = min(start + self.cfg.chunk_size, m)
            chunk = {n: inputs[n][:, start:stop] for n in features.TARGET_FEATURES}
            chunk[features.TGT_LEN] = np.array([stop - start], np.int32)
            out = self._predict(sigs.SCORE_CANDIDATES, {**user_side, **chunk},
                                finite=tuple(user_side))
            parts.append((out, stop - start))
        return RankResult(self._scores(parts), hit, nbytes(cached),
                          cache_extended=how == "extended" and not shared)

    def _encode(self, key: str, request: req.Request) -> tuple[dict, str]:
        """(user cache, "hit" | "extended" | "encoded") for a cache miss; one call per key
        at a time (SingleFlight)."""
        if key in self.cache:  # a concurrent miss finished between our lookup and now
            cached = self.cache.get(key)
            if cached is not None:
                return cached, "hit"
        extendable = sigs.EXTEND_USER in self.contract
        cached, how = (self._extend(request) if extendable else None), "extended"
        if cached is None:
            user = req.dense_inputs([request.without_candidates()])
            cached = self._predict(sigs.ENCODE_USER, {n: user[n] for n in features.USER_INPUTS})
            how = "encoded"
        self.cache.put(key, cached)  # _predict refused a NaN / Inf cache
        if extendable:
            with self._lock:
                self._latest[request.user_id] = (len(request.hist_item_id), key)
                self._latest.move_to_end(request.user_id)
                while len(self._latest) > _MAX_USERS_TRACKED:
                    self._latest.popitem(last=False)
        return cached, how

    def _extend(self, request: req.Request) -> dict | None:
        """extend_user of the user's newest cached entry with the request's newer events,
        when its history is that entry's plus k > 0 newer events; else None."""
        with self._lock:
            latest = self._latest.get(request.user_id)
        if latest is None:
            return None
        old_len, old_key = latest
        k = len(request.hist_item_id) - old_len
        if k <= 0 or request.history_slice(k).user_key(request_free=True) != old_key:
            return None
        old = self.cache.get(old_key)
        if old is None:  # evicted or expired
            return None
        new = req.dense_inputs([request.history_slice(0, k).without_candidates()])
        return self._predict(sigs.EXTEND_USER,
                             {**old, **{n: new[n] for n in sigs.EXTEND_INPUTS}},
                             finite=tuple(old))

    def score_requests(self, batch: Sequence[tuple]) -> list[dict]:
        """serving_default over several (user, history, candidates) requests in one call.

        Returns:
          One {task: float32 [m_i]} per request (offline scoring, parity checks).

        Raises:
          RequestError, ServingError: as rank().
        """
        batch = req.sequence_of(batch, "batch", "(user, history, candidates) requests")
        requests = []
        for i, item in enumerate(batch):
            if not isinstance(item, (tuple, list)) or len(item) != 3:
                raise RequestError(f"batch[{i}]: expected a (user, history, candidates) "
                                   f"tuple, got {reprlib.repr(item)}")
            try:
                requests.append(req.normalize(*item, self.limits))
            except RequestError as e:
                raise RequestError(f"batch[{i}]: {e}") from None
        out = self._predict(sigs.SERVING_DEFAULT, req.dense_inputs(requests))
        return [{t: out[sigs.score_name(t)][i, :len(r.tgt_item_id)] for t in self.tasks}
                for i, r in enumerate(requests)]

    def _scores(self, parts: list[tuple]) -> dict:
        # Each part is sliced to its own candidates: a batching server pads the candidate
        # axis to the widest request of its batch.
        return {t: np.concatenate([out[sigs.score_name(t)][0, :n] for out, n in parts])
                .astype(np.float32) for t in self.tasks}

    def close(self) -> None:
        self.transport.close()
