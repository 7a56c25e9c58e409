"""SPAIR's differentiable renderer (SPAIR_SPEC §1.7, Supplementary Algorithm 1).

Every cell's sprite (o, α̃ = α·z_pres, γ = max(α·z_pres·depth, 0.01)) is drawn over the
background through its box. For output pixel (py, px) and the sprite of a box with top-left
(yt, xt) and size (hs, ws), normalised by the image height / width, the sprite coordinate is

    sy = −0.5 + S·((py + 0.5)/H_img − yt)/hs,   sx likewise     (S = 14, the sprite side)

and the sprite covers the pixel iff −1 < sy < S and −1 < sx < S (a one-pixel zero border,
so sprite edges fade out). A covering sprite gives, by bilinear interpolation, α' and γ'
(taps outside the sprite read 0) and o' (taps outside the sprite read the background at
(py, px)); its composite is v = α'·o' + (1 − α')·bg. The output is bg where no sprite
covers the pixel, v where exactly one does, and Σ γ'·v / Σ γ' where two or more do.

Bilinear interpolation factors into the 1-D matrices of spair_tf/glimpse.py:
R_y = interpolation_matrix(sy, S, "zero"), likewise R_x, and a map m is rendered as
R_y · m · R_xᵀ. Writing r = R_y·1·(R_x·1)ᵀ for the weight that falls inside the sprite,
o' = R_y·o·R_xᵀ + (1 − r)·bg, and every pixel needs only per-pixel sums over sprites:

    v − bg = α'·(R_y·o·R_xᵀ − r·bg)
    output = bg + Σ α'·(R_y·o·R_xᵀ − r·bg)                    (≤ 1 covering sprite)
           = bg + Σ γ'·α'·(R_y·o·R_xᵀ − r·bg) / Σ γ'           (≥ 2 covering sprites)

(a sprite that does not cover a pixel has α' = γ' = r = 0 there, so summing over all sprites
is the same as summing over the covering ones).

`render` is the default: a sprite can only reach the cells within `window` cells of its own
(glimpse.cell_window: 3 for 12-px cells and ≤ 48-px boxes), so each sprite is rendered on
its (2·window + 1)² cells only, one cell-sized block at a time, and the blocks are
overlap-added into the image as shifted block grids: time and memory linear in image area.
`render_dense` renders every sprite on the whole image (objects × pixels): a cross-check and
fine for small images.

`compositing="weighted"` is the renderer of the runs behind the paper's Figs. 2–3
(SPAIR_SPEC §6; auto_yolo's render_sprites kernel as of July 2018): each sprite carries a
weight map w = exp(5·(2·α̃ − 1)) instead of α̃ and γ, and

    output = (bg + Σ w'·o'₀) / (1 + Σ w')

with w' and o'₀ bilinear with taps outside the sprite reading 0 (also for the colour). These
are the per-pixel sums above with α̃ and γ both replaced by w: Σ α'·R_y·o·R_xᵀ = Σ w'·o'₀
and Σ γ' = Σ w'.
"""

from __future__ import annotations

import tensorflow as tf

from spair_tf.config import COMPOSITING
from spair_tf.glimpse import cell_window, interpolation_matrix, \
    interpolation_matrix_gradient


