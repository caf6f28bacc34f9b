"""tf.data input: length sampler, token-budget buckets, target splitting, sharding, eval."""
import collections
import math

import numpy as np
import pytest
import tensorflow as tf

from core import config as C
from core import features as F
from core import input as I

TASKS = ["click", "like"]
BUCKETS = [32, 64, 128, 256]
BUDGET = 1024
MAX_TARGETS = 8


def _request(rng, rid):
    """Identifiable events: hist_item_id = rid*1e6 + position + 1 (most recent first)."""
    ts = 10**12 + rid * 10**6
    n = int(rng.choice([0, 3, 20, 40, 70, 130, 200, 300, 500]))
    m = 0 if rid == 3 else int(rng.integers(1, 21))  # rid 3 has no targets
    return dict(request_id=rid, user_id=rid % 7, request_ts=ts,
                hist_item_id=[rid * 10**6 + j + 1 for j in range(n)],
                hist_author_id=[j % 5 for j in range(n)], hist_action=[j % 4 for j in range(n)],
                hist_ts=[ts - 7 * (j + 1) for j in range(n)],
                tgt_item_id=[rid * 1000 + j + 1 for j in range(m)],
                tgt_author_id=[j % 3 for j in range(m)],
                labels={t: rng.integers(0, 2, m).tolist() for t in TASKS})


def _write(path, reqs, gzip):
    options = tf.io.TFRecordOptions(compression_type="GZIP" if gzip else "")
    with tf.io.TFRecordWriter(str(path), options) as w:
        for r in reqs:
            w.write(F.encode_request(**r))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Train: 3 shards (gzip .gz, plain, gzip without suffix); eval: 2; one-shard copy."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("data")
    reqs = {rid: _request(rng, rid) for rid in range(120)}
    train, evals = list(range(90)), list(range(90, 120))
    for split in ("train", "eval"):
        (root / split).mkdir()
    _write(root / "train" / "part-0.tfrecord.gz", [reqs[i] for i in train[:30]], gzip=True)
    _write(root / "train" / "part-1.tfrecord", [reqs[i] for i in train[30:60]], gzip=False)
    _write(root / "train" / "part-2.tfrecord", [reqs[i] for i in train[60:]], gzip=True)
    _write(root / "eval" / "part-0.tfrecord.gz", [reqs[i] for i in evals[:15]], gzip=True)
    _write(root / "eval" / "part-1.tfrecord", [reqs[i] for i in evals[15:]], gzip=False)
    single = tmp_path_factory.mktemp("single")
    (single / "train").mkdir()
    _write(single / "train" / "all.tfrecord.gz", [reqs[i] for i in train], gzip=True)
    return dict(root=str(root), single=str(single), reqs=reqs, train=train, eval=evals)


def _cfg(*overrides):
    return C.load_config(None, [
        "data.schema.tasks=[click,like]", "train.length.l_min=16", "train.length.l_max=256",
        f"train.bucket_boundaries={','.join(map(str, BUCKETS))}",
        f"train.token_budget={BUDGET}", f"train.max_targets={MAX_TARGETS}",
        "train.shuffle_buffer=64", "eval.token_budget=2000", *overrides])


def _numpy(ds):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in ds]


@pytest.fixture(scope="module")
def epoch(data):
    """One deterministic training epoch as numpy batches."""
    return _numpy(I.train_dataset(data["root"], _cfg("train.deterministic=true"), epochs=1))


def _targets(batches):
    """(request_ts, tgt_item_id, click, like) of every valid target, plus rows."""
    out, rows = [], []
    for b in batches:
        inputs, labels = b[0], b[1]
        for i in range(len(inputs["tgt_len"])):
            rows.append({k: v[i] for k, v in inputs.items()})
            for j in range(inputs["tgt_len"][i]):
                out.append((inputs["request_ts"][i], inputs["tgt_item_id"][i, j],
                            labels["click"][i, j], labels["like"][i, j]))
    return out, rows


