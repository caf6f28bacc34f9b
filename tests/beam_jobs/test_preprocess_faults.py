"""Fault injection for `stca preprocess`: bad rows and bad files
through the real Beam job, each run with an accounting check.

Every run starts from a tiny synthetic log (3 users, ~440 rows) plus the faults of its
kind, and checks: every good row is a target of the records (same user, request, item,
author, labels) and nothing else is; every request's timestamp and every history event come
from good rows; every bad row is in OUT/errors/errors-* with its reason code; stats.json
counts agree. File-level faults must fail before the pipeline with one clear UserError
(DataError exit 3, OutputError exit 4, ConfigError exit 2) and leave OUT untouched.

Corpus: 98 kinds (57 bad rows in CSV / JSON lines / Parquet, 10 odd but valid rows, 13
bad files, 18 scenarios: directories, permissions, --out, multi-file headers, splits,
reruns, duplicates, truncated / corrupt .gz) plus 4 bad config values. Measured on the
previous code (git archive of HEAD, the same corpus): 55 handled or a clear error, 21
silent loss or corruption, 20 crashed with a traceback, 2 dead-lettered as internal_error;
now all 98 are handled (dead letter with its own reason, or a valid row under its
normalised ID) or a clear one-line error, and no previous output is lost.

  crash   a timestamp of 1e300 / 99999999999999999999 (CSV), 10**30 / 1e300 / 2**63 (JSON
          lines), 1e300 (Parquet): OverflowError in BuildRecords, the whole job failed;
          gzip / bzip2 / zip / Parquet data or UTF-16 text in a .csv, a header not UTF-8:
          UnicodeDecodeError; a corrupt .gz, a non-Parquet or truncated .parquet, a
          directory, an unreadable file, --out a file (after the pipeline ran): tracebacks
  silent  timestamp 0, milliseconds in a seconds log, 1971, 2103 accepted (the split then
          emptied train); an in-range outlier or one request: train empty, exit 0; a
          second CSV file with another column order mapped by the first file's header, one
          missing a column: all its rows dead letters, exit 0; a header naming a column
          twice; a BOM before a user id (mid-file, CSV or Parquet) made another user, and
          made a JSON line bad_json; exact duplicates kept and not counted; a header-only
          CSV, gzip data in a .jsonl, a Parquet file without a schema column: exit 0 with 0
          records; a failed rerun destroyed the previous output; a truncated .gz lost the
          rows after the cut (exit 0)
  reason  a 5000-digit JSON number and a CSV field over 128 KiB: internal_error
  clear   binary data / an over-long first line / only empty files: a ConfigError naming a
          missing column (misleading); '*.csv' without a directory: "matched no files"
  now     dead letters with their own reason (implausible_timestamp, bad_json, bad_csv,
          truncated_file), DataError / OutputError / ConfigError before the run, DataError
          after a run with a truncated input or no train / eval records (outputs kept)
"""
import base64
import bz2
import collections
import csv
import glob
import gzip
import json
import os
import subprocess
import sys
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beam_jobs import inputs, preprocess, readers, records
from core import config as C
from pipeline import synth
from core.errors import DataError, OutputError
from core.idhash import stable_id
from tests.helpers.env import REPO, subprocess_env
from tests.helpers.records import parse_all, read_records

pytestmark = pytest.mark.slow
TASKS = ["click", "like", "finish"]
COLUMNS = ["user_id", "request_id", "timestamp", "item_id", "author_id", "category",
           "duration", "click", "like", "finish"]
T0 = 1_600_000_000                  # a plausible time (2020-09-13) in seconds
SYNTH = ["synth.users=3", "synth.events_median=120", "synth.events_min=100"]


def _cfg(*overrides):
    return C.load_config(None, SYNTH + ["data.num_shards=1", *overrides])


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """Rows (dicts of strings) of a tiny synthetic CSV log, all valid."""
    root = tmp_path_factory.mktemp("good")
    synth.run(_cfg(), str(root))
    rows = []
    for path in sorted(glob.glob(str(root / "*.csv"))):
        with open(path, newline="") as f:
            rows += list(csv.DictReader(f))
    assert 300 < len(rows) < 700
    return rows


def line(row: dict, columns=COLUMNS) -> bytes:
    return ",".join(str(row[c]) for c in columns).encode("utf-8")


