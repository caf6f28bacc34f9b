"""Typed run configuration: dataclasses with defaults, YAML files and `--set` overrides.

Every section validates itself; errors name the dotted field and the allowed values, and
are raised before any work starts. `save_config` writes the resolved config next to a
run's outputs so every result can be reproduced.

Example:
    cfg = load_config("configs/demo.yaml", ["model.d_model=128", "train.steps=500"])
    cfg.model.d_model  # 128
"""
from __future__ import annotations

import dataclasses
import datetime
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Iterable

import yaml

from core import fileio
from core.errors import EXIT_CONFIG, UserError


class ConfigError(UserError, ValueError):
    """A configuration value is invalid; the message names the field."""

    exit_code = EXIT_CONFIG


def _choice(path: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{path}: {value!r} is not allowed; allowed values: "
                          + ", ".join(repr(a) for a in allowed))


def _check(cond: bool, path: str, value: Any, requirement: str) -> None:
    if not cond:
        raise ConfigError(f"{path}: {value!r} is invalid; it must be {requirement}")


def _at_most(section: Any, p: str, limit: int, *names: str) -> None:
    for name in names:
        _check(getattr(section, name) <= limit, f"{p}.{name}", getattr(section, name),
               f"<= {limit}")


def _finite(section: Any, p: str, *names: str) -> None:
    for name in names:
        _check(math.isfinite(getattr(section, name)), f"{p}.{name}", getattr(section, name),
               "a finite number")


@dataclass
class SchemaConfig:
    """Maps columns of a raw impression log onto the raw schema (README, "Raw schema").

    An empty `request_id` means requests are derived: one user's rows whose timestamps
    fall into the same `request_window_s`-second bucket form one request.
    """
    user_id: str = "user_id"
    request_id: str = "request_id"
    timestamp: str = "timestamp"
    item_id: str = "item_id"
    author_id: str = "author_id"      # empty: the log has no author column
    tasks: list[str] = field(default_factory=lambda: ["click", "like", "finish"])
    timestamp_unit: str = "s"         # unit of the raw timestamp column: s | ms
    request_window_s: int = 0         # used only when request_id is empty
    csv_delimiter: str = ","
    columns: list[str] = field(default_factory=list)  # CSV without header: column names

    def validate(self, p: str = "data.schema") -> None:
        for name in ("user_id", "timestamp", "item_id"):
            _check(bool(getattr(self, name)), f"{p}.{name}", getattr(self, name), "a column name")
        _check(len(self.tasks) >= 1, f"{p}.tasks", self.tasks, "a non-empty list of label columns")
        _check(len(set(self.tasks)) == len(self.tasks), f"{p}.tasks", self.tasks, "unique")
        _check(len(self.tasks) <= 8, f"{p}.tasks", self.tasks, "at most 8 tasks (action bitmask)")
        _choice(f"{p}.timestamp_unit", self.timestamp_unit, ("s", "ms"))
        _check(self.request_window_s >= 0, f"{p}.request_window_s", self.request_window_s, ">= 0")
        _check(bool(self.request_id) or self.request_window_s > 0, f"{p}.request_window_s",
               self.request_window_s, "> 0 when data.schema.request_id is empty")
        _check(len(self.csv_delimiter) == 1, f"{p}.csv_delimiter", self.csv_delimiter,
               "a single character")


