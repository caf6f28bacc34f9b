"""Checks shared by the per-layer tests."""
from __future__ import annotations

import numpy as np
import tf_keras as keras

# Tolerances of float32 comparisons. Each says why it is what it is, and each is far below
# what a real mistake moves (a missing mask, scale or term changes outputs by > 1e-2).
#
# The same ops on the same shapes and inputs (a layer against the sublayers it is made of,
# a clone with copied weights, padded values that get zero weight): kernels are
# deterministic for one shape and instruction set, so results agree to an ulp or two;
# outputs are O(1), one float32 ulp ~1.2e-7, 1e-6 is ~8 ulps.
SAME_PATH_ATOL = 1e-6
# A layer against a NumPy re-implementation of its equations: NumPy's matmuls block and
# round differently from TF's (and some run in float64); a handful of chained ops on O(1)
# values stay within a few ulps each, 1e-5 is ~80 ulps.
REFERENCE_ATOL = 1e-5
# The same, through a layer norm and an activation whose float32 formula differs from the
# NumPy one (GELU / SiLU via exp, LN's variance): ~1e-5 seen, 1e-4 leaves 10x.
NORM_ATOL = 1e-4
# Tolerance for float32 results of the same math computed through different shapes (more
# padding, other candidates in the batch, a cache instead of one pass). Matmuls and
# reductions are blocked per shape and per instruction set (AVX2, AVX-512, AMX), so such
# results agree to a few float32 ulps of the magnitudes summed, not bit for bit. Outputs
# in these tests are O(1) (one ulp ~1.2e-7) from sums of up to ~100 O(1) terms: 1e-5 leaves
# room for ~100 ulps. Seen: 1.19e-6 on an AMD EPYC (AVX2) where Intel (AMX) gave < 1e-6.
REORDER_ATOL = 1e-5


def assert_config_round_trip(layer, *call_args, **call_kwargs):
    """from_config(get_config()) rebuilds an equivalent layer: same config, same variable
    shapes, and the same outputs once the weights are copied over."""
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    # Serialization through Keras' registry (what a SavedModel / h5 config would use).
    revived = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(revived) is type(layer) and revived.get_config() == config
    expected = layer(*call_args, **call_kwargs)
    clone(*call_args, **call_kwargs)
    assert [w.shape for w in clone.weights] == [w.shape for w in layer.weights]
    clone.set_weights(layer.get_weights())
    actual = clone(*call_args, **call_kwargs)
    for a, e in zip(_flat(actual), _flat(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-6,
                                   atol=SAME_PATH_ATOL)


def _flat(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]
