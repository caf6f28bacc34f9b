"""tf.data input: shard listing, length-extrapolative sampling, token-budget bucketing.

Records are request-grouped tf.train.Examples (`core.features`). Batches are built by
`features.model_inputs` only; this module decides which events and targets each example
keeps and which examples share a batch:

    shards ─interleave─► serialized ─batch(32)─► parse_examples ─► sample L, keep the L most
    recent events, split targets into pieces of <= max_targets ─unbatch─► shuffle ─►
    group by length bucket (batch = budget // bucket rows) ─► model_inputs(pad to bucket, M)

Every batch has a padded history length from a small fixed set of buckets and
M == train.max_targets, so a step function with `element_signature()` traces once.

Example:
    cfg = load_config("configs/demo.yaml")
    ds = train_dataset("runs/demo/data", cfg)
    step = tf.function(step_fn, input_signature=[element_signature(cfg)])
    for inputs, labels in ds.take(10):
        step((inputs, labels))
"""
from __future__ import annotations

import functools
import re
from typing import Sequence

import numpy as np
import tensorflow as tf

from core import features, fileio
from core.config import Config, ConfigError, LengthSamplerConfig
from core.errors import DataError

AUTOTUNE = tf.data.AUTOTUNE
# Records per vectorized parse_examples call. Measured on 10240-event records, 2 CPU cores:
# 2.07k records/s (batch 32) vs 1.55k/s for per-record parse_example (1.83k/s batch 8,
# 1.92k/s batch 128).
PARSE_BATCH = 32
READ_CYCLE = 8                 # shards read concurrently per pipeline
READ_BUFFER = 8 << 20          # bytes of read-ahead per shard (large for gs:// and s3://)
EVAL_MIN_BUCKET = 64           # smallest evaluation bucket (then steps of 1.5x / 4/3x)
TARGET_START = "target_start"  # added to parsed examples: offset of a piece's first target
# What reading a bad shard raises: DataLossError (truncated, or not a TFRecord file),
# InvalidArgumentError (a record that is not a request Example, or lacks a task's labels),
# UnicodeDecodeError (TensorFlow quoting a binary record in its message).
READ_ERRORS = (tf.errors.DataLossError, tf.errors.InvalidArgumentError, UnicodeDecodeError)


def list_shards(data_dir: str, split: str) -> list[str]:
    """Sorted TFRecord shards DATA_DIR/SPLIT/*.tfrecord* (local, gs://, s3://).

    Raises:
      FileNotFoundError naming the directory when nothing matches.
    """
    directory = fileio.join(data_dir, split)
    files = fileio.glob(fileio.join(directory, "*.tfrecord*"))
    if not files:
        raise FileNotFoundError(f"no TFRecord shards (*.tfrecord*) in {directory}; expected "
                                f"the output of `stca preprocess --out {data_dir}`")
    return files


def compression_type(path: str) -> str:
    """'GZIP' for *.gz, '' for other suffixes that read as plain TFRecords, else 'GZIP'.

    Files without a .gz suffix are probed by reading one record: a plain reader fails the
    length CRC on a gzip stream before reading a body, so the probe is cheap.
    """
    if path.endswith((".gz", ".gzip")):
        return "GZIP"
    for kind in ("", "GZIP"):
        try:
            for _ in tf.data.TFRecordDataset(path, compression_type=kind).take(1):
                pass
            return kind
        except tf.errors.DataLossError:
            continue
    raise DataError(f"{path}: neither a plain nor a GZIP TFRecord file")


def _reason(error: Exception) -> str:
    """One short line from a TensorFlow read / parse error."""
    if isinstance(error, UnicodeDecodeError):
        return "a record is not a tf.train.Example"
    text = getattr(error, "message", None) or str(error)
    text = re.sub(r"\{\{[^}]*\}\}", "", text).strip().split("\n")[0]
    text = re.sub(r"\s*\[Op:\w+\].*", "", text)
    if "Could not parse example input" in text:
        return "a record is not a tf.train.Example"
    return text[:300]


def _check_shard(path: str, tasks: Sequence[str], records: int | None) -> int:
    """Reads (the first `records` or all) records of a shard and parses them as requests
    with labels for `tasks`; returns how many it read. DataError naming the shard."""
    ds = tf.data.TFRecordDataset(path, compression_type(path))
    if records is not None:
        ds = ds.take(records)
    count = 0
    try:
        for serialized in ds.batch(PARSE_BATCH):
            features.parse_examples(serialized, tasks)
            count += int(serialized.shape[0])
    except READ_ERRORS as e:
        raise DataError(f"{path}: {_reason(e)}") from None
    return count


