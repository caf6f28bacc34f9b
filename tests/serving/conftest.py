"""Session fixtures for the serving tests (helpers in serving_fixtures.py)."""
from __future__ import annotations

import pytest

from serving_fixtures import TASKS, export, train_tiny, tiny_config
from tests.records import write_dataset


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return write_dataset(str(tmp_path_factory.mktemp("serving_records")), requests=24,
                         files=1, history=(8, 256), targets=(1, 8), tasks=TASKS,
                         eval_requests=16)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, data_dir):
    path = str(tmp_path_factory.mktemp("serving_model"))
    train_tiny(tiny_config(), data_dir, path)
    return path


@pytest.fixture(scope="session")
def export_f32(tmp_path_factory, model_dir):
    return export(model_dir, str(tmp_path_factory.mktemp("export_f32")))


@pytest.fixture(scope="session")
def export_bf16(tmp_path_factory, model_dir):
    return export(model_dir, str(tmp_path_factory.mktemp("export_bf16")),
                  "export.cache_dtype=bfloat16")


