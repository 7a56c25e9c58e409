"""ConnComp: the connected-components baseline of the paper (SPAIR_SPEC §4.1).

A pixel is foreground iff the summed absolute difference between its colour and the
(known) background colour is at least τ; every 4-connected component of foreground
pixels is one detected object, its box the min/max row and column index of its pixels
([ymin, xmin, ymax, xmax], no +1, the ground truth's convention), its confidence 1.
τ is chosen by grid search over linspace(0.01, 3.0, 100) for the best paper-protocol AP
on (a subset of) the training split.

Connected components are computed in TF ops (tensorflow-addons does not run on current
TF), batched, by min-label union-find on the pixel grid:

  every foreground pixel p holds a parent pointer L[p], a flat pixel index in its own
  component, initially p itself. One round: (1) hooking: m[p] = the smallest L over p and
  its 4 foreground neighbours is min-written into the pointer of p's parent, L[L[p]] (so
  the parent, usually a root, joins the smaller tree), and into p's own pointer L[p];
  (2) two pointer-jumping steps L[p] <- L[L[p]]. Rounds repeat until nothing
  changes. L only decreases and always points into the component, so it converges, and at
  the fixed point every pixel points to the component's smallest flat index (its first
  pixel in raster order). Hooking whole trees and pointer jumping keep the round count
  small (3 rounds for a 200×200 spiral, about 6 on dense random masks) where plain
  min-label propagation needs as many rounds as the component's length.

Each stage of a round (hooking, one pointer-jumping step, the convergence test) is its own
XLA computation, looped by a graph `tf.while_loop`. As one XLA computation the round was
2.5–3× slower on the CPU: XLA fused the neighbour minimum into the gathers that read it,
recomputing it per gathered element in an unvectorised loop (BUILD_NOTES, "ConnComp").

Labels are then numbered 1..K per image in raster order of each component's first pixel:
the order of `scipy.ndimage.label` and of TF 1.x's `tf.contrib.image.connected_components`
that the original used (which numbered components by first appearance in the flattened
batch), so detections come out in the original's order.

Command line (absl flags; a bad flag value gives a one-line error and exit status 2):
  python -m baselines.conncomp --n_digits 5 --tau_search --output_json out.json
  python -m baselines.conncomp --n_digits 5 --tau 0.02 --output_json out.json
  python -m baselines.conncomp --paper_table --output_json results/comparison/conncomp.json
  python -m baselines.conncomp --benchmark --output_json results/benchmarks/conncomp.json
"""

import dataclasses
import json
import os
import shlex
import sys
import time

import numpy as np
import tensorflow as tf

from spair_tf import cli, metrics

# The τ grid of the paper's search (SPAIR_SPEC §4.1).
DEFAULT_TAUS = np.linspace(0.01, 3.0, 100)
# Training images used by the τ search by default: 100 τ values on all 64,000 would be
# 6.4M component labellings; the first 2,000 training images are a prefix of the full set.
DEFAULT_TAU_SEARCH_IMAGES = 2000
# Images labelled per call, to bound memory (1,000 48×48 images = 2.3M pixels).
_CHUNK_IMAGES = 1000
_INT32_MAX = np.iinfo(np.int32).max


# ------------------------------------------------------------------------------
# Connected components

def _check_mask(mask):
    """Converts to a bool tensor [B, H, W], or raises naming the problem."""
    if not tf.is_tensor(mask):
        array = np.asarray(mask)
        if array.dtype != np.bool_:
            raise TypeError(
                f"mask must be boolean [B, H, W]; got dtype {array.dtype}. Pass e.g. "
                "`mask > 0` or foreground_mask(images, tau).")
        mask = tf.convert_to_tensor(array)
    if mask.dtype != tf.bool:
        raise TypeError(
            f"mask must be boolean [B, H, W]; got dtype {mask.dtype.name}. Pass e.g. "
            "`tf.cast(mask, tf.bool)` or foreground_mask(images, tau).")
    if mask.shape.rank != 3:
        raise ValueError(
            f"mask must have rank 3 [B, H, W]; got shape {mask.shape}. Add a batch axis "
            "with mask[None] for a single image.")
    size = mask.shape.num_elements()
    if size is not None and size >= _INT32_MAX:
        raise ValueError(
            f"mask has {size} pixels; connected_components indexes pixels with int32, so "
            "split the batch into chunks of fewer than 2**31 - 1 pixels.")
    return mask


