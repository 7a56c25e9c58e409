r"""The addition task's baselines: ConnComp, TrueBB and ConvNet (paper Fig. 4; SPAIR_SPEC §5.4).

Each is an object source for the stage-2 classifier of spair_tf/addition.py (`SumClassifier`):
a network that turns an image into objects (z_what [B, N, A], z_pres [B, N]). Unlike
SPAIR-Fixed/Unfixed and AIR-Fixed/Unfixed, none of them has a trained stage 1 in Fig. 4:
each is trained from random initialisation, end to end, with the classifier on the sum's
cross-entropy alone:

    python -m spair_tf.addition --flagfile=configs/addition/truebb.flags \
        --train_images=32000 --model_dir=runs/add_truebb_32k

Facts of the original (auto_yolo, aaai_2019, read for facts; BUILD_NOTES, "Addition task"):
- Fig. 4 plots the three from their "raw" runs (`plots/generate_plots.py` plot_addition;
  `experiments/addition/stage2/yolo_air_stage2.py`): no stage-1 weights loaded, nothing
  frozen. Their fixed/unfixed runs exist but are not plotted.
- Each object is its z_what *mean* (A = 50; the encoder's second A outputs, a log-std, go
  unused: `noisy=False`), and only z_what reaches the classifier, no box.
- TrueBB (`models/ground_truth.py`, `ground_truth_config`): the dataset's boxes (tight
  around each digit's ink, last row/column index, no +1), in the order the digits were
  drawn; each box resampled to a 14×14×3 glimpse; the glimpse, flattened, through an MLP
  [512, 256] (ReLU) to 2A outputs.
- ConnComp (`models/baseline.py`, `baseline_config`, cc_threshold 0.02 "optimal for 5
  digits"): the same, with the boxes of ConnComp at τ = 0.02 on the black background
  (baselines/conncomp.py, SPAIR_SPEC §4.1) in raster order of each component's first
  pixel, as many per image as it finds, and 21×21 glimpses.
- The glimpse: Sonnet's AffineGridWarper + tf.contrib.resampler over the box with top-left
  (y0, x0) and size (y1 − y0, x1 − x0): `glimpse.extract_glimpses` with center
  ((y0 + y1)/2, (x0 + x1)/2) / H and size (y1 − y0)/H (align corners, zero outside).
- ConvNet (`models/simple.py`, `simple_config`): SPAIR's backbone (spair_tf/backbone.py:
  4×4 convolutions of 128 with strides 2, 2, 3, then 1×1 convolutions of 128, 128, and a
  linear 2A) over the whole image; every cell of its 4×4 grid is an object, all present,
  in raster order.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from spair_tf import glimpse as glimpse_lib
from spair_tf.backbone import Backbone
from spair_tf.networks import mlp

BASELINES = ("truebb", "conncomp", "convnet")
N_WHAT = 50                       # A, z_what's size (the original's A for every model)
ENCODER_UNITS = (512, 256)        # the object encoder MLP of TrueBB and ConnComp
GLIMPSE_SIDE = {"truebb": 14, "conncomp": 21}
CONNCOMP_TAU = 0.02               # cc_threshold of the original's addition runs
# Images labelled by ConnComp per call (float32 copies of 1,000 48×48 images: 28 MB).
_CC_CHUNK = 1000


def box_glimpse_boxes(boxes, image_height, image_width):
    """[..., 4] pixel boxes (ymin, xmin, ymax, xmax), inclusive indices, → the glimpse
    sampler's (center_y, center_x, height, width) in fractions of the image, as the original
    read them: top-left = min index, size = max − min (module docstring)."""
    y0, x0, y1, x1 = tf.unstack(boxes, axis=-1)
    return tf.stack([(y0 + y1) / (2.0 * image_height), (x0 + x1) / (2.0 * image_width),
                     (y1 - y0) / image_height, (x1 - x0) / image_width], axis=-1)


def conncomp_boxes(images, tau=CONNCOMP_TAU):
    """ConnComp's objects for every image: (boxes float32 [N, K, 4] zero-padded, counts
    int32 [N]), K the most components in any image (at least 1); components in raster order
    of their first pixel. images: uint8 or float [N, H, W, 3]."""
    from baselines.conncomp import conncomp_detect

    per_image = []
    for start in range(0, len(images), _CC_CHUNK):
        boxes, _ = conncomp_detect(images[start:start + _CC_CHUNK], tau)
        per_image.extend(boxes)
    counts = np.array([b.shape[0] for b in per_image], np.int32)
    padded = np.zeros((len(per_image), max(1, int(counts.max(initial=0))), 4), np.float32)
    for row, boxes in zip(padded, per_image):
        row[:len(boxes)] = boxes
    return padded, counts


class BoxObjects(keras.layers.Layer):
    """TrueBB / ConnComp: given boxes → glimpses → z_what means (module docstring).

    Reads the batch's "object_boxes" [B, K, 4] (pixels, ymin, xmin, ymax, xmax) and
    "object_counts" [B]: the first count boxes of each image are its objects, in order.
    """

    def __init__(self, glimpse_side, n_what=N_WHAT, encoder_units=ENCODER_UNITS, **kwargs):
        super().__init__(**kwargs)
        self.glimpse_side, self.n_what = int(glimpse_side), int(n_what)
        self.object_encoder = mlp(encoder_units, 2 * self.n_what, name="object_encoder")

    def build(self, input_shape=None):
        self.object_encoder.build((None, self.glimpse_side ** 2 * 3))
        super().build(input_shape)

    def glimpses(self, batch):
        """[B, K, g, g, 3]: each object box of the batch resampled to g×g."""
        images = batch["images"]                                              # [B, H, W, 3]
        boxes = tf.cast(batch["object_boxes"], images.dtype)                 # [B, K, 4]
        side = self.glimpse_side
        return glimpse_lib.extract_glimpses(
            images, box_glimpse_boxes(boxes, images.shape[1], images.shape[2]),
            (side, side), outside="zero")

    def call(self, batch):
        images, side = batch["images"], self.glimpse_side
        glimpses = self.glimpses(batch)                                       # [B, K, g, g, 3]
        shape = tf.shape(batch["object_boxes"])
        encoded = self.object_encoder(tf.reshape(glimpses, [-1, side * side * 3]))
        z_what = tf.reshape(encoded[:, :self.n_what], [shape[0], shape[1], self.n_what])
        z_pres = tf.sequence_mask(batch["object_counts"], shape[1], dtype=images.dtype)
        return z_what, z_pres


class ConvNetObjects(keras.layers.Layer):
    """ConvNet: SPAIR's backbone with 2A outputs per cell; each cell's first A are an object
    (all H·W cells present, raster order). Reads the batch's "images"."""

    def __init__(self, n_what=N_WHAT, filters=128, **kwargs):
        super().__init__(**kwargs)
        self.n_what = int(n_what)
        self.backbone = Backbone(filters=filters, n_features=2 * self.n_what, name="backbone")

    def build(self, input_shape=None):
        self.backbone.build((None, None, None, 3))
        super().build(input_shape)

    def call(self, batch):
        features = self.backbone(batch["images"])                             # [B, H, W, 2A]
        shape = tf.shape(features)
        z_what = tf.reshape(features[..., :self.n_what],
                            [shape[0], shape[1] * shape[2], self.n_what])     # [B, N, A]
        return z_what, tf.ones(tf.shape(z_what)[:2], z_what.dtype)


