"""Where the job writes: a staging directory that replaces the previous outputs only on success.

    OUT/.staging-<run id>/train/, eval/, errors/, stats.json     written by the pipeline
    OUT/train/, eval/, errors/, stats.json, config.yaml          the last successful run

`Staging(out).check_writable()` runs before the pipeline: it creates the staging directory
and writes a probe file there, so an unwritable --out fails at once with an OutputError
instead of after the pipeline ran. `promote()` runs after the pipeline and the data checks
succeeded: it deletes the previous run's outputs and moves the new ones in (Beam
FileSystems.rename: a rename on local disks, copy + delete on object stores). A failed run
calls `discard()` (pipeline error) or leaves staging in place for inspection (rejected data,
e.g. an empty split): either way the previous good outputs are untouched.

Example:
    staging = Staging("runs/data"); staging.check_writable()
    ... pipeline writes into staging.path ...
    staging.promote()
"""
from __future__ import annotations

import logging
import uuid

from apache_beam.io.filesystems import FileSystems

from core.errors import OutputError

log = logging.getLogger(__name__)
# Outputs of a run, relative to its directory (shard counts may differ between runs).
OUTPUT_GLOBS = ("train/part-*", "eval/part-*", "errors/errors-*", "stats.json")


def _join(*parts: str) -> str:
    return FileSystems.join(*parts)


def _matches(root: str) -> list[str]:
    return [m.path for pattern in OUTPUT_GLOBS
            for m in FileSystems.match([_join(root, pattern)])[0].metadata_list]


def _reason(e: Exception) -> str:
    details = getattr(e, "exception_details", None)
    if isinstance(details, dict) and details:
        e = next(iter(details.values()))
    return f"{type(e).__name__}: {str(e).strip()[:200]}"


class Staging:
    """A fresh staging directory inside `out_dir` for one run.

    Args:
      out_dir: the job's output directory (local, gs://, s3://).
    """

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.path = _join(out_dir, f".staging-{uuid.uuid4().hex[:12]}")

    def check_writable(self) -> None:
        """Creates the staging directory and writes a probe file; OutputError if it cannot."""
        probe = _join(self.path, ".probe")
        try:
            FileSystems.create(probe).close()   # creates the directories (local disks)
            FileSystems.delete([probe])
        except Exception as e:  # noqa: BLE001  (Beam wraps OSError kinds in BeamIOError)
            raise OutputError(f"--out: cannot write to {self.out_dir}: {_reason(e)}") from None

    def promote(self) -> None:
        """Replaces the previous run's outputs in out_dir with the staged ones."""
        new = _matches(self.path)
        old = _matches(self.out_dir)
        if old:
            log.info("replacing %d outputs of an earlier run in %s", len(old), self.out_dir)
            FileSystems.delete(old)
        targets = [_join(self.out_dir, p[len(self.path):].lstrip("/")) for p in new]
        for parent in sorted({t.rsplit("/", 1)[0] for t in targets}):
            if not FileSystems.exists(parent):   # object stores have no directories
                FileSystems.mkdirs(parent)
        FileSystems.rename(new, targets)
        self.discard()

    def discard(self) -> None:
        """Deletes the staging directory (best effort: a leftover never affects a rerun)."""
        try:
            if FileSystems.exists(self.path):
                FileSystems.delete([self.path])
        except Exception as e:  # noqa: BLE001
            log.warning("could not remove the staging directory %s: %s", self.path, e)
