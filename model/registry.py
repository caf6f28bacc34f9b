"""The registry of sequence encoders and heads: one registration per component, next to its code.

An encoder module registers its class with its FLOP formula; the class itself says whether
it supports recomputation (`supports_recompute`) and how it is built from the model config
(`from_model_config`). Config checks (`check_model_config`), `build_model`, model/flops.py, the
CLI and the benchmarks all read this registry, so adding an encoder is one new file in
model/encoders/ (imported by model/encoders/__init__.py) plus its test.

    @register_encoder("mean", flops=lambda cfg, L, m: (0, 0))
    class MeanEncoder(SequenceEncoder):
        @classmethod
        def from_model_config(cls, model_cfg, **kwargs):
            return cls(model_cfg.d_model, **kwargs)

Names are checked here rather than in core/config.py because core sits below model/ and
cannot see what model/ registers (docs/architecture.md).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from core.config import ConfigError, ModelConfig

# flops(model_cfg, L, m) -> (user FLOPs, FLOPs per target) of the encoder alone
FlopFormula = Callable[[ModelConfig, int, int], "tuple[int, int]"]
# flops(model_cfg, num_tasks) -> FLOPs per target of the head
HeadFlopFormula = Callable[[ModelConfig, int], int]


@dataclasses.dataclass(frozen=True)
class Entry:
    """One registered component: its class (built with `cls.from_model_config`) and FLOP formula."""
    name: str
    cls: type
    flops: Callable

    @property
    def supports_recompute(self) -> bool:
        return bool(getattr(self.cls, "supports_recompute", False))

    @property
    def supports_recency_bias(self) -> bool:
        return bool(getattr(self.cls, "supports_recency_bias", False))


ENCODERS: dict[str, Entry] = {}
HEADS: dict[str, Entry] = {}


def _register(table: dict, kind: str, name: str, flops: Callable):
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"{kind} name must be a non-empty identifier, got {name!r}")
    if not callable(flops):
        raise TypeError(f"{kind} {name!r}: flops must be callable, got {flops!r}")

    def decorator(cls):
        if name in table and table[name].cls is not cls:
            raise ValueError(f"{kind} {name!r} is already registered by {table[name].cls}")
        if not callable(getattr(cls, "from_model_config", None)):
            raise TypeError(f"{kind} {name!r}: {cls.__name__} needs a from_model_config classmethod")
        table[name] = Entry(name, cls, flops)
        return cls
    return decorator


def register_encoder(name: str, flops: FlopFormula):
    """Class decorator: registers a SequenceEncoder subclass as `model.encoder: <name>`."""
    return _register(ENCODERS, "encoder", name, flops)


def register_head(name: str, flops: HeadFlopFormula):
    """Class decorator: registers a TaskHead subclass as `model.head: <name>`."""
    return _register(HEADS, "head", name, flops)


def unregister(name: str, table: dict) -> None:
    """Removes a registration (tests that register a toy component clean up with it)."""
    table.pop(name, None)


def encoder_names() -> tuple[str, ...]:
    return tuple(ENCODERS)


def recompute_encoders() -> tuple[str, ...]:
    return tuple(name for name, entry in ENCODERS.items() if entry.supports_recompute)


def _lookup(table: dict, field: str, name: str) -> Entry:
    if name not in table:
        raise ConfigError(f"{field}: {name!r} is not allowed; allowed values: "
                          + ", ".join(repr(n) for n in table))
    return table[name]


def encoder(name: str) -> Entry:
    """The registered encoder `name`. Raises ConfigError listing the registered names."""
    return _lookup(ENCODERS, "model.encoder", name)


def head(name: str) -> Entry:
    """The registered head `name`. Raises ConfigError listing the registered names."""
    return _lookup(HEADS, "model.head", name)


def check_model_config(model_cfg: ModelConfig) -> ModelConfig:
    """The registry's part of config validation: model.encoder and model.head are
    registered, and model.recompute / model.recency=attention are only set for an encoder
    that supports them.

    Raises:
      ConfigError naming the field and the allowed values.
    """
    entry = encoder(model_cfg.encoder)
    head(model_cfg.head)
    if model_cfg.recompute and not entry.supports_recompute:
        raise ConfigError("model.recompute: True is invalid; it must be false unless "
                          "model.encoder is one of "
                          + ", ".join(repr(e) for e in recompute_encoders()))
    if model_cfg.recency == "attention" and not entry.supports_recency_bias:
        raise ConfigError("model.recency: 'attention' is invalid; it must be 'token' unless "
                          "model.encoder is one of " + ", ".join(
                              repr(n) for n, e in ENCODERS.items() if e.supports_recency_bias))
    return model_cfg
