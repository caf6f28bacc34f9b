"""Row validation: every malformed kind is rejected with its reason; good rows map exactly."""
import base64
import json

import pytest

from beam_jobs.validate import (FieldMap, RowError, RowFormat, RowParser, dead_letter_json,
                                derived_request_id, reason_code)
from core.idhash import stable_id

COLUMNS = ("user_id", "request_id", "timestamp", "item_id", "author_id", "click", "like")
FIELDS = FieldMap(user_id="user_id", request_id="request_id", timestamp="timestamp",
                  item_id="item_id", author_id="author_id",
                  labels=(("click", "click"), ("like", "like")), timestamp_unit="s")
CSV = RowParser(RowFormat("csv", COLUMNS, ",", max_row_bytes=200), FIELDS)
JSON = RowParser(RowFormat("json", max_row_bytes=200), FIELDS)


def test_good_csv_row_maps_onto_the_raw_schema():
    user, value = CSV(("f.csv", b"u42,r7,1600000000,123,9,1,1\r\n"))
    assert user == stable_id("u42")
    assert value == (stable_id("r7"), 1_600_000_000_000, 123, 9, 0b11)


def test_good_json_row_and_fractional_seconds():
    row = {"user_id": 5, "request_id": "r", "timestamp": 1.5, "item_id": "x", "click": 0,
           "like": True}
    user, value = JSON(("f.jsonl", json.dumps(row).encode()))
    assert user == 5 and value == (stable_id("r"), 1500, stable_id("x"), 0, 0b10)


def test_optional_author_may_be_empty():
    _, value = CSV(("f", b"u1,r1,10,3,,0,1"))
    assert value[3] == 0


@pytest.mark.parametrize("line, code", [
    (b"u1,r1,10,3,9,0", "column_count"),                  # wrong column count
    (b"u1,r1,10,3,9,0,1,7", "column_count"),
    (b",r1,10,3,9,0,1", "missing_field"),                 # missing user
    (b"u1,r1,  ,3,9,0,1", "missing_field"),               # blank timestamp
    (b"u1,r1,yesterday,3,9,0,1", "bad_timestamp"),        # non-numeric timestamp
    (b"u1,r1,nan,3,9,0,1", "bad_timestamp"),
    (b"u1,r1,-5,3,9,0,1", "bad_timestamp"),
    (b"u1,r1,10,3,9,2,1", "bad_label"),                   # label not 0/1
    (b"u1,r1,10,3,9,0,yes", "bad_label"),
    (b"", "empty_row"),                                   # empty line
    (b"   \r\n", "empty_row"),
    (b"u1,r1,10,3,9,0,\xff\xfe", "invalid_utf8"),         # invalid UTF-8
    (b"u1,r1,10,3,9,0,1" + b" " * 300, "row_too_long"),   # longer than max_row_bytes
])
def test_malformed_csv_rows_raise_their_reason(line, code):
    with pytest.raises(RowError) as info:
        CSV(("f.csv", line))
    assert info.value.code == code
    assert str(info.value).startswith(code + ": ")


@pytest.mark.parametrize("line, code", [
    (b"{not json", "bad_json"),
    (b"[1, 2]", "bad_json"),
    (b'{"user_id": "u", "request_id": "r", "timestamp": 1, "item_id": 2, "click": 0}',
     "missing_field"),
    (b'{"user_id": "u", "request_id": "r", "timestamp": "x", "item_id": 2, "click": 0, '
     b'"like": 1}', "bad_timestamp"),
    (b'{"user_id": "u", "request_id": "r", "timestamp": 1, "item_id": 2.5, "click": 0, '
     b'"like": 1}', "bad_id"),                             # non-integral numeric ID
])
def test_malformed_json_rows(line, code):
    with pytest.raises(RowError) as info:
        JSON(("f.jsonl", line))
    assert info.value.code == code


def test_millisecond_unit_and_derived_requests():
    fields = FieldMap(user_id="u", request_id="", timestamp="t", item_id="i", author_id="",
                      labels=(("click", "c"),), timestamp_unit="ms", request_window_s=60)
    parse = RowParser(RowFormat("csv", ("u", "t", "i", "c")), fields)
    user, (req_a, ts, *_ ) = parse(("f", b"7,119999,1,1"))
    _, (req_b, *_) = parse(("f", b"7,60000,2,0"))
    _, (req_c, *_) = parse(("f", b"7,120000,2,0"))
    assert ts == 119999 and req_a == req_b != req_c
    assert req_a == derived_request_id(7, 60000, 60)


def test_rating_threshold_labels():
    fields = FieldMap(user_id="u", request_id="", timestamp="t", item_id="i", author_id="",
                      labels=(("like", "r"),), request_window_s=86400, label_threshold=4.0)
    parse = RowParser(RowFormat("csv", ("u", "i", "r", "t"), "\t"), fields)
    assert parse(("u.data", b"1\t2\t4\t100"))[1][4] == 1
    assert parse(("u.data", b"1\t2\t3.5\t100"))[1][4] == 0
    with pytest.raises(RowError, match="bad_label"):
        parse(("u.data", b"1\t2\tgood\t100"))


