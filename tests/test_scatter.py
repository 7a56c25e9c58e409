"""Scattered-digit images and crops (SPAIR_SPEC §2.2), against slow plain-Python references."""

import itertools

import numpy as np
import pytest
from scipy import stats

from spair_tf import digits, scatter


@pytest.fixture(scope="module")
def pool():
    return digits.digit_pools()["train"]


@pytest.fixture(scope="module")
def small_set(pool):
    sprites, labels = pool
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 7, size=150)
    return scatter.scatter_digits(sprites, labels, counts, (48, 48), np.random.default_rng(1))


# ------------------------------------------------------------------------------------------
# Plain-Python references.

def _square_pixels(y0, x0, h, w):
    return {(y0 + r, x0 + c) for r in range(h) for c in range(w)}


def _render_reference(sprites, sprite_ids, positions, height, width):
    """Composites digit by digit, pixel by pixel: v ← round_half_up(α·255 + (1 − α)·v)."""
    canvas = [[0] * width for _ in range(height)]
    for sprite_id, (y0, x0) in zip(sprite_ids, positions):
        sprite = sprites[sprite_id]
        for r in range(sprite.shape[0]):
            for c in range(sprite.shape[1]):
                alpha = float(sprite[r, c])
                value = alpha * 255.0 + (1.0 - alpha) * canvas[y0 + r][x0 + c]
                canvas[y0 + r][x0 + c] = int(np.floor(value + 0.5))
    return np.array(canvas)


def _nonzero_bbox(image):
    rows = [r for r in range(image.shape[0]) if any(image[r])]
    cols = [c for c in range(image.shape[1]) if any(image[:, c])]
    return [min(rows), min(cols), max(rows), max(cols)]


def _digits_of(out, i):
    n = int(out["counts"][i])
    return out["sprite_index"][i, :n].tolist(), [tuple(p) for p in out["positions"][i, :n]]


# ------------------------------------------------------------------------------------------
# Placement.

def test_every_placement_obeys_the_summed_overlap_rule(small_set):
    for i in range(len(small_set["counts"])):
        _, positions = _digits_of(small_set, i)
        squares = [_square_pixels(y, x, 14, 14) for y, x in positions]
        for k in range(1, len(squares)):
            summed = sum(len(squares[k] & squares[j]) for j in range(k))
            assert summed <= 98, (i, k, summed)


def test_digits_are_fully_inside(small_set):
    for i in range(len(small_set["counts"])):
        for y, x in _digits_of(small_set, i)[1]:
            assert 0 <= y <= 48 - 14 and 0 <= x <= 48 - 14


def test_rule_holds_after_whole_image_restarts(pool):
    sprites, labels = pool
    out = scatter.scatter_digits(sprites, labels, np.full(40, 12), (48, 48),
                                 np.random.default_rng(5))
    assert out["restarts"].max() > 0  # 12 digits in 48×48 restart often
    for i in range(40):
        squares = [_square_pixels(y, x, 14, 14) for y, x in _digits_of(out, i)[1]]
        assert len(squares) == 12
        for k in range(1, 12):
            assert sum(len(squares[k] & squares[j]) for j in range(k)) <= 98


def test_single_digit_position_is_uniform(pool):
    sprites, labels = pool
    out = scatter.scatter_digits(sprites, labels, np.ones(20000, np.int64), (48, 48),
                                 np.random.default_rng(2))
    y, x = out["positions"][:, 0, 0], out["positions"][:, 0, 1]
    cells = np.bincount(y * 35 + x, minlength=35 * 35)
    assert stats.chisquare(cells).pvalue > 1e-3
    assert y.min() == 0 and y.max() == 34 and x.min() == 0 and x.max() == 34