def _neighbour_min(parent, mask):
    """Smallest parent over each foreground pixel and its 4 foreground neighbours.

    Args:
      parent: int32 [B, H, W] parent pointers (flat pixel indices).
      mask: bool [B, H, W] foreground.

    Returns:
      int32 [B, H, W]; background pixels keep their own parent.
    """
    values = tf.where(mask, parent, _INT32_MAX)                                 # [B, H, W]
    padded = tf.pad(values, [[0, 0], [1, 1], [1, 1]], constant_values=_INT32_MAX)
    smallest = tf.minimum(
        tf.minimum(padded[:, :-2, 1:-1], padded[:, 2:, 1:-1]),                  # up, down
        tf.minimum(padded[:, 1:-1, :-2], padded[:, 1:-1, 2:]))                  # left, right
    return tf.where(mask, tf.minimum(smallest, values), parent)


@tf.function(jit_compile=True, reduce_retracing=True)
def _hook(parent, mask):
    """Hooking: each pixel's root, and the pixel, adopt the smallest parent at the pixel.

    Args:
      parent: int32 [B, H, W] parent pointers (flat pixel indices).
      mask: bool [B, H, W] foreground.

    Returns:
      int32 [B, H, W], the hooked pointers (background pixels scatter their own index onto
      themselves: a no-op).
    """
    smallest = _neighbour_min(parent, mask)                                     # [B, H, W]
    flat = tf.reshape(parent, [-1])                                             # [P]
    hooked = tf.tensor_scatter_nd_min(flat, flat[:, None], tf.reshape(smallest, [-1]))
    return tf.minimum(tf.reshape(hooked, tf.shape(mask)), smallest)             # [B, H, W]


@tf.function(jit_compile=True, reduce_retracing=True)
def _jump(parent):
    """One pointer-jumping step L[p] <- L[L[p]]: int32 [B, H, W] -> [B, H, W]."""
    return tf.gather(tf.reshape(parent, [-1]), parent)


@tf.function(jit_compile=True, reduce_retracing=True)
def _changed(new, old):
    """Whether any pointer moved: bool []."""
    return tf.reduce_any(new != old)


@tf.function(reduce_retracing=True)
def _component_roots(mask):
    """Flat index of each pixel's component root, the component's first raster pixel.

    A graph loop over XLA-compiled stages (module docstring); call it outside any
    `jit_compile` function, or XLA inlines the stages into one slow computation.

    Args:
      mask: bool [B, H, W].

    Returns:
      int32 [B, H, W]: for a foreground pixel, the smallest flat index (b·H·W + y·W + x)
      of its 4-connected component; for a background pixel, its own index.
    """
    parent = tf.reshape(tf.range(tf.size(mask, out_type=tf.int32)), tf.shape(mask))

    def hook_and_jump(parent, _):
        hooked = _hook(parent, mask)                                            # [B, H, W]
        # Pointer jumping halves the distance to the root, twice per round.
        jumped = _jump(_jump(hooked))                                           # [B, H, W]
        return jumped, _changed(jumped, parent)

    parent, _ = tf.while_loop(
        lambda parent, changed: changed, hook_and_jump, [parent, tf.constant(True)])
    return parent


@tf.function(jit_compile=True, reduce_retracing=True)
def _labels_from_roots(mask, roots):
    """Consecutive per-image labels from the roots (see `connected_components`)."""
    shape = tf.shape(mask)
    index = tf.reshape(tf.range(tf.size(mask, out_type=tf.int32)), shape)       # [B, H, W]
    is_root = mask & (roots == index)                                           # [B, H, W]
    per_image = tf.reshape(tf.cast(is_root, tf.int32), [shape[0], -1])         # [B, H*W]
    rank = tf.reshape(tf.cumsum(per_image, axis=1), [-1])                       # [P]
    return tf.where(mask, tf.gather(rank, roots), 0)                            # [B, H, W]