def row(**values) -> dict:
    """A valid row of a user no good row has; override fields to break it."""
    base = dict(user_id="u-bad", request_id="r-bad", timestamp=T0, item_id=5, author_id=1,
                category=3, duration=1.0, click=0, like=1, finish=0)
    return dict(base, **values)


def write(path, lines, header=COLUMNS) -> None:
    body = [",".join(header).encode()] if header else []
    path.write_bytes(b"\n".join(body + list(lines)) + b"\n")


# ------------------------------------------------------------------- the accounting check
def _key(r: dict) -> tuple:
    return (stable_id(r["user_id"]), stable_id(r["request_id"]), stable_id(r["item_id"]),
            stable_id(r["author_id"]), tuple(int(float(r[t])) for t in TASKS))


def _ms(r: dict) -> int:
    return round(float(r["timestamp"]) * 1000)


def _letter_row(letter: dict):
    if isinstance(letter.get("row"), dict):
        return json.dumps(letter["row"], sort_keys=True)
    if "row" in letter:
        return letter["row"].encode("utf-8")
    return base64.b64decode(letter["row_base64"])


def _bad_row(raw):
    return json.dumps(raw, sort_keys=True) if isinstance(raw, dict) else raw[:4096]


def dead_letters(out) -> list[dict]:
    files = glob.glob(os.path.join(str(out), "errors", "errors-*"))
    assert len(files) == 1
    with open(files[0], encoding="utf-8") as f:
        return [json.loads(text) for text in f]


def account(out, stats, good_rows, bad, duplicates=0):
    """good rows in == targets out; each bad row in errors-* with its reason; nothing else.

    Args:
      good_rows: dict rows that must each be one target (duplicates excluded).
      bad: (raw line bytes or Parquet dict, reason code) per bad row.
      duplicates: rows that are exact duplicates of another row (dropped unless
        data.drop_duplicates=false, in which case good_rows lists them too).
    """
    recs = parse_all(read_records(str(out), "train") + read_records(str(out), "eval"), TASKS)
    got = collections.Counter(
        (r["user_id"], r["request_id"], item, author,
         tuple(r[f"label_{t}"][j] for t in TASKS))
        for r in recs for j, (item, author) in enumerate(zip(r["tgt_item_id"],
                                                             r["tgt_author_id"])))
    assert got == collections.Counter(_key(r) for r in good_rows)
    request_ts, user_ts = {}, collections.defaultdict(set)
    for r in good_rows:
        k = (stable_id(r["user_id"]), stable_id(r["request_id"]))
        request_ts[k] = min(request_ts.get(k, _ms(r)), _ms(r))
        user_ts[k[0]].add(_ms(r))
    assert {(r["user_id"], r["request_id"]): r["request_ts"] for r in recs} == request_ts
    assert all(set(r["hist_ts"]) <= user_ts[r["user_id"]] for r in recs)

    letters = dead_letters(out)
    assert collections.Counter((_letter_row(e), e["reason"].split(":")[0]) for e in letters) \
        == collections.Counter((_bad_row(raw), code) for raw, code in bad)
    assert stats["dead_letters"] == len(bad) and stats["targets"] == len(good_rows)
    assert stats["valid_rows"] == len(good_rows) + duplicates * stats["duplicates_dropped"]
    assert stats["duplicate_rows"] == duplicates
    return recs, letters


