"""Tests of the glimpse sampler (SPAIR_SPEC §1.5) and its inverse, against numpy loops."""

import math

import numpy as np
import pytest
import tensorflow as tf

from spair_tf.glimpse import (batch_last, cell_glimpses, extract_glimpses, interpolation_matrix,
                              place_glimpses)


# ---- independent references -------------------------------------------------------------

def naive_interpolation_matrix(coords, n_in, outside):
    """Two taps per coordinate, floor/fraction form, built with loops."""
    coords = np.asarray(coords, float)
    out = np.zeros(coords.shape + (n_in,))
    for index in np.ndindex(coords.shape):
        c = coords[index]
        if outside == "clamp":
            c = min(max(c, 0.0), n_in - 1.0)
        low = math.floor(c)
        for tap, weight in ((low, 1.0 - (c - low)), (low + 1, c - low)):
            if 0 <= tap < n_in:
                out[index + (tap,)] += weight
    return out


def naive_extract(images, boxes, glimpse_size, outside="clamp"):
    """Per output pixel: source coordinates (§1.5), 4 bilinear taps; the coordinate clamped
    to the image ("clamp"), or taps beyond the image reading 0 ("zero", tf.contrib's
    resampler: SPAIR_SPEC §6)."""
    batch, height, width, channels = images.shape
    gh, gw = glimpse_size
    n_boxes = boxes.shape[1]
    out = np.zeros((batch, n_boxes, gh, gw, channels))
    u_y, u_x = np.linspace(-1, 1, gh), np.linspace(-1, 1, gw)

    def pixel(b, y, x):
        inside = 0 <= y < height and 0 <= x < width
        return images[b, min(y, height - 1), min(x, width - 1)] if inside else 0.0

    for b in range(batch):
        for k in range(n_boxes):
            cy, cx, h, w = boxes[b, k]
            for m in range(gh):
                for n in range(gw):
                    y = (height - 1) * (cy + h * u_y[m] / 2)
                    x = (width - 1) * (cx + w * u_x[n] / 2)
                    if outside == "clamp":
                        y, x = min(max(y, 0), height - 1), min(max(x, 0), width - 1)
                    y0, x0 = int(math.floor(y)), int(math.floor(x))
                    fy, fx = y - y0, x - x0
                    if outside == "clamp":
                        y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
                    else:
                        y1, x1 = y0 + 1, x0 + 1
                    out[b, k, m, n] = ((1 - fy) * (1 - fx) * pixel(b, y0, x0)
                                       + (1 - fy) * fx * pixel(b, y0, x1)
                                       + fy * (1 - fx) * pixel(b, y1, x0)
                                       + fy * fx * pixel(b, y1, x1))
    return out


def naive_place(glimpses, boxes, image_size):
    """Per canvas pixel: sprite coordinates of the inverse map, 4 taps, zero outside."""
    batch, n_boxes, gh, gw, channels = glimpses.shape
    height, width = image_size
    out = np.zeros((batch, n_boxes, height, width, channels))
    for b in range(batch):
        for k in range(n_boxes):
            cy, cx, h, w = boxes[b, k]
            for py in range(height):
                for px in range(width):
                    sy = ((py / (height - 1) - cy) * 2 / h + 1) / 2 * (gh - 1)
                    sx = ((px / (width - 1) - cx) * 2 / w + 1) / 2 * (gw - 1)
                    y0, x0 = math.floor(sy), math.floor(sx)
                    for yy, wy in ((y0, 1 - (sy - y0)), (y0 + 1, sy - y0)):
                        for xx, wx in ((x0, 1 - (sx - x0)), (x0 + 1, sx - x0)):
                            if 0 <= yy < gh and 0 <= xx < gw:
                                out[b, k, py, px] += wy * wx * glimpses[b, k, yy, xx]
    return out


def random_boxes(rng, batch, n_boxes):
    """Boxes (cy, cx, h, w) in image fractions; many cross the image edge."""
    centre = rng.uniform(-0.2, 1.2, size=(batch, n_boxes, 2))
    size = rng.uniform(0.05, 1.3, size=(batch, n_boxes, 2))
    return np.concatenate([centre, size], axis=-1)


# ---- interpolation matrix ---------------------------------------------------------------

@pytest.mark.parametrize("outside", ["clamp", "zero"])
def test_interpolation_matrix_equals_loop(outside):
    rng = np.random.default_rng(0)
    coords = rng.uniform(-2.5, 9.5, size=(3, 11))
    coords[0, :4] = [0.0, 3.0, 7.0, -1.0]  # integers, the last index, exactly one before
    expected = naive_interpolation_matrix(coords, 8, outside)
    np.testing.assert_allclose(interpolation_matrix(coords, 8, outside).numpy(), expected,
                               atol=1e-12)


