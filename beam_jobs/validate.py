"""Row -> impression, or a dead letter with the reason.

`RowParser` holds the rules: every raw row (a line of CSV / JSON lines, or a Parquet record)
either gives one impression keyed by user or raises `RowError`. The Beam job applies them a
batch of rows at a time (beam_jobs/blocks.py, same results row by row); a row that raises
becomes a dead letter (`dead_letter`, `dead_letter_json`), as under Beam's
`with_exception_handling()`, and never stops good rows.

An impression:

    (user_id, (request_id, ts_ms, item_id, author_id, action))

All IDs are int64 from `core.idhash.stable_id`; `action` is the bitmask of positive
labels (bit i = task i, docs/CONTRACTS.md).

Example:
    parse = RowParser(RowFormat("csv", columns=("user_id", ...)), fields)
    user, (request, ts_ms, item, author, action) = parse(("file.csv", b"u1,r1,..."))
"""
from __future__ import annotations

import base64
import csv
import datetime
import json
import math
import traceback
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from core.idhash import IdError, stable_id

# Positions inside the impression value tuple.
REQUEST, TS, ITEM, AUTHOR, ACTION = range(5)
DEAD_LETTER_ROW_BYTES = 4096   # longer rows are cut to this many bytes in the dead letter
MAX_INT64 = (1 << 63) - 1


