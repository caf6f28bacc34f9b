"""`stca preprocess`: raw impression logs -> request-grouped TFRecords (the Beam job).

    read batches of rows (text lines / ReadAllFromParquet)
      -> parse + validate -> per-user blocks of impressions -------> OUT/errors/errors-*
      -> [join author_id from an item table (KuaiRand, MovieLens)]
      -> eval cutoff (request-timestamp histogram, side input)
      -> GroupByKey(user) -> history builder -> tf.train.Examples
      -> shuffle (records of all users mixed, reproducible) -> OUT/train/, OUT/eval/
      -> stats combiners ------------------------------------------> OUT/stats.json

Before the pipeline starts, the input is checked (`readers.resolve_source`: files readable,
of their format, headers / schemas with the configured columns) and --out is checked to be
writable (`outputs.Staging`). The pipeline writes into a staging directory inside OUT; only
when it succeeded and neither split is empty (unless data.allow_empty_split) does the new
output replace the previous run's, so a failed rerun never destroys good output.

Every standard Beam pipeline option passes through `beam_args`, so the same job runs on the
DirectRunner (default; `--direct_running_mode=multi_processing --direct_num_workers=2`),
Dataflow, Flink or Spark (`--runner ... --setup_file ./setup.py`); see docs/data.md.

Example:
    stats = run(cfg, "runs/synth/*.csv", "runs/data", beam_args=["--direct_num_workers=2"])
"""
from __future__ import annotations

import json
import logging
import time

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs import blocks, inputs, outputs, readers, records, shuffle, stats, validate
from core import config as config_lib
from core.errors import DataError

log = logging.getLogger(__name__)


def _join(*parts: str) -> str:
    return FileSystems.join(*parts)


def _count_dead_letter(failed):
    Metrics.counter("stca.preprocess", "dead_letters").inc()
    Metrics.counter("stca.preprocess", f"dead_letter.{validate.reason_code(failed)}").inc()
    return failed


def _finish_stats(summary: dict, dead_letters: int, valid_rows: int, duplicates: int,
                  corrupt_files: int, cutoff: int, data: config_lib.DataConfig,
                  tasks: list) -> str:
    summary = dict(summary, dead_letters=dead_letters, valid_rows=valid_rows,
                   corrupt_files=corrupt_files,
                   duplicate_rows=duplicates, duplicates_dropped=data.drop_duplicates,
                   layout=data.layout, tasks=tasks,
                   eval_cutoff_ms=None if cutoff == stats.NO_EVAL else cutoff,
                   history_events=data.history_events, max_history=data.max_history)
    return json.dumps(summary, indent=2, sort_keys=True)


def build(p: beam.Pipeline, spec: readers.SourceSpec, cfg: config_lib.Config,
          out_dir: str) -> None:
    """Adds the preprocessing graph to pipeline `p` (separate from `run` for tests)."""
    data = cfg.data
    tasks = cfg.tasks
    parsed = (p
              | "ReadRaw" >> readers.ReadRawRows(spec)
              | "Parse" >> beam.ParDo(blocks.ParseRows(spec.row_format, spec.fields))
              .with_outputs(blocks.DEAD, main="impressions"))
    impressions = parsed.impressions
    # Beam reads a truncated .gz as a shorter file: verify each compressed input whole.
    streams = (p | "CompressedInputs" >> beam.Create(
                   [(f, b"") for f in inputs.compressed(spec.files)])
               | "CheckStreams" >> beam.Map(inputs.check_stream).with_exception_handling())
    n_corrupt = streams.bad | "NumCorruptFiles" >> beam.combiners.Count.Globally()
    dead = [parsed[blocks.DEAD], streams.bad]
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
    n_valid = (impressions | "RowsPerBlock" >> beam.Map(blocks.rows)
               | "NumValidRows" >> beam.CombineGlobally(sum))

    min_ms, max_ms = data.timestamp_range_ms()
    cutoff = (impressions | "RequestTimes" >> beam.FlatMap(blocks.request_times)
              | "EvalCutoff" >> stats.EvalCutoff(data.eval_fraction, max_ms - min_ms))
    built = (impressions
             | "GroupByUser" >> beam.GroupByKey()
             | "BuildRecords" >> beam.ParDo(
                 records.BuildUserRecords(tasks, data.max_history,
                                          data.history_events == "positive", data.layout,
                                          data.drop_duplicates),
                 beam.pvalue.AsSingleton(cutoff)).with_outputs(
                     records.TRAIN, records.EVAL, records.STATS, records.DUPLICATES))
    n_duplicates = built[records.DUPLICATES] | "NumDuplicates" >> beam.CombineGlobally(sum)
    gzip = data.compression == "gzip"
    buckets = n_valid | "ShuffleBuckets" >> beam.Map(shuffle.shuffle_buckets)
    for split in (records.TRAIN, records.EVAL):
        (built[split]
         | f"Shuffle{split.title()}" >> shuffle.ShuffleRecords(buckets)
         | f"Write{split.title()}" >> beam.io.WriteToTFRecord(
            _join(out_dir, split, "part"), file_name_suffix=".tfrecord.gz" if gzip
            else ".tfrecord", num_shards=data.num_shards,
            compression_type=CompressionTypes.GZIP if gzip else CompressionTypes.UNCOMPRESSED))
    (built[records.STATS]
     | "Stats" >> beam.CombineGlobally(stats.StatsFn(tasks))
     | "StatsJson" >> beam.Map(_finish_stats, beam.pvalue.AsSingleton(n_errors),
                               beam.pvalue.AsSingleton(n_valid),
                               beam.pvalue.AsSingleton(n_duplicates),
                               beam.pvalue.AsSingleton(n_corrupt),
                               beam.pvalue.AsSingleton(cutoff), data, tasks)
     | "WriteStats" >> beam.io.WriteToText(_join(out_dir, "stats"), file_name_suffix=".json",
                                           num_shards=1, shard_name_template=""))


