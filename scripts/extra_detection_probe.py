"""Diagnostic: where a SPAIR model's extra detections on one-digit images come from.

The Experiment 2 model counts one digit as two on about a quarter of the 84×84 test images
with n = 1 (results/spair/exp2_1-5_original_digits.json; the paper miscounts 0.7%). This
script looks at the cells behind that, in mean mode (no sampling), on images holding exactly
one digit:

- per image, P(count ≥ 2) when every cell is switched on independently with its mean-mode
  β, and its mean over the images: the paper-mode double-count rate to expect (paper mode
  draws hard z_pres ~ Bernoulli(β), SPAIR_SPEC §1.12, but conditions later cells on the
  earlier draws, so this is an approximation);
- the cell with the second-highest β (the likeliest extra detection): its β, its box's IoU
  with the GT box, the share of its box inside the GT box, its box size, and where its cell
  sits relative to the first cell;
- the expected double-count rate for GT boxes that cross a cell boundary (a row or a
  column of the 12-px grid) and for those that do not;
- the extra cells' β mass split by kind: a *duplicate* (IoU ≥ 0.5 with the GT box), a *part*
  (IoU < 0.5 but at least half of its box inside the GT box: a piece of the digit) or
  *background* (less than half inside).

    PYTHONPATH=. python scripts/extra_detection_probe.py --model_dir=DIR \
        [--dataset=experiment2 --n_digits=1 | --dataset=experiment1 --n_digits=1] \
        --output_json=PATH

The model and data come from DIR/flags.json as for `python -m spair_tf.evaluate`; data flags
on the command line override it. Every test image must hold exactly one digit.
"""

import sys

import numpy as np
from absl import flags

from spair_tf import cli, flags_util, io_utils, metrics

FLAGS = flags.FLAGS
CELL_PX = 12  # SPAIR_SPEC §1.1


def count_distribution(beta):
    """P(count = k), k = 0..K, for independent Bernoulli(β_k) cells: float [K + 1]."""
    p = np.zeros(len(beta) + 1)
    p[0] = 1.0
    for b in beta:
        p[1:] = p[1:] * (1 - b) + p[:-1] * b
        p[0] *= 1 - b
    return p


def inside_share(box, gt):
    """Area of box ∩ gt over the area of box (boxes ymin, xmin, ymax, xmax)."""
    height = max(0.0, min(box[2], gt[2]) - max(box[0], gt[0]))
    width = max(0.0, min(box[3], gt[3]) - max(box[1], gt[1]))
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)
    return height * width / area


def kind(iou, inside):
    if iou >= 0.5:
        return "duplicate"
    return "part" if inside >= 0.5 else "background"


