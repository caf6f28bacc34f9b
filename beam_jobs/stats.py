"""In-pipeline aggregates: the time cutoff of the eval split and OUT/stats.json.

Eval cutoff. The latest `eval_fraction` of requests (by request timestamp) go to eval: the
cutoff is the timestamp of the k-th latest request, k = ceil(eval_fraction * requests), found
exactly by a few passes of a fixed-size histogram (`CUTOFF_BINS` bins) over the request
timestamps, each pass zooming into the one bin that holds the k-th latest request until a bin
is 1 ms wide. So it is a quantile by count, not by time: one implausible request decades away
from the rest (an outlier the plausible range let through) moves the cutoff by one request,
not by the time range, and never empties train. Eval holds the latest k requests plus those
tied with the k-th; every eval request is later than every train request. Unlike
`ApproximateQuantiles` this is exact integer arithmetic that does not depend on bundle order,
so reruns are byte-identical, and its memory is bounded (one histogram per pass).

Stats. `StatsFn` combines one tuple per request (records.BuildUserRecords) into requests,
targets and records per split, label rates per task and exact history-length percentiles
(from a histogram of lengths, at most max_history + 1 entries).

Example:
    cutoff = impressions | EvalCutoff(0.1, span_ms)   # singleton PCollection, Unix ms
    summary = per_request | beam.CombineGlobally(StatsFn(tasks))
"""
from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction
from typing import Sequence

import apache_beam as beam

CUTOFF_BINS = 1 << 16
NO_EVAL = (1 << 63) - 1          # cutoff when eval_fraction == 0 or there is no data


class MinMaxCountFn(beam.CombineFn):
    """Global (min, max, count) of ints; None for an empty input."""

    def create_accumulator(self):
        return None

    def add_input(self, acc, value):
        if acc is None:
            return value, value, 1
        return min(acc[0], value), max(acc[1], value), acc[2] + 1

    def merge_accumulators(self, accs):
        accs = [a for a in accs if a is not None]
        if not accs:
            return None
        return min(a[0] for a in accs), max(a[1] for a in accs), sum(a[2] for a in accs)

    def extract_output(self, acc):
        return acc


# The search state between passes: requests with ts >= `high` are already counted for eval;
# the k-th latest request lies in [low, high) and is the `need`-th latest in there. Done
# when high - low == 1: the cutoff is `low`.
def first_window(summary, eval_fraction: float) -> tuple[int, int, int]:
    """(min, max, count) of request timestamps -> the first search window.

    k = ceil(eval_fraction * count) computed on the decimal fraction as written (0.1 * 60 is
    6.000000000000001 in floats, which would put 7 requests in eval).
    """
    if summary is None or eval_fraction <= 0:
        return NO_EVAL, NO_EVAL + 1, 0
    low, high, count = summary
    return low, high + 1, max(1, math.ceil(Fraction(repr(eval_fraction)) * count))