class BaselineObjects:
    """A Fig. 4 baseline as stage 2's object source (spair_tf.addition.Objects' interface):
    `objects(batch)` → (z_what, z_pres), `object_encoder` (the whole network, trained),
    `n_what`, and `extra(data)`: the per-image arrays the batches must carry. Trained whole,
    from its initialisation: representation "raw" only."""

    representations = ("raw",)

    def __init__(self, name):
        if name not in BASELINES:
            raise ValueError(f"--baseline={name!r}: use one of {BASELINES}.")
        self.name = name
        self.n_what = N_WHAT
        self.object_encoder = (ConvNetObjects() if name == "convnet"
                               else BoxObjects(GLIMPSE_SIDE[name]))
        self.object_encoder.build()
        self.model = self.object_encoder

    def __call__(self, batch):
        return self.object_encoder(batch)

    def extra(self, data):
        """{"object_boxes": [N, K, 4], "object_counts": [N]} for the box baselines (the
        dataset's own boxes for TrueBB, ConnComp's found anew at each call), {} for ConvNet."""
        if self.name == "convnet":
            return {}
        boxes, counts = ((data.boxes, data.counts) if self.name == "truebb"
                         else conncomp_boxes(data.images))
        return {"object_boxes": boxes, "object_counts": counts}
