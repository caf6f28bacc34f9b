"""SingleFlight: one call per key among concurrent callers; value and error shared."""
import threading
import time

import pytest

from serving.single_flight import SingleFlight


def _run_concurrently(flights, key, fn, n):
    results, errors = [None] * n, [None] * n

    def worker(i):
        try:
            results[i] = flights.do(key, fn)
        except Exception as e:  # noqa: BLE001 - recorded for the assertions
            errors[i] = e
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, results, errors


def test_concurrent_callers_of_one_key_share_one_call():
    flights, release, calls = SingleFlight(), threading.Event(), []

    def slow():
        calls.append(1)
        assert release.wait(10)
        return {"value": len(calls)}
    threads, results, _ = _run_concurrently(flights, "u1", slow, 6)
    time.sleep(0.3)                       # every caller is inside do() by now
    assert flights.in_flight() == 1
    release.set()
    for t in threads:
        t.join(10)
    assert len(calls) == 1
    assert all(r[0] == {"value": 1} for r in results)
    assert sorted(r[1] for r in results) == [False] + [True] * 5
    assert flights.in_flight() == 0
    assert flights.do("u1", lambda: 7) == (7, False)   # finished keys run again


def test_an_error_reaches_every_waiter_and_other_keys_are_independent():
    flights, release = SingleFlight(), threading.Event()

    def failing():
        assert release.wait(10)
        raise TimeoutError("server timed out")
    threads, results, errors = _run_concurrently(flights, "u1", failing, 4)
    time.sleep(0.3)
    assert flights.do("u2", lambda: "other") == ("other", False)   # not blocked by u1
    release.set()
    for t in threads:
        t.join(10)
    assert all(isinstance(e, TimeoutError) for e in errors) and results == [None] * 4
    assert flights.in_flight() == 0
    with pytest.raises(ZeroDivisionError):
        flights.do("u3", lambda: 1 / 0)
    assert flights.in_flight() == 0