def connected_components(mask):
    """4-connected components of a batch of binary masks (SPAIR_SPEC §4.1), in TF ops.

    Runs eagerly or inside a `tf.function` (not inside a `jit_compile` one: see
    `_component_roots`); the work is XLA-compiled elementwise ops, gathers and a
    scatter-min in a graph loop (no CPU-only op), so it runs on GPU.

    Args:
      mask: bool [B, H, W] (tf.Tensor or numpy array).

    Returns:
      int32 [B, H, W]: 0 on background; on foreground, 1..K_b within image b, numbered in
      raster order of each component's first pixel (the same numbering as
      `scipy.ndimage.label` with 4-connectivity).

    Raises:
      TypeError: mask is not boolean.
      ValueError: mask is not of rank 3, or has 2**31 - 1 pixels or more.
    """
    mask = _check_mask(mask)
    return _labels_from_roots(mask, _component_roots(mask))


# ------------------------------------------------------------------------------
# Detection

def _as_images(images):
    """float32 [B, H, W, C] in [0, 1]; uint8 images are divided by 255."""
    if tf.is_tensor(images):
        dtype = images.dtype
    else:
        images = np.asarray(images)
        dtype = tf.as_dtype(images.dtype)
    if dtype == tf.uint8:
        images = tf.cast(images, tf.float32) / 255.0
    elif dtype.is_floating:
        images = tf.cast(images, tf.float32)
    else:
        raise TypeError(
            f"images must be float in [0, 1] or uint8 in [0, 255]; got dtype {dtype.name}.")
    if images.shape.rank != 4:
        raise ValueError(
            f"images must have shape [B, H, W, C]; got shape {images.shape}. Add a batch "
            "axis with images[None] for a single image.")
    return images


def _check_tau(tau):
    if isinstance(tau, bool) or not np.isscalar(tau) or not np.isfinite(tau) or tau < 0:
        raise ValueError(f"tau must be a finite number >= 0; got {tau!r}.")
    return float(tau)


def _check_background(background, channels):
    colour = np.asarray(background, dtype=np.float32).reshape(-1)
    if channels is not None and colour.shape[0] != channels:
        raise ValueError(
            f"background must have one value per channel ({channels}); got {background!r}.")
    return colour


def _colour_distance(images, background):
    """Σ_channels |pixel − background|, float32 [B, H, W]."""
    images = _as_images(images)                                                 # [B,H,W,C]
    colour = _check_background(background, images.shape[-1])                    # [C]
    return tf.reduce_sum(tf.abs(images - colour), axis=-1)


def foreground_mask(images, tau, background=(0.0, 0.0, 0.0)):
    """ConnComp's foreground mask (SPAIR_SPEC §4.1): Σ_channels |pixel − bg| ≥ τ.

    Args:
      images: float [B, H, W, C] in [0, 1] (uint8 [0, 255] is divided by 255).
      tau: the threshold τ ≥ 0, on the summed absolute difference (so at most C).
      background: the background colour, C values in [0, 1].

    Returns:
      bool [B, H, W].
    """
    tau = _check_tau(tau)
    return _colour_distance(images, background) >= tau


@tf.function(jit_compile=True, reduce_retracing=True)
def _component_extents(mask, roots):
    """Per-pixel component data for the boxes, all static shapes (XLA), from the
    components' roots (`_component_roots`).

    Returns:
      is_root: bool [P], the first (raster) pixel of each component.
      extents: int32 [P, 4], at a root pixel the box (ymin, xmin, ymax, xmax) of its
        component (meaningless elsewhere). The root is the component's topmost pixel,
        so ymin is the root's own row.
    """
    shape = tf.shape(mask)
    n_pixels = tf.size(mask, out_type=tf.int32)
    roots = tf.reshape(roots, [-1])                                             # [P]
    index = tf.range(n_pixels, dtype=tf.int32)                                  # [P]
    is_root = tf.reshape(mask, [-1]) & (roots == index)                         # [P]
    within_image = index % (shape[1] * shape[2])
    rows, cols = within_image // shape[2], within_image % shape[2]              # [P] each
    # Background pixels are their own (never reported) segments.
    xmin = -tf.math.unsorted_segment_max(-cols, roots, n_pixels)                # [P]
    ymax = tf.math.unsorted_segment_max(rows, roots, n_pixels)                  # [P]
    xmax = tf.math.unsorted_segment_max(cols, roots, n_pixels)                  # [P]
    return is_root, tf.stack([rows, xmin, ymax, xmax], axis=-1)


