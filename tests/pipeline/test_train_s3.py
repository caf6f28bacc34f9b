"""Training from s3:// through tensorflow-io against a local S3-compatible server (moto).

The CLI must exit 0 for a real reason: tensorflow-io's S3 file system can abort at
interpreter exit (tensorflow/io#2039), which `pipeline.cli.main` avoids by flushing and
leaving with os._exit. The test checks the objects the run wrote, not only the exit code.
"""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.helpers.env import subprocess_env
from tests.helpers.model import tiny_overrides
from tests.helpers.records import write_dataset

boto3 = pytest.importorskip("boto3", reason="boto3 (installed with moto) talks to the server")
TINY = tiny_overrides(("click",))  # the tests' tiny model (tests/helpers/model.py)
pytestmark = pytest.mark.slow  # a moto server and `stca` processes

BUCKET = "stca-test"


@pytest.fixture(scope="module")
def s3_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                               "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    deadline = time.time() + 30
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            break
        except Exception:  # noqa: BLE001  (server still starting)
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("moto server did not start on 127.0.0.1")
            time.sleep(0.2)
    env = {"S3_ENDPOINT": endpoint, "S3_USE_HTTPS": "0", "S3_VERIFY_SSL": "0",
           "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test"}
    yield client, env
    server.terminate()
    server.wait(timeout=10)


def _upload(client, local_root, prefix):
    for dirpath, _, files in os.walk(local_root):
        for name in files:
            path = os.path.join(dirpath, name)
            key = f"{prefix}/{os.path.relpath(path, local_root)}"
            client.upload_file(path, BUCKET, key)


def _keys(client, prefix):
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_train_and_evaluate_from_s3(s3_server, tmp_path):
    client, env = s3_server
    _upload(client, write_dataset(str(tmp_path / "data"), requests=64), "data")
    data, model = f"s3://{BUCKET}/data", f"s3://{BUCKET}/model"
    run = TINY + ["train.steps=12", "train.checkpoint_every=5", "train.length.l_max=64",
                  "train.length.l_min=8", "train.token_budget=1024", "train.max_targets=8"]
    args = [a for o in run for a in ("--set", o)]
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "train", "--data", data,
                           "--model-dir", model, *args], capture_output=True, text=True,
                          timeout=300, env=subprocess_env(**env))
    assert proc.returncode == 0, proc.stderr[-3000:]
    keys = _keys(client, "model/")
    assert "model/config.yaml" in keys and "model/checkpoints/checkpoint" in keys
    assert "model/checkpoints/ckpt-12.index" in keys and "model/checkpoints/ckpt-10.index" in keys
    metrics = json.loads(client.get_object(Bucket=BUCKET, Key="model/train_metrics.json")
                         ["Body"].read())
    assert metrics["steps"] == 12 and metrics["latest_checkpoint"].startswith("s3://")
    assert any(k.startswith("model/logs/train/events.out") for k in keys)

    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "evaluate", "--data", data,
                           "--model-dir", model, "--lengths", "16,64"], capture_output=True,
                          text=True, timeout=300, env=subprocess_env(**env))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(client.get_object(Bucket=BUCKET, Key="model/eval/eval_report.json")
                        ["Body"].read())
    assert [r["length"] for r in report["rows"]] == [16, 64]
    assert report["rows"][0]["requests"] == 32
    assert "model/eval/auc_vs_length.png" in _keys(client, "model/eval/")
