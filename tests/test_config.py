import subprocess
import sys

import pytest
import yaml

from pipeline import config as C
from tests.conftest import subprocess_env


def test_defaults_validate():
    cfg = C.Config().validate()
    assert cfg.model.d_model == 64 and cfg.model.num_heads == 4 and cfg.model.num_layers == 3
    assert cfg.data.max_history == 10240


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"d_model": 128, "num_heads": 8},
                                    "train": {"length": {"l_max": 2048}}}))
    cfg = C.load_config(str(path), ["model.num_heads=16", "eval.lengths=256,1024",
                                    "model.recompute=true", "train.learning_rate=1e-3"])
    assert cfg.model.d_model == 128 and cfg.model.num_heads == 16
    assert cfg.model.num_layers == 3  # untouched default inside a partial section
    assert cfg.train.length.l_max == 2048 and cfg.train.length.l_min == 64
    assert cfg.eval.lengths == [256, 1024]
    assert cfg.model.recompute is True and cfg.train.learning_rate == pytest.approx(1e-3)


def test_a_single_value_is_a_one_element_list():
    assert C.load_config(None, ["eval.lengths=256"]).eval.lengths == [256]
    assert C.load_config(None, ["data.schema.tasks=like"]).data.schema.tasks == ["like"]
    with pytest.raises(C.ConfigError, match=r"eval.lengths: expected a list, got True"):
        C.load_config(None, ["eval.lengths=true"])


def test_paper_scale_reachable_from_config():
    cfg = C.load_config(None, ["model.d_model=1024", "model.num_heads=16", "model.num_layers=4"])
    assert (cfg.model.d_model, cfg.model.num_heads, cfg.model.num_layers) == (1024, 16, 4)


@pytest.mark.parametrize("override, message", [
    ("model.encoder=foo", "model.encoder: 'foo' is not allowed; allowed values: 'stca'"),
    ("train.strategy=tpu", "train.strategy: 'tpu' is not allowed; allowed values: 'default', "
                           "'mirrored', 'multi_worker'"),
    ("train.length.l_min=-3", "train.length.l_min: -3 is invalid; it must be >= 1"),
    ("train.length.l_min=4096", "train.length.l_max: 1024 is invalid; it must be >= "
                                "train.length.l_min (4096)"),
    ("model.num_heads=5", "model.num_heads: 5 is invalid; it must be a divisor of "
                          "model.d_model (64)"),
    ("model.d_model=abc", "model.d_model: expected an integer, got 'abc'"),
    ("model.bogus=1", "model: unknown field(s) bogus; allowed fields:"),
    ("data.schema.timestamp_unit=h", "data.schema.timestamp_unit: 'h' is not allowed"),
    ("export.cache_dtype=float16", "export.cache_dtype: 'float16' is not allowed; allowed "
                                   "values: 'float32', 'bfloat16'"),
    ("nokey", "expected key=value"),
    ("train.jit_compile=maybe", "train.jit_compile: expected true or false, got 'maybe'"),
])
def test_errors_name_field_and_allowed_values(override, message):
    with pytest.raises(C.ConfigError) as err:
        C.load_config(None, [override])
    assert message in str(err.value)


def test_save_and_reload_round_trip(tmp_path):
    cfg = C.load_config(None, ["model.encoder=din", "data.schema.tasks=[a,b]"])
    path = C.save_config(cfg, str(tmp_path / "run"))
    again = C.load_config(path)
    assert again == cfg and again.tasks == ["a", "b"]


def test_cli_rejects_bad_config_before_work(tmp_path):
    out = tmp_path / "never"
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "synth", "--out", str(out),
                           "--set", "synth.events_max=1", "--set", "synth.events_min=5"],
                          capture_output=True, text=True, env=subprocess_env())
    assert proc.returncode == 2
    assert "synth.events_max: 1 is invalid; it must be >= synth.events_min (5)" in proc.stderr
    assert not out.exists()


def test_jit_compile_is_opt_in_and_refused_with_multi_worker():
    assert C.load_config().train.jit_compile is False
    assert C.load_config(None, ["train.jit_compile=true"]).train.jit_compile is True
    with pytest.raises(C.ConfigError) as err:
        C.load_config(None, ["train.jit_compile=true", "train.strategy=multi_worker"])
    assert "train.jit_compile: True is invalid; it must be false when train.strategy is " \
           "'multi_worker'" in str(err.value)


def test_preprocess_passes_beam_flags_after_a_double_dash(monkeypatch):
    from beam_jobs import preprocess
    from pipeline import cli
    seen = {}
    monkeypatch.setattr(preprocess, "run", lambda cfg, inp, out, beam_args: seen.update(
        beam_args=beam_args))
    assert cli.main(["preprocess", "--input", "x", "--out", "y", "--",
                     "--runner=DataflowRunner", "--project", "p"]) == 0
    assert seen["beam_args"] == ["--runner=DataflowRunner", "--project", "p"]