def test_two_digit_positions_follow_sequential_rejection_sampling():
    """4×4 digits in 8×8 images: P(p1, p2) = 1/25 · 1/|A(p1)|, A(p1) = acceptable p2."""
    sprites = np.full((1, 4, 4), 0.5, np.float32)
    n_images = 30000
    out = scatter.scatter_digits(sprites, np.zeros(1, np.int64), np.full(n_images, 2), (8, 8),
                                 np.random.default_rng(3))
    corners = list(itertools.product(range(5), range(5)))
    expected = {}
    for p1 in corners:
        acceptable = [p2 for p2 in corners
                      if len(_square_pixels(*p1, 4, 4) & _square_pixels(*p2, 4, 4)) <= 8]
        for p2 in acceptable:
            expected[(p1, p2)] = 1.0 / 25 / len(acceptable)
    _assert_pair_positions_follow(out, expected, n_images)


# ------------------------------------------------------------------------------------------
# Rendering and ground truth.

def test_compositing_equals_the_reference_formula(pool, small_set):
    sprites, _ = pool
    for i in range(0, 150, 3):
        ids, positions = _digits_of(small_set, i)
        reference = _render_reference(sprites, ids, positions, 48, 48)
        for channel in range(3):
            np.testing.assert_array_equal(small_set["images"][i, :, :, channel], reference)


def test_compositing_with_arbitrary_float_alpha_is_within_rounding():
    rng = np.random.default_rng(4)
    sprites = rng.uniform(0, 1, size=(20, 14, 14)).astype(np.float32)
    out = scatter.scatter_digits(sprites, np.arange(20) % 10, np.full(30, 4), (40, 40),
                                 np.random.default_rng(5))
    for i in range(30):
        ids, positions = _digits_of(out, i)
        rounded = _render_reference(sprites, ids, positions, 40, 40)
        assert np.abs(out["images"][i, :, :, 0].astype(int) - rounded).max() <= 1
        # And the float composite (no rounding at all) differs by at most 0.5 per layer.
        exact = np.zeros((40, 40))
        for sprite_id, (y0, x0) in zip(ids, positions):
            alpha = sprites[sprite_id].astype(np.float64)
            window = exact[y0:y0 + 14, x0:x0 + 14]
            exact[y0:y0 + 14, x0:x0 + 14] = alpha * 255 + (1 - alpha) * window
        assert np.abs(out["images"][i, :, :, 0] - exact).max() <= 0.5 * 4 + 1e-6


def test_gt_box_is_the_bbox_of_the_digit_rendered_alone(pool, small_set):
    sprites, _ = pool
    for i in range(0, 150, 2):
        ids, positions = _digits_of(small_set, i)
        for k, (sprite_id, position) in enumerate(zip(ids, positions)):
            alone = _render_reference(sprites, [sprite_id], [position], 48, 48)
            np.testing.assert_array_equal(small_set["boxes"][i, k], _nonzero_bbox(alone))


def test_labels_counts_and_padding(pool, small_set):
    _, labels = pool
    counts = small_set["counts"]
    m = small_set["boxes"].shape[1]
    assert m == counts.max()
    for i, n in enumerate(counts):
        assert small_set["labels"][i, :n].tolist() == [
            int(labels[s]) for s in small_set["sprite_index"][i, :n]]
        assert (small_set["labels"][i, n:] == -1).all()
        assert (small_set["boxes"][i, n:] == 0).all()
        assert (small_set["sprite_index"][i, n:] == -1).all()
    for key, dtype in (("images", np.uint8), ("boxes", np.float32), ("counts", np.int32),
                       ("labels", np.int32)):
        assert small_set[key].dtype == dtype
    blank = counts == 0
    assert blank.any() and (small_set["images"][blank] == 0).all()


def test_deterministic_by_seed(pool):
    sprites, labels = pool
    counts = np.full(50, 3)
    a = scatter.scatter_digits(sprites, labels, counts, (48, 48), np.random.default_rng(9))
    b = scatter.scatter_digits(sprites, labels, counts, (48, 48), np.random.default_rng(9))
    c = scatter.scatter_digits(sprites, labels, counts, (48, 48), np.random.default_rng(10))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["images"], c["images"])


