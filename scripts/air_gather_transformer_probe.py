"""Diagnostic: train AIR with the gather-based spatial transformer of the original code.

auto_yolo's AIR (branch aaai_2019, `auto_yolo/models/air.py`, after aakhundov's
tf-attend-infer-repeat) samples with four integer taps clamped to the source, weights
computed from the clamped taps and the unclamped coordinate, and coordinates scaled by
(n − 1.001)/2. Outside the source the four weighted taps cancel to zero. This script
re-expresses that arithmetic in TF ops and swaps it in for `glimpse.extract_glimpses` and
`glimpse.place_glimpses` inside `baselines.air`, then runs `spair_tf.train` with the given
flags. It exists to test whether the original's transformer, not ours, explains AIR's
behaviour under the paper's comparison priors (BUILD_NOTES, "AIR in the paper's comparison
setting"; results/air/air_n1_early_dynamics.json).

    PYTHONPATH=. python scripts/air_gather_transformer_probe.py \
        --flagfile=configs/comparison/air_n1.flags --model_dir=DIR --max_steps=2000 \
        [--noxla] [--probe_eagerly]

--probe_eagerly runs every tf.function op by op (no graph rewriting, no XLA), the closest
we get here to how a TF1 graph evaluated the original's arithmetic.

--probe_original_bce also takes the original's form of the reconstruction loss,
−Σ[x·log(r + 1e-9) + (1 − x)·log(1 − r + 1e-9)], in place of ours with log(max(r, 1e-9)):
its gradient at r = 0 is −x·1e9 rather than 0, so the transformer's rounding residuals
outside the box reach θ and the decoder (BUILD_NOTES, "AIR in the paper's comparison
setting").
"""

import numpy as np
import tensorflow as tf
from absl import app, flags

import baselines.air as air
from spair_tf import glimpse, train


def gather_bilinear(source, x, y, out_height, out_width):
    """The original's sampler: source [B, H, W, C]; x, y flat [B·oh·ow] in [−1, 1]."""
    batch = tf.shape(source)[0]
    height, width, channels = source.shape[1:]
    x = (x + 1.0) * (width - 1.001) / 2.0
    y = (y + 1.0) * (height - 1.001) / 2.0
    x0 = tf.cast(tf.floor(x), tf.int32)
    y0 = tf.cast(tf.floor(y), tf.int32)
    x1 = tf.clip_by_value(x0 + 1, 0, width - 1)
    y1 = tf.clip_by_value(y0 + 1, 0, height - 1)
    x0 = tf.clip_by_value(x0, 0, width - 1)
    y0 = tf.clip_by_value(y0, 0, height - 1)
    base = tf.repeat(tf.range(batch) * height * width, out_height * out_width)
    flat = tf.reshape(source, (-1, channels))
    taps = [tf.gather(flat, base + row * width + col)
            for row, col in ((y0, x0), (y1, x0), (y0, x1), (y1, x1))]
    x0f, x1f, y0f, y1f = (tf.cast(t, tf.float32) for t in (x0, x1, y0, y1))
    weights = [(x1f - x) * (y1f - y), (x1f - x) * (y - y0f),
               (x - x0f) * (y1f - y), (x - x0f) * (y - y0f)]
    return tf.add_n([w[:, None] * tap for w, tap in zip(weights, taps)])


def affine_sample(source, theta, out_size):
    """Samples `source` [B, H, W, C] on θ·(x_t, y_t, 1) over a linspace(−1, 1) grid."""
    out_height, out_width = out_size
    x_t, y_t = np.meshgrid(np.linspace(-1, 1, out_width), np.linspace(-1, 1, out_height))
    grid = np.stack([x_t.ravel(), y_t.ravel(), np.ones(x_t.size)]).astype(np.float32)
    batch = tf.shape(source)[0]
    coords = tf.matmul(tf.reshape(theta, (-1, 2, 3)), tf.tile(grid[None], (batch, 1, 1)))
    sampled = gather_bilinear(source, tf.reshape(coords[:, 0], [-1]),
                              tf.reshape(coords[:, 1], [-1]), out_height, out_width)
    return tf.reshape(sampled, (batch, out_height, out_width, source.shape[-1]))


def _affine(boxes):
    """(x, y, w, h) of θ from boxes [B, 1, 4] = (center_y, center_x, height, width)."""
    center_y, center_x, height, width = tf.unstack(boxes[:, 0], axis=-1)
    return 2.0 * center_x - 1.0, 2.0 * center_y - 1.0, width, height


class _GatherGlimpses:
    """`spair_tf.glimpse` with AIR's two transforms replaced by the gather-based ones."""

    def __getattr__(self, name):
        return getattr(glimpse, name)

    @staticmethod
    def extract_glimpses(images, boxes, size):                   # → [B, 1, gh, gw, C]
        x, y, w, h = _affine(boxes)
        zero = tf.zeros_like(w)
        return affine_sample(images, tf.stack([w, zero, x, zero, h, y], -1), size)[:, None]

    @staticmethod
    def place_glimpses(objects, boxes, size):                    # → [B, 1, H, W, C]
        x, y, w, h = _affine(boxes)
        zero = tf.zeros_like(w)
        theta = tf.stack([1.0 / w, zero, -x / w, zero, 1.0 / h, -y / h], -1)
        return affine_sample(objects[:, 0], theta, size)[:, None]


flags.DEFINE_bool("probe_eagerly", False, "Run the tf.functions op by op.")
flags.DEFINE_bool("probe_original_bce", False,
                  "Use the original's log(r + 1e-9) in the reconstruction loss.")


def original_bce(images, reconstruction):
    """The originals' −Σ[x·log(r + 1e-9) + (1 − x)·log(1 − r + 1e-9)] → [B]."""
    eps = air.BCE_EPS
    return -tf.reduce_sum(images * tf.math.log(reconstruction + eps)
                          + (1.0 - images) * tf.math.log(1.0 - reconstruction + eps),
                          axis=[1, 2, 3])


def main(argv):
    air.glimpse = _GatherGlimpses()
    if flags.FLAGS.probe_original_bce:
        air.reconstruction_bce = original_bce
    if flags.FLAGS.probe_eagerly:
        tf.config.run_functions_eagerly(True)
    train.main(argv)


if __name__ == "__main__":
    app.run(main)