def test_interpolation_matrix_rejects_bad_arguments():
    with pytest.raises(ValueError, match="outside"):
        interpolation_matrix(np.zeros(3), 4, "wrap")
    with pytest.raises(ValueError, match="n_in"):
        interpolation_matrix(np.zeros(3), 0)
    with pytest.raises(TypeError, match="dtype"):
        interpolation_matrix(np.zeros(3, np.int32), 4)


# ---- extraction ---------------------------------------------------------------------------

@pytest.mark.parametrize("outside", ["clamp", "zero"])
@pytest.mark.parametrize("shape,glimpse_size", [((2, 17, 23, 3), (14, 14)),
                                                ((1, 9, 6, 2), (5, 7))])
def test_extract_glimpses_equals_naive_sampler(shape, glimpse_size, outside):
    rng = np.random.default_rng(1)
    images = rng.uniform(size=shape)
    boxes = random_boxes(rng, shape[0], 5)
    assert np.any(boxes[..., 0] - boxes[..., 2] / 2 < 0)  # some boxes leave the image
    assert np.any(boxes[..., 1] + boxes[..., 3] / 2 > 1)
    expected = naive_extract(images, boxes, glimpse_size, outside)
    got = extract_glimpses(images, boxes, glimpse_size, outside=outside).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_zero_and_clamp_glimpses_differ_only_where_boxes_leave_the_image():
    rng = np.random.default_rng(2)
    images = rng.uniform(size=(1, 20, 20, 3))
    inside = np.array([[[0.5, 0.5, 0.4, 0.4]]])
    leaving = np.array([[[0.05, 0.5, 0.4, 0.4]]])
    for boxes, same in ((inside, True), (leaving, False)):
        zero = extract_glimpses(images, boxes, (14, 14), outside="zero").numpy()
        clamp = extract_glimpses(images, boxes, (14, 14), outside="clamp").numpy()
        assert np.allclose(zero, clamp) == same


def test_extract_glimpses_keeps_extra_batch_axes():
    rng = np.random.default_rng(2)
    images = rng.uniform(size=(2, 24, 24, 3))
    boxes = random_boxes(rng, 2, 6).reshape(2, 2, 3, 4)  # a [B, Hc, Wc, 4] grid of boxes
    got = extract_glimpses(images, boxes).numpy()
    assert got.shape == (2, 2, 3, 14, 14, 3)
    np.testing.assert_allclose(got.reshape(2, 6, 14, 14, 3),
                               naive_extract(images, boxes.reshape(2, 6, 4), (14, 14)),
                               atol=1e-12)


def test_air_transform_maps_to_boxes():
    # AIR's θ = [[w, 0, x], [0, h, y]] samples normalised position θ·(u, v, 1) ∈ [−1, 1]²,
    # i.e. pixel (pos + 1)/2·(n − 1) (align corners); boxes ((y+1)/2, (x+1)/2, h, w).
    rng = np.random.default_rng(3)
    images = rng.uniform(size=(1, 20, 30, 3))
    w, h, x, y = 0.4, 0.7, -0.3, 0.25
    u = np.linspace(-1, 1, 14)
    rows = ((h * u + y) + 1) / 2 * (20 - 1)
    cols = ((w * u + x) + 1) / 2 * (30 - 1)
    expected = np.zeros((14, 14, 3))
    for m in range(14):
        for n in range(14):
            y0, x0 = int(rows[m]), int(cols[n])
            fy, fx = rows[m] - y0, cols[n] - x0
            expected[m, n] = ((1 - fy) * (1 - fx) * images[0, y0, x0]
                              + (1 - fy) * fx * images[0, y0, x0 + 1]
                              + fy * (1 - fx) * images[0, y0 + 1, x0]
                              + fy * fx * images[0, y0 + 1, x0 + 1])
    boxes = np.array([[[(y + 1) / 2, (x + 1) / 2, h, w]]])
    np.testing.assert_allclose(extract_glimpses(images, boxes).numpy()[0, 0], expected,
                               atol=1e-12)


def test_extract_gradient_wrt_boxes_matches_finite_differences():
    rng = np.random.default_rng(4)
    images = rng.uniform(size=(2, 13, 11, 2))
    boxes = random_boxes(rng, 2, 3)
    weights = rng.normal(size=(2, 3, 6, 5, 2))
    boxes_t = tf.constant(boxes)
    with tf.GradientTape() as tape:
        tape.watch(boxes_t)
        value = tf.reduce_sum(extract_glimpses(images, boxes_t, (6, 5)) * weights)
    gradient = tape.gradient(value, boxes_t).numpy()
    eps = 1e-7
    numeric = np.zeros_like(boxes)
    for k in np.ndindex(boxes.shape):
        plus, minus = boxes.copy(), boxes.copy()
        plus[k] += eps
        minus[k] -= eps
        numeric[k] = np.sum((extract_glimpses(images, plus, (6, 5)).numpy()
                             - extract_glimpses(images, minus, (6, 5)).numpy()) * weights) \
            / (2 * eps)
    assert np.abs(gradient).max() > 0.1
    np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-6)


