"""File access for local, gs:// and s3:// paths (tf.io.gfile plus tensorflow-io's file systems).

Beam transforms use Beam's FileSystems; everything else (configs, checkpoints, reports,
exports) goes through here so that one path syntax works everywhere. A location that
cannot be written raises `OutputError` (an OSError) naming it.
"""
from __future__ import annotations

import contextlib
import glob as _glob
import os

from core.errors import OutputError

_TFIO_SCHEMES = ("s3://", "hdfs://", "az://")


def _gfile():
    import tensorflow as tf  # lazy: local paths (the CLI's config, --help) never load TensorFlow
    return tf.io.gfile


def ensure_filesystem(path: str) -> None:
    """Registers tensorflow-io's file systems when `path` needs them (s3://, hdfs://, az://)."""
    if str(path).startswith(_TFIO_SCHEMES):
        import tensorflow_io  # noqa: F401  # lazy: importing registers s3/hdfs/az file systems


def is_remote(path: str) -> bool:
    return "://" in str(path)


def join(*parts: str) -> str:
    if is_remote(parts[0]):
        return "/".join([parts[0].rstrip("/")] + [p.strip("/") for p in parts[1:]])
    return os.path.join(*parts)


@contextlib.contextmanager
def _writing(path: str):
    """OSError (e.g. not a directory, permission denied, disk full) -> OutputError."""
    try:
        yield
    except OutputError:
        raise
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e


def makedirs(path: str) -> None:
    if not is_remote(path):
        if os.path.isfile(path):
            raise OutputError(f"cannot write {path}: it is a file, not a directory")
        with _writing(path):
            os.makedirs(path, exist_ok=True)
        return
    ensure_filesystem(path)
    if not path.startswith("s3://"):  # object stores have no directories to create
        _gfile().makedirs(path)


def exists(path: str) -> bool:
    if not is_remote(path):
        return os.path.exists(path)
    ensure_filesystem(path)
    return _gfile().exists(path)


def glob(pattern: str) -> list[str]:
    if not is_remote(pattern):
        return sorted(_glob.glob(pattern))
    ensure_filesystem(pattern)
    return sorted(_gfile().glob(pattern))


def read_text(path: str) -> str:
    if not is_remote(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    ensure_filesystem(path)
    import tensorflow as tf  # lazy: as in _gfile
    try:
        with _gfile().GFile(path, "r") as f:
            return f.read()
    except tf.errors.NotFoundError:
        raise FileNotFoundError(2, "No such file or directory", path) from None


def write_bytes(path: str, data: bytes) -> None:
    if not is_remote(path):
        parent = os.path.dirname(path)
        if parent:
            makedirs(parent)
        tmp = f"{path}.tmp-{os.getpid()}"
        with _writing(path):
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # atomic: readers never see a half-written file
        return
    ensure_filesystem(path)
    with _gfile().GFile(path, "wb") as f:
        f.write(data)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))
