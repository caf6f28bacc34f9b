"""Dead letters: every malformed row reaches errors-* with its reason; every good row is kept."""
import glob
import json

import pyarrow as pa
import pytest
import pyarrow.parquet as pq

from beam_jobs import preprocess
from core import config as C
from core.idhash import stable_id
from tests.helpers.records import parse_all, read_records

pytestmark = pytest.mark.slow  # both tests run the Beam job

HEADER = b"user_id,request_id,timestamp,item_id,author_id,click,like"
GOOD = [f"u{u},r{u}-{t // 100},{1000 + t},{100 + t % 7},{t % 3},{t % 2},{(t // 2) % 2}".encode()
        for u in range(3) for t in range(0, 1000, 50)]
BAD = {  # reason code -> raw line
    "missing_field": b"u9,r9,,5,1,0,1",
    "bad_timestamp": b"u9,r9,noon,5,1,0,1",
    "bad_label": b"u9,r9,1000,5,1,0,2",
    "column_count": b"u9,r9,1000,5,1,0",
    "empty_row": b"",
    "invalid_utf8": b"u9,r9,1000,5,1,0,\xc3\x28",
    "row_too_long": b"u9,r9,1000,5,1,0,1" + b" " * 600,
}


def _cfg(fmt="csv"):
    # Timestamps here are seconds after 1970 (1000 = 00:16:40): no lower plausible bound.
    return C.load_config(None, ["data.schema.tasks=click,like", f"data.format={fmt}",
                                "data.max_row_bytes=512", "data.num_shards=1",
                                "data.eval_fraction=0", "data.min_timestamp="])


def _targets(out_dir):
    keys = []
    for rec in parse_all(read_records(out_dir, "train") + read_records(out_dir, "eval"),
                         ["click", "like"]):
        keys += [(rec["user_id"], item, rec["request_ts"], rec["label_click"][j],
                  rec["label_like"][j]) for j, item in enumerate(rec["tgt_item_id"])]
    return sorted(keys)


def _expected(lines):
    keys = []
    for line in lines:
        user, _, ts, item, _, click, like = line.decode().split(",")
        keys.append((stable_id(user), int(item), None, int(click), int(like)))
    return keys


def _errors(out_dir):
    files = glob.glob(f"{out_dir}/errors/errors-*")
    assert files, "no errors-* file"
    return [json.loads(line) for f in files for line in open(f, encoding="utf-8")]


def test_csv_mix_of_good_and_malformed_rows(tmp_path):
    lines = [HEADER]
    for i, line in enumerate(GOOD):          # bad rows interleaved with good ones
        lines.append(line)
        if i % 8 == 0 and BAD:
            lines.append(list(BAD.values())[i // 8 % len(BAD)])
    lines += list(BAD.values())
    (tmp_path / "logs.csv").write_bytes(b"\n".join(lines) + b"\n")
    stats = preprocess.run(_cfg(), str(tmp_path / "*.csv"), str(tmp_path / "out"))

    got = _targets(str(tmp_path / "out"))
    expected = _expected(GOOD)
    assert len(got) == len(GOOD) == stats["targets"]
    assert sorted((u, i, c, l) for u, i, _, c, l in got) == sorted(
        (u, i, c, l) for u, i, _, c, l in expected)

    errors = _errors(str(tmp_path / "out"))
    n_bad = len(lines) - 1 - len(GOOD)
    assert len(errors) == n_bad == stats["dead_letters"] == stats["metrics"]["dead_letters"]
    by_code = {}
    for e in errors:
        assert e["source"].endswith("logs.csv")
        by_code.setdefault(e["reason"].split(":")[0], []).append(e)
    assert set(by_code) == set(BAD)
    for code, line in BAD.items():
        assert stats["metrics"][f"dead_letter.{code}"] == len(by_code[code])
        letter = by_code[code][0]
        if code == "invalid_utf8":
            assert "row" not in letter and letter["row_base64"]
        else:
            assert letter["row"] == line.decode()
    assert "timestamp" in by_code["missing_field"][0]["reason"]
    assert "'noon'" in by_code["bad_timestamp"][0]["reason"]
    assert "618 bytes" in by_code["row_too_long"][0]["reason"]


def test_jsonl_bad_json_and_parquet_null_fields(tmp_path):
    rows = [{"user_id": "a", "request_id": "q1", "timestamp": 10, "item_id": 1, "author_id": 2,
             "click": 1, "like": 0},
            {"user_id": "a", "request_id": "q2", "timestamp": 20, "item_id": 3, "author_id": 2,
             "click": 0, "like": 1}]
    lines = [json.dumps(r) for r in rows] + ["{broken", "[]", json.dumps(dict(rows[0],
                                                                              click=7))]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    stats = preprocess.run(_cfg("jsonl"), str(tmp_path / "*.jsonl"), str(tmp_path / "j"))
    assert stats["targets"] == 2 and stats["dead_letters"] == 3
    assert sorted(e["reason"].split(":")[0] for e in _errors(str(tmp_path / "j"))) == [
        "bad_json", "bad_json", "bad_label"]

    table = pa.Table.from_pylist(rows + [dict(rows[0], user_id=None)])
    pq.write_table(table, tmp_path / "p.parquet")
    stats = preprocess.run(_cfg("parquet"), str(tmp_path / "*.parquet"), str(tmp_path / "p"))
    errors = _errors(str(tmp_path / "p"))
    assert stats["targets"] == 2 and len(errors) == 1
    assert errors[0]["reason"].startswith("missing_field") and errors[0]["row"]["user_id"] is None
    assert errors[0]["source"].endswith("p.parquet")
