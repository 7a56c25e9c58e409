r"""Detects objects in image files with an exported SPAIR SavedModel.

    python -m spair_tf.detect --saved_model OUT [--output_dir DIR] [--mode mean|paper] \
        IMAGE [IMAGE ...]

Prints one JSON object per image (boxes [ymin, xmin, ymax, xmax] in pixels, scores) and
writes DIR/<name>.json and an overlay DIR/<name>.boxes.png. PNG and JPEG of any size are
accepted; grayscale and RGBA are converted to RGB (alpha composited onto black, the
training background of the digit datasets).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import flags

flags.DEFINE_string("saved_model", None, "Directory written by python -m spair_tf.export.")
flags.DEFINE_string("output_dir", "detections", "Where JSON files and overlays go.")
flags.DEFINE_enum("mode", "mean", ("mean", "paper"), "Inference mode (SPAIR_SPEC §1.12).")
FLAGS = flags.FLAGS


def read_image(path):
    """An image file as float32 [H, W, 3] in [0, 1]; grayscale and RGBA converted."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("RGBA", "LA") or "transparency" in image.info:
                rgba = np.asarray(image.convert("RGBA"), np.float32) / 255.0
                return rgba[..., :3] * rgba[..., 3:]
            return np.asarray(image.convert("RGB"), np.float32) / 255.0
    except FileNotFoundError as error:
        raise ValueError(f"image {path!r} does not exist.") from error
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read {path!r} as an image (PNG or JPEG expected): "
                         f"{error}") from error


def draw_overlay(image, boxes, path):
    """Writes the image with its boxes drawn in red (atomically)."""
    from PIL import Image, ImageDraw

    from spair_tf import io_utils

    canvas = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
    scale = max(1, 256 // max(canvas.size))
    canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)
    for ymin, xmin, ymax, xmax in boxes:
        draw.rectangle([xmin * scale, ymin * scale, xmax * scale, ymax * scale],
                       outline=(255, 0, 0))
    import io

    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    io_utils.atomic_write_bytes(path, buffer.getvalue())


def main(argv):
    paths = argv[1:]
    if not FLAGS.saved_model:
        raise ValueError("--saved_model is required (a directory from spair_tf.export).")
    if not paths:
        raise ValueError("give at least one image file after the flags.")
    if not os.path.isdir(FLAGS.saved_model):
        raise ValueError(f"--saved_model={FLAGS.saved_model!r} is not a directory; export one "
                         "with python -m spair_tf.export.")
    images = [read_image(p) for p in paths]
    import tensorflow as tf

    from spair_tf import io_utils

    detector = tf.saved_model.load(FLAGS.saved_model)
    serve = detector.signatures["serving_default" if FLAGS.mode == "mean" else "paper"]
    for path, image in zip(paths, images):
        if min(image.shape[:2]) < 12:
            raise ValueError(f"{path!r} is {image.shape[1]}×{image.shape[0]} px; SPAIR needs "
                             "at least 12×12.")
        out = serve(images=tf.constant(image[None]))
        n = int(out["num_detections"][0])
        record = {"image": path, "height": image.shape[0], "width": image.shape[1],
                  "boxes": out["boxes"][0, :n].numpy().round(2).tolist(),
                  "scores": out["scores"][0, :n].numpy().round(4).tolist(),
                  "mode": FLAGS.mode}
        stem = os.path.splitext(os.path.basename(path))[0]
        io_utils.atomic_write_json(os.path.join(FLAGS.output_dir, stem + ".json"), record)
        draw_overlay(image, record["boxes"], os.path.join(FLAGS.output_dir, stem + ".boxes.png"))
        print(json.dumps(record))
    sys.stdout.flush()


if __name__ == "__main__":
    from spair_tf import cli

    cli.run(main)
