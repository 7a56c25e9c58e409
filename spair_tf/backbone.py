"""SPAIR's convolutional backbone e_conv (SPAIR_SPEC §1.1, supplementary D.2)."""

from __future__ import annotations

import keras
import tensorflow as tf


def pad_bottom_right(x, kernel_size: int, stride: int, axis: int):
    """Pads axis `axis` of `x` on the bottom/right only, so a VALID conv gives ceil(n/s).

    Spec §1.1: for input length n, the pad total is max(k − s, 0) if n mod s == 0, else
    max(k − (n mod s), 0), all of it after the last element. Unlike Keras "same" padding,
    nothing is added before the first element, so output cell i sees input rows starting at
    exactly i·s: the cell ↔ receptive-field relation the model relies on.
    """
    n = tf.shape(x)[axis]
    remainder = n % stride
    total = tf.where(remainder == 0,
                     tf.maximum(kernel_size - stride, 0),
                     tf.maximum(kernel_size - remainder, 0))
    paddings = tf.one_hot(axis, tf.rank(x), on_value=1, off_value=0, dtype=tf.int32)
    paddings = tf.stack([tf.zeros_like(paddings), paddings * total], axis=1)  # [rank, 2]
    return tf.pad(x, paddings)


class Backbone(keras.layers.Layer):
    """e_conv: image [B, H_img, W_img, 3] → per-cell features [B, H, W, n_features].

    Three 4×4 convolutions with strides 2, 2, 3 (the prime factors of the 12-px cell) and
    ReLU, padded bottom/right only, then 1×1 convolutions of 128, 128 (ReLU) and
    `n_features` (linear) units. H = ceil(H_img / 12), W = ceil(W_img / 12); the feature of
    cell (i, j) depends only on input rows [12i, 12i + 21] and columns [12j, 12j + 21].

    Args:
      filters: filters of the first five convolutions (128 in the paper).
      n_features: size of the per-cell feature f_ij (100 in the paper).
    """

    STRIDES = (2, 2, 3)
    KERNEL_SIZE = 4

    def __init__(self, filters: int = 128, n_features: int = 100, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.n_features = n_features
        # One attribute per convolution: a Python list would become a Keras TrackedList,
        # which tf.train.Checkpoint does not see (tests/test_model.py restores every weight).
        for k, s in enumerate(self.STRIDES):
            setattr(self, f"conv_{k}",
                    keras.layers.Conv2D(filters, self.KERNEL_SIZE, strides=s, padding="valid",
                                        activation="relu", name=f"conv_{k}"))
        self.pointwise_0 = keras.layers.Conv2D(filters, 1, activation="relu",
                                               name="pointwise_0")
        self.pointwise_1 = keras.layers.Conv2D(filters, 1, activation="relu",
                                               name="pointwise_1")
        self.pointwise_out = keras.layers.Conv2D(n_features, 1, name="pointwise_out")

    @property
    def strided(self):
        """The three strided 4×4 convolutions, in order."""
        return [getattr(self, f"conv_{k}") for k in range(len(self.STRIDES))]

    @property
    def pointwise(self):
        """The 1×1 convolutions, in order."""
        return [self.pointwise_0, self.pointwise_1, self.pointwise_out]

    def build(self, input_shape):
        shape = (None, None, None, input_shape[-1])
        for conv in self.strided:
            conv.build(shape)
            shape = (None, None, None, self.filters)
        for conv in self.pointwise:
            conv.build(shape)
            shape = (None, None, None, conv.filters)
        super().build(input_shape)

    def call(self, images):
        x = images  # [B, H_img, W_img, 3]
        for conv, stride in zip(self.strided, self.STRIDES):
            x = pad_bottom_right(x, self.KERNEL_SIZE, stride, axis=1)
            x = pad_bottom_right(x, self.KERNEL_SIZE, stride, axis=2)
            x = conv(x)  # [B, ceil(n/s), ceil(m/s), filters]
        for conv in self.pointwise:
            x = conv(x)
        return x  # [B, H, W, n_features]

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "n_features": self.n_features}
