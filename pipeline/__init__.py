"""STCA long-sequence ranking pipeline: config, CLI, input building and orchestration."""
import os

# tensorflow-recommenders 0.7.7 needs Keras 2 (tf_keras); this must be set before
# TensorFlow is first imported, so every package of the project sets it on import.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
# 3: TensorFlow's C++ start-up lines ("Unable to register cuDNN factory ...", logged as
# errors on every CPU-only import) would precede every one-line user error; failures of
# ops still raise Python exceptions. Set TF_CPP_MIN_LOG_LEVEL yourself to see C++ logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
