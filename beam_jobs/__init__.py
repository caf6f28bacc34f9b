"""Beam preprocessing: raw impression logs -> request-grouped TFRecords."""
import pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
