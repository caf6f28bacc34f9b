"""Readers of public formats (MovieLens, KuaiRand) and generic CSV, checked against plain Python."""
import collections
import csv
import pathlib
import subprocess
import sys

import pytest

from beam_jobs import preprocess, readers
from core import config as C
from core.errors import DataError
from tests.helpers.env import FIXTURES, REPO, subprocess_env
from tests.helpers.records import parse_all, read_records

KUAIRAND = FIXTURES / "kuairand"


def _records(out_dir, tasks):
    return parse_all(read_records(str(out_dir), "train") + read_records(str(out_dir), "eval"),
                     tasks)


@pytest.mark.slow  # Beam job
def test_movielens_100k_counts_match_plain_python(movielens_dir, tmp_path):
    cfg = C.load_config(None, ["data.format=movielens", "data.schema.tasks=like",
                               "data.compression=none", "data.num_shards=2"])
    stats = preprocess.run(cfg, str(movielens_dir / "u.data"), str(tmp_path))

    ratings = [tuple(map(int, line.split("\t")))
               for line in (movielens_dir / "u.data").read_text().splitlines()]
    requests = {(u, ts // 86400) for u, _, _, ts in ratings}
    assert stats["dead_letters"] == 0
    assert stats["targets"] == len(ratings) == 100_000
    assert stats["requests"] == len(requests)
    assert stats["label_rates"]["like"] == pytest.approx(
        sum(r >= 4 for _, _, r, _ in ratings) / len(ratings), abs=1e-6)

    first_genre = {}
    with open(movielens_dir / "u.item", encoding="latin-1") as f:
        for row in csv.reader(f, delimiter="|"):
            flags = row[5:]
            first_genre[int(row[0])] = flags.index("1") + 1 if "1" in flags else 0
    times = collections.defaultdict(list)
    for u, _, _, ts in ratings:
        times[u].append(ts * 1000)
    records = _records(tmp_path, ["like"])
    assert len(records) == len(requests)
    for rec in records[::50]:
        assert len(rec["hist_ts"]) == sum(t < rec["request_ts"] for t in times[rec["user_id"]])
        assert rec["tgt_author_id"] == [first_genre[i] for i in rec["tgt_item_id"]]
        assert rec["hist_author_id"] == [first_genre[i] for i in rec["hist_item_id"]]


def test_movielens_needs_exactly_one_task(movielens_dir):
    data = C.load_config(None, ["data.format=movielens"]).data
    with pytest.raises(C.ConfigError, match="data.schema.tasks.*tasks=\\[like\\]"):
        readers.resolve_source(data, str(movielens_dir / "u.data"))


@pytest.mark.slow  # Beam job
def test_movielens_ratings_csv_is_detected_by_header(tmp_path):
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,10,4.5,100\n1,11,2.0,100\n1,12,4.0,200000\n")
    cfg = C.load_config(None, ["data.format=movielens", "data.schema.tasks=like",
                               "data.eval_fraction=0", "data.min_timestamp="])
    stats = preprocess.run(cfg, str(tmp_path / "ratings.csv"), str(tmp_path / "out"))
    records = sorted(_records(tmp_path / "out", ["like"]), key=lambda r: r["request_ts"])
    assert stats["dead_letters"] == 0 and len(records) == 2
    assert sorted(zip(records[0]["tgt_item_id"], records[0]["label_like"])) == [(10, 1), (11, 0)]
    assert records[1]["hist_item_id"] in ([11, 10], [10, 11])
    assert records[1]["tgt_author_id"] == [0]                 # no u.item: author 0


def _kuairand_rows():
    with open(KUAIRAND / "log_standard_fixture.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow  # Beam job
def test_kuairand_fixture_joins_authors_and_maps_labels(tmp_path):
    cfg = C.load_config(None, [
        "data.format=kuairand", "data.schema.tasks=click,like,finish,is_follow",
        f"data.kuairand_video_features={KUAIRAND / 'video_features_basic_*.csv'}",
        "data.eval_fraction=0"])
    stats = preprocess.run(cfg, str(KUAIRAND / "log_standard_*.csv"), str(tmp_path))
    rows = _kuairand_rows()
    with open(KUAIRAND / "video_features_basic_fixture.csv") as f:
        author = {int(r["video_id"]): int(r["author_id"]) for r in csv.DictReader(f)}
    assert stats["dead_letters"] == 0 and stats["targets"] == len(rows)
    assert stats["requests"] == len({(r["user_id"], int(r["time_ms"]) // 60_000) for r in rows})
    assert stats["metrics"]["items_without_author"] == 1          # video 199

    expected = sorted((int(r["user_id"]), int(r["video_id"]), author.get(int(r["video_id"]), 0),
                       int(r["is_click"]), int(r["is_like"]), int(r["long_view"]),
                       int(r["is_follow"])) for r in rows)
    tasks = ["click", "like", "finish", "is_follow"]
    got = sorted((rec["user_id"], item, rec["tgt_author_id"][j],
                  *(rec[f"label_{t}"][j] for t in tasks))
                 for rec in _records(tmp_path, tasks) for j, item in enumerate(rec["tgt_item_id"]))
    assert got == expected
    hist_authors = {(i, a) for rec in _records(tmp_path, tasks)
                    for i, a in zip(rec["hist_item_id"], rec["hist_author_id"])}
    assert hist_authors and all(a == author.get(i, 0) for i, a in hist_authors)


def test_kuairand_unknown_task_names_the_field():
    data = C.load_config(None, ["data.format=kuairand", "data.schema.tasks=click,watch"]).data
    with pytest.raises(C.ConfigError, match="data.schema.tasks: task 'watch'"):
        readers.resolve_source(data, str(KUAIRAND / "log_standard_*.csv"))


@pytest.mark.slow  # Beam job
def test_headerless_csv_with_schema_columns_and_derived_requests(tmp_path):
    (tmp_path / "log.tsv").write_text("7;1000;5;1\n7;1030;6;0\n7;1200;5;1\n8;1000;9;0\n")
    cfg = C.load_config(None, [
        "data.schema.columns=uid,ts,item,liked", "data.schema.user_id=uid",
        "data.schema.timestamp=ts", "data.schema.item_id=item", "data.schema.author_id=",
        "data.schema.request_id=", "data.schema.request_window_s=100",
        "data.schema.tasks=liked", "data.schema.csv_delimiter=;", "data.eval_fraction=0",
        "data.min_timestamp="])
    stats = preprocess.run(cfg, str(tmp_path / "*.tsv"), str(tmp_path / "out"))
    assert stats["dead_letters"] == 0 and stats["requests"] == 3
    recs = sorted(_records(tmp_path / "out", ["liked"]),
                  key=lambda r: (r["user_id"], r["request_ts"]))
    assert [(r["user_id"], r["request_ts"], r["tgt_item_id"], r["label_liked"], r["hist_item_id"])
            for r in recs] == [(7, 1_000_000, [5, 6], [1, 0], []),
                               (7, 1_200_000, [5], [1], [6, 5]),
                               (8, 1_000_000, [9], [0], [])]


def test_missing_column_and_empty_glob_are_clear_config_errors(tmp_path):
    (tmp_path / "a.csv").write_text("uid,timestamp,item_id,request_id,click,like,finish\n")
    data = C.Config().data
    with pytest.raises(C.ConfigError, match="data.schema.user_id: column 'user_id' is not in "
                                            "the header"):
        readers.resolve_source(data, str(tmp_path / "*.csv"))
    with pytest.raises(DataError, match="--input: the pattern .*nothing-here.* matched no"):
        readers.resolve_source(data, str(tmp_path / "nothing-here*.csv"))


@pytest.mark.slow  # starts `stca preprocess`
def test_cli_reports_an_empty_glob_and_exits_3(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "preprocess", "--input",
         str(tmp_path / "missing-*.csv"), "--out", str(tmp_path / "out")],
        cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3          # missing input: a data error (core/errors.py)
    assert "matched no files" in proc.stderr and "missing-*.csv" in proc.stderr


@pytest.mark.slow  # Beam job against a moto server
def test_reads_input_from_s3_through_beam_filesystems(tmp_path, monkeypatch):
    """s3:// input via Beam's S3 file system against a local moto server."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    from pipeline import synth

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "test")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="raw-logs")
        cfg = C.load_config(None, ["synth.users=3", "synth.events_median=200",
                                   "data.eval_fraction=0"])
        made = synth.run(cfg, str(tmp_path / "raw"))
        for path in made["files"]:
            s3.upload_file(path, "raw-logs", f"logs/{pathlib.Path(path).name}")
        stats = preprocess.run(cfg, "s3://raw-logs/logs/*.csv", str(tmp_path / "out"),
                               beam_args=[f"--s3_endpoint_url={endpoint}",
                                          "--s3_access_key_id=test",
                                          "--s3_secret_access_key=test",
                                          "--s3_region_name=us-east-1"])
    finally:
        server.stop()
    assert stats["dead_letters"] == 0
    assert stats["targets"] == made["events"] and stats["requests"] == made["requests"]
