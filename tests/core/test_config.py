import subprocess
import sys

import pytest
import yaml

from core import config as C
from tests.helpers.env import subprocess_env


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
    ("train.jit_compile=maybe", "train.jit_compile: 'maybe' is not allowed; allowed values: "
                                "'auto', 'true', 'false'"),
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


@pytest.mark.slow  # starts `stca synth`
def test_cli_rejects_bad_config_before_work(tmp_path):
    out = tmp_path / "never"
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "synth", "--out", str(out),
                           "--set", "synth.events_max=1", "--set", "synth.events_min=5"],
                          capture_output=True, text=True, env=subprocess_env())
    assert proc.returncode == 2
    assert "synth.events_max: 1 is invalid; it must be >= synth.events_min (5)" in proc.stderr
    assert not out.exists()


def test_jit_compile_is_auto_on_accelerators_only_and_refused_with_multi_worker():
    auto = C.load_config()
    assert auto.train.jit_compile == "auto"
    assert auto.train.use_xla(accelerator=True)[0] is True
    off = auto.train.use_xla(accelerator=False)  # CPU: measured slower (bench_xla)
    assert off[0] is False and "on CPU" in off[1]
    mirrored = C.load_config(None, ["train.strategy=mirrored"]).train
    assert mirrored.use_xla(accelerator=True)[0] is True
    for accelerator in (True, False):
        off = C.load_config(None, ["train.strategy=multi_worker"]).train.use_xla(accelerator)
        assert off[0] is False and "multi_worker" in off[1]
        forced = C.load_config(None, ["train.jit_compile=true"]).train.use_xla(accelerator)
        assert forced == (True, "XLA on: train.jit_compile=true")
        assert C.load_config(None, ["train.jit_compile=false"]).train.use_xla(
            accelerator)[0] is False
    with pytest.raises(C.ConfigError) as err:
        C.load_config(None, ["train.jit_compile=true", "train.strategy=multi_worker"])
    assert "train.jit_compile: 'true' is invalid; it must be false or auto when " \
           "train.strategy is 'multi_worker'" in str(err.value)


def test_preprocess_passes_beam_flags_after_a_double_dash(monkeypatch):
    from beam_jobs import preprocess
    from pipeline import cli
    seen = {}
    monkeypatch.setattr(preprocess, "run", lambda cfg, inp, out, beam_args: seen.update(
        beam_args=beam_args))
    assert cli.main(["preprocess", "--input", "x", "--out", "y", "--",
                     "--runner=DataflowRunner", "--project", "p"]) == 0
    assert seen["beam_args"] == ["--runner=DataflowRunner", "--project", "p"]


@pytest.mark.parametrize("override, message", [
    # Before: accepted, then an OverflowError / ValueError traceback once training started.
    ("train.steps=99999999999999999999999999", "train.steps: 99999999999999999999999999 is "
                                               "invalid; it must be a signed 64-bit integer"),
    ("train.steps=10000000000000", "train.steps: 10000000000000 is invalid; it must be "
                                   "<= 1000000000000"),
    ("train.seed=-1", "train.seed: -1 is invalid; it must be in [0, 4294967295]"),
    ("train.seed=4294967296", "train.seed: 4294967296 is invalid; it must be in [0, "),
    ("train.learning_rate=inf", "train.learning_rate: inf is invalid; it must be a finite"),
    ("model.id_match_init=nan", "model.id_match_init: nan is invalid; it must be a finite"),
    ("train.learning_rate=1" + "0" * 400, "train.learning_rate: 1" + "0" * 23 + "... (401 "
                                          "digits) is out of the range of a number"),
    ("model.item_buckets=3000000000", "model.item_buckets: 3000000000 is invalid; it must be "
                                      "<= 2147483647"),
    ("eval.lengths=[64,99999999]", "eval.lengths: [64, 99999999] is invalid; it must be "
                                   "lengths <= 1048576"),
    ("train.token_budget=1_000_000_000_000", "train.token_budget: 1000000000000 is invalid; "
                                             "it must be <= 2147483647"),
])
def test_absurd_numbers_fail_with_the_field_named(override, message):
    with pytest.raises(C.ConfigError) as err:
        C.load_config(None, [override])
    assert message in str(err.value)


@pytest.mark.parametrize("content, message", [
    (None, "no such config file"),
    ("model: {d_model: 16\n  x: [\n", "invalid YAML at line 2, column 4: expected ',' or '}'"),
    ("- model\n", "the top level must be a mapping of sections"),
    (b"model:\n  head: \xff\n", "cannot read the config file ('utf-8' codec can't decode"),
    ("dir", "cannot read the config file (Is a directory)"),
])
def test_unreadable_config_files_are_config_errors(content, message, tmp_path):
    """Before: FileNotFoundError / YAMLError / UnicodeDecodeError / IsADirectoryError."""
    path = tmp_path / "c.yaml"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(C.ConfigError) as err:
        C.load_config(str(path))
    assert str(err.value).startswith(f"{path}: {message}") and "\n" not in str(err.value)


def test_yaml_python_tags_are_refused_never_run(tmp_path):
    ran = tmp_path / "made-by-the-config"
    path = tmp_path / "c.yaml"
    path.write_text(f"train:\n  steps: !!python/object/apply:os.mkdir ['{ran}']\n")
    with pytest.raises(C.ConfigError, match="invalid YAML at line 2, column 10: could not "
                                            "determine a constructor for the tag"):
        C.load_config(str(path))
    assert not ran.exists()


def test_base_then_file_then_overrides_field_by_field(tmp_path):
    """A model dir's saved config is the base; --config and --set override what they name."""
    base = C.save_config(C.load_config(None, ["model.d_model=32", "model.head=mlp",
                                              "train.steps=7"]), str(tmp_path / "run"))
    path = tmp_path / "eval.yaml"
    path.write_text("model:\n  head: dcn\neval:\n  lengths: [16]\n")
    cfg = C.load_config(str(path), ["train.steps=9"], base=base)
    assert (cfg.model.d_model, cfg.model.head, cfg.eval.lengths, cfg.train.steps) == (
        32, "dcn", [16], 9)


def test_architecture_diff_names_the_fields_that_change_the_model():
    trained = C.load_config(None, ["model.d_model=16", "model.num_heads=2"])
    same = C.load_config(None, ["model.d_model=16", "model.num_heads=2", "train.steps=5",
                                "model.dropout=0.1", "model.precision=mixed_bfloat16"])
    assert C.architecture_diff(trained, same) == []
    other = C.load_config(None, ["model.d_model=32", "model.num_heads=2", "model.head=mlp",
                                 "model.longer.merge_k=2", "data.schema.tasks=[like]"])
    assert C.architecture_diff(trained, other) == [
        "model.d_model: 32 (trained: 16)", "model.head: 'mlp' (trained: 'rankmixer')",
        "model.longer.merge_k: 2 (trained: 4)",
        "data.schema.tasks: ['like'] (trained: ['click', 'like', 'finish'])"]


def test_dates_stay_strings_and_a_bad_date_is_a_config_error(tmp_path):
    cfg = C.load_config(None, ["data.min_timestamp=2015-01-01"])
    assert cfg.data.min_timestamp == "2015-01-01"
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  max_timestamp: 2030-06-01\n")
    assert C.load_config(str(path)).data.max_timestamp == "2030-06-01"
    with pytest.raises(C.ConfigError, match="data.min_timestamp"):
        C.load_config(None, ["data.min_timestamp=1990-13-01"])