def test_28_pixel_digits_for_air_task():
    sprites, labels = digits.digit_pools(size=28)["val"]
    counts = np.random.default_rng(0).integers(0, 3, size=60)
    out = scatter.scatter_digits(sprites, labels, counts, (50, 50), np.random.default_rng(1))
    assert out["images"].shape == (60, 50, 50, 3) and out["boxes"].shape == (60, 2, 4)
    for i in range(60):
        ids, positions = _digits_of(out, i)
        if len(positions) == 2:
            overlap = len(_square_pixels(*positions[0], 28, 28)
                          & _square_pixels(*positions[1], 28, 28))
            assert overlap <= 28 * 28 / 2
        reference = _render_reference(sprites, ids, positions, 50, 50)
        np.testing.assert_array_equal(out["images"][i, :, :, 1], reference)


# ------------------------------------------------------------------------------------------
# Errors.

def test_impossible_counts_raise_naming_n_size_and_rule(pool):
    sprites, labels = pool
    with pytest.raises(ValueError, match=r"n=23 .*48×48.*98"):  # ruled out by area
        scatter.scatter_digits(sprites, labels, np.full(5, 23), (48, 48), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"n=17 .*48×48.*98.*failed 3 times"):
        scatter.scatter_digits(sprites, labels, np.full(5, 17), (48, 48), np.random.default_rng(0),
                               max_tries=100, max_restarts=2)


def test_bad_inputs(pool):
    sprites, labels = pool
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="smaller than the digit size"):
        scatter.scatter_digits(sprites, labels, np.ones(2, np.int64), (13, 48), rng)
    with pytest.raises(ValueError, match="non-negative"):
        scatter.scatter_digits(sprites, labels, np.array([-1]), (48, 48), rng)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        scatter.scatter_digits(sprites * 255, labels, np.ones(2, np.int64), (48, 48), rng)
    with pytest.raises(ValueError, match="entirely zero"):
        scatter.scatter_digits(np.zeros((2, 14, 14), np.float32), np.zeros(2, np.int64),
                               np.ones(2, np.int64), (48, 48), rng)
    with pytest.raises(TypeError, match="Generator"):
        scatter.scatter_digits(sprites, labels, np.ones(2, np.int64), (48, 48), "seed")


# ------------------------------------------------------------------------------------------
# Crops (Experiment 2 training).

def _crop_reference(box_list, label_list, top, left, size):
    kept_boxes, kept_labels = [], []
    for (y0, x0, y1, x1), label in zip(box_list, label_list):
        clipped = [min(max(v, 0), size - 1) for v in (y0 - top, x0 - left, y1 - top, x1 - left)]
        if clipped[2] > clipped[0] and clipped[3] > clipped[1]:
            kept_boxes.append(clipped)
            kept_labels.append(label)
    return kept_boxes, kept_labels


def test_crops_match_a_per_crop_reference(pool):
    sprites, labels = pool
    counts = np.random.default_rng(6).integers(1, 16, size=40)
    source = scatter.scatter_digits(sprites, labels, counts, (84, 84), np.random.default_rng(7))
    out = scatter.crop(source["images"], source["boxes"], source["counts"], source["labels"],
                       48, 4, np.random.default_rng(8))
    assert out["images"].shape == (160, 48, 48, 3)
    assert out["boxes"].shape == (160, 15, 4)
    for j in range(160):
        i = j // 4
        assert out["source_index"][j] == i
        top, left = (int(v) for v in out["offsets"][j])
        assert 0 <= top <= 84 - 48 and 0 <= left <= 84 - 48
        np.testing.assert_array_equal(out["images"][j],
                                      source["images"][i, top:top + 48, left:left + 48])
        n = int(source["counts"][i])
        boxes, kept_labels = _crop_reference(source["boxes"][i, :n].tolist(),
                                             source["labels"][i, :n].tolist(), top, left, 48)
        assert out["counts"][j] == len(boxes)
        np.testing.assert_array_equal(out["boxes"][j, :len(boxes)].reshape(-1, 4),
                                      np.array(boxes, np.float32).reshape(-1, 4))
        assert out["labels"][j, :len(boxes)].tolist() == kept_labels
        assert (out["labels"][j, len(boxes):] == -1).all()
        assert (out["boxes"][j, len(boxes):] == 0).all()


