"""The one input builder: records -> dense model inputs, checked against plain Python."""
import numpy as np
import tensorflow as tf

from core import features as F

TASKS = ["click", "like"]


def _request(rng, rid, n_hist, n_tgt):
    ts = 10_000_000 + rid * 1000
    hist_ts = sorted(rng.integers(0, ts, size=n_hist).tolist(), reverse=True)
    return dict(request_id=rid, user_id=int(rng.integers(1, 1 << 62)), request_ts=ts,
                hist_item_id=rng.integers(1, 1 << 62, n_hist).tolist(),
                hist_author_id=rng.integers(1, 1000, n_hist).tolist(),
                hist_action=rng.integers(0, 4, n_hist).tolist(), hist_ts=hist_ts,
                tgt_item_id=rng.integers(1, 1 << 62, n_tgt).tolist(),
                tgt_author_id=rng.integers(1, 1000, n_tgt).tolist(),
                labels={t: rng.integers(0, 2, n_tgt).tolist() for t in TASKS})


def _reference(reqs, max_history, pad_h, pad_t):
    out = {n: [] for n in F.MODEL_INPUTS}
    labels = {t: [] for t in TASKS}
    for r in reqs:
        n = min(len(r["hist_item_id"]), max_history)
        for name in F.HISTORY_FEATURES:
            out[name].append(r[name][:n] + [0] * (pad_h - n))
        out["hist_len"].append(n)
        m = len(r["tgt_item_id"])
        for name in F.TARGET_FEATURES:
            out[name].append(r[name] + [0] * (pad_t - m))
        out["tgt_len"].append(m)
        out["user_id"].append(r["user_id"])
        out["request_ts"].append(r["request_ts"])
        for t in TASKS:
            labels[t].append(r["labels"][t] + [0] * (pad_t - m))
    return out, labels


def test_round_trip_matches_plain_python_reference():
    rng = np.random.default_rng(0)
    reqs = [_request(rng, i, n_hist, n_tgt)
            for i, (n_hist, n_tgt) in enumerate([(0, 3), (5, 1), (37, 8), (12, 2)])]
    serialized = tf.constant([F.encode_request(**r) for r in reqs])
    parsed = F.parse_examples(serialized, TASKS)
    for max_history, pad_h, pad_t in [(10240, None, None), (8, 16, 10)]:
        inputs, labels = F.model_inputs(parsed, TASKS, max_history=max_history,
                                        pad_history_to=pad_h, pad_targets_to=pad_t)
        exp_h = pad_h or max(min(len(r["hist_item_id"]), max_history) for r in reqs)
        exp_t = pad_t or max(len(r["tgt_item_id"]) for r in reqs)
        ref, ref_labels = _reference(reqs, max_history, exp_h, exp_t)
        assert set(inputs) == set(F.MODEL_INPUTS)
        for name in F.MODEL_INPUTS:
            assert inputs[name].dtype == F.input_dtype(name), name
            np.testing.assert_array_equal(inputs[name].numpy(), np.array(ref[name]), name)
        for t in TASKS:
            np.testing.assert_array_equal(labels[t].numpy(), np.array(ref_labels[t], np.float32))


def test_truncation_keeps_most_recent_events():
    r = _request(np.random.default_rng(1), 0, 20, 2)
    parsed = F.parse_examples(tf.constant([F.encode_request(**r)]), TASKS)
    inputs, _ = F.model_inputs(parsed, TASKS, max_history=5)
    assert inputs["hist_ts"].numpy()[0].tolist() == sorted(r["hist_ts"], reverse=True)[:5]


def test_all_empty_histories_still_have_one_padded_slot():
    r = _request(np.random.default_rng(2), 0, 0, 2)
    parsed = F.parse_examples(tf.constant([F.encode_request(**r)] * 3), TASKS)
    inputs, _ = F.model_inputs(parsed, TASKS)
    assert inputs["hist_item_id"].shape == (3, 1)
    assert inputs["hist_len"].numpy().tolist() == [0, 0, 0]


def test_single_example_parse_matches_batch_parse():
    r = _request(np.random.default_rng(3), 0, 9, 4)
    data = F.encode_request(**r)
    single = F.parse_example(tf.constant(data), TASKS)
    for name in F.HISTORY_FEATURES + F.TARGET_FEATURES:
        assert single[name].numpy().tolist() == r[name]


def test_encode_rejects_mismatched_lengths():
    r = _request(np.random.default_rng(4), 0, 3, 2)
    r["hist_ts"] = r["hist_ts"][:2]
    try:
        F.encode_request(**r)
    except ValueError as e:
        assert "hist_ts has 2 values, hist_item_id has 3" in str(e)
    else:
        raise AssertionError("mismatched lengths were accepted")


def test_records_written_for_other_tasks_fail_with_a_clear_message():
    r = _request(np.random.default_rng(5), 0, 3, 2)
    data = tf.constant([F.encode_request(**r)])
    try:
        F.parse_examples(data, ["click", "finish"])
    except tf.errors.InvalidArgumentError as e:
        assert "label_finish does not have one value per target" in e.message
        assert "data.schema.tasks=['click', 'finish']" in e.message
    else:
        raise AssertionError("records without label_finish were accepted")


def test_split_history_moves_each_requests_newest_events_out():
    rng = np.random.default_rng(4)
    lens = np.array([6, 0, 3, 5], np.int32)
    pos = np.arange(6)[None, :]
    inputs = {name: np.where(pos < lens[:, None], rng.integers(1, 99, (4, 6)), 0)
              for name in F.HISTORY_FEATURES}
    inputs.update({F.HIST_LEN: lens, "user_id": np.arange(4)})
    older, newer = F.split_history(inputs, [2, 1, 3, 9])
    np.testing.assert_array_equal(newer[F.HIST_LEN], [2, 0, 3, 5])
    np.testing.assert_array_equal(older[F.HIST_LEN], [4, 0, 0, 0])
    np.testing.assert_array_equal(older["user_id"], inputs["user_id"])
    for name in F.HISTORY_FEATURES:
        for b, n in enumerate(lens):
            k = newer[F.HIST_LEN][b]
            joined = np.concatenate([newer[name][b, :k], older[name][b, :n - k]])
            np.testing.assert_array_equal(joined, inputs[name][b, :n])
            assert not newer[name][b, k:].any() and not older[name][b, n - k:].any()
