"""Detection and counting metrics: AP under three protocols, count errors.

SPAIR_SPEC §3. Evaluation code, so numpy rather than TF; every step is vectorised
over images and IoU thresholds, the only Python loops being over prediction slots
(the greedy matching is sequential by nature) and over evaluation batches.

Boxes are [ymin, xmin, ymax, xmax] in pixels and areas are continuous,
(ymax - ymin) * (xmax - xmin), with no +1 (SPAIR_SPEC §1.4, §2.2, §3.1).

Protocols of `average_precision`:

* ``"paper"`` (SPAIR_SPEC §3.1), the original evaluation with its quirks:
  within an image, predictions are visited by decreasing confidence (stable, so
  ties keep their input order); each takes the remaining GT box of highest IoU
  (the first one on ties); it is a TP iff that IoU is strictly greater than the
  threshold, and the GT is then removed, otherwise an FP. Once an image has no
  GT left its remaining predictions are dropped (neither TP nor FP). Every
  prediction of an image without GT is an FP. The (confidence, TP) pairs are
  pooled over each evaluation batch of `batch_size` consecutive images, ranked
  by decreasing confidence (stable: image order, then within-image order), and
  an 11-point interpolated AP (max precision at recall >= r, 0 if none, for
  r = 0, 0.1, ..., 1) is computed per batch; the result is the batch-size
  weighted mean over batches.
* ``"corrected"`` (SPAIR_SPEC §3.2, ours): the same matching rule, but no
  prediction is ever dropped (every unmatched prediction is an FP) and the
  pairs are pooled over the whole dataset; 11-point interpolation.
* ``"coco"`` (SPAIR_SPEC §3.2): pooled over the whole dataset with the matching
  and interpolation of pycocotools' COCOeval (bbox, one class, area range
  'all', no cap on detections per image): a prediction matches the unmatched
  GT of highest IoU if that IoU is >= min(threshold, 1 - 1e-10), the LAST such
  GT on ties; precision is made monotone from the right and read at the first
  rank whose recall reaches each of the 101 recall thresholds
  linspace(0, 1, 101) (0 past the end of the curve).
"""

import numpy as np

# The IoU thresholds of the paper, written as the original wrote them (literal
# decimals, not linspace, whose 0.30000000000000004 would move tie cases).
DEFAULT_IOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
PROTOCOLS = ("paper", "corrected", "coco")

_ELEVEN_POINTS = 10            # recall points j / 10, j = 0..10
_COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
_COCO_MAX_THRESHOLD = 1.0 - 1e-10


# ------------------------------------------------------------------------------
# IoU