def test_crop_boxes_are_clipped_and_counts_consistent(pool):
    sprites, labels = pool
    source = scatter.scatter_digits(sprites, labels, np.full(100, 10), (84, 84),
                                    np.random.default_rng(11))
    out = scatter.crop(source["images"], source["boxes"], source["counts"], source["labels"],
                       48, 4, np.random.default_rng(12))
    boxes, counts = out["boxes"], out["counts"]
    assert boxes.min() >= 0 and boxes.max() <= 47
    np.testing.assert_array_equal(counts, (out["labels"] >= 0).sum(axis=1))
    for j, n in enumerate(counts):
        assert (boxes[j, :n, 2] > boxes[j, :n, 0]).all() and (
            boxes[j, :n, 3] > boxes[j, :n, 1]).all()
    assert counts.max() <= 10 and counts.min() >= 0 and 0 < counts.mean() < 10


def test_crop_bad_arguments(pool):
    images = np.zeros((2, 20, 20, 3), np.uint8)
    boxes, counts, labels = np.zeros((2, 1, 4), np.float32), np.zeros(2, np.int32), -np.ones(
        (2, 1), np.int32)
    with pytest.raises(ValueError, match="crop_size"):
        scatter.crop(images, boxes, counts, labels, 21, 4, 0)
    with pytest.raises(ValueError, match="crops_per_image"):
        scatter.crop(images, boxes, counts, labels, 10, 0, 0)


# ------------------------------------------------------------------------------------------
# The "ink_disjoint" rule (AIR's multi-MNIST generator), against brute-force references.

@pytest.fixture(scope="module")
def pool28():
    return digits.digit_pools(size=28)["val"]


def _ink_scatter(sprites, labels, counts, image_size, seed, **kwargs):
    return scatter.scatter_digits(sprites, labels, counts, image_size,
                                  np.random.default_rng(seed), overlap_rule="ink_disjoint",
                                  **{"max_tries": 100, **kwargs})


@pytest.fixture(scope="module")
def ink_set(pool28):
    sprites, labels = pool28
    counts = np.random.default_rng(20).integers(0, 4, size=150)
    return _ink_scatter(sprites, labels, counts, (50, 50), 21)


@pytest.fixture(scope="module")
def crowded_ink_set(pool28):
    sprites, labels = pool28
    return _ink_scatter(sprites, labels, np.full(40, 5), (50, 50), 22)


def _ink_masks(sprites, ids, positions, height, width):
    """Each digit's ink as a bool [H, W] mask, pixel by pixel; asserts it is inside the image."""
    masks = []
    for sprite_id, (y0, x0) in zip(ids, positions):
        mask = np.zeros((height, width), bool)
        for r, c in zip(*np.nonzero(sprites[sprite_id])):
            y, x = y0 + r, x0 + c
            assert 0 <= y < height and 0 <= x < width, (sprite_id, y0, x0, r, c)
            mask[y, x] = True
        masks.append(mask)
    return masks


def _render_padded_reference(sprites, ids, positions, height, width):
    """Composites whole frames on a canvas padded by a frame on every side, then crops."""
    h, w = sprites.shape[1:]
    canvas = np.zeros((height + 2 * h, width + 2 * w))                 # [H + 2h, W + 2w]
    for sprite_id, (y0, x0) in zip(ids, positions):
        alpha = sprites[sprite_id].astype(np.float64)                  # [h, w]
        window = canvas[h + y0:2 * h + y0, w + x0:2 * w + x0]
        canvas[h + y0:2 * h + y0, w + x0:2 * w + x0] = np.floor(
            alpha * 255 + (1 - alpha) * window + 0.5)
    inside = canvas[h:h + height, w:w + width]
    assert canvas.sum() == inside.sum()  # nothing drawn outside the image
    return inside


@pytest.mark.parametrize("which", ["ink_set", "crowded_ink_set"])
def test_ink_rule_no_pixel_is_inked_twice_and_all_ink_is_inside(pool28, which, request):
    sprites, _ = pool28
    out = request.getfixturevalue(which)
    for i in range(len(out["counts"])):
        ids, positions = _digits_of(out, i)
        masks = _ink_masks(sprites, ids, positions, 50, 50)
        if masks:
            assert np.sum(masks, axis=0).max() <= 1, i


