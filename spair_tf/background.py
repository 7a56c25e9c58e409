"""The background SPAIR renders objects onto (SPAIR_SPEC §1.8, paper §4.4)."""

from __future__ import annotations

import keras
import tensorflow as tf

from spair_tf.config import BACKGROUND_MODES
from spair_tf.networks import mlp


class Background(keras.layers.Layer):
    """Background image [B, H_img, W_img, 3] for a batch of images.

    Modes:
      "fixed": a given colour (black in Experiment 1 and the addition task).
      "learn_solid": one learned colour sigmoid(10·v), v initialised to 0 (the Fig. 7
        ablation and Atari; not Fig. 3's runs, which had a black background: BUILD_NOTES.md,
        "Experiment 2's background").
      "learn": one colour per image from an MLP [10, 10] (SET). The MLP sees the image
        area-averaged to 12×12×3, so it accepts any image size (BUILD_NOTES.md).

    Args:
      mode: one of BACKGROUND_MODES.
      colour: RGB in [0, 1] for "fixed".
    """

    POOLED_SIZE = 12

    def __init__(self, mode: str = "fixed", colour=(0.0, 0.0, 0.0), **kwargs):
        super().__init__(**kwargs)
        if mode not in BACKGROUND_MODES:
            raise ValueError(f"background mode {mode!r}: expected one of {BACKGROUND_MODES}.")
        self.mode = mode
        self.colour = tuple(float(v) for v in colour)
        self.colour_net = mlp((10, 10), 3, name="colour_net") if mode == "learn" else None

    def build(self, images_shape):
        if self.mode == "learn_solid":
            self.solid_logit = self.add_weight(name="solid_logit", shape=(3,),
                                               initializer="zeros")
        if self.mode == "learn":
            self.colour_net.build((None, self.POOLED_SIZE * self.POOLED_SIZE * 3))
        super().build(images_shape)

    def call(self, images):
        shape = tf.shape(images)                       # images: [B, H_img, W_img, 3]
        if self.mode == "fixed":
            colour = tf.constant(self.colour, images.dtype)[None]          # [1, 3]
        elif self.mode == "learn_solid":
            colour = tf.sigmoid(10.0 * tf.cast(self.solid_logit, images.dtype))[None]
        else:
            pooled = tf.image.resize(images, (self.POOLED_SIZE, self.POOLED_SIZE),
                                     method="area")
            colour = tf.sigmoid(self.colour_net(tf.reshape(pooled, [shape[0], -1])))
        return tf.broadcast_to(colour[:, None, None, :], shape)            # [B, H, W, 3]

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "colour": self.colour}
