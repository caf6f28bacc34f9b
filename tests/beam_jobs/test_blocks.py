"""The batch parser gives exactly what the per-row RowParser gives: the same impression for
every good row, the same dead letter (exception type and reason) for every bad one."""
import json

import numpy as np
import pytest

from beam_jobs import blocks
from beam_jobs.validate import FieldMap, RowFormat, RowParser

COLUMNS = ("user_id", "request_id", "timestamp", "item_id", "author_id", "click", "like")
FIELDS = FieldMap(user_id="user_id", request_id="request_id", timestamp="timestamp",
                  item_id="item_id", author_id="author_id",
                  labels=(("click", "click"), ("like", "like")), timestamp_unit="s",
                  min_ts_ms=631152000000, max_ts_ms=4102444800000)
# Values a field may hold, good and bad: digits of every length around the 18-digit fast
# path and int64, text IDs, blanks, whitespace, BOM, non-ASCII digits, floats, quotes.
TOKENS = ["", " ", "0", "1", "2", "007", "42", "-5", "+5", "1_000", "1e3", "1.0", "0.0",
          "1.5", "nan", "inf", "u1", " u1 ", "\ufeffu1", "\u200bu2", "é", "٣", "１２",
          "123456789012345678", "1234567890123456789", "9223372036854775807",
          "9223372036854775808", "99999999999999999999", "1600000000", "1600000000.25",
          " 1600000000", "01600000000", "1600000000000", "4200000000", "86400",
          "4102444800", "631152000", '"q"', "a b", "x\ty"]
GOOD = ["u7", "r1", "1600000000", "123", "9", "1", "0"]


def _rows(rng, n):
    """Rows that are mostly good, with one or two fields from TOKENS."""
    rows = []
    for _ in range(n):
        fields = list(GOOD)
        fields[0] = f"u{rng.integers(0, 5)}"
        fields[1] = f"r{rng.integers(0, 20)}"
        for _ in range(rng.integers(0, 3)):
            fields[rng.integers(0, len(fields))] = TOKENS[rng.integers(0, len(TOKENS))]
        rows.append(",".join(fields).encode())
    return rows


def _reference(parser, batch):
    good, dead = [], []
    for element in batch:
        try:
            good.append(parser(element))
        except Exception as e:  # noqa: BLE001
            dead.append((element, type(e), repr(e)))
    return good, dead


def _check(parser, batch):
    users, events, dead = blocks.parse_batch(parser, batch)
    good, expected_dead = _reference(parser, batch)
    assert sorted(zip(users.tolist(), map(tuple, events.tolist()))) == sorted(good)
    assert [(element, kind, reason) for element, (kind, reason, _) in dead] == expected_dead
    return len(good), len(dead)


@pytest.mark.parametrize("seed", range(4))
def test_random_csv_rows_match_the_row_parser(seed):
    rng = np.random.default_rng(seed)
    parser = RowParser(RowFormat("csv", COLUMNS, max_row_bytes=120), FIELDS)
    rows = _rows(rng, 3000)
    n_good, n_dead = _check(parser, [("f.csv", row) for row in rows])
    assert n_good > 1000 and n_dead > 300
    plain = [row for row in rows if b'"' not in row and b"\xef\xbb\xbf" not in row]
    _check(parser, [("f.csv", row) for row in plain])      # the one-decode batch path