def _expected_targets(data, rids):
    return sorted((r["request_ts"], r["tgt_item_id"][j], r["labels"]["click"][j],
                   r["labels"]["like"][j])
                  for r in (data["reqs"][i] for i in rids) for j in range(len(r["tgt_item_id"])))


# ---- length sampler ----------------------------------------------------------------------

def _beta_cdf(x, a, b):
    """Regularized incomplete beta by numeric integration (t = v**(1/a) removes the pole)."""
    if x <= 0 or x >= 1:
        return float(x >= 1)
    if x > 0.5:
        return 1.0 - _beta_cdf(1.0 - x, b, a)
    v = np.linspace(0.0, x ** a, 200_001)
    integral = np.trapz((1.0 - v ** (1.0 / a)) ** (b - 1.0), v) / a
    return integral / math.exp(math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))


def _ks_two_sample(x, y):
    grid = np.union1d(x, y)
    fx = np.searchsorted(np.sort(x), grid, side="right") / len(x)
    fy = np.searchsorted(np.sort(y), grid, side="right") / len(y)
    return np.max(np.abs(fx - fy))


def test_sampled_lengths_follow_the_configured_beta():
    assert _beta_cdf(0.3, 1.0, 1.0) == pytest.approx(0.3, abs=1e-6)  # the reference itself
    assert _beta_cdf(0.5, 0.4, 0.4) == pytest.approx(0.5, abs=1e-6)
    lc = C.LengthSamplerConfig(l_min=64, l_max=1024, beta_a=0.4, beta_b=0.8, multiple=8)
    n = 20000
    lengths = I.sample_lengths(n, lc, tf.constant([3, 4])).numpy()
    assert lengths.dtype == np.int64 and lengths.shape == (n,)
    assert np.all(lengths % 8 == 0) and lengths.min() >= 64 and lengths.max() <= 1024
    # P(L <= 8k) = P(s <= (8k - l_min) / (l_max - l_min)) exactly (rounding up to 8);
    # DKW: sup |F_n - F| <= eps with probability 1 - 1e-6.
    eps = math.sqrt(math.log(2 / 1e-6) / (2 * n))
    for q in (72, 96, 128, 256, 512, 768, 960, 1016):
        expected = _beta_cdf((q - 64) / (1024 - 64), 0.4, 0.8)
        assert abs(np.mean(lengths <= q) - expected) < eps, q
    # Mean: E[l_min + s (l_max - l_min)] rounded up by less than one multiple.
    mean_raw = 64 + 0.4 / 1.2 * 960
    sd = 960 * math.sqrt(0.4 * 0.8 / (1.2 ** 2 * 2.2)) / math.sqrt(n)
    assert mean_raw - 5 * sd < lengths.mean() < mean_raw + 8 + 5 * sd
    # Two-sample KS against numpy's Beta sampler through the same rounding.
    rng = np.random.default_rng(0)

    def reference(a, b):
        raw = 64 + rng.beta(a, b, n) * 960
        return np.minimum(np.ceil(raw / 8) * 8, 1024)

    bound = math.sqrt(-math.log(1e-6 / 2) / 2) * math.sqrt(2 / n)
    assert _ks_two_sample(lengths, reference(0.4, 0.8)) < bound
    assert _ks_two_sample(lengths, reference(0.8, 0.4)) > 5 * bound  # the check has power


def test_sampler_seeds_and_fixed_mode():
    lc = C.LengthSamplerConfig()
    a = I.sample_lengths(100, lc, tf.constant([1, 2])).numpy()
    assert np.array_equal(a, I.sample_lengths(100, lc, tf.constant([1, 2])).numpy())
    assert not np.array_equal(a, I.sample_lengths(100, lc, tf.constant([1, 3])).numpy())
    lc.mode = "fixed"
    assert I.sample_lengths(5, lc, tf.constant([1, 2])).numpy().tolist() == [lc.l_max] * 5


