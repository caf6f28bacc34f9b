"""LONGER's token merge: K adjacent history events -> one token (arXiv 2505.04421)."""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from model.layers.common import check_heads_divide, check_positive, clone_initializer
from model.layers.transformer_block import TransformerBlock

MERGE_MODES = ("concat", "innertrans")


@keras.utils.register_keras_serializable(package="stca")
class TokenMerge(keras.layers.Layer):
    """Groups of K adjacent events become one d-wide token.

    The history [B, L, d] (most recent first) is cut into G = ceil(L / K) groups
    [x_gK, ..., x_gK+K-1] counted from the most recent event, so a group holds the same
    events whatever the padded length. The ragged tail is zero-padded; padded events
    (history_mask False) are set to zero before anything reads them, so they have no
    influence. Then

        concat:      s_g = [x_gK; ...; x_gK+K-1] W_M                         K d -> d
        innertrans:  s_g = [y_gK; ...; y_gK+K-1] W_M,  y = TransformerBlock(group)

    where InnerTrans is one pre-norm self-attention + SwiGLU block inside each group (the
    group's padded events are masked keys and their outputs are zeroed again). Order
    inside a group is kept by the concatenation, so no position embedding is needed. W_M
    (no bias) projects the K d-wide concatenation back to the attention width d. A group
    is valid if any of its events is valid. K = 1 turns merging off: the events are
    returned unchanged (no projection).

    Args:
      d_model: event and output width d.
      merge_k: K, events per group (>= 1).
      mode: "concat" or "innertrans" (needs merge_k >= 2).
      num_heads: InnerTrans heads (must divide d_model).
      ffn_mult: InnerTrans SwiGLU inner width multiplier.
      kernel_initializer: initializer of W_M.

    Inputs: events [B, L, d], history_mask [B, L] bool.
    Output: (tokens [B, ceil(L / K), d], group_mask [B, ceil(L / K)] bool).

    Example:
        tokens, valid = TokenMerge(64, merge_k=4)(events, history_mask)   # L=10 -> 3 tokens
    """

    def __init__(self, d_model: int, merge_k: int = 4, mode: str = "concat",
                 num_heads: int = 4, ffn_mult: int = 2, kernel_initializer="glorot_uniform",
                 **kwargs):
        super().__init__(**kwargs)
        check_positive(d_model=d_model, merge_k=merge_k, num_heads=num_heads,
                       ffn_mult=ffn_mult)
        if mode not in MERGE_MODES:
            raise ValueError(f"mode must be one of {MERGE_MODES}, got {mode!r}")
        if mode == "innertrans" and merge_k < 2:
            raise ValueError("mode 'innertrans' needs merge_k >= 2 (merge_k=1 is no merging)")
        if mode == "innertrans":
            check_heads_divide(d_model, num_heads)
        self.d_model = d_model
        self.merge_k = merge_k
        self.mode = mode
        self.num_heads = num_heads
        self.ffn_mult = ffn_mult
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape=None):
        d, k = self.d_model, self.merge_k
        self.inner = None
        self.project = None
        if self.mode == "innertrans":
            self.inner = TransformerBlock(d, self.num_heads, self.ffn_mult,
                                          dtype=self.dtype_policy, name="inner_trans")
            self.inner.build((None, k, d))
        if k > 1:
            self.project = keras.layers.Dense(
                d, use_bias=False, dtype=self.dtype_policy, name="merge_projection",
                kernel_initializer=clone_initializer(self.kernel_initializer))
            self.project.build((None, None, k * d))
        super().build(input_shape)

    def group_mask(self, history_mask):
        """[B, L] bool -> [B, ceil(L / K)] bool: a group is valid if any event is."""
        mask = self._pad(tf.cast(history_mask, tf.bool))
        batch = tf.shape(mask)[0]
        return tf.reduce_any(tf.reshape(mask, [batch, -1, self.merge_k]), axis=-1)

    def groups(self, events, history_mask):
        """The groups before projection: [B, G, K, d] with padded events zeroed."""
        events = tf.cast(events, self.compute_dtype)
        events = tf.where(tf.cast(history_mask, tf.bool)[..., None], events,
                          tf.zeros_like(events))
        events = self._pad(events)
        shape = tf.shape(events)
        return tf.reshape(events, [shape[0], -1, self.merge_k, self.d_model])

    def call(self, events, history_mask):
        if self.merge_k == 1:
            events = tf.cast(events, self.compute_dtype)
            mask = tf.cast(history_mask, tf.bool)
            return tf.where(mask[..., None], events, tf.zeros_like(events)), mask
        groups = self.groups(events, history_mask)                       # [B, G, K, d]
        if self.inner is not None:
            shape = tf.shape(groups)
            event_mask = tf.reshape(self._pad(tf.cast(history_mask, tf.bool)),
                                    [-1, self.merge_k])
            flat = tf.reshape(groups, [-1, self.merge_k, self.d_model])
            flat = self.inner(flat, event_mask)
            flat = tf.where(event_mask[..., None], flat, tf.zeros_like(flat))
            groups = tf.reshape(flat, shape)
        shape = tf.shape(groups)
        merged = tf.reshape(groups, [shape[0], shape[1], self.merge_k * self.d_model])
        return self.project(merged), self.group_mask(history_mask)

    def _pad(self, x):
        """Pads axis 1 with zeros / False up to a multiple of K."""
        pad = tf.math.floormod(-tf.shape(x)[1], self.merge_k)
        return tf.pad(x, [[0, 0], [0, pad]] + [[0, 0]] * (x.shape.rank - 2))

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "merge_k": self.merge_k,
                "mode": self.mode, "num_heads": self.num_heads, "ffn_mult": self.ffn_mult,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}
