"""The per-cell encoder (SPAIR_SPEC §1.2): visiting orders and windowed glimpses."""

import numpy as np
import pytest
import tensorflow as tf

from spair_tf import encoder as encoder_lib
from spair_tf import glimpse
from spair_tf.backbone import Backbone
from spair_tf.config import SpairConfig
from spair_tf.encoder import (CellEncoder, neighbour_sources, parallel_schedule,
                              raster_schedule, schedule_depth, wavefront_schedule)
from spair_tf.glimpse import cell_glimpses


@pytest.mark.parametrize("grid", [(1, 1), (1, 5), (4, 4), (5, 3), (7, 7), (3, 8)])
def test_wavefront_schedule_visits_each_cell_once_after_its_neighbours(grid):
    h, w = grid
    table = wavefront_schedule(h, w).numpy()
    assert table.shape[0] == 2 * (h - 1) + w
    visited_at = {}
    for t, row in enumerate(table):
        for cell in row[row < h * w]:
            assert cell not in visited_at
            visited_at[cell] = t
    assert sorted(visited_at) == list(range(h * w))
    for cell, t in visited_at.items():
        i, j = divmod(cell, w)
        for di, dj in [(-1, -1), (-1, 0), (-1, 1), (0, -1)]:
            if 0 <= i + di < h and 0 <= j + dj < w:
                assert visited_at[(i + di) * w + j + dj] < t


@pytest.mark.parametrize("grid", [(1, 1), (1, 5), (4, 4), (5, 3), (7, 7), (3, 8), (8, 2)])
@pytest.mark.parametrize("schedule", [wavefront_schedule, raster_schedule])
def test_neighbour_sources_read_each_neighbour_from_the_recent_history(grid, schedule):
    """Replaying the loop's history of cell ids, each source row holds the right neighbour."""
    h, w = grid
    table = schedule(h, w).numpy()
    depth = schedule_depth("wavefront" if schedule is wavefront_schedule else "raster", w)
    sources, positions = (x.numpy() for x in neighbour_sources(table, h, w, depth))
    n_steps, n_slots = table.shape
    assert positions.tolist() == [int(np.flatnonzero(table.ravel() == c)[0])
                                  for c in range(h * w)]
    edge = -1
    history = np.full((depth, n_slots), -2)          # ids written at the last K steps
    for t in range(n_steps):
        recent = np.concatenate([history.ravel(), [edge]])
        for slot, cell in enumerate(table[t]):
            if cell == h * w:
                continue
            i, j = divmod(cell, w)
            for k, (di, dj) in enumerate([(-1, -1), (-1, 0), (-1, 1), (0, -1)]):
                inside = 0 <= i + di < h and 0 <= j + dj < w
                want = (i + di) * w + j + dj if inside else edge
                assert recent[sources[t, slot, k]] == want, (t, slot, k)
        history = np.concatenate([table[t][None], history[:-1]], 0)
    assert sources.min() >= 0 and sources.max() <= depth * n_slots


def test_without_lateral_connections_each_cell_sees_only_itself():
    """The ablation (§5.3): one parallel step, no cell depends on another's latents."""
    tf.keras.utils.set_random_seed(3)
    config = SpairConfig(n_what=6, encoder_units=(16,), hidden_units=(16,), n_features=8,
                         backbone_filters=8, lateral=False)
    images = tf.random.uniform((2, 48, 36, 3))
    features = Backbone(8, 8)(images)
    encoder = CellEncoder(config)
    noise = _noise(features.shape[:3], config.n_what, seed=4)
    step = tf.constant(5000, tf.int64)
    out = encoder(images, features=features, noise=noise, step=step)
    assert parallel_schedule(4, 3).shape == (1, 12)
    changed_noise = {k: v.copy() for k, v in noise.items()}
    changed_noise["what"][:, 1, 1] += 3.0
    changed = encoder(images, features=features, noise=changed_noise, step=step)
    moved = np.abs(changed["z_what"].numpy() - out["z_what"].numpy()).max(axis=(0, 3)) > 0
    assert moved.tolist() == [[i == 1 and j == 1 for j in range(3)] for i in range(4)]


def _noise(shape, n_what, seed):
    rng = np.random.default_rng(seed)
    b, h, w = shape
    return {"where": rng.normal(size=(b, h, w, 4)).astype(np.float32),
            "what": rng.normal(size=(b, h, w, n_what)).astype(np.float32),
            "depth": rng.normal(size=(b, h, w, 1)).astype(np.float32),
            "pres": rng.uniform(size=(b, h, w, 1)).astype(np.float32)}


