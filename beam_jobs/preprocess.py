"""`stca preprocess`: raw impression logs -> request-grouped TFRecords (the Beam job).

    read (ReadFromText bytes / ReadAllFromParquet)
      -> parse + validate, with_exception_handling ---------------> OUT/errors/errors-*
      -> [join author_id from an item table (KuaiRand, MovieLens)]
      -> eval cutoff (request-timestamp histogram, side input)
      -> GroupByKey(user) -> history builder -> tf.train.Examples
      -> shuffle (records of all users mixed, reproducible) -> OUT/train/, OUT/eval/
      -> stats combiners ------------------------------------------> OUT/stats.json

Every standard Beam pipeline option passes through `beam_args`, so the same job runs on the
DirectRunner (default; `--direct_running_mode=multi_processing --direct_num_workers=2`),
Dataflow, Flink or Spark (`--runner ... --setup_file ./setup.py`); see docs/data.md.

Example:
    stats = run(cfg, "runs/synth/*.csv", "runs/data", beam_args=["--direct_num_workers=2"])
"""
from __future__ import annotations

import json
import logging
import random
import time
import zlib
from typing import Iterator

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs import readers, records, stats, validate
from pipeline import config as config_lib

log = logging.getLogger(__name__)
# Outputs of an earlier run that a rerun replaces (shard counts may differ between runs).
_OUTPUT_GLOBS = ("train/part-*", "eval/part-*", "errors/errors-*", "stats.json")


def _join(*parts: str) -> str:
    return FileSystems.join(*parts)


def _count_dead_letter(failed):
    Metrics.counter("stca.preprocess", "dead_letters").inc()
    Metrics.counter("stca.preprocess", f"dead_letter.{validate.reason_code(failed)}").inc()
    return failed


def _count_row(impression):
    Metrics.counter("stca.preprocess", "rows_ok").inc()
    return impression


def _finish_stats(summary: dict, dead_letters: int, cutoff: int, data: config_lib.DataConfig,
                  tasks: list) -> str:
    summary = dict(summary, dead_letters=dead_letters, layout=data.layout, tasks=tasks,
                   eval_cutoff_ms=None if cutoff == stats.NO_EVAL else cutoff,
                   history_events=data.history_events, max_history=data.max_history)
    return json.dumps(summary, indent=2, sort_keys=True)


# Records of one user leave the history builder one after another; written as they come,
# a shard would be sorted by user and a training shuffle buffer would hold a few users.
# Each record gets a bucket from a hash of its bytes (deterministic), buckets are grouped,
# and every bucket is emitted in a seeded random order, in windows of bounded size.
SHUFFLE_BUCKETS = 4096
SHUFFLE_WINDOW = 8192


def _shuffle_key(data: bytes) -> tuple[int, bytes]:
    return zlib.crc32(data) % SHUFFLE_BUCKETS, data


def _shuffled(keyed) -> Iterator[bytes]:
    bucket, values = keyed
    rng = random.Random(bucket)
    window: list[bytes] = []
    for data in values:
        window.append(data)
        if len(window) == SHUFFLE_WINDOW:
            rng.shuffle(window)
            yield from window
            window = []
    rng.shuffle(window)
    yield from window


class ShuffleRecords(beam.PTransform):
    """Spreads the records of every user over the output in a random, reproducible order.

    Memory stays bounded on any runner: a bucket is shuffled in windows of
    SHUFFLE_WINDOW records. Output order never changes what a record holds.
    """

    def expand(self, records):
        return (records
                | "Key" >> beam.Map(_shuffle_key)
                | "Group" >> beam.GroupByKey()
                | "Emit" >> beam.FlatMap(_shuffled))


