"""In-pipeline aggregates: the time cutoff of the eval split and OUT/stats.json.

Eval cutoff. The latest `eval_fraction` of requests (by request timestamp) go to eval. The
cutoff is computed in the pipeline with two small global combines over request timestamps:
min/max, then a fixed-size histogram (`CUTOFF_BINS` bins between them); the cutoff is the
lower edge of the latest bin at which the requests from that edge on reach the fraction.
So eval holds at least `eval_fraction` of requests and at most one bin (1/65536 of the time
range) more, every eval request is later than every train request, and, unlike
`ApproximateQuantiles`, the result is exact integer arithmetic that does not depend on
bundle order, which keeps reruns byte-identical.

Stats. `StatsFn` combines one tuple per request (records.request_stats) into requests,
targets and records per split, label rates per task and exact history-length percentiles
(from a histogram of lengths, at most max_history + 1 entries).

Example:
    cutoff = impressions | EvalCutoff(0.1)            # singleton PCollection, Unix ms
    summary = per_request | beam.CombineGlobally(StatsFn(tasks))
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import apache_beam as beam

CUTOFF_BINS = 1 << 16
NO_EVAL = (1 << 63) - 1          # cutoff when eval_fraction == 0 or there is no data


class MinMaxFn(beam.CombineFn):
    """Global (min, max) of ints; None for an empty input."""

    def create_accumulator(self):
        return None

    def add_input(self, acc, value):
        return (value, value) if acc is None else (min(acc[0], value), max(acc[1], value))

    def merge_accumulators(self, accs):
        accs = [a for a in accs if a is not None]
        if not accs:
            return None
        return min(a[0] for a in accs), max(a[1] for a in accs)

    def extract_output(self, acc):
        return acc


def _bin_width(bounds) -> int:
    low, high = bounds
    return max(1, -(-(high - low + 1) // CUTOFF_BINS))


def cutoff_from_histogram(bin_counts: Sequence[tuple[int, int]], bounds,
                          eval_fraction: float) -> int:
    """(bin, count) pairs -> the eval cutoff in ms (requests with ts >= cutoff go to eval)."""
    total = sum(c for _, c in bin_counts)
    if bounds is None or total == 0 or eval_fraction <= 0:
        return NO_EVAL
    need = eval_fraction * total
    seen = 0
    for b, count in sorted(bin_counts, reverse=True):
        seen += count
        if seen >= need:
            return bounds[0] + b * _bin_width(bounds)
    return bounds[0]


class EvalCutoff(beam.PTransform):
    """Impressions (user, (request, ts_ms, ...)) -> singleton PCollection: cutoff in Unix ms."""

    def __init__(self, eval_fraction: float):
        super().__init__()
        self.eval_fraction = eval_fraction

    def expand(self, impressions):
        request_ts = (
            impressions
            | "RequestKey" >> beam.Map(lambda kv: ((kv[0], kv[1][0]), kv[1][1]))
            | "EarliestTs" >> beam.CombinePerKey(min)
            | "Timestamps" >> beam.Values())
        bounds = request_ts | "MinMax" >> beam.CombineGlobally(MinMaxFn())
        bins = (
            request_ts
            | "Bin" >> beam.Map(lambda ts, b: (ts - b[0]) // _bin_width(b),
                                beam.pvalue.AsSingleton(bounds))
            | "CountPerBin" >> beam.combiners.Count.PerElement()
            | "AllBins" >> beam.combiners.ToList())
        return bins | "Cutoff" >> beam.Map(cutoff_from_histogram,
                                           beam.pvalue.AsSingleton(bounds), self.eval_fraction)


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
