"""Readers: raw log files (csv, jsonl, parquet, MovieLens, KuaiRand) mapped onto the raw schema.

`resolve_source(data_cfg, input_glob)` checks the input before the pipeline starts (the glob
matches files, every file is readable and of its format, every CSV header and Parquet schema
has the configured columns; `beam_jobs.inputs`) and returns a `SourceSpec`: how to read the
files (`ReadRawRows`), how to decode and map each row (`validate.RowParser`) and, for logs
without an author column, which item table to join authors from (`JoinAuthors`). Each CSV
file is mapped by its own header, so files may order their columns differently.

    format     files                         mapping
    csv        header line (or schema.columns) data.schema
    jsonl      one JSON object per line       data.schema
    parquet    records                        data.schema
    movielens  u.data (tab, no header) or     user, item, rating >= movielens_positive_rating
               ratings.csv (userId,movieId,..) -> label tasks[0]; author = first genre (u.item)
    kuairand   log_standard_*.csv (header)    user_id, video_id, time_ms; is_click, is_like,
                                              long_view, ... by task name (KUAIRAND_LABELS);
                                              author_id joined from kuairand_video_features

Text files are read as bytes (in batches of lines, `textfiles.ReadLineBatches`; item tables
with Beam's ReadFromText and a bytes coder), so a line that is not UTF-8 fails alone (as a
dead letter) instead of failing the read.

Example:
    spec = resolve_source(cfg.data, "data/ml-100k/u.data")
    batches = pipeline | ReadRawRows(spec)       # lists of (source file, raw line bytes)
"""
from __future__ import annotations

import dataclasses
import posixpath
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.coders import BytesCoder
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from beam_jobs import blocks, inputs, textfiles
from beam_jobs.validate import (AUTHOR, ITEM, FieldMap, RowError, RowFormat, decode_row,
                                parse_id)
from core.config import ConfigError, DataConfig
from core.errors import DataError

# KuaiRand label columns by task name; a task whose name is a column is used as is.
KUAIRAND_LABELS = {"click": "is_click", "like": "is_like", "follow": "is_follow",
                   "comment": "is_comment", "forward": "is_forward", "hate": "is_hate",
                   "finish": "long_view", "profile_enter": "is_profile_enter"}
MOVIELENS_ITEM_COLUMNS = ("movie_id", "title", "release_date", "video_release_date", "url",
                          *(f"genre_{i}" for i in range(19)))


@dataclass(frozen=True)
class ItemTable:
    """A file of item metadata giving each item its author.

    author_column names the author column; empty means MovieLens u.item, where the author
    is 1 + the index of the item's first genre flag (0: no genre).
    """
    glob: str
    fmt: RowFormat
    item_column: str
    author_column: str
    skip_header_lines: int


@dataclass(frozen=True)
class SourceSpec:
    format: str
    input_glob: str
    files: tuple[str, ...]
    row_format: RowFormat
    fields: FieldMap
    skip_header_lines: int = 0
    item_table: ItemTable | None = None


def _require_columns(columns: tuple[str, ...], fields: FieldMap, where: str) -> None:
    needed = [("data.schema.user_id", fields.user_id), ("data.schema.timestamp",
              fields.timestamp), ("data.schema.item_id", fields.item_id)]
    if fields.request_id:
        needed.append(("data.schema.request_id", fields.request_id))
    needed += [("data.schema.tasks", column) for _, column in fields.labels]
    for key, column in needed:
        if column not in columns:
            raise ConfigError(f"{key}: column {column!r} is not in {where} "
                              f"(columns: {', '.join(columns)})")


def _csv_headers(files: list[str], delimiter: str, what: str, data: DataConfig,
                 fields: FieldMap | None = None):
    """Reads every file's header (and checks it has the fields' columns).

    Returns:
      (the first file's columns, ((file, columns), ...) for RowFormat.file_columns).
      Empty files are skipped: they hold no rows.
    """
    file_columns = []
    for path in files:
        columns = inputs.csv_header(path, delimiter, what, data.max_row_bytes)
        if columns is None:
            continue
        if fields is not None:
            _require_columns(columns, fields, f"the header of {path}")
        file_columns.append((path, columns))
    if not file_columns:
        raise DataError(f"{what}: every matched file is empty ({len(files)} files)")
    return file_columns[0][1], tuple(file_columns)


def _schema_fields(data: DataConfig) -> FieldMap:
    s = data.schema
    return FieldMap(user_id=s.user_id, request_id=s.request_id, timestamp=s.timestamp,
                    item_id=s.item_id, author_id=s.author_id,
                    labels=tuple((t, t) for t in s.tasks), timestamp_unit=s.timestamp_unit,
                    request_window_s=s.request_window_s)


