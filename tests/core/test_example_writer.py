"""The wire-format writer gives the bytes of the reference tf.train.Example construction."""
import numpy as np
import pytest
import tensorflow as tf

from core import features as F
from core.example_writer import INT64_MAX, INT64_MIN, Varints, example, varint

TASKS = ["click", "like", "finish"]
EDGES = [0, 1, -1, 127, 128, 16383, 16384, 2**31, -2**31, INT64_MAX, INT64_MIN, 2**62]


def _proto(feats: dict) -> tf.train.Example:
    """The reference: a tf.train.Example built the way encode_request used to build it."""
    return tf.train.Example(features=tf.train.Features(feature={
        name: tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        for name, values in feats.items()}))


def _values(rng, n):
    kind = rng.integers(0, 3)
    if kind == 0:                                 # small non-negative: 1-3 byte varints
        return rng.integers(0, 20000, n).tolist()
    if kind == 1:                                 # anywhere in int64, negatives included
        return rng.integers(INT64_MIN, INT64_MAX, n, dtype=np.int64, endpoint=True).tolist()
    return [EDGES[i] for i in rng.integers(0, len(EDGES), n)]


def _request(rng, n_hist, n_tgt):
    ids = [int(v) for v in rng.choice(EDGES, 3)]
    return dict(request_id=ids[0], user_id=ids[1], request_ts=ids[2],
                hist_item_id=_values(rng, n_hist), hist_author_id=_values(rng, n_hist),
                hist_action=_values(rng, n_hist), hist_ts=_values(rng, n_hist),
                tgt_item_id=_values(rng, n_tgt), tgt_author_id=_values(rng, n_tgt),
                labels={t: rng.integers(0, 2, n_tgt).tolist() for t in TASKS})


def _reference_feats(r):
    feats = {n: [r[n]] for n in F.SCALAR_FEATURES}
    feats.update({n: r[n] for n in F.HISTORY_FEATURES + F.TARGET_FEATURES})
    feats.update({F.label_feature(t): v for t, v in r["labels"].items()})
    return feats


def test_example_equals_deterministic_proto_serialization():
    rng = np.random.default_rng(0)
    names = ["b", "a", "hist_ts", "label_é", "label_Z", "x" * 200, "user_id"]
    for trial in range(200):
        feats = {name: _values(rng, int(rng.integers(0, 3 if trial % 3 == 0 else 300)))
                 for name in names}
        got = example([(name, Varints(v).data) for name, v in feats.items()])
        assert got == _proto(feats).SerializeToString(deterministic=True), trial


@pytest.mark.parametrize("n_hist, n_tgt", [(0, 1), (0, 0), (1, 1), (37, 8), (3000, 16)])
def test_encode_request_parses_like_the_reference_example(n_hist, n_tgt):
    """Empty history, int64 extremes, negative IDs: the same bytes as the reference proto
    serialized deterministically, and the same tensors as its (old, map-order) bytes."""
    rng = np.random.default_rng(n_hist)
    for _ in range(5):
        r = _request(rng, n_hist, n_tgt)
        data = F.encode_request(**r)
        reference = _proto(_reference_feats(r))
        assert data == reference.SerializeToString(deterministic=True)
        assert tf.train.Example.FromString(data) == reference
        got = F.parse_example(tf.constant(data), TASKS)
        want = F.parse_example(tf.constant(reference.SerializeToString()), TASKS)
        assert set(got) == set(want)
        for name in want:
            np.testing.assert_array_equal(got[name].numpy(), want[name].numpy(), name)


def test_encode_request_takes_numpy_and_tuples_and_refuses_what_protobuf_refuses():
    r = dict(_request(np.random.default_rng(1), 4, 2), hist_action=[0, 1, 3, 2])
    other_types = dict(r, hist_item_id=np.array(r["hist_item_id"], np.int64),
                       hist_action=np.array(r["hist_action"], np.int32),
                       hist_ts=tuple(r["hist_ts"]), tgt_item_id=np.array(r["tgt_item_id"]))
    assert F.encode_request(**other_types) == F.encode_request(**r)
    for bad, error in ((["1"] * 4, TypeError), ([1.5] * 4, TypeError), ([None] * 4, TypeError),
                       ([2**63] * 4, ValueError), ([INT64_MIN - 1] * 4, ValueError),
                       (np.array([2**64 - 1] * 4, np.uint64), ValueError)):
        with pytest.raises(error):
            F.encode_request(**dict(r, hist_item_id=bad))
    with pytest.raises(ValueError):
        F.encode_request(**dict(r, user_id=2**63))
    assert varint(-1) == b"\xff" * 9 + b"\x01" and varint(300) == b"\xac\x02"


def test_varints_spans_are_the_varints_of_slices():
    values = np.array(EDGES * 3, np.int64)
    whole = Varints(values)
    for start, stop in ((0, 0), (0, 5), (3, 20), (7, len(values))):
        assert whole.span(start, stop) == Varints(values[start:stop]).data
    assert len(whole) == len(values) and Varints([]).data == b""