def test_most_recent_events_are_kept(data, epoch):
    by_ts = {r["request_ts"]: r for r in data["reqs"].values()}
    truncated = 0
    for row in _targets(epoch)[1]:
        r = by_ts[row["request_ts"]]
        stored, kept = len(r["hist_ts"]), int(row["hist_len"])
        assert kept <= stored
        np.testing.assert_array_equal(row["hist_ts"][:kept], r["hist_ts"][:kept])
        np.testing.assert_array_equal(row["hist_item_id"][:kept], r["hist_item_id"][:kept])
        assert not row["hist_item_id"][kept:].any()  # padding
        if kept < stored:  # truncated by the sampler: a multiple of 8 in [l_min, l_max]
            truncated += 1
            assert kept % 8 == 0 and 16 <= kept <= 256
    assert truncated > 10


# ---- token budget, targets, traces ----------------------------------------------------------

@pytest.mark.parametrize("budget", [BUDGET, 96])
def test_batches_respect_token_budget_and_buckets(data, epoch, budget):
    batches = epoch if budget == BUDGET else _numpy(I.train_dataset(
        data["root"], _cfg("train.deterministic=true", f"train.token_budget={budget}"), epochs=1))
    partial = collections.Counter()
    for inputs, labels in batches:
        rows, length = inputs["hist_item_id"].shape
        assert length in BUCKETS
        assert rows * length <= budget or rows == 1
        assert rows <= max(1, budget // length)
        partial[length] += rows < max(1, budget // length)
        # every row sits in the smallest bucket that holds it
        assert all(BUCKETS[np.searchsorted(BUCKETS, h)] == length for h in inputs["hist_len"])
        assert inputs["tgt_item_id"].shape == (rows, MAX_TARGETS)
        assert all(v.shape == (rows, MAX_TARGETS) for v in labels.values())
    assert max(partial.values()) <= 1  # only each bucket's last batch of the epoch is short
    if budget == 96:
        assert any(b[0]["hist_item_id"].shape == (1, 256) for b in batches)  # 256 > budget


def test_no_target_is_lost_or_duplicated(data, epoch):
    got, rows = _targets(epoch)
    assert sorted(got) == _expected_targets(data, data["train"])
    # each piece of a split request keeps the same whole (sampled) history
    pieces = collections.defaultdict(list)
    for row in rows:
        pieces[row["request_ts"]].append(row)
    split = [p for p in pieces.values() if len(p) > 1]
    assert split and all(len(p[0]["tgt_item_id"]) == MAX_TARGETS for p in split)
    for p in split:
        assert len({int(r["hist_len"]) for r in p}) == 1
        assert all(np.array_equal(r["hist_item_id"], p[0]["hist_item_id"]) for r in p)
    assert data["reqs"][3]["request_ts"] not in pieces  # no targets: nothing to train on


def test_deterministic_mode_repeats_exactly(data, epoch):
    again = _numpy(I.train_dataset(data["root"], _cfg("train.deterministic=true"), epochs=1))
    assert len(again) == len(epoch)
    for a, b in zip(again, epoch):
        tf.nest.map_structure(np.testing.assert_array_equal, a, b)
    # a resumed run (seed_offset) samples other lengths but still sees every target once
    resumed = _numpy(I.train_dataset(data["root"], _cfg("train.deterministic=true"), epochs=1,
                                     seed_offset=100))
    lengths = lambda batches: sorted((r["request_ts"], int(r["hist_len"]))  # noqa: E731
                                     for r in _targets(batches)[1])
    assert lengths(resumed) != lengths(epoch)
    assert sorted(_targets(resumed)[0]) == sorted(_targets(epoch)[0])


def test_step_function_traces_a_bounded_number_of_times(data):
    cfg = _cfg()
    ds = I.train_dataset(data["root"], cfg)  # shuffled, repeated forever
    counts = collections.Counter()

    def make(name, **kwargs):
        def step(batch):
            counts[name] += 1  # Python side effect: runs only while tracing
            inputs, labels = batch
            return tf.reduce_sum(tf.cast(inputs["hist_item_id"] % 7, tf.float32)) + \
                tf.reduce_sum(labels["click"])
        return tf.function(step, **kwargs)

    plain, relaxed = make("plain"), make("relaxed", reduce_retracing=True)
    signed = make("signed", input_signature=[I.element_signature(cfg)])
    shapes = set()
    for batch in ds.take(40):
        shapes.add(tuple(batch[0]["hist_item_id"].shape))
        for fn in (plain, relaxed, signed):
            fn(batch)
    assert len(shapes) >= 3  # several buckets were really seen
    assert counts["plain"] == len(shapes) <= len(BUCKETS)  # batch size follows the bucket
    assert counts["relaxed"] <= 2
    assert counts["signed"] == 1


def test_fixed_length_mode_uses_one_static_bucket(data):
    cfg = _cfg("train.length.mode=fixed", "train.deterministic=true")
    ds = I.train_dataset(data["root"], cfg, epochs=1)
    assert ds.element_spec[0]["hist_item_id"].shape.as_list() == [None, 256]
    by_ts = {r["request_ts"]: r for r in data["reqs"].values()}
    for row in _targets(_numpy(ds))[1]:
        assert row["hist_item_id"].shape == (256,)
        assert row["hist_len"] == min(256, len(by_ts[row["request_ts"]]["hist_ts"]))


# ---- sharding and distribution ---------------------------------------------------------------

@pytest.mark.parametrize("which, deterministic", [  # 3 files: by file; 1 file: by record
    ("root", "true"), ("single", "true"), ("single", "false")])
def test_input_pipelines_cover_every_record_once(data, which, deterministic):
    cfg = _cfg(f"train.deterministic={deterministic}")
    got = []
    for i in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i,
                                         num_replicas_in_sync=2)
        batches = _numpy(I.train_dataset(data[which], cfg, ctx, epochs=1))
        assert all(b[0]["hist_item_id"].size <= BUDGET // 2 for b in batches)
        part = _targets(batches)[0]
        assert part
        got += part
    assert sorted(got) == _expected_targets(data, data["train"])


def test_budget_must_divide_across_replicas(data):
    ctx = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0,
                                     num_replicas_in_sync=3)
    with pytest.raises(C.ConfigError, match="train.token_budget: 1024 is invalid"):
        I.train_dataset(data["root"], _cfg(), ctx)


def test_distributed_dataset_under_default_strategy(data):
    strategy = tf.distribute.get_strategy()
    batch = next(iter(I.distributed_train_dataset(strategy, data["root"], _cfg())))
    assert batch[0]["tgt_item_id"].shape[1] == MAX_TARGETS


# ---- evaluation --------------------------------------------------------------------------------

def test_eval_dataset_covers_every_target_once_with_truncation(data):
    cfg = _cfg()
    assert I.eval_buckets(100) == [64, 96, 100]
    assert I.eval_buckets(4096)[-4:] == [1536, 2048, 3072, 4096]
    assert I.eval_target_buckets(16) == [4, 8, 16] and I.eval_target_buckets(3) == [3]
    target_groups = I.eval_target_buckets(MAX_TARGETS)
    batches = _numpy(I.eval_dataset(data["root"], cfg, length=100))
    by_rid = {rid: data["reqs"][rid] for rid in data["eval"]}
    seen = []
    for inputs, labels, meta in batches:
        rows, length = inputs["hist_item_id"].shape
        # Histories: rows of one group, padded to the batch's longest.
        bucket = {int(np.searchsorted([64, 96, 100], n)) for n in inputs["hist_len"]}
        assert len(bucket) == 1 and rows <= 2000 // [64, 96, 100][bucket.pop()]
        assert length == max(1, inputs["hist_len"].max())
        # Targets: padded to the batch's largest count, every row in one target group.
        width = inputs["tgt_item_id"].shape[1]
        assert width == inputs["tgt_len"].max() == labels["like"].shape[1]
        group = {int(np.searchsorted(target_groups, n)) for n in inputs["tgt_len"]}
        assert len(group) == 1, inputs["tgt_len"]
        for i in range(rows):
            r = by_rid[meta["request_id"][i]]
            assert meta["user_id"][i] == r["user_id"] == inputs["user_id"][i]
            kept = min(100, len(r["hist_item_id"]))
            assert inputs["hist_len"][i] == kept
            np.testing.assert_array_equal(inputs["hist_ts"][i, :kept], r["hist_ts"][:kept])
            for j in range(inputs["tgt_len"][i]):
                k = meta["target_start"][i] + j
                assert inputs["tgt_item_id"][i, j] == r["tgt_item_id"][k]
                assert labels["like"][i, j] == r["labels"]["like"][k]
                seen.append((r["request_id"], k))
    expected = [(rid, k) for rid, r in by_rid.items() for k in range(len(r["tgt_item_id"]))]
    assert sorted(seen) == sorted(expected)
    limited = _numpy(I.eval_dataset(data["root"], _cfg("eval.max_requests=5"), length=100))
    assert len({rid for b in limited for rid in b[2]["request_id"]}) == 5


# ---- files and config ----------------------------------------------------------------------

def test_shards_and_compression_detection(data, tmp_path):
    files = I.list_shards(data["root"], "train")
    assert [f.rsplit("/", 1)[1] for f in files] == [
        "part-0.tfrecord.gz", "part-1.tfrecord", "part-2.tfrecord"]
    assert [I.compression_type(f) for f in files] == ["GZIP", "", "GZIP"]  # last: sniffed
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "train")):
        I.list_shards(str(tmp_path), "train")


