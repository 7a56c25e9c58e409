"""The glimpse sampler: a spatial transformer for axis-aligned boxes (SPAIR_SPEC §1.5).

Boxes are axis-aligned and unrotated, so bilinear sampling factors into two 1-D
interpolation matrices, one per axis (design note under SPAIR_SPEC §1.7):

    W[..., o, i] = max(0, 1 − |coord[..., o] − i|),   i = 0 … n_in − 1,

and a glimpse is G_y · image · G_xᵀ, a placed sprite P_y · sprite · P_xᵀ: small batched
matrix products instead of per-pixel gathers, differentiable in the box coordinates through
the weights. What happens outside the sampled axis is folded into the weights: "clamp"
clamps the coordinate to [0, n_in − 1] (edge pixels replicate), "zero" simply has no taps
there (values outside count as 0). The renderer (spair_tf/renderer.py) uses the same matrix.

Box convention of this module: boxes [..., 4] = (center_y, center_x, height, width), each a
fraction of the image height / width (SPAIR: center_y = 12·(i + b̃_y) / H_img,
height = 48·h / H_img, SPAIR_SPEC §1.4).

AIR (SPAIR_SPEC §4.2) writes its transform as θ = [[w, 0, x], [0, h, y]] in [−1, 1] image
coordinates; that is the box (center_y, center_x, height, width) = ((y + 1)/2, (x + 1)/2,
h, w) here, and `extract_glimpses` / `place_glimpses` are then exactly its spatial
transformer and its inverse (align-corners convention).
"""

from __future__ import annotations

import math

import tensorflow as tf

from spair_tf.config import GLIMPSE_OUTSIDE

OUTSIDE_MODES = GLIMPSE_OUTSIDE  # "clamp" | "zero"


def interpolation_matrix(coords, n_in: int, outside: str = "clamp"):
    """1-D bilinear interpolation weights (design note, SPAIR_SPEC §1.7).

    Args:
      coords: [..., n_out] continuous indices into an axis of length `n_in` (index i is the
        centre of sample i).
      n_in: length of the sampled axis.
      outside: "clamp": coordinates are clamped to [0, n_in − 1], so samples beyond the axis
        replicate its edge value (glimpses, §1.5); "zero": taps beyond the axis get no
        weight, i.e. the axis is surrounded by zeros (placement, the renderer, §1.7).

    Returns:
      [..., n_out, n_in] weights max(0, 1 − |coord − i|); row o holds at most two nonzero
      taps, so `weights @ values` is linear interpolation along the axis. Differentiable
      in `coords` (the gradient of a clamped coordinate is zero outside the axis).
    """
    _check_outside(outside)
    n_in = int(n_in)
    if n_in < 1:
        raise ValueError(f"n_in={n_in}: the sampled axis needs at least one element.")
    coords = tf.convert_to_tensor(coords)
    if not coords.dtype.is_floating:
        raise TypeError(f"coords has dtype {coords.dtype.name}: pass floating-point coordinates.")
    if outside == "clamp":
        coords = tf.clip_by_value(coords, 0.0, n_in - 1.0)
    index = tf.range(n_in, dtype=coords.dtype)  # [n_in]
    return tf.nn.relu(1.0 - tf.abs(coords[..., None] - index))  # [..., n_out, n_in]


def interpolation_matrix_gradient(coords, d_weights):
    """The gradient with respect to `coords` of `interpolation_matrix(coords, n_in, "zero")`.

    Args:
      coords: [..., n_out]; d_weights: [..., n_out, n_in], the gradient of the weights.
    Returns:
      [..., n_out]: Σ_i d_weights[..., i]·∂max(0, 1 − |coord − i|)/∂coord, where the
      derivative is −sign(coord − i) inside the tap (|coord − i| < 1) and 0 elsewhere, as
      TF differentiates the weights (sign(0) = 0, relu'(0) = 0).
    """
    index = tf.range(d_weights.shape[-1], dtype=coords.dtype)
    offset = coords[..., None] - index                                # [..., n_out, n_in]
    slope = tf.where(tf.abs(offset) < 1.0, -tf.sign(offset), tf.zeros_like(offset))
    return tf.reduce_sum(d_weights * slope, -1)


def _split_boxes(boxes, dtype):
    boxes = tf.convert_to_tensor(boxes, dtype=dtype)
    if boxes.shape.rank is not None and (boxes.shape.rank < 2 or boxes.shape[-1] != 4):
        raise ValueError(
            f"boxes has shape {boxes.shape}: expected [B, ..., 4] = (center_y, center_x, "
            "height, width) in fractions of the image size.")
    return tf.unstack(boxes, axis=-1)