def _detect_from_mask(mask):
    """Boxes per image (list of float32 [K, 4]) from a bool [B, H, W] mask."""
    mask = _check_mask(mask)
    n_images = int(tf.shape(mask)[0])
    boxes_out = []
    for start in range(0, n_images, _CHUNK_IMAGES):
        chunk = mask[start:start + _CHUNK_IMAGES]                               # [b, H, W]
        is_root, extents = _component_extents(chunk, _component_roots(chunk))
        # Roots in raster order are the components in label order 1..K, image by image.
        boxes = tf.gather(extents, tf.where(is_root)[:, 0]).numpy()             # [R, 4]
        counts = tf.reduce_sum(
            tf.cast(tf.reshape(is_root, [tf.shape(chunk)[0], -1]), tf.int32), axis=1)
        boxes_out.extend(np.split(boxes.astype(np.float32), np.cumsum(counts.numpy())[:-1]))
    return boxes_out


def conncomp_detect(images, tau, background=(0.0, 0.0, 0.0)):
    """ConnComp detections (SPAIR_SPEC §4.1).

    Args:
      images: float [B, H, W, C] in [0, 1] (uint8 is divided by 255).
      tau: foreground threshold τ (see `foreground_mask`).
      background: background colour.

    Returns:
      (boxes, scores): lists with one entry per image; boxes float32 [K, 4]
      [ymin, xmin, ymax, xmax] = min/max row and column index of each component's
      pixels (no +1), in label order (raster order of each component's first pixel);
      scores float32 [K], all 1.0.
    """
    boxes = _detect_from_mask(foreground_mask(images, tau, background))
    return boxes, [np.ones(b.shape[0], np.float32) for b in boxes]


def search_tau(images, gt_boxes, taus=DEFAULT_TAUS, background=(0.0, 0.0, 0.0),
               batch_size=32):
    """Grid search of τ by paper-protocol AP (SPAIR_SPEC §4.1).

    Args:
      images: [N, H, W, C] training images (float [0, 1] or uint8).
      gt_boxes: list of N [G_i, 4] ground-truth boxes.
      taus: candidate τ values (default linspace(0.01, 3.0, 100)).
      background: background colour.
      batch_size: the paper protocol's evaluation batch.

    Returns:
      (best_tau, table): the τ of highest AP, the smallest one on ties; table is a list
      of {"tau", "AP"} in the order of `taus`.
    """
    taus = np.asarray(taus, dtype=np.float64).reshape(-1)
    if taus.size == 0:
        raise ValueError("taus is empty; give at least one candidate τ.")
    for tau in taus:
        _check_tau(tau)
    if len(gt_boxes) != int(np.shape(images)[0]):
        raise ValueError(f"gt_boxes has {len(gt_boxes)} entries for {np.shape(images)[0]} "
                         "images; give one array per image.")
    distance = _colour_distance(images, background)                            # [N, H, W]
    table = []
    for tau in taus:
        boxes = _detect_from_mask(distance >= np.float32(tau))
        scores = [np.ones(b.shape[0], np.float32) for b in boxes]
        ap = metrics.average_precision(boxes, scores, list(gt_boxes), protocol="paper",
                                       batch_size=batch_size)["AP"]
        table.append({"tau": float(tau), "AP": ap})
    aps = np.array([row["AP"] for row in table])
    best = min(float(row["tau"]) for row in table if row["AP"] == aps.max())
    return best, table


# ------------------------------------------------------------------------------
# Evaluation on Experiment-1 data

def _with_digits(config, digit_frame, digit_rounding):
    """`config` with the digit preprocessing given (spair_tf.digits)."""
    if (digit_frame, digit_rounding) != (config.digit_frame, config.digit_rounding):
        config = dataclasses.replace(config, digit_frame=digit_frame,
                                     digit_rounding=digit_rounding)
        config.validate()
    return config


def _experiment1_data(n_digits, split, n_images, image_size, digit_frame="mnist",
                      digit_rounding="half_up"):
    from spair_tf import datasets

    config = _with_digits(datasets.experiment1(n_digits, split, n_images=n_images),
                          digit_frame, digit_rounding)
    if image_size != config.image_height or image_size != config.image_width:
        config = dataclasses.replace(config, image_height=image_size, image_width=image_size)
        config.validate()
    return datasets.load(config)


