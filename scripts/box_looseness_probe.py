"""Diagnostic: how much of a SPAIR model's AP is lost to loose boxes.

SPAIR's boxes on Experiment 1 sit centred on the digits but 2–3 px too tall and wide
(BUILD_NOTES, "SPAIR on Experiment 1: the gap to Fig. 2"). This script detects once on the
test split, then re-scores the same detections with every box changed about its own centre:

- shrunk by δ px in height and width, for several δ;
- shrunk by the mean height and width excess measured on the *validation* split (a
  calibration the test set does not see);
- given the size, the centre, or both, of the GT box it overlaps most (oracles: what the
  predicted centres, the predicted sizes, and detection alone would earn).

    PYTHONPATH=. python scripts/box_looseness_probe.py --model_dir=DIR --output_json=PATH

The model, data and mode come from DIR/flags.json as for `python -m spair_tf.evaluate`.
Scores, counts and which boxes exist are unchanged: only the box sizes move.
"""

import sys

import numpy as np
from absl import flags

from spair_tf import cli, evaluation, flags_util, io_utils, metrics

FLAGS = flags.FLAGS
SHRINK_PX = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)


def resize_about_centre(boxes, height, width):
    """[K, 4] boxes [ymin, xmin, ymax, xmax] given new heights/widths ([K] or scalars)."""
    centre_y = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_x = (boxes[:, 1] + boxes[:, 3]) / 2
    height = np.maximum(np.broadcast_to(height, centre_y.shape), 1e-3)
    width = np.maximum(np.broadcast_to(width, centre_x.shape), 1e-3)
    return np.stack([centre_y - height / 2, centre_x - width / 2,
                     centre_y + height / 2, centre_x + width / 2], axis=1)


def shrunk(boxes, d_height, d_width):
    return [resize_about_centre(b, (b[:, 2] - b[:, 0]) - d_height,
                                (b[:, 3] - b[:, 1]) - d_width) for b in boxes]


def _with_gt(boxes, gt_boxes, take_size, take_centre):
    """Each predicted box given the size and/or centre of the GT box it overlaps most."""
    out = []
    for pred, gt in zip(boxes, gt_boxes):
        if len(pred) == 0 or len(gt) == 0:
            out.append(pred)
            continue
        iou = metrics.iou_matrix(pred, gt)                       # [K, G]
        match = gt[np.argmax(iou, axis=1)]                       # [K, 4]
        keep = (iou.max(axis=1) > 0)[:, None]
        source_size = match if take_size else pred
        source_centre = match if take_centre else pred
        height = source_size[:, 2] - source_size[:, 0]
        width = source_size[:, 3] - source_size[:, 1]
        moved = resize_about_centre(source_centre, height, width)
        out.append(np.where(keep, moved, pred))
    return out


def score(boxes, scores, gt_boxes, counts):
    result = metrics.evaluate_detections(boxes, scores, gt_boxes, pred_counts=counts)
    return {"AP": result["AP"], "AP_at": result["AP_at"],
            "AP_corrected": result["AP_corrected"],
            "box_agreement": metrics.box_agreement(boxes, gt_boxes)}


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    from spair_tf import evaluate  # imported (its flags defined) before parsing, below
    flags_util.adopt_recorded_flags(FLAGS.model_dir)
    _, val_cfg, test_cfg = cli.data_configs()
    val, test = cli.load_data(val_cfg), cli.load_data(test_cfg)
    model, path = evaluate.restore_model(FLAGS.model_dir, FLAGS.checkpoint,
                                         test.images.shape[1:])
    detections = {}
    for name, data in (("val", val), ("test", test)):
        boxes, scores, counts = evaluation.detect_batches(model, data.images, 32,
                                                          FLAGS.eval_mode, FLAGS.xla)
        detections[name] = (boxes, scores, data.gt_boxes_list(), counts)
    val_excess = metrics.box_agreement(detections["val"][0],
                                       detections["val"][2])["mean_difference_px"]
    boxes, scores, gt_boxes, counts = detections["test"]
    result = {
        "command": "PYTHONPATH=. python " + " ".join(sys.argv),
        "checkpoint": path, "mode": FLAGS.eval_mode, "n_images": len(boxes),
        "as_detected": score(boxes, scores, gt_boxes, counts),
        "shrunk_px": {str(d): score(shrunk(boxes, d, d), scores, gt_boxes, counts)["AP"]
                      for d in SHRINK_PX},
        "validation_excess_px": {"height": val_excess["height"], "width": val_excess["width"]},
        "shrunk_by_validation_excess": score(
            shrunk(boxes, val_excess["height"], val_excess["width"]), scores, gt_boxes, counts),
        "gt_size_oracle": score(_with_gt(boxes, gt_boxes, True, False), scores, gt_boxes,
                                counts),
        "gt_centre_oracle": score(_with_gt(boxes, gt_boxes, False, True), scores, gt_boxes,
                                  counts),
        "gt_box_oracle": score(_with_gt(boxes, gt_boxes, True, True), scores, gt_boxes,
                               counts),
    }
    print({k: (v["AP"] if isinstance(v, dict) and "AP" in v else v)
           for k, v in result.items() if k != "command"})
    if FLAGS.output_json:
        io_utils.atomic_write_json(FLAGS.output_json, result)


if __name__ == "__main__":
    # The flags (--model_dir, --output_json, the data flags, ...) are defined only when run
    # as a script, so that tests can import the arithmetic above beside other flag owners.
    from spair_tf import evaluate  # noqa: F401
    cli.run(main)
