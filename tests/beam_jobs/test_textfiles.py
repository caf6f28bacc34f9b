"""Batches of lines hold exactly the lines Beam's ReadFromTextWithFilename reads."""
import gzip

import apache_beam as beam
import pytest
from apache_beam.coders import BytesCoder
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs import textfiles

pytestmark = pytest.mark.slow  # both tests run Beam pipelines (DirectRunner)

FILES = {
    "plain.csv": b"h1,h2\na,b\n\nc,d\r\ne\rf,g\n" + b"x" * 50 + b"\nlast",
    "crlf.csv": b"h\r\n1\r\n2\r\n\r\n3\r\n",
    "header_only.csv": b"h1,h2",            # no newline: ReadFromText keeps it as a line
    "header_nl.csv": b"h1,h2\n",
    "empty.csv": b"",
    "blank_lines.csv": b"\n\n\n",
    "cr_end.csv": b"h\nrow\r",
}


@pytest.fixture
def files(tmp_path):
    for name, data in FILES.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "packed.csv.gz").write_bytes(gzip.compress(FILES["plain.csv"]))
    return tmp_path


_READ: list = []        # filled by the in-process DirectRunner


def _keep(line):
    _READ.append(line)


def _reference(pattern, skip):
    """What Beam's own text reader reads."""
    _READ.clear()
    with test_pipeline.TestPipeline() as p:
        lines = p | beam.io.ReadFromTextWithFilename(pattern, coder=BytesCoder(),
                                                      skip_header_lines=skip)
        lines | beam.Map(_keep)
    return sorted(_READ)


@pytest.mark.parametrize("skip", [0, 1, 2])
def test_every_range_size_reads_the_lines_of_read_from_text(files, monkeypatch, skip):
    pattern = str(files / "*")
    expected = _reference(pattern, skip)
    assert len(expected) > 10
    for size in (1, 2, 3, 5, 8, 13, 40, 1 << 20):
        monkeypatch.setattr(textfiles, "RANGE_BYTES", size)
        got = [line for element in textfiles.file_ranges(pattern)
               for batch in textfiles.read_range(element, skip, 3) for line in batch]
        assert sorted(got) == expected, size


def test_the_transform_gives_batches_of_at_most_batch_rows(files, monkeypatch):
    monkeypatch.setattr(textfiles, "RANGE_BYTES", 7)
    pattern = str(files / "*")
    expected = _reference(pattern, 1)
    with test_pipeline.TestPipeline() as p:
        batches = p | textfiles.ReadLineBatches(pattern, skip_header_lines=1, batch_rows=2)
        assert_that(batches | beam.Map(len) | beam.combiners.Top.Largest(1),
                    equal_to([[2]]), label="size")
        assert_that(batches | beam.FlatMap(lambda b: b), equal_to(expected))