def build(p: beam.Pipeline, spec: readers.SourceSpec, cfg: config_lib.Config,
          out_dir: str) -> None:
    """Adds the preprocessing graph to pipeline `p` (separate from `run` for tests)."""
    data = cfg.data
    tasks = cfg.tasks
    raw = p | "ReadRaw" >> readers.ReadRawRows(spec)
    parsed = raw | "Parse" >> beam.Map(
        validate.RowParser(spec.row_format, spec.fields)).with_exception_handling()
    impressions = parsed.good | "CountRows" >> beam.Map(_count_row)
    dead = [parsed.bad]
    if spec.item_table is not None:
        items = p | "ItemTable" >> readers.ReadItemAuthors(spec.item_table)
        impressions = impressions | "JoinAuthors" >> readers.JoinAuthors(items.good)
        dead.append(items.bad)

    errors = (dead | "AllDeadLetters" >> beam.Flatten()
              | "CountDeadLetters" >> beam.Map(_count_dead_letter))
    (errors | "DeadLetterJson" >> beam.Map(validate.dead_letter_json)
     | "WriteErrors" >> beam.io.WriteToText(_join(out_dir, "errors", "errors"),
                                            file_name_suffix=".jsonl", num_shards=1))
    n_errors = errors | "NumDeadLetters" >> beam.combiners.Count.Globally()

    cutoff = impressions | "EvalCutoff" >> stats.EvalCutoff(data.eval_fraction)
    built = (impressions
             | "GroupByUser" >> beam.GroupByKey()
             | "BuildRecords" >> beam.ParDo(
                 records.BuildUserRecords(tasks, data.max_history,
                                          data.history_events == "positive", data.layout),
                 beam.pvalue.AsSingleton(cutoff)).with_outputs(
                     records.TRAIN, records.EVAL, records.STATS))
    gzip = data.compression == "gzip"
    for split in (records.TRAIN, records.EVAL):
        (built[split]
         | f"Shuffle{split.title()}" >> ShuffleRecords()
         | f"Write{split.title()}" >> beam.io.WriteToTFRecord(
            _join(out_dir, split, "part"), file_name_suffix=".tfrecord.gz" if gzip
            else ".tfrecord", num_shards=data.num_shards,
            compression_type=CompressionTypes.GZIP if gzip else CompressionTypes.UNCOMPRESSED))
    (built[records.STATS]
     | "Stats" >> beam.CombineGlobally(stats.StatsFn(tasks))
     | "StatsJson" >> beam.Map(_finish_stats, beam.pvalue.AsSingleton(n_errors),
                               beam.pvalue.AsSingleton(cutoff), data, tasks)
     | "WriteStats" >> beam.io.WriteToText(_join(out_dir, "stats"), file_name_suffix=".json",
                                           num_shards=1, shard_name_template=""))


def _remove_old_outputs(out_dir: str) -> None:
    old = [m.path for pattern in _OUTPUT_GLOBS
           for m in FileSystems.match([_join(out_dir, pattern)])[0].metadata_list]
    if old:
        log.info("removing %d outputs of an earlier run in %s", len(old), out_dir)
        FileSystems.delete(old)


def run(cfg: config_lib.Config, input_glob: str, out_dir: str,
        beam_args: list[str] | None = None) -> dict:
    """Runs the preprocessing job and returns the stats it wrote to OUT/stats.json.

    Args:
      cfg: resolved config (data section: format, schema, layout, sharding, ...).
      input_glob: raw log files (local, gs://, s3://).
      out_dir: output directory; gets train/, eval/, errors/, stats.json and config.yaml.
      beam_args: unparsed Beam pipeline options, e.g. ["--runner=DataflowRunner", ...].

    Returns:
      The stats dict plus "out", "seconds" and the Beam counters ("metrics").

    Example:
        run(load_config(None, ["data.format=jsonl"]), "logs/*.jsonl", "runs/data")
    """
    cfg.validate()
    options = PipelineOptions(list(beam_args or []))
    FileSystems.set_options(options)    # e.g. --s3_endpoint_url, before the inputs are listed
    spec = readers.resolve_source(cfg.data, input_glob)
    _remove_old_outputs(out_dir)
    start = time.perf_counter()
    p = beam.Pipeline(options=options)
    build(p, spec, cfg, out_dir)
    result = p.run()
    result.wait_until_finish()
    seconds = time.perf_counter() - start
    config_lib.save_config(cfg, out_dir)
    with FileSystems.open(_join(out_dir, "stats.json")) as f:
        summary = json.loads(f.read().decode("utf-8"))
    counters = {r.key.metric.name: r.result
                for r in result.metrics().query()["counters"]
                if r.key.metric.namespace == "stca.preprocess"}
    return dict(summary, out=out_dir, input=input_glob, seconds=round(seconds, 2),
                metrics=dict(sorted(counters.items())))