def evaluate_conncomp(n_digits, tau=None, tau_search=False, image_size=48,
                      n_images=1000, split="test",
                      tau_search_images=DEFAULT_TAU_SEARCH_IMAGES, taus=DEFAULT_TAUS,
                      digit_frame="mnist", digit_rounding="half_up"):
    """ConnComp on Experiment-1-style data (exactly n digits per image_size² image).

    digit_frame / digit_rounding select the digit preprocessing (spair_tf.digits): the
    spec's MNIST default, or "emnist" / "floor" to emulate the original code's EMNIST digits.

    τ is `tau`, or (tau_search) the result of `search_tau` on the first
    `tau_search_images` training images. Returns the metrics of
    `metrics.evaluate_detections` plus "tau", "n_images", "protocol" and, when
    searched, "tau_search_images" and "tau_table".
    """
    if (tau is None) == (not tau_search):
        raise ValueError("give exactly one of tau (a number) and tau_search=True.")
    result = {}
    if tau_search:
        train = _experiment1_data(n_digits, "train", tau_search_images, image_size,
                                  digit_frame, digit_rounding)
        tau, table = search_tau(train.images, train.gt_boxes_list(), taus)
        result.update(tau_search_images=int(tau_search_images), tau_table=table)
    tau = _check_tau(tau)
    data = _experiment1_data(n_digits, split, n_images, image_size, digit_frame,
                             digit_rounding)
    boxes, scores = conncomp_detect(data.images, tau)
    measured = metrics.evaluate_detections(boxes, scores, data.gt_boxes_list())
    measured.update(tau=tau, n_images=int(len(data.images)), split=split,
                    image_size=int(image_size), n_digits=int(n_digits),
                    protocol="paper (AP, AP_at); corrected; coco",
                    digit_frame=digit_frame, digit_rounding=digit_rounding,
                    **result)
    return measured


def _table_row(result, paper_ap):
    """A row of the paper tables: the metrics of `result` with AP in %, beside the paper's."""
    return {
        "AP_paper_protocol": 100.0 * result["AP"],
        "AP_paper_figure": paper_ap,
        "difference": None if paper_ap is None else 100.0 * result["AP"] - paper_ap,
        "AP_corrected": 100.0 * result["AP_corrected"],
        "AP_coco": 100.0 * result["AP_coco"],
        "AP_at": {str(k): 100.0 * v for k, v in result["AP_at"].items()},
        "count_abs_error": result["count_abs_error"],
        "count_01_error": result["count_01_error"],
    }


def paper_table(tau_search_images=DEFAULT_TAU_SEARCH_IMAGES, n_images=1000,
                digit_counts=(1, 3, 5, 7, 9), digit_frame="mnist", digit_rounding="half_up"):
    """The ConnComp column of SPAIR_SPEC §5.1 measured: {n: row} (AP values in %).

    Each row holds the measurement with the searched τ, the paper's figure, and, for
    context only, the AP at the τ the original chose (SPAIR_SPEC §4.1) on the same test
    images; the τ search table is included.
    """
    from spair_tf import paper_numbers

    table = {}
    for n in digit_counts:
        data_options = {"digit_frame": digit_frame, "digit_rounding": digit_rounding}
        result = evaluate_conncomp(n, tau_search=True, n_images=n_images,
                                   tau_search_images=tau_search_images, **data_options)
        paper_tau = paper_numbers.CONNCOMP_TAU_EXPERIMENT1.get(n)
        at_paper_tau = (evaluate_conncomp(n, tau=paper_tau, n_images=n_images,
                                          **data_options)
                        if paper_tau is not None else None)
        paper_ap = paper_numbers.EXPERIMENT1_AP["ConnComp"][n]
        table[str(n)] = {
            **_table_row(result, paper_ap),
            "tau": result["tau"],
            "tau_paper": paper_tau,
            "AP_paper_protocol_at_tau_paper": (
                None if at_paper_tau is None else 100.0 * at_paper_tau["AP"]),
            "tau_search_images": result["tau_search_images"],
            "tau_search_table": result["tau_table"],
            "n_images": result["n_images"],
        }
    return table


