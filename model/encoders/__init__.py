"""Sequence encoders (model.encoder): stca | target_attention | din | transformer | mean.

All share `SequenceEncoder`'s interface (encode_user / score / cache_spec), the same
embeddings and the same head, so comparisons between them are like for like.
"""
from __future__ import annotations

from pipeline.config import ENCODERS, ConfigError

from model.encoders.base import HIST_LEN, SequenceEncoder
from model.encoders.din import DINEncoder
from model.encoders.mean import MeanEncoder
from model.encoders.stca import STCAEncoder
from model.encoders.target_attention import TargetAttentionEncoder
from model.encoders.transformer import TransformerEncoder

__all__ = ["HIST_LEN", "SequenceEncoder", "STCAEncoder", "TargetAttentionEncoder",
           "DINEncoder", "TransformerEncoder", "MeanEncoder", "EncoderNotImplementedError",
           "build_encoder"]


class EncoderNotImplementedError(ConfigError, NotImplementedError):
    """A configured encoder exists in the config schema but not yet in the model."""


def build_encoder(model_cfg, dtype=None) -> SequenceEncoder:
    """The encoder selected by `model.encoder`, sized by the model config."""
    name, d = model_cfg.encoder, model_cfg.d_model
    common = dict(dtype=dtype, name="encoder")
    if name == "longer":
        raise EncoderNotImplementedError(
            "model.encoder: 'longer' is not implemented yet (planned: token merge + hybrid "
            "attention + KV cache behind model/encoders/base.py); available encoders: "
            "'stca', 'target_attention', 'din', 'transformer', 'mean'")
    if model_cfg.recompute and name not in ("stca", "transformer"):
        raise ConfigError(f"model.recompute: True is invalid for model.encoder={name!r}; "
                          "it is supported by 'stca' and 'transformer'")
    if name == "stca":
        return STCAEncoder(d, model_cfg.num_heads, model_cfg.num_layers, model_cfg.ffn_mult,
                           recompute=model_cfg.recompute, **common)
    if name == "target_attention":
        return TargetAttentionEncoder(d, model_cfg.num_heads, **common)
    if name == "din":
        return DINEncoder(d, **common)
    if name == "transformer":
        return TransformerEncoder(d, model_cfg.num_heads, model_cfg.num_layers,
                                  model_cfg.ffn_mult, recompute=model_cfg.recompute, **common)
    if name == "mean":
        return MeanEncoder(d, **common)
    raise ConfigError(f"model.encoder: {name!r} is not allowed; allowed values: "
                      + ", ".join(repr(e) for e in ENCODERS))