def _raise_corrupt_input(files, error: Exception) -> None:
    """DataError naming a corrupt compressed input after the pipeline failed: such a file can
    fail Beam's reader before its stream check reports it as a dead letter."""
    for path in inputs.compressed(files):
        try:
            inputs.check_stream((path, b""))
        except validate.RowError as problem:
            raise DataError(f"--input: {problem}") from error


def check_output(summary: dict, data: config_lib.DataConfig, staged: str) -> None:
    """DataError when an input file was truncated or corrupt, or the run wrote no train or
    no eval records (unless data.allow_empty_split).

    Args:
      summary: the run's stats.json; data: the data config; staged: where the rejected
        outputs were left (named in the message, with the dead letters to look at).
    """
    where = (f"this run's outputs, dead letters included, are in {staged}; the previous "
             "outputs are unchanged")
    if summary["corrupt_files"]:
        raise DataError(f"--input: {summary['corrupt_files']} compressed file(s) are truncated "
                        f"or corrupt (truncated_file / corrupt_file dead letters); fix or remove "
                        f"them ({where})")
    if data.allow_empty_split:
        return
    splits = summary["splits"]
    if summary["requests"] == 0:
        raise DataError(f"--input: no records: {summary['valid_rows']} valid rows, "
                        f"{summary['dead_letters']} dead-lettered ({where})")
    empty = [name for name in ("train", "eval") if splits[name]["requests"] == 0
             and (name == "train" or data.eval_fraction > 0)]
    if empty:
        raise DataError(
            f"--input: the {empty[0]} split is empty: all {summary['requests']} requests "
            f"have request_ts {'>=' if empty[0] == 'train' else '<'} the eval cutoff "
            f"{summary['eval_cutoff_ms']} ms (too few requests or distinct times for "
            f"data.eval_fraction={data.eval_fraction}; set data.allow_empty_split=true to "
            f"accept it; {where})")


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

    Raises:
      ConfigError (exit 2), DataError (3: missing, unreadable, binary, truncated or corrupt
      input; no records or an empty split), OutputError (4: --out not writable); the
      previous outputs in out_dir are then unchanged.

    Example:
        run(load_config(None, ["data.format=jsonl"]), "logs/*.jsonl", "runs/data")
    """
    cfg.validate()
    options = PipelineOptions(list(beam_args or []))
    FileSystems.set_options(options)    # e.g. --s3_endpoint_url, before the inputs are listed
    spec = readers.resolve_source(cfg.data, input_glob)
    staging = outputs.Staging(out_dir)
    staging.check_writable()
    start = time.perf_counter()
    try:
        p = beam.Pipeline(options=options)
        build(p, spec, cfg, staging.path)
        result = p.run()
        result.wait_until_finish()
    except BaseException as e:
        staging.discard()
        if isinstance(e, Exception):
            _raise_corrupt_input(spec.files, e)
        raise
    seconds = time.perf_counter() - start
    with FileSystems.open(_join(staging.path, "stats.json")) as f:
        summary = json.loads(f.read().decode("utf-8"))
    check_output(summary, cfg.data, staging.path)
    staging.promote()
    config_lib.save_config(cfg, out_dir)
    counters = {r.key.metric.name: r.result
                for r in result.metrics().query()["counters"]
                if r.key.metric.namespace == "stca.preprocess"}
    return dict(summary, out=out_dir, input=input_glob, seconds=round(seconds, 2),
                metrics=dict(sorted(counters.items())))
