"""The registry: one registration makes a new encoder (or head) known to config checks,
build_model, the FLOP model, the CLI and the benchmarks."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from core.config import ConfigError
from model import build_model, registry
from model.encoders.mean import MeanEncoder
from model.flops import encoder_flops, head_flops
from model.heads.mlp_head import MLPHead
from tests.helpers.model import TASKS, random_requests, tiny_config


class ToyEncoder(MeanEncoder):
    """A toy encoder for the tests: the history mean, doubled."""

    def score(self, cache, targets, training=None, id_match=None):
        return 2.0 * super().score(cache, targets, training=training, id_match=id_match)


class ToyHead(MLPHead):
    """A toy head for the tests: the MLP head under another name."""


def toy_flops(cfg, L, m):
    return 7 * L, 3 * L


@pytest.fixture
def toy():
    """The one registration a new encoder needs (and one for a head); removed afterwards."""
    registry.register_encoder("toy", flops=toy_flops)(ToyEncoder)
    registry.register_head("toy_head", flops=lambda cfg, tasks: 11 * tasks)(ToyHead)
    yield
    registry.unregister("toy", registry.ENCODERS)
    registry.unregister("toy_head", registry.HEADS)


def test_the_built_in_components_are_registered_with_their_recompute_support():
    assert set(registry.encoder_names()) == {"stca", "longer", "target_attention", "din",
                                             "transformer", "mean"}
    assert set(registry.recompute_encoders()) == {"stca", "longer", "transformer"}
    assert set(registry.HEADS) == {"rankmixer", "dcn", "mlp"}
    for name, entry in registry.ENCODERS.items():
        assert entry.supports_recompute == entry.cls.supports_recompute, name


def test_unknown_names_and_recompute_are_refused_with_the_allowed_values():
    with pytest.raises(ConfigError, match="model.encoder: 'nope' is not allowed; allowed "
                                          "values: .*'stca'"):
        registry.check_model_config(tiny_config(encoder="nope"))
    with pytest.raises(ConfigError, match="model.head: 'nope' is not allowed"):
        registry.check_model_config(tiny_config(head="nope"))
    with pytest.raises(ConfigError, match="model.recompute: True is invalid; it must be false "
                                          "unless model.encoder is one of 'longer', 'stca', "
                                          "'transformer'"):
        registry.check_model_config(tiny_config(encoder="mean", recompute=True))


def test_registration_checks_its_arguments():
    with pytest.raises(ValueError, match="already registered"):
        registry.register_encoder("stca", flops=toy_flops)(ToyEncoder)
    with pytest.raises(TypeError, match="flops must be callable"):
        registry.register_encoder("toy2", flops=None)
    with pytest.raises(TypeError, match="from_model_config"):
        registry.register_encoder("toy2", flops=toy_flops)(keras.layers.Layer)
    with pytest.raises(ValueError, match="identifier"):
        registry.register_encoder("bad name", flops=toy_flops)


def test_a_registered_toy_encoder_and_head_reach_build_model_and_flops(toy):
    cfg = tiny_config(encoder="toy", head="toy_head")
    registry.check_model_config(cfg)
    net = build_model(cfg, TASKS)
    assert isinstance(net.encoder, ToyEncoder) and isinstance(net.head, ToyHead)
    inputs, _ = random_requests()
    logits = net(inputs)
    assert logits.shape == (3, 4, len(TASKS)) and np.isfinite(logits.numpy()).all()
    # The toy's own formula is added to the shared embedding / head terms.
    mean = encoder_flops(tiny_config(encoder="mean", head="toy_head"), 100, 4)
    toy_cost = encoder_flops(cfg, 100, 4)
    assert toy_cost["user"] - mean["user"] == 700
    assert toy_cost["per_target"] - mean["per_target"] == 300
    assert head_flops(cfg, 2) == 22
    with pytest.raises(ConfigError, match="'toy'"):  # listed among the allowed values
        registry.check_model_config(tiny_config(encoder="nope"))


def test_the_cli_takes_a_registered_toy_encoder(toy, capsys, tmp_path):
    from pipeline import cli
    args = cli.build_parser().parse_args(["train", "--data", str(tmp_path), "--model-dir",
                                          str(tmp_path / "m"), "--encoder", "toy"])
    assert registry.check_model_config(cli.resolve_config(args).model).encoder == "toy"
    # An unregistered one is refused before any work, with the registry's names.
    code = cli.main(["train", "--data", str(tmp_path), "--model-dir", str(tmp_path / "m"),
                     "--encoder", "nope"])
    assert code == 2
    err = capsys.readouterr().err
    assert "config error: model.encoder: 'nope' is not allowed" in err and "'toy'" in err
    assert not (tmp_path / "m").exists()


def test_the_encoder_benchmark_plans_a_registered_toy_encoder(toy, monkeypatch):
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parents[2]
                                    / "benchmarks"))
    import bench_encoders
    args = bench_encoders.parse_args(["--quick", "--lengths", "256"])
    assert "toy" in args.encoders
    planned = {(job["encoder"], job["recompute"]) for job in bench_encoders.plan_jobs(args)}
    assert ("toy", False) in planned and ("toy", True) not in planned
    assert ("stca", True) in planned


def test_the_toy_scores_its_cache_as_it_calls(toy):
    encoder = registry.encoder("toy").cls.from_model_config(tiny_config(), name="toy")
    events = tf.random.normal([2, 5, 16])
    mask = tf.sequence_mask([5, 2], 5)
    targets = tf.random.normal([2, 3, 16])
    np.testing.assert_allclose(encoder.score(encoder.encode_user(events, mask), targets),
                               encoder(events, mask, targets), atol=1e-6)
