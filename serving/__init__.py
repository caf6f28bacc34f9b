"""SavedModel export, export verification and the TF Serving client."""
import pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
