"""Raw rows in batches -> impression blocks (the parse stage of the Beam job).

An impression block holds one user's impressions from one batch of raw rows:

    (user_id, bytes of an [n, 5] int64 array of rows (request_id, ts_ms, item, author, action))

Blocks stand in for one element per impression: every Beam stage costs microseconds per
element, more than the parsing itself once that is batched, and the bytes of an int64 array
shuffle without pickling. The history builder groups a user's blocks (`concat`).

`ParseRows` parses a batch of raw rows (beam.BatchElements) with the rules of
`validate.RowParser`. Plain CSV rows, the common case, are parsed column by column: each
distinct value of a column is converted once, by the RowParser's method for that field.
Every other row (JSON, Parquet records, CSV rows csv.reader might split otherwise than
str.split, and any row a column rejects) goes through the RowParser itself, so a bad row
becomes a dead letter with exactly the RowParser's reason, in the form Beam's
`with_exception_handling` gives it (`validate.dead_letter`).

Example:
    users, events, dead = parse_batch(RowParser(fmt, fields), [("a.csv", b"u1,r1,..."), ...])
    for user, data in to_blocks(users, events):
        events_of(data)   # [n, 5] int64
"""
from __future__ import annotations

import codecs
import csv
import re
from collections import defaultdict
from typing import Any, Callable, Iterable, Iterator, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from beam_jobs.validate import REQUEST, TS, RowError, RowParser, dead_letter, derived_request_id

DEAD = "dead"              # tag of the dead-letter output of ParseRows
BATCH_ROWS = 4096          # raw rows per batch: per-batch numpy work amortised, memory small
ROW_BYTES = 5 * 8          # one impression row in a block
# A line with none of these is split by csv.reader exactly as by str.split(delimiter): no
# quoting, no line breaks, no NUL; a BOM is stripped by decode_row (validate.py).
_NOT_PLAIN = re.compile('["\r\n\x00\ufeff]')
_NOT_PLAIN_LINES = re.compile('["\r\x00\ufeff]')   # the same in lines joined by "\n"


def events_of(data: bytes) -> np.ndarray:
    """The [n, 5] int64 rows of a block's bytes (a read-only view)."""
    return np.frombuffer(data, dtype=np.int64).reshape(-1, 5)


def concat(user_blocks: Iterable[bytes]) -> np.ndarray:
    """All rows of a user's blocks (the GroupByKey output) as one [n, 5] array."""
    return events_of(b"".join(user_blocks))


def rows(block: tuple[int, bytes]) -> int:
    return len(block[1]) // ROW_BYTES


def to_blocks(users: np.ndarray, events: np.ndarray) -> Iterator[tuple[int, bytes]]:
    """[n] users and their [n, 5] rows -> one block per user (rows keep their order)."""
    if not len(users):
        return
    order = np.argsort(users, kind="stable")
    users, events = users[order], events[order]
    bounds = (np.flatnonzero(users[1:] != users[:-1]) + 1).tolist()
    for start, end in zip([0, *bounds], [*bounds, len(users)]):
        yield int(users[start]), events[start:end].tobytes()


def request_times(block: tuple[int, bytes]) -> Iterator[tuple[int, tuple[int, int]]]:
    """(user, (request_id, earliest ts_ms in the block)) for each request of a block.

    What stats.EvalCutoff reads of the impressions: its minimum per (user, request) over
    these pairs is the minimum over the impressions, from one element per request.
    """
    user, data = block
    events = events_of(data)
    order = np.lexsort((events[:, TS], events[:, REQUEST]))
    requests, ts = events[order, REQUEST], events[order, TS]
    first = np.r_[True, requests[1:] != requests[:-1]]
    for request, earliest in zip(requests[first].tolist(), ts[first].tolist()):
        yield user, (request, earliest)


def _texts(payloads: Sequence[Any], encoding: str, limit: int) -> list[str | None]:
    """Each payload as text, or None: not bytes, `limit` bytes or longer, not in `encoding`
    or holding a character of _NOT_PLAIN."""
    # The common case, a batch of plain lines of a UTF-8 / Latin-1 file, in one decode:
    # joined with b"\n" (in no line), a line is invalid exactly where the batch is.
    if (codecs.lookup(encoding).name in ("utf-8", "iso8859-1", "ascii")
            and all(type(p) is bytes for p in payloads)
            and max(map(len, payloads), default=0) < limit):
        joined = b"\n".join(payloads)
        try:
            text = joined.decode(encoding)
        except UnicodeDecodeError:
            text = None
        if (text is not None and joined.count(b"\n") == len(payloads) - 1
                and not _NOT_PLAIN_LINES.search(text)):
            return text.split("\n")
    texts: list[str | None] = []
    for payload in payloads:
        text = None
        if isinstance(payload, bytes) and len(payload) < limit:
            try:
                text = payload.decode(encoding)
            except UnicodeDecodeError:
                pass
        texts.append(None if text is None or _NOT_PLAIN.search(text) else text)
    return texts