def _as_boxes(boxes, name):
    """Checks one [K, 4] box array (ymin, xmin, ymax, xmax) and returns float64."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 4), np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(
            f"{name} must have shape [K, 4] (ymin, xmin, ymax, xmax); got shape "
            f"{np.shape(boxes)}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite coordinates; pass finite boxes.")
    if np.any(array[:, 2] < array[:, 0]) or np.any(array[:, 3] < array[:, 1]):
        raise ValueError(
            f"{name} has a box with ymax < ymin or xmax < xmin; boxes must be "
            "[ymin, xmin, ymax, xmax] with max >= min.")
    return array


def _box_areas(boxes):
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _pairwise_iou(a, b):
    """IoU of boxes a [..., K, 4] with boxes b [..., G, 4] -> [..., K, G] (see iou_matrix)."""
    a, b = a[..., :, None, :], b[..., None, :, :]
    overlap_h = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    overlap_w = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    overlapping = (overlap_h > 0) & (overlap_w > 0)
    intersection = np.where(overlapping, overlap_h * overlap_w, 0.0)
    union = _box_areas(a) + _box_areas(b) - intersection
    # A positive intersection implies a positive union; elsewhere IoU is 0.
    return np.where(overlapping, intersection / np.where(overlapping, union, 1.0), 0.0)


def iou_matrix(boxes_a, boxes_b):
    """Intersection over union of every pair of boxes (SPAIR_SPEC §3.1).

    Args:
      boxes_a: [K, 4] boxes [ymin, xmin, ymax, xmax].
      boxes_b: [G, 4] boxes, same convention.

    Returns:
      float64 [K, G] IoU, areas continuous (no +1). A pair with an empty
      intersection (including any pair involving a zero-area box) has IoU 0.
    """
    return _pairwise_iou(_as_boxes(boxes_a, "boxes_a"), _as_boxes(boxes_b, "boxes_b"))


# ------------------------------------------------------------------------------
# Matching

def _per_image(values, name, width):
    """One float64 array per image: [K, width] (width 4) or [K] (width None)."""
    arrays = []
    for i, value in enumerate(values):
        array = np.asarray(value, dtype=np.float64)
        if width is None:
            array = array.reshape(-1)
        elif array.size == 0:
            array = array.reshape(0, width)
        elif array.ndim != 2 or array.shape[1] != width:
            raise ValueError(f"{name}[{i}] must have shape [K, 4] (ymin, xmin, ymax, xmax); "
                             f"got shape {array.shape}.")
        arrays.append(array)
    return arrays


def _padded(arrays, fill):
    """Stacks per-image arrays [K_i, ...] into [N, max(1, max K_i), ...] and counts [N]."""
    counts = np.array([a.shape[0] for a in arrays], np.int64)
    out = np.full((len(arrays), max(1, int(counts.max()))) + arrays[0].shape[1:], fill)
    for i, a in enumerate(arrays):
        out[i, :a.shape[0]] = a
    return out, counts


def _check_inputs(pred_boxes, pred_scores, gt_boxes):
    """Validates the per-image lists; returns them padded.

    Returns pred [N, K, 4], scores [N, K], n_pred [N], gt [N, G, 4], n_gt [N]
    (K, G at least 1; padding 0 for boxes and -inf for scores).
    """
    if not isinstance(pred_boxes, (list, tuple)) or not isinstance(
            pred_scores, (list, tuple)) or not isinstance(gt_boxes, (list, tuple)):
        raise TypeError(
            "pred_boxes, pred_scores and gt_boxes must be lists with one numpy array "
            "per image; got types "
            f"{type(pred_boxes).__name__}, {type(pred_scores).__name__}, "
            f"{type(gt_boxes).__name__}.")
    n = len(gt_boxes)
    if len(pred_boxes) != n or len(pred_scores) != n:
        raise ValueError(
            f"pred_boxes, pred_scores and gt_boxes must have one entry per image; got "
            f"lengths {len(pred_boxes)}, {len(pred_scores)}, {n}.")
    if n == 0:
        raise ValueError("no images to evaluate: the lists are empty.")
    boxes = _per_image(pred_boxes, "pred_boxes", 4)
    scores = _per_image(pred_scores, "pred_scores", None)
    gts = _per_image(gt_boxes, "gt_boxes", 4)
    for i, (b, s) in enumerate(zip(boxes, scores)):
        if b.shape[0] != s.shape[0]:
            raise ValueError(
                f"pred_scores[{i}] has {s.shape[0]} scores but pred_boxes[{i}] has "
                f"{b.shape[0]} boxes; give one score per box.")
    pred, n_pred = _padded(boxes, 0.0)
    score, _ = _padded(scores, -np.inf)
    gt, n_gt = _padded(gts, 0.0)
    for name, padded in (("pred_boxes", pred), ("gt_boxes", gt)):
        _as_boxes(padded.reshape(-1, 4), name)     # finite, max >= min (padding is valid)
    valid = np.arange(score.shape[1])[None, :] < n_pred[:, None]
    if not np.all(np.isfinite(score[valid])):
        raise ValueError("pred_scores contains NaN or infinite scores.")
    return pred, score, n_pred, gt, n_gt


def _check_thresholds(iou_thresholds):
    thresholds = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    if thresholds.size == 0 or np.any(thresholds < 0) or np.any(thresholds >= 1) \
            or not np.all(np.isfinite(thresholds)):
        raise ValueError(
            f"iou_thresholds must be a non-empty list of values in [0, 1); got "
            f"{iou_thresholds!r}.")
    return thresholds


def _match(pred, score, n_pred, gt, n_gt, thresholds, rule):
    """Greedy per-image matching, vectorised over images and thresholds.

    Args:
      pred [N, K, 4], score [N, K], n_pred [N], gt [N, G, 4], n_gt [N]: the padded
        inputs of `_check_inputs`.
      thresholds: [T] IoU thresholds.
      rule: "paper" (strict >, first of the best GTs, drop after exhaustion),
        "corrected" (as paper without dropping) or "coco" (>=, last of the best).

    Returns:
      sorted_scores [N, K] (per image, decreasing, stable; padding -inf),
      is_tp [T, N, K] bool and is_counted [T, N, K] bool (TP or FP; False for
      padding and for predictions the paper rule drops).
    """
    n_images, k_max = score.shape
    g_max = gt.shape[1]
    n_thresholds = thresholds.shape[0]

    # Stable sort by decreasing score within each image; padding (-inf) goes last.
    order = np.argsort(-score, axis=1, kind="stable")                        # [N, K]
    sorted_scores = np.take_along_axis(score, order, axis=1)                 # [N, K]
    sorted_pred = np.take_along_axis(pred, order[..., None], axis=1)         # [N, K, 4]
    ious = _pairwise_iou(sorted_pred, gt)                                    # [N, K, G]

    if rule == "coco":
        effective = np.minimum(thresholds, _COCO_MAX_THRESHOLD)[:, None]   # [T, 1]
    else:
        effective = thresholds[:, None]

    available = np.broadcast_to(
        np.arange(g_max)[None, :] < n_gt[:, None], (n_thresholds, n_images, g_max)).copy()
    is_tp = np.zeros((n_thresholds, n_images, k_max), bool)
    is_counted = np.zeros((n_thresholds, n_images, k_max), bool)
    image_index = np.arange(n_images)[None, :]                               # [1, N]
    threshold_index = np.arange(n_thresholds)[:, None]                       # [T, 1]
    for k in range(k_max):
        valid = (k < n_pred)[None, :]                                        # [1, N]
        candidate = np.where(available, ious[None, :, k, :], -np.inf)        # [T, N, G]
        any_left = available.any(axis=-1)                                    # [T, N]
        if rule == "coco":
            # Last GT among those of highest IoU, as COCOeval's ">=" update does.
            best = g_max - 1 - np.argmax(candidate[..., ::-1], axis=-1)      # [T, N]
        else:
            best = np.argmax(candidate, axis=-1)                             # [T, N]
        best_iou = candidate[threshold_index, image_index, best]             # [T, N]
        if rule == "coco":
            hit = best_iou >= effective
        else:
            hit = best_iou > effective
        tp = valid & any_left & hit                                          # [T, N]
        if rule == "paper":
            # Quirk: once an image's GTs are used up, its later predictions vanish.
            dropped = valid & (n_gt > 0)[None, :] & ~any_left
        else:
            dropped = np.zeros_like(tp)
        is_tp[:, :, k] = tp
        is_counted[:, :, k] = valid & ~dropped
        t_idx, i_idx = np.nonzero(tp)
        available[t_idx, i_idx, best[t_idx, i_idx]] = False
    return sorted_scores, is_tp, is_counted


# ------------------------------------------------------------------------------
# Interpolated precision

def _pool(sorted_scores, is_tp, is_counted):
    """Pools the predictions of several images and ranks them by confidence.

    Returns cumulative TP and counted totals along the ranking, [T, P] each, and
    the counted mask [T, P]. The ranking is stable (image order, then the
    within-image order), like Python's sorted and COCOeval's mergesort.
    """
    scores = sorted_scores.reshape(-1)                        # [N * K]
    order = np.argsort(-scores, kind="stable")
    order = order[np.isfinite(scores[order])]                 # drop padding
    tp = is_tp.reshape(is_tp.shape[0], -1)[:, order]          # [T, P]
    counted = is_counted.reshape(is_counted.shape[0], -1)[:, order]
    return np.cumsum(tp, axis=1), np.cumsum(counted, axis=1), counted


def _eleven_point_ap(sorted_scores, is_tp, is_counted, n_gt_total):
    """11-point interpolated AP per threshold, [T] (SPAIR_SPEC §3.1 step 2).

    Recall >= j/10 is decided in exact integer arithmetic (10 * cumTP >= j * N_gt),
    which is what the original's float32 comparison amounts to at these sizes.
    """
    n_thresholds = is_tp.shape[0]
    cum_tp, cum_counted, counted = _pool(sorted_scores, is_tp, is_counted)
    if cum_tp.shape[1] == 0:
        return np.zeros(n_thresholds)
    precision = np.where(counted, cum_tp / np.maximum(cum_counted, 1), -np.inf)  # [T, P]
    # Best precision at or after each rank: recall >= r is a suffix of the ranking.
    suffix_best = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]     # [T, P]
    levels = np.arange(_ELEVEN_POINTS + 1) * n_gt_total                          # [11]
    first = np.sum(
        _ELEVEN_POINTS * cum_tp[:, :, None] < levels[None, None, :], axis=1)    # [T, 11]
    n_ranked = cum_tp.shape[1]
    padded = np.concatenate([suffix_best, np.full((n_thresholds, 1), -np.inf)], axis=1)
    values = np.take_along_axis(padded, np.minimum(first, n_ranked), axis=1)     # [T, 11]
    values = np.where(np.isfinite(values), values, 0.0)
    return values.mean(axis=1)


def _coco_ap(sorted_scores, is_tp, is_counted, n_gt_total):
    """101-point interpolated AP per threshold, [T], as COCOeval.accumulate."""
    n_thresholds = is_tp.shape[0]
    if n_gt_total == 0:
        return np.zeros(n_thresholds)
    cum_tp, cum_counted, _ = _pool(sorted_scores, is_tp, is_counted)
    n_ranked = cum_tp.shape[1]
    if n_ranked == 0:
        return np.zeros(n_thresholds)
    tp = cum_tp.astype(np.float64)
    fp = (cum_counted - cum_tp).astype(np.float64)
    recall = tp / n_gt_total                                                 # [T, P]
    precision = tp / (fp + tp + np.spacing(1))                               # [T, P]
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]    # [T, P]
    result = np.zeros(n_thresholds)
    for t in range(n_thresholds):
        first = np.searchsorted(recall[t], _COCO_RECALL_THRESHOLDS, side="left")
        q = np.where(first < n_ranked, envelope[t, np.minimum(first, n_ranked - 1)], 0.0)
        result[t] = q.mean()
    return result


# ------------------------------------------------------------------------------
# Public API

def average_precision(pred_boxes, pred_scores, gt_boxes,
                      iou_thresholds=DEFAULT_IOU_THRESHOLDS, protocol="paper",
                      batch_size=32):
    """Mean over IoU thresholds of interpolated AP (SPAIR_SPEC §3.1, §3.2).

    Args:
      pred_boxes: list (one entry per image) of [K_i, 4] predicted boxes,
        [ymin, xmin, ymax, xmax] in pixels.
      pred_scores: list of [K_i] confidences.
      gt_boxes: list of [G_i, 4] ground-truth boxes.
      iou_thresholds: IoU thresholds in [0, 1); default 0.1, 0.2, ..., 0.9.
      protocol: "paper", "corrected" or "coco" (see the module docstring).
      batch_size: evaluation batch of the "paper" protocol (32 in the paper);
        ignored by the others.

    Returns:
      {"AP": mean over thresholds (a fraction in [0, 1]),
       "AP_at": {threshold: AP at that threshold}}. With no predictions at all,
      or no GT box at all, every value is 0 (the original returned NaN for a
      batch without predictions; pycocotools returns -1 without GT).
      The "paper" protocol adds "AP_batch_se": the standard error of "AP" as
      the weighted mean of the per-batch APs (`batch_standard_error`), or None
      with a single batch.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}; got {protocol!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    thresholds = _check_thresholds(iou_thresholds)

    pred, score, n_pred, gt, n_gt = _check_inputs(pred_boxes, pred_scores, gt_boxes)
    sorted_scores, is_tp, is_counted = _match(pred, score, n_pred, gt, n_gt, thresholds,
                                              protocol)

    extra = {}
    if protocol == "paper":
        n_images = len(n_gt)
        batch_aps, batch_sizes = [], []  # [n_batches, T], [n_batches]
        for start in range(0, n_images, batch_size):
            stop = min(start + batch_size, n_images)
            batch_aps.append(_eleven_point_ap(
                sorted_scores[start:stop], is_tp[:, start:stop], is_counted[:, start:stop],
                int(n_gt[start:stop].sum())))
            batch_sizes.append(stop - start)
        per_threshold = np.average(batch_aps, axis=0, weights=batch_sizes)
        extra["AP_batch_se"] = batch_standard_error(np.mean(batch_aps, axis=1), batch_sizes)
    elif protocol == "corrected":
        per_threshold = _eleven_point_ap(sorted_scores, is_tp, is_counted, int(n_gt.sum()))
    else:
        per_threshold = _coco_ap(sorted_scores, is_tp, is_counted, int(n_gt.sum()))

    return {
        "AP": float(per_threshold.mean()),
        "AP_at": {float(t): float(v) for t, v in zip(thresholds, per_threshold)},
        **extra,
    }


def batch_standard_error(batch_values, batch_sizes):
    """Standard error of the batch-size weighted mean of per-batch values, or None.

    The paper protocol's AP is Σ_b w_b·a_b with w_b = n_b / N over the B evaluation
    batches (SPAIR_SPEC §3.1). Treating the batches as independent draws, its
    standard error is sqrt(B / (B − 1) · Σ_b w_b²·(a_b − AP)²), i.e. sd / √B for
    equal batches. It measures how much the AP moves with which test images were
    drawn (and, in paper mode, with the evaluation's own sampling), not how much
    it moves between training runs (the paper's confidence intervals). None for a
    single batch.
    """
    values = np.asarray(batch_values, dtype=np.float64)
    sizes = np.asarray(batch_sizes, dtype=np.float64)
    n_batches = values.shape[0]
    if n_batches < 2:
        return None
    weights = sizes / sizes.sum()
    mean = float(np.sum(weights * values))
    return float(np.sqrt(n_batches / (n_batches - 1)
                         * np.sum(weights ** 2 * (values - mean) ** 2)))


def _as_counts(counts, name):
    array = np.asarray(counts)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of counts; got shape "
                         f"{array.shape}.")
    if not np.all(np.isfinite(array.astype(np.float64))):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return array.astype(np.float64)


