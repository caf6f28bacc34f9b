"""Checks of the raw input files before the pipeline starts: one clear error, never a traceback.

Every matched file is opened and its first bytes are read through Beam's FileSystems (local,
gs://, s3://; `.gz` / `.bz2` are decompressed by extension), so a file the job could not
read fails here, naming the file, instead of failing the pipeline half-way:

    problem                                           error (core.errors)
    the pattern matches no file                       DataError: --input: ... matched no files
    a directory, or a file that cannot be opened/read DataError: --input: cannot read FILE: ...
    compressed data without its extension             DataError: ... holds gzip data ... *.gz
    binary data in a text format (NUL bytes, Parquet) DataError: ... is not a text file ...
    a CSV header that is not UTF-8 or names a column  DataError
      twice; a file that is not Parquet
A configured column missing from a header or a Parquet schema is a ConfigError, raised by
`beam_jobs.readers` with the field name. Row-level problems never raise: they become dead
letters (`beam_jobs.validate`).

Compressed inputs are also checked whole, inside the pipeline and in parallel with the read
(`check_stream`): Beam's reader takes a truncated `.gz` / `.bz2` file (a partial upload or
copy) as a shorter file and silently drops the rest, so each compressed file is decompressed
to its end marker; a file that stops early or is corrupt becomes a dead letter
(`truncated_file` / `corrupt_file`) and fails the run after the pipeline (`preprocess.run`).

Example:
    pattern, files = match_files("logs/*.csv", "--input")
    columns = csv_header(files[0], ",", "--input", max_bytes=1 << 20)
"""
from __future__ import annotations

import bz2
import csv
import os
import zlib

import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_jobs.validate import RowError
from core.errors import DataError

# First bytes of formats that are not text; name -> (magic, what to do about it).
_MAGIC = (
    (b"\x1f\x8b", "gzip data", "name it *.gz so it is decompressed"),
    (b"BZh", "bzip2 data", "name it *.bz2 so it is decompressed"),
    (b"\x28\xb5\x2f\xfd", "zstandard data", "decompress it first"),
    (b"\xfd7zXZ\x00", "xz data", "decompress it first"),
    (b"PK\x03\x04", "a zip archive", "unpack it first"),
    (b"PAR1", "Parquet data", "use --format parquet"),
)
HEAD_BYTES = 64 << 10      # bytes read from each file to tell text from binary


def match_files(pattern: str, what: str) -> tuple[str, list[str]]:
    """Expands a file pattern (local, gs://, s3://).

    Args:
      pattern: file path or glob.
      what: the flag or config field it came from, for messages (e.g. "--input").

    Returns:
      (pattern as the job reads it, sorted matching files). A local glob without a
      directory ("*.csv") gets "./", which Beam's matcher needs to list the current directory.

    Raises:
      DataError: the pattern cannot be listed or matches nothing.
    """
    if "://" not in pattern and not os.path.dirname(pattern):
        pattern = os.path.join(".", pattern)
    try:
        files = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    except Exception as e:  # noqa: BLE001  (Beam raises BeamIOError or ValueError)
        raise DataError(f"{what}: cannot list {pattern!r}: {_reason(e)}") from None
    if not files:
        raise DataError(f"{what}: the pattern {pattern!r} matched no files")
    return pattern, files


def _reason(e: Exception) -> str:
    """One line for an I/O exception (Beam wraps the real one in BeamIOError.exception_details)."""
    details = getattr(e, "exception_details", None)
    if isinstance(details, dict) and details:
        e = next(iter(details.values()))
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def head(path: str, what: str, size: int = HEAD_BYTES) -> bytes:
    """The first `size` bytes of a file (decompressed by extension); DataError if unreadable."""
    if "://" not in path and os.path.isdir(path):
        raise DataError(f"{what}: {path} is a directory; give a pattern of files, e.g. "
                        f"'{os.path.join(path, '*.csv')}'")
    try:
        with FileSystems.open(path) as f:
            return f.read(size)
    except Exception as e:  # noqa: BLE001  (any failure to open or read: the file is unreadable)
        raise DataError(f"{what}: cannot read {path}: {_reason(e)}") from None