@dataclass
class DataConfig:
    """Raw data and the preprocessing (Beam) job."""
    schema: SchemaConfig = field(default_factory=SchemaConfig)
    format: str = "csv"               # csv | jsonl | parquet | movielens | kuairand
    max_history: int = 10240          # cap of stored history events per request
    history_events: str = "all"       # all impressions, or only those with a positive label
    eval_fraction: float = 0.1        # the latest fraction of requests (by time) goes to eval
    num_shards: int = 4               # TFRecord shards per split; 0 lets the runner decide
    compression: str = "gzip"         # gzip | none
    layout: str = "request"           # request (RLB) | pointwise (baseline only)
    max_row_bytes: int = 1 << 20      # longer raw rows go to the dead-letter output
    movielens_positive_rating: int = 4   # MovieLens label: rating >= this
    movielens_request_window_s: int = 86400
    movielens_items: str = ""            # glob of u.item (author_id = first genre); empty:
                                         # u.item next to the first u.data, if present
    kuairand_video_features: str = ""    # glob of KuaiRand video feature CSVs (author_id)
    kuairand_request_window_s: int = 60
    # Plausible range of raw timestamps: UTC ISO 8601 dates or date-times, empty = no bound.
    # Rows outside go to the dead letters (implausible_timestamp): a millisecond value in a
    # seconds log, a 0, or a seconds value in a millisecond log is not a real event time.
    min_timestamp: str = "1990-01-01"
    max_timestamp: str = "2100-01-01"
    drop_duplicates: bool = True      # drop exact duplicate impressions (counted either way)
    allow_empty_split: bool = False   # true: an empty train or eval split is not an error

    def timestamp_range_ms(self, p: str = "data") -> tuple[int, int]:
        """The plausible range [min, max] of timestamps in Unix ms (ConfigError if invalid).

        Example:
            DataConfig().timestamp_range_ms()  # (631152000000, 4102444800000)
        """

        def ms(name: str, default: int) -> int:
            text = str(getattr(self, name)).strip()
            if not text:
                return default
            try:
                when = datetime.datetime.fromisoformat(text)
            except ValueError:
                raise ConfigError(f"{p}.{name}: {text!r} is invalid; it must be an ISO 8601 "
                                  "date or date-time (UTC unless it has an offset), e.g. "
                                  "2015-01-01 or 2015-01-01T06:00:00, or empty") from None
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.timezone.utc)
            return int(when.timestamp() * 1000)

        low, high = ms("min_timestamp", 0), ms("max_timestamp", (1 << 63) - 1)
        _check(low >= 0, f"{p}.min_timestamp", self.min_timestamp, "at or after 1970-01-01")
        _check(low < high, f"{p}.max_timestamp", self.max_timestamp,
               f"later than {p}.min_timestamp ({self.min_timestamp})")
        return low, high

    def validate(self, p: str = "data") -> None:
        self.schema.validate(f"{p}.schema")
        self.timestamp_range_ms(p)
        _choice(f"{p}.format", self.format, INPUT_FORMATS)
        _check(self.max_history >= 1, f"{p}.max_history", self.max_history, ">= 1")
        _choice(f"{p}.history_events", self.history_events, ("all", "positive"))
        _check(0.0 <= self.eval_fraction < 1.0, f"{p}.eval_fraction", self.eval_fraction,
               "in [0, 1)")
        _check(self.num_shards >= 0, f"{p}.num_shards", self.num_shards, ">= 0")
        _choice(f"{p}.compression", self.compression, ("gzip", "none"))
        _choice(f"{p}.layout", self.layout, LAYOUTS)
        _check(self.max_row_bytes >= 64, f"{p}.max_row_bytes", self.max_row_bytes, ">= 64")
        _check(self.movielens_request_window_s > 0, f"{p}.movielens_request_window_s",
               self.movielens_request_window_s, "> 0")
        _check(self.kuairand_request_window_s > 0, f"{p}.kuairand_request_window_s",
               self.kuairand_request_window_s, "> 0")


@dataclass
class SynthConfig:
    """Synthetic impression logs with a planted long-range signal (docs/synthetic_data.md)."""
    users: int = 200
    events_median: int = 2000         # per-user event counts: log-normal around this ...
    events_sigma: float = 0.8
    events_min: int = 200             # ... clipped to [events_min, events_max]
    events_max: int = 50000
    items: int = 100000
    authors: int = 5000
    targets_min: int = 4              # targets per request: uniform in [min, max]
    targets_max: int = 12
    favorite_authors: int = 8         # long-term interests per user
    favorite_rate: float = 0.02       # share of impressions from long-term favourites
    short_term_rate: float = 0.3      # share of impressions from the drifting interest
    drift_every: int = 150            # impressions between short-term interest changes
    short_term_authors: int = 3       # authors in the drifting short-term interest
    request_gap_s: float = 1800.0     # mean seconds between one user's requests (exponential)
    seed: int = 0
    format: str = "csv"               # csv | jsonl | parquet
    files: int = 2
    start_ts: int = 1_600_000_000     # seconds

    def validate(self, p: str = "synth") -> None:
        for name in ("users", "events_median", "events_min", "items", "authors", "targets_min",
                     "favorite_authors", "drift_every", "short_term_authors", "files"):
            _check(getattr(self, name) >= 1, f"{p}.{name}", getattr(self, name), ">= 1")
        _check(self.events_max >= self.events_min, f"{p}.events_max", self.events_max,
               f">= synth.events_min ({self.events_min})")
        _check(self.targets_max >= self.targets_min, f"{p}.targets_max", self.targets_max,
               f">= synth.targets_min ({self.targets_min})")
        _check(self.events_sigma >= 0, f"{p}.events_sigma", self.events_sigma, ">= 0")
        _check(self.favorite_authors < self.authors, f"{p}.favorite_authors",
               self.favorite_authors, f"< synth.authors ({self.authors})")
        for name in ("favorite_rate", "short_term_rate"):
            _check(0 <= getattr(self, name) <= 1, f"{p}.{name}", getattr(self, name), "in [0, 1]")
        _check(self.favorite_rate + self.short_term_rate <= 1, f"{p}.short_term_rate",
               self.short_term_rate, "such that favorite_rate + short_term_rate <= 1")
        _choice(f"{p}.format", self.format, SYNTH_FORMATS)
        _check(self.request_gap_s >= 1, f"{p}.request_gap_s", self.request_gap_s, ">= 1")
        _check(self.short_term_authors <= self.authors, f"{p}.short_term_authors",
               self.short_term_authors, f"<= synth.authors ({self.authors})")


PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
SYNTH_FORMATS = ("csv", "jsonl", "parquet")   # synth.format
INPUT_FORMATS = SYNTH_FORMATS + ("movielens", "kuairand")  # data.format
LAYOUTS = ("request", "pointwise")          # data.layout
CACHE_DTYPES = ("float32", "bfloat16")  # export.cache_dtype: the dtype of the served user cache
ATTENTION_FORMS = ("auto", "reordered", "projected")  # STCA; model/flops.py has the costs
RECENCY_MODES = ("token", "attention")  # model.recency: where the event age enters the model
ID_MATCH_FIELDS = ("item", "author")
OPTIMIZERS = ("lazy_adam", "adam", "adamw", "adagrad")
JIT_MODES = ("auto", "true", "false")
# Upper bounds far above any real run and low enough for TensorFlow to hold (int32 tensor
# sizes, int64 step counters): an absurd value fails here, with its field, not mid-run.
MAX_STEPS = 10**12                # step counts (30 years at 1000 steps/s)
MAX_LENGTH = 1 << 20              # history lengths, length buckets, targets per example
MAX_SIZE = (1 << 31) - 1          # embedding rows, token budgets, buffers (int32 sizes)
MAX_WIDTH = 1 << 16               # d_model, head_width
MAX_DEPTH = 1024                  # layers, heads, ffn_mult, merge_k


@dataclass
class LongerConfig:
    """LONGER encoder (arXiv 2505.04421) options; used when model.encoder == 'longer'.

    Its depth is 1 + self_attn_layers (model.num_layers is STCA's and is not used).
    """
    merge_k: int = 4                  # adjacent history tokens merged into one; 1 = off
    merge_mode: str = "concat"        # concat | innertrans (a 1-layer transformer per group)
    recent_k: int = 32                # most recent merged tokens used as extra queries
    self_attn_layers: int = 2         # causal self-attention layers over the short set

    def validate(self, p: str = "model.longer") -> None:
        _check(self.merge_k >= 1, f"{p}.merge_k", self.merge_k, ">= 1")
        _choice(f"{p}.merge_mode", self.merge_mode, ("concat", "innertrans"))
        _check(self.merge_mode == "concat" or self.merge_k > 1, f"{p}.merge_mode",
               self.merge_mode, f"'concat' when {p}.merge_k is 1 (merging off); "
               "'innertrans' needs merge_k >= 2")
        _check(self.recent_k >= 0, f"{p}.recent_k", self.recent_k, ">= 0")
        _check(self.self_attn_layers >= 1, f"{p}.self_attn_layers", self.self_attn_layers, ">= 1")
        _at_most(self, p, MAX_DEPTH, "merge_k", "self_attn_layers")
        _at_most(self, p, MAX_LENGTH, "recent_k")