def count_abs_error(pred_counts, true_counts):
    """Mean |predicted count - true count| over images (SPAIR_SPEC §3.3)."""
    pred = _as_counts(pred_counts, "pred_counts")
    true = _as_counts(true_counts, "true_counts")
    if pred.shape != true.shape:
        raise ValueError(f"pred_counts has {pred.size} entries but true_counts has "
                         f"{true.size}; give one count per image.")
    return float(np.mean(np.abs(pred - true)))


def count_01_error(pred_counts, true_counts):
    """Fraction of images whose predicted count is wrong (SPAIR_SPEC §3.3)."""
    pred = _as_counts(pred_counts, "pred_counts")
    true = _as_counts(true_counts, "true_counts")
    if pred.shape != true.shape:
        raise ValueError(f"pred_counts has {pred.size} entries but true_counts has "
                         f"{true.size}; give one count per image.")
    return float(np.mean(pred != true))


def count_confusion(pred_counts, true_counts):
    """How often each true count was predicted as each count: {"n": {"m": images}}.

    Keys are strings (JSON); only the (n, m) pairs that occur are listed. The diagonal is
    what count_01_error misses: e.g. AIR's own task reads off which counts it confuses.
    """
    pred = _as_counts(pred_counts, "pred_counts")
    true = _as_counts(true_counts, "true_counts")
    if pred.shape != true.shape:
        raise ValueError(f"pred_counts has {pred.size} entries but true_counts has "
                         f"{true.size}; give one count per image.")
    table = {}
    for n, m in zip(true.tolist(), pred.tolist()):
        row = table.setdefault(str(int(n)), {})
        row[str(int(m))] = row.get(str(int(m)), 0) + 1
    return {n: dict(sorted(row.items(), key=lambda kv: int(kv[0])))
            for n, row in sorted(table.items(), key=lambda kv: int(kv[0]))}


