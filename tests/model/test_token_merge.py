import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401
from model.layers.token_merge import TokenMerge
from tests.helpers.layers import REFERENCE_ATOL, REORDER_ATOL, assert_config_round_trip

LENGTHS = np.array([10, 5, 0, 7])  # full, ragged, empty, ragged


def _events(length=10, d=4, seed=0):
    rng = np.random.default_rng(seed)
    events = rng.normal(size=(len(LENGTHS), length, d)).astype(np.float32)
    mask = np.arange(length)[None, :] < LENGTHS[:, None]
    return events, mask


def _expected_groups(events, mask, k):
    """Plain numpy: zero padded events, pad the tail to a multiple of K, cut into groups."""
    batch, length, d = events.shape
    groups = -(-length // k)
    padded = np.zeros((batch, groups * k, d), np.float32)
    padded[:, :length] = np.where(mask[..., None], events, 0.0)
    valid = np.zeros((batch, groups * k), bool)
    valid[:, :length] = mask
    return padded.reshape(batch, groups, k, d), valid.reshape(batch, groups, k).any(-1)


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_shapes_content_and_group_mask_for_several_k(k):
    events, mask = _events()
    layer = TokenMerge(4, merge_k=k)
    merged, valid = layer(events, mask)
    groups, expected_valid = _expected_groups(events, mask, k)
    g = -(-10 // k)
    assert merged.shape == (4, g, 4) and valid.shape == (4, g)
    # A group is valid iff one of its events is: ceil(len / K) valid groups, a prefix.
    np.testing.assert_array_equal(valid, expected_valid)
    np.testing.assert_array_equal(valid.numpy().sum(-1), -(-LENGTHS // k))
    if k == 1:  # merging off: the events themselves (padded ones zeroed), no projection
        assert layer.project is None and not layer.weights
        np.testing.assert_array_equal(merged, groups[:, :, 0])
        return
    np.testing.assert_array_equal(layer.groups(events, mask), groups)
    kernel = layer.project.kernel.numpy()                       # [K d, d]
    expected = groups.reshape(4, g, k * 4) @ kernel             # concat in order, then W_M
    np.testing.assert_allclose(merged, expected, atol=REFERENCE_ATOL)
    # The concatenation keeps the order inside a group: swapping two events changes it.
    swapped = events.copy()
    swapped[0, [0, 1]] = swapped[0, [1, 0]]
    assert np.abs(layer(swapped, mask)[0][0, 0] - merged[0, 0]).max() > 1e-3


@pytest.mark.parametrize("mode", ["concat", "innertrans"])
def test_padded_events_have_no_influence(mode):
    events, mask = _events(seed=1)
    layer = TokenMerge(4, merge_k=4, mode=mode, num_heads=2)
    merged, valid = layer(events, mask)
    noisy = np.where(mask[..., None], events, 1e3 * np.random.default_rng(2).normal(
        size=events.shape)).astype(np.float32)
    again, valid_again = layer(noisy, mask)
    np.testing.assert_array_equal(again, merged)
    np.testing.assert_array_equal(valid_again, valid)
    # Fully padded groups are zero tokens (the projection has no bias).
    np.testing.assert_array_equal(merged[2], np.zeros_like(merged[2]))
    # Extra padding (a longer padded length) leaves the valid groups unchanged.
    longer = np.concatenate([events, np.ones((4, 6, 4), np.float32)], axis=1)
    longer_mask = np.concatenate([mask, np.zeros((4, 6), bool)], axis=1)
    wide, _ = layer(longer, longer_mask)
    np.testing.assert_allclose(wide[:, :3], merged, atol=REORDER_ATOL)


def test_innertrans_is_a_transformer_inside_each_group_then_the_projection():
    events, mask = _events(seed=3)
    layer = TokenMerge(4, merge_k=4, mode="innertrans", num_heads=2)
    merged, _ = layer(events, mask)
    groups, _ = _expected_groups(events, mask, 4)
    event_mask = np.pad(mask, [[0, 0], [0, 2]]).reshape(-1, 4)
    inner = layer.inner(tf.constant(groups.reshape(-1, 4, 4)), event_mask).numpy()
    inner = np.where(event_mask[..., None], inner, 0.0).reshape(4, 3, 16)
    np.testing.assert_allclose(merged, inner @ layer.project.kernel.numpy(),
                               atol=REFERENCE_ATOL)
    # Events of one group interact: changing event 1 changes what event 0 contributes.
    concat_only = groups.reshape(4, 3, 16) @ layer.project.kernel.numpy()
    assert np.abs(merged - concat_only).max() > 1e-3


def test_round_trip_and_argument_checks():
    events, mask = _events()
    assert_config_round_trip(TokenMerge(4, merge_k=4), events, mask)
    assert_config_round_trip(TokenMerge(4, merge_k=2, mode="innertrans", num_heads=2),
                             events, mask)
    with pytest.raises(ValueError, match="mode"):
        TokenMerge(4, mode="mean")
    with pytest.raises(ValueError, match="merge_k >= 2"):
        TokenMerge(4, merge_k=1, mode="innertrans")
    with pytest.raises(ValueError, match="merge_k"):
        TokenMerge(4, merge_k=0)