def _failed(element, exc):
    return element, (type(exc), repr(exc), ["Traceback ..."])


def test_dead_letter_json_keeps_row_reason_and_source():
    err = RowError("bad_label", "label column 'click' must be 0 or 1, got '2'")
    letter = json.loads(dead_letter_json(_failed(("a.csv", b"u,r,1,2,3,2,0"), err)))
    assert letter == {"reason": "bad_label: label column 'click' must be 0 or 1, got '2'",
                      "row": "u,r,1,2,3,2,0", "source": "a.csv"}
    assert reason_code(_failed(("a.csv", b""), err)) == "bad_label"


def test_dead_letter_json_base64_for_invalid_utf8_and_cut_for_huge_rows():
    err = RowError("invalid_utf8", "x")
    letter = json.loads(dead_letter_json(_failed(("b", b"\xff\x00ok"), err)))
    assert base64.b64decode(letter["row_base64"]) == b"\xff\x00ok" and "row" not in letter
    letter = json.loads(dead_letter_json(_failed(("b", b"x" * 10_000), err), max_row_bytes=100))
    assert letter["row"] == "x" * 100 and letter["row_bytes"] == 10_000


def test_unexpected_exceptions_are_reported_as_internal_errors():
    letter = json.loads(dead_letter_json(_failed(("p", {"a": 1}), KeyError("a"))))
    assert letter["reason"].startswith("internal_error: KeyError")
    assert letter["row"] == {"a": 1}


PLAUSIBLE = RowParser(RowFormat("csv", COLUMNS, ",", max_row_bytes=200_000),
                      FieldMap(**{**FIELDS.__dict__, "min_ts_ms": 631152000000,
                                  "max_ts_ms": 4102444800000}))


@pytest.mark.parametrize("ts", ["1e300", "99999999999999999999", "0", "1600000000000",
                                "86400", "4200000000"])
def test_out_of_range_timestamps_are_dead_letters_not_overflows(ts):
    """Before: 1e300 / 20 nines became ints beyond int64 that killed the job in BuildRecords;
    0, ms-in-seconds, 1971 and 2103 were accepted."""
    with pytest.raises(RowError) as info:
        PLAUSIBLE(("f.csv", f"u1,r1,{ts},3,9,0,1".encode()))
    assert info.value.code == "implausible_timestamp"
    assert "data.min_timestamp" in str(info.value)


def test_json_and_default_range_reject_anything_beyond_int64():
    for ts in (10 ** 30, 2 ** 63, 1e300):
        line = json.dumps({"user_id": "u", "request_id": "r", "timestamp": ts, "item_id": 2,
                           "click": 0, "like": 1}).encode()
        with pytest.raises(RowError, match="implausible_timestamp"):
            JSON(("f.jsonl", line))
    assert "milliseconds in a seconds log" in str(pytest.raises(
        RowError, PLAUSIBLE, ("f.csv", b"u1,r1,1600000000000,3,9,0,1")).value)


def test_bom_at_the_start_of_a_line_and_of_an_id_is_ignored():
    """Before: a JSON line after a BOM was bad_json, a CSV user after one another user."""
    _, expected = CSV(("f.csv", b"u42,r7,1600000000,123,9,1,1"))
    user, value = CSV(("f.csv", "\ufeffu42,r7,1600000000,123,9,1,1".encode()))
    assert (user, value) == (stable_id("u42"), expected)
    line = '\ufeff{"user_id": "\ufeffu42 ", "request_id": "r7", "timestamp": 1600000000, ' \
           '"item_id": 123, "author_id": 9, "click": 1, "like": 1}'
    assert JSON(("f.jsonl", line.encode())) == (stable_id("u42"), expected)


def test_parser_errors_have_their_own_reason_not_internal_error():
    big_json = RowParser(RowFormat("json", max_row_bytes=200_000), FIELDS)
    with pytest.raises(RowError, match="bad_json"):             # int over 4300 digits
        big_json(("f.jsonl", b'{"user_id": ' + b"9" * 5000 + b"}"))
    with pytest.raises(RowError, match="bad_csv"):              # csv's 128 KiB field limit
        PLAUSIBLE(("f.csv", b"u1,r1,1600000000," + b"3" * 140_000 + b",9,0,1"))


def test_each_file_is_decoded_with_its_own_columns():
    swapped = ("item_id", "user_id", "request_id", "timestamp", "author_id", "click", "like")
    fmt = RowFormat("csv", COLUMNS, ",", file_columns=(("a.csv", COLUMNS), ("b.csv", swapped)))
    parse = RowParser(fmt, FIELDS)
    assert parse(("a.csv", b"u1,r1,1600000000,3,9,0,1")) == \
        parse(("b.csv", b"3,u1,r1,1600000000,9,0,1"))
    with pytest.raises(RowError, match="unchecked_file"):
        parse(("c.csv", b"u1,r1,1600000000,3,9,0,1"))
