"""The backbone's geometry (SPAIR_SPEC §1.1)."""

import numpy as np
import pytest
import tensorflow as tf

from spair_tf.backbone import Backbone, pad_bottom_right


@pytest.mark.parametrize("size,grid", [((48, 48), (4, 4)), ((84, 84), (7, 7)),
                                       ((210, 160), (18, 14)), ((50, 38), (5, 4)),
                                       ((12, 13), (1, 2))])
def test_output_grid_is_ceil_of_size_over_12(size, grid):
    features = Backbone(filters=8, n_features=5)(tf.zeros((2,) + size + (3,)))
    assert features.shape == (2,) + grid + (5,)


@pytest.mark.parametrize("n,stride", [(48, 2), (105, 2), (13, 3), (12, 3), (7, 2), (1, 3)])
def test_padding_is_bottom_right_and_matches_the_formula(n, stride):
    x = tf.reshape(tf.range(1, n + 1, dtype=tf.float32), (1, n, 1, 1))
    padded = pad_bottom_right(x, 4, stride, axis=1)[0, :, 0, 0].numpy()
    expected_total = max(4 - stride, 0) if n % stride == 0 else max(4 - n % stride, 0)
    np.testing.assert_array_equal(padded[:n], np.arange(1, n + 1))
    np.testing.assert_array_equal(padded[n:], np.zeros(expected_total))
    assert (n + expected_total - 4) // stride + 1 == -(-n // stride)


def test_cell_depends_only_on_its_receptive_field():
    """Cell (i, j) sees exactly input rows [12i, 12i+21] and columns [12j, 12j+21]."""
    tf.keras.utils.set_random_seed(0)
    backbone = Backbone(filters=16, n_features=4)
    image = tf.Variable(tf.random.uniform((1, 60, 48, 3)))
    grid_h, grid_w = 5, 4
    for i, j in [(0, 0), (2, 1), (4, 3), (3, 0)]:
        with tf.GradientTape() as tape:
            out = tf.reduce_sum(backbone(image)[0, i, j] ** 2)
        dependence = np.abs(tape.gradient(out, image).numpy()[0]).sum(-1) > 0  # [60, 48]
        rows = np.flatnonzero(dependence.any(axis=1))
        cols = np.flatnonzero(dependence.any(axis=0))
        assert rows.min() >= 12 * i and rows.max() <= 12 * i + 21, (i, j, rows)
        assert cols.min() >= 12 * j and cols.max() <= 12 * j + 21, (i, j, cols)
        # The field is not smaller than stated either (within the image).
        assert rows.max() == min(12 * i + 21, 59) and cols.max() == min(12 * j + 21, 47)
        assert rows.min() == 12 * i and cols.min() == 12 * j
    assert (grid_h, grid_w) == tuple(backbone(image).shape[1:3])
