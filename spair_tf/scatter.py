"""Scattered-digit images and their random crops (SPAIR_SPEC §2.2, paper §5.1).

Each image is a black canvas onto which digits are drawn one after another. A digit is an
h×w sprite (its "frame"); its "ink" is the frame's nonzero pixels and its "ink box" their
bounding box (`sprite_extents`).

- placement, by one of two rules (`overlap_rule`):
  - "frame_area" (the default; SPAIR_SPEC §2.2): a digit's top-left corner is uniform over
    the integer positions that keep the whole frame inside the image; a candidate is
    accepted iff the SUM of the overlap areas of its frame with the frames of all earlier
    digits of the image is ≤ max_overlap (default: half a sprite's area, 98 px² for 14×14,
    392 for 28×28), so the digits' ink may overlap. The sprites are drawn after all the
    positions: they play no part in the placement;
  - "ink_disjoint" (AIR's own multi-MNIST task as the AIR reimplementation
    aakhundov/tf-attend-infer-repeat, multi_mnist.py, generates it): each digit's sprite is
    drawn first; the top-left corner of its INK BOX is uniform over the integer positions
    that keep the ink box inside the image (the frame may cross the image edge, so the
    frame's top-left may be negative); a candidate is accepted iff no pixel is inked by both
    it and an earlier digit of the image (touching is fine, sharing a nonzero pixel is not).
    max_overlap does not apply;

  under both rules, after `max_tries` rejected candidates for one digit the whole image is
  drawn again (under "ink_disjoint" with new sprites too), and an image restarted more than
  `max_restarts` times raises ValueError;
- compositing: a white sprite whose alpha is the digit's intensity α ∈ [0, 1], drawn in order
  with pixel ← round(α·255 + (1 − α)·pixel) on a single uint8 channel; "round" is half-up
  (floor(v + 0.5)), applied after each digit since the canvas is uint8 throughout. With the
  8-bit sprites of `digits.digit_pools` (α = k/255) v is never exactly half-way, so no tie
  rule is ever exercised. Frame pixels with α = 0 leave the pixel unchanged, and frame
  pixels outside the image (ink_disjoint) have α = 0, so they are simply dropped. The three
  RGB channels are equal;
- ground truth: from the sprite's nonzero-alpha pixels, top = y0 + first nonzero row,
  bottom = y0 + last nonzero row (an index: no +1), likewise left/right, clipped to the
  image (a no-op here: under both rules the ink is fully inside).

The placement is rejection sampling vectorised over images: every image that still needs a
digit draws a block of candidate positions at once and takes the first acceptable one, which
has the same distribution as drawing candidates one at a time.
"""

from __future__ import annotations

import numpy as np

# The placement rules (module docstring).
OVERLAP_RULES = ("frame_area", "ink_disjoint")

# Candidate positions drawn per image and per round of the vectorised rejection sampler.
_CANDIDATES_PER_ROUND = 32
# The same under "ink_disjoint", whose test of a candidate (an h×w window of the image's ink
# mask) costs far more than a frame-overlap sum and which usually accepts the first candidate.
_INK_CANDIDATES_PER_ROUND = 8
# Images placed per batch of the sampler. The first batch is small so that an impossible
# request (see `max_restarts`) is detected after little work.
_FIRST_BATCH = 256
_BATCH = 4096


def default_max_overlap(digit_height: int, digit_width: int | None = None) -> float:
    """Half a digit's area: 98 px² for 14×14 digits (SPAIR_SPEC §2.2), 392 for 28×28."""
    digit_width = digit_height if digit_width is None else digit_width
    return digit_height * digit_width / 2.0


def _as_rng(rng):
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(seed)) or an int seed, "
                    f"got {type(rng).__name__}")


