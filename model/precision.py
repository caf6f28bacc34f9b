"""Mixed precision: dtype policies passed to layers explicitly, and loss scaling.

    float32          everything float32
    mixed_bfloat16   compute bfloat16 (CPU with AVX512-BF16 / AMX, TPU, recent GPUs)
    mixed_float16    compute float16 with dynamic loss scaling (GPU)

In every mode variables are float32 and softmaxes run in float32 (masking.masked_softmax);
layer norms compute their statistics in float32 and logits are float32. Policies are
passed to each layer (`dtype=policy(name)`), never set globally, so one process can hold
models of different precisions (tests, benchmarks).

Example:
    layer = SwiGLU(64, dtype=policy("mixed_bfloat16"))
    opt = wrap_optimizer(tf.keras.optimizers.Adam(1e-3), "mixed_float16")
"""
from __future__ import annotations

import tf_keras as keras

from core.config import PRECISIONS, ConfigError


def _check(name: str) -> None:
    if name not in PRECISIONS:
        raise ConfigError(f"model.precision: {name!r} is not allowed; allowed values: "
                          + ", ".join(repr(p) for p in PRECISIONS))


def policy(name: str) -> keras.mixed_precision.Policy:
    """The Keras dtype policy of a `model.precision` value."""
    _check(name)
    return keras.mixed_precision.Policy(name)


def needs_loss_scaling(name: str) -> bool:
    _check(name)
    return name == "mixed_float16"


def wrap_optimizer(optimizer, name: str):
    """Wraps the optimizer in a dynamic LossScaleOptimizer for mixed_float16 (float16
    gradients underflow without it); returns it unchanged otherwise."""
    if needs_loss_scaling(name) and not is_loss_scaled(optimizer):
        return keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def is_loss_scaled(optimizer) -> bool:
    return isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer)
