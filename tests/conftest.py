"""Shared fixtures. Importing `pipeline` first sets TF_USE_LEGACY_KERAS before TensorFlow."""
import os
import pathlib

import pipeline  # noqa: F401
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
MOVIELENS_DIR = REPO.parent / "shared" / "data" / "movielens_100k"


@pytest.fixture
def movielens_dir() -> pathlib.Path:
    """The shared MovieLens 100K copy (never copied into the repo; license forbids it)."""
    if not (MOVIELENS_DIR / "u.data").exists():
        pytest.skip(f"MovieLens 100K not found at {MOVIELENS_DIR} (shared dev data, "
                    "not redistributable); the test needs u.data there")
    return MOVIELENS_DIR


@pytest.fixture
def venv_bin() -> pathlib.Path:
    """Directory holding the `stca` console script of the environment running the tests."""
    import sys
    return pathlib.Path(sys.executable).parent


def subprocess_env(**extra) -> dict:
    """Environment for child processes: repo importable, quiet TF, Keras 2."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_USE_LEGACY_KERAS"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update({k: str(v) for k, v in extra.items()})
    return env
