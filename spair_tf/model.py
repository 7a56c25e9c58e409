"""SPAIR: Spatially Invariant Attend, Infer, Repeat (Crawford & Pineau, AAAI 2019).

The model file composes the pieces, each in its own module (SPAIR_SPEC §1):
backbone (§1.1) → per-cell encoder with lateral connections (§1.2, §1.3) → object decoder
(§1.6) → renderer (§1.7) over a background (§1.8); the loss (§1.9) adds the Normal KLs and
the count-prior KL (§1.10).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from spair_tf import count_prior
from spair_tf import latents
from spair_tf import renderer
from spair_tf import schedules
from spair_tf.background import Background
from spair_tf.backbone import Backbone
from spair_tf.config import SpairConfig
from spair_tf.encoder import CellEncoder
from spair_tf.networks import mlp


MODES = ("train", "paper", "mean")
DENSE_RENDER_MAX_SIZE = 84
BCE_EPS = 1e-9


def validate_images(images):
    """Checks a batch of images: rank 4, 3 channels, at least one 12-px cell, finite values.

    Static checks raise ValueError at trace time; the finiteness check is a runtime
    assertion (tf.debugging), so a NaN in the input stops with a message, not a NaN loss.
    """
    shape = images.shape
    if shape.rank is not None and shape.rank != 4:
        raise ValueError(f"images have shape {shape}: expected [batch, height, width, 3].")
    if shape.rank == 4 and shape[-1] is not None and shape[-1] != 3:
        raise ValueError(
            f"images have shape {shape}: expected 3 (RGB) channels; convert grayscale "
            "or RGBA images to RGB first.")
    for axis, name in ((1, "height"), (2, "width")):
        if shape.rank == 4 and shape[axis] is not None and shape[axis] < 12:
            raise ValueError(
                f"images have shape {shape}: {name} {shape[axis]} px is under one 12-px "
                "cell; SPAIR needs images of at least 12×12 px.")
    return tf.debugging.assert_all_finite(
        images, "images contain NaN or Inf; clean the input (values belong in [0, 1]).")


class SPAIR(keras.Model):
    """The SPAIR model (SPAIR_SPEC §1).

    Args:
      config: a SpairConfig.

    `encode`, `decode` and `detect` work on any image size (the grid is
    ceil(H_img/12) × ceil(W_img/12)); `compute_loss` returns the negative ELBO of §1.9.
    Modes (§1.12): "train" (sampled latents, relaxed z_pres), "paper" (sampled latents,
    random hard z_pres, confidence 1), "mean" (latent means, z_pres on iff β > 0.5,
    confidence β).

    `fixed_noise=True` (for tests) replaces the sampling noise of every mode by its centre
    (ε = 0, u = ½), so a pass is a deterministic function of the images: e.g. to check that
    a batch split over replicas gives the loss and gradients of the whole batch.
    """

    def __init__(self, config: SpairConfig | None = None, fixed_noise: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.config = config = config or SpairConfig()
        self.fixed_noise = bool(fixed_noise)
        self.backbone = Backbone(config.backbone_filters, config.n_features, name="backbone")
        self.encoder = CellEncoder(config, name="cell_encoder")
        size = config.object_size
        self.object_decoder = mlp(config.decoder_units, size * size * 4, name="object_decoder")
        self.background = Background(config.background, config.background_colour,
                                     name="background")

    def build(self, images_shape=(None, None, None, 3)):
        c = self.config
        self.backbone.build(images_shape)
        self.encoder.build((None, None, None, c.n_features))
        self.object_decoder.build((None, c.n_what))
        self.background.build(images_shape)
        self.built = True

    # ---------------------------------------------------------------------------------
    @property
    def stem(self):
        """The layer `Trainer` runs outside the XLA cluster of the loss: the backbone.

        Its strided convolutions and their gradients run faster as TF's own (oneDNN) kernels
        than compiled by XLA on CPU (BUILD_NOTES, "Benchmarks"); the rest of the loss gains
        from XLA. The Trainer computes `features = stem(images)` and passes them to
        `compute_loss(..., features=features)`.
        """
        return self.backbone

    def cell_noise(self, features, sample_latents=True, sample_pres=True):
        """The per-cell noise of one pass (CellEncoder.call), each [B, H, W, d]: standard
        normal for z_where (4), z_what (A) and z_depth (1) if sample_latents, else their
        centre 0 (the posterior means); uniform for z_pres (1) if sample_pres, else ½
        (z_pres = [β > ½] when hardened). `fixed_noise` makes every entry its centre.

        features: the backbone's output [B, H, W, F] (sets the cells and the dtype).
        """
        shape = tf.shape(features)
        sizes = {"where": 4, "what": self.config.n_what, "depth": 1}
        noise = {}
        for name, size in sizes.items():
            shape_d = tf.concat([shape[:3], [size]], 0)
            noise[name] = (tf.random.normal(shape_d, dtype=features.dtype)
                           if sample_latents and not self.fixed_noise else
                           tf.zeros(shape_d, features.dtype))
        shape_1 = tf.concat([shape[:3], [1]], 0)
        noise["pres"] = (tf.random.uniform(shape_1, dtype=features.dtype)
                         if sample_pres and not self.fixed_noise else
                         tf.fill(shape_1, tf.constant(0.5, features.dtype)))
        return noise

    def encode(self, images, step=0, mode="train", features=None, noise=None):
        """Latents of every cell: a dict of [B, H, W, d] tensors (see CellEncoder.call).

        features: the backbone's output [B, H, W, F] for these images, if already computed
        (see `stem`); None computes it. noise: the `cell_noise` to use instead of the
        mode's own (sampled in "train" and "paper", centred in "mean").
        """
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: expected one of {MODES}.")
        images = validate_images(images)
        if features is None:
            features = self.backbone(images)                         # [B, H, W, F]
        if noise is None:
            sample = mode != "mean"
            noise = self.cell_noise(features, sample_latents=sample, sample_pres=sample)
        return self.encoder(images, features=features, noise=noise, step=step,
                            hard_pres=(mode != "train"))

    def decode(self, z, images):
        """Sprites from z_what, rendered over the background: [B, H_img, W_img, 3]."""
        c = self.config
        shape = tf.shape(z["z_what"])
        batch, grid_h, grid_w = shape[0], shape[1], shape[2]
        logits = self.object_decoder(tf.reshape(z["z_what"], [-1, c.n_what]))
        logits = tf.reshape(logits, [batch, grid_h, grid_w, c.object_size, c.object_size, 4])
        rgb = tf.sigmoid(latents.clip_logits(2.0 * logits[..., :3]))   # o
        alpha = tf.sigmoid(latents.clip_logits(0.1 * logits[..., 3:] + 5.0))  # α
        z_pres = z["z_pres"][:, :, :, None, None, :]                   # [B, H, W, 1, 1, 1]
        if c.compositing == "weighted":
            # The Fig. 2–3 runs' renderer (§6): weights w = exp(5·(2·α̃ − 1)), no depth.
            opacity = tf.exp(5.0 * (2.0 * alpha * z_pres - 1.0))
            importance = None
        else:
            depth = z["depth"][:, :, :, None, None, :]
            opacity = alpha * z_pres                                   # α̃
            importance = tf.maximum(opacity * depth, 0.01)             # γ (§1.6)
        boxes = self.render_boxes(z["box"], tf.shape(images)[1:3])
        background = self.background(images)
        # Up to 84×84 px (the 7×7-cell window) the dense renderer does the same work in
        # fewer ops (about 2× faster on 48×48 crops); beyond, only the windowed one is linear
        # in image area (§1.7).
        size = images.shape[1:3]
        small = size.is_fully_defined() and max(size) <= DENSE_RENDER_MAX_SIZE
        render = renderer.render_dense if small else renderer.render
        return render(rgb, opacity, importance, boxes, background, cell_size=c.cell_size,
                      compositing=c.compositing)

    def pixel_boxes(self, box):
        """Eq. 2–6: box [B, H, W, 4] (b_y, b_x, h, w) → (centre_y, centre_x, height, width) px."""
        c = self.config
        shape = tf.shape(box)
        i = tf.cast(tf.range(shape[1]), box.dtype)[None, :, None]
        j = tf.cast(tf.range(shape[2]), box.dtype)[None, None, :]
        centre_y = c.cell_size * (i + box[..., 0])
        centre_x = c.cell_size * (j + box[..., 1])
        return tf.stack([centre_y, centre_x, c.anchor_size * box[..., 2],
                         c.anchor_size * box[..., 3]], axis=-1)

    def corner_boxes(self, box):
        """box [B, H, W, 4] (b_y, b_x, h, w) → [B, H, W, 4] (ymin, xmin, ymax, xmax) px."""
        centre_y, centre_x, height, width = tf.unstack(self.pixel_boxes(box), axis=-1)
        return tf.stack([centre_y - height / 2, centre_x - width / 2,
                         centre_y + height / 2, centre_x + width / 2], axis=-1)

    def render_boxes(self, box, image_size):
        """The renderer's (top_y, left_x, height, width), normalised by the image size."""
        centre_y, centre_x, height, width = tf.unstack(self.pixel_boxes(box), axis=-1)
        extent = tf.cast(image_size, box.dtype)
        return tf.stack([(centre_y - height / 2) / extent[0], (centre_x - width / 2) / extent[1],
                         height / extent[0], width / extent[1]], axis=-1)

    def call(self, images, step=0, mode="train", features=None):
        z = self.encode(images, step, mode, features=features)
        return {**z, "reconstruction": self.decode(z, images)}

    # ---------------------------------------------------------------------------------
    def compute_loss(self, images, step, training=True, features=None):
        """Negative ELBO of §1.9, batch mean, and each of its terms.

        features: the backbone's output for `images` if already computed (`stem`).

        Returns (loss, terms) with terms: "reconstruction" (summed BCE), "kl_where",
        "kl_what", "kl_depth" (Normal KLs on pre-squash values weighted by the cell's
        z_pres), "kl_pres" (the count-prior KL of §1.10), "count" (mean Σ hard z_pres) and
        the schedule's "count_prior_log_odds".
        """
        c = self.config
        step = tf.convert_to_tensor(step)
        out = self(images, step=step, mode="train" if training else "paper",
                   features=features)
        x, x_out = images, out["reconstruction"]
        bce = -(x * tf.math.log(tf.maximum(x_out, BCE_EPS))
                + (1.0 - x) * tf.math.log(tf.maximum(1.0 - x_out, BCE_EPS)))
        reconstruction = tf.reduce_mean(tf.reduce_sum(bce, axis=[1, 2, 3]))

        z_pres = out["z_pres"]                                         # [B, H, W, 1]
        dtype = z_pres.dtype

        def weighted_kl(mean, std, prior_mean, prior_std):
            kl = latents.normal_kl(mean, std, tf.constant(prior_mean, dtype),
                                   tf.constant(prior_std, dtype))
            return tf.reduce_mean(tf.reduce_sum(kl * z_pres, axis=[1, 2, 3]))

        kl_where = weighted_kl(out["where_mean"], out["where_std"],
                               c.where_prior_mean, c.where_prior_std)
        kl_what = weighted_kl(out["what_mean"], out["what_std"], c.what_prior_mean,
                              c.what_prior_std)
        if c.compositing == "weighted":  # no depth in that model (§6): z_depth is unused
            kl_depth = tf.zeros([], dtype)
        else:
            kl_depth = weighted_kl(out["depth_mean"], out["depth_std"], c.depth_prior_mean,
                                   c.depth_prior_std)

        log_odds = tf.cast(self.count_prior_log_odds(step), dtype)
        # Cells in raster order, [B, N]; N stays static when the image size is.
        grid = z_pres.shape[1:3]
        n_cells = grid[0] * grid[1] if grid.is_fully_defined() else -1
        beta = tf.reshape(latents.pres_probability(out["pres_logit"]), [-1, n_cells])
        kl_pres = count_prior.z_pres_kl(beta, tf.reshape(z_pres, [-1, n_cells]), log_odds)
        kl_pres = tf.reduce_mean(tf.reduce_sum(kl_pres, axis=1))

        loss = reconstruction + kl_where + kl_what + kl_depth + kl_pres
        count = tf.reduce_mean(tf.reduce_sum(tf.cast(z_pres > 0.5, dtype), axis=[1, 2, 3]))
        terms = {"reconstruction": reconstruction, "kl_where": kl_where, "kl_what": kl_what,
                 "kl_depth": kl_depth, "kl_pres": kl_pres, "count": count,
                 "count_prior_log_odds": log_odds}
        return loss, terms

    def count_prior_log_odds(self, step):
        c = self.config
        return schedules.count_prior_log_odds(
            tf.cast(step, tf.float32), initial=c.count_prior_initial,
            final=c.count_prior_final, decay_steps=c.count_prior_decay_steps,
            decay_rate=c.count_prior_decay_rate)

    # ---------------------------------------------------------------------------------
    def detect(self, images, mode="mean"):
        """Detections and reconstruction (§1.4, §1.12); never computes the count-prior KL.

        Returns a dict: boxes [B, K, 4] (ymin, xmin, ymax, xmax in pixels, K = H·W cells),
        scores [B, K] (β in "mean" mode, 1.0 in "paper" mode), valid [B, K] bool (hard
        z_pres), counts [B] int32, reconstruction [B, H_img, W_img, 3].
        """
        if mode not in ("mean", "paper"):
            raise ValueError(f"mode={mode!r}: detection modes are 'mean' and 'paper'.")
        out = self(images, mode=mode)
        batch = tf.shape(images)[0]
        boxes = self.corner_boxes(out["box"])
        valid = tf.reshape(out["z_pres"] > 0.5, [batch, -1])
        if mode == "mean":
            scores = tf.reshape(latents.pres_probability(out["pres_logit"]), [batch, -1])
        else:
            scores = tf.ones_like(valid, dtype=boxes.dtype)
        return {"boxes": tf.reshape(boxes, [batch, -1, 4]), "scores": scores, "valid": valid,
                "counts": tf.reduce_sum(tf.cast(valid, tf.int32), axis=1),
                "reconstruction": out["reconstruction"]}

    def get_config(self):
        return {"config": self.config.__dict__}


def detections_to_lists(detections):
    """Splits batched detections into per-image numpy arrays for spair_tf.metrics."""
    boxes, scores, valid = (np.asarray(detections[k]) for k in ("boxes", "scores", "valid"))
    return [b[v] for b, v in zip(boxes, valid)], [s[v] for s, v in zip(scores, valid)]