def count_tau_search(images, true_counts, taus=DEFAULT_TAUS, background=(0.0, 0.0, 0.0)):
    """τ minimising each count error (SPAIR_SPEC §3.3) on `images`: the paper's re-tuning.

    Returns {"count_abs_error": {"tau", "value"}, "count_01_error": {"tau", "value"}}, the
    smallest τ on ties. The paper re-tuned ConnComp's τ for each n and each metric of Fig. 3
    (SPAIR_SPEC §5.2) without saying on which images; tuned on the evaluated images, as
    here, it is an oracle: the best count ConnComp can reach with one τ per n.
    """
    distance = _colour_distance(images, background)                            # [N, H, W]
    best = {}
    for tau in np.asarray(taus, dtype=np.float64).reshape(-1):
        counts = [len(b) for b in _detect_from_mask(distance >= np.float32(_check_tau(tau)))]
        for name, error in (("count_abs_error", metrics.count_abs_error),
                            ("count_01_error", metrics.count_01_error)):
            value = error(counts, true_counts)
            if name not in best or value < best[name]["value"]:
                best[name] = {"tau": float(tau), "value": value}
    return best


def experiment2_table(n_images=1000, digit_counts=tuple(range(1, 21)), digit_frame="mnist",
                      digit_rounding="half_up", count_search=True):
    """The ConnComp column of SPAIR_SPEC §5.2 (Fig. 3) measured at the paper's τ: {n: row}.

    Full 84×84 test images with exactly n digits (`datasets.experiment2_test`), each n at
    the τ the original chose for the AP metric (SPAIR_SPEC §5.2,
    `paper_numbers.CONNCOMP_TAU_EXPERIMENT2_AP`): no τ is searched for AP. The paper also
    re-tuned τ for each count metric, with values it does not give: the count errors are
    reported at the AP's τ and, with `count_search`, for the n whose counts Fig. 3 shows,
    at the τ of `count_tau_search` on the same images. AP values in %; each row has the
    paper's figures where Fig. 3 has them.
    """
    from spair_tf import datasets, paper_numbers

    table = {}
    for n in digit_counts:
        config = _with_digits(datasets.experiment2_test(n, n_images=n_images), digit_frame,
                              digit_rounding)
        data = datasets.load(config)
        tau = paper_numbers.CONNCOMP_TAU_EXPERIMENT2_AP[n]
        boxes, scores = conncomp_detect(data.images, tau)
        result = metrics.evaluate_detections(boxes, scores, data.gt_boxes_list())
        paper = {metric: by_condition["CC"].get(n)
                 for metric, by_condition in paper_numbers.EXPERIMENT2.items()}
        table[str(n)] = {
            **_table_row(result, paper["AP"]),
            "count_abs_error_paper_figure": paper["count_abs_error"],
            "count_01_error_paper_figure": paper["count_01_error"],
            "tau": tau,
            "n_images": int(len(data.images)),
        }
        if count_search and paper["count_abs_error"] is not None:
            table[str(n)]["count_tau_search"] = count_tau_search(data.images, data.counts)
    return table


# ------------------------------------------------------------------------------
# Benchmark