def _bin_width(window) -> int:
    low, high, _ = window
    return max(1, -(-(high - low) // CUTOFF_BINS))


def bin_of(ts: int, window):
    """Yields the histogram bin of `ts` when it lies in a window still to be narrowed."""
    low, high, _ = window
    if high - low > 1 and low <= ts < high:
        yield (ts - low) // _bin_width(window)


def narrow(bin_counts: Sequence[tuple[int, int]], window) -> tuple[int, int, int]:
    """(bin, count) pairs of one pass -> the window of the bin holding the k-th latest."""
    low, high, need = window
    if high - low <= 1:
        return window
    width = _bin_width(window)
    seen = 0
    for b, count in sorted(bin_counts, reverse=True):
        if seen + count >= need:
            return low + b * width, min(high, low + (b + 1) * width), need - seen
        seen += count
    return low, low + 1, 0       # not reached for need <= requests; everything goes to eval


def passes_for(span_ms: int) -> int:
    """Passes that narrow a window of `span_ms` ms down to 1 ms with CUTOFF_BINS bins each."""
    passes, width = 0, max(1, span_ms)
    while width > 1:
        width = -(-width // CUTOFF_BINS)
        passes += 1
    return max(1, passes)


class EvalCutoff(beam.PTransform):
    """Impressions (user, (request, ts_ms, ...)) -> singleton PCollection: cutoff in Unix ms.

    Args:
      eval_fraction: share of requests (the latest) that go to eval; 0: no eval split.
      span_ms: the widest possible range of timestamps (the plausible range), which sets the
        number of histogram passes (3 for the default 1990-2100 range).
    """

    def __init__(self, eval_fraction: float, span_ms: int = NO_EVAL):
        super().__init__()
        self.eval_fraction = eval_fraction
        self.passes = passes_for(span_ms)

    def expand(self, impressions):
        request_ts = (
            impressions
            | "RequestKey" >> beam.Map(lambda kv: ((kv[0], kv[1][0]), kv[1][1]))
            | "EarliestTs" >> beam.CombinePerKey(min)
            | "Timestamps" >> beam.Values())
        window = (request_ts
                  | "MinMaxCount" >> beam.CombineGlobally(MinMaxCountFn())
                  | "FirstWindow" >> beam.Map(first_window, self.eval_fraction))
        for i in range(self.passes):
            side = beam.pvalue.AsSingleton(window)
            window = (request_ts
                      | f"Bin{i}" >> beam.FlatMap(bin_of, side)
                      | f"CountPerBin{i}" >> beam.combiners.Count.PerElement()
                      | f"AllBins{i}" >> beam.combiners.ToList()
                      | f"Narrow{i}" >> beam.Map(narrow, side))
        return window | "Cutoff" >> beam.Map(lambda w: w[0])


def _percentile(length_counts: Counter, q: float) -> int:
    """Nearest-rank percentile of a histogram {length: count}."""
    total = sum(length_counts.values())
    if total == 0:
        return 0
    rank = max(1, math.ceil(q * total - 1e-9))
    seen = 0
    for length in sorted(length_counts):
        seen += length_counts[length]
        if seen >= rank:
            return length
    return max(length_counts)


class StatsFn(beam.CombineFn):
    """Per-request stats tuples -> the stats dict written to OUT/stats.json."""

    def __init__(self, tasks: Sequence[str]):
        self.tasks = list(tasks)

    def create_accumulator(self):
        return {"splits": {}, "positives": [0] * len(self.tasks), "lengths": Counter()}

    def add_input(self, acc, stat):
        split, targets, hist_len, positives, records = stat
        s = acc["splits"].setdefault(split, [0, 0, 0])
        s[0] += 1
        s[1] += targets
        s[2] += records
        acc["positives"] = [a + b for a, b in zip(acc["positives"], positives)]
        acc["lengths"][hist_len] += 1
        return acc

    def merge_accumulators(self, accs):
        out = self.create_accumulator()
        for acc in accs:
            for split, values in acc["splits"].items():
                s = out["splits"].setdefault(split, [0, 0, 0])
                for i, v in enumerate(values):
                    s[i] += v
            out["positives"] = [a + b for a, b in zip(out["positives"], acc["positives"])]
            out["lengths"].update(acc["lengths"])
        return out

    def extract_output(self, acc):
        splits = {name: {"requests": acc["splits"].get(name, [0, 0, 0])[0],
                         "targets": acc["splits"].get(name, [0, 0, 0])[1],
                         "records": acc["splits"].get(name, [0, 0, 0])[2]}
                  for name in ("train", "eval")}
        targets = sum(s["targets"] for s in splits.values())
        lengths = acc["lengths"]
        n = sum(lengths.values())
        return {
            "requests": sum(s["requests"] for s in splits.values()),
            "targets": targets,
            "records": sum(s["records"] for s in splits.values()),
            "splits": splits,
            "history_length": {
                "p50": _percentile(lengths, 0.5), "p90": _percentile(lengths, 0.9),
                "p99": _percentile(lengths, 0.99), "max": max(lengths) if lengths else 0,
                "mean": round(sum(k * v for k, v in lengths.items()) / n, 2) if n else 0.0},
            "label_rates": {t: round(p / targets, 6) if targets else 0.0
                            for t, p in zip(self.tasks, acc["positives"])},
        }