def _generic(data: DataConfig, pattern: str, files: list[str]) -> SourceSpec:
    fields = _schema_fields(data)
    if data.format == "csv" and data.schema.columns:
        columns = tuple(data.schema.columns)
        _require_columns(columns, fields, "data.schema.columns")
        inputs.check_text_files(files, "--input")
        fmt = RowFormat("csv", columns, data.schema.csv_delimiter, data.max_row_bytes)
        return SourceSpec("csv", pattern, tuple(files), fmt, fields)
    if data.format == "csv":
        delimiter = data.schema.csv_delimiter
        columns, file_columns = _csv_headers(files, delimiter, "--input", data, fields)
        fmt = RowFormat("csv", columns, delimiter, data.max_row_bytes,
                        file_columns=file_columns)
        return SourceSpec("csv", pattern, tuple(files), fmt, fields, skip_header_lines=1)
    if data.format == "jsonl":
        inputs.check_text_files(files, "--input")
    else:   # Parquet: the schema of every file, so a missing column fails before the run
        for path in files:
            _require_columns(inputs.parquet_columns(path, "--input"), fields,
                             f"the schema of {path}")
    kind = "json" if data.format == "jsonl" else "record"
    return SourceSpec(data.format, pattern, tuple(files),
                      RowFormat(kind, max_row_bytes=data.max_row_bytes), fields)


def _movielens(data: DataConfig, pattern: str, files: list[str]) -> SourceSpec:
    tasks = data.schema.tasks
    if len(tasks) != 1:
        raise ConfigError(f"data.schema.tasks: {tasks!r} is invalid for data.format="
                          "'movielens'; it has one label (rating >= "
                          "data.movielens_positive_rating), e.g. data.schema.tasks=[like]")
    first = inputs.head(files[0], "--input")
    inputs.check_text(files[0], first, "--input")
    if first.startswith(b"userId"):       # ratings.csv of the larger MovieLens releases
        columns, delimiter, skip = ("userId", "movieId", "rating", "timestamp"), ",", 1
    else:                                  # u.data of MovieLens 100K
        columns, delimiter, skip = ("user", "item", "rating", "timestamp"), "\t", 0
    fields = FieldMap(user_id=columns[0], request_id="", timestamp="timestamp",
                      item_id=columns[1], author_id="", labels=((tasks[0], "rating"),),
                      timestamp_unit="s", request_window_s=data.movielens_request_window_s,
                      label_threshold=float(data.movielens_positive_rating))
    file_columns = ()
    if skip:
        _, file_columns = _csv_headers(files, delimiter, "--input", data, fields)
    else:
        inputs.check_text_files(files, "--input")
    items_glob = data.movielens_items
    if not items_glob and skip == 0:
        beside = posixpath.join(posixpath.dirname(files[0]), "u.item")
        items_glob = beside if FileSystems.exists(beside) else ""
    table = None
    if items_glob:
        items_glob, item_files = inputs.match_files(items_glob, "data.movielens_items")
        inputs.check_text_files(item_files, "data.movielens_items")
        table = ItemTable(items_glob, RowFormat("csv", MOVIELENS_ITEM_COLUMNS, "|",
                                                data.max_row_bytes, "latin-1"),
                          "movie_id", "", skip_header_lines=0)
    return SourceSpec("movielens", pattern, tuple(files),
                      RowFormat("csv", columns, delimiter, data.max_row_bytes,
                                file_columns=file_columns), fields,
                      skip_header_lines=skip, item_table=table)


def _kuairand(data: DataConfig, pattern: str, files: list[str]) -> SourceSpec:
    columns, file_columns = _csv_headers(files, ",", "--input", data)
    labels = []
    for task in data.schema.tasks:
        column = task if task in columns else KUAIRAND_LABELS.get(task, task)
        if column not in columns:
            raise ConfigError(f"data.schema.tasks: task {task!r} has no KuaiRand label "
                              f"column in {files[0]}; use a column name or one of "
                              f"{', '.join(sorted(KUAIRAND_LABELS))}")
        labels.append((task, column))
    fields = FieldMap(user_id="user_id", request_id="", timestamp="time_ms",
                      item_id="video_id", author_id="", labels=tuple(labels),
                      timestamp_unit="ms", request_window_s=data.kuairand_request_window_s)
    for path, file_cols in file_columns:
        _require_columns(file_cols, fields, f"the header of {path}")
    table = None
    if data.kuairand_video_features:
        what = "data.kuairand_video_features"
        features_glob, features = inputs.match_files(data.kuairand_video_features, what)
        _, feature_files = _csv_headers(features, ",", what, data)
        for path, feature_columns in feature_files:
            for column in ("video_id", "author_id"):
                if column not in feature_columns:
                    raise ConfigError(f"{what}: {path} has no {column!r} column (columns: "
                                      f"{', '.join(feature_columns)})")
        table = ItemTable(features_glob,
                          RowFormat("csv", feature_files[0][1], ",", data.max_row_bytes,
                                    file_columns=feature_files),
                          "video_id", "author_id", skip_header_lines=1)
    return SourceSpec("kuairand", pattern, tuple(files),
                      RowFormat("csv", columns, ",", data.max_row_bytes,
                                file_columns=file_columns), fields,
                      skip_header_lines=1, item_table=table)