def benchmark(n_masks=1000, size=48, density=0.5, repeats=5, seed=0):
    """`connected_components` on a batch vs `scipy.ndimage.label` per image in a loop.

    Both on the same random masks in the same process; the TF function is warmed up
    (traced and compiled) first; each side's time is the best of `repeats` runs and
    includes the conversion of the result to numpy. Partitions are checked to agree.
    The reference for the memory traffic: one XLA pass that reads and writes int32
    pointers over every pixel (`x + 1`), the least a round of the labelling does several
    times.
    """
    import scipy.ndimage

    rng = np.random.default_rng(seed)
    masks = rng.random((n_masks, size, size)) < density                         # [N, S, S]
    structure = scipy.ndimage.generate_binary_structure(2, 1)

    connected_components(masks).numpy()                                         # warm-up
    pointers = tf.zeros(masks.shape, tf.int32)                                  # [N, S, S]
    one_pass = tf.function(lambda x: x + 1, jit_compile=True)
    one_pass(pointers).numpy()                                                  # warm-up
    tf_times, scipy_times, pass_times = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        one_pass(pointers).numpy()
        pass_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        labels_tf = connected_components(masks).numpy()
        tf_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        labels_scipy = [scipy.ndimage.label(m, structure=structure)[0] for m in masks]
        scipy_times.append(time.perf_counter() - start)
    agree = all(np.array_equal(a, b) for a, b in zip(labels_tf, labels_scipy))
    return {
        "n_masks": n_masks, "size": size, "density": density, "repeats": repeats,
        "seed": seed,
        "tf_seconds_best": min(tf_times), "scipy_loop_seconds_best": min(scipy_times),
        "tf_seconds_all": tf_times, "scipy_loop_seconds_all": scipy_times,
        # > 1 means connected_components is faster than the scipy loop.
        "speedup_tf_over_scipy_loop": min(scipy_times) / min(tf_times),
        "xla_pass_seconds_best": min(pass_times),
        # The labelling's time in passes over the pixels.
        "tf_over_xla_pass": min(tf_times) / min(pass_times),
        "labels_equal_scipy": bool(agree),
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
        "cpu_count": os.cpu_count(),
        # Other processes share this machine: the 1-minute load average when measured.
        "load_average_1min": os.getloadavg()[0],
        "tensorflow": tf.__version__,
    }


# ------------------------------------------------------------------------------
# Command line (flags are defined only here, in the entry point)

def _command(argv):
    return " ".join(["python -m baselines.conncomp"] + [shlex.quote(a) for a in argv[1:]])


def _write_json(path, obj):
    from spair_tf import io_utils

    io_utils.atomic_write_json(path, obj, indent=2)


def _write_table(values, command, table, seconds, protocol):
    """The JSON of a per-n table (--paper_table, --experiment2_table) and how it was made."""
    _write_json(values.output_json, {
        "per_n": table, "seconds": seconds, "protocol": protocol, "command": command,
        "data": {"digit_frame": values.digit_frame, "digit_rounding": values.digit_rounding}})


def main(argv, values, command):
    """Runs what the parsed flags `values` ask; `command` is recorded in the JSON."""
    from absl import app

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; flags only.")
    modes = sum([values.benchmark, values.paper_table, values.experiment2_table,
                 values.n_digits is not None])
    if modes != 1:
        raise app.UsageError(
            "give exactly one of --n_digits N (with --tau T or --tau_search), "
            "--paper_table, --experiment2_table, --benchmark.")

    if values.benchmark:
        result = benchmark(n_masks=values.benchmark_masks)
        result["command"] = command
        output = values.output_json or "results/benchmarks/conncomp.json"
        _write_json(output, result)
        print(json.dumps(result))
        return 0

    if values.output_json is None:
        raise app.UsageError("--output_json is required.")

    if values.paper_table:
        start = time.perf_counter()
        table = paper_table(tau_search_images=values.tau_search_images,
                            n_images=values.n_images, digit_frame=values.digit_frame,
                            digit_rounding=values.digit_rounding)
        _write_table(values, command, table, time.perf_counter() - start,
                     "AP_paper_protocol: SPAIR_SPEC §3.1; tau searched on the first "
                     "tau_search_images training images; evaluated on the test split")
        for n, row in table.items():
            print(f"n={n}: AP {row['AP_paper_protocol']:.1f} (paper {row['AP_paper_figure']}), "
                  f"corrected {row['AP_corrected']:.1f}, coco {row['AP_coco']:.1f}, "
                  f"tau {row['tau']:.4f} (at the paper's tau {row['tau_paper']}: AP "
                  f"{row['AP_paper_protocol_at_tau_paper']:.1f})")
        return 0

    if values.experiment2_table:
        start = time.perf_counter()
        table = experiment2_table(n_images=values.n_images, digit_frame=values.digit_frame,
                                  digit_rounding=values.digit_rounding)
        _write_table(values, command, table, time.perf_counter() - start,
                     "AP_paper_protocol: SPAIR_SPEC §3.1; tau: the original's per-n tau for "
                     "AP (SPAIR_SPEC §5.2); count_tau_search: tau re-tuned per count metric "
                     "on the evaluated images; the test split of full 84x84 images with "
                     "exactly n digits")
        for n, row in table.items():
            paper = ("" if row["AP_paper_figure"] is None
                     else f" (paper {row['AP_paper_figure']})")
            searched = row.get("count_tau_search")
            tuned = ("" if searched is None else
                     " (τ re-tuned per count metric: |Δc| {:.3f} at τ {:.2f}, 0-1 {:.3f} at "
                     "τ {:.2f}; paper {}, {})".format(
                         searched["count_abs_error"]["value"],
                         searched["count_abs_error"]["tau"],
                         searched["count_01_error"]["value"],
                         searched["count_01_error"]["tau"],
                         row["count_abs_error_paper_figure"],
                         row["count_01_error_paper_figure"]))
            print(f"n={n}: AP {row['AP_paper_protocol']:.1f}{paper}, corrected "
                  f"{row['AP_corrected']:.1f}, |Δc| {row['count_abs_error']:.3f}, 0-1 "
                  f"{row['count_01_error']:.3f}, tau {row['tau']}{tuned}")
        return 0

    if (values.tau is None) == (not values.tau_search):
        raise app.UsageError("give exactly one of --tau T and --tau_search.")
    result = evaluate_conncomp(
        values.n_digits, tau=values.tau, tau_search=values.tau_search,
        image_size=values.image_size, n_images=values.n_images, split=values.split,
        tau_search_images=values.tau_search_images, digit_frame=values.digit_frame,
        digit_rounding=values.digit_rounding)
    result["command"] = command
    _write_json(values.output_json, result)
    print(f"ConnComp n={values.n_digits} tau={result['tau']:.4f}: AP {100 * result['AP']:.2f} "
          f"(corrected {100 * result['AP_corrected']:.2f}, coco {100 * result['AP_coco']:.2f}), "
          f"|Δc| {result['count_abs_error']:.3f}, 0-1 {result['count_01_error']:.3f} on "
          f"{result['n_images']} {values.split} images")
    return 0