# ------------------------------------------------------------------------ bad rows: CSV
MAX_ROW = 150_000                  # above csv's 128 KiB field limit, so both can be hit
CSV_BAD = {  # kind -> (raw line, reason code)
    "timestamp 1e300": (line(row(timestamp="1e300")), "implausible_timestamp"),
    "timestamp 20 nines": (line(row(timestamp="99999999999999999999")),
                           "implausible_timestamp"),
    "timestamp 400 nines": (line(row(timestamp="9" * 400)), "bad_timestamp"),
    "timestamp 0": (line(row(timestamp=0)), "implausible_timestamp"),
    "milliseconds in a seconds log": (line(row(timestamp=T0 * 1000)), "implausible_timestamp"),
    "timestamp before 1990": (line(row(timestamp=86400)), "implausible_timestamp"),
    "timestamp after 2100": (line(row(timestamp=4_200_000_000)), "implausible_timestamp"),
    "negative timestamp": (line(row(timestamp=-5)), "bad_timestamp"),
    "timestamp nan": (line(row(timestamp="nan")), "bad_timestamp"),
    "timestamp inf": (line(row(timestamp="inf")), "bad_timestamp"),
    "timestamp text": (line(row(timestamp="noon")), "bad_timestamp"),
    "timestamp empty": (line(row(timestamp="")), "missing_field"),
    "user empty": (line(row(user_id="")), "missing_field"),
    "item blank": (line(row(item_id="   ")), "missing_field"),
    "request empty": (line(row(request_id="")), "missing_field"),
    "label 2": (line(row(click=2)), "bad_label"),
    "label 20 nines": (line(row(like="99999999999999999999")), "bad_label"),
    "label -1": (line(row(finish=-1)), "bad_label"),
    "label 1e300": (line(row(click="1e300")), "bad_label"),
    "label yes": (line(row(click="yes")), "bad_label"),
    "label empty": (line(row(like="")), "missing_field"),
    "too few columns": (b"u-bad,r-bad,1600000000,5,1,3,1.0,0,1", "column_count"),
    "too many columns": (line(row()) + b",extra", "column_count"),
    "unterminated quote": (b'u-bad,"r-bad,1600000000,5,1,3,1.0,0,1,0', "column_count"),
    "empty line": (b"", "empty_row"),
    "blank line": (b"   \t ", "empty_row"),
    "invalid UTF-8": (b"u-bad,r-bad,1600000000,5,1,3,1.0,0,1,\xc3\x28", "invalid_utf8"),
    "row too long": (line(row(category="x" * (MAX_ROW + 10))), "row_too_long"),
    "field over csv's limit": (line(row(category="x" * 140_000)), "bad_csv"),
    "header repeated mid-file": (",".join(COLUMNS).encode(), "bad_timestamp"),
    "BOM + header mid-file": ("\ufeff".encode() + ",".join(COLUMNS).encode(), "bad_timestamp"),
}


def csv_good_edges(good):
    """Valid rows that look odd: each must be a target, under the normalised identity."""
    u0, u1 = good[0]["user_id"], good[-1]["user_id"]
    return [
        (dict(row(request_id="r-bom", item_id=11), user_id="\ufeff" + u0), u0),   # BOM
        (dict(row(request_id="r-space", item_id=12), user_id=f"  {u1} "), u1),   # spaces
        (row(user_id="99999999999999999999", request_id="r-big", item_id=13), None),
        (row(request_id="r-neg", item_id=-5, author_id=-7), None),
        (row(request_id="r-frac", item_id=14, timestamp=f"{T0}.25"), None),
        (row(request_id="r-crlf", item_id=15), None),      # written with a Windows line end
    ]