def test_extract_gradient_wrt_images_matches_jacobian():
    rng = np.random.default_rng(5)
    images = tf.constant(rng.uniform(size=(1, 7, 6, 2)))
    boxes = random_boxes(rng, 1, 2)
    theoretical, numerical = tf.test.compute_gradient(
        lambda x: extract_glimpses(x, boxes, (4, 3)), [images])
    assert np.abs(theoretical[0]).max() > 0.1
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-8)


# ---- placement ----------------------------------------------------------------------------

def test_place_glimpses_equals_naive_placement():
    rng = np.random.default_rng(6)
    glimpses = rng.uniform(size=(2, 3, 5, 7, 3))
    boxes = random_boxes(rng, 2, 3)
    expected = naive_place(glimpses, boxes, (12, 15))
    np.testing.assert_allclose(place_glimpses(glimpses, boxes, (12, 15)).numpy(), expected,
                               atol=1e-12)


def test_place_of_extract_is_identity_inside_an_identity_size_box():
    # A box whose samples fall on pixel centres one pixel apart: extraction copies the
    # pixels and placement puts them back; outside the box the canvas is exactly zero.
    # (Sizes with H − 1, W − 1, gh − 1, gw − 1 powers of two keep the arithmetic exact, so
    # the pixels next to the box get sprite coordinate exactly −1 / gh, i.e. weight 0.)
    rng = np.random.default_rng(7)
    height, width, gh, gw, y0, x0 = 17, 33, 9, 5, 5, 20
    images = rng.uniform(size=(1, height, width, 3))
    boxes = np.array([[[(y0 + (gh - 1) / 2) / (height - 1), (x0 + (gw - 1) / 2) / (width - 1),
                        (gh - 1) / (height - 1), (gw - 1) / (width - 1)]]])
    placed = place_glimpses(extract_glimpses(images, boxes, (gh, gw)), boxes,
                            (height, width)).numpy()[0, 0]
    inside = np.zeros((height, width), bool)
    inside[y0:y0 + gh, x0:x0 + gw] = True
    np.testing.assert_allclose(placed[inside], images[0][inside], atol=1e-12)
    assert np.all(placed[~inside] == 0.0)


def test_place_of_extract_reproduces_a_bilinear_image_in_any_box():
    # Bilinear sampling reproduces f = a + b·y + c·x + d·x·y exactly, so for a box inside
    # the image place(extract(f)) = f wherever the sprite coordinate is within the sprite.
    height, width, gh, gw = 25, 31, 14, 14
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    image = (0.3 + 0.02 * yy - 0.01 * xx + 0.001 * xx * yy)[None, :, :, None]
    box = np.array([0.43, 0.57, 0.52, 0.61])
    placed = place_glimpses(extract_glimpses(image, box[None, None], (gh, gw)),
                            box[None, None], (height, width)).numpy()[0, 0, :, :, 0]
    sy = ((yy / (height - 1) - box[0]) * 2 / box[2] + 1) / 2 * (gh - 1)
    sx = ((xx / (width - 1) - box[1]) * 2 / box[3] + 1) / 2 * (gw - 1)
    inside = (sy >= 0) & (sy <= gh - 1) & (sx >= 0) & (sx <= gw - 1)
    outside = (sy <= -1) | (sy >= gh) | (sx <= -1) | (sx >= gw)
    assert inside.sum() > 100 and outside.sum() > 100
    np.testing.assert_allclose(placed[inside], image[0, :, :, 0][inside], atol=1e-12)
    assert np.all(placed[outside] == 0.0)


def test_place_gradient_flows_to_glimpses_and_boxes():
    rng = np.random.default_rng(8)
    glimpses = tf.constant(rng.uniform(size=(1, 2, 4, 4, 1)))
    boxes = tf.constant(random_boxes(rng, 1, 2))
    theoretical, numerical = tf.test.compute_gradient(
        lambda g, b: place_glimpses(g, b, (9, 8)), [glimpses, boxes], delta=1e-6)
    for t, n in zip(theoretical, numerical):
        assert np.abs(t).max() > 0.1
        np.testing.assert_allclose(t, n, atol=1e-5)


# ---- windowed (linear-cost) extraction for SPAIR's per-cell boxes -------------------------