def check_split(data_dir: str, split: str, tasks: Sequence[str]) -> list[str]:
    """The shards of DATA_DIR/SPLIT, after a quick check before any work: the first record
    of every shard reads and parses as a request with labels for `tasks`, and the split
    holds at least one record (an empty split would make training wait forever).

    Raises:
      DataError naming the directory or the shard and the problem.
    """
    try:
        files = list_shards(data_dir, split)
    except FileNotFoundError as e:
        raise DataError(f"--data: {e}") from None
    if not sum(_check_shard(f, tasks, records=1) for f in files):
        raise DataError(f"--data: the {split} split is empty: its {len(files)} shard(s) in "
                        f"{fileio.join(data_dir, split)} hold no records")
    return files


def find_bad_shard(data_dir: str, split: str, tasks: Sequence[str]) -> DataError | None:
    """After a read of DATA_DIR/SPLIT failed with one of READ_ERRORS (whose messages name
    no file): reads every shard to the end and returns the DataError naming the first bad
    one, or None when all of them read (the failure was not the data's)."""
    for path in list_shards(data_dir, split):
        try:
            _check_shard(path, tasks, records=None)
        except DataError as e:
            return e
    return None


def sample_lengths(n, cfg: LengthSamplerConfig, seed) -> tf.Tensor:
    """Per-example history lengths L = l_min + s (l_max - l_min), s ~ Beta(a, b).

    L is rounded up to a multiple of `cfg.multiple` and capped at l_max; mode 'fixed'
    gives L = l_max. Beta = X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b), computed as
    sigmoid(log X - log Y) with log Gamma(a) = log Gamma(a + 1) + log(U) / a so that the
    U-shaped a, b < 1 never underflow to 0 / 0.

    Args:
      n: number of lengths (int or scalar tensor).
      cfg: train.length.
      seed: stateless seed, shape [2] integer tensor.

    Returns:
      [n] int64.

    Example:
      sample_lengths(4, LengthSamplerConfig(), tf.constant([0, 1]))  # e.g. [72, 1024, 64, 96]
    """
    if cfg.mode == "fixed":
        return tf.fill([n], tf.constant(cfg.l_max, tf.int64))
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)

    def log_gamma(alpha, s_gamma, s_uniform):
        g = tf.random.stateless_gamma([n], s_gamma, alpha + 1.0, dtype=tf.float64)
        u = tf.random.stateless_uniform([n], s_uniform, dtype=tf.float64)
        return tf.math.log(g) + tf.math.log1p(-u) / alpha  # 1 - u in (0, 1]

    s = tf.math.sigmoid(log_gamma(cfg.beta_a, seeds[0], seeds[1])
                        - log_gamma(cfg.beta_b, seeds[2], seeds[3]))
    raw = cfg.l_min + s * float(cfg.l_max - cfg.l_min)
    rounded = tf.math.ceil(raw / cfg.multiple) * cfg.multiple
    return tf.minimum(tf.cast(rounded, tf.int64), cfg.l_max)


def train_buckets(cfg: Config) -> list[int]:
    """Padded history lengths used in training: boundaries up to the first >= l_max."""
    length = cfg.train.length
    if length.mode == "fixed":
        return [length.l_max]
    bounds = list(cfg.train.bucket_boundaries)
    return [b for b in bounds if b < length.l_max] + [min(b for b in bounds if b >= length.l_max)]


