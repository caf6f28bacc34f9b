"""STCA long-sequence ranking pipeline: config, CLI, input building and orchestration."""
import os

# tensorflow-recommenders 0.7.7 needs Keras 2 (tf_keras); this must be set before
# TensorFlow is first imported, so every package of the project sets it on import.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
