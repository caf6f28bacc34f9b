import numpy as np
import pytest
import tensorflow as tf

import model  # noqa: F401
from model.layers.id_match import (dense_pair_bias, id_match, match_bias, match_pairs, pair_bias,
                                   pair_head_rows)


def test_matches_a_python_loop_over_raw_ids():
    rng = np.random.default_rng(0)
    # Large raw IDs that agree modulo a typical bucket count must not match.
    hist = [rng.integers(0, 5, size=(2, 9)) * 200_003 + 7, rng.integers(0, 4, size=(2, 9))]
    tgt = [rng.integers(0, 5, size=(2, 3)) * 200_003 + 7, rng.integers(0, 4, size=(2, 3))]
    out = id_match([tf.constant(h, tf.int64) for h in hist],
                   [tf.constant(t, tf.int64) for t in tgt]).numpy()
    assert out.shape == (2, 2, 3, 9) and out.dtype == bool          # [B, F, M, L]
    for b in range(2):
        for m in range(3):
            for f in range(2):
                for j in range(9):
                    assert out[b, f, m, j] == (tgt[f][b, m] == hist[f][b, j])
    assert out.any() and not out.all()


def test_field_counts_must_agree():
    with pytest.raises(ValueError, match="same non-zero number"):
        id_match([tf.zeros([1, 2], tf.int64)], [])


def test_match_bias_is_the_weighted_sum_over_fields_with_its_gradient():
    rng = np.random.default_rng(1)
    match = rng.random((2, 2, 3, 7)) < 0.3                            # [B, F, M, L]
    weights = tf.Variable(rng.normal(size=(2, 4)).astype(np.float32))
    with tf.GradientTape() as tape:
        bias = match_bias(tf.constant(match), weights)
        loss = tf.reduce_sum(bias * tf.range(7, dtype=tf.float32))
    expected = np.einsum("bfml,fh->bhml", match.astype(np.float32), weights.numpy())
    assert bias.shape == (2, 4, 3, 7) and bias.dtype == tf.float32  # [B, h, M, L]
    np.testing.assert_allclose(bias.numpy(), expected, atol=1e-6)
    # d loss / d w[f, h] = sum over b, m, l of match[b, f, m, l] * l.
    grad = np.einsum("bfml,l->f", match.astype(np.float32), np.arange(7.0))[:, None]
    np.testing.assert_allclose(tape.gradient(loss, weights).numpy(),
                               np.broadcast_to(grad, (2, 4)), atol=1e-5)


def _pairs_as_dict(pairs):
    targets = int(pairs.shape[1])
    return {(int(r) // targets, int(r) % targets, int(j)): tuple(f)
            for r, j, f in zip(pairs.row.numpy(), pairs.event.numpy(), pairs.fields.numpy())}


@pytest.mark.parametrize("fields", [1, 2])
def test_match_pairs_list_every_valid_match_once_with_its_fields(fields):
    rng = np.random.default_rng(fields)
    batch, length, targets = 4, 30, 6
    hist = [rng.integers(0, 6, size=(batch, length)) * 10**12 for _ in range(fields)]
    tgt = [rng.integers(0, 6, size=(batch, targets)) * 10**12 for _ in range(fields)]
    hist_len, tgt_len = np.array([30, 11, 0, 25]), np.array([6, 2, 3, 0])
    pairs = match_pairs([tf.constant(h) for h in hist], [tf.constant(t) for t in tgt],
                        tf.constant(hist_len, tf.int32), tf.constant(tgt_len, tf.int32))
    assert pairs.fields.shape[1] == fields and list(pairs.shape.numpy()) == [4, 6, 30]
    got = _pairs_as_dict(pairs)
    assert len(got) == pairs.row.shape[0]                              # each pair once
    expected = {}
    for b in range(batch):
        for m in range(tgt_len[b]):
            for j in range(hist_len[b]):     # padded events / targets never match
                hit = tuple(float(tgt[f][b, m] == hist[f][b, j]) for f in range(fields))
                if any(hit):
                    expected[(b, m, j)] = hit
    assert got == expected
    assert len(expected) > 20 and (fields == 1 or any(sum(v) == 2 for v in expected.values()))
    # The padded positions hold IDs that do match (here: the same vocabulary).
    assert any(hist[0][1, j] == tgt[0][1, 0] for j in range(11, 30))


def test_dense_pair_bias_is_match_bias_of_the_valid_matches():
    rng = np.random.default_rng(5)
    hist = [rng.integers(0, 4, size=(2, 9)) for _ in range(2)]
    tgt = [rng.integers(0, 4, size=(2, 3)) for _ in range(2)]
    pairs = match_pairs([tf.constant(h, tf.int64) for h in hist],
                        [tf.constant(t, tf.int64) for t in tgt],
                        tf.constant([9, 9]), tf.constant([3, 3]))
    weights = rng.normal(size=(2, 4)).astype(np.float32)
    dense = dense_pair_bias(pairs, pair_bias(pairs, weights)).numpy()    # [B, h, M, L]
    match = id_match([tf.constant(h, tf.int64) for h in hist],
                     [tf.constant(t, tf.int64) for t in tgt])
    np.testing.assert_allclose(dense, match_bias(match, weights).numpy(), atol=1e-6)
    # each pair's rows of the [B h M, L] flattening, one per head, hold its biases
    rows = pair_head_rows(pairs, 4).numpy()                               # [n, h]
    b, m = pairs.row.numpy() // 3, pairs.row.numpy() % 3
    assert rows.shape == (len(b), 4)
    np.testing.assert_array_equal(rows, (b[:, None] * 4 + np.arange(4)) * 3 + m[:, None])
    j = pairs.event.numpy()[:, None]
    np.testing.assert_allclose(dense.reshape(2 * 4 * 3, 9)[rows, j],
                               pair_bias(pairs, weights).numpy(), atol=1e-6)
    assert (dense.reshape(2 * 4 * 3, 9)[rows, j] != 0).all()
