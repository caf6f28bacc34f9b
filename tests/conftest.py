"""Shared fixtures. Importing `core` first sets TF_USE_LEGACY_KERAS before TensorFlow.

Helpers (paths, tiny model, records, serving) live in tests/helpers/, not here."""
import pathlib

import core  # noqa: F401  (sets the Keras environment before TensorFlow loads)
import pytest

from tests.helpers.env import REPO

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
