"""The one random-input builder follows the feature contract the input builder produces."""
import numpy as np
import pytest

from core import features
from core.random_inputs import REQUEST_TS, random_requests


def test_names_dtypes_padding_and_order_follow_the_contract():
    inputs, labels = random_requests(batch=4, length=9, num_targets=5, seed=3,
                                     tasks=("click", "like"))
    assert tuple(inputs) == features.MODEL_INPUTS
    for name, value in inputs.items():
        assert value.dtype == features.input_dtype(name).as_numpy_dtype, name
        assert value.ndim == len(features.input_shape(name)), name
    hist_len, tgt_len = inputs["hist_len"], inputs["tgt_len"]
    assert hist_len[0] == 9 and hist_len[1] == 0 and tgt_len[0] == 5 and tgt_len[1] == 1
    for b in range(4):
        n, m = hist_len[b], tgt_len[b]
        for name in features.HISTORY_FEATURES:
            assert (inputs[name][b, n:] == 0).all(), name       # zero padded past hist_len
        assert (inputs["hist_item_id"][b, :n] > 0).all()
        ts = inputs["hist_ts"][b, :n]
        assert (np.diff(ts) < 0).all() and (ts < REQUEST_TS).all()  # most recent first
        assert (inputs["tgt_item_id"][b, m:] == 0).all() and (inputs["tgt_item_id"][b, :m] > 0).all()
        for task in ("click", "like"):
            assert (labels[task][b, m:] == 0).all()
    assert set(np.unique(labels["click"])) <= {0.0, 1.0}


def test_given_lengths_seed_and_checks():
    a, _ = random_requests(2, 6, 3, seed=1, hist_len=[6, 2], tgt_len=[3, 3])
    b, _ = random_requests(2, 6, 3, seed=1, hist_len=[6, 2], tgt_len=[3, 3])
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert list(a["hist_len"]) == [6, 2] and list(a["tgt_len"]) == [3, 3]
    with pytest.raises(ValueError, match="exceed"):
        random_requests(1, 4, 2, hist_len=[5], tgt_len=[1])
    with pytest.raises(ValueError, match="need 2 values"):
        random_requests(2, 4, 2, hist_len=[1], tgt_len=[1, 1])
