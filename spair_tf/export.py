r"""Exports a trained SPAIR as a SavedModel that plain TensorFlow can serve.

    python -m spair_tf.export --model_dir=DIR --export_dir=OUT

The model is rebuilt from the flags its training run recorded in DIR/flags.json
(`flags_util.adopt_recorded_flags`); flags given here override them.

    detector = tf.saved_model.load(OUT)
    out = detector.signatures["serving_default"](images=images)   # float32 [N, H, W, 3] in [0, 1]
    out["boxes"]           # [N, K, 4] ymin, xmin, ymax, xmax in pixels, detections first
    out["scores"]          # [N, K]   confidence (β in mean mode), 0 past num_detections
    out["num_detections"]  # [N]      int32
    out["reconstruction"]  # [N, H, W, 3]

`serving_default` runs the deterministic "mean" mode; the signature "paper" runs the paper's
evaluation mode (sampled latents, random hard z_pres, confidence 1) (SPAIR_SPEC §1.12).
Any N, H and W are accepted (K = ceil(H/12)·ceil(W/12), one slot per cell).
"""

from __future__ import annotations

import os
import sys

import tensorflow as tf
from absl import flags

from spair_tf import flags_util


class Detector(tf.Module):
    """What the SavedModel holds: the model's variables and two detection functions."""

    def __init__(self, model):
        super().__init__(name="spair_detector")
        self.model = model

    def _detect(self, images, mode):
        out = self.model.detect(images, mode=mode)
        # Valid detections first, by decreasing score; the rest zeroed.
        ranked = tf.where(out["valid"], out["scores"], -1.0)
        order = tf.argsort(ranked, axis=1, direction="DESCENDING", stable=True)
        valid = tf.gather(out["valid"], order, batch_dims=1)
        boxes = tf.gather(out["boxes"], order, batch_dims=1)
        scores = tf.gather(out["scores"], order, batch_dims=1)
        mask = tf.cast(valid, boxes.dtype)
        return {"boxes": boxes * mask[..., None], "scores": scores * mask,
                "num_detections": out["counts"], "reconstruction": out["reconstruction"]}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, "images")])
    def serve(self, images):
        return self._detect(images, "mean")

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, "images")])
    def serve_paper(self, images):
        return self._detect(images, "paper")


def export_model(model, export_dir):
    """Writes `model` as a SavedModel to export_dir (replacing it only once complete)."""
    detector = Detector(model)
    parent = os.path.dirname(os.path.abspath(export_dir))
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{os.path.basename(export_dir)}.partial")
    tf.io.gfile.rmtree(staging) if tf.io.gfile.exists(staging) else None
    tf.saved_model.save(detector, staging, signatures={
        "serving_default": detector.serve, "paper": detector.serve_paper})
    if tf.io.gfile.exists(export_dir):
        tf.io.gfile.rmtree(export_dir)
    os.replace(staging, export_dir)
    return export_dir


def main(argv):
    from spair_tf import evaluate  # noqa: F401  (defines the model flags and restore_model)

    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}; all options are --flags.")
    values = flags.FLAGS
    if not values.model_dir or not values.export_dir:
        raise ValueError("--model_dir and --export_dir are required.")
    flags_util.adopt_recorded_flags(values.model_dir)
    model, path = evaluate.restore_model(values.model_dir, values.checkpoint)
    export_model(model, values.export_dir)
    print(f"exported {path} to {values.export_dir}")


if __name__ == "__main__":
    from spair_tf import cli, evaluate  # noqa: F401,F811

    cli.run(main)
