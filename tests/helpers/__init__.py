"""Helpers shared by the tests, imported one way everywhere: `from tests.helpers.X import Y`.

    env      REPO, FIXTURES, subprocess_env (children that import the repo's packages)
    model    the one tiny model (TINY_MODEL), its ModelConfig / --set forms, random batches
    layers   float32 tolerances and the config round-trip check of the layer tests
    records  request-grouped TFRecords written with the real writer, and read back
    serving  a briefly trained tiny model, its exports, the TF Serving test double

The repo root is on sys.path through pytest.ini (`pythonpath = .`); child processes get it
through env.subprocess_env.
"""