def test_check_split_passes_good_data_and_refuses_missing_empty_or_unreadable(data, tmp_path):
    """Before: an empty split made training wait forever, the rest were tracebacks."""
    from core.errors import DataError
    assert I.check_split(data["root"], "train", TASKS) == I.list_shards(data["root"], "train")
    with pytest.raises(DataError, match=r"--data: no TFRecord shards \(\*.tfrecord\*\) in"):
        I.check_split(str(tmp_path), "train", TASKS)
    (tmp_path / "train").mkdir()
    for i in range(2):
        _write(tmp_path / "train" / f"part-{i}.tfrecord.gz", [], gzip=True)
    with pytest.raises(DataError, match=r"--data: the train split is empty: its 2 shard\(s\)"):
        I.check_split(str(tmp_path), "train", TASKS)
    (tmp_path / "train" / "part-2.tfrecord").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(DataError, match=r"part-2.tfrecord: neither a plain nor a GZIP"):
        I.check_split(str(tmp_path), "train", TASKS)
    with pytest.raises(DataError, match=r"part-0.tfrecord.gz: label_other does not have one "
                                        r"value per target"):
        I.check_split(data["root"], "train", ["other"])


def test_find_bad_shard_names_a_shard_truncated_after_its_first_record(data, tmp_path):
    import shutil
    root = tmp_path / "data"
    shutil.copytree(data["root"], root)
    assert I.find_bad_shard(str(root), "train", TASKS) is None
    shard = root / "train" / "part-1.tfrecord"  # plain TFRecord, 30 requests
    shard.write_bytes(shard.read_bytes()[:-50])
    I.check_split(str(root), "train", TASKS)  # the first record still reads
    with pytest.raises(tf.errors.DataLossError):  # what training meets, naming no file
        _numpy(I.train_dataset(str(root), _cfg("train.deterministic=true"), epochs=1))
    error = I.find_bad_shard(str(root), "train", TASKS)
    assert str(error).startswith(f"{shard}: truncated record at ")


@pytest.mark.parametrize("override, message", [
    ("train.length.l_max=512", "train.length.l_max: 512 is invalid; it must be <= the last "
                               "of train.bucket_boundaries (256)"),
    ("train.length.l_max=250", "train.length.l_max: 250 is invalid; it must be a multiple of "
                               "train.length.multiple (8)"),
])
def test_config_rejects_lengths_the_buckets_cannot_hold(override, message):
    with pytest.raises(C.ConfigError) as err:
        _cfg(override)
    assert message in str(err.value)