def test_ink_rule_frames_may_cross_the_image_edge(ink_set):
    used = np.arange(ink_set["positions"].shape[1])[None, :] < ink_set["counts"][:, None]
    y0, x0 = ink_set["positions"][used].T
    assert (y0 < 0).any() and (x0 < 0).any()
    assert (y0 + 28 > 50).any() and (x0 + 28 > 50).any()
    assert y0.min() >= -27 and x0.min() >= -27 and y0.max() <= 49 and x0.max() <= 49


@pytest.mark.parametrize("which", ["ink_set", "crowded_ink_set"])
def test_ink_rule_compositing_and_boxes_equal_the_references(pool28, which, request):
    sprites, labels = pool28
    out = request.getfixturevalue(which)
    for i in range(len(out["counts"])):
        ids, positions = _digits_of(out, i)
        reference = _render_padded_reference(sprites, ids, positions, 50, 50)
        for channel in range(3):
            np.testing.assert_array_equal(out["images"][i, :, :, channel], reference)
        for k, mask in enumerate(_ink_masks(sprites, ids, positions, 50, 50)):
            np.testing.assert_array_equal(out["boxes"][i, k], _nonzero_bbox(mask))
        assert out["labels"][i, :len(ids)].tolist() == [int(labels[s]) for s in ids]


def test_ink_rule_restarts_happen_in_crowded_images(crowded_ink_set):
    assert crowded_ink_set["restarts"].max() > 0


def test_ink_rule_padding(ink_set):
    counts = ink_set["counts"]
    assert set(np.unique(counts)) == {0, 1, 2, 3}
    for i, n in enumerate(counts):
        assert (ink_set["sprite_index"][i, :n] >= 0).all()
        assert (ink_set["sprite_index"][i, n:] == -1).all()
        assert (ink_set["labels"][i, n:] == -1).all() and (ink_set["boxes"][i, n:] == 0).all()
        assert (ink_set["positions"][i, n:] == -1).all()
    assert (ink_set["images"][counts == 0] == 0).all()


def test_ink_rule_deterministic_by_seed(pool28):
    sprites, labels = pool28
    counts = np.full(50, 2)
    a = _ink_scatter(sprites, labels, counts, (50, 50), 9)
    b = _ink_scatter(sprites, labels, counts, (50, 50), 9)
    c = _ink_scatter(sprites, labels, counts, (50, 50), 10)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["images"], c["images"])
    assert not np.array_equal(a["positions"], c["positions"])


def test_ink_rule_single_digit_ink_box_is_uniform_inside_the_image():
    # One 6×6 sprite whose ink box is rows 1..2, cols 2..4 (2×3) in an 8×8 image: the ink
    # box's top-left is uniform over 7×6 corners, so the frame's is over [−1, 5]×[−2, 3].
    sprite = np.zeros((1, 6, 6), np.float32)
    sprite[0, 1:3, 2:5] = 0.5
    sprite[0, 1, 2] = 0.0  # ink need not fill its box
    out = scatter.scatter_digits(sprite, np.zeros(1, np.int64), np.ones(21000, np.int64), (8, 8),
                                 np.random.default_rng(2), overlap_rule="ink_disjoint")
    y, x = out["positions"][:, 0, 0], out["positions"][:, 0, 1]
    assert y.min() == -1 and y.max() == 5 and x.min() == -2 and x.max() == 3
    cells = np.bincount((y + 1) * 6 + (x + 2), minlength=42)
    assert stats.chisquare(cells).pvalue > 1e-3
    np.testing.assert_array_equal(out["boxes"][:, 0], np.stack([y + 1, x + 2, y + 2, x + 4], 1))