@dataclass
class ModelConfig:
    encoder: str = "stca"
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 3
    ffn_mult: int = 2                 # SwiGLU inner width = ffn_mult * d_model
    item_buckets: int = 200_003       # int64 IDs are hashed into these many rows
    author_buckets: int = 20_011
    user_buckets: int = 100_003
    action_buckets: int = 256
    time_buckets: int = 64            # log-bucketed (request_ts - hist_ts)
    time_log_base: float = 1.5
    use_user_id: bool = True
    head: str = "rankmixer"
    head_layers: int = 2
    head_width: int = 128
    dropout: float = 0.0
    rlb: bool = True                  # False: point-wise mode, history copied per target
    recompute: bool = False           # activation recomputation of per-layer history blocks
    precision: str = "float32"        # float32 | mixed_bfloat16 | mixed_float16
    # Attention additions to the papers (docs/model.md, "Deviations from the paper"):
    # a learned logit bonus for history events whose raw ID equals the target's, per field
    # (empty list: off, the paper's attention); read by STCA (every layer) and LONGER
    # (layer 1); encoders without `supports_id_match` ignore it. exp(8) ~ 3000: at the
    # start one match outweighs a few thousand unrelated events, the scale of a training
    # window. attention_sink: a learned sink logit per
    # head (off: measured no gain, docs/results.md).
    id_match: list[str] = field(default_factory=lambda: ["item", "author"])
    id_match_init: float = 8.0        # initial logit bonus of a match
    attention_sink: bool = False
    # STCA's attention form: auto picks the cheaper by the FLOP model (model/flops.py):
    # the paper's reordered form for few targets per request, projected K / V for many.
    attention_form: str = "auto"      # auto | reordered | projected
    # Where an event's age (request_ts - hist_ts, time_buckets log buckets) enters: "token"
    # embeds it in every event token (the user cache then depends on request_ts);
    # "attention" keeps the tokens request-free and adds a learned logit per (age bucket,
    # head) in every attention layer at scoring time, so a user cache can be extended with
    # new events (RankingModel.extend_user). Needs an encoder with supports_recency_bias.
    recency: str = "token"
    longer: LongerConfig = field(default_factory=LongerConfig)

    def validate(self, p: str = "model") -> None:
        # model.encoder / model.head name registered components: model/registry.py checks
        # them (with model.recompute) where the model is built; core cannot see model/.
        _check(isinstance(self.encoder, str) and self.encoder != "", f"{p}.encoder",
               self.encoder, "the name of a registered encoder (model/registry.py)")
        _check(isinstance(self.head, str) and self.head != "", f"{p}.head", self.head,
               "the name of a registered head (model/registry.py)")
        _choice(f"{p}.precision", self.precision, PRECISIONS)
        _choice(f"{p}.attention_form", self.attention_form, ATTENTION_FORMS)
        _choice(f"{p}.recency", self.recency, RECENCY_MODES)
        for name in ("d_model", "num_heads", "num_layers", "ffn_mult", "item_buckets",
                     "author_buckets", "user_buckets", "action_buckets", "time_buckets",
                     "head_layers", "head_width"):
            _check(getattr(self, name) >= 1, f"{p}.{name}", getattr(self, name), ">= 1")
        _check(self.d_model % self.num_heads == 0, f"{p}.num_heads", self.num_heads,
               f"a divisor of model.d_model ({self.d_model})")
        _at_most(self, p, MAX_WIDTH, "d_model", "head_width")
        _at_most(self, p, MAX_DEPTH, "num_heads", "num_layers", "ffn_mult", "head_layers")
        _at_most(self, p, MAX_SIZE, "item_buckets", "author_buckets", "user_buckets",
                 "action_buckets", "time_buckets")
        _finite(self, p, "time_log_base", "id_match_init")
        _check(self.time_log_base > 1.0, f"{p}.time_log_base", self.time_log_base, "> 1")
        _check(0.0 <= self.dropout < 1.0, f"{p}.dropout", self.dropout, "in [0, 1)")
        for i, name in enumerate(self.id_match):
            _choice(f"{p}.id_match[{i}]", name, ID_MATCH_FIELDS)
        _check(len(set(self.id_match)) == len(self.id_match), f"{p}.id_match", self.id_match,
               "a list without repeats")
        self.longer.validate(f"{p}.longer")


@dataclass
class LengthSamplerConfig:
    """Per-example training history length L = l_min + s (l_max - l_min), s ~ Beta(a, b)."""
    mode: str = "beta"                # beta (length-extrapolative) | fixed (= l_max)
    l_min: int = 64
    l_max: int = 1024
    beta_a: float = 0.4
    beta_b: float = 0.8
    multiple: int = 8                 # sampled lengths are rounded up to this multiple

    def validate(self, p: str = "train.length") -> None:
        _choice(f"{p}.mode", self.mode, ("beta", "fixed"))
        _check(self.l_min >= 1, f"{p}.l_min", self.l_min, ">= 1")
        _check(self.l_max >= self.l_min, f"{p}.l_max", self.l_max,
               f">= train.length.l_min ({self.l_min})")
        _check(self.beta_a > 0, f"{p}.beta_a", self.beta_a, "> 0")
        _check(self.beta_b > 0, f"{p}.beta_b", self.beta_b, "> 0")
        _check(self.multiple >= 1, f"{p}.multiple", self.multiple, ">= 1")
        _at_most(self, p, MAX_LENGTH, "l_min", "l_max", "multiple")
        _finite(self, p, "beta_a", "beta_b")
        # Sampled lengths are capped at l_max; a multiple keeps every length a multiple.
        _check(self.l_max % self.multiple == 0, f"{p}.l_max", self.l_max,
               f"a multiple of train.length.multiple ({self.multiple})")


