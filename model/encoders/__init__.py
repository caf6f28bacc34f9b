"""Sequence encoders (model.encoder): stca | longer | target_attention | din | transformer | mean.

All share `SequenceEncoder`'s interface (encode_user / score / cache_spec), the same
embeddings and the same head, so comparisons between them are like for like.
"""
from __future__ import annotations

from pipeline.config import ENCODERS, RECOMPUTE_ENCODERS, ConfigError

from model.encoders.base import HIST_LEN, SequenceEncoder
from model.encoders.din import DINEncoder
from model.encoders.longer import LongerEncoder
from model.encoders.mean import MeanEncoder
from model.encoders.stca import STCAEncoder
from model.encoders.target_attention import TargetAttentionEncoder
from model.encoders.transformer import TransformerEncoder

__all__ = ["HIST_LEN", "SequenceEncoder", "STCAEncoder", "LongerEncoder",
           "TargetAttentionEncoder", "DINEncoder", "TransformerEncoder", "MeanEncoder",
           "EncoderNotImplementedError", "build_encoder"]


class EncoderNotImplementedError(ConfigError, NotImplementedError):
    """A configured encoder exists in the config schema but not yet in the model (kept for
    future encoders; every encoder of `pipeline.config.ENCODERS` is implemented)."""


def build_encoder(model_cfg, dtype=None, num_user_tokens: int = 0) -> SequenceEncoder:
    """The encoder selected by `model.encoder`, sized by the model config.

    num_user_tokens: U, the user tokens the model passes to encode_user / call (LONGER
    uses them as global tokens; the other encoders ignore them).
    """
    name, d = model_cfg.encoder, model_cfg.d_model
    common = dict(dtype=dtype, name="encoder")
    if model_cfg.recompute and name not in RECOMPUTE_ENCODERS:
        raise ConfigError(f"model.recompute: True is invalid for model.encoder={name!r}; "
                          "it is supported by " + ", ".join(map(repr, RECOMPUTE_ENCODERS)))
    if name == "stca":
        return STCAEncoder(d, model_cfg.num_heads, model_cfg.num_layers, model_cfg.ffn_mult,
                           recompute=model_cfg.recompute,
                           num_match_fields=len(model_cfg.id_match),
                           match_bias_init=model_cfg.id_match_init,
                           attention_sink=model_cfg.attention_sink,
                           attention_form=model_cfg.attention_form, **common)
    if name == "longer":
        cfg = model_cfg.longer
        return LongerEncoder(d, model_cfg.num_heads, merge_k=cfg.merge_k,
                             merge_mode=cfg.merge_mode, recent_k=cfg.recent_k,
                             self_attn_layers=cfg.self_attn_layers, ffn_mult=model_cfg.ffn_mult,
                             num_user_tokens=num_user_tokens, recompute=model_cfg.recompute,
                             num_match_fields=len(model_cfg.id_match),
                             match_bias_init=model_cfg.id_match_init, **common)
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
