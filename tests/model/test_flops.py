import pytest

import model  # noqa: F401
from core.config import ModelConfig
from model import registry
from model.flops import encoder_flops

ENCODERS = registry.encoder_names()  # every registered encoder


def test_stca_matches_the_paper_cost_formula():
    cfg = ModelConfig(d_model=1024, num_heads=16, num_layers=4)
    d, h, n = 1024, 16, 4
    small, large = encoder_flops(cfg, 1024, 16), encoder_flops(cfg, 2048, 16)
    # The L-dependent parts: per layer a d->d SwiGLU view (12 L d^2 at ffn_mult 2) plus the
    # event embedding (a 4d->d SwiGLU, 36 L d^2, and the masked mean, 2 L d).
    assert large["user"] - small["user"] == 1024 * (n * 12 * d * d + 36 * d * d + 2 * d)
    assert large["per_target"] - small["per_target"] == 1024 * n * 4 * d * h
    assert large["total"] == large["user"] + 16 * large["per_target"]
    # Paper formula (encoder only): N*12*L*d^2 shared + m*N*4*L*d*h per target, plus small
    # per-target terms (projections, query fusion, target embedding, head).
    paper = n * 12 * 2048 * d * d + 16 * n * 4 * 2048 * d * h
    encoder_part = large["total"] - 2048 * (36 * d * d + 2 * d)
    assert paper < encoder_part < 1.1 * paper


def test_costs_scale_as_expected():
    cfg = lambda e: ModelConfig(encoder=e)  # noqa: E731
    for encoder in ENCODERS:
        a, b = encoder_flops(cfg(encoder), 1000, 8), encoder_flops(cfg(encoder), 2000, 8)
        assert b["total"] > a["total"] > 0
    quadratic = [encoder_flops(cfg("transformer"), L, 1)["per_target"] for L in (999, 1999, 3999)]
    assert (quadratic[2] - quadratic[1]) > 1.9 * (quadratic[1] - quadratic[0])
    stca = [encoder_flops(cfg("stca"), L, 16)["total"] for L in (1000, 2000, 4000)]
    assert abs((stca[2] - stca[1]) - 2 * (stca[1] - stca[0])) < 1e-9 * stca[2]  # linear
    pointwise = encoder_flops(ModelConfig(rlb=False), 1000, 8)
    rlb = encoder_flops(ModelConfig(), 1000, 8)
    assert pointwise["total"] == rlb["total"] + 7 * rlb["user"]


def test_unknown_encoder_has_no_flop_model():
    with pytest.raises(ValueError, match="'nope'"):
        encoder_flops(ModelConfig(encoder="nope"), 10, 1)


def test_stca_attention_form_rule_follows_the_two_forms_flop_counts():
    """projected_attention_is_cheaper is the L -> infinity limit of comparing the two
    forms' FLOPs: at long L it agrees with the counts everywhere on a grid."""
    from model.flops import (
        projected_attention_is_cheaper,
        stca_attention_flops,
        stca_attention_form,
    )
    L = 1 << 20
    for d, h in ((32, 4), (64, 4), (64, 8), (128, 2), (16, 1)):
        for m in (1, 2, 8, 10, 11, 16, 21, 22, 64, 256, 1024):
            cost = {f: (lambda c: c["user"] + m * c["per_target"])(
                stca_attention_flops(f, L, d, h, m)) for f in ("reordered", "projected")}
            assert projected_attention_is_cheaper(d, h, m) == (
                cost["projected"] < cost["reordered"]), (d, h, m)
    # The crossovers quoted in the docs: m > d / (h - 1).
    assert [stca_attention_form(ModelConfig(d_model=64), m) for m in (21, 22)] == [
        "reordered", "projected"]
    assert [stca_attention_form(ModelConfig(d_model=32), m) for m in (10, 11)] == [
        "reordered", "projected"]
    assert stca_attention_form(ModelConfig(attention_form="projected"), 1) == "projected"


def test_stca_request_cost_uses_the_form_its_m_selects():
    cfg = ModelConfig()                      # d = 64, h = 4, N = 3: projected from m = 22
    d, h, n, L = 64, 4, 3, 4096
    few, many = encoder_flops(cfg, L, 21), encoder_flops(cfg, L, 22)
    assert many["user"] - few["user"] == n * 4 * L * d * d          # K / V projections
    assert few["per_target"] - many["per_target"] == n * (4 * L * d * (h - 1) + 4 * d * d)
