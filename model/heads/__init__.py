"""Heads: [z, user tokens, candidate token] per target -> one logit per task."""
from __future__ import annotations

from model.heads.dcn_head import DCNHead
from model.heads.mlp_head import MLPHead
from model.heads.rankmixer_head import RankMixerHead

__all__ = ["DCNHead", "MLPHead", "RankMixerHead", "build_head"]


def build_head(model_cfg, num_tasks: int, num_tokens: int, dtype=None):
    """The head selected by `model.head` (rankmixer | dcn | mlp)."""
    common = dict(num_tasks=num_tasks, num_tokens=num_tokens, token_dim=model_cfg.d_model,
                  width=model_cfg.head_width, num_layers=model_cfg.head_layers,
                  dropout=model_cfg.dropout, dtype=dtype, name="head")
    if model_cfg.head == "rankmixer":
        return RankMixerHead(ffn_mult=model_cfg.ffn_mult, **common)
    if model_cfg.head == "dcn":
        return DCNHead(**common)
    if model_cfg.head == "mlp":
        return MLPHead(**common)
    from pipeline.config import HEADS, ConfigError
    raise ConfigError(f"model.head: {model_cfg.head!r} is not allowed; allowed values: "
                      + ", ".join(repr(h) for h in HEADS))
