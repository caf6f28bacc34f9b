"""Analytic forward FLOPs per request (2 FLOPs per multiply-add; matmuls only).

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

from pipeline.config import ATTENTION_FORMS, ModelConfig

DIN_HIDDEN = (80, 40)  # DINEncoder's default attention MLP


def _swiglu(tokens: int, d_in: int, d_out: int, inner: int) -> int:
    return 2 * tokens * (d_in * 2 * inner + inner * d_out)


def _user_side_embedding(cfg: ModelConfig, L: int) -> int:
    d, f = cfg.d_model, cfg.ffn_mult
    return _swiglu(L, 4 * d, d, f * d) + 2 * L * d  # events + masked mean user token


def _target_embedding(cfg: ModelConfig) -> int:
    d, f = cfg.d_model, cfg.ffn_mult
    return _swiglu(1, 2 * d, d, f * d)


def head_flops(cfg: ModelConfig, num_tasks: int = 1) -> int:
    """Forward FLOPs of the head for one target."""
    d, w, layers = cfg.d_model, cfg.head_width, cfg.head_layers
    tokens = 3 if cfg.use_user_id else 2
    if cfg.head == "rankmixer":
        w = -(-w // tokens) * tokens
        return 2 * tokens * d * w + layers * 4 * cfg.ffn_mult * tokens * w * w + 2 * w * num_tasks
    flat = tokens * d
    if cfg.head == "dcn":
        return layers * 2 * flat * flat + 2 * flat * w + 2 * w * num_tasks
    return 2 * flat * w + (layers - 1) * 2 * w * w + 2 * w * num_tasks


__all__ = ["ATTENTION_FORMS", "encoder_flops", "head_flops", "projected_attention_is_cheaper",
           "stca_attention_flops", "stca_attention_form"]


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


def _stca(cfg: ModelConfig, L: int, m: int = 1) -> tuple[int, int]:
    d, h, n, f = cfg.d_model, cfg.num_heads, cfg.num_layers, cfg.ffn_mult
    attention = stca_attention_flops(stca_attention_form(cfg, m), L, d, h, m)
    user = n * (_swiglu(L, d, d, f * d) + attention["user"])
    per_target = 0
    for i in range(1, n + 1):
        fusion = (2 * i * d * d if i > 1 else 0) + _swiglu(1, d, d, f * d)
        per_target += fusion + attention["per_target"]
    per_target += 2 * (n + 1) * d * d + _swiglu(1, d, d, f * d)  # output token
    return user, per_target


def _longer(cfg: ModelConfig, L: int, m: int = 1) -> tuple[int, int]:
    d, f, lc = cfg.d_model, cfg.ffn_mult, cfg.longer
    K, k, n = lc.merge_k, lc.recent_k, lc.self_attn_layers
    groups = max(-(-L // K), k)
    p0 = 1 + (2 if cfg.use_user_id else 1)  # CLS + UserTokens.num_tokens
    p = p0 + k

    def layer(keys: int) -> int:  # one query token: W_Q, W_O, attention over keys, FFN
        return 4 * d * d + 4 * keys * d + _swiglu(1, d, d, f * d)

    user = 0
    if K > 1:
        user += 2 * groups * K * d * d
        if lc.merge_mode == "innertrans":
            user += groups * K * (8 * d * d + 4 * K * d) + _swiglu(groups * K, d, d, f * d)
    user += 4 * (p0 + groups) * d * d + p * layer(p0 + groups)
    user += n * 4 * p * d * d + (n - 1) * p * layer(p)
    per_target = (n + 1) * 4 * d * d + layer(p0 + groups + 1) + n * layer(p + 1)
    return user, per_target


def _target_attention(cfg: ModelConfig, L: int, m: int = 1) -> tuple[int, int]:
    d = cfg.d_model
    return 4 * L * d * d, 4 * L * d + 4 * d * d


def _din(cfg: ModelConfig, L: int, m: int = 1) -> tuple[int, int]:
    d, (h1, h2) = cfg.d_model, DIN_HIDDEN
    user = 2 * L * d * h1
    per_target = 2 * d * h1 + 2 * L * d * h1 + 2 * L * h1 * h2 + 2 * L * h2 + 2 * L * d
    return user, per_target


def _transformer(cfg: ModelConfig, L: int, m: int = 1) -> tuple[int, int]:
    d, n, f, s = cfg.d_model, cfg.num_layers, cfg.ffn_mult, L + 1
    return 0, n * (8 * s * d * d + 4 * s * s * d + _swiglu(s, d, d, f * d))


def _mean(cfg: ModelConfig, L: int, m: int = 1) -> tuple[int, int]:
    return 0, 0  # the masked mean is already counted with the user tokens


_ENCODERS = {"stca": _stca, "longer": _longer, "target_attention": _target_attention, "din": _din,
             "transformer": _transformer, "mean": _mean}


def encoder_flops(model_cfg: ModelConfig, L: int, m: int, num_tasks: int = 1) -> dict:
    """Forward FLOPs of one request with history length L and m targets.

    Returns dict(user=..., per_target=..., total=user + m * per_target), including the
    embeddings and the head so encoders are compared on the whole forward pass.
    """
    if model_cfg.encoder not in _ENCODERS:
        raise ValueError(f"no FLOP model for model.encoder={model_cfg.encoder!r}")
    # m only matters to STCA, whose attention form depends on it.
    encoder_user, encoder_target = _ENCODERS[model_cfg.encoder](model_cfg, L, m)
    user = _user_side_embedding(model_cfg, L) + encoder_user
    per_target = encoder_target + _target_embedding(model_cfg) + head_flops(model_cfg,
                                                                            num_tasks)
    if not model_cfg.rlb:  # point-wise: the user side is recomputed for every target
        per_target, user = per_target + user, 0
    return {"user": int(user), "per_target": int(per_target), "total": int(user + m * per_target)}