def box_agreement(pred_boxes, gt_boxes, iou_levels=(0.5, 0.7)):
    """How the predicted boxes sit on the GT boxes: a diagnostic beside AP (not in the spec).

    Each GT box is paired with the prediction of highest IoU in its image (no one-to-one
    matching: this describes box placement, not detection). Pairs with IoU 0 are unmatched.

    Args:
      pred_boxes, gt_boxes: per-image [K_i, 4] and [G_i, 4] boxes as for
        `average_precision`.
      iou_levels: thresholds t for "fraction_iou_above".

    Returns:
      {"n_gt", "n_matched", "iou_median", "iou_mean" (over matched GT boxes),
       "fraction_iou_above": {t: fraction of all GT boxes whose best IoU > t},
       "mean_difference_px": {"height", "width", "centre_y", "centre_x", "top", "bottom",
       "left", "right"}: the mean of prediction − GT over matched pairs, in pixels}.
      Means are None when nothing is matched.
    """
    if len(pred_boxes) != len(gt_boxes):
        raise ValueError(f"pred_boxes has {len(pred_boxes)} images but gt_boxes has "
                         f"{len(gt_boxes)}; pass one array per image to both.")
    best_iou, pairs = [], []
    for k, (pred, gt) in enumerate(zip(pred_boxes, gt_boxes)):
        pred, gt = _as_boxes(pred, f"pred_boxes[{k}]"), _as_boxes(gt, f"gt_boxes[{k}]")
        if len(gt) == 0:
            continue
        if len(pred) == 0:
            best_iou.append(np.zeros(len(gt)))
            continue
        iou = _pairwise_iou(gt, pred)                                  # [G, K]
        best = np.argmax(iou, axis=1)                                  # [G]
        best_iou.append(iou[np.arange(len(gt)), best])
        pairs.append(np.stack([pred[best], gt], axis=1)[best_iou[-1] > 0])  # [M, 2, 4]
    best_iou = np.concatenate(best_iou) if best_iou else np.zeros(0)
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2, 4))
    matched = best_iou[best_iou > 0]

    def mean(values):
        return float(np.mean(values)) if len(values) else None

    d = pairs[:, 0] - pairs[:, 1]  # prediction − GT per edge: [M, 4] (top, left, bottom, right)
    return {
        "n_gt": int(len(best_iou)),
        "n_matched": int(len(matched)),
        "iou_median": float(np.median(matched)) if len(matched) else None,
        "iou_mean": mean(matched),
        "fraction_iou_above": {str(t): float(np.mean(best_iou > t)) if len(best_iou) else None
                               for t in iou_levels},
        "mean_difference_px": {
            "height": mean(d[:, 2] - d[:, 0]), "width": mean(d[:, 3] - d[:, 1]),
            "centre_y": mean((d[:, 0] + d[:, 2]) / 2), "centre_x": mean((d[:, 1] + d[:, 3]) / 2),
            "top": mean(d[:, 0]), "bottom": mean(d[:, 2]),
            "left": mean(d[:, 1]), "right": mean(d[:, 3])},
    }