@dataclass
class TrainConfig:
    length: LengthSamplerConfig = field(default_factory=LengthSamplerConfig)
    token_budget: int = 65536         # requests x padded history length per global batch
    # Padded history lengths. Boundaries above the first one >= length.l_max are unused in
    # training (free headroom for a larger l_max); evaluation has its own buckets.
    bucket_boundaries: list[int] = field(
        default_factory=lambda: [128, 256, 512, 1024, 2048, 4096])
    max_targets: int = 16             # targets per example; longer requests are split
    shuffle_buffer: int = 2048
    steps: int = 1000
    # lazy_adam (Adam with row-sparse embedding updates, model/lazy_adam.py; dense
    # weights get Adam's rule unchanged) | adam (dense: every table row decays every step)
    # | adamw | adagrad
    optimizer: str = "lazy_adam"
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    decay: str = "cosine"             # cosine | none
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    clip_norm: float = 1.0            # global-norm gradient clipping; 0 disables
    strategy: str = "default"         # default | mirrored | multi_worker
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    log_every: int = 50
    seed: int = 0
    deterministic: bool = False       # deterministic input order (tests, parity runs)
    # Non-chief workers keep their final checkpoint in MODEL_DIR/.worker-<i> (consistency
    # checks); by default they are deleted, only the chief's checkpoints are the run's.
    keep_worker_checkpoints: bool = False
    # XLA-compile the training step (tf.function(jit_compile=True)): auto | true | false.
    # auto = on when training on GPUs / TPUs, off on CPU (measured slower there at every d
    # and L tried, plus one 18-32 s compile per padded length: benchmarks/bench_xla.py)
    # and under multi_worker (XLA has no CPU kernels for its collectives).
    jit_compile: str = "auto"

    def validate(self, p: str = "train") -> None:
        self.length.validate(f"{p}.length")
        _check(self.token_budget >= 1, f"{p}.token_budget", self.token_budget, ">= 1")
        _check(len(self.bucket_boundaries) >= 1 and all(b >= 1 for b in self.bucket_boundaries)
               and list(self.bucket_boundaries) == sorted(set(self.bucket_boundaries)),
               f"{p}.bucket_boundaries", self.bucket_boundaries,
               "a non-empty, strictly increasing list of positive lengths")
        # Histories are truncated to the last boundary: a longer l_max would never be seen.
        _check(self.length.l_max <= self.bucket_boundaries[-1], f"{p}.length.l_max",
               self.length.l_max, f"<= the last of train.bucket_boundaries "
               f"({self.bucket_boundaries[-1]}); add a larger bucket or lower l_max")
        _check(self.max_targets >= 1, f"{p}.max_targets", self.max_targets, ">= 1")
        _check(self.shuffle_buffer >= 0, f"{p}.shuffle_buffer", self.shuffle_buffer, ">= 0")
        _check(self.steps >= 1, f"{p}.steps", self.steps, ">= 1")
        _at_most(self, p, MAX_STEPS, "steps", "warmup_steps", "checkpoint_every", "log_every")
        _at_most(self, p, MAX_SIZE, "token_budget", "shuffle_buffer", "keep_checkpoints")
        _at_most(self, p, MAX_LENGTH, "max_targets")
        _check(self.bucket_boundaries[-1] <= MAX_LENGTH, f"{p}.bucket_boundaries",
               self.bucket_boundaries, f"lengths <= {MAX_LENGTH}")
        # NumPy seeds the Python, NumPy and TF generators from it: 32 bits, non-negative.
        _check(0 <= self.seed < 1 << 32, f"{p}.seed", self.seed, f"in [0, {(1 << 32) - 1}]")
        _finite(self, p, "learning_rate", "weight_decay", "clip_norm")
        _choice(f"{p}.optimizer", self.optimizer, OPTIMIZERS)
        _check(self.learning_rate > 0, f"{p}.learning_rate", self.learning_rate, "> 0")
        _check(self.warmup_steps >= 0, f"{p}.warmup_steps", self.warmup_steps, ">= 0")
        _choice(f"{p}.decay", self.decay, ("cosine", "none"))
        _check(0 <= self.min_lr_ratio <= 1, f"{p}.min_lr_ratio", self.min_lr_ratio, "in [0, 1]")
        _check(self.weight_decay >= 0, f"{p}.weight_decay", self.weight_decay, ">= 0")
        _check(self.clip_norm >= 0, f"{p}.clip_norm", self.clip_norm, ">= 0")
        _choice(f"{p}.strategy", self.strategy, ("default", "mirrored", "multi_worker"))
        for name in ("checkpoint_every", "keep_checkpoints", "log_every"):
            _check(getattr(self, name) >= 1, f"{p}.{name}", getattr(self, name), ">= 1")
        # XLA on CPU has no kernels for the collectives MultiWorkerMirroredStrategy puts in
        # the step (CollectiveGatherV2): it fails at the first step, so refuse it here.
        _choice(f"{p}.jit_compile", self.jit_compile, JIT_MODES)
        _check(not (self.jit_compile == "true" and self.strategy == "multi_worker"),
               f"{p}.jit_compile", self.jit_compile, "false or auto when train.strategy is "
               "'multi_worker' (XLA has no kernels for its collective ops)")

    def use_xla(self, accelerator: bool) -> tuple[bool, str]:
        """(XLA on?, why) for the training step, resolving jit_compile=auto.

        Args:
          accelerator: whether the step runs on GPUs or TPUs (False: CPU only).
        """
        if self.jit_compile != "auto":
            on = self.jit_compile == "true"
            return on, f"XLA {'on' if on else 'off'}: train.jit_compile={self.jit_compile}"
        if self.strategy == "multi_worker":
            return False, ("XLA off: train.jit_compile=auto and train.strategy=multi_worker "
                           "(XLA has no kernels for its collective ops)")
        if not accelerator:
            return False, ("XLA off: train.jit_compile=auto on CPU (the XLA step measured "
                           "slower there, plus one compile per padded length; "
                           "train.jit_compile=true forces it)")
        return True, "XLA on: train.jit_compile=auto on an accelerator"


