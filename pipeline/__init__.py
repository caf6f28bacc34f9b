"""The roof: training, evaluation, the synthetic log generator, the CLI and the demo.

Everything below (core, model, beam_jobs, serving) is imported from here; nothing below
imports pipeline (docs/architecture.md).
"""
import core  # noqa: F401  (sets the Keras environment before TensorFlow loads)
