"""`stca`: the one command-line entry point.

Every subcommand takes `--config FILE.yaml` and repeated `--set key=value`; a few common
settings also have their own flags (e.g. `stca synth --users 100` is `--set synth.users=100`).
Subcommands that read a model directory start from the config saved there (then --config,
then flags and --set), so evaluation and export see the model the run trained; a value
that describes another model than the trained one is refused (`model.checkpoint.check_model_dir`).
A user error prints one line and exits with its code (core/errors.py, README "Exit
codes"); `--debug` adds the traceback.

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

from core import config as config_lib
from core import errors, fileio

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
    p.add_argument("--debug", action="store_true",
                   help="print the traceback of a user error too (for bug reports)")
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
    p.add_argument("--format", dest="synth_format", choices=config_lib.SYNTH_FORMATS)

    p = sub.add_parser("preprocess", help="Beam job: raw logs -> request-grouped TFRecords")
    _common(p)
    p.add_argument("--input", required=True, help="file glob (local, gs://, s3://)")
    p.add_argument("--out", required=True)
    p.add_argument("--format", dest="data_format",
                   choices=config_lib.INPUT_FORMATS)
    p.add_argument("--layout", choices=config_lib.LAYOUTS)

    p = sub.add_parser("train", help="train a ranking model")
    _common(p)
    p.add_argument("--data", required=True, help="preprocess output dir (has train/, eval/)")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--steps", type=int)
    p.add_argument("--encoder", help="a registered encoder (model/registry.py), e.g. stca")

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
    """BASE_DIR/config.yaml (if any) <- --config <- flags <- --set, field by field."""
    base = None
    if base_dir and fileio.exists(fileio.join(base_dir, "config.yaml")):
        base = fileio.join(base_dir, "config.yaml")
    overrides = []
    for dest, key in _FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    return config_lib.load_config(args.config, overrides + list(args.overrides), base=base)


def _run(args: argparse.Namespace, extra: list[str]) -> object:
    cmd = args.command
    # The config is resolved and validated before any module is imported or work starts.
    cfg = resolve_config(args, getattr(args, "model_dir", None))
    if cmd in ("train", "evaluate", "export"):
        from model import registry  # lazy: TensorFlow loads only for the model commands
        registry.check_model_config(cfg.model)
    if cmd == "synth":
        from pipeline import synth  # lazy: each command loads only what it runs (fast --help)
        return synth.run(cfg, args.out)
    if cmd == "preprocess":
        from beam_jobs import preprocess  # lazy: as above (Beam)

        # `stca preprocess ... -- --runner=X` keeps the "--", and Beam's option parser
        # treats everything after it as positional: the runner would silently be ignored.
        return preprocess.run(cfg, args.input, args.out,
                              beam_args=[a for a in extra if a != "--"])
    if cmd == "train":
        from pipeline import train  # lazy: as above (TensorFlow)
        return train.run(cfg, args.data, args.model_dir)
    if cmd == "evaluate":
        from pipeline import evaluate  # lazy: as above
        return evaluate.run(cfg, args.data, args.model_dir, out_dir=args.out)
    if cmd == "export":
        from serving import export  # lazy: as above
        return export.run(cfg, args.model_dir, args.export_dir)
    if cmd == "verify-export":
        from serving import verify  # lazy: as above
        return verify.run(args.export_dir, data_dir=args.data)
    if cmd == "demo":
        from pipeline import demo  # lazy: as above
        if args.config is None:
            args.config = demo.DEFAULT_CONFIG
            cfg = resolve_config(args)
        return demo.run(cfg, args.workdir)
    raise SystemExit(f"unknown command {cmd}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command != "preprocess" and extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")  # exit code 2
    code = errors.EXIT_OK
    try:
        result = _run(args, extra)
        if isinstance(result, dict):
            print(json.dumps(result, indent=2, default=str))
    except errors.UserError as e:
        if args.debug:
            traceback.print_exc()
        kind = "config error: " if isinstance(e, config_lib.ConfigError) else ""
        print(f"stca {args.command}: {kind}{e}", file=sys.stderr)
        code = e.exit_code
    except KeyboardInterrupt:  # Ctrl-C outside training's own handler (which saves first)
        print(f"stca {args.command}: interrupted", file=sys.stderr)
        code = errors.EXIT_SIGINT
    except Exception:  # noqa: BLE001  (a bug: the traceback, then exit code 1)
        traceback.print_exc()
        code = errors.EXIT_INTERNAL
    sys.stdout.flush()
    sys.stderr.flush()
    if "tensorflow_io" in sys.modules:
        # tensorflow-io's S3 file system can abort at interpreter exit (tensorflow/io#2039);
        # everything is flushed and closed by now, so leave without running exit handlers.
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