def resolve_source(data: DataConfig, input_glob: str) -> SourceSpec:
    """Checks the input and returns how to read and map it.

    Args:
      data: the data section (format, schema, reader options).
      input_glob: file pattern of the raw logs (local, gs://, s3://).

    Returns:
      A `SourceSpec`.

    Raises:
      ConfigError: a configured column is missing, or the tasks do not fit the format; the
        message names the field and what is allowed.
      DataError: nothing matches, or a file is unreadable, empty where a header is due,
        compressed without its extension or binary (beam_jobs.inputs).

    Example:
        spec = resolve_source(load_config(None, ["data.format=kuairand"]).data, "log*.csv")
    """
    pattern, files = inputs.match_files(input_glob, "--input")
    build = {"movielens": _movielens, "kuairand": _kuairand}.get(data.format, _generic)
    spec = build(data, pattern, files)
    min_ms, max_ms = data.timestamp_range_ms()
    return dataclasses.replace(spec, fields=dataclasses.replace(
        spec.fields, min_ts_ms=min_ms, max_ts_ms=max_ms))


def _read_text(pattern: str, skip_header_lines: int):
    return beam.io.ReadFromTextWithFilename(pattern, coder=BytesCoder(),
                                            skip_header_lines=skip_header_lines)


class ReadRawRows(beam.PTransform):
    """SourceSpec -> PCollection of batches (lists) of (source file, payload): line bytes,
    or a Parquet dict; at most blocks.BATCH_ROWS per batch."""

    def __init__(self, spec: SourceSpec):
        super().__init__()
        self.spec = spec

    def expand(self, pbegin):
        if self.spec.row_format.kind == "record":
            return (pbegin
                    | "Pattern" >> beam.Create([self.spec.input_glob])
                    | "ReadParquet" >> beam.io.ReadAllFromParquet(with_filename=True)
                    | "Batch" >> beam.BatchElements(min_batch_size=blocks.BATCH_ROWS,
                                                    max_batch_size=blocks.BATCH_ROWS))
        return pbegin | "ReadText" >> textfiles.ReadLineBatches(
            self.spec.input_glob, self.spec.skip_header_lines, blocks.BATCH_ROWS)


class ItemAuthorParser:
    """(source, line) of an item table -> (item_id, author_id); raises RowError."""

    def __init__(self, table: ItemTable):
        self.table = table

    def __call__(self, element) -> tuple[int, int]:
        row = decode_row(element[1], self.table.fmt, element[0])
        item = parse_id(row[self.table.item_column], self.table.item_column)
        if self.table.author_column:
            value = row[self.table.author_column]
            if value in (None, ""):
                raise RowError("missing_field", f"column {self.table.author_column!r} "
                                                "is empty")
            return item, parse_id(value, self.table.author_column)
        flags = [row[f"genre_{i}"].strip() for i in range(19)]
        return item, (flags.index("1") + 1 if "1" in flags else 0)


class ReadItemAuthors(beam.PTransform):
    """ItemTable -> (good (item_id, author_id) pairs, Beam dead letters)."""

    def __init__(self, table: ItemTable):
        super().__init__()
        self.table = table

    def expand(self, pbegin):
        lines = pbegin | "ReadItems" >> _read_text(self.table.glob, self.table.skip_header_lines)
        return lines | "ParseItem" >> beam.Map(
            ItemAuthorParser(self.table)).with_exception_handling()


def _by_item(block):
    """An impression block -> (item_id, (user_id, block of the rows of that item)) per item."""
    user, data = block
    events = blocks.events_of(data)
    for item, rows in blocks.to_blocks(events[:, ITEM], events):
        yield item, (user, rows)


def _attach_author(joined):
    """(item, {impressions, authors}) -> blocks with the item's author (min if several)."""
    item, groups = joined
    authors = list(groups["authors"])
    if not authors:
        Metrics.counter("stca.preprocess", "items_without_author").inc()
    author = min(authors) if authors else 0
    for user, data in groups["impressions"]:
        events = blocks.events_of(data).copy()
        events[:, AUTHOR] = author
        yield user, events.tobytes()


class JoinAuthors(beam.PTransform):
    """Impression blocks + (item_id, author_id) pairs -> blocks with author_id filled in.

    A CoGroupByKey on item_id, not a side input: the item table of KuaiRand-27K (millions of
    videos) would not fit in every worker's memory as a side-input dict, while the shuffle
    scales with the data. For small tables (KuaiRand-Pure, MovieLens) a side input would
    save that shuffle; one code path is kept for both.
    """

    def __init__(self, item_authors):
        super().__init__()
        self.item_authors = item_authors

    def expand(self, impressions):
        by_item = impressions | "KeyByItem" >> beam.FlatMap(_by_item)
        return ({"impressions": by_item, "authors": self.item_authors}
                | "JoinOnItem" >> beam.CoGroupByKey()
                | "AttachAuthor" >> beam.FlatMap(_attach_author))
