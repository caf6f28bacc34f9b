"""`stca verify-export` as a release gate, run as a separate process: passes on a good
export (TF1 loader, contract, parity up to 10240 events, held-out AUC) and fails with a
non-zero exit and a clear message on tampered variables or a tampered signature."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from tensorflow.core.protobuf import saved_model_pb2

from core import config as config_lib
from serving import export as export_lib
from serving import layout
from tests.helpers.env import subprocess_env

from tests.helpers.serving import tiny_config


def verify(*args):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "verify-export", *args],
                          capture_output=True, text=True, timeout=600, env=subprocess_env())


def copy_version(export_info: dict, dest_base: str) -> str:
    dest = os.path.join(dest_base, "stca", "1")
    shutil.copytree(export_info["path"], dest)
    return dest


def test_verify_passes_on_a_good_export(export_f32, data_dir):
    model_base = os.path.dirname(export_f32["path"])
    proc = verify("--export-dir", model_base, "--data", data_dir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report_dir = layout.report_dir(export_f32["path"])
    with open(os.path.join(report_dir, "verify_report.json")) as f:
        report = json.load(f)
    assert report["passed"] and report["version_dir"] == export_f32["path"]
    names = {c["check"] for c in report["checks"]}
    assert {"saved_model_cli show --all", "saved_model.pb signatures == contract",
            "TF1 loader: signature_def == contract", "warmup requests run",
            "TF1 loader: score_candidates(encode_user(x)) == serving_default(x)",
            "held-out: exported == in-memory model"} <= names
    # Both STCA attention forms of serving_default (tiny model d=16, h=2: projected from
    # M=17) against the cached K / V and against the checkpoint.
    for form, m in (("reordered", 16), ("projected", 17)):
        label = f" [M={m}: serving_default {form} attention, score_candidates cached projected K/V]"
        assert {"exported == in-memory model (checkpoint)" + label,
                "tf.saved_model.load: score_candidates(encode_user(x)) == serving_default(x)"
                + label} <= names, names
    assert max(report["parity_batch"]["history_lengths"]) == 10240
    assert len(report["parity_batch"]["history_lengths"]) >= 3
    assert all(c["max_abs_diff"] <= 1e-5 for c in report["checks"] if "max_abs_diff" in c)
    held_out = report["held_out"]
    assert held_out["targets"] > 0 and 0.0 <= held_out["auc"]["click"] <= 1.0
    # A float32 cache scores like serving_default, so the AUCs agree.
    assert abs(held_out["auc_cached_minus_serving_default"]["click"]) < 1e-4
    # saved_model_cli's output is kept next to the version dir, not inside it.
    with open(os.path.join(report_dir, "saved_model_cli.txt")) as f:
        assert "signature_def['score_candidates']" in f.read()
    assert set(os.listdir(model_base)) == {"1", "verify-1"}
    assert not os.path.exists(os.path.join(export_f32["path"], "saved_model_cli.txt"))


def test_verify_fails_on_tampered_variables(export_f32, model_dir, tmp_path):
    """Variables of another (untrained) model of the same shape: loads, but the numbers
    no longer match the checkpoint recorded in the metadata."""
    from model import build_model
    good = copy_version(export_f32, str(tmp_path / "tampered"))
    other = export_lib.export_model(build_model(tiny_config().model, tiny_config().tasks),
                                    tiny_config(), str(tmp_path / "other"))
    shutil.rmtree(os.path.join(good, "variables"))
    shutil.copytree(os.path.join(other["path"], "variables"), os.path.join(good, "variables"))
    proc = verify("--export-dir", good)
    assert proc.returncode == 5  # the release gate's documented exit code
    assert "verify-export FAILED" in proc.stderr
    assert re.search(r"exported == in-memory model \(checkpoint\) \[M=\d+: [^\]]*\]: max \|diff\|",
                     proc.stderr)


def test_verify_fails_on_tampered_signature(export_f32, tmp_path):
    version_dir = copy_version(export_f32, str(tmp_path / "tampered"))
    path = os.path.join(version_dir, "saved_model.pb")
    saved = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        saved.ParseFromString(f.read())
    sig = saved.meta_graphs[0].signature_def["score_candidates"]
    sig.outputs["score_clicks"].CopyFrom(sig.outputs["score_click"])
    del sig.outputs["score_click"]
    with open(path, "wb") as f:
        f.write(saved.SerializeToString())
    from serving import verify as verify_lib
    with pytest.raises(verify_lib.VerificationError) as info:
        verify_lib.run(version_dir)
    message = str(info.value)
    assert "saved_model.pb signatures == contract" in message
    assert "signature 'score_candidates': output 'score_click' is missing" in message
    assert "unexpected output 'score_clicks'" in message


def test_verify_reports_a_missing_export_clearly(tmp_path):
    proc = verify("--export-dir", str(tmp_path))
    assert proc.returncode != 0 and "no SavedModel at" in proc.stderr


def test_verify_config_round_trip_of_export_section():
    cfg = tiny_config("export.verify_history=4096", "export.verify_requests=0")
    assert cfg.export.verify_history == 4096 and cfg.export.verify_requests == 0
    with pytest.raises(config_lib.ConfigError, match="export.verify_history"):
        tiny_config("export.verify_history=0")


def test_verify_checks_extend_user_of_a_recency_at_scoring_export(tmp_path):
    """model.recency=attention exports have a fourth signature: verify-export runs its
    warmup request and checks extend_user(encode_user(older), newest) against
    serving_default for both attention forms."""
    from serving import verify as verify_lib
    from tests.helpers.serving import export_recency_model
    _, info = export_recency_model(str(tmp_path))
    report = verify_lib.run(info["path"])
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    checks = {c["check"]: c for c in report["checks"]}
    assert checks["warmup requests run"]["passed"]
    extended = [c for name, c in checks.items() if "extend_user(encode_user(older)" in name]
    assert len(extended) == 2 and all(c["max_abs_diff"] <= 1e-5 for c in extended)
