"""Heads: [z, user tokens, candidate token] per target -> one logit per task.

Each head module registers itself (model/registry.py); `build_head` builds the one
`model.head` names.
"""
from __future__ import annotations

from model import registry
from model.heads.dcn_head import DCNHead
from model.heads.mlp_head import MLPHead
from model.heads.rankmixer_head import RankMixerHead

__all__ = ["DCNHead", "MLPHead", "RankMixerHead", "build_head"]


def build_head(model_cfg, num_tasks: int, num_tokens: int, dtype=None):
    """The registered head selected by `model.head`, sized by the model config.

    Raises:
      ConfigError when model.head is not registered.
    """
    return registry.head(model_cfg.head).cls.from_model_config(
        model_cfg, num_tasks, num_tokens, dtype=dtype, name="head")
