"""Evaluating a detector (SPAIR or an AIR variant) on a dataset (SPAIR_SPEC §3, §1.12).

One function serves every model that has `detect(images, mode)` returning boxes, scores,
valid and counts (the model protocol of spair_tf.training), and every caller: validation
inside training, `python -m spair_tf.evaluate`, the benchmarks and the paper tests.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from spair_tf import metrics


def detect_batches(model, images, batch_size=32, mode="mean", xla=False):
    """Runs `model.detect` over uint8 or float images in batches.

    Args:
      model: has `detect(images, mode)`.
      images: [N, H, W, 3] uint8 (0..255) or float in [0, 1].
      xla: compile `detect` with XLA (`jit_compile`), once per batch shape (at most two: the
        full batches and the last one). The same detections, ≈ 2–3× faster on CPU
        (BUILD_NOTES.md, "XLA").
    Returns:
      (pred_boxes, pred_scores, pred_counts): per-image lists of [K_i, 4] and [K_i]
      numpy arrays of the valid detections, and int [N] counts.
    """
    detect = _compiled_detect(model, mode, xla)
    boxes, scores, counts = [], [], []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        batch = (tf.cast(batch, tf.float32) / 255.0 if batch.dtype == np.uint8
                 else tf.convert_to_tensor(batch, tf.float32))
        out = {k: v.numpy() for k, v in detect(batch).items() if k != "reconstruction"}
        for b, s, v in zip(out["boxes"], out["scores"], out["valid"]):
            boxes.append(b[v])
            scores.append(s[v])
        counts.append(out["counts"])
    return boxes, scores, np.concatenate(counts) if counts else np.zeros(0, np.int64)


def _compiled_detect(model, mode, xla=False):
    """model.detect in a tf.function, cached on the model per (mode, xla).

    XLA needs static shapes, so the compiled version is traced per batch shape; the graph
    version relaxes the shapes (one trace for every batch size).
    """
    cache = model.__dict__.setdefault("_spair_tf_detect_fns", {})
    key = (mode, bool(xla))
    if key not in cache:
        detect = lambda x: model.detect(x, mode=mode)  # noqa: E731
        cache[key] = (tf.function(detect, jit_compile=True) if xla
                      else tf.function(detect, reduce_retracing=True))
    return cache[key]


def evaluate(model, data, batch_size=32, mode="mean", max_images=None, xla=False):
    """Every metric of §3 for `model` on a `datasets.Scattered` set.

    Returns a dict: "AP", "AP_at", "AP_batch_se" (paper protocol, §3.1, and its standard
    error over evaluation batches), "AP_corrected", "AP_coco" (§3.2),
    "count_abs_error", "count_01_error", "count_confusion" (§3.3), "mode", "n_images", and
    "box_agreement" (`metrics.box_agreement`: how the boxes sit on the GT boxes).
    """
    n = len(data.images) if max_images is None else min(max_images, len(data.images))
    boxes, scores, counts = detect_batches(model, data.images[:n], batch_size, mode, xla)
    gt_boxes = data.gt_boxes_list()[:n]
    result = metrics.evaluate_detections(boxes, scores, gt_boxes, pred_counts=counts,
                                         batch_size=batch_size)
    result.update(mode=mode, n_images=int(n),
                  box_agreement=metrics.box_agreement(boxes, gt_boxes))
    return result


def has_boxes(data) -> bool:
    """Whether a `datasets.Scattered` set has ground-truth boxes to score detections against
    (the Space Invaders frames, `spair_tf.atari`, have none)."""
    return data.boxes.shape[1] > 0


def validation_loss(model, data, step, batch_size=32, max_images=None, xla=False):
    """The model's loss terms on a set, for data without boxes (no AP to compute).

    `model.compute_loss(images, step, training=False)` (the evaluation mode's samples) over
    the images in batches; each term is the mean over images (batches weighted by their
    size). Returns a dict: "loss", every term (SPAIR: "reconstruction", "kl_where", ...),
    and "n_images".
    """
    n = len(data.images) if max_images is None else min(max_images, len(data.images))
    cache = model.__dict__.setdefault("_spair_tf_loss_fns", {})
    if bool(xla) not in cache:
        loss = lambda x, t: model.compute_loss(x, t, training=False)  # noqa: E731
        # Traced per batch shape (at most two per set): the loss needs a static grid.
        cache[bool(xla)] = tf.function(loss, jit_compile=bool(xla))
    sums = {}
    step = tf.constant(step, tf.int64)
    for start in range(0, n, batch_size):
        batch = data.images[start:min(start + batch_size, n)]
        images = (tf.cast(batch, tf.float32) / 255.0 if batch.dtype == np.uint8
                  else tf.convert_to_tensor(batch, tf.float32))
        loss, terms = cache[bool(xla)](images, step)
        for name, value in {"loss": loss, **terms}.items():
            sums[name] = sums.get(name, 0.0) + float(value) * len(batch)
    return {**{name: total / n for name, total in sums.items()}, "n_images": int(n)}
