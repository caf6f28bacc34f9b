"""Text files -> batches of lines: the raw rows of CSV and JSON-lines inputs.

`ReadLineBatches(pattern)` gives the lines `beam.io.ReadFromTextWithFilename(pattern,
coder=BytesCoder())` gives, as (file, line bytes) pairs, but `batch_rows` of them per
element. Beam's text source costs several microseconds per line (a range claim, a
timestamp, an element handed to the next stage), more than parsing the line once parsing
is batched (beam_jobs/blocks.py), and the parser wants batches anyway.

Lines are those of ReadFromText: separated by "\\n" or "\\r\\n", without the separator; a
last line without one is kept as it is; the first `skip_header_lines` lines of every file
are skipped. Files are matched when the pipeline runs and read by Beam's FileSystems
(local, gs://, s3://; .gz / .bz2 decompressed by extension). An uncompressed file is read
in byte ranges of RANGE_BYTES, spread over the workers; a line belongs to the range that
holds its first byte. A compressed file is read whole.

Example:
    batches = pipeline | ReadLineBatches("logs/*.csv", skip_header_lines=1)
    # [("logs/a.csv", b"u1,r1,..."), ...], up to batch_rows pairs per element
"""
from __future__ import annotations

from typing import BinaryIO, Iterator

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

RANGE_BYTES = 64 << 20


def file_ranges(pattern: str) -> Iterator[tuple[str, int, int | None]]:
    """(file, start, end) byte ranges of the files matching `pattern`; end None: to the end
    (a compressed file, which cannot be read from the middle)."""
    for match in FileSystems.match([pattern])[0].metadata_list:
        if CompressionTypes.detect_compression_type(match.path) != CompressionTypes.UNCOMPRESSED:
            yield match.path, 0, None
            continue
        for start in range(0, match.size_in_bytes, RANGE_BYTES):
            yield match.path, start, min(start + RANGE_BYTES, match.size_in_bytes)


def _line(raw: bytes) -> bytes:
    """A line without its "\\n" or "\\r\\n" (a last line without "\\n" is kept whole)."""
    if raw.endswith(b"\n"):
        return raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    return raw


def _first_line_start(f: BinaryIO, start: int, skip_header_lines: int) -> int | None:
    """Offset of the first line of the range that starts at `start`, with `f` (opened at
    the start of the file) left there; None when no line starts in the range. As in
    ReadFromText, every range skips the header (the file's first lines); a file that ends
    within them has no lines."""
    header_end = 0
    for _ in range(skip_header_lines):
        raw = f.readline()
        if not raw.endswith(b"\n"):
            return None
        header_end += len(raw)
    if start <= header_end:
        f.seek(header_end)
        return header_end
    f.seek(start - 1)            # the line holding byte start - 1 belongs to the range before
    raw = f.readline()
    if not raw.endswith(b"\n"):
        return None
    return start - 1 + len(raw)


def read_range(element: tuple[str, int, int | None], skip_header_lines: int,
               batch_rows: int) -> Iterator[list[tuple[str, bytes]]]:
    """The lines that start in one byte range of a file, `batch_rows` per list."""
    path, start, end = element
    with FileSystems.open(path) as f:
        position = _first_line_start(f, start, skip_header_lines)
        if position is None:
            return
        batch: list[tuple[str, bytes]] = []
        while end is None or position < end:
            raw = f.readline()
            if not raw:
                break
            position += len(raw)
            batch.append((path, _line(raw)))
            if len(batch) == batch_rows:
                yield batch
                batch = []
        if batch:
            yield batch


class ReadLineBatches(beam.PTransform):
    """File pattern -> PCollection of lists of (file, line bytes).

    Args:
      pattern: file path or glob (local, gs://, s3://).
      skip_header_lines: lines skipped at the start of every file.
      batch_rows: lines per element (the last batch of a range may be shorter).
    """

    def __init__(self, pattern: str, skip_header_lines: int = 0, batch_rows: int = 4096):
        super().__init__()
        self.pattern = pattern
        self.skip_header_lines = skip_header_lines
        self.batch_rows = batch_rows

    def expand(self, pbegin):
        return (pbegin
                | "Pattern" >> beam.Create([self.pattern])
                | "Ranges" >> beam.FlatMap(file_ranges)
                | "Spread" >> beam.Reshuffle()
                | "Read" >> beam.FlatMap(read_range, self.skip_header_lines, self.batch_rows))