def _check_size(name, size):
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{name}={size}: expected two positive ints (height, width).")
    return size


def _check_images(images):
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4:
        raise ValueError(f"images has shape {images.shape}: expected [B, H, W, C].")
    if not images.dtype.is_floating:
        raise TypeError(f"images has dtype {images.dtype.name}: cast to float first.")
    return images


def _check_outside(outside):
    if outside not in OUTSIDE_MODES:
        raise ValueError(f"outside={outside!r}: use one of {OUTSIDE_MODES}.")


def glimpse_coordinates(center, size, n_image: int, n_glimpse: int):
    """Source pixel coordinates of a glimpse's samples along one axis (SPAIR_SPEC §1.5).

    Align-corners mapping: u = linspace(−1, 1, n_glimpse), source = (n_image − 1)·(center +
    size·u/2). center, size: [...] in fractions of the image; returns [..., n_glimpse].
    """
    u = tf.linspace(tf.constant(-1.0, center.dtype), 1.0, n_glimpse)  # [n_glimpse]
    return (n_image - 1.0) * (center[..., None] + size[..., None] * u / 2.0)


def extract_glimpses(images, boxes, glimpse_size=(14, 14), outside="clamp"):
    """Bilinear glimpses of `images` over `boxes` (SPAIR_SPEC §1.5).

    glimpse = G_y · image · G_xᵀ with G = interpolation_matrix(source coordinates, outside):
    sample (m, n) reads the image at y = (H − 1)·(cy + h·u_m/2), x = (W − 1)·(cx + w·u_n/2),
    u = linspace(−1, 1, ·), coordinates clamped to the image (edge pixels replicate), or with
    `outside="zero"` taps beyond the image reading 0 (tf.contrib.resampler's rule, which the
    runs behind the paper's Figs. 2–3 used: SPAIR_SPEC §6).
    Gradients flow to the images and to the boxes. Cost O(K·gh·H·W·C) per image: for
    SPAIR's per-cell boxes on large images use `cell_glimpses` (linear in area).

    Args:
      images: [B, H, W, C] float.
      boxes: [B, ..., 4] = (center_y, center_x, height, width), fractions of H and W. For
        AIR's θ = [[w, 0, x], [0, h, y]]: boxes = ((y + 1)/2, (x + 1)/2, h, w).
      glimpse_size: (gh, gw), 14×14 in the paper.
      outside: "clamp" (§1.5) or "zero".

    Returns:
      glimpses [B, ..., gh, gw, C].
    """
    images = _check_images(images)
    _check_outside(outside)
    gh, gw = _check_size("glimpse_size", glimpse_size)
    center_y, center_x, height, width = _split_boxes(boxes, images.dtype)  # [B, ...] each
    n_height, n_width = images.shape[1], images.shape[2]
    if n_height is None or n_width is None:
        raise ValueError(f"images has shape {images.shape}: H and W must be static.")
    batch_shape = tf.shape(center_y)  # [B, ...]
    flat = lambda t: tf.reshape(t, [batch_shape[0], -1])  # [B, K]
    g_y = interpolation_matrix(
        glimpse_coordinates(flat(center_y), flat(height), n_height, gh), n_height, outside)
    g_x = interpolation_matrix(
        glimpse_coordinates(flat(center_x), flat(width), n_width, gw), n_width, outside)
    # g_y [B, K, gh, H], g_x [B, K, gw, W]
    rows = tf.einsum("bkyh,bhwc->bkywc", g_y, images)  # [B, K, gh, W, C]
    glimpses = tf.einsum("bkywc,bkxw->bkyxc", rows, g_x)  # [B, K, gh, gw, C]
    out_shape = tf.concat([batch_shape, [gh, gw, tf.shape(images)[-1]]], axis=0)
    glimpses = tf.reshape(glimpses, out_shape)
    glimpses.set_shape(center_y.shape.concatenate([gh, gw, images.shape[-1]]))
    return glimpses


