"""Keras ranking model: layers, encoders (STCA and baselines), heads, the tfrs model.

    from model import build_model
    model = build_model(cfg.model, cfg.tasks, clip_norm=cfg.train.clip_norm)
"""
import core  # noqa: F401  (sets the Keras environment before TensorFlow loads)

from model.ranking_model import USER_TOKENS, RankingModel, build_model  # noqa: E402

__all__ = ["RankingModel", "USER_TOKENS", "build_model"]
