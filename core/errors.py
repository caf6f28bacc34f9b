"""User-facing errors and the exit codes of the `stca` command (README, "Exit codes").

A `UserError` is a problem with what the user gave us (a flag, a config value, input data,
an output location): `stca` prints its message on one line, without a traceback (unless
`--debug`), and exits with its `exit_code`. Any other exception is a bug: traceback, 1.

    0    success
    1    internal error (a bug: the traceback is printed)
    2    usage or config error (flags, config values, a config that conflicts with the model dir)
    3    input data error (missing, empty, unreadable or corrupt input files or records)
    4    output error (an output location that cannot be written)
    5    release gate failed (`stca verify-export`)
    130  interrupted by SIGINT, 143 stopped by SIGTERM (training saves a checkpoint first)

Example:
    raise DataError(f"--data: no TFRecord shards in {path}")
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_CONFIG = 2
EXIT_DATA = 3
EXIT_OUTPUT = 4
EXIT_GATE = 5
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class UserError(Exception):
    """An error the user can fix; its message names the problem in one line."""

    exit_code = EXIT_INTERNAL


class DataError(UserError, ValueError):
    """Input data is missing, empty, unreadable or corrupt."""

    exit_code = EXIT_DATA


class OutputError(UserError, OSError):
    """An output location cannot be written."""

    exit_code = EXIT_OUTPUT


class Interrupted(UserError):
    """A signal stopped the command after it saved its state (e.g. a training checkpoint)."""

    def __init__(self, message: str, exit_code: int = EXIT_SIGTERM):
        super().__init__(message)
        self.exit_code = exit_code