def test_ink_rule_two_digit_positions_follow_sequential_rejection_sampling():
    """A diagonal of 3 pixels in a 4×4 frame, 6×6 images: frames and ink boxes may overlap,
    ink may not. P(p1, p2) = 1/16 · 1/|A(p1)|, A(p1) = second positions with disjoint ink."""
    sprite = np.zeros((1, 4, 4), np.float32)
    ink = [(1, 0), (2, 1), (3, 2)]
    for r, c in ink:
        sprite[0, r, c] = 0.5
    n_images = 30000
    out = scatter.scatter_digits(sprite, np.zeros(1, np.int64), np.full(n_images, 2), (6, 6),
                                 np.random.default_rng(3), overlap_rule="ink_disjoint")
    frames = [(ty - 1, tx) for ty in range(4) for tx in range(4)]  # ink box 3×3 at (1, 0)

    def pixels(y0, x0):
        return {(y0 + r, x0 + c) for r, c in ink}

    expected = {}
    for p1 in frames:
        acceptable = [p2 for p2 in frames if not pixels(*p1) & pixels(*p2)]
        for p2 in acceptable:
            expected[(p1, p2)] = 1.0 / 16 / len(acceptable)
    # Some accepted pairs have overlapping ink boxes (not just touching ones).
    assert any(abs(p1[0] - p2[0]) < 3 and abs(p1[1] - p2[1]) < 3 for p1, p2 in expected)
    _assert_pair_positions_follow(out, expected, n_images)


def test_ink_rule_impossible_requests_raise(pool28):
    solid = np.ones((3, 28, 28), np.float32)  # all-ink sprites
    with pytest.raises(ValueError, match=r"n=3 .*30×30.*ink-disjoint.*at most 1 fit"):
        scatter.scatter_digits(solid, np.arange(3), np.full(4, 3), (30, 30), 0,
                               overlap_rule="ink_disjoint")
    # 2·784 ≤ 40·40 passes the area bound, but two 28×28 squares never fit side by side.
    with pytest.raises(ValueError, match=r"n=2 .*40×40.*ink-disjoint.*failed 3 times.*10 tries"):
        scatter.scatter_digits(solid, np.arange(3), np.full(4, 2), (40, 40), 0, max_tries=10,
                               max_restarts=2, overlap_rule="ink_disjoint")
    sprites, labels = pool28
    with pytest.raises(ValueError, match=r"n=7 .*50×50.*ink-disjoint.*failed 51 times"):
        _ink_scatter(sprites, labels, np.full(20, 7), (50, 50), 0)


def test_ink_rule_bad_arguments(pool28):
    sprites, labels = pool28
    counts = np.ones(2, np.int64)
    with pytest.raises(ValueError, match="max_overlap"):
        _ink_scatter(sprites, labels, counts, (50, 50), 0, max_overlap=392)
    with pytest.raises(ValueError, match=r"overlap_rule must be one of .*'frame_area'"):
        scatter.scatter_digits(sprites, labels, counts, (50, 50), 0, overlap_rule="ink")
    with pytest.raises(ValueError, match="ink box"):  # MNIST ink boxes are up to 20×20
        _ink_scatter(sprites, labels, counts, (19, 50), 0)
    # Smaller than a frame but larger than every ink box is fine under this rule.
    out = _ink_scatter(sprites, labels, np.ones(5, np.int64), (20, 20), 0)
    assert out["images"].shape == (5, 20, 20, 3) and out["images"].any(axis=(1, 2, 3)).all()


def test_frame_area_is_the_default_rule(pool):
    sprites, labels = pool
    counts = np.random.default_rng(0).integers(0, 6, size=60)
    a = scatter.scatter_digits(sprites, labels, counts, (48, 48), np.random.default_rng(4))
    b = scatter.scatter_digits(sprites, labels, counts, (48, 48), np.random.default_rng(4),
                               overlap_rule="frame_area")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def _assert_pair_positions_follow(out, expected, n_images):
    """The (first, second) top-left pairs of 2-digit images follow `expected` (chi-square).

    expected: {((y1, x1), (y2, x2)): probability}; a pair outside it fails at once.
    """
    observed = {}
    for (y1, x1), (y2, x2) in zip(out["positions"][:, 0], out["positions"][:, 1]):
        key = ((int(y1), int(x1)), (int(y2), int(x2)))
        assert key in expected, key
        observed[key] = observed.get(key, 0) + 1
    keys = sorted(expected)
    f_obs = np.array([observed.get(k, 0) for k in keys], np.float64)
    f_exp = np.array([expected[k] for k in keys]) * n_images
    assert stats.chisquare(f_obs, f_exp).pvalue > 1e-3
