"""Dataset configs, presets, the disk cache and the tf.data pipeline (SPAIR_SPEC §2.2)."""

import dataclasses
import glob
import json
import os
import warnings

import numpy as np
import pytest

from spair_tf import datasets, digits


def _small(**fields):
    defaults = dict(min_digits=1, max_digits=3, n_images=40, split="val", seed=7)
    defaults.update(fields)
    config = datasets.ScatterConfig(**defaults)
    config.validate()
    return config


def _assert_same(a, b):
    for field in ("images", "boxes", "counts", "labels"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


# ------------------------------------------------------------------------------------------
# Config and presets.

def test_presets_follow_the_spec():
    for split, (n, seed) in {"train": (64000, 0), "val": (1000, 1), "test": (1000, 2)}.items():
        c = datasets.experiment1(9, split)
        assert (c.image_height, c.image_width, c.min_digits, c.max_digits) == (48, 48, 9, 9)
        assert (c.n_images, c.seed, c.split, c.digit_size, c.crop_size) == (n, seed, split, 14,
                                                                           None)
    c = datasets.experiment2_train("6-10")
    assert (c.image_height, c.min_digits, c.max_digits, c.crop_size, c.crops_per_image,
            c.n_images) == (84, 6, 10, 48, 4, 100_000)
    c = datasets.experiment2_test(20)
    assert (c.image_height, c.image_width, c.min_digits, c.max_digits, c.split, c.n_images) == (
        84, 84, 20, 20, "test", 1000)
    c = datasets.addition("train", n_images=1000)
    assert (c.image_height, c.min_digits, c.max_digits, c.n_images) == (48, 5, 5, 1000)
    c = datasets.air_multi_mnist("test")
    assert (c.image_height, c.image_width, c.min_digits, c.max_digits, c.digit_size) == (
        50, 50, 0, 2, 28)


@pytest.mark.parametrize("fields, message", [
    (dict(split="training"), "split"),
    (dict(min_digits=3, max_digits=2), "max_digits"),
    (dict(image_height=10), "image_height"),
    (dict(max_digits=30), "at most 22 digits"),
    (dict(crop_size=60), "crop_size"),
    (dict(n_images=0), "n_images"),
    (dict(n_images=2.5), "n_images"),
])
def test_config_validation_names_the_field(fields, message):
    config = dataclasses.replace(datasets.ScatterConfig(), **fields)
    with pytest.raises(ValueError, match=message):
        config.validate()


def test_numpy_integers_are_normalised():
    config = datasets.ScatterConfig(max_digits=np.int64(3), n_images=np.int32(7))
    assert type(config.max_digits) is int and type(config.n_images) is int
    assert config == datasets.ScatterConfig(max_digits=3, n_images=7)


def test_preset_errors():
    with pytest.raises(ValueError, match="split"):
        datasets.experiment1(3, "training")
    with pytest.raises(ValueError, match="range_name"):
        datasets.experiment2_train("1-10")


# ------------------------------------------------------------------------------------------
# Generation.

def test_generate_is_deterministic_and_shaped_by_the_config():
    config = _small()
    a, b = datasets.generate(config), datasets.generate(config)
    _assert_same(a, b)
    assert a.images.shape == (40, 48, 48, 3) and a.images.dtype == np.uint8
    assert a.boxes.shape == (40, 3, 4) and a.labels.shape == (40, 3)
    assert set(np.unique(a.counts)) == {1, 2, 3}
    c = datasets.generate(dataclasses.replace(config, seed=8))
    assert not np.array_equal(a.images, c.images)


def test_smaller_datasets_are_prefixes_of_larger_ones():
    small, large = datasets.generate(_small(n_images=30)), datasets.generate(_small(n_images=1500))
    for field in ("images", "boxes", "counts", "labels"):
        np.testing.assert_array_equal(getattr(small, field), getattr(large, field)[:30])


def test_digits_come_from_the_split_pool_only():
    # With 28×28 digits and one digit per image, each image is its sprite at its position.
    data = datasets.generate(_small(image_height=28, image_width=28, digit_size=28,
                                    min_digits=1, max_digits=1, n_images=60, split="test"))
    test_pool = {(s * 255).round().astype(np.uint8).tobytes()
                 for s in digits.digit_pools(size=28)["test"][0]}
    for image in data.images:
        assert image[..., 0].tobytes() in test_pool


def test_digits_per_class_draws_from_the_first_digits_of_each_class(tmp_path):
    from absl import flags

    from spair_tf import cli

    config = _small(image_height=28, image_width=28, digit_size=28, min_digits=1,
                    max_digits=1, n_images=80, split="train", digits_per_class=2)
    sprites, labels = digits.digit_pools(size=28)["train"]
    first = {}
    for sprite, label in zip(sprites, labels):   # brute force: the first two of each class
        if len(first.setdefault(label, [])) < 2:
            first[label].append((sprite * 255).round().astype(np.uint8).tobytes())
    allowed = {image for images in first.values() for image in images}
    data = datasets.generate(config)
    seen = {image[..., 0].tobytes() for image in data.images}
    assert seen <= allowed and len(seen) > 10          # 20 allowed, 80 draws
    assert {len(v) for v in first.values()} == {2} and len(first) == 10
    # Its own cache entry; the whole pool is another dataset.
    whole = dataclasses.replace(config, digits_per_class=None)
    assert datasets.cache_paths(config, "d") != datasets.cache_paths(whole, "d")
    datasets.load(config, str(tmp_path))
    with open(datasets.cache_paths(config, str(tmp_path))[1]) as f:
        assert json.load(f)["config"]["digits_per_class"] == 2
    with pytest.raises(ValueError, match="digits_per_class=401: the train pool has 400"):
        datasets.generate(dataclasses.replace(config, digits_per_class=401, n_images=1))
    with pytest.raises(ValueError, match="digits_per_class must be ≥ 1, got 0"):
        dataclasses.replace(config, digits_per_class=0).validate()
    # The flag restricts the training split only.
    values = flags.FlagValues()
    cli.define_data_flags(values)
    values(["prog", "--dataset=addition", "--train_digits_per_class=100"])
    assert [c.digits_per_class for c in cli.data_configs(values)] == [100, None, None]


def test_sums_and_gt_boxes_list():
    data = datasets.generate(datasets.addition("val", n_images=20))
    for i in range(20):
        assert data.sums[i] == sum(int(v) for v in data.labels[i] if v >= 0)
        assert data.gt_boxes_list()[i].shape == (5, 4)
    assert data.sums.dtype == np.int32 and 0 <= data.sums.min() and data.sums.max() <= 45


def test_cropped_dataset():
    config = dataclasses.replace(datasets.experiment2_train("11-15", "val"), n_images=42)
    data = datasets.generate(config)
    assert data.images.shape == (42, 48, 48, 3) and data.boxes.shape == (42, 15, 4)
    np.testing.assert_array_equal(data.counts, (data.labels >= 0).sum(axis=1))
    assert data.boxes.max() <= 47


def test_air_task_allows_empty_images():
    data = datasets.generate(dataclasses.replace(datasets.air_multi_mnist("val"), n_images=60))
    assert data.images.shape == (60, 50, 50, 3) and set(np.unique(data.counts)) == {0, 1, 2}
    assert (data.images[data.counts == 0] == 0).all()


# ------------------------------------------------------------------------------------------
# Disk cache.

def test_cache_hit_returns_identical_arrays_without_generating(tmp_path, monkeypatch):
    config = _small()
    first = datasets.load(config, str(tmp_path))
    data_path, manifest_path = datasets.cache_paths(config, str(tmp_path))
    assert os.path.isfile(data_path) and os.path.isfile(manifest_path)
    manifest = json.loads(open(manifest_path).read())
    assert manifest["config"] == dataclasses.asdict(config)

    def fail(_):
        raise AssertionError("generate() called on a cache hit")

    monkeypatch.setattr(datasets, "generate", fail)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = datasets.load(config, str(tmp_path))
    _assert_same(first, second)


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SPAIR_TF_CACHE", str(tmp_path / "env_cache"))
    datasets.load(_small(n_images=5))
    assert len(os.listdir(tmp_path / "env_cache")) == 2


def _tamper_data(data_path, manifest_path):
    raw = bytearray(open(data_path, "rb").read())
    raw[len(raw) // 2] ^= 0xFF
    open(data_path, "wb").write(bytes(raw))


def _tamper_checksum(data_path, manifest_path):
    manifest = json.load(open(manifest_path))
    manifest["sha256"] = "0" * 64
    json.dump(manifest, open(manifest_path, "w"))


def _tamper_config(data_path, manifest_path):
    manifest = json.load(open(manifest_path))
    manifest["config"]["seed"] = 99
    json.dump(manifest, open(manifest_path, "w"))


def _garbage_manifest(data_path, manifest_path):
    open(manifest_path, "w").write("{not json")


def _truncate_data(data_path, manifest_path):
    raw = open(data_path, "rb").read()
    open(data_path, "wb").write(raw[:100])


def _delete_manifest(data_path, manifest_path):
    os.remove(manifest_path)


@pytest.mark.parametrize("tamper", [_tamper_data, _tamper_checksum, _tamper_config,
                                    _garbage_manifest, _truncate_data, _delete_manifest])
def test_bad_cache_entry_is_regenerated_with_a_warning(tmp_path, tamper):
    config = _small(n_images=12)
    reference = datasets.load(config, str(tmp_path))
    data_path, manifest_path = datasets.cache_paths(config, str(tmp_path))
    tamper(data_path, manifest_path)
    with pytest.warns(RuntimeWarning, match=os.path.basename(data_path)):
        regenerated = datasets.load(config, str(tmp_path))
    _assert_same(reference, regenerated)
    with warnings.catch_warnings():  # and the rewritten entry is good again
        warnings.simplefilter("error")
        _assert_same(reference, datasets.load(config, str(tmp_path)))


def test_different_configs_use_different_entries(tmp_path):
    a, b = _small(seed=1, n_images=5), _small(seed=2, n_images=5)
    assert datasets.cache_paths(a, "d") != datasets.cache_paths(b, "d")
    assert not np.array_equal(datasets.load(a, str(tmp_path)).images,
                              datasets.load(b, str(tmp_path)).images)
    assert len(os.listdir(tmp_path)) == 4


# ------------------------------------------------------------------------------------------
# tf.data.

def test_to_tf_dataset_shapes_dtypes_ranges():
    import tensorflow as tf
    data = datasets.generate(_small(n_images=20))
    ds = datasets.to_tf_dataset(data, batch_size=8, seed=3)
    spec = ds.element_spec
    assert spec["images"].shape.as_list() == [8, 48, 48, 3]
    assert spec["images"].dtype == tf.float32 and spec["boxes"].dtype == tf.float32
    assert spec["counts"].dtype == tf.int32 and spec["labels"].dtype == tf.int32
    batches = list(ds.take(6))  # more than one epoch: repeats
    for batch in batches:
        images = batch["images"].numpy()
        assert images.min() >= 0.0 and images.max() <= 1.0
        assert batch["boxes"].shape == (8, 3, 4) and batch["labels"].shape == (8, 3)
        assert batch["counts"].shape == (8,)
    # Each yielded image is one of the data's, with its own boxes.
    lookup = {img.tobytes(): i for i, img in enumerate(data.images)}
    for batch in batches[:2]:
        for image, boxes in zip(batch["images"].numpy(), batch["boxes"].numpy()):
            i = lookup[np.round(image * 255).astype(np.uint8).tobytes()]
            np.testing.assert_array_equal(boxes, data.boxes[i])


def test_to_tf_dataset_epoch_order():
    data = datasets.generate(_small(n_images=20))
    ordered = datasets.to_tf_dataset(data, 5, shuffle=False, repeat=False)
    counts = np.concatenate([b["counts"].numpy() for b in ordered])
    np.testing.assert_array_equal(counts, data.counts)
    shuffled = datasets.to_tf_dataset(data, 6, shuffle=True, repeat=False, drop_remainder=False,
                                      seed=1)
    labels = np.concatenate([b["labels"].numpy() for b in shuffled])
    assert len(labels) == 20  # a permutation: every image once, last batch of 2 kept
    assert sorted(map(tuple, labels)) == sorted(map(tuple, data.labels))
    again = datasets.to_tf_dataset(data, 6, shuffle=True, repeat=False, drop_remainder=False,
                                   seed=1)
    np.testing.assert_array_equal(np.concatenate([b["labels"].numpy() for b in again]), labels)
    with pytest.raises(ValueError, match="batch_size"):
        datasets.to_tf_dataset(data, 0)


# ------------------------------------------------------------------------------------------
# Command line.

def test_cli_reports_user_errors_without_traceback(capsys):
    assert datasets.main(["--preset", "experiment1"]) == 2
    assert "needs --n_digits" in capsys.readouterr().err
    assert datasets.main(["--preset", "experiment1", "--n_digits", "40"]) == 2
    assert "max_digits=40" in capsys.readouterr().err


def test_cli_generates_and_caches(tmp_path, capsys):
    argv = ["--preset", "experiment1", "--n_digits", "3", "--split", "val", "--n_images", "10",
            "--cache_dir", str(tmp_path)]
    assert datasets.main(argv) == 0
    out = capsys.readouterr().out
    assert "10 images 48×48" in out and str(tmp_path) in out
    assert len(os.listdir(tmp_path)) == 2


# ------------------------------------------------------------------------------------------
# Digit-preprocessing options (the original code's; not the spec's default).

def test_default_configs_keep_their_cache_names():
    # The record of a default config is the one written before the options existed: the
    # eleven original fields and the format version, hashed as JSON with sorted keys.
    import hashlib
    config = _small(n_images=5)
    old_fields = ("image_height", "image_width", "min_digits", "max_digits", "n_images",
                  "split", "seed", "digit_size", "crop_size", "crops_per_image", "mnist_path")
    record = {"config": {name: getattr(config, name) for name in old_fields},
              "format_version": 1}
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
    assert datasets.cache_paths(config, "d")[0].endswith(f"_{digest}.npz")


def test_preprocessing_options_name_their_own_cache_entries(tmp_path):
    base = _small(n_images=5)
    framed = dataclasses.replace(base, digit_frame="emnist")
    floored = dataclasses.replace(base, digit_rounding="floor")
    paths = {datasets.cache_paths(c, "d")[0] for c in (base, framed, floored)}
    assert len(paths) == 3
    datasets.load(framed, str(tmp_path))
    with open(datasets.cache_paths(framed, str(tmp_path))[1]) as f:
        assert json.load(f)["config"]["digit_frame"] == "emnist"


def test_emnist_framed_digits_have_12_pixel_boxes():
    data = datasets.generate(_small(min_digits=1, max_digits=1, n_images=30,
                                    digit_frame="emnist"))
    boxes = data.boxes[:, 0]
    long_side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    np.testing.assert_array_equal(long_side, 11)   # 12 pixels, boxes are max − min indices
    default = datasets.generate(_small(min_digits=1, max_digits=1, n_images=30))
    assert np.maximum(default.boxes[:, 0, 2] - default.boxes[:, 0, 0],
                      default.boxes[:, 0, 3] - default.boxes[:, 0, 1]).max() <= 10


@pytest.mark.parametrize("fields, message", [
    (dict(digit_frame="nist"), "digit_frame"),
    (dict(digit_rounding="round"), "digit_rounding"),
])
def test_bad_preprocessing_options_name_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        _small(**fields)


def test_manifest_written_before_the_options_is_still_trusted(tmp_path):
    config = _small(n_images=5)
    reference = datasets.load(config, str(tmp_path))
    _, manifest_path = datasets.cache_paths(config, str(tmp_path))
    with open(manifest_path) as f:
        manifest = json.load(f)
    for name in ("digit_frame", "digit_rounding"):   # as the earlier code wrote it
        del manifest["config"][name]
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # no "ignoring the cache entry" warning
        _assert_same(reference, datasets.load(config, str(tmp_path)))


# ------------------------------------------------------------------------------------------
# Overlap rules: AIR's multi-MNIST uses its generator's ink-disjoint rule.

def test_air_preset_uses_the_ink_disjoint_rule():
    for split in datasets.SPLITS:
        for n_images in (None, 500):
            config = datasets.air_multi_mnist(split, n_images=n_images)
            assert config.overlap_rule == "ink_disjoint"
    for config in (datasets.experiment1(3, "val"), datasets.experiment2_train("1-5"),
                   datasets.experiment2_test(4), datasets.addition("test"), _small()):
        assert config.overlap_rule == "frame_area"


def test_generate_passes_the_rule_and_its_tries_to_scatter(monkeypatch):
    from spair_tf import scatter
    calls = []
    real = scatter.scatter_digits

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(scatter, "scatter_digits", spy)
    air = datasets.air_multi_mnist("train", n_images=50)
    data = datasets.generate(air)
    datasets.generate(_small(n_images=5))
    assert [(c["overlap_rule"], c["max_tries"]) for c in calls] == [
        ("ink_disjoint", datasets.INK_DISJOINT_MAX_TRIES), ("frame_area", 1000)]
    assert datasets.INK_DISJOINT_MAX_TRIES == 100
    # The data are scatter's ink-disjoint images: block 0 drawn from the rng seeded (seed, 0).
    sprites, labels = digits.digit_pools(size=28)["train"]
    rng = np.random.default_rng([air.seed, 0])
    counts = rng.integers(0, 3, size=datasets.BLOCK_IMAGES)
    out = real(sprites, labels, counts, (50, 50), rng, max_tries=100, max_objects=2,
               overlap_rule="ink_disjoint")
    for field in ("images", "boxes", "counts", "labels"):
        np.testing.assert_array_equal(getattr(data, field), out[field][:50])
    # And no pixel is inked by two digits (the frames, 28×28, may cross the image edge).
    assert (data.counts == 2).sum() > 5
    for i in range(50):
        ink = np.zeros((50 + 56, 50 + 56), np.int64)                  # padded by a frame
        for k in range(out["counts"][i]):
            (y0, x0), sprite = out["positions"][i, k], sprites[out["sprite_index"][i, k]]
            ink[28 + y0:56 + y0, 28 + x0:56 + x0] += sprite > 0
        assert ink.max() <= 1 and ink.sum() == ink[28:78, 28:78].sum()


@pytest.mark.parametrize("rule", ["ink", "frame", None])
def test_bad_overlap_rule_names_the_field(rule):
    with pytest.raises(ValueError, match=r"ScatterConfig.overlap_rule must be one of .*"
                                         r"'frame_area', 'ink_disjoint'"):
        _small(overlap_rule=rule)


def test_ink_rule_infeasible_config_raises_at_generation():
    config = _small(image_height=28, image_width=28, digit_size=28, min_digits=20,
                    max_digits=20, n_images=4, overlap_rule="ink_disjoint")  # validates
    with pytest.raises(ValueError, match=r"n=20 .*28×28.*ink-disjoint"):
        datasets.generate(config)


def test_ink_rule_configs_have_their_own_cache_entries():
    # Entries written before overlap_rule existed were hashed without the field: a
    # frame_area config keeps that name, and AIR's (ink_disjoint) preset gets a new one, so
    # an AIR entry generated under the old rule is never read for it.
    import hashlib
    air = datasets.air_multi_mnist("train", n_images=100)
    old_air = dataclasses.replace(air, overlap_rule="frame_area")
    options = ("digit_frame", "digit_rounding", "overlap_rule",
               "digits_per_class")  # at their defaults here
    record = {"config": {k: v for k, v in dataclasses.asdict(old_air).items()
                         if k not in options}, "format_version": 1}
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
    assert datasets.cache_paths(old_air, "d")[0].endswith(f"_{digest}.npz")
    assert datasets.cache_paths(air, "d") != datasets.cache_paths(old_air, "d")


def test_ink_rule_cache_round_trip(tmp_path):
    config = datasets.air_multi_mnist("test", n_images=30)
    first = datasets.load(config, str(tmp_path))
    _, manifest_path = datasets.cache_paths(config, str(tmp_path))
    with open(manifest_path) as f:
        assert json.load(f)["config"]["overlap_rule"] == "ink_disjoint"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _assert_same(first, datasets.load(config, str(tmp_path)))


def test_digit_flags_reach_every_split_and_the_original_digits_flagfiles_parse():
    """--digit_frame / --digit_rounding select the original code's digits for train, val
    and test; every configs/*_original_digits.flags sets them on its parent's data."""
    from absl import flags

    from spair_tf import cli

    def parsed(*argv):
        values = flags.FlagValues()
        cli.define_data_flags(values)
        values(["prog", *argv], known_only=True)  # the flagfile's model flags are skipped
        return cli.data_configs(values)

    for config in parsed():
        assert (config.digit_frame, config.digit_rounding) == ("mnist", "half_up")
    for config in parsed("--digit_frame=emnist", "--digit_rounding=floor"):
        assert (config.digit_frame, config.digit_rounding) == ("emnist", "floor")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cwd = os.getcwd()
    os.chdir(repo)  # the flagfile names its parent relative to the repository
    try:
        paths = sorted(glob.glob("configs/*_original_digits.flags"))
        assert len(paths) == 8, paths   # Experiment 1 n = 1, 3, 5, 7, 9; Experiment 2 × 3
        pairs = [(parsed(f"--flagfile={path}"),
                  parsed(f"--flagfile={path.replace('_original_digits', '')}"))
                 for path in paths]
        n5 = parsed("--flagfile=configs/experiment1_n5_original_digits.flags")
    finally:
        os.chdir(cwd)
    for path, (configs, parents) in zip(paths, pairs):
        for config, parent in zip(configs, parents):
            assert (config.digit_frame, config.digit_rounding) == ("emnist", "floor"), path
            assert dataclasses.replace(config, digit_frame="mnist",
                                       digit_rounding="half_up") == parent, path
    assert [c.n_images for c in n5] == [64000, 1000, 1000]
    assert {(c.min_digits, c.max_digits) for c in n5} == {(5, 5)}


def test_every_addition_flagfile_draws_the_same_images():
    """Every Fig. 4 run, stage 1 or 2, SPAIR, AIR or baseline, reads configs/addition/
    data.flags: the addition images with the original code's digits."""
    from absl import flags

    from spair_tf import cli

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cwd = os.getcwd()
    os.chdir(repo)  # flagfiles name their parents relative to the repository
    try:
        paths = sorted(set(glob.glob("configs/addition/*.flags"))
                       - {"configs/addition/data.flags"})
        parsed = {}
        for path in paths:
            values = flags.FlagValues()
            cli.define_data_flags(values)
            values(["prog", f"--flagfile={path}", "--train_images=32000"], known_only=True)
            parsed[path] = cli.data_configs(values)
    finally:
        os.chdir(cwd)
    assert len(parsed) == 8, paths   # 2 stage-1, 3 stage-2 (shared, fixed, unfixed), 3 baselines
    expected = [datasets.addition(split, n) for split, n in
                (("train", 32000), ("val", None), ("test", None))]
    expected = [dataclasses.replace(c, digit_frame="emnist", digit_rounding="floor")
                for c in expected]
    for path, configs in parsed.items():
        assert configs == expected, path


def test_to_tf_dataset_carries_extra_per_image_arrays():
    data = datasets.generate(_small(n_images=20))
    extra = {"index": np.arange(20, dtype=np.int32),
             "pair": np.stack([np.arange(20), -np.arange(20)], 1).astype(np.float32)}
    lookup = {img.tobytes(): i for i, img in enumerate(data.images)}
    for batch in datasets.to_tf_dataset(data, 6, seed=1, extra=extra).take(5):
        rows = [lookup[np.round(image * 255).astype(np.uint8).tobytes()]
                for image in batch["images"].numpy()]
        np.testing.assert_array_equal(batch["index"].numpy(), rows)
        np.testing.assert_array_equal(batch["pair"].numpy(), extra["pair"][rows])
    with pytest.raises(ValueError, match=r"extra\['index'\]: expected a new name and 20 rows"):
        datasets.to_tf_dataset(data, 6, extra={"index": np.arange(19)})
    with pytest.raises(ValueError, match=r"extra\['boxes'\]"):
        datasets.to_tf_dataset(data, 6, extra={"boxes": np.arange(20)})
