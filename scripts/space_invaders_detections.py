"""Detections of an exported SPAIR model on full 210×160 Space Invaders test frames
(SPAIR_SPEC §2.3; qualitative, as in the paper), through the public path: the frames are
written as PNG files and `python -m spair_tf.detect` reads them with the SavedModel.

    PYTHONPATH=. python scripts/space_invaders_detections.py --saved_model=DIR \
        --output_dir=results/space_invaders [--frames=50,250,450,650]

Writes OUTPUT_DIR/frame_<i>.png (the test frames), detect's frame_<i>.json and
frame_<i>.boxes.png, and OUTPUT_DIR/detections.png: the frames, 2× enlarged, with their
overlays below them.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from spair_tf import atari


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--saved_model", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--frames", default="50,250,450,650",
                        help="Indices of the test frames (comma-separated).")
    parser.add_argument("--mode", default="mean", choices=("mean", "paper"))
    args = parser.parse_args(argv)
    test = atari.load(atari.preset("test"))
    frames = [int(i) for i in args.frames.split(",")]
    if not all(0 <= i < len(test) for i in frames):
        print(f"error: --frames={args.frames}: the test split has frames 0..{len(test) - 1}",
              file=sys.stderr)
        return 2
    os.makedirs(args.output_dir, exist_ok=True)
    paths = []
    for i in frames:
        path = os.path.join(args.output_dir, f"frame_{i}.png")
        Image.fromarray(test.images[i]).save(path)
        paths.append(path)
    done = subprocess.run(
        [sys.executable, "-m", "spair_tf.detect", f"--saved_model={args.saved_model}",
         f"--output_dir={args.output_dir}", f"--mode={args.mode}", *paths],
        capture_output=True, text=True)
    if done.returncode:
        print(done.stderr[-2000:], file=sys.stderr)
        return done.returncode
    rows = []
    for path in paths:
        stem = path[:-len(".png")]
        frame = np.asarray(Image.open(path).convert("RGB"))
        overlay = np.asarray(Image.open(stem + ".boxes.png").convert("RGB"))
        rows.append(np.concatenate([frame, overlay], axis=0))              # [2H, W, 3]
        with open(stem + ".json") as f:
            print(os.path.basename(stem), len(json.load(f)["boxes"]), "detections")
    sheet = np.concatenate(rows, axis=1)
    Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2),
                                  Image.NEAREST).save(
        os.path.join(args.output_dir, "detections.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
