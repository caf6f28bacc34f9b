"""Single-flight: concurrent callers of one key run one call and share its outcome.

A cold user requested by several threads at once (a page that fans out to many rankers,
retries racing the first attempt) would otherwise be encoded once per thread: each
`encode_user` reads the user's whole history. With `SingleFlight.do`, the first caller of
a key runs the call; the others wait for it and get its value, or its exception.

Example:
    flights = SingleFlight()
    value, shared = flights.do(user_key, lambda: encode(user))  # shared: another ran it
"""
from __future__ import annotations

import threading
from typing import Callable, Hashable


class _Call:
    def __init__(self):
        self.done = threading.Event()
        self.value = None
        self.error: BaseException | None = None


class SingleFlight:
    """Deduplicates concurrent calls by key (the Go `singleflight` pattern).

    A key is in flight only while its call runs: a caller arriving after it finished runs
    the call again (look the value up in a cache first). An exception of the call is raised
    in every caller that waited for it, so a failing server is not asked again by each.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._calls: dict = {}

    def do(self, key: Hashable, fn: Callable[[], object]) -> tuple[object, bool]:
        """Returns (fn's value, shared): shared is True when another caller ran fn."""
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if leader:
                call = self._calls[key] = _Call()
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise call.error
            return call.value, True
        try:
            call.value = fn()
        except BaseException as e:
            call.error = e
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()
        return call.value, False

    def in_flight(self) -> int:
        with self._lock:
            return len(self._calls)