def test_malformed_lines_files_and_lengths_match_the_row_parser():
    parser = RowParser(RowFormat("csv", COLUMNS, max_row_bytes=60,
                                 file_columns=(("a.csv", COLUMNS),
                                               ("b.csv", COLUMNS[::-1]))), FIELDS)
    good = b"u1,r1,1600000000,3,9,0,1"
    lines = [good, b"", b"   \t ", b"u1,r1,1600000000,3,9,0", good + b",x", b"\xc3\x28" + good,
             b"u1,r1,1600000000,3,9,0,1" + b" " * 40, b'u1,"r1,x",1600000000,3,9,0,1',
             b"u1,r1\r,1600000000,3,9,0,1", b"u1,r1,1600000000,3,9,0,1\r",
             "\ufeffu1,r1,1600000000,3,9,0,1".encode(), b"u1,r1,1600000000,3,9,0,1\x00",
             ",".join(COLUMNS).encode(), "ü1,r1,1600000000,3,9,0,1".encode()]
    batch = [(source, line) for source in ("a.csv", "b.csv", "c.csv") for line in lines]
    assert _check(parser, batch + [("a.csv", "u1,r1,1600000000,3,9,0,1")]) == (6, 37)
    assert _check(parser, [("a.csv", good)] * 3 + [("a.csv", "text")]) == (3, 1)


@pytest.mark.parametrize("unit, window, threshold, author", [
    ("ms", 60, None, ""), ("s", 86400, 4.0, "author_id"), ("s", 0, None, "author_id")])
def test_derived_requests_units_thresholds_and_optional_authors(unit, window, threshold,
                                                                 author):
    fields = FieldMap(user_id="user_id", request_id="" if window else "request_id",
                      timestamp="timestamp", item_id="item_id", author_id=author,
                      labels=(("like", "like"),), timestamp_unit=unit,
                      request_window_s=window, label_threshold=threshold)
    parser = RowParser(RowFormat("csv", ("user_id", "request_id", "timestamp", "item_id",
                                         "author_id", "like"), "\t"), fields)
    rng = np.random.default_rng(window)
    values = [["7", "8", "9", "u1"], ["r1", "r2", ""], ["59999", "60000", "119999", "1e3",
                                                          "86400000", "1600000000", "-1"],
              ["1", "2", "x"], ["", "3", "a", " "], ["0", "1", "3.5", "4", "5", "good", ""]]
    batch = [("u.data", "\t".join(v[rng.integers(0, len(v))] for v in values).encode())
             for _ in range(500)]
    _check(parser, batch)


def test_json_and_records_go_through_the_row_parser():
    parser = RowParser(RowFormat("json", max_row_bytes=400), FIELDS)
    row = {"user_id": "u", "request_id": "r", "timestamp": 1600000000, "item_id": 2,
           "author_id": 1, "click": 0, "like": 1}
    batch = [("f.jsonl", json.dumps(dict(row, **change)).encode())
             for change in ({}, {"click": 2}, {"timestamp": None}, {"item_id": 2.5})]
    assert _check(parser, batch + [("f.jsonl", b"{broken")]) == (1, 4)
    assert _check(RowParser(RowFormat("record"), FIELDS), [("p", row), ("p", [1])]) == (1, 1)


def test_blocks_group_rows_by_user_and_give_each_requests_earliest_time():
    users = np.array([5, 3, 5, 3, 5], np.int64)
    events = np.array([[1, 30, 0, 0, 0], [2, 10, 0, 0, 0], [1, 20, 1, 0, 0],
                       [2, 15, 1, 0, 0], [4, 5, 2, 0, 0]], np.int64)
    out = dict(blocks.to_blocks(users, events))
    assert blocks.events_of(out[5]).tolist() == events[[0, 2, 4]].tolist()
    assert blocks.rows((5, out[5])) == 3
    assert sorted(blocks.request_times((5, out[5]))) == [(5, (1, 20)), (5, (4, 5))]
    assert list(blocks.to_blocks(np.zeros(0, np.int64), np.zeros((0, 5), np.int64))) == []


def test_an_unconfigured_author_is_0_even_with_a_column_named_empty():
    """A pandas index column has the name "": it is not the (unconfigured) author."""
    fields = FieldMap(**{**FIELDS.__dict__, "author_id": ""})
    parser = RowParser(RowFormat("csv", ("",) + COLUMNS), fields)
    batch = [("f.csv", f"{i},u1,r1,1600000000,3,9,0,1".encode()) for i in range(3)]
    assert _check(parser, batch) == (3, 0)
    assert blocks.parse_batch(parser, batch)[1][:, 3].tolist() == [0, 0, 0]
