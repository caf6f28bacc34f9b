"""DIN attention: an MLP scores each history event against the target (baseline)."""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from model.layers.common import check_positive, ensure_built
from model.layers.masking import masked_softmax


@keras.utils.register_keras_serializable(package="stca")
class DINAttention(keras.layers.Layer):
    """a_j = MLP([h_j; t; h_j - t; h_j * t]); out = sum_j softmax(a)_j h_j.

    The first MLP layer is evaluated without building the [B, M, L, 4d] concatenation:
    with W_1 = [W_a; W_b; W_c; W_d],

        [h; t; h - t; h * t] W_1 = h (W_a + W_c) + t (W_b - W_c) + h (diag(t) W_d),

    the first term depends only on the user (`project_history`, once per request), the
    second only on the target, and the third is one batched matmul per target. Scores
    are normalized with the shared masked softmax (DIN's original sum pooling is
    unnormalized; normalizing keeps long histories stable).

    Args:
      d_model: width d of events and targets.
      hidden_units: MLP widths before the scalar score.
      activation: MLP activation.

    Inputs: events [B, L, d], targets [B, M, d], history_mask [B, L] bool.
    Output: [B, M, d].

    Example:
        out = DINAttention(64)(events, targets, history_mask)
    """

    def __init__(self, d_model: int, hidden_units=(80, 40), activation="sigmoid", **kwargs):
        super().__init__(**kwargs)
        hidden_units = tuple(int(u) for u in hidden_units)
        check_positive(d_model=d_model, num_hidden_layers=len(hidden_units))
        check_positive(**{f"hidden_units[{i}]": u for i, u in enumerate(hidden_units)})
        self.d_model = d_model
        self.hidden_units = hidden_units
        self.activation = keras.activations.get(activation)

    def build(self, input_shape=None):
        policy, d = self.dtype_policy, self.d_model
        self.first = keras.layers.Dense(self.hidden_units[0], dtype=policy, name="mlp_0")
        self.first.build((None, 4 * d))
        self.rest = []
        width = self.hidden_units[0]
        for i, units in enumerate(self.hidden_units[1:] + (1,), start=1):
            layer = keras.layers.Dense(units, dtype=policy, name=f"mlp_{i}")
            layer.build((None, width))
            self.rest.append(layer)
            width = units
        super().build(input_shape)

    def _first_kernels(self):
        ensure_built(self)
        w_a, w_b, w_c, w_d = tf.split(tf.cast(self.first.kernel, self.compute_dtype), 4, axis=0)
        return w_a + w_c, w_b - w_c, w_d

    def project_history(self, events):
        """User-side part of the first layer: [B, L, d] -> [B, L, H_1]."""
        w_history, _, _ = self._first_kernels()
        return tf.matmul(tf.cast(events, self.compute_dtype), w_history)

    def attend(self, events, history_keys, targets, history_mask):
        """Pools the events for each target: -> [B, M, d]."""
        events = tf.cast(events, self.compute_dtype)
        targets = tf.cast(targets, self.compute_dtype)
        _, w_target, w_product = self._first_kernels()
        bias = tf.cast(self.first.bias, self.compute_dtype)
        target_term = tf.matmul(targets, w_target) + bias                    # [B, M, H]
        product_kernel = targets[..., None] * w_product                      # [B, M, d, H]
        product_term = tf.matmul(events[:, None], product_kernel)            # [B, M, L, H]
        hidden = self.activation(tf.cast(history_keys, self.compute_dtype)[:, None]
                                 + target_term[:, :, None] + product_term)
        for i, layer in enumerate(self.rest):
            hidden = layer(hidden)
            if i < len(self.rest) - 1:
                hidden = self.activation(hidden)
        weights = masked_softmax(hidden[..., 0], history_mask[:, None, :])   # [B, M, L]
        return tf.matmul(tf.cast(weights, self.compute_dtype), events)

    def call(self, events, targets, history_mask):
        return self.attend(events, self.project_history(events), targets, history_mask)

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model,
                "hidden_units": list(self.hidden_units),
                "activation": keras.activations.serialize(self.activation)}
