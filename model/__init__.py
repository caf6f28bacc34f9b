"""Keras ranking model: layers, encoders (STCA, LONGER, baselines), heads."""
import pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
