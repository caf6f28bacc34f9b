"""Beam preprocessing: raw impression logs -> request-grouped TFRecords."""
import core  # noqa: F401  (sets the Keras environment before TensorFlow loads)