def _check_image_size(image_size, digit_shape):
    try:
        height, width = (int(s) for s in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (height, width), got {image_size!r}") from None
    if height < digit_shape[0] or width < digit_shape[1]:
        raise ValueError(f"image size {height}×{width} is smaller than the digit size "
                         f"{digit_shape[0]}×{digit_shape[1]}; use an image at least as large as a "
                         "digit")
    return height, width


def sprite_extents(sprites: np.ndarray) -> np.ndarray:
    """[P, 4] (first row, first col, last row, last col) of each sprite's nonzero pixels."""
    nonzero = sprites > 0                       # [P, h, w]
    rows = nonzero.any(axis=2)                  # [P, h]
    cols = nonzero.any(axis=1)                  # [P, w]
    blank = ~rows.any(axis=1)
    if blank.any():
        raise ValueError(f"sprites {np.flatnonzero(blank)[:10].tolist()} are entirely zero: a "
                         "digit needs at least one nonzero pixel; remove blank sprites")
    h, w = sprites.shape[1:]
    return np.stack([rows.argmax(axis=1), cols.argmax(axis=1),
                     h - 1 - rows[:, ::-1].argmax(axis=1),
                     w - 1 - cols[:, ::-1].argmax(axis=1)], axis=1)


def max_digits_bound(image_size, digit_shape, max_overlap) -> int:
    """Largest n that the summed-overlap rule does not rule out by area alone.

    Digit k overlaps the earlier ones by at most max_overlap in total, so the pairwise
    overlaps sum to ≤ (n − 1)·max_overlap and (Bonferroni) the union of the n squares covers
    ≥ n·a − (n − 1)·max_overlap pixels (a = digit area), which must fit in H·W. (48×48 with
    14×14 digits: n ≤ 22; 84×84: n ≤ 71.) Below the bound a request may still be
    impractical; `scatter_digits` then gives up after `max_restarts`.
    """
    area = digit_shape[0] * digit_shape[1]
    capacity = image_size[0] * image_size[1]
    if max_overlap >= area:
        return np.iinfo(np.int32).max
    return int(np.floor((capacity - max_overlap) / (area - max_overlap)))


def max_digits_bound_ink(image_size, sprites) -> int:
    """Largest n that the ink-disjoint rule does not rule out by area alone.

    The n digits' ink pixels are pairwise disjoint and inside the image, so n times the
    fewest ink pixels of any sprite is ≤ H·W (sprites are drawn with replacement, so an image
    may be all of the sparsest sprite). Below the bound a request may still be impractical
    (ink boxes, not just ink, must fit); `scatter_digits` then gives up after `max_restarts`.
    """
    fewest = int((np.asarray(sprites) > 0).sum(axis=(1, 2)).min())
    return (int(image_size[0]) * int(image_size[1])) // max(fewest, 1)


def _place_batch(counts, image_size, digit_shape, max_overlap, max_tries, max_restarts, rng):
    """Top-left corners [B, M, 2] (−1 padded) and restarts [B] for one batch of images."""
    batch = len(counts)
    n_max = int(counts.max()) if batch else 0
    height, width = image_size
    h, w = digit_shape
    positions = np.full((batch, n_max, 2), -1, np.int32)
    placed = np.zeros(batch, np.int64)      # digits placed so far in each image
    tries = np.zeros(batch, np.int64)       # rejected candidates for the current digit
    restarts = np.zeros(batch, np.int64)    # whole-image restarts
    slots = np.arange(n_max)
    active = np.flatnonzero(placed < counts)
    while active.size:
        n_candidates = min(_CANDIDATES_PER_ROUND, max_tries)
        cand_y = rng.integers(0, height - h + 1, size=(active.size, n_candidates))  # [A, T]
        cand_x = rng.integers(0, width - w + 1, size=(active.size, n_candidates))   # [A, T]
        earlier = positions[active]                                                 # [A, M, 2]
        overlap_y = np.maximum(h - np.abs(cand_y[:, :, None] - earlier[:, None, :, 0]), 0)
        overlap_x = np.maximum(w - np.abs(cand_x[:, :, None] - earlier[:, None, :, 1]), 0)
        is_earlier = slots[None, :] < placed[active][:, None]                     # [A, M]
        overlap = (overlap_y * overlap_x * is_earlier[:, None, :]).sum(axis=2)      # [A, T]
        # Only the first max_tries − tries candidates of this round are within the budget.
        within_budget = np.arange(n_candidates)[None, :] < (max_tries - tries[active])[:, None]
        acceptable = (overlap <= max_overlap) & within_budget                      # [A, T]
        accepted = acceptable.any(axis=1)
        first = acceptable.argmax(axis=1)

        done = active[accepted]
        rows = np.flatnonzero(accepted)
        positions[done, placed[done], 0] = cand_y[rows, first[rows]]
        positions[done, placed[done], 1] = cand_x[rows, first[rows]]
        placed[done] += 1
        tries[done] = 0

        failed = active[~accepted]
        tries[failed] += n_candidates
        exhausted = failed[tries[failed] >= max_tries]
        positions[exhausted] = -1
        placed[exhausted] = 0
        tries[exhausted] = 0
        restarts[exhausted] += 1
        if exhausted.size and restarts[exhausted].max() > max_restarts:
            n = int(counts[exhausted[np.argmax(restarts[exhausted])]])
            raise ValueError(
                f"cannot place n={n} digits of {h}×{w} in a {height}×{width} image under the "
                f"overlap rule (each digit's summed overlap with earlier digits ≤ {max_overlap:g} "
                f"px²): an image failed {max_restarts + 1} times in a row with {max_tries} tries "
                "per digit. Use fewer digits, a larger image, or a larger max_overlap.")
        active = np.flatnonzero(placed < counts)
    return positions, restarts


def _place_batch_ink(counts, ink, extents, image_size, max_tries, max_restarts, rng):
    """The "ink_disjoint" rule (module docstring) for one batch of images.

    Args: counts int [B]; ink bool [P, h, w], the sprites' nonzero pixels; extents [P, 4]
    their ink boxes (`sprite_extents`); the rest as `scatter_digits`.

    Returns frame top-left corners int32 [B, M, 2] (may be negative; −1 in unused slots),
    sprite indices int64 [B, M] (drawn for every slot, used or not) and restarts [B].
    """
    batch = len(counts)
    n_max = int(counts.max()) if batch else 0
    height, width = image_size
    n_sprites, h, w = ink.shape
    ink_height = extents[:, 2] - extents[:, 0] + 1                          # [P]
    ink_width = extents[:, 3] - extents[:, 1] + 1                           # [P]
    positions = np.full((batch, n_max, 2), -1, np.int32)
    sprite_index = rng.integers(0, n_sprites, size=(batch, n_max))         # [B, M]
    occupied = np.zeros((batch, height, width), bool)  # ink of the digits placed so far
    placed = np.zeros(batch, np.int64)      # digits placed so far in each image
    tries = np.zeros(batch, np.int64)       # rejected candidates for the current digit
    restarts = np.zeros(batch, np.int64)    # whole-image restarts
    active = np.flatnonzero(placed < counts)
    while active.size:
        n_candidates = min(_INK_CANDIDATES_PER_ROUND, max_tries)
        slot = placed[active]                                                # [A]
        current = sprite_index[active, slot]                                 # [A]
        # The ink box's top-left corner, uniform over the corners keeping it inside the image.
        ink_top = rng.integers(0, (height - ink_height[current] + 1)[:, None],
                               size=(active.size, n_candidates))             # [A, T]
        ink_left = rng.integers(0, (width - ink_width[current] + 1)[:, None],
                                size=(active.size, n_candidates))            # [A, T]
        cand_y = ink_top - extents[current, 0][:, None]                     # [A, T] frame
        cand_x = ink_left - extents[current, 1][:, None]                    # [A, T]
        collides = np.zeros(cand_y.shape, bool)                             # [A, T]
        check = np.flatnonzero(slot > 0)  # a first digit has nothing to collide with
        if check.size:
            # Frame pixels outside the image are clipped onto its edge: they carry no ink, so
            # whatever the window reads there is masked out.
            rows = np.clip(cand_y[check][:, :, None] + np.arange(h), 0, height - 1)  # [C, T, h]
            cols = np.clip(cand_x[check][:, :, None] + np.arange(w), 0, width - 1)   # [C, T, w]
            window = occupied[active[check][:, None, None, None], rows[:, :, :, None],
                              cols[:, :, None, :]]                           # [C, T, h, w]
            collides[check] = (window & ink[current[check]][:, None]).any(axis=(2, 3))
        # Only the first max_tries − tries candidates of this round are within the budget.
        within_budget = np.arange(n_candidates)[None, :] < (max_tries - tries[active])[:, None]
        acceptable = ~collides & within_budget                                # [A, T]
        accepted = acceptable.any(axis=1)
        first = acceptable.argmax(axis=1)

        done = active[accepted]
        rows_done = np.flatnonzero(accepted)
        y0 = cand_y[rows_done, first[rows_done]]                              # [D]
        x0 = cand_x[rows_done, first[rows_done]]                              # [D]
        positions[done, placed[done], 0] = y0
        positions[done, placed[done], 1] = x0
        # Mark the new digit's ink, inside the image by construction, as occupied.
        which, r, c = np.nonzero(ink[current[rows_done]])                     # [D, h, w] → ink
        occupied[done[which], y0[which] + r, x0[which] + c] = True
        placed[done] += 1
        tries[done] = 0

        failed = active[~accepted]
        tries[failed] += n_candidates
        exhausted = failed[tries[failed] >= max_tries]
        if exhausted.size:  # the whole image again: new sprites, new positions
            positions[exhausted] = -1
            placed[exhausted] = 0
            tries[exhausted] = 0
            occupied[exhausted] = False
            sprite_index[exhausted] = rng.integers(0, n_sprites, size=(exhausted.size, n_max))
            restarts[exhausted] += 1
            if restarts[exhausted].max() > max_restarts:
                n = int(counts[exhausted[np.argmax(restarts[exhausted])]])
                raise ValueError(
                    f"cannot place n={n} digits of {h}×{w} in a {height}×{width} image under "
                    "the ink-disjoint rule (no pixel inked by two digits, every ink box inside "
                    f"the image): an image failed {max_restarts + 1} times in a row with "
                    f"{max_tries} tries per digit. Use fewer digits or a larger image.")
        active = np.flatnonzero(placed < counts)
    return positions, sprite_index, restarts


def scatter_digits(sprites: np.ndarray, labels: np.ndarray, n_digits_per_image,
                   image_size=(48, 48), rng=None, max_overlap: float | None = None,
                   max_tries: int = 1000, max_restarts: int = 50,
                   max_objects: int | None = None,
                   overlap_rule: str = "frame_area") -> dict[str, np.ndarray]:
    """Draws scattered-digit images (SPAIR_SPEC §2.2; the rules are in the module docstring).

    Args:
      sprites: float [P, h, w] digit intensities in [0, 1] (alpha of a white sprite); the
        pool to draw from, e.g. `digits.digit_pools()["train"][0]`.
      labels: int [P], the class of each sprite.
      n_digits_per_image: int [N], the number of digits of each image (≥ 0).
      image_size: (H, W); at least the digit size under "frame_area", at least every
        sprite's ink box under "ink_disjoint".
      rng: a numpy Generator (or an int seed). Every draw comes from it: same rng state, same
        output. Digits are drawn uniformly with replacement from the pool.
      max_overlap: "frame_area" only: the bound on a candidate's summed overlap area with the
        earlier digits; default half a digit's area (98 px² for 14×14). Must be None under
        "ink_disjoint".
      max_tries: candidates per digit before the image is restarted (the paper: 1000; AIR's
        generator: 100).
      max_restarts: an image restarted more often than this raises ValueError (the request is
        then taken to be impossible in practice); at most ~50·n·1000 candidates are spent
        on such an image.
      max_objects: M, the padded width of the per-digit outputs; default max(n), at least 1.
      overlap_rule: "frame_area" (SPAIR_SPEC §2.2, the default) or "ink_disjoint" (AIR's
        multi-MNIST); see the module docstring.

    Returns a dict of numpy arrays:
      images uint8 [N, H, W, 3] (channels equal); boxes float32 [N, M, 4] as (ymin, xmin, ymax,
      xmax) in pixels, the inclusive indices of the digit's first/last inked row/column,
      zero-padded; counts int32 [N]; labels int32 [N, M], −1-padded; positions int32
      [N, M, 2] top-left (y0, x0) of each digit's h×w frame, −1-padded: under "ink_disjoint"
      the frame may cross the image edge, so y0, x0 may be negative (down to −(h − 1)) or
      beyond H − h, W − w, and a −1 is not a padding mark (use counts or sprite_index);
      sprite_index int32 [N, M] index into `sprites`, −1-padded; restarts int32 [N]
      whole-image restarts.

    Raises:
      ValueError if the image is too small, overlap_rule is unknown, max_overlap is given
      with "ink_disjoint", or n digits cannot be placed (ruled out by area, see
      `max_digits_bound` and `max_digits_bound_ink`, or more than `max_restarts` restarts of
      one image).
    """
    rng = _as_rng(rng)
    sprites = np.asarray(sprites)
    labels = np.asarray(labels)
    if overlap_rule not in OVERLAP_RULES:
        raise ValueError(f"overlap_rule must be one of {OVERLAP_RULES}, got {overlap_rule!r}")
    ink_rule = overlap_rule == "ink_disjoint"
    if sprites.ndim != 3 or sprites.shape[0] == 0:
        raise ValueError(f"sprites must be a non-empty [P, h, w] array, got shape {sprites.shape}")
    if not np.issubdtype(sprites.dtype, np.floating) or not np.all(np.isfinite(sprites)) or (
            sprites.min() < 0 or sprites.max() > 1):
        raise ValueError("sprites must be floats in [0, 1] (digit intensity = alpha); divide "
                         "8-bit digits by 255")
    if labels.shape != sprites.shape[:1]:
        raise ValueError(f"labels must have shape [{sprites.shape[0]}] (one per sprite), got "
                         f"{labels.shape}")
    digit_shape = sprites.shape[1:]
    if ink_rule:
        extents = sprite_extents(sprites)                                     # [P, 4]
        height, width = _check_image_size(image_size, (1, 1))
        ink_height = extents[:, 2] - extents[:, 0] + 1                        # [P]
        ink_width = extents[:, 3] - extents[:, 1] + 1                         # [P]
        too_big = (ink_height > height) | (ink_width > width)
        if too_big.any():
            raise ValueError(f"image size {height}×{width} is smaller than the ink box of "
                             f"sprites {np.flatnonzero(too_big)[:10].tolist()} (up to "
                             f"{ink_height.max()}×{ink_width.max()}); under the ink-disjoint "
                             "rule every ink box must fit in the image")
    else:
        height, width = _check_image_size(image_size, digit_shape)
    counts = np.asarray(n_digits_per_image)
    if counts.ndim != 1 or not np.issubdtype(counts.dtype, np.integer) or (
            counts.size and counts.min() < 0):
        raise ValueError("n_digits_per_image must be a 1-D array of non-negative integers (one "
                         f"per image), got {n_digits_per_image!r}")
    counts = counts.astype(np.int64)
    if ink_rule:
        if max_overlap is not None:
            raise ValueError(f"max_overlap={max_overlap!r} applies only to overlap_rule="
                             "'frame_area'; leave it None with overlap_rule='ink_disjoint'")
    else:
        if max_overlap is None:
            max_overlap = default_max_overlap(*digit_shape)
        if not np.isfinite(max_overlap) or max_overlap < 0:
            raise ValueError(f"max_overlap must be ≥ 0 (px²), got {max_overlap!r}")
    if int(max_tries) < 1 or int(max_restarts) < 0:
        raise ValueError(f"need max_tries ≥ 1 and max_restarts ≥ 0, got {max_tries}, "
                         f"{max_restarts}")
    n_max = int(counts.max()) if counts.size else 0
    if ink_rule:
        bound = max_digits_bound_ink((height, width), sprites)
        if n_max > bound:
            raise ValueError(
                f"cannot place n={n_max} digits of {digit_shape[0]}×{digit_shape[1]} in a "
                f"{height}×{width} image under the ink-disjoint rule (no pixel inked by two "
                f"digits): by ink area at most {bound} fit (the sparsest sprite has "
                f"{int((sprites > 0).sum(axis=(1, 2)).min())} ink pixels). Use fewer digits "
                "or a larger image.")
    else:
        bound = max_digits_bound((height, width), digit_shape, max_overlap)
        if n_max > bound:
            raise ValueError(
                f"cannot place n={n_max} digits of {digit_shape[0]}×{digit_shape[1]} in a "
                f"{height}×{width} image under the overlap rule (each digit's summed overlap "
                f"with earlier digits ≤ {max_overlap:g} px²): by area at most {bound} fit. Use "
                "fewer digits, a larger image, or a larger max_overlap.")
    width_m = max(n_max, 1) if max_objects is None else int(max_objects)
    if width_m < n_max:
        raise ValueError(f"max_objects={max_objects} is smaller than the largest count {n_max}")
    if not ink_rule:
        extents = sprite_extents(sprites)                                     # [P, 4]

    n_images = counts.size
    positions = np.full((n_images, width_m, 2), -1, np.int32)
    sprite_index = np.full((n_images, width_m), -1, np.int64)
    restarts = np.zeros(n_images, np.int32)
    ink = sprites > 0                                                         # [P, h, w]
    start = 0
    while start < n_images:
        stop = min(n_images, start + (_FIRST_BATCH if start == 0 else _BATCH))
        if ink_rule:
            batch_positions, batch_sprites, batch_restarts = _place_batch_ink(
                counts[start:stop], ink, extents, (height, width), int(max_tries),
                int(max_restarts), rng)
            sprite_index[start:stop, :batch_sprites.shape[1]] = batch_sprites
        else:
            batch_positions, batch_restarts = _place_batch(
                counts[start:stop], (height, width), digit_shape, float(max_overlap),
                int(max_tries), int(max_restarts), rng)
        positions[start:stop, :batch_positions.shape[1]] = batch_positions
        restarts[start:stop] = batch_restarts
        start = stop

    slot_used = np.arange(width_m)[None, :] < counts[:, None]                   # [N, M]
    if not ink_rule:  # sprites play no part in the placement: drawn after it
        sprite_index = rng.integers(0, len(sprites), size=(n_images, width_m))
    sprite_index = np.where(slot_used, sprite_index, -1).astype(np.int32)       # [N, M]

    # Composite digit slot by slot; within a slot each image gets at most one digit.
    h, w = digit_shape
    canvas = np.zeros((n_images, height, width), np.uint8)                       # [N, H, W]
    for k in range(n_max):  # over digit slots (≤ M), vectorised over images
        images_k = np.flatnonzero(counts > k)                                     # [S]
        # Frame pixels outside the image (ink_disjoint only) are clipped onto its edge; they
        # have α = 0, so they are read but never written.
        rows = np.clip(positions[images_k, k, 0][:, None] + np.arange(h), 0, height - 1)
        cols = np.clip(positions[images_k, k, 1][:, None] + np.arange(w), 0, width - 1)
        index = (images_k[:, None, None], rows[:, :, None], cols[:, None, :])   # [S, h, w]
        alpha = sprites[sprite_index[images_k, k]].astype(np.float32)            # [S, h, w]
        old = canvas[index].astype(np.float32)                                   # [S, h, w]
        new = alpha * 255.0 + (1.0 - alpha) * old
        new = np.clip(np.floor(new + 0.5), 0, 255).astype(np.uint8)              # [S, h, w]
        # Where α = 0 the pixel keeps its value, so only inked pixels are written: they are
        # inside the image and distinct, so no pixel is written twice.
        inked = alpha > 0                                                        # [S, h, w]
        canvas[tuple(np.broadcast_to(i, inked.shape)[inked] for i in index)] = new[inked]

    safe_index = np.maximum(sprite_index, 0)
    y0 = positions[:, :, 0].astype(np.float32)
    x0 = positions[:, :, 1].astype(np.float32)
    ext = extents[safe_index].astype(np.float32)                                 # [N, M, 4]
    boxes = np.stack([np.clip(y0 + ext[..., 0], 0, height - 1),
                      np.clip(x0 + ext[..., 1], 0, width - 1),
                      np.clip(y0 + ext[..., 2], 0, height - 1),
                      np.clip(x0 + ext[..., 3], 0, width - 1)], axis=-1)         # [N, M, 4]
    boxes = np.where(slot_used[..., None], boxes, 0.0).astype(np.float32)
    out_labels = np.where(slot_used, labels.astype(np.int32)[safe_index], -1).astype(np.int32)
    return {
        "images": np.repeat(canvas[..., None], 3, axis=-1),                       # [N, H, W, 3]
        "boxes": boxes,
        "counts": counts.astype(np.int32),
        "labels": out_labels,
        "positions": positions,
        "sprite_index": sprite_index,
        "restarts": restarts,
    }


def crop(images: np.ndarray, boxes: np.ndarray, counts: np.ndarray, labels: np.ndarray,
         crop_size: int, crops_per_image: int, rng) -> dict[str, np.ndarray]:
    """Random square crops with their ground truth (SPAIR_SPEC §2.2, Experiment 2 training).

    Each source image gives `crops_per_image` crops of crop_size×crop_size whose top-left
    corner is uniform over the integer positions inside the image (drawn independently).
    Crops are ordered source by source. A box (ymin, xmin, ymax, xmax: inclusive pixel
    indices, as the ground truth of `scatter_digits`) is shifted into the crop and clipped
    to [0, crop_size − 1], the index range of the crop's pixels, so it stays in the same
    inclusive-index convention; it is kept iff the clipped box is non-degenerate:
    ymax > ymin and xmax > xmin (a digit of which a single row or column, or nothing, is
    inside is dropped). Kept boxes and labels move to the front in their original order;
    the rest is padded (boxes 0, labels −1); counts are recomputed. The width M of
    boxes/labels is the source's.

    Returns images uint8 [N·K, c, c, C], boxes float32 [N·K, M, 4], counts int32 [N·K],
    labels int32 [N·K, M], source_index int32 [N·K], offsets int32 [N·K, 2] (top, left).
    """
    rng = _as_rng(rng)
    images = np.asarray(images)
    boxes = np.asarray(boxes, np.float32)
    counts = np.asarray(counts)
    labels = np.asarray(labels)
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}")
    n_images, height, width = images.shape[:3]
    if boxes.shape[:1] != (n_images,) or boxes.ndim != 3 or boxes.shape[2] != 4 or (
            labels.shape != boxes.shape[:2]) or counts.shape != (n_images,):
        raise ValueError(f"need boxes [N, M, 4], labels [N, M], counts [N] for N={n_images}; got "
                         f"{boxes.shape}, {labels.shape}, {counts.shape}")
    if isinstance(crop_size, bool) or int(crop_size) != crop_size or not (
            1 <= crop_size <= min(height, width)):
        raise ValueError(f"crop_size must be an integer in [1, {min(height, width)}] for "
                         f"{height}×{width} images, got {crop_size!r}")
    if isinstance(crops_per_image, bool) or int(crops_per_image) != crops_per_image or (
            crops_per_image < 1):
        raise ValueError(f"crops_per_image must be a positive integer, got {crops_per_image!r}")
    size, k = int(crop_size), int(crops_per_image)
    n_slots = boxes.shape[1]

    source = np.repeat(np.arange(n_images), k)                                   # [N·K]
    top = rng.integers(0, height - size + 1, size=n_images * k)                  # [N·K]
    left = rng.integers(0, width - size + 1, size=n_images * k)                  # [N·K]
    rows = top[:, None] + np.arange(size)                                        # [N·K, c]
    cols = left[:, None] + np.arange(size)                                       # [N·K, c]
    crops = images[source[:, None, None], rows[:, :, None], cols[:, None, :]]   # [N·K, c, c, C]

    shift = np.stack([top, left, top, left], axis=1).astype(np.float32)         # [N·K, 4]
    moved = np.clip(boxes[source] - shift[:, None, :], 0, size - 1)             # [N·K, M, 4]
    in_use = np.arange(n_slots)[None, :] < counts[source][:, None]              # [N·K, M]
    kept = in_use & (moved[..., 2] > moved[..., 0]) & (moved[..., 3] > moved[..., 1])
    order = np.argsort(~kept, axis=1, kind="stable")                            # kept first
    kept_sorted = np.take_along_axis(kept, order, axis=1)
    new_boxes = np.take_along_axis(moved, order[..., None], axis=1)
    new_boxes = np.where(kept_sorted[..., None], new_boxes, 0.0).astype(np.float32)
    new_labels = np.where(kept_sorted, np.take_along_axis(labels[source], order, axis=1), -1)
    return {
        "images": crops,
        "boxes": new_boxes,
        "counts": kept.sum(axis=1).astype(np.int32),
        "labels": new_labels.astype(np.int32),
        "source_index": source.astype(np.int32),
        "offsets": np.stack([top, left], axis=1).astype(np.int32),
    }