@dataclass
class EvalConfig:
    lengths: list[int] = field(default_factory=lambda: [128, 256, 512, 1024, 2048, 4096])
    token_budget: int = 131072
    max_requests: int = 0             # 0: the whole eval split
    # Also score every length without history and with another user's history, and report
    # the AUC differences ("does the model use the history?"); about 2x the eval time.
    history_ablation: bool = True

    def validate(self, p: str = "eval") -> None:
        _check(len(self.lengths) >= 1 and all(v >= 1 for v in self.lengths), f"{p}.lengths",
               self.lengths, "a non-empty list of positive lengths")
        _check(self.token_budget >= 1, f"{p}.token_budget", self.token_budget, ">= 1")
        _check(self.max_requests >= 0, f"{p}.max_requests", self.max_requests, ">= 0")
        _check(max(self.lengths) <= MAX_LENGTH, f"{p}.lengths", self.lengths,
               f"lengths <= {MAX_LENGTH}")
        _at_most(self, p, MAX_SIZE, "token_budget")


@dataclass
class ExportConfig:
    model_name: str = "stca"
    version: int = 0                  # 0: next free version number under the export base
    cache_dtype: str = "float32"      # dtype of the exported user_cache: float32 | bfloat16
    # Compute dtype of the export: float32 (exact, default, whatever training used) or
    # as_trained (model.precision, e.g. mixed_bfloat16 on CPUs with AMX).
    precision: str = "float32"
    warmup_history: int = 1024        # history length of the warmup requests
    warmup_candidates: int = 64
    verify_history: int = 10240       # longest history in verify-export's parity batch
    verify_requests: int = 256        # held-out requests verify-export scores; 0 = all

    def validate(self, p: str = "export") -> None:
        # The name is a directory under the export base, a URL path segment and a quoted
        # models.config string: only plain names, so it can never leave the base.
        name = self.model_name
        _check(isinstance(name, str) and 0 < len(name) <= 128 and name.isascii()
               and all(c.isalnum() or c in "_.-" for c in name) and name[0] not in ".-",
               f"{p}.model_name", name, "a plain directory name: letters, digits, '_', '-' "
               "and '.', not starting with '.' or '-' (no '/', '\\', '.' or '..')")
        _check(self.version >= 0, f"{p}.version", self.version, ">= 0")
        _choice(f"{p}.cache_dtype", self.cache_dtype, CACHE_DTYPES)
        _choice(f"{p}.precision", self.precision, ("float32", "as_trained"))
        _check(self.verify_history >= 1, f"{p}.verify_history", self.verify_history, ">= 1")
        _check(self.verify_requests >= 0, f"{p}.verify_requests", self.verify_requests, ">= 0")
        _check(self.warmup_history >= 1, f"{p}.warmup_history", self.warmup_history, ">= 1")
        _check(self.warmup_candidates >= 1, f"{p}.warmup_candidates", self.warmup_candidates,
               ">= 1")
        _at_most(self, p, MAX_LENGTH, "warmup_history", "warmup_candidates", "verify_history")
        _at_most(self, p, MAX_SIZE, "verify_requests")