def _check_inputs(rgb, alpha, importance, boxes, background, cell_size):
    """Converts to tensors of rgb's dtype and checks the shapes of SPAIR_SPEC §1.7."""
    rgb = tf.convert_to_tensor(rgb)
    if not rgb.dtype.is_floating:
        raise TypeError(f"rgb has dtype {rgb.dtype.name}: pass floats in [0, 1].")
    alpha = tf.convert_to_tensor(alpha, dtype=rgb.dtype)
    importance = tf.convert_to_tensor(importance, dtype=rgb.dtype)
    boxes = tf.convert_to_tensor(boxes, dtype=rgb.dtype)
    background = tf.convert_to_tensor(background, dtype=rgb.dtype)
    if rgb.shape.rank != 6:
        raise ValueError(f"rgb has shape {rgb.shape}: expected [B, Hc, Wc, S, S, C].")
    grid = tuple(rgb.shape[1:3])
    sprite = tuple(rgb.shape[3:5])
    for name, tensor in (("alpha", alpha), ("importance", importance)):
        if tensor.shape.rank != 6 or tuple(tensor.shape[1:5]) != grid + sprite \
                or tensor.shape[5] != 1:
            raise ValueError(
                f"{name} has shape {tensor.shape}: expected [B, {grid[0]}, {grid[1]}, "
                f"{sprite[0]}, {sprite[1]}, 1] to match rgb {rgb.shape}.")
    if boxes.shape.rank != 4 or tuple(boxes.shape[1:]) != grid + (4,):
        raise ValueError(
            f"boxes has shape {boxes.shape}: expected [B, {grid[0]}, {grid[1]}, 4] = "
            "(top_y, left_x, height, width) normalised by the image size.")
    if background.shape.rank != 4 or background.shape[-1] != rgb.shape[-1]:
        raise ValueError(
            f"background has shape {background.shape}: expected [B, H_img, W_img, "
            f"{rgb.shape[-1]}].")
    n_height, n_width = background.shape[1], background.shape[2]
    if None in sprite:
        raise ValueError(f"render needs a static sprite size; got rgb {rgb.shape}.")
    c = int(cell_size)
    if c < 1:
        raise ValueError(f"cell_size={cell_size}: expected a positive number of pixels.")
    if None in (n_height, n_width) + grid:  # sizes known only at run time (any-size export)
        return rgb, alpha, importance, boxes, background
    expected = (-(-n_height // c), -(-n_width // c))
    if grid != expected:
        raise ValueError(
            f"rgb has a grid of {grid[0]}×{grid[1]} cells, but a {n_height}×{n_width} "
            f"background needs ceil(H/{c}) × ceil(W/{c}) = {expected[0]}×{expected[1]}.")
    return rgb, alpha, importance, boxes, background


def _size(tensor, axis):
    """tensor's size along axis: a Python int if static, else a scalar tensor."""
    size = tensor.shape[axis]
    return size if size is not None else tf.shape(tensor)[axis]


def _block_range(offset, n_cells):
    """[lo, hi): the sprite cells whose target cell (cell + offset) lies in the grid.

    With a run-time grid size, hi is kept ≥ lo (an empty range, never a negative index);
    the caller crops the padded block back to the grid.
    """
    lo = max(0, -offset)
    if isinstance(n_cells, int):
        return lo, min(n_cells, n_cells - offset)
    return lo, tf.maximum(n_cells - max(offset, 0), lo)


def _sprite_coordinates(pixel, top, size, n_image, n_sprite):
    """sy = −0.5 + S·((py + 0.5)/H_img − yt)/hs for pixels `pixel` (broadcast with top)."""
    n_image = tf.cast(n_image, pixel.dtype) if tf.is_tensor(n_image) else n_image
    return -0.5 + n_sprite * ((pixel + 0.5) / n_image - top) / size


def _columns(r_x, maps):
    """maps [..., S, S, K] · R_xᵀ [..., S, w] → [..., S, w, K] (the first half of R_y·m·R_xᵀ)."""
    return tf.einsum("...mnk,...xn->...mxk", maps, r_x)


def _pixel_terms(r_y, maps_x, inside_x, covers_y, covers_x):
    """The per-pixel summands of one sprite on a rectangle of pixels (module docstring).

    r_y [..., h, S]: interpolation matrix of the rectangle's rows; maps_x [..., S, w, 2 + C]:
    (α̃, γ, o) stacked on the last axis and already multiplied by R_xᵀ (`_columns`);
    inside_x [..., w]: row sums of R_x; covers_y [..., h], covers_x [..., w]: 1 where
    −1 < sy < S, resp. −1 < sx < S, else 0.
    Returns [..., h, w, 2C + 4]: α'·Ro, α'·r, γ'α'·Ro, γ'α'·r, γ', covers (the background
    enters later: it is the same for every sprite at a pixel).
    """
    rendered = tf.einsum("...ym,...mxk->...yxk", r_y, maps_x)  # [..., h, w, 2 + C]
    alpha_p, gamma_p, colour = rendered[..., 0:1], rendered[..., 1:2], rendered[..., 2:]
    inside = (tf.reduce_sum(r_y, -1)[..., :, None] * inside_x[..., None, :])[..., None]  # r
    covers = (covers_y[..., :, None] * covers_x[..., None, :])[..., None]  # [..., h, w, 1]
    one = tf.concat([alpha_p * colour, alpha_p * inside], axis=-1)  # [..., h, w, C + 1]
    return tf.concat([one, gamma_p * one, gamma_p, covers], axis=-1)


def _weights_for(compositing, alpha, importance):
    """(α̃, γ) maps for the per-pixel sums: themselves, or the weight map w twice."""
    if compositing not in COMPOSITING:
        raise ValueError(f"compositing={compositing!r}: use one of {COMPOSITING}.")
    return (alpha, importance) if compositing == "paper" else (alpha, alpha)


def _composite(sums, background, compositing="paper"):
    """Output of §1.7 from the per-pixel sums [B, H, W, 2C+4] and the background."""
    n_channels = background.shape[-1]
    if compositing == "weighted":  # (bg + Σ w'·o'₀) / (1 + Σ w')
        return (background + sums[..., :n_channels]) / (
            1.0 + sums[..., 2 * n_channels + 2:2 * n_channels + 3])
    single = sums[..., :n_channels] - sums[..., n_channels:n_channels + 1] * background
    k = n_channels + 1
    weighted = sums[..., k:k + n_channels] - sums[..., k + n_channels:k + n_channels + 1] \
        * background
    normaliser = sums[..., 2 * k:2 * k + 1]  # Σ γ'
    several = sums[..., 2 * k + 1:2 * k + 2] > 1.5  # two or more covering sprites
    # Σ γ' > 0 wherever a sprite covers the pixel (γ' ≥ 0.01·r, r > 0); the guard only keeps
    # the unused branch of tf.where finite so its gradient is not NaN.
    safe = tf.where(several & (normaliser > 0), normaliser, tf.ones_like(normaliser))
    return background + tf.where(several, weighted / safe, single)


def _stack_maps(rgb, alpha, importance):
    return tf.concat([alpha, importance, rgb], axis=-1)  # [B, Hc, Wc, S, S, 2 + C]


def render_dense(rgb, alpha, importance, boxes, background, cell_size: int = 12,
                 compositing: str = "paper"):
    """The renderer of SPAIR_SPEC §1.7 in dense (objects × pixels) form.

    Every sprite is rendered on the whole image: O(Hc·Wc·H_img·W_img) time and memory, i.e.
    quadratic in image area. SPAIR uses it on images up to the 84×84 window (its 48×48
    training crops), where it does the work of `render` in fewer, larger ops; it also
    cross-checks `render`. Arguments and result as `render`; no window, so boxes anywhere
    are drawn in full. Its gradient is written out (`_dense_sums`): the same values as
    differentiating the forward ops, in about half the time under XLA (BUILD_NOTES).
    """
    alpha, importance = _weights_for(compositing, alpha, importance)
    rgb, alpha, importance, boxes, background = _check_inputs(
        rgb, alpha, importance, boxes, background, cell_size)
    n_height, n_width = background.shape[1], background.shape[2]
    n_sprite_y, n_sprite_x = rgb.shape[3], rgb.shape[4]
    shape = tf.shape(rgb)
    batch, n_cells = shape[0], shape[1] * shape[2]
    top_y, left_x, height, width = (tf.reshape(t, [batch, n_cells, 1])
                                    for t in tf.unstack(boxes, axis=-1))  # [B, K, 1] each
    rows = tf.range(n_height, dtype=rgb.dtype)
    cols = tf.range(n_width, dtype=rgb.dtype)
    s_y = _sprite_coordinates(rows, top_y, height, n_height, n_sprite_y)  # [B, K, H_img]
    s_x = _sprite_coordinates(cols, left_x, width, n_width, n_sprite_x)   # [B, K, W_img]
    covers_y = tf.cast((s_y > -1.0) & (s_y < n_sprite_y), rgb.dtype)
    covers_x = tf.cast((s_x > -1.0) & (s_x < n_sprite_x), rgb.dtype)
    maps = _stack_maps(rgb, alpha, importance)                     # [B, Hc, Wc, S, S, 2 + C]
    maps = tf.reshape(maps, tf.concat([[batch, n_cells], tf.shape(maps)[3:]], 0))
    sums = _dense_sums(maps, s_y, s_x)                             # [B, H_img, W_img, 2C + 3]
    covering = tf.einsum("bky,bkx->byx", covers_y, covers_x)[..., None]
    return _composite(tf.concat([sums, covering], -1), background, compositing)


@tf.custom_gradient
def _dense_sums(maps, s_y, s_x):
    """The per-pixel sums over sprites of the module docstring, with a written-out gradient.

    Args:
      maps: [B, K, S, S, 2 + C]: (α̃, γ, o) of each of the K sprites (`_stack_maps`).
      s_y: [B, K, H_img] sprite row coordinate of every pixel row; s_x: [B, K, W_img].
    Returns:
      [B, H_img, W_img, 2C + 3]: Σ α'·Ro, Σ α'·r, Σ γ'α'·Ro, Σ γ'α'·r, Σ γ'.

    The gradient is the chain rule through the same steps, each per-sprite per-pixel factor
    computed once: with d = (d1, d2, d3, d4, d5) the incoming gradient of the five sums and
    u = d3·Ro + d4·r, the rendered maps get dα' = d1·Ro + d2·r + γ'·u, dγ' = α'·u + d5,
    dRo = α'·(d1 + γ'·d3), dr = α'·(d2 + γ'·d4); the two interpolation products pass
    these back to the maps and to R_y, R_x, and R = max(0, 1 − |s − m|) to s.
    """
    n_sprite_y, n_sprite_x = maps.shape[2], maps.shape[3]
    n_channels = maps.shape[-1] - 2
    r_y = interpolation_matrix(s_y, n_sprite_y, "zero")           # [B, K, H_img, S]
    r_x = interpolation_matrix(s_x, n_sprite_x, "zero")           # [B, K, W_img, S]
    columns = tf.einsum("bkmnc,bkxn->bkmxc", maps, r_x)          # m·R_xᵀ  [B, K, S, W, 2+C]
    rendered = tf.einsum("bkym,bkmxc->bkyxc", r_y, columns)      # R_y·m·R_xᵀ [B, K, H, W, 2+C]
    alpha_p, gamma_p, colour = rendered[..., :1], rendered[..., 1:2], rendered[..., 2:]
    inside_y, inside_x = tf.reduce_sum(r_y, -1), tf.reduce_sum(r_x, -1)  # [B, K, H], [B, K, W]
    inside = (inside_y[..., :, None] * inside_x[..., None, :])[..., None]  # r [B, K, H, W, 1]
    one = tf.concat([alpha_p * colour, alpha_p * inside], -1)     # [B, K, H, W, C + 1]
    sums = tf.reduce_sum(tf.concat([one, gamma_p * one, gamma_p], -1), axis=1)

    def gradient(d_sums):                                         # [B, H, W, 2C + 3]
        d = d_sums[:, None]                                       # [B, 1, H, W, 2C + 3]
        d1, d2 = d[..., :n_channels], d[..., n_channels:n_channels + 1]
        d3 = d[..., n_channels + 1:2 * n_channels + 1]
        d4, d5 = d[..., 2 * n_channels + 1:2 * n_channels + 2], d[..., 2 * n_channels + 2:]
        u = tf.reduce_sum(d3 * colour, -1, keepdims=True) + d4 * inside
        d_alpha = tf.reduce_sum(d1 * colour, -1, keepdims=True) + d2 * inside + gamma_p * u
        d_gamma = alpha_p * u + d5
        d_colour = alpha_p * (d1 + gamma_p * d3)
        d_inside = (alpha_p * (d2 + gamma_p * d4))[..., 0]        # [B, K, H, W]
        d_rendered = tf.concat([d_alpha, d_gamma, d_colour], -1)  # [B, K, H, W, 2 + C]
        d_columns = tf.einsum("bkym,bkyxc->bkmxc", r_y, d_rendered)
        d_maps = tf.einsum("bkmxc,bkxn->bkmnc", d_columns, r_x)
        d_r_y = (tf.einsum("bkyxc,bkmxc->bkym", d_rendered, columns)
                 + tf.einsum("bkyx,bkx->bky", d_inside, inside_x)[..., None])
        d_r_x = (tf.einsum("bkmxc,bkmnc->bkxn", d_columns, maps)
                 + tf.einsum("bkyx,bky->bkx", d_inside, inside_y)[..., None])
        return (d_maps, interpolation_matrix_gradient(s_y, d_r_y),
                interpolation_matrix_gradient(s_x, d_r_x))

    return sums, gradient


def render(rgb, alpha, importance, boxes, background, cell_size: int = 12,
           window: int | None = None, anchor_size: float = 48.0, compositing: str = "paper"):
    """SPAIR's renderer (SPAIR_SPEC §1.7, Supplementary Algorithm 1), linear in image area.

    Args:
      rgb: [B, Hc, Wc, S, S, C] sprite colour o of each cell's object (S = 14, C = 3).
      alpha: [B, Hc, Wc, S, S, 1] α̃ = α·z_pres.
      importance: [B, Hc, Wc, S, S, 1] γ = max(α·z_pres·depth, 0.01); must be > 0.
      boxes: [B, Hc, Wc, 4] = (top_y, left_x, height, width) of each cell's box, normalised
        by the image height / width (pixel top = top_y·H_img); height, width > 0.
      background: [B, H_img, W_img, C]; sets the image size. Hc = ceil(H_img / cell_size),
        Wc = ceil(W_img / cell_size).
      cell_size: pixels per cell (12).
      window: cells on each side of a sprite's cell that it may draw on. None →
        glimpse.cell_window(cell_size, anchor_size, S) = 3 for SPAIR (box centre within
        [−0.5, 1.5] cells of the cell's top-left, size ≤ 48 px, coverage reaching half a
        sprite pixel beyond the box: ≤ 31.7 px beyond the cell on each side).
      anchor_size: the largest box side in px (SPAIR's anchor, 48); only sets the window.
      compositing: "paper" (§1.7) or "weighted" (module docstring): then `alpha` holds the
        weight maps w and `importance` is ignored.

    Returns:
      images [B, H_img, W_img, C]. Differentiable in rgb, alpha, importance, boxes and
      background (coverage itself is a step; the output is continuous across it).

    A box that leaves its window cannot come from the model; its sprite is clipped to the
    window (pixels beyond it are not drawn, nor counted as covered), where `render_dense`
    would draw it in full.

    Each sprite is evaluated on its (2·window + 1)² cells one cell-sized block at a time:
    for every block offset (d_y, d_x), the rows of cell i + d_y of R_y and the columns of
    cell j + d_x of R_x render a cell_size × cell_size block of every sprite whose target
    cell is inside the grid, and that block grid, shifted by (d_y, d_x) cells, is added to
    the per-pixel sums. Time and memory are linear in image area (measured 48² … 1536², see
    the benchmark in tests/test_renderer.py). On images no larger than the window (48×48
    training crops) `render_dense` does the same work in fewer, larger ops (≈ 2× faster on
    CPU); from 84×84 on the two cost the same, and beyond that only `render` scales.
    """
    alpha, importance = _weights_for(compositing, alpha, importance)
    rgb, alpha, importance, boxes, background = _check_inputs(
        rgb, alpha, importance, boxes, background, cell_size)
    # Static sizes where known; tensors otherwise (the any-size SavedModel signature).
    n_height, n_width = _size(background, 1), _size(background, 2)
    grid_h, grid_w = _size(rgb, 1), _size(rgb, 2)
    static = all(isinstance(v, int) for v in (n_height, n_width, grid_h, grid_w))
    n_sprite_y, n_sprite_x = rgb.shape[3], rgb.shape[4]
    c = int(cell_size)
    if window is None:
        n = cell_window(c, anchor_size, max(n_sprite_y, n_sprite_x))
    else:
        n = int(window)
        if n < 0:
            raise ValueError(f"window={window}: expected a number of cells >= 0.")
    span = (2 * n + 1) * c  # window length in px
    dtype = rgb.dtype

    top_y, left_x, height, width = tf.unstack(boxes, axis=-1)  # [B, Hc, Wc] each
    # Pixel rows of the window of cell i: 12·(i − n) + t, t = 0 … span − 1.
    offsets = tf.range(span, dtype=dtype) - n * c  # [span]
    rows = c * tf.range(grid_h, dtype=dtype)[:, None, None] + offsets  # [Hc, 1, span]
    cols = c * tf.range(grid_w, dtype=dtype)[None, :, None] + offsets  # [1, Wc, span]
    s_y = _sprite_coordinates(rows, top_y[..., None], height[..., None], n_height, n_sprite_y)
    s_x = _sprite_coordinates(cols, left_x[..., None], width[..., None], n_width, n_sprite_x)
    # s_y, s_x [B, Hc, Wc, span]
    r_y = interpolation_matrix(s_y, n_sprite_y, "zero")  # [B, Hc, Wc, span, S]
    r_x = interpolation_matrix(s_x, n_sprite_x, "zero")  # [B, Hc, Wc, span, S]
    covers_y = tf.cast((s_y > -1.0) & (s_y < n_sprite_y), dtype)
    covers_x = tf.cast((s_x > -1.0) & (s_x < n_sprite_x), dtype)
    maps = _stack_maps(rgb, alpha, importance)  # [B, Hc, Wc, S, S, 2 + C]

    inside_x = tf.reduce_sum(r_x, -1)  # [B, Hc, Wc, span]

    # Block offset (d_y, d_x) ∈ [−n, n]²: the sprite of cell (i, j) on the block of cell
    # (i + d_y, j + d_x). Only sprites whose target block is inside the grid are computed
    # (static slices), so small grids do no wasted work.
    sums = 0.0
    for d_x in range(-n, n + 1):
        j_lo, j_hi = _block_range(d_x, grid_w)  # sprites with a target column
        if static and j_lo >= j_hi:
            continue
        col_block = slice((d_x + n) * c, (d_x + n + 1) * c)  # the target's columns in the window
        # Sequence the blocks so a graph executor never holds all (2n+1)² at once.
        with tf.control_dependencies([sums] if isinstance(sums, tf.Tensor) else []):
            maps_x = _columns(r_x[:, :, j_lo:j_hi, col_block],
                              maps[:, :, j_lo:j_hi])  # [B, Hc, nj, S, c, 2 + C]
        column_sums = 0.0
        for d_y in range(-n, n + 1):
            i_lo, i_hi = _block_range(d_y, grid_h)
            if static and i_lo >= i_hi:
                continue
            row_block = slice((d_y + n) * c, (d_y + n + 1) * c)
            with tf.control_dependencies(
                    [column_sums] if isinstance(column_sums, tf.Tensor) else []):
                block = _pixel_terms(
                    r_y[:, i_lo:i_hi, j_lo:j_hi, row_block], maps_x[:, i_lo:i_hi],
                    inside_x[:, i_lo:i_hi, j_lo:j_hi, col_block],
                    covers_y[:, i_lo:i_hi, j_lo:j_hi, row_block],
                    covers_x[:, i_lo:i_hi, j_lo:j_hi, col_block])  # [B, ni, nj, c, c, 2C+4]
            # Shift by d_y cells: the block of sprite row i lands on grid row i + d_y.
            column_sums += tf.pad(block, [[0, 0], [max(d_y, 0), max(-d_y, 0)],
                                          [0, 0], [0, 0], [0, 0], [0, 0]])[:, :grid_h]
        sums += tf.pad(column_sums, [[0, 0], [0, 0], [max(d_x, 0), max(-d_x, 0)],
                                     [0, 0], [0, 0], [0, 0]])[:, :, :grid_w]
    # sums [B, Hc, Wc, c, c, 2C+4]: per-pixel sums of the block of each cell → image pixels.
    sums = tf.transpose(sums, [0, 1, 3, 2, 4, 5])  # [B, Hc, c, Wc, c, 2C+4]
    sums = tf.reshape(sums, tf.stack([-1, grid_h * c, grid_w * c, sums.shape[-1]]))
    return _composite(sums[:, :n_height, :n_width], background, compositing)
