"""tf.train.Example bytes of int64-list features, written straight in the protobuf wire format.

A request's record holds thousands of history values. Building it as a tf.train.Example
proto costs a Python int per value and copies every list several times, which made proto
construction the largest cost of the Beam job. This module writes the bytes directly:

    Example   { Features features = 1; }
    Features  { map<string, Feature> feature = 1; }        map entry: key = 1, value = 2
    Feature   { Int64List int64_list = 3; }
    Int64List { repeated int64 value = 1 [packed = true]; }

`example` orders the features by name, as `SerializeToString(deterministic=True)` orders map
keys, so its bytes equal that serialization of the same proto
(tests/core/test_example_writer.py); any protobuf parser reads them.

A varint encodes one value on its own, so the varints of a column are written once and any
contiguous run of its values is a byte slice of them (`Varints.span`): the Beam job encodes
each user's events once and slices every request's history out of them.

Example:
    items = Varints([5, 4, 3])
    data = example([("hist_item_id", items.span(0, 2)), ("user_id", varint(7))])
    tf.train.Example.FromString(data)   # hist_item_id: [5, 4], user_id: [7]
"""
from __future__ import annotations

import functools
import numbers
from typing import Iterable, Sequence

import numpy as np

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_SHIFTS = np.arange(0, 64, 7, dtype=np.uint64)           # 10 groups of 7 bits cover 64
_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


def _uvarint(n: int) -> bytes:
    """Varint of a non-negative int below 2**64 (lengths, and int64 as two's complement)."""
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def varint(value: int) -> bytes:
    """The packed payload of one int64 value (ValueError outside int64, as protobuf)."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"Value out of range: {value}")
    return _uvarint(value & 0xFFFF_FFFF_FFFF_FFFF)


def int64_array(values: Sequence[int] | np.ndarray) -> np.ndarray:
    """Values as a 1-D int64 array; TypeError for non-integers, ValueError outside int64
    (what tf.train.Int64List raises for them)."""
    array = np.asarray(values)
    if array.size == 0:
        return np.zeros(0, np.int64)
    if array.ndim != 1:
        raise TypeError(f"expected a flat sequence of integers, got shape {array.shape}")
    if array.dtype.kind == "u" and array.max() > INT64_MAX:
        raise ValueError(f"Value out of range: {array.max()}")
    if array.dtype.kind == "O":      # e.g. Python ints beyond 64 bits, None, mixed types
        values = array.tolist()
        wrong = [v for v in values if not isinstance(v, numbers.Integral)]
        if wrong:
            raise TypeError(f"expected integers, got {wrong[0]!r}")
        for value in values:
            varint(int(value))       # ValueError outside int64
        return np.array([int(v) for v in values], np.int64)
    if array.dtype.kind not in "iub":
        raise TypeError(f"expected integers, got values of dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


class Varints:
    """The varints of a column of int64 values, with the byte offset of every value.

    Args:
      values: int64 values (any integer sequence or array; see `int64_array`).

    Example:
        v = Varints([1, 300, -1]);  v.span(1, 3)   # 300 and -1: 2 + 10 bytes
    """

    def __init__(self, values: Sequence[int] | np.ndarray):
        u = int64_array(values).view(np.uint64)
        groups = u[:, None] >> _SHIFTS                       # [n, 10]
        length = np.maximum(np.count_nonzero(groups, axis=1), 1)
        position = np.arange(len(_SHIFTS))
        more = (position < (length - 1)[:, None]).astype(np.uint8) << 7   # continuation
        data = (groups & 0x7F).astype(np.uint8) | more
        self.data = data[position < length[:, None]].tobytes()  # row-major: value order
        self.offsets = np.concatenate([[0], np.cumsum(length)]).tolist()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def span(self, start: int, stop: int) -> bytes:
        """The packed payload of values[start:stop]."""
        return self.data[self.offsets[start]:self.offsets[stop]]


@functools.lru_cache(maxsize=1 << 16)
def _entry_head(name: str, size: int) -> bytes:
    """Everything of a features map entry before its payload of `size` bytes: the entry's
    tag and length, its key, and the Feature / Int64List headers. Depends on the name and
    the size only, so it is cached (a record has a dozen entries)."""
    values = b"\x0a" + _uvarint(size) if size else b""
    feature = b"\x1a" + _uvarint(len(values) + size) + values
    key = name.encode("utf-8")
    entry = b"\x0a" + _uvarint(len(key)) + key + b"\x12" + _uvarint(len(feature) + size)
    return b"\x0a" + _uvarint(len(entry) + len(feature) + size) + entry + feature


def example(features: Iterable[tuple[str, bytes]]) -> bytes:
    """Serialized tf.train.Example of int64-list features.

    Args:
      features: (name, packed payload) pairs: `varint(x)` for a scalar, `Varints(...).data`
        or a `span` of it for a list; b"" is an empty list. Names must be distinct.

    Returns:
      The bytes of tf.train.Example(features=...).SerializeToString(deterministic=True).
    """
    parts: list[bytes] = []
    size = 0
    for name, payload in sorted(features):
        head = _entry_head(name, len(payload))
        parts += (head, payload)          # payloads are copied once, by the join
        size += len(head) + len(payload)
    return b"".join([b"\x0a", _uvarint(size), *parts])
