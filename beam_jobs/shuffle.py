"""ShuffleRecords: the records of every user spread over the output in a random, reproducible
order (docs/data.md, "Record order: users are mixed").

Records of one user leave the history builder one after another; written as they come, a
shard would be sorted by user and a training shuffle buffer would hold a few users. Each
record gets a bucket from a CRC32 of its bytes (deterministic). There is a bucket per
SHUFFLE_WINDOW valid rows, an upper bound on the records known before they are built (so
records are keyed as they leave the builder, not held back to be counted first), so a
bucket holds at most about one window of records (at most MAX_SHUFFLE_BUCKETS buckets, for
parallelism). Every bucket is a random sample of all users and is emitted in a seeded
random order, in windows of bounded size: the order is mixed whatever order the runner
emits buckets in (the DirectRunner: first seen), and memory stays bounded on any runner.
Output order never changes what a record holds.

The records cross the shuffle packed: each bucket's records of a bundle as one zstd frame
(`PackRecords`). A user's records repeat each other's histories, so a pack is ~10x smaller
than its records (zstd level 1, ~500 MB/s), and the runner copies every shuffled byte
several times (~450 MB of records for 200k events). Packs keep the records' order, so the
output is the same as when records are shuffled one by one.

Example:
    buckets = n_valid_rows | beam.Map(shuffle_buckets)
    mixed = records | ShuffleRecords(buckets)
"""
from __future__ import annotations

import random
import zlib
from collections import defaultdict
from typing import Iterable, Iterator

import apache_beam as beam
import numpy as np
import zstandard
from apache_beam.transforms.window import GlobalWindows

SHUFFLE_WINDOW = 8192
MAX_SHUFFLE_BUCKETS = 4096
PACK_BYTES = 32 << 20      # record bytes a PackRecords holds before it sends its packs


def shuffle_buckets(records: int) -> int:
    return max(1, min(MAX_SHUFFLE_BUCKETS, -(-records // SHUFFLE_WINDOW)))


def pack(records: list[bytes]) -> bytes:
    """Records -> one zstd frame: count, lengths (uint64 little-endian), then the bytes."""
    head = np.array([len(records)] + [len(r) for r in records], dtype="<u8").tobytes()
    return zstandard.ZstdCompressor(level=1).compress(b"".join([head, *records]))


def unpack(packed: bytes) -> list[bytes]:
    data = zstandard.ZstdDecompressor().decompress(packed)
    count = int.from_bytes(data[:8], "little")
    ends = np.cumsum(np.frombuffer(data, dtype="<u8", count=count, offset=8)) + 8 * (count + 1)
    starts = np.r_[8 * (count + 1), ends[:-1]].astype(np.int64)
    return [data[s:e] for s, e in zip(starts.tolist(), ends.tolist())]


class PackRecords(beam.DoFn):
    """Records -> (bucket, pack of that bucket's records), at most PACK_BYTES held."""

    def start_bundle(self):
        self._packs: dict[int, list[bytes]] = defaultdict(list)
        self._held = 0

    def process(self, data: bytes, buckets: int):
        self._packs[zlib.crc32(data) % buckets].append(data)
        self._held += len(data)
        if self._held >= PACK_BYTES:
            yield from self._flush()

    def finish_bundle(self):
        for keyed in self._flush():
            yield GlobalWindows.windowed_value_at_end_of_window(keyed)

    def _flush(self) -> Iterator[tuple[int, bytes]]:
        packs, self._packs, self._held = self._packs, defaultdict(list), 0
        for bucket, records in packs.items():
            yield bucket, pack(records)


def _shuffled(keyed: tuple[int, Iterable[bytes]]) -> Iterator[bytes]:
    bucket, packs = keyed
    rng = random.Random(bucket)
    window: list[bytes] = []
    for packed in packs:
        for data in unpack(packed):
            window.append(data)
            if len(window) == SHUFFLE_WINDOW:
                rng.shuffle(window)
                yield from window
                window = []
    rng.shuffle(window)
    yield from window


class ShuffleRecords(beam.PTransform):
    """Records -> the same records, users mixed.

    Args:
      buckets: singleton PCollection, the number of buckets (`shuffle_buckets`).
    """

    def __init__(self, buckets):
        super().__init__()
        self.buckets = buckets

    def expand(self, records):
        return (records
                | "Pack" >> beam.ParDo(PackRecords(), beam.pvalue.AsSingleton(self.buckets))
                | "Group" >> beam.GroupByKey()
                | "Emit" >> beam.FlatMap(_shuffled))
