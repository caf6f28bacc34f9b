"""Analytic forward FLOPs per request (2 FLOPs per multiply-add; matmuls only).

Each encoder and head registers its own formula next to its code (model/registry.py);
this module adds the shared parts (embeddings, head) and holds the formulas below.

Elementwise work (activations, norms, softmax) is left out: it is O(L d) per layer,
small next to the O(L d^2) / O(L d h) matmul terms. A training step costs about 3x the
forward pass (backward = 2x forward); benchmarks divide 3 * total by step time.

STCA per request, with f = ffn_mult (2 gives the paper's numbers):

    user       = 18 f L d^2 (event embedding) + N * 6 f L d^2 (views; N * 12 L d^2 at f=2)
                 [+ N * 4 L d^2: projected K / V, when the projected form is used]
    per target = N * 4 L d h (reordered attention) or N * 4 L d (projected)
                 + O(N^2 d^2) (queries, projections, output token) + target embedding + head

STCA's attention has two forms with equal results (`model.layers.stca_attention`):
reordered costs m (4 L d h + 8 d^2) per layer, projected 4 L d^2 + m (4 L d + 4 d^2).
Projected is cheaper iff m ((h - 1) L + d) > L d, i.e. for long histories once
m > d / (h - 1) targets share the history (21.3 at d = 64, h = 4; 10.7 at d = 32).
`projected_attention_is_cheaper` is that rule in the L -> infinity limit (independent
of L, so training with a static M picks one form for every length bucket). The serving
cache always holds projected K / V: a cached user pays only the per-target term.

LONGER per request (arXiv 2505.04421), K = merge_k, k = recent_k, N = self_attn_layers,
G = max(ceil(L / K), k) merged tokens, P0 = 1 + U global tokens (CLS + user tokens),
P = P0 + k short-set tokens, and one attention layer's token cost
a(S) = 4 d^2 + 4 S d + 6 f d^2 (W_Q, W_O; scores + context over S keys; SwiGLU FFN):

    user       = 18 f L d^2 (event embedding)
                 + 2 G K d^2 (merge projection W_M, K d -> d; 0 at K = 1)
                 [+ G K (8 d^2 + 6 f d^2 + 4 K d) with InnerTrans]
                 + 4 (P0 + G) d^2 + P a(P0 + G)             layer 1: K / V of [g; s], P queries
                 + N 4 P d^2 + (N - 1) P a(P)               layers 2..N+1 (the last one only
                                                            projects K / V for the cache)
    per target = 4 d^2 (own K / V) * (N + 1) + a(P0 + G + 1) + N a(P + 1)
                 + target embedding + head
               ~ 4 (L / K) d + O(N (k d + d^2))

Training runs the same layers jointly over [M candidates; P non-candidates] per request;
its extra M x M candidate block (masked off) is not counted.

Example:
    encoder_flops(ModelConfig(), L=1024, m=16)   # {'user': ..., 'per_target': ..., 'total': ...}
"""
from __future__ import annotations

from core.config import ATTENTION_FORMS, ModelConfig
from model import registry


def swiglu_flops(tokens: int, d_in: int, d_out: int, inner: int) -> int:
    """A SwiGLU FFN over `tokens` tokens: d_in -> 2 x inner (gate, value) -> d_out."""
    return 2 * tokens * (d_in * 2 * inner + inner * d_out)


def _user_side_embedding(cfg: ModelConfig, L: int) -> int:
    d, f = cfg.d_model, cfg.ffn_mult
    return swiglu_flops(L, 4 * d, d, f * d) + 2 * L * d  # events + masked mean user token


def _target_embedding(cfg: ModelConfig) -> int:
    d, f = cfg.d_model, cfg.ffn_mult
    return swiglu_flops(1, 2 * d, d, f * d)


def head_flops(cfg: ModelConfig, num_tasks: int = 1) -> int:
    """Forward FLOPs of the head for one target (the formula registered with the head)."""
    return int(registry.head(cfg.head).flops(cfg, num_tasks))


__all__ = ["ATTENTION_FORMS", "encoder_flops", "head_flops", "projected_attention_is_cheaper",
           "stca_attention_flops", "stca_attention_form", "swiglu_flops"]


def stca_attention_flops(form: str, L: int, d: int, h: int, m: int) -> dict:
    """FLOPs of one STCA attention layer for one request: {"user", "per_target"}."""
    if form == "reordered":  # W_Q, u = W_K q, W_V, W_O per target; scores + context h x
        return {"user": 0, "per_target": 4 * L * d * h + 8 * d * d}
    if form == "projected":  # K, V once; W_Q, W_O per target; scores + context per head
        return {"user": 4 * L * d * d, "per_target": 4 * L * d + 4 * d * d}
    raise ValueError(f"attention form must be 'reordered' or 'projected', got {form!r}")


def projected_attention_is_cheaper(d: int, h: int, m):
    """m (h - 1) > d: the projected form's per-request K / V cost is repaid by m targets
    (long-history limit of the two forms' costs). Works on Python ints and int tensors."""
    return m * (h - 1) > d


def stca_attention_form(model_cfg: ModelConfig, m: int) -> str:
    """The form `model.attention_form` resolves to for requests of m targets."""
    form = model_cfg.attention_form
    if form != "auto":
        return form
    cheaper = projected_attention_is_cheaper(model_cfg.d_model, model_cfg.num_heads, m)
    return "projected" if cheaper else "reordered"


def encoder_flops(model_cfg: ModelConfig, L: int, m: int, num_tasks: int = 1) -> dict:
    """Forward FLOPs of one request with history length L and m targets.

    Returns dict(user=..., per_target=..., total=user + m * per_target), including the
    embeddings and the head so encoders are compared on the whole forward pass.
    """
    # The encoder's own formula is registered with it (model/registry.py); m matters to
    # encoders whose form depends on it (STCA).
    encoder_user, encoder_target = registry.encoder(model_cfg.encoder).flops(model_cfg, L, m)
    user = _user_side_embedding(model_cfg, L) + encoder_user
    per_target = encoder_target + _target_embedding(model_cfg) + head_flops(model_cfg,
                                                                            num_tasks)
    if not model_cfg.rlb:  # point-wise: the user side is recomputed for every target
        per_target, user = per_target + user, 0
    return {"user": int(user), "per_target": int(per_target), "total": int(user + m * per_target)}
