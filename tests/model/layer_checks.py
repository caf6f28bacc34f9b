"""Checks shared by the per-layer tests."""
from __future__ import annotations

import numpy as np
import tf_keras as keras


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
