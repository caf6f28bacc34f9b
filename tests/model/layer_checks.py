"""Checks shared by the per-layer tests."""
from __future__ import annotations

import numpy as np
import tf_keras as keras

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
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-6, atol=1e-6)


def _flat(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]