def test_csv_bad_rows_are_dead_lettered_and_good_rows_all_kept(good, tmp_path):
    edges = csv_good_edges(good)
    lines = [line(r) for r in good]
    bad = list(CSV_BAD.values())
    for i, (raw, _) in enumerate(bad):                      # interleaved with good rows
        lines.insert(1 + i * (len(lines) // len(bad)), raw)
    lines += [line(r) for r, _ in edges]
    lines[-1] += b"\r"
    lines.append(line(good[7]))                              # an exact duplicate
    write(tmp_path / "log.csv", lines)
    cfg = _cfg(f"data.max_row_bytes={MAX_ROW}")
    stats = preprocess.run(cfg, str(tmp_path / "log.csv"), str(tmp_path / "out"))

    expected = list(good) + [dict(r, user_id=u) if u else r for r, u in edges]
    account(tmp_path / "out", stats, expected, bad, duplicates=1)
    users = {r["user_id"] for r in parse_all(read_records(str(tmp_path / "out"), "train")
                                             + read_records(str(tmp_path / "out"), "eval"))}
    # The BOM / space-padded users are synthetic users; new: "999..." and "u-bad".
    assert len(users) == len({r["user_id"] for r in good}) + 2
    assert stats["metrics"]["dead_letter.implausible_timestamp"] == 6
    assert stats["splits"]["train"]["requests"] > 0 and stats["splits"]["eval"]["requests"] > 0


def test_implausible_timestamp_reason_names_the_range_and_the_unit(good, tmp_path):
    write(tmp_path / "log.csv", [line(r) for r in good] + [line(row(timestamp=T0 * 1000))])
    preprocess.run(_cfg(), str(tmp_path / "log.csv"), str(tmp_path / "out"))
    (letter,) = dead_letters(tmp_path / "out")
    assert letter["reason"].startswith("implausible_timestamp: column 'timestamp'")
    assert "data.min_timestamp" in letter["reason"]
    assert "milliseconds in a seconds log" in letter["reason"]


def test_duplicates_are_counted_and_kept_when_configured(good, tmp_path):
    write(tmp_path / "log.csv", [line(r) for r in good] + [line(good[3]), line(good[3])])
    stats = preprocess.run(_cfg("data.drop_duplicates=false"), str(tmp_path / "log.csv"),
                           str(tmp_path / "out"))
    account(tmp_path / "out", stats, list(good) + [good[3], good[3]], [], duplicates=2)
    assert stats["duplicates_dropped"] is False


# ------------------------------------------------------------------ bad rows: JSON lines
def _json(r: dict, **values) -> bytes:
    obj = {"user_id": r["user_id"], "request_id": r["request_id"],
           "timestamp": int(r["timestamp"]), "item_id": int(r["item_id"]),
           "author_id": int(r["author_id"]),
           **{t: int(r[t]) for t in TASKS}}
    obj.update(values)
    return json.dumps(obj).encode()


JSON_BAD = {
    "timestamp 10**30": (dict(timestamp=10 ** 30), "implausible_timestamp"),
    "timestamp 1e300": (dict(timestamp=1e300), "implausible_timestamp"),
    "timestamp 2**63": (dict(timestamp=2 ** 63), "implausible_timestamp"),
    "timestamp true": (dict(timestamp=True), "bad_timestamp"),
    "timestamp list": (dict(timestamp=[T0]), "bad_timestamp"),
    "timestamp null": (dict(timestamp=None), "missing_field"),
    "timestamp -1": (dict(timestamp=-1), "bad_timestamp"),
    "user object": (dict(user_id={"id": 1}), "bad_id"),
    "user 1.5": (dict(user_id=1.5), "bad_id"),
    "user true": (dict(user_id=True), "bad_id"),
    "label 2**70": (dict(click=2 ** 70), "bad_label"),
    "label 1.5": (dict(like=1.5), "bad_label"),
    "label missing": (dict(finish=None), "missing_field"),
}


def test_jsonl_bad_rows(good, tmp_path):
    bad = [(_json(row(), **values), code) for values, code in JSON_BAD.values()]
    bad += [(b'{"user_id": "u-bad", "timestamp": ', "bad_json"), (b"[1, 2]", "bad_json"),
            (b'{"user_id": ' + b"9" * 5000 + b"}", "bad_json"),
            (_json(row()).replace(b'"timestamp": 1600000000', b'"timestamp": NaN'),
             "bad_timestamp")]
    bom, big, text = (row(request_id="r-bom", item_id=11, user_id=good[0]["user_id"]),
                      row(request_id="r-big", item_id=2 ** 70),
                      row(request_id="r-str", item_id=12, click=1, like=0, finish=1))
    lines = [_json(r) for r in good] + [raw for raw, _ in bad]
    lines += ["\ufeff".encode() + _json(bom), _json(big),          # BOM: a concatenated file
              _json(text, click="1", like=" 0", finish=True)]     # labels as text / bool
    (tmp_path / "log.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    stats = preprocess.run(_cfg("data.format=jsonl"), str(tmp_path / "*.jsonl"),
                           str(tmp_path / "out"))
    account(tmp_path / "out", stats, list(good) + [bom, big, text], bad)


# --------------------------------------------------------------------- bad rows: Parquet
def _record(r: dict, **values) -> dict:
    rec = {"user_id": r["user_id"], "request_id": r["request_id"],
           "timestamp": float(r["timestamp"]), "item_id": int(r["item_id"]),
           "author_id": int(r["author_id"]), **{t: int(r[t]) for t in TASKS}}
    rec.update(values)
    return rec


def test_parquet_bad_records(good, tmp_path):
    bad = [(_record(row(), **values), code) for values, code in [
        (dict(user_id=None), "missing_field"), (dict(item_id=None), "missing_field"),
        (dict(timestamp=1e300), "implausible_timestamp"), (dict(timestamp=0.0),
                                                          "implausible_timestamp"),
        (dict(timestamp=T0 * 1000.0), "implausible_timestamp"),
        (dict(timestamp=float("nan")), "bad_timestamp"),
        (dict(timestamp=-1.0), "bad_timestamp"), (dict(click=2), "bad_label"),
        (dict(like=-1), "bad_label")]]
    bom = row(request_id="r-bom", item_id=11, user_id=good[0]["user_id"])
    recs = [_record(r) for r in good] + [raw for raw, _ in bad]
    recs.append(_record(bom, user_id="\ufeff" + bom["user_id"]))
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "log.parquet")
    stats = preprocess.run(_cfg("data.format=parquet"), str(tmp_path / "*.parquet"),
                           str(tmp_path / "out"))
    # Rows compare as JSON text, so the NaN record matches its dead letter too.
    account(tmp_path / "out", stats, list(good) + [bom], bad)


def test_parquet_missing_a_schema_column_fails_before_the_run(good, tmp_path):
    recs = [_record(r) for r in good]
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "a.parquet")
    pq.write_table(pa.Table.from_pylist([{k: v for k, v in r.items() if k != "like"}
                                         for r in recs]), tmp_path / "b.parquet")
    with pytest.raises(C.ConfigError, match="data.schema.tasks: column 'like' is not in the "
                                            "schema of .*b.parquet"):
        preprocess.run(_cfg("data.format=parquet"), str(tmp_path / "*.parquet"),
                       str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("override,message", [
    ('data.min_timestamp="1990-13-01"', "data.min_timestamp: '1990-13-01' is invalid; it must "
                                        "be an ISO 8601 date"),
    ("data.min_timestamp=yesterday", "data.min_timestamp: 'yesterday' is invalid"),
    ("data.max_timestamp=1980-01-01", "data.max_timestamp: .* later than data.min_timestamp"),
    ("data.min_timestamp=1960-01-01", "data.min_timestamp: .* at or after 1970-01-01"),
])
def test_bad_plausible_range_config_is_refused_before_any_work(override, message):
    with pytest.raises(C.ConfigError, match=message):
        _cfg(override)


def test_plausible_range_config_parses_dates_times_and_offsets():
    assert _cfg().data.timestamp_range_ms() == (631_152_000_000, 4_102_444_800_000)
    data = _cfg("data.min_timestamp=2015-01-01T06:00:00+02:00", "data.max_timestamp=").data
    assert data.timestamp_range_ms() == (1_420_084_800_000, (1 << 63) - 1)


# ------------------------------------------------------------------ bad files: before the run
def _zip(data: bytes, path) -> bytes:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("log.csv", data)
    return path.read_bytes()


FILE_FAULTS = {  # kind -> (file name, function of the good CSV bytes or a recipe name,
    #                  format, message of the DataError)
    "binary data": ("log.csv", lambda csv_: bytes(range(256)) * 8, "csv", "not a text file"),
    "gzip without .gz (csv)": ("log.csv", gzip.compress, "csv", "holds gzip data.*name it "
                                                                  "\\*.gz"),
    "gzip without .gz (jsonl)": ("log.jsonl", gzip.compress, "jsonl", "holds gzip data"),
    "bzip2 without .bz2": ("log.csv", bz2.compress, "csv", "holds bzip2 data"),
    "zip archive": ("log.csv", "zip", "csv", "holds a zip archive"),
    "Parquet read as CSV": ("log.csv", "parquet", "csv", "holds Parquet data"),
    "UTF-16 CSV": ("log.csv", lambda c: c.decode().encode("utf-16"), "csv", "UTF-16"),
    "header not UTF-8": ("log.csv", lambda c: b"user_id\xff," + c, "csv",
                         "header of .* is not utf-8"),
    "column named twice": ("log.csv", lambda c: c.replace(b"category", b"click", 1), "csv",
                           "names column\\(s\\) click more than once"),
    "corrupt .gz": ("log.csv.gz", lambda c: b"\x1f\x8b" + c[:200], "csv", "cannot read"),
    "not Parquet": ("log.parquet", lambda c: c, "parquet", "is not a Parquet file"),
    "truncated Parquet": ("log.parquet", "parquet-cut", "parquet", "cannot read the Parquet"),
    "one line, no newline, over max_row_bytes": ("log.csv", lambda c: b"x" * 70_000, "csv",
                                                 "no header line in its first"),
}


@pytest.mark.parametrize("kind", sorted(FILE_FAULTS))
def test_bad_file_fails_before_the_run_with_one_clear_line(kind, good, tmp_path):
    name, make, fmt, message = FILE_FAULTS[kind]
    text = b"\n".join([",".join(COLUMNS).encode()] + [line(r) for r in good]) + b"\n"
    if make in ("parquet", "parquet-cut"):
        pq.write_table(pa.Table.from_pylist([_record(r) for r in good]), tmp_path / "p.pq")
        data = (tmp_path / "p.pq").read_bytes()
        data = data if make == "parquet" else data[:len(data) // 2]
    elif make == "zip":
        data = _zip(text, tmp_path / "z.zip")
    else:
        data = make(text)
    (tmp_path / name).write_bytes(data)
    cfg = _cfg(f"data.format={fmt}", "data.max_row_bytes=65536")
    with pytest.raises(DataError, match=message) as info:
        preprocess.run(cfg, str(tmp_path / name), str(tmp_path / "out"))
    assert "\n" not in str(info.value) and name in str(info.value)
    assert not (tmp_path / "out").exists()                 # nothing written, nothing started


def test_directory_unreadable_file_and_empty_files(good, tmp_path, monkeypatch):
    with pytest.raises(DataError, match="--input: the pattern .*nothing-\\*.csv' matched no"):
        preprocess.run(_cfg(), str(tmp_path / "nothing-*.csv"), str(tmp_path / "out"))
    (tmp_path / "logs").mkdir()
    with pytest.raises(DataError, match="logs is a directory; give a pattern of files"):
        preprocess.run(_cfg(), str(tmp_path / "logs"), str(tmp_path / "out"))
    (tmp_path / "logs" / "a.csv").write_bytes(b"")
    (tmp_path / "logs" / "b.csv").write_bytes(b"")
    with pytest.raises(DataError, match="every matched file is empty \\(2 files\\)"):
        preprocess.run(_cfg(), str(tmp_path / "logs" / "*.csv"), str(tmp_path / "out"))
    write(tmp_path / "logs" / "a.csv", [line(r) for r in good])
    from apache_beam.io.filesystems import FileSystems
    real_open = FileSystems.open

    def deny(path, *args, **kwargs):                         # tests run as root: chmod is moot
        if path.endswith("a.csv"):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(FileSystems, "open", staticmethod(deny))
    with pytest.raises(DataError, match="cannot read .*a.csv: PermissionError"):
        preprocess.run(_cfg(), str(tmp_path / "logs" / "*.csv"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_a_glob_without_a_directory_matches_the_current_directory(good, tmp_path,
                                                                  monkeypatch):
    write(tmp_path / "log.csv", [line(r) for r in good])
    monkeypatch.chdir(tmp_path)
    spec = readers.resolve_source(_cfg().data, "*.csv")
    assert spec.files == ("./log.csv",) and spec.input_glob == "./*.csv"


@pytest.mark.parametrize("out", ["file", "file/sub"])
def test_unwritable_out_fails_before_the_run(good, tmp_path, out):
    write(tmp_path / "log.csv", [line(r) for r in good])
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(OutputError, match="--out: cannot write to .*file"):
        preprocess.run(_cfg(), str(tmp_path / "log.csv"), str(tmp_path / out))
    assert (tmp_path / "file").read_text() == "not a directory"


# ------------------------------------------------------------- multi-file CSV header order
def test_each_csv_file_is_mapped_by_its_own_header(good, tmp_path):
    half = len(good) // 2
    write(tmp_path / "a.csv", [line(r) for r in good[:half]])
    swapped = ["item_id", "finish", "timestamp", "user_id", "click", "request_id", "like",
               "author_id", "duration", "category"]
    write(tmp_path / "b.csv", [line(r, swapped) for r in good[half:]], header=swapped)
    stats = preprocess.run(_cfg(), str(tmp_path / "*.csv"), str(tmp_path / "out"))
    account(tmp_path / "out", stats, good, [])
    users = {r["user_id"] for r in parse_all(read_records(str(tmp_path / "out"), "train"))}
    assert users == {stable_id(r["user_id"]) for r in good}


def test_a_file_missing_a_column_is_named(good, tmp_path):
    write(tmp_path / "a.csv", [line(r) for r in good])
    write(tmp_path / "b.csv", [line(r, COLUMNS[1:]) for r in good], header=COLUMNS[1:])
    with pytest.raises(C.ConfigError, match="data.schema.user_id: column 'user_id' is not in "
                                            "the header of .*b.csv"):
        preprocess.run(_cfg(), str(tmp_path / "*.csv"), str(tmp_path / "out"))


# --------------------------------------------------------------------- the time split
def _split_ts(out):
    return {s: [r["request_ts"] for r in parse_all(read_records(str(out), s), TASKS)]
            for s in ("train", "eval")}


def test_an_outlier_timestamp_does_not_move_the_split(good, tmp_path):
    """A year-2099 request (inside the plausible range) used to empty train: the cutoff was
    a fraction of the time range. Now it is the k-th latest request."""
    outlier = row(request_id="r-2099", timestamp=4_080_000_000)
    bad = [(line(row(timestamp=0)), "implausible_timestamp"),
           (line(row(timestamp=T0 * 1000)), "implausible_timestamp")]
    write(tmp_path / "log.csv", [line(r) for r in good] + [line(outlier)]
          + [raw for raw, _ in bad])
    stats = preprocess.run(_cfg(), str(tmp_path / "log.csv"), str(tmp_path / "out"))
    account(tmp_path / "out", stats, list(good) + [outlier], bad)
    ts = _split_ts(tmp_path / "out")
    n = len(ts["train"]) + len(ts["eval"])
    assert max(ts["train"]) < min(ts["eval"]) == stats["eval_cutoff_ms"]
    assert len(ts["eval"]) == -(-n // 10)                   # ceil(0.1 n): exact, no ties here
    assert 4_080_000_000_000 in ts["eval"]


def test_an_empty_split_fails_unless_allowed_and_keeps_the_previous_output(good, tmp_path):
    out = tmp_path / "out"
    write(tmp_path / "good.csv", [line(r) for r in good])
    preprocess.run(_cfg(), str(tmp_path / "good.csv"), str(out))
    before = _snapshot(out)
    # One request: it is the latest 10%, so train would be empty.
    write(tmp_path / "one.csv", [line(row()), line(row(item_id=6))])
    with pytest.raises(DataError, match="the train split is empty: all 1 requests") as info:
        preprocess.run(_cfg(), str(tmp_path / "one.csv"), str(out))
    assert _snapshot(out) == before
    staged = str(info.value).split(" are in ")[1].split(";")[0]
    assert os.path.isdir(staged) and staged.startswith(str(out))
    stats = preprocess.run(_cfg("data.allow_empty_split=true"), str(tmp_path / "one.csv"),
                           str(out))
    assert stats["splits"]["train"]["requests"] == 0 and stats["splits"]["eval"]["requests"] == 1
    stats = preprocess.run(_cfg("data.eval_fraction=0"), str(tmp_path / "one.csv"), str(out))
    assert stats["splits"]["train"]["requests"] == 1          # eval_fraction=0: no eval wanted


# -------------------------------------------------------------- reruns never destroy output
def _snapshot(out) -> dict:
    files = {}
    for root, _, names in os.walk(out):
        if ".staging-" in root:
            continue
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, out)] = f.read()
    return files


def test_failed_reruns_keep_the_previous_output(good, tmp_path, monkeypatch):
    out = tmp_path / "out"
    write(tmp_path / "good.csv", [line(r) for r in good])
    preprocess.run(_cfg(), str(tmp_path / "good.csv"), str(out))
    before = _snapshot(out)
    assert {"stats.json", "config.yaml", "train/part-00000-of-00001.tfrecord.gz"} <= set(before)

    write(tmp_path / "header-only.csv", [])                 # 0 rows: used to exit 0, 0 records
    with pytest.raises(DataError, match="no records: 0 valid rows, 0 dead-lettered"):
        preprocess.run(_cfg("data.num_shards=3"), str(tmp_path / "header-only.csv"), str(out))
    assert _snapshot(out) == before

    def fail(self, element, eval_cutoff_ms):                # a pipeline that dies mid-run
        raise RuntimeError("worker lost")
    monkeypatch.setattr(records.BuildUserRecords, "process", fail)
    staged_before = set(glob.glob(str(out / ".staging-*")))
    with pytest.raises(Exception, match="worker lost"):
        preprocess.run(_cfg("data.num_shards=3"), str(tmp_path / "good.csv"), str(out))
    assert _snapshot(out) == before
    assert set(glob.glob(str(out / ".staging-*"))) == staged_before   # removed after a crash
    monkeypatch.undo()

    stats = preprocess.run(_cfg("data.num_shards=2"), str(tmp_path / "good.csv"), str(out))
    assert sorted(os.listdir(out / "train")) == [f"part-0000{i}-of-00002.tfrecord.gz"
                                                 for i in range(2)]
    account(out, stats, good, [])


def test_truncated_or_corrupt_compressed_input_fails_and_keeps_the_previous_output(
        good, tmp_path, monkeypatch):
    """Beam reads a truncated .gz as a shorter file (rows silently lost, exit 0 before)."""
    out = tmp_path / "out"
    text = b"\n".join([",".join(COLUMNS).encode()] + [line(r) for r in good]) + b"\n"
    data = gzip.compress(text) + gzip.compress(b"")          # two members: still one valid file
    (tmp_path / "log.csv.gz").write_bytes(data)
    stats = preprocess.run(_cfg(), str(tmp_path / "log.csv.gz"), str(out))
    account(out, stats, good, [])
    assert stats["corrupt_files"] == 0
    before = _snapshot(out)

    (tmp_path / "log.csv.gz").write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError, match="1 compressed file\\(s\\) are truncated or corrupt"):
        preprocess.run(_cfg(), str(tmp_path / "log.csv.gz"), str(out))
    assert _snapshot(out) == before
    (staged,) = glob.glob(str(out / ".staging-*"))
    letters = [e for e in dead_letters(staged) if e["reason"].startswith("truncated_file")]
    assert len(letters) == 1 and letters[0]["source"].endswith("log.csv.gz")

    corrupt = bytearray(gzip.compress(text))
    corrupt[len(corrupt) * 3 // 4:len(corrupt) * 3 // 4 + 64] = bytes(64)   # zeroed mid-stream
    (tmp_path / "log.csv.gz").write_bytes(bytes(corrupt))
    with pytest.raises(DataError, match="cannot read .*log.csv.gz: error: .*decompressing"):
        preprocess.run(_cfg(), str(tmp_path / "log.csv.gz"), str(out))   # pre-run check
    # In a file of many MiB the damage lies beyond the block the pre-run check decompresses;
    # then Beam's reader fails mid-pipeline and the error must still name the file.
    monkeypatch.setattr(inputs, "head", lambda path, what, size=65536: gzip.open(path).read(4096))
    with pytest.raises(DataError, match="corrupt_file: .*log.csv.gz cannot be decompressed"):
        preprocess.run(_cfg(), str(tmp_path / "log.csv.gz"), str(out))
    assert _snapshot(out) == before


# ------------------------------------------------------------------------- the command line
@pytest.mark.parametrize("case,code", [("binary", 3), ("out-is-a-file", 4),
                                       ("header-only", 3)])
def test_cli_prints_one_line_and_the_exit_code(case, code, good, tmp_path):
    """binary: fails before the run; header-only: after it (no records, names the staging
    dir under --out); out-is-a-file: before the run."""
    path = tmp_path / "log.csv"
    write(path, [] if case == "header-only" else [line(r) for r in good])
    if case == "binary":
        path.write_bytes(gzip.compress(path.read_bytes()))
    out = tmp_path / "out"
    if case == "out-is-a-file":
        out.write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "preprocess", "--input", str(path), "--out",
         str(out), "--set", "data.num_shards=1"],
        cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == code, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    ours = [t for t in proc.stderr.splitlines() if t.startswith("stca preprocess:")]
    assert len(ours) == 1 and str(path if case == "binary" else out) in ours[0]