def _define_flags(values):
    from absl import flags

    flags.DEFINE_integer("n_digits", None, "Digits per image (Experiment 1 data).",
                         lower_bound=0, flag_values=values)
    flags.DEFINE_float("tau", None, "Foreground threshold τ (summed |pixel − bg|).",
                       lower_bound=0.0, flag_values=values)
    flags.DEFINE_bool("tau_search", False, "Choose τ by grid search (linspace(0.01, 3, "
                      "100)) for the best paper AP on the training split.",
                      flag_values=values)
    flags.DEFINE_integer("tau_search_images", DEFAULT_TAU_SEARCH_IMAGES,
                         "Training images used by the τ search (the first ones of the "
                         "64,000-image training split).", lower_bound=1, flag_values=values)
    cli.define_digit_flags(values)
    flags.DEFINE_integer("image_size", 48, "Image side in pixels.", lower_bound=14,
                         flag_values=values)
    flags.DEFINE_integer("n_images", 1000, "Evaluation images.", lower_bound=1,
                         flag_values=values)
    flags.DEFINE_enum("split", "test", ["train", "val", "test"], "Evaluation split.",
                      flag_values=values)
    flags.DEFINE_string("output_json", None, "Where to write the result (atomically).",
                        flag_values=values)
    flags.DEFINE_bool("paper_table", False, "Measure the ConnComp column of the paper's "
                      "Experiment 1 (n = 1, 3, 5, 7, 9; τ searched per n).",
                      flag_values=values)
    flags.DEFINE_bool("experiment2_table", False, "Measure the ConnComp column of the "
                      "paper's Experiment 2 (Fig. 3: full 84×84 test images, n = 1..20, "
                      "the original's τ per n).", flag_values=values)
    flags.DEFINE_bool("benchmark", False, "Time connected_components against "
                      "scipy.ndimage.label (default output results/benchmarks/conncomp.json).",
                      flag_values=values)
    flags.DEFINE_integer("benchmark_masks", 1000, "Masks in the benchmark batch.",
                         lower_bound=1, flag_values=values)


def run(argv):
    """Parses `argv` (program name first) and runs; user mistakes: one line, status 2.

    The flags live in a FlagValues of their own, so this can also be called in-process.
    """
    from absl import app, flags

    values = flags.FlagValues()
    _define_flags(values)
    command = _command(argv)
    try:
        argv = values(argv)
    except flags.Error as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        return main(argv, values, command)
    except (app.UsageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run(sys.argv))