@pytest.mark.parametrize("image_size", [(48, 48), (60, 36)])
def test_wavefront_order_equals_raster_order(image_size):
    tf.keras.utils.set_random_seed(1)
    config = SpairConfig(n_what=6, encoder_units=(16,), hidden_units=(16,), n_features=8,
                         backbone_filters=8)
    images = tf.random.uniform((3,) + image_size + (3,))
    features = Backbone(8, 8)(images)
    encoder = CellEncoder(config)
    noise = _noise(features.shape[:3], config.n_what, seed=2)
    # Train the edge element away from zero so neighbours outside the grid matter too.
    encoder.build(features.shape)
    encoder.edge_element.assign(tf.random.normal(encoder.edge_element.shape))
    step = tf.constant(5000, tf.int64)
    wave = encoder(images, features=features, noise=noise, step=step, schedule="wavefront")
    raster = encoder(images, features=features, noise=noise, step=step, schedule="raster")
    # Equal up to float32 summation order: the wavefront batches n cells per matmul and
    # einsum, raster one, and the CPU's kernels block these differently (up to 1.4e-5 seen
    # on an AMD EPYC host). One neighbour's changed latents move a reader's output by
    # 0.2–0.9 here (the lateral check below asserts > 0.01).
    for name in wave:
        np.testing.assert_allclose(wave[name].numpy(), raster[name].numpy(), rtol=1e-4,
                                   atol=1e-4, err_msg=name)
    # The lateral context matters: changing cell (1, 1)'s noise changes cell (2, 1), which
    # reads it, but no cell visited before it.
    noise2 = {k: v.copy() for k, v in noise.items()}
    noise2["what"][:, 1, 1] += 3.0
    changed = encoder(images, features=features, noise=noise2, step=step)["pres_logit"]
    assert np.abs(changed[:, 2, 1] - wave["pres_logit"][:, 2, 1]).max() > 0.01
    np.testing.assert_array_equal(changed[:, 0], wave["pres_logit"][:, 0])
    np.testing.assert_array_equal(changed[:, 1, 0], wave["pres_logit"][:, 1, 0])


def test_unrolled_steps_equal_the_while_loop(monkeypatch):
    """Static schedules of up to UNROLL_MAX_STEPS steps are unrolled (48×48: 10 steps); the
    outputs and gradients are those of the while loop (compiled graphs of both)."""
    tf.keras.utils.set_random_seed(5)
    config = SpairConfig(n_what=6, encoder_units=(16,), hidden_units=(16,), n_features=8,
                         backbone_filters=8)
    images = tf.random.uniform((3, 48, 48, 3))
    features = Backbone(8, 8)(images)
    encoder = CellEncoder(config)
    noise = _noise(features.shape[:3], config.n_what, seed=6)
    step = tf.constant(5000, tf.int64)
    encoder(images, features=features, noise=noise, step=step)
    weights = {k: tf.random.stateless_normal(v.shape, (7, i)) for i, (k, v) in enumerate(
        encoder(images, features=features, noise=noise, step=step).items())}

    @tf.function
    def run(features):
        with tf.GradientTape() as tape:
            tape.watch(features)
            out = encoder(images, features=features, noise=noise, step=step)
            value = tf.add_n([tf.reduce_sum(out[k] * w) for k, w in weights.items()])
        return out, tape.gradient(value, [features] + encoder.trainable_variables)

    assert 2 * (4 - 1) + 4 <= encoder_lib.UNROLL_MAX_STEPS
    unrolled = run(features)
    graph = run.get_concrete_function(features).graph
    assert not any(op.type in ("While", "StatelessWhile") for op in graph.get_operations())
    monkeypatch.setattr(encoder_lib, "UNROLL_MAX_STEPS", 0)
    run_loop = tf.function(run.python_function)
    looped = run_loop(features)
    graph = run_loop.get_concrete_function(features).graph
    assert any(op.type in ("While", "StatelessWhile") for op in graph.get_operations())
    for name in unrolled[0]:
        np.testing.assert_allclose(unrolled[0][name].numpy(), looped[0][name].numpy(),
                                   rtol=1e-5, atol=1e-5, err_msg=name)
    for got, want in zip(unrolled[1], looped[1]):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4,
                                   atol=1e-5 * float(np.abs(want.numpy()).max()))


def test_cell_glimpses_equal_full_image_glimpses():
    """The windowed sampler reads the same pixels as the full-image sampler (§1.5)."""
    rng = np.random.default_rng(3)
    for image_size in [(48, 48), (130, 100)]:
        images = tf.constant(rng.uniform(size=(2,) + image_size + (3,)), tf.float32)
        grid = (-(-image_size[0] // 12), -(-image_size[1] // 12))
        rows = tf.constant(rng.integers(0, grid[0], size=5), tf.int32)
        cols = tf.constant(rng.integers(0, grid[1], size=5), tf.int32)
        offsets = rng.uniform(-0.5, 1.5, size=(5, 2, 2))
        sizes = rng.uniform(1.0, 48.0, size=(5, 2, 2))
        centre = 12.0 * (np.stack([rows, cols], -1)[:, None] + offsets)   # [n, B, 2]
        got = cell_glimpses(glimpse.batch_last(images), tf.constant(centre, tf.float32),
                            tf.constant(sizes, tf.float32), rows, cols, 14).numpy()
        extent = np.array(image_size, np.float64)
        boxes = np.concatenate([centre / extent, sizes / extent], -1)     # [n, B, 4]
        want = glimpse.extract_glimpses(images, tf.constant(
            np.transpose(boxes, (1, 0, 2)), tf.float32)).numpy()           # [B, n, ...]
        np.testing.assert_allclose(got, np.transpose(want, (1, 0, 2, 3, 4)), atol=1e-5)
