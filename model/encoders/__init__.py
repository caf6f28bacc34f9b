"""Sequence encoders (model.encoder): every module here registers its encoder (model/registry.py).

All share `SequenceEncoder`'s interface (encode_user / score / cache_spec), the same
embeddings and the same head, so comparisons between them are like for like. A new
encoder is one module with `@register_encoder(name, flops=...)` imported below, plus its test.
"""
from __future__ import annotations

from model import registry
from model.encoders.base import HIST_LEN, SequenceEncoder
from model.encoders.din import DINEncoder
from model.encoders.longer import LongerEncoder
from model.encoders.mean import MeanEncoder
from model.encoders.stca import STCAEncoder
from model.encoders.target_attention import TargetAttentionEncoder
from model.encoders.transformer import TransformerEncoder

__all__ = ["HIST_LEN", "SequenceEncoder", "STCAEncoder", "LongerEncoder",
           "TargetAttentionEncoder", "DINEncoder", "TransformerEncoder", "MeanEncoder",
           "build_encoder"]


def build_encoder(model_cfg, dtype=None, num_user_tokens: int = 0) -> SequenceEncoder:
    """The registered encoder selected by `model.encoder`, sized by the model config.

    num_user_tokens: U, the user tokens the model passes to encode_user / call (LONGER
    uses them as global tokens; the other encoders ignore them).

    Raises:
      ConfigError when model.encoder is not registered, or model.recompute is set for an
      encoder without recomputation.
    """
    registry.check_model_config(model_cfg)
    return registry.encoder(model_cfg.encoder).cls.from_model_config(
        model_cfg, num_user_tokens=num_user_tokens, dtype=dtype, name="encoder")