def place_glimpses(glimpses, boxes, image_size):
    """Puts each glimpse back on an image canvas over its box: the inverse transform.

    Output pixel (py, px) has normalised coordinate (py/(H − 1), px/(W − 1)); its sprite
    coordinate is u = (px/(W − 1) − cx)·2/w ∈ [−1, 1] inside the box, i.e. sprite index
    (u + 1)/2·(gw − 1) (likewise y); bilinear with ZERO outside the sprite. This is the exact
    inverse of `extract_glimpses`' mapping, so place(extract(image)) reproduces the image
    inside the box up to bilinear resampling (exactly, for a bilinear image). AIR decodes
    each object into a glimpse and puts it back with this (SPAIR_SPEC §4.2).

    Args:
      glimpses: [B, ..., gh, gw, C].
      boxes: [B, ..., 4] = (center_y, center_x, height, width), fractions of the image size;
        height and width must be > 0.
      image_size: (H, W) of the canvas.

    Returns:
      [B, ..., H, W, C], zero wherever the box (plus a one-sample fade) does not reach.
    """
    glimpses = tf.convert_to_tensor(glimpses)
    if glimpses.shape.rank is None or glimpses.shape.rank < 4:
        raise ValueError(f"glimpses has shape {glimpses.shape}: expected [B, ..., gh, gw, C].")
    n_height, n_width = _check_size("image_size", image_size)
    gh, gw = glimpses.shape[-3], glimpses.shape[-2]
    if gh is None or gw is None:
        raise ValueError(f"glimpses has shape {glimpses.shape}: gh and gw must be static.")
    center_y, center_x, height, width = _split_boxes(boxes, glimpses.dtype)  # [B, ...] each
    batch_shape = tf.shape(center_y)
    flat = lambda t: tf.reshape(t, [batch_shape[0], -1])  # [B, K]
    flat_glimpses = tf.reshape(
        glimpses, tf.concat([[batch_shape[0], -1], tf.shape(glimpses)[-3:]], axis=0))

    def sprite_coordinates(center, size, n_image, n_glimpse):
        pixel = tf.range(n_image, dtype=glimpses.dtype) / max(n_image - 1, 1)  # [n_image]
        u = (pixel - center[..., None]) * 2.0 / size[..., None]  # [B, K, n_image]
        return (u + 1.0) / 2.0 * (n_glimpse - 1.0)

    p_y = interpolation_matrix(
        sprite_coordinates(flat(center_y), flat(height), n_height, gh), gh, "zero")
    p_x = interpolation_matrix(
        sprite_coordinates(flat(center_x), flat(width), n_width, gw), gw, "zero")
    # p_y [B, K, H, gh], p_x [B, K, W, gw]
    rows = tf.einsum("bkym,bkmnc->bkync", p_y, flat_glimpses)  # [B, K, H, gw, C]
    placed = tf.einsum("bkync,bkxn->bkyxc", rows, p_x)  # [B, K, H, W, C]
    out_shape = tf.concat(
        [batch_shape, [n_height, n_width, tf.shape(glimpses)[-1]]], axis=0)
    placed = tf.reshape(placed, out_shape)
    placed.set_shape(center_y.shape.concatenate([n_height, n_width, glimpses.shape[-1]]))
    return placed


def cell_window(cell_size: int = 12, anchor_size: float = 48.0, object_size: int = 14,
                offset_range=(-0.5, 1.5)) -> int:
    """Cells on each side of cell (i, j) that its box, glimpse or sprite can reach.

    SPAIR_SPEC §1.4/§1.7: the box centre lies within `offset_range` cells of the cell's
    top-left and its size is ≤ `anchor_size` px. The renderer's coverage −1 < sy < S adds
    half a sprite pixel (≤ anchor_size/(2·object_size) px) on each side of the box (its
    one-pixel zero border is centred half a pixel outside). With the paper's 12-px cells,
    48-px anchor and 14×14 sprites, a sprite reaches at most 6 + 24 + 1.7 = 31.7 px before
    the cell's top and as far after its bottom (pixel rows 12i − 32 … 12i + 43): 3 cells on
    each side, a 7×7-cell (84×84 px) window. Glimpses (§1.5) reach less (30 px).
    """
    border = anchor_size / (2.0 * object_size)
    before = -offset_range[0] * cell_size + anchor_size / 2.0 + border  # px before the cell
    after = (offset_range[1] - 1.0) * cell_size + anchor_size / 2.0 + border  # px after it
    return max(0, math.ceil(max(before, after) / cell_size))


