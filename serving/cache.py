"""A thread-safe LRU cache bounded by bytes, with a time-to-live per entry.

Holds encode_user results (dicts of numpy arrays) keyed by user + request time + history
digest, so one user's candidates can be scored in many chunks (or retried, or re-ranked)
without re-encoding a 10k-event history.

Example:
    cache = LRUCache(capacity_bytes=256 << 20, ttl_s=300)
    cache.put("u1:...", {"cache_history_keys": keys, ...})
    hit = cache.get("u1:...")            # None when absent or expired
    cache.stats()["bytes"]
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Mapping

import numpy as np


def nbytes(value) -> int:
    """Bytes held by a numpy array or a (nested) dict of arrays."""
    if isinstance(value, Mapping):
        return sum(nbytes(v) for v in value.values())
    return int(np.asarray(value).nbytes)


class LRUCache:
    """Least-recently-used eviction once the byte total exceeds `capacity_bytes`.

    Args:
      capacity_bytes: byte budget (serving.cache_bytes); 0 disables the cache (every get
        misses, put stores nothing).
      ttl_s: seconds an entry stays valid after it was stored (serving.cache_ttl_s).
      clock: returns seconds; injectable so tests control time.
    """

    def __init__(self, capacity_bytes: int, ttl_s: float,
                 clock: Callable[[], float] = time.monotonic):
        if capacity_bytes < 0:
            raise ValueError(f"serving.cache_bytes: must be >= 0, got {capacity_bytes}")
        if ttl_s <= 0:
            raise ValueError(f"serving.cache_ttl_s: must be > 0, got {ttl_s}")
        self.capacity_bytes = int(capacity_bytes)
        self.ttl_s = float(ttl_s)
        self._clock = clock
        self._entries: OrderedDict = OrderedDict()  # key -> (value, size, expires_at)
        self._bytes = 0
        self._lock = threading.Lock()
        self._counts = dict(hits=0, misses=0, evictions=0, expirations=0, too_large=0)

    @property
    def enabled(self) -> bool:
        return self.capacity_bytes > 0

    def get(self, key):
        """The value stored under `key`, or None when absent or expired (then dropped)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[2] <= self._clock():
                self._drop(key)
                self._counts["expirations"] += 1
                entry = None
            if entry is None:
                self._counts["misses"] += 1
                return None
            self._entries.move_to_end(key)
            self._counts["hits"] += 1
            return entry[0]

    def put(self, key, value) -> bool:
        """Stores `value`, evicting least recently used entries to fit. Returns False
        (stores nothing) when the cache is disabled or the value alone exceeds capacity."""
        size = nbytes(value)
        with self._lock:
            if key in self._entries:
                self._drop(key)
            if size > self.capacity_bytes:
                self._counts["too_large"] += int(self.enabled)
                return False
            while self._bytes + size > self.capacity_bytes:
                oldest = next(iter(self._entries))
                self._drop(oldest)
                self._counts["evictions"] += 1
            self._entries[key] = (value, size, self._clock() + self.ttl_s)
            self._bytes += size
            return True

    def _drop(self, key) -> None:
        _, size, _ = self._entries.pop(key)
        self._bytes -= size

    def __contains__(self, key) -> bool:
        with self._lock:
            entry = self._entries.get(key)
            return entry is not None and entry[2] > self._clock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> dict:
        with self._lock:
            return dict(self._counts, entries=len(self._entries), bytes=self._bytes,
                        capacity_bytes=self.capacity_bytes)