def check_text(path: str, data: bytes, what: str) -> None:
    """DataError when the first bytes of a text input are compressed or binary data."""
    for magic, kind, remedy in _MAGIC:
        if data.startswith(magic) and (kind != "bzip2 data" or data[4:10] == b"1AY&SY"):
            raise DataError(f"{what}: {path} holds {kind}, not text; {remedy}")
    if b"\x00" in data:
        utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
        raise DataError(f"{what}: {path} is not a text file (it has NUL bytes"
                        + ("; it looks like UTF-16: convert it to UTF-8)" if utf16 else ")"))


def csv_header(path: str, delimiter: str, what: str, max_bytes: int,
               encoding: str = "utf-8") -> tuple[str, ...] | None:
    """The column names of a CSV file's first line; None for an empty file.

    Raises:
      DataError: unreadable or binary file, a header longer than `max_bytes` or not in
        `encoding`, or a column named twice.
    """
    data = head(path, what, max(HEAD_BYTES, max_bytes + 1))
    check_text(path, data, what)
    if not data:
        return None
    line, newline, _ = data.partition(b"\n")
    if not newline and len(data) > max_bytes:
        raise DataError(f"{what}: {path} has no header line in its first {max_bytes} bytes "
                        "(data.max_row_bytes)")
    try:
        text = line.decode(encoding).lstrip("\ufeff").rstrip("\r")
    except UnicodeDecodeError as e:
        raise DataError(f"{what}: the header of {path} is not {encoding} text ({e.reason} at "
                        f"byte {e.start})") from None
    columns = tuple(c.strip() for c in next(csv.reader([text], delimiter=delimiter), []))
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise DataError(f"{what}: the header of {path} names column(s) {', '.join(twice)} "
                        "more than once")
    return columns


def parquet_columns(path: str, what: str) -> tuple[str, ...]:
    """The column names of a Parquet file's schema; DataError if it is not readable Parquet."""
    if head(path, what, 4) != b"PAR1":
        raise DataError(f"{what}: {path} is not a Parquet file (no PAR1 magic)")
    try:
        with FileSystems.open(path) as f:
            return tuple(pq.read_schema(f).names)
    except Exception as e:  # noqa: BLE001  (pyarrow raises ArrowInvalid, OSError, ...)
        raise DataError(f"{what}: cannot read the Parquet schema of {path}: "
                        f"{_reason(e)}") from None


def check_text_files(files: list[str], what: str) -> None:
    """Every file is readable text (header-less CSV, JSON lines); DataError naming the first
    that is not."""
    for path in files:
        check_text(path, head(path, what), what)


# Compressed files whose stream check_stream verifies: extension -> decompressor factory.
_DECOMPRESSORS = {".gz": lambda: zlib.decompressobj(zlib.MAX_WBITS | 16),
                  ".bz2": bz2.BZ2Decompressor}


def compressed(files) -> list[str]:
    """The files check_stream can verify (by extension, as Beam decompresses them)."""
    return [f for f in files if f.endswith(tuple(_DECOMPRESSORS))]


def check_stream(element: tuple[str, bytes]) -> None:
    """Decompresses a whole .gz / .bz2 file; RowError when it is truncated or corrupt.

    Args:
      element: (path, b"") so that a failure is a dead letter naming the file as its source.

    Example:
        files | beam.Map(check_stream).with_exception_handling()
    """
    path = element[0]
    new = _DECOMPRESSORS[next(e for e in _DECOMPRESSORS if path.endswith(e))]
    decompressor, ended = new(), False
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            while chunk := f.read(1 << 20):
                while chunk:
                    if ended:            # another member follows (concatenated .gz files)
                        decompressor, ended = new(), False
                    decompressor.decompress(chunk)
                    ended = decompressor.eof
                    chunk = decompressor.unused_data if ended else b""
    except (OSError, EOFError, zlib.error) as e:
        raise RowError("corrupt_file", f"{path} cannot be decompressed: {e}") from None
    if not ended:
        raise RowError("truncated_file", f"{path} ends before the end of its compressed stream "
                                         "(a partial upload or copy?); the rows after the cut "
                                         "would be missing")
