"""Session fixtures for the serving tests (helpers in tests/helpers/serving.py)."""
from __future__ import annotations

import pathlib

import pytest

from tests.helpers.records import write_dataset
from tests.helpers.serving import TASKS, export, train_tiny, tiny_config

# Tests that start a process (`stca verify-export`, a child Python) in files whose contents
# are kept as they are; marked slow here instead of with a decorator in the file.
SLOW = {
    "test_serving_verify.py": {"test_verify_passes_on_a_good_export",
                               "test_verify_fails_on_tampered_variables",
                               "test_verify_reports_a_missing_export_clearly"},
    "test_serving_client.py": {"test_the_client_never_imports_the_model_package"},
}


def pytest_collection_modifyitems(items):
    here = pathlib.Path(__file__).parent
    for item in items:
        if (item.path.parent == here
                and getattr(item, "originalname", item.name) in SLOW.get(item.path.name, ())):
            item.add_marker(pytest.mark.slow)


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