def spair_boxes(rng, height, width, batch=2, offset_range=(-0.5, 1.5), size_range=(0, 1)):
    """Model-range boxes (§1.4) as (cy, cx, h, w) fractions: centre 12·(i + b̃), size 48·h."""
    grid = (batch, -(-height // 12), -(-width // 12))
    cy = 12 * (np.arange(grid[1])[:, None] + rng.uniform(*offset_range, size=grid))
    cx = 12 * (np.arange(grid[2])[None, :] + rng.uniform(*offset_range, size=grid))
    h, w = (48 * rng.uniform(*size_range, size=grid) for _ in range(2))
    return np.stack([cy / height, cx / width, h / height, w / width], axis=-1)


def cell_arguments(boxes, height, width):
    """spair_boxes [B, Hc, Wc, 4] fractions → cell_glimpses' (centre, size, rows, cols)."""
    batch, grid_h, grid_w = boxes.shape[:3]
    extent = np.array([height, width], np.float64)
    flat = np.transpose(boxes, (1, 2, 0, 3)).reshape(grid_h * grid_w, batch, 4)  # [n, B, 4]
    rows, cols = np.divmod(np.arange(grid_h * grid_w), grid_w)
    return (flat[..., :2] * extent, flat[..., 2:] * extent,
            tf.constant(rows, tf.int32), tf.constant(cols, tf.int32))


@pytest.mark.parametrize("height,width,kwargs", [
    # Up to 84×84 the window is the whole image (no gather); beyond, on either axis, a
    # window is gathered per cell.
    (48, 48, {}),
    (50, 38, {}),
    (84, 84, {}),
    (100, 50, {}),
    (130, 100, {}),
    (37, 61, dict(offset_range=(-0.5, -0.4999), size_range=(1.0, 1.0))),
    (37, 61, dict(offset_range=(1.4999, 1.5), size_range=(1.0, 1.0))),
    (130, 100, dict(offset_range=(-0.5, -0.4999), size_range=(1.0, 1.0))),
    (130, 100, dict(offset_range=(1.4999, 1.5), size_range=(1.0, 1.0))),
])
@pytest.mark.parametrize("outside", ["clamp", "zero"])
def test_cell_glimpses_equal_naive_full_image_glimpses(height, width, kwargs, outside):
    """The windowed per-cell sampler reads what the full-image reference reads (§1.5)."""
    rng = np.random.default_rng(height * width)
    images = rng.uniform(size=(2, height, width, 3))
    boxes = spair_boxes(rng, height, width, **kwargs)
    expected = naive_extract(images, boxes.reshape(2, -1, 4), (14, 14), outside)  # [B, n, ..]
    centre, size, rows, cols = cell_arguments(boxes, height, width)
    got = cell_glimpses(batch_last(tf.constant(images)), tf.constant(centre), tf.constant(size),
                        rows, cols, 14, outside=outside).numpy()           # [n, B, ...]
    np.testing.assert_allclose(np.transpose(got, (1, 0, 2, 3, 4)), expected, atol=1e-12)


def test_glimpse_ops_compile_with_xla():
    rng = np.random.default_rng(9)
    images = rng.uniform(size=(1, 50, 38, 3)).astype(np.float32)
    boxes = spair_boxes(rng, 50, 38, batch=1).astype(np.float32)
    flat = boxes.reshape(1, -1, 4)
    extract = tf.function(extract_glimpses, jit_compile=True)
    windowed = tf.function(lambda x, c, s, i, j: cell_glimpses(batch_last(x), c, s, i, j, 14),
                           jit_compile=True)
    place = tf.function(lambda g, b: place_glimpses(g, b, (50, 38)), jit_compile=True)
    glimpses = extract(images, flat).numpy()
    np.testing.assert_allclose(glimpses, naive_extract(images, flat, (14, 14)), atol=1e-5)
    centre, size, rows, cols = cell_arguments(boxes, 50, 38)
    got = windowed(images, centre.astype(np.float32), size.astype(np.float32), rows, cols)
    np.testing.assert_allclose(np.transpose(got.numpy(), (1, 0, 2, 3, 4)), glimpses,
                               atol=1e-5)
    np.testing.assert_allclose(place(glimpses[:, :3], flat[:, :3]).numpy(),
                               naive_place(glimpses[:, :3], flat[:, :3], (50, 38)), atol=1e-5)


def test_bad_inputs_raise_clear_errors():
    images = np.zeros((1, 24, 24, 3))
    with pytest.raises(ValueError, match="boxes"):
        extract_glimpses(images, np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="images"):
        extract_glimpses(np.zeros((24, 24, 3)), np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match="glimpse_size"):
        extract_glimpses(images, np.zeros((1, 2, 4)), (0, 14))
    with pytest.raises(ValueError, match="image_size"):
        place_glimpses(np.zeros((1, 2, 14, 14, 3)), np.zeros((1, 2, 4)), (24,))