class RowError(ValueError):
    """A raw row is malformed. `code` is a stable kind (e.g. bad_timestamp) for counters."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code

    def __repr__(self) -> str:
        # Beam's dead-letter output carries repr(exception); make that the plain reason.
        return str(self)

    def __reduce__(self):
        code, message = str(self).split(": ", 1)
        return RowError, (code, message)


@dataclass(frozen=True)
class FieldMap:
    """Which raw columns hold the raw schema's fields (docs/data.md, "Raw schema").

    labels: (task, column) pairs in task order. label_threshold: None means a label must be
    0 or 1; a number means label = (value >= threshold) (MovieLens ratings).
    An empty request_id derives requests from (user, floor(ts / request_window_s)).
    min_ts_ms, max_ts_ms: the plausible time range (data.min_timestamp, data.max_timestamp);
    the default is every int64 millisecond value, so the records can always hold it.
    """
    user_id: str
    request_id: str
    timestamp: str
    item_id: str
    author_id: str
    labels: tuple[tuple[str, str], ...]
    timestamp_unit: str = "s"
    request_window_s: int = 0
    label_threshold: float | None = None
    min_ts_ms: int = 0
    max_ts_ms: int = MAX_INT64


@dataclass(frozen=True)
class RowFormat:
    """How one raw element is decoded: kind csv | json | record (already a dict: Parquet).

    file_columns: (file, columns) pairs read from each CSV file's own header before the run;
    files may order their columns differently. Empty: every file has `columns`.
    """
    kind: str
    columns: tuple[str, ...] = ()
    delimiter: str = ","
    max_row_bytes: int = 1 << 20
    encoding: str = "utf-8"
    file_columns: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @cached_property
    def _columns_by_file(self) -> dict:
        return dict(self.file_columns)

    def columns_of(self, source: str) -> tuple[str, ...]:
        """The CSV columns of rows from file `source`; RowError for a file never checked."""
        if not self.file_columns:
            return self.columns
        columns = self._columns_by_file.get(source)
        if columns is None:    # e.g. a file that matched the glob after the header check
            raise RowError("unchecked_file", f"{source} was not among the files whose header "
                                             "was checked before the run")
        return columns


def decode_row(payload: Any, fmt: RowFormat, source: str = "") -> dict:
    """Raw element payload (from file `source`) -> dict column -> value, or RowError."""
    if fmt.kind == "record":
        if not isinstance(payload, dict):
            raise RowError("bad_record", f"expected a record, got {type(payload).__name__}")
        return payload
    if len(payload) > fmt.max_row_bytes:
        raise RowError("row_too_long", f"row has {len(payload)} bytes, more than "
                                       f"data.max_row_bytes ({fmt.max_row_bytes})")
    try:
        text = payload.decode(fmt.encoding) if isinstance(payload, bytes) else payload
    except UnicodeDecodeError as e:
        raise RowError("invalid_utf8", f"row is not valid {fmt.encoding}: {e.reason} "
                                       f"at byte {e.start}") from None
    # A BOM starts a file; one inside a file is where another file was concatenated in.
    text = text.rstrip("\r\n").lstrip("\ufeff")
    if not text.strip():
        raise RowError("empty_row", "empty line")
    if fmt.kind == "json":
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            raise RowError("bad_json", f"not a JSON object: {e.msg} at column {e.colno}") from None
        except ValueError as e:   # e.g. an integer of more than 4300 digits
            raise RowError("bad_json", f"not a JSON object: {str(e)[:120]}") from None
        if not isinstance(row, dict):
            raise RowError("bad_json", f"expected a JSON object, got {type(row).__name__}")
        return row
    columns = fmt.columns_of(source)
    try:
        values = next(csv.reader([text], delimiter=fmt.delimiter))
    except csv.Error as e:         # e.g. a field over csv's 128 KiB field limit
        raise RowError("bad_csv", f"not a CSV row: {e}") from None
    if len(values) != len(columns):
        raise RowError("column_count", f"expected {len(columns)} columns "
                                       f"({fmt.delimiter.join(columns)}), got {len(values)}")
    return dict(zip(columns, values))


def _required(value: Any, column: str, role: str) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RowError("missing_field", f"required field {role} (column {column!r}) "
                                        "is missing or empty")
    return value


def _number(value: Any, column: str, code: str) -> float:
    if isinstance(value, bool):
        raise RowError(code, f"column {column!r}: {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RowError(code, f"column {column!r}: {str(value)[:80]!r} is not a number") from None
    if not math.isfinite(number):
        raise RowError(code, f"column {column!r}: {value!r} is not finite")
    return number


def parse_id(value: Any, column: str) -> int:
    """A raw ID -> int64 via core.idhash.stable_id; RowError naming the column."""
    try:
        return stable_id(value)
    except IdError as e:
        raise RowError("bad_id", f"column {column!r}: {e}") from None


def _label(value: Any, column: str, threshold: float | None) -> int:
    if threshold is not None:
        return int(_number(value, column, "bad_label") >= threshold)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        value = value.strip()
    if value in (0, 1, "0", "1", "0.0", "1.0"):
        return int(float(value))
    raise RowError("bad_label", f"label column {column!r} must be 0 or 1, got "
                                f"{str(value)[:80]!r}")


def _utc(ms: int) -> str:
    try:
        return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, ValueError, OSError):
        return "beyond year 9999"


def timestamp_ms(value: Any, column: str, unit: str, min_ms: int = 0,
                 max_ms: int = MAX_INT64) -> int:
    """A raw timestamp (number or numeric text, unit s or ms) -> int Unix milliseconds.

    Args:
      value: the raw value; column: its column (for the reason); unit: "s" or "ms".
      min_ms, max_ms: the plausible range; values outside raise RowError
        ("implausible_timestamp"). Python ints are exact, so nothing overflows here and
        nothing outside int64 reaches the records.

    Example:
        timestamp_ms("1600000000", "ts", "s")  # 1600000000000
    """
    if isinstance(value, int) and not isinstance(value, bool):
        ms = value * 1000 if unit == "s" else value
    else:
        number = _number(value, column, "bad_timestamp")
        ms = round(number * 1000) if unit == "s" else round(number)
    if ms < 0:
        raise RowError("bad_timestamp", f"column {column!r}: {value!r} is negative")
    if not min_ms <= ms <= max_ms:
        hint = ""
        if unit == "s" and min_ms <= ms // 1000 <= max_ms:
            hint = "; milliseconds in a seconds log? see data.schema.timestamp_unit"
        elif unit == "ms" and min_ms <= ms * 1000 <= max_ms:
            hint = "; seconds in a millisecond log? see data.schema.timestamp_unit"
        raise RowError("implausible_timestamp", f"column {column!r}: {str(value)[:40]!r} "
                       f"({unit}) is {_utc(ms)}, outside the plausible range {_utc(min_ms)} "
                       f"to {_utc(max_ms)} (data.min_timestamp, data.max_timestamp){hint}")
    return int(ms)


class RowParser:
    """Callable: (source, payload) -> (user_id, (request_id, ts_ms, item, author, action)).

    Args:
      fmt: how to decode the payload (CSV columns, JSON, record).
      fields: which columns hold the raw schema's fields.

    Raises:
      RowError for every malformed row (the reason names the column and the problem).

    The per-field methods (raw value -> int, or RowError) are the rules of each field; the
    batch parser (beam_jobs.blocks) applies the same methods to the values of a column.
    """

    def __init__(self, fmt: RowFormat, fields: FieldMap):
        self.fmt = fmt
        self.fields = fields

    def user_id(self, value: Any) -> int:
        column = self.fields.user_id
        return parse_id(_required(value, column, "user_id"), column)

    def timestamp(self, value: Any) -> int:
        f = self.fields
        return timestamp_ms(_required(value, f.timestamp, "timestamp"), f.timestamp,
                            f.timestamp_unit, f.min_ts_ms, f.max_ts_ms)

    def item_id(self, value: Any) -> int:
        column = self.fields.item_id
        return parse_id(_required(value, column, "item_id"), column)

    def author_id(self, value: Any) -> int:
        """The optional author: 0 when the column is not configured, absent or empty."""
        column = self.fields.author_id
        return parse_id(value, column) if column and value not in (None, "") else 0

    def label(self, bit: int, value: Any) -> int:
        task, column = self.fields.labels[bit]
        return _label(_required(value, column, f"label {task!r}"), column,
                      self.fields.label_threshold)

    def request_id(self, value: Any) -> int:
        """The logged request ID (only when fields.request_id names a column)."""
        column = self.fields.request_id
        return parse_id(_required(value, column, "request_id"), column)

    def __call__(self, element: tuple[str, Any]) -> tuple[int, tuple]:
        source, payload = element
        row = decode_row(payload, self.fmt, source)
        f = self.fields
        user = self.user_id(row.get(f.user_id))
        ts = self.timestamp(row.get(f.timestamp))
        item = self.item_id(row.get(f.item_id))
        author = self.author_id(row.get(f.author_id))
        action = 0
        for bit, (_, column) in enumerate(f.labels):
            action |= self.label(bit, row.get(column)) << bit
        if f.request_id:
            request = self.request_id(row.get(f.request_id))
        else:
            request = derived_request_id(user, ts, f.request_window_s)
        return user, (request, ts, item, author, action)


def derived_request_id(user_id: int, ts_ms: int, window_s: int) -> int:
    """Request ID of a log without one: stable_id('<user_id>/<window index>')."""
    return stable_id(f"{user_id}/{ts_ms // (window_s * 1000)}")


def dead_letter_json(failed: tuple, max_row_bytes: int = DEAD_LETTER_ROW_BYTES) -> str:
    """A `with_exception_handling` dead letter -> one JSON line.

    Args:
      failed: (element, (exc_type, exc_repr, traceback_lines)) as Beam emits it, where
        element = (source, payload).

    Returns:
      '{"reason": ..., "source": ..., "row": ...}'; "row_base64" instead of "row" when the
      row is not UTF-8; rows longer than `max_row_bytes` are cut ("row_bytes" keeps the size).
    """
    (source, payload), (exc_type, exc_repr, _) = failed
    reason = exc_repr if exc_type is RowError else f"internal_error: {exc_repr}"
    letter: dict[str, Any] = {"reason": reason, "source": source}
    if isinstance(payload, dict):
        letter["row"] = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
                         for k, v in payload.items()}
        return json.dumps(letter, sort_keys=True)
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if len(payload) > max_row_bytes:
        letter["row_bytes"] = len(payload)
        payload = payload[:max_row_bytes]
    try:
        letter["row"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        letter["row_base64"] = base64.b64encode(payload).decode("ascii")
    return json.dumps(letter, sort_keys=True)


def dead_letter(element: tuple[str, Any], error: Exception) -> tuple:
    """The dead letter Beam's `with_exception_handling` makes of `element` failing with
    `error`: (element, (exception type, repr, traceback lines))."""
    return element, (type(error), repr(error),
                     traceback.format_exception(type(error), error, error.__traceback__))


def reason_code(failed: tuple) -> str:
    """The RowError code of a Beam dead letter ('internal_error' for anything else)."""
    exc_type, exc_repr, _ = failed[1]
    return exc_repr.split(":", 1)[0] if exc_type is RowError else "internal_error"