def eval_buckets(length: int) -> list[int]:
    """Powers of two and 1.5x powers of two from EVAL_MIN_BUCKET below `length` (64, 96,
    128, 192, ...), then `length` itself: the history groups of evaluation batches (rows =
    eval.token_budget // bucket). A batch is padded to its longest history, so the rows of
    one batch differ by at most 1.5x in length. Evaluation traces one function for every
    shape, so more groups cost no tracing."""
    out, b = [], EVAL_MIN_BUCKET
    while b < length:
        out.append(b)
        if b * 3 // 2 < length:
            out.append(b * 3 // 2)
        b *= 2
    return out + [length]


def eval_target_buckets(max_targets: int) -> list[int]:
    """Target-count groups of evaluation batches: powers of two from 4 below max_targets,
    then max_targets (a request of 5 candidates shares a batch padded to at most 8, not to
    max_targets)."""
    out, b = [], 4
    while b < max_targets:
        out.append(b)
        b *= 2
    return out + [max_targets]


def element_signature(cfg: Config, meta: bool = False) -> tuple:
    """Relaxed TensorSpecs (batch and length dims None) of a batch, for input_signature.

    Returns (inputs, labels), or (inputs, labels, meta) for `eval_dataset` batches.
    """
    labels = {t: tf.TensorSpec([None, None], tf.float32, name=f"label_{t}") for t in cfg.tasks}
    spec = (features.input_signature(), labels)
    if meta:
        spec += ({n: tf.TensorSpec([None], tf.int64, name=n)
                  for n in ("user_id", "request_id", TARGET_START)},)
    return spec


def _take(parsed: dict, tasks: Sequence[str], rows, hist_keep, tgt_start, tgt_len) -> dict:
    """New examples from parsed rows: row `rows[i]` keeping its `hist_keep[i]` most recent
    events and the targets [tgt_start[i], tgt_start[i] + tgt_len[i])."""
    def gather(rt, start, length):
        idx = tf.ragged.range(start, start + length)
        return tf.RaggedTensor.from_row_splits(tf.gather(rt.values, idx.values),
                                               idx.row_splits, validate=False)

    out = {n: tf.gather(parsed[n], rows) for n in features.SCALAR_FEATURES}
    for n in features.HISTORY_FEATURES:
        out[n] = gather(parsed[n], tf.gather(parsed[n].row_starts(), rows), hist_keep)
    for n in features.TARGET_FEATURES + tuple(features.label_feature(t) for t in tasks):
        out[n] = gather(parsed[n], tf.gather(parsed[n].row_starts(), rows) + tgt_start, tgt_len)
    out[TARGET_START] = tgt_start
    return out


def _prepare(serialized, tasks, max_targets: int, keep_fn) -> dict:
    """[k] serialized -> examples: history prefix of keep_fn(stored lengths) events,
    targets split into pieces of <= max_targets (requests without targets are dropped)."""
    parsed = features.parse_examples(serialized, tasks)
    stored = parsed["hist_item_id"].row_lengths()
    keep = keep_fn(stored)
    m = parsed["tgt_item_id"].row_lengths()
    pieces = (m + max_targets - 1) // max_targets
    rows = tf.repeat(tf.range(tf.size(m, out_type=tf.int64)), pieces)
    tgt_start = tf.ragged.range(pieces).values * max_targets
    tgt_len = tf.minimum(tf.gather(m, rows) - tgt_start, max_targets)
    return _take(parsed, tasks, rows, tf.gather(keep, rows), tgt_start, tgt_len)


def _batch_by_bucket(ds, tasks, buckets: list[int], budget: int, max_targets: int,
                     with_meta: bool, target_buckets: list[int] | None = None):
    """Examples -> token-budget batches of one history bucket (rows x bucket <= budget).

    Training (no `target_buckets`): histories padded to their bucket and targets to
    max_targets, static shapes per bucket (one XLA compile each). Evaluation (with
    `target_buckets`, relaxed shapes): examples also grouped by target count, and each
    batch padded to its own longest history and largest target count, so neither padding
    to the bucket bound nor max_targets slots per row are scored.
    """
    bounds = tf.constant(buckets, tf.int64)
    sizes = [max(1, budget // b) for b in buckets]  # a longer-than-budget request: 1 row
    target_bounds = tf.constant(target_buckets or [max_targets], tf.int64)
    per_history = len(target_buckets or [max_targets])

    def bucket_of(length, bounds=bounds):
        return tf.searchsorted(bounds, tf.reshape(length, [1]), side="left",
                               out_type=tf.int64)[0]

    def key_of(ex):
        return (bucket_of(tf.size(ex["hist_item_id"], out_type=tf.int64)) * per_history
                + bucket_of(tf.size(ex["tgt_item_id"], out_type=tf.int64), target_bounds))

    ds = ds.group_by_window(
        key_func=key_of, reduce_func=lambda key, window: window.ragged_batch(max(sizes)),
        window_size_func=lambda key: tf.gather(tf.constant(sizes, tf.int64),
                                               key // per_history))
    pad_targets_to = None if target_buckets else max_targets

    def pad(parsed):
        if target_buckets:  # relaxed shapes: the batch's longest history, largest count
            inputs, labels = features.model_inputs(parsed, tasks)
        else:
            build = [functools.partial(features.model_inputs, parsed, tasks,
                                       pad_history_to=b, pad_targets_to=max_targets)
                     for b in buckets]
            if len(build) == 1:
                inputs, labels = build[0]()  # one bucket: fully static shapes
            else:
                key = bucket_of(tf.reduce_max(parsed["hist_item_id"].row_lengths()))
                inputs, labels = tf.switch_case(tf.cast(key, tf.int32), build)
        for t in tasks:
            labels[t] = tf.ensure_shape(labels[t], [None, pad_targets_to])
        if not with_meta:
            return inputs, labels
        meta = {"user_id": parsed["user_id"], "request_id": parsed["request_id"],
                TARGET_START: parsed[TARGET_START]}
        return inputs, labels, meta

    return ds.map(pad, num_parallel_calls=AUTOTUNE)


def _records(files: list[str], deterministic: bool, epochs: int | None = 1,
             shuffle_seed: int | None = None):
    """Parallel interleaved reads of (possibly GZIP) shards, file order reshuffled per
    epoch when `shuffle_seed` is given."""
    kinds = [compression_type(f) for f in files]
    ds = tf.data.Dataset.from_tensor_slices((files, kinds))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(files), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.repeat(epochs).interleave(
        lambda f, kind: tf.data.TFRecordDataset(f, kind, buffer_size=READ_BUFFER),
        cycle_length=min(len(files), READ_CYCLE), block_length=1,
        num_parallel_calls=AUTOTUNE, deterministic=deterministic)


def _per_pipeline_budget(cfg: Config, input_context) -> int:
    if input_context is None:
        return cfg.train.token_budget
    replicas = input_context.num_replicas_in_sync
    if cfg.train.token_budget % replicas:
        raise ConfigError(f"train.token_budget: {cfg.train.token_budget} is invalid; it must "
                          f"be divisible by the number of replicas ({replicas})")
    return input_context.get_per_replica_batch_size(cfg.train.token_budget)


def train_dataset(data_dir: str, cfg: Config,
                  input_context: tf.distribute.InputContext | None = None,
                  epochs: int | None = None, seed_offset: int = 0) -> tf.data.Dataset:
    """Training batches (inputs, labels) from DATA_DIR/train.

    Args:
      data_dir: preprocess output directory (local, gs://, s3://).
      cfg: the run config (train.*, data.schema.tasks).
      input_context: from `distribute_datasets_from_function`: this pipeline reads its shard
        (by file when there are >= as many files as pipelines, else by record) under a
        per-replica token budget train.token_budget / num_replicas_in_sync.
      epochs: None repeats forever (training); an int stops after that many passes.
      seed_offset: mixed into every seed with train.seed and the pipeline id (e.g. the
        step a run resumes from, so a resumed run does not replay the same order/lengths).

    Returns:
      Dataset of (inputs, labels) from `features.model_inputs`: history padded to a bucket
      of `train_buckets(cfg)`, targets padded to train.max_targets. Requests with more
      targets become several examples, each with the whole (sampled) history; requests
      without targets are skipped (nothing to learn from).

    Example:
      for inputs, labels in train_dataset("gs://bucket/data", cfg).take(2):
          inputs["hist_item_id"].shape  # e.g. [64, 1024], then [256, 256]
    """
    tc = cfg.train
    deterministic = tc.deterministic
    files = list_shards(data_dir, "train")
    n_pipes, pipe_id = 1, 0
    if input_context is not None:
        n_pipes, pipe_id = input_context.num_input_pipelines, input_context.input_pipeline_id
    by_file = n_pipes > 1 and len(files) >= n_pipes
    if by_file:
        files = files[pipe_id::n_pipes]
    by_record = n_pipes > 1 and not by_file
    # Record sharding needs the same record order in every pipeline.
    shuffle_files = not (deterministic or by_record)
    # Independent seeds per (train.seed, pipeline, offset); 31 bits fit every seed argument.
    seeds = np.random.SeedSequence([tc.seed, pipe_id, seed_offset]).generate_state(3) >> 1
    ds = _records(files, deterministic or by_record, epochs,
                  shuffle_seed=int(seeds[0]) if shuffle_files else None)
    if by_record:
        ds = ds.shard(n_pipes, pipe_id)
    buckets = train_buckets(cfg)
    base_seed = tf.constant([seeds[1], seeds[2]], tf.int64)

    def prepare(index, serialized):
        # One stateless seed per parse batch: reproducible, and new lengths every epoch.
        seed = tf.random.experimental.stateless_fold_in(base_seed, index)

        def keep(stored):
            sampled = sample_lengths(tf.size(stored), tc.length, seed)
            return tf.minimum(stored, tf.minimum(sampled, buckets[-1]))

        return _prepare(serialized, cfg.tasks, tc.max_targets, keep)

    ds = ds.batch(PARSE_BATCH).enumerate()
    ds = ds.map(prepare, num_parallel_calls=AUTOTUNE, deterministic=deterministic).unbatch()
    if not deterministic and tc.shuffle_buffer > 0:
        # Shuffled after truncation: an element is <= l_max events, not a 10k-event record.
        ds = ds.shuffle(tc.shuffle_buffer, seed=int(seeds[1]))
    ds = _batch_by_bucket(ds, cfg.tasks, buckets, _per_pipeline_budget(cfg, input_context),
                          tc.max_targets, with_meta=False)
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.prefetch(AUTOTUNE).with_options(options)


def eval_dataset(data_dir: str, cfg: Config, length: int,
                 split: str = "eval") -> tf.data.Dataset:
    """Evaluation batches (inputs, labels, meta) at one inference history length.

    Histories keep their `length` most recent events; requests with more than
    train.max_targets targets are split like in training, so every target is evaluated
    exactly once: target j of a batch row is target meta['target_start'] + j of request
    meta['request_id'] (valid for j < inputs['tgt_len']). Deterministic order, no shuffle,
    eval.token_budget batches grouped by history length (`eval_buckets(length)`) and
    target count (`eval_target_buckets`), each padded to its longest history and largest
    target count (shapes vary: use a relaxed signature); only the first
    eval.max_requests requests (in read order) when that is > 0.

    Args:
      data_dir: preprocess output directory (local, gs://, s3://).
      cfg: the run config (eval.*, train.max_targets, data.schema.tasks).
      length: inference history length (most recent events kept).
      split: subdirectory of data_dir to read.

    Returns:
      Dataset of (inputs, labels, meta); meta = {user_id, request_id, target_start} [B] int64.

    Example:
      for inputs, labels, meta in eval_dataset(data_dir, cfg, length=4096):
          logits = model(inputs)  # valid targets: features.target_mask(inputs["tgt_len"], M)
    """
    if length < 1:
        raise ValueError(f"eval length must be >= 1, got {length}")
    ds = _records(list_shards(data_dir, split), deterministic=True)
    if cfg.eval.max_requests > 0:
        ds = ds.take(cfg.eval.max_requests)
    max_targets = cfg.train.max_targets
    ds = ds.batch(PARSE_BATCH).map(
        lambda s: _prepare(s, cfg.tasks, max_targets, lambda n: tf.minimum(n, length)),
        num_parallel_calls=AUTOTUNE, deterministic=True).unbatch()
    ds = _batch_by_bucket(ds, cfg.tasks, eval_buckets(length), cfg.eval.token_budget,
                          max_targets, with_meta=True,
                          target_buckets=eval_target_buckets(max_targets))
    options = tf.data.Options()
    options.deterministic = True
    # No autotuning: with it, dropping the iterator at the end of the split blocked for
    # ~15 s in 2 of 5 runs at L = 4096 (the iterator's destructor waits for tf.data's
    # autotune thread); 0 of 6 without it, for ~10% more model time (docs/performance.md).
    options.autotune.enabled = False
    return ds.prefetch(AUTOTUNE).with_options(options)


def distributed_train_dataset(strategy: tf.distribute.Strategy, data_dir: str, cfg: Config,
                              seed_offset: int = 0):
    """Per-replica training batches under `strategy`: each input pipeline reads its shard
    of DATA_DIR/train with budget train.token_budget / num_replicas_in_sync
    (`train_dataset` with the strategy's InputContext; seed_offset as there).

    Example:
      dist = distributed_train_dataset(strategy, data_dir, cfg)
      step = tf.function(step_fn, input_signature=[dist.element_spec])  # traces once
      for batch in dist: step(batch)   # step_fn calls strategy.run
    """
    return strategy.distribute_datasets_from_function(
        lambda ctx: train_dataset(data_dir, cfg, ctx, seed_offset=seed_offset))