def _plain_fields(parser: RowParser, source: str,
                  payloads: Sequence[Any]) -> list[list[str] | None]:
    """The CSV fields of each plain row of one file, None for every other row."""
    fmt = parser.fmt
    try:
        n_columns = len(fmt.columns_of(source))
    except RowError:
        return [None] * len(payloads)
    # Shorter than csv's field limit: no field can exceed it (bytes >= characters).
    limit = min(fmt.max_row_bytes + 1, csv.field_size_limit())
    rows = [None if text is None else text.split(fmt.delimiter)
            for text in _texts(payloads, fmt.encoding, limit)]
    return [row if row is not None and len(row) == n_columns else None for row in rows]


_POW10 = 10 ** np.arange(20, dtype=np.uint64)


def _digits(values: Sequence[Any], max_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """(ints, mask): the value of each string of 1..max_digits (<= 18) ASCII digits, mask
    True; 0 and False for every other value."""
    n = len(values)
    text = np.asarray(values)
    if text.dtype.kind != "U" or n == 0:            # e.g. None for an absent column
        return np.zeros(n, np.int64), np.zeros(n, bool)
    width = min(text.dtype.itemsize // 4, max_digits + 1)
    codes = text.view(np.uint32).reshape(n, -1)[:, :width]
    digit = codes - np.uint32(48)                   # other characters wrap to >= 10
    is_digit = digit < 10
    length = np.count_nonzero(codes, axis=1)        # NUL never occurs: 0 is padding
    plain = (length >= 1) & (length <= max_digits) & (
        np.count_nonzero(is_digit, axis=1) == length)
    if not plain.any():
        return np.zeros(n, np.int64), plain
    # Read as `width` digits (padding as 0, < 10**19 fits uint64), then drop the padding.
    padded = (np.where(is_digit, digit, 0).astype(np.uint64) * _POW10[width - 1::-1]).sum(axis=1)
    ints = (padded // _POW10[width - length]).astype(np.int64)
    return np.where(plain, ints, 0), plain


def _convert(values: Sequence[Any], convert: Callable[[Any], int], ok: np.ndarray,
             fast: Callable[[Sequence[Any]], tuple[np.ndarray, np.ndarray]] | None = None
             ) -> np.ndarray:
    """convert() of every value; clears `ok` where it raised.

    `fast(values)` -> (ints, mask) is convert()'s result where mask is True, vectorized;
    convert() runs once per distinct other value.
    """
    n = len(values)
    out, done = fast(values) if fast else (np.zeros(n, np.int64), np.zeros(n, bool))
    if done.all():
        return out
    rest = np.flatnonzero(~done)
    pending = values if len(rest) == n else [values[i] for i in rest.tolist()]
    results = {}
    for value in set(pending):
        try:
            results[value] = convert(value)
        except Exception:  # noqa: BLE001  (the RowParser reports it for the row)
            results[value] = None
    column = [results[value] for value in pending]
    if None in results.values():
        failed = np.fromiter((r is None for r in column), bool, len(column))
        ok[rest] &= ~failed
        column = [0 if r is None else r for r in column]
    out[rest] = column
    return out


def _parse_plain(parser: RowParser, columns: Sequence[str],
                 rows_fields: list[list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain CSV rows of one file -> (users, [n, 5] events, ok): rows a field rejected
    have ok False and are left to the RowParser."""
    f = parser.fields
    n = len(rows_fields)
    by_column = list(zip(*rows_fields))
    index = {c: i for i, c in enumerate(columns)}   # the last of equal names, as dict(zip)

    def column(name: str) -> Sequence[Any]:
        return by_column[index[name]] if name in index else (None,) * n

    def ids(values):                 # stable_id of up to 18 digits is their value
        return _digits(values, 18)

    def timestamps(values):          # exact in float64 below 2**53 ms
        ints, mask = _digits(values, 12 if f.timestamp_unit == "s" else 15)
        ms = ints * 1000 if f.timestamp_unit == "s" else ints
        mask &= (ms >= f.min_ts_ms) & (ms <= f.max_ts_ms)
        return np.where(mask, ms, 0), mask

    def labels(values):
        if f.label_threshold is None:
            ints, mask = _digits(values, 1)
            return ints, mask & (ints <= 1)
        ints, mask = _digits(values, 15)
        return (ints >= f.label_threshold).astype(np.int64), mask

    ok = np.ones(n, dtype=bool)
    users = _convert(column(f.user_id), parser.user_id, ok, ids)
    ts = _convert(column(f.timestamp), parser.timestamp, ok, timestamps)
    items = _convert(column(f.item_id), parser.item_id, ok, ids)
    # Not configured: 0, even if the file has a column named "" (e.g. a pandas index).
    authors = (_convert(column(f.author_id), parser.author_id, ok, ids) if f.author_id
               else np.zeros(n, dtype=np.int64))
    actions = np.zeros(n, dtype=np.int64)
    for bit, (_, name) in enumerate(f.labels):
        actions |= _convert(column(name), lambda v, b=bit: parser.label(b, v), ok,
                            labels) << bit
    if f.request_id:
        requests = _convert(column(f.request_id), parser.request_id, ok, ids)
    elif f.request_window_s > 0:
        # derived_request_id depends on (user, ts // window) only: one call per pair.
        keys = list(zip(users.tolist(), (ts // (f.request_window_s * 1000)).tolist()))
        some_ts = dict(zip(keys, ts.tolist()))
        derived = {key: derived_request_id(key[0], t, f.request_window_s)
                   for key, t in some_ts.items()}
        requests = np.array([derived[key] for key in keys], dtype=np.int64)
    else:                          # not a valid config; the RowParser reports each row
        requests = np.zeros(n, dtype=np.int64)
        ok[:] = False
    return users, np.stack([requests, ts, items, authors, actions], axis=1), ok


def parse_batch(parser: RowParser,
                batch: Sequence[tuple[str, Any]]) -> tuple[np.ndarray, np.ndarray, list]:
    """A batch of raw elements (source, payload) -> (users [n], events [n, 5], dead letters).

    Good rows give exactly what `parser` returns for them; bad rows give the dead letters
    of the exceptions it raises, in batch order.
    """
    users, events, rest = [], [], []
    fmt = parser.fmt
    if fmt.kind == "csv" and len(fmt.delimiter) == 1:
        by_source = defaultdict(list)
        for i, (source, _) in enumerate(batch):
            by_source[source].append(i)
        for source, positions in by_source.items():
            fields = _plain_fields(parser, source, [batch[i][1] for i in positions])
            plain = [i for i, row in zip(positions, fields) if row is not None]
            rest += [i for i, row in zip(positions, fields) if row is None]
            if plain:
                u, e, ok = _parse_plain(parser, parser.fmt.columns_of(source),
                                        [row for row in fields if row is not None])
                users.append(u[ok])
                events.append(e[ok])
                rest += [plain[i] for i in np.flatnonzero(~ok).tolist()]
    else:
        rest = list(range(len(batch)))
    dead, slow_users, slow_events = [], [], []
    for i in sorted(rest):
        try:
            user, value = parser(batch[i])
        except Exception as error:  # noqa: BLE001  (as with_exception_handling)
            dead.append(dead_letter(batch[i], error))
            continue
        slow_users.append(user)
        slow_events.append(value)
    users.append(np.array(slow_users, dtype=np.int64))
    events.append(np.array(slow_events, dtype=np.int64).reshape(-1, 5))
    return np.concatenate(users), np.concatenate(events), dead


class ParseRows(beam.DoFn):
    """Batches of (source, payload) -> impression blocks; dead letters tagged DEAD.

    Args:
      fmt, fields: as `validate.RowParser`.
    """

    def __init__(self, fmt, fields):
        self.parser = RowParser(fmt, fields)
        self.rows_ok = Metrics.counter("stca.preprocess", "rows_ok")

    def process(self, batch):
        users, events, dead = parse_batch(self.parser, batch)
        self.rows_ok.inc(len(users))
        yield from to_blocks(users, events)
        for letter in dead:
            yield beam.pvalue.TaggedOutput(DEAD, letter)