@dataclass
class ServingConfig:
    max_history: int = 10240          # longest history the client accepts
    max_candidates: int = 4096
    # Candidates per score_candidates call. Every call carries the user's cache and pays a
    # fixed cost (2.7 ms at L = 1024, d = 64, measured), so fewer, larger calls are faster;
    # smaller chunks only to bound a call's latency or message size.
    chunk_size: int = 1024
    cache_bytes: int = 256 << 20      # LRU user-cache capacity
    cache_ttl_s: float = 300.0
    timeout_s: float = 10.0           # per call of the REST / gRPC transports
    # gRPC over TLS (GrpcTransport.from_config), PEM file paths: root CAs ("" = gRPC's
    # bundled roots); a client certificate + key only for servers requiring mutual TLS;
    # the name the server certificate carries when it is not the target's host.
    grpc_tls: bool = False
    grpc_root_certs: str = ""
    grpc_client_cert: str = ""
    grpc_client_key: str = ""
    grpc_server_name: str = ""

    def validate(self, p: str = "serving") -> None:
        # Types too: a ServingConfig is often built in code (RankingClient), not from YAML.
        for name, low in (("max_history", 1), ("max_candidates", 1), ("chunk_size", 1),
                          ("cache_bytes", 0)):
            value = getattr(self, name)
            _check(isinstance(value, int) and not isinstance(value, bool) and value >= low,
                   f"{p}.{name}", value, f"an integer >= {low}")
        _at_most(self, p, MAX_LENGTH, "max_history", "max_candidates", "chunk_size")
        for name in ("cache_ttl_s", "timeout_s"):
            value = getattr(self, name)
            _check(isinstance(value, (int, float)) and not isinstance(value, bool)
                   and value > 0, f"{p}.{name}", value, "a number of seconds > 0")
        # Sockets refuse timeouts beyond time_t (OverflowError on .inf).
        _check(self.timeout_s <= 1e9, f"{p}.timeout_s", self.timeout_s, "<= 1e9 seconds")
        _check(isinstance(self.grpc_tls, bool), f"{p}.grpc_tls", self.grpc_tls, "true or false")
        for name in ("grpc_root_certs", "grpc_client_cert", "grpc_client_key",
                     "grpc_server_name"):
            value = getattr(self, name)
            _check(isinstance(value, str), f"{p}.{name}", value, "a string (a path or a name)")
            _check(self.grpc_tls or not value, f"{p}.{name}", value,
                   f"empty unless {p}.grpc_tls=true (TLS is off)")
        _check(bool(self.grpc_client_cert) == bool(self.grpc_client_key),
               f"{p}.grpc_client_key", self.grpc_client_key,
               f"set together with {p}.grpc_client_cert (mutual TLS needs both, or neither)")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)

    def validate(self) -> "Config":
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate(f.name)
        return self

    @property
    def tasks(self) -> list[str]:
        return list(self.data.schema.tasks)