def cell_glimpses(pixels, centre, size, rows, cols, object_size: int = 14, cell_size: int = 12,
                  anchor_size: float = 48.0, outside: str = "clamp"):
    """Bilinear glimpses of the boxes of the given cells (SPAIR_SPEC §1.5), windowed.

    The align-corners mapping of §1.5: output grid u = linspace(−1, 1, object_size);
    source y = (H_img − 1)/H_img · (centre_y + height·u/2), clamped to the image. Only a
    window of `cell_window` cells on each side of the cell is read (7×7 cells for SPAIR: a
    glimpse's source rows for cell i lie in [12i − 31, 12i + 43]), so the cost per cell is
    independent of the image size (inference stays linear in image area). SPAIR's encoder
    (§1.2) calls it for the cells of one wavefront step; `extract_glimpses` is the
    full-image reference it is tested against.

    Args:
      pixels: [H_img, W_img, B, C]: the images with the batch axis after the pixel axes
        (`batch_last(images)`, done once per pass), so one gather reads a window for the
        whole batch; transposing inside would copy the whole image for every call.
      centre, size: [n, B, 2] box centre and size (y, x) in pixels.
      rows, cols: [n] grid row and column of each cell.
      object_size: glimpse side S (14); cell_size: px per cell (12); anchor_size: the
        largest box side in px (48), which sets the window.
      outside: "clamp" (§1.5: edge pixels replicate) or "zero" (taps beyond the image read
        0), as `extract_glimpses`.
    Returns:
      [n, B, object_size, object_size, C].
    """
    _check_outside(outside)
    shape = tf.shape(pixels)
    extent = tf.cast(shape[0:2], centre.dtype)                       # [2]: H_img, W_img
    u = tf.linspace(tf.constant(-1.0, centre.dtype), 1.0, object_size)
    source = ((extent - 1.0) / extent)[None, None, :, None] * (
        centre[..., None] + 0.5 * size[..., None] * u)               # [n, B, 2, S]
    if outside == "clamp":
        source = tf.clip_by_value(source, 0.0, (extent - 1.0)[None, None, :, None])

    # The window is static: the image's side if known and smaller, else the 2·reach + 1
    # cells around the cell (indices past the image are clamped, replicating its edge, which
    # the clamped taps never read).
    reach = cell_window(cell_size, anchor_size, object_size)         # 3 cells for SPAIR
    span = (2 * reach + 1) * cell_size                               # 84 px
    window = [min(n, span) if n is not None else span for n in pixels.shape[0:2]]
    offset = tf.where(shape[0:2] > tf.constant(window),
                      (tf.stack([rows, cols], axis=-1) - reach) * cell_size,
                      0)                                             # [n, 2]
    local = source - tf.cast(offset, source.dtype)[:, None, :, None]
    weights_y = interpolation_matrix(local[:, :, 0], window[0], outside="zero")
    weights_x = interpolation_matrix(local[:, :, 1], window[1], outside="zero")
    # weights_y: [n, B, S, window_h]; weights_x: [n, B, S, window_w]
    if outside == "zero":
        # Window rows/columns past the image are clamped copies of its edge below; unclamped
        # sources can reach them, so their taps must read 0 as beyond the image.
        inside = lambda axis: tf.cast(  # noqa: E731  [n, 1, 1, window]
            (offset[:, axis:axis + 1] + tf.range(window[axis])[None] >= 0)
            & (offset[:, axis:axis + 1] + tf.range(window[axis])[None] < shape[axis]),
            weights_y.dtype)[:, None, None, :]
        weights_y, weights_x = weights_y * inside(0), weights_x * inside(1)

    if window == list(pixels.shape[0:2]):  # the window is the whole image (48×48 crops):
        # every cell reads all of it, so contract with the image itself, not n gathered copies
        rows_sampled = tf.einsum("nbyh,hwbc->nbywc", weights_y, pixels)
        return tf.einsum("nbywc,nbxw->nbyxc", rows_sampled, weights_x)
    row_ids = tf.clip_by_value(offset[:, :1] + tf.range(window[0])[None], 0, shape[0] - 1)
    col_ids = tf.clip_by_value(offset[:, 1:] + tf.range(window[1])[None], 0, shape[1] - 1)
    ids = tf.stack(tf.meshgrid(tf.range(tf.shape(rows)[0]), tf.range(window[0]),
                               tf.range(window[1]), indexing="ij"), axis=-1)
    ids = tf.stack([tf.gather(row_ids, ids[..., 1], batch_dims=1),
                    tf.gather(col_ids, ids[..., 2], batch_dims=1)], axis=-1)
    windows = tf.gather_nd(pixels, ids)                              # [n, wh, ww, B, C]
    rows_sampled = tf.einsum("nbyh,nhwbc->nbywc", weights_y, windows)
    return tf.einsum("nbywc,nbxw->nbyxc", rows_sampled, weights_x)


def batch_last(images):
    """[B, H, W, C] → [H, W, B, C], the layout `cell_glimpses` reads."""
    return tf.transpose(images, [1, 2, 0, 3])
