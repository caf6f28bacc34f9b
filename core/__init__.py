"""The foundation every other package stands on: config, the feature contract, file IO,
the ID hash, metrics, the Example writer and the input builder.

Importing `core` (any of its modules) sets the TensorFlow environment once, before
TensorFlow is first imported; model/, beam_jobs/, serving/ and pipeline/ import core first.
core imports nothing of the project's other packages (docs/architecture.md).
"""
import os

# tensorflow-recommenders 0.7.7 needs Keras 2 (tf_keras); this must be set before
# TensorFlow is first imported.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
# 3: TensorFlow's C++ start-up lines ("Unable to register cuDNN factory ...", logged as
# errors on every CPU-only import) would precede every one-line user error; failures of
# ops still raise Python exceptions. Set TF_CPP_MIN_LOG_LEVEL yourself to see C++ logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