# ---------------------------------------------------------------------------------------
# Building configs from dicts, YAML and --set overrides.

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def _coerce(path: str, value: Any, tp: Any) -> Any:
    """Converts a YAML/CLI value to the annotated field type or raises ConfigError."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping of fields, got {value!r}")
        return _from_dict(tp, value, path)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):  # "a,b,c" from the command line
            value = [v for v in value.split(",") if v != ""]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]  # `--lengths 256` / `eval.lengths=256`: a one-element list
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [_coerce(f"{path}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        number = None
        if isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str):
            try:
                number = int(value.replace("_", ""))
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        # Every integer reaches TensorFlow or NumPy as an int64 at most.
        _check(INT64_MIN <= number <= INT64_MAX, path, number,
               "a signed 64-bit integer, in [-2**63, 2**63 - 1]")
        return number
    if tp is float:
        try:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):
                return float(value)
        except ValueError:
            pass
        except OverflowError:  # an int beyond float range, e.g. 10**400
            raise ConfigError(f"{path}: {str(value)[:24]}... ({len(str(value))} digits) is out "
                              "of the range of a number") from None
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, bool):  # YAML `true` for a field that also takes words (auto)
            return "true" if value else "false"
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return "" if value is None else str(value)
    raise TypeError(f"unsupported config field type {tp!r} at {path}")


def _from_dict(cls: type, values: dict, path: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        where = path or "config"
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed fields: "
                          + ", ".join(sorted(names)))
    # Start from the defaults so a partial YAML section keeps every field it does not name.
    result = cls()
    for k, v in values.items():
        setattr(result, k, _coerce(f"{path}.{k}" if path else k, v, hints[k]))
    return result


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(values: dict | None) -> Config:
    return _from_dict(Config, values or {})


class _Loader(yaml.SafeLoader):
    """YAML's safe loader without its implicit dates: `2015-01-01` stays a string (fields
    that take dates check them), and a bad date such as 1990-13-01 is not a ValueError."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506  (a SafeLoader subclass)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Splits 'a.b.c=value' into (['a','b','c'], yaml-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. model.d_model=128")
    key, raw = text.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = _yaml(raw) if raw.strip() != "" else ""
    except yaml.YAMLError:
        value = raw
    return keys, value


def apply_overrides(values: dict, overrides: Iterable[str]) -> dict:
    for text in overrides:
        keys, value = parse_override(text)
        node = values
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: {k} is not a section")
        node[keys[-1]] = value
    return values


def read_yaml(path: str) -> dict:
    """The sections of a YAML config file; ConfigError (one line, naming the file) when it
    cannot be read or is not a YAML mapping. Only plain YAML: tags such as !!python/object
    are refused (safe_load), never run."""
    try:
        loaded = _yaml(fileio.read_text(path))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ConfigError(f"{path}: cannot read the config file ({reason})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}: invalid YAML{where}: {' '.join(problem.split())}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return loaded or {}


def _merge(into: dict, values: dict) -> dict:
    """Field-by-field update: nested sections are merged, other values replaced."""
    for k, v in values.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v
    return into


def load_config(path: str | None = None, overrides: Iterable[str] = (),
                validate: bool = True, base: str | None = None) -> Config:
    """YAML `base` (optional, e.g. a model dir's saved config) <- YAML file (optional) <-
    `key=value` overrides -> validated Config; each source overrides the fields it names."""
    values: dict = {}
    for source in (base, path):
        if source:
            _merge(values, read_yaml(source))
    values = apply_overrides(values, overrides)
    cfg = config_from_dict(values)
    return cfg.validate() if validate else cfg


# Model fields that change how a trained model computes, not which weights it has: a run
# may resume, evaluate or export a model with other values (e.g. export computes float32).
RUNTIME_MODEL_FIELDS = ("dropout", "recompute", "precision", "id_match_init")


def architecture_diff(trained: Config, cfg: Config) -> list[str]:
    """The fields where cfg describes another model than the one `trained` describes: every
    model.* field but RUNTIME_MODEL_FIELDS, and data.schema.tasks (one output per task).

    Returns:
      e.g. ["model.d_model: 32 (trained: 16)"]; empty when cfg builds the trained model.
    """
    def flat(section: dict, prefix: str) -> dict:
        out = {}
        for k, v in section.items():
            out.update(flat(v, f"{prefix}.{k}") if isinstance(v, dict) else {f"{prefix}.{k}": v})
        return out

    def fields(c: Config) -> dict:
        out = flat(config_to_dict(c.model), "model")
        for name in RUNTIME_MODEL_FIELDS:
            out.pop(f"model.{name}")
        out["data.schema.tasks"] = list(c.tasks)
        return out

    old, new = fields(trained), fields(cfg)
    return [f"{k}: {new[k]!r} (trained: {old[k]!r})" for k in new if new[k] != old[k]]


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def save_config(cfg: Config, directory: str, name: str = "config.yaml") -> str:
    """Writes the resolved config into `directory` (local or remote) and returns the path."""
    fileio.makedirs(directory)
    path = fileio.join(directory, name)
    fileio.write_text(path, dump_config(cfg))
    return path
