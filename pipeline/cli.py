"""`stca`: the one command-line entry point.

Every subcommand takes `--config FILE.yaml` and repeated `--set key=value`; a few common
settings also have their own flags (e.g. `stca synth --users 100` is `--set synth.users=100`).
Subcommands that read a model directory start from the config saved there, so evaluation
and export see the model the run trained.

    stca synth       --out DIR [--users N] [--seed S] [--format csv|jsonl|parquet]
    stca preprocess  --input GLOB --out DIR [--format ...] [--layout request|pointwise]
                     [any Beam pipeline option, e.g. --runner DirectRunner]
    stca train       --data DIR --model-dir DIR
    stca evaluate    --data DIR --model-dir DIR [--lengths 256,1024,4096]
    stca export      --model-dir DIR --export-dir DIR
    stca verify-export --export-dir DIR [--data DIR]
    stca demo        [--workdir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

import pipeline  # noqa: F401  (environment for TensorFlow)
from pipeline import config as config_lib

# flag dest -> config key; a flag left unset does not override anything.
_FLAG_KEYS = {
    "users": "synth.users",
    "seed": "synth.seed",
    "synth_format": "synth.format",
    "data_format": "data.format",
    "layout": "data.layout",
    "lengths": "eval.lengths",
    "steps": "train.steps",
    "encoder": "model.encoder",
}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (sections: data, synth, model, train, "
                                    "eval, export, serving)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config field, e.g. --set model.d_model=128 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stca", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write synthetic raw impression logs")
    _common(p)
    p.add_argument("--out", required=True)
    p.add_argument("--users", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--format", dest="synth_format", choices=("csv", "jsonl", "parquet"))

    p = sub.add_parser("preprocess", help="Beam job: raw logs -> request-grouped TFRecords")
    _common(p)
    p.add_argument("--input", required=True, help="file glob (local, gs://, s3://)")
    p.add_argument("--out", required=True)
    p.add_argument("--format", dest="data_format",
                   choices=("csv", "jsonl", "parquet", "movielens", "kuairand"))
    p.add_argument("--layout", choices=("request", "pointwise"))

    p = sub.add_parser("train", help="train a ranking model")
    _common(p)
    p.add_argument("--data", required=True, help="preprocess output dir (has train/, eval/)")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--steps", type=int)
    p.add_argument("--encoder", choices=config_lib.ENCODERS)

    p = sub.add_parser("evaluate", help="AUC / GAUC per task at several inference lengths")
    _common(p)
    p.add_argument("--data", required=True)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--lengths", help="comma-separated inference lengths, e.g. 256,1024,4096")
    p.add_argument("--out", help="report dir (default: MODEL_DIR/eval)")

    p = sub.add_parser("export", help="write a TF-Serving SavedModel with three signatures")
    _common(p)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--export-dir", required=True, help="export base; the model is written to "
                                                       "EXPORT_DIR/<model_name>/<version>/")

    p = sub.add_parser("verify-export", help="release gate: load as TF Serving does, check "
                                             "signatures and numbers")
    _common(p)
    p.add_argument("--export-dir", required=True, help="a version dir, or a base/model dir "
                                                       "(the newest version is checked)")
    p.add_argument("--data", help="preprocess output dir for the held-out quality check")

    p = sub.add_parser("demo", help="synth -> preprocess -> train -> evaluate -> export -> verify")
    _common(p)
    p.add_argument("--workdir", default="runs/demo")
    return parser


def resolve_config(args: argparse.Namespace, base_dir: str | None = None) -> config_lib.Config:
    """--config (or BASE_DIR/config.yaml when no --config is given) + flags + --set."""
    from pipeline import fileio
    path = args.config
    if path is None and base_dir and fileio.exists(fileio.join(base_dir, "config.yaml")):
        path = fileio.join(base_dir, "config.yaml")
    overrides = []
    for dest, key in _FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    return config_lib.load_config(path, overrides + list(args.overrides))


def _run(args: argparse.Namespace, extra: list[str]) -> object:
    cmd = args.command
    if cmd != "preprocess" and extra:
        raise SystemExit(f"stca {cmd}: unrecognized arguments: {' '.join(extra)}")
    # The config is resolved and validated before any module is imported or work starts.
    cfg = resolve_config(args, getattr(args, "model_dir", None))
    if cmd == "synth":
        from pipeline import synth
        return synth.run(cfg, args.out)
    if cmd == "preprocess":
        from beam_jobs import preprocess
        # `stca preprocess ... -- --runner=X` keeps the "--", and Beam's option parser
        # treats everything after it as positional: the runner would silently be ignored.
        return preprocess.run(cfg, args.input, args.out,
                              beam_args=[a for a in extra if a != "--"])
    if cmd == "train":
        from pipeline import train
        return train.run(cfg, args.data, args.model_dir)
    if cmd == "evaluate":
        from pipeline import evaluate
        return evaluate.run(cfg, args.data, args.model_dir, out_dir=args.out)
    if cmd == "export":
        from serving import export
        return export.run(cfg, args.model_dir, args.export_dir)
    if cmd == "verify-export":
        from serving import verify
        return verify.run(args.export_dir, data_dir=args.data)
    if cmd == "demo":
        from pipeline import demo
        if args.config is None:
            args.config = demo.DEFAULT_CONFIG
            cfg = resolve_config(args)
        return demo.run(cfg, args.workdir)
    raise SystemExit(f"unknown command {cmd}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    code = 0
    try:
        result = _run(args, extra)
        if isinstance(result, dict):
            print(json.dumps(result, indent=2, default=str))
    except config_lib.ConfigError as e:
        print(f"stca {args.command}: config error: {e}", file=sys.stderr)
        code = 2
    except Exception as e:  # noqa: BLE001  (reported, then the exit code says it failed)
        if getattr(e, "cli_message_only", False):  # e.g. a failed release gate: no traceback
            print(f"stca {args.command}: {e}", file=sys.stderr)
        else:
            traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    if "tensorflow_io" in sys.modules:
        # tensorflow-io's S3 file system can abort at interpreter exit (tensorflow/io#2039);
        # everything is flushed and closed by now, so leave without running exit handlers.
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