def evaluate_detections(pred_boxes, pred_scores, gt_boxes, pred_counts=None,
                        iou_thresholds=DEFAULT_IOU_THRESHOLDS, batch_size=32):
    """Every metric of SPAIR_SPEC §3 on one set of detections.

    Args:
      pred_boxes, pred_scores, gt_boxes: as for `average_precision`.
      pred_counts: [N] predicted counts; default: the number of predictions per
        image (right for ConnComp, AIR and SPAIR's hard z_pres detections).
      iou_thresholds, batch_size: as for `average_precision`.

    Returns:
      {"AP", "AP_at", "AP_batch_se" (paper protocol), "AP_corrected", "AP_coco",
       "count_abs_error", "count_01_error", "count_confusion"}; AP values are fractions in
      [0, 1].
    """
    paper = average_precision(pred_boxes, pred_scores, gt_boxes, iou_thresholds,
                              "paper", batch_size)
    corrected = average_precision(pred_boxes, pred_scores, gt_boxes, iou_thresholds,
                                  "corrected")
    coco = average_precision(pred_boxes, pred_scores, gt_boxes, iou_thresholds, "coco")
    if pred_counts is None:
        pred_counts = [np.asarray(b).reshape(-1, 4).shape[0] if np.size(b) else 0
                       for b in pred_boxes]
    true_counts = [np.asarray(g).reshape(-1, 4).shape[0] if np.size(g) else 0
                   for g in gt_boxes]
    return {
        "AP": paper["AP"],
        "AP_at": paper["AP_at"],
        "AP_batch_se": paper["AP_batch_se"],
        "AP_corrected": corrected["AP"],
        "AP_coco": coco["AP"],
        "count_abs_error": count_abs_error(pred_counts, true_counts),
        "count_01_error": count_01_error(pred_counts, true_counts),
        "count_confusion": count_confusion(pred_counts, true_counts),
    }