def probe(boxes, beta, gt, grid_width):
    """Per-image statistics. boxes [K, 4], beta [K], gt [4]; cells in raster order."""
    order = np.argsort(-beta)
    first, second = order[0], order[1]
    ious = metrics.iou_matrix(boxes, gt[None])[:, 0]
    inside = np.array([inside_share(b, gt) for b in boxes])
    kinds = [kind(i, s) for i, s in zip(ious, inside)]
    extra_mass = {name: 0.0 for name in ("duplicate", "part", "background")}
    for k in order[1:]:
        extra_mass[kinds[k]] += float(beta[k])
    p_count = count_distribution(beta)
    return {
        "p_count_ge_2": float(p_count[2:].sum()),
        "p_count_0": float(p_count[0]),
        "gt_crosses_row_boundary": bool(np.floor(gt[0] / CELL_PX) != np.floor(gt[2] / CELL_PX)),
        "gt_crosses_column_boundary": bool(np.floor(gt[1] / CELL_PX)
                                           != np.floor(gt[3] / CELL_PX)),
        "first": {"beta": float(beta[first]), "iou": float(ious[first])},
        "second": {"beta": float(beta[second]), "iou": float(ious[second]),
                   "inside_gt": float(inside[second]), "kind": kinds[second],
                   "height": float(boxes[second, 2] - boxes[second, 0]),
                   "width": float(boxes[second, 3] - boxes[second, 1]),
                   "cell_offset": [int(second // grid_width - first // grid_width),
                                   int(second % grid_width - first % grid_width)]},
        "extra_beta_mass": extra_mass,
    }


def summarise(per_image, gt_sizes):
    second = [p["second"] for p in per_image]
    likely = [s for s in second if s["beta"] >= 0.1]
    offsets = {}
    for s in likely:
        key = f"{s['cell_offset'][0]},{s['cell_offset'][1]}"
        offsets[key] = offsets.get(key, 0) + 1
    mass = {name: float(np.mean([p["extra_beta_mass"][name] for p in per_image]))
            for name in ("duplicate", "part", "background")}
    return {
        "n_images": len(per_image),
        "expected_paper_mode_double_rate": float(np.mean([p["p_count_ge_2"]
                                                          for p in per_image])),
        "expected_paper_mode_miss_rate": float(np.mean([p["p_count_0"] for p in per_image])),
        "mean_mode_images_with_2_or_more": int(sum(s["beta"] > 0.5 for s in second)),
        "extra_beta_mass_per_image": mass,
        "second_cell_beta_quantiles": {q: float(np.quantile([s["beta"] for s in second], q))
                                       for q in (0.5, 0.75, 0.9, 0.99)},
        "second_cells_with_beta_ge_0.1": {
            "count": len(likely),
            "kinds": {name: sum(s["kind"] == name for s in likely)
                      for name in ("duplicate", "part", "background")},
            "mean_height_px": float(np.mean([s["height"] for s in likely])) if likely else None,
            "mean_width_px": float(np.mean([s["width"] for s in likely])) if likely else None,
            "cell_offsets_from_first": dict(sorted(offsets.items(), key=lambda kv: -kv[1])),
        },
        "expected_double_rate_by_gt_crossing": {
            f"{axis}={crosses}": {
                "images": len(group),
                "rate": float(np.mean([p["p_count_ge_2"] for p in group])) if group else None}
            for axis in ("row", "column") for crosses in (True, False)
            for group in [[p for p in per_image
                           if p[f"gt_crosses_{axis}_boundary"] == crosses]]},
        "gt_mean_height_px": float(np.mean(gt_sizes[:, 0])),
        "gt_mean_width_px": float(np.mean(gt_sizes[:, 1])),
    }


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    from spair_tf import evaluate  # imported (its flags defined) before parsing, below
    flags_util.adopt_recorded_flags(FLAGS.model_dir)
    _, _, test_cfg = cli.data_configs()
    data = cli.load_data(test_cfg)
    if not np.all(data.counts == 1):
        raise ValueError("every test image must hold exactly one digit: pass --n_digits=1 "
                         f"(counts seen: {sorted(set(data.counts.tolist()))}).")
    model, path = evaluate.restore_model(FLAGS.model_dir, FLAGS.checkpoint,
                                         data.images.shape[1:])
    import tensorflow as tf

    detect = tf.function(lambda x: model.detect(x, mode="mean"), reduce_retracing=True)
    grid_width = -(-data.images.shape[2] // CELL_PX)
    per_image = []
    for start in range(0, len(data), 32):
        out = detect(tf.cast(data.images[start:start + 32], tf.float32) / 255.0)
        for b, s, gt in zip(out["boxes"].numpy(), out["scores"].numpy(),
                            data.boxes[start:start + 32, 0]):
            per_image.append(probe(b, s, gt, grid_width))
    gt = data.boxes[:, 0]
    result = {
        "command": "PYTHONPATH=. python " + " ".join(sys.argv),
        "checkpoint": path, "dataset": test_cfg.__dict__,
        "summary": summarise(per_image, np.stack([gt[:, 2] - gt[:, 0],
                                                  gt[:, 3] - gt[:, 1]], axis=1)),
    }
    print(result["summary"])
    if FLAGS.output_json:
        io_utils.atomic_write_json(FLAGS.output_json, result)


if __name__ == "__main__":
    # The flags (--model_dir, --output_json, the data flags, ...) are defined only when run
    # as a script, so that tests can import the arithmetic above beside other flag owners.
    from spair_tf import evaluate  # noqa: F401
    cli.run(main)
