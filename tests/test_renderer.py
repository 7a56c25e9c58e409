"""Tests of SPAIR's renderer (SPAIR_SPEC §1.7, Supplementary Algorithm 1).

The reference is a per-pixel, per-sprite numpy loop written from the spec's text, sharing
no code with spair_tf.
"""

import math
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from spair_tf.glimpse import cell_window
from spair_tf.renderer import render, render_dense

CELL = 12
SPRITE = 14


def algorithm_1(rgb, alpha, importance, boxes, background, window=None, writes_out=None,
                pixels=None):
    """Supplementary Algorithm 1 with the sampling conventions of SPAIR_SPEC §1.7.

    With `window` (cells), sprite (i, j) only counts at pixels of cells i ± window, j ± window
    (the documented clipping of out-of-window boxes). `writes_out` [B, H, W], if given,
    receives the number of covering sprites of each pixel. `pixels`, if given, is a list of
    (py, px): only those are computed (the others keep the background).
    """
    batch, grid_h, grid_w, size_y, size_x, _ = rgb.shape
    _, height, width, _ = background.shape
    out = background.copy()
    if pixels is None:
        pixels = [(py, px) for py in range(height) for px in range(width)]
    for b in range(batch):
        for py, px in pixels:
            bg = background[b, py, px]
            writes, weighted_sum, normaliser, last = 0, 0.0, 0.0, None
            for i in range(grid_h):
                for j in range(grid_w):
                    if window is not None and (
                            abs(py // CELL - i) > window or abs(px // CELL - j) > window):
                        continue
                    top, left, box_h, box_w = boxes[b, i, j]
                    sy = -0.5 + size_y * ((py + 0.5) / height - top) / box_h
                    sx = -0.5 + size_x * ((px + 0.5) / width - left) / box_w
                    if not (-1 < sy < size_y and -1 < sx < size_x):
                        continue
                    y0, x0 = math.floor(sy), math.floor(sx)
                    a_p, g_p, o_p = 0.0, 0.0, np.zeros_like(bg)
                    for yy, wy in ((y0, 1 - (sy - y0)), (y0 + 1, sy - y0)):
                        for xx, wx in ((x0, 1 - (sx - x0)), (x0 + 1, sx - x0)):
                            if 0 <= yy < size_y and 0 <= xx < size_x:
                                a_p += wy * wx * alpha[b, i, j, yy, xx, 0]
                                g_p += wy * wx * importance[b, i, j, yy, xx, 0]
                                o_p = o_p + wy * wx * rgb[b, i, j, yy, xx]
                            else:
                                o_p = o_p + wy * wx * bg
                    v = a_p * o_p + (1 - a_p) * bg
                    writes += 1
                    weighted_sum = weighted_sum + g_p * v
                    normaliser += g_p
                    last = v
            if writes_out is not None:
                writes_out[b, py, px] = writes
            if writes == 1:
                out[b, py, px] = last
            elif writes >= 2:
                out[b, py, px] = weighted_sum / normaliser
    return out


def make_scene(height, width, seed, batch=2, z_pres=None, size_range=(0.0, 1.0),
               offset_range=(-0.5, 1.5)):
    """Random sprites and model-range boxes: centre 12·(i + b̃), b̃ ∈ offset_range, size 48·h."""
    rng = np.random.default_rng(seed)
    grid_h, grid_w = -(-height // CELL), -(-width // CELL)
    grid = (batch, grid_h, grid_w)
    rgb = rng.uniform(size=grid + (SPRITE, SPRITE, 3))
    alpha = rng.uniform(size=grid + (SPRITE, SPRITE, 1))
    if z_pres is None:
        z_pres = rng.uniform(size=grid)
    z_pres = np.broadcast_to(z_pres, grid)[..., None, None, None]
    depth = rng.uniform(0, 4, size=grid)[..., None, None, None]
    alpha_tilde = alpha * z_pres
    importance = np.maximum(alpha * z_pres * depth, 0.01)
    cy = CELL * (np.arange(grid_h)[:, None] + rng.uniform(*offset_range, size=grid))
    cx = CELL * (np.arange(grid_w)[None, :] + rng.uniform(*offset_range, size=grid))
    box_h = 48 * rng.uniform(*size_range, size=grid)
    box_w = 48 * rng.uniform(*size_range, size=grid)
    boxes = np.stack([(cy - box_h / 2) / height, (cx - box_w / 2) / width,
                      box_h / height, box_w / width], axis=-1)
    background = rng.uniform(size=(batch, height, width, 3))
    return rgb, alpha_tilde, importance, boxes, background


SCENES = {
    # name: (height, width, make_scene kwargs)
    "48x48 random": (48, 48, {}),
    "50x38 non-multiple of 12": (50, 38, {}),
    "random 31x61": (31, 61, {}),
    "random 73x25": (73, 25, {}),
    "all z_pres on, large overlapping boxes": (48, 48, dict(z_pres=1.0, size_range=(0.6, 1.0))),
    "all z_pres off": (48, 48, dict(z_pres=0.0)),
    "tiny boxes": (50, 38, dict(size_range=(0.005, 0.05))),
    "48-px boxes at the window bound": (50, 38, dict(size_range=(1.0, 1.0),
                                                     offset_range=(-0.5, -0.4999))),
    "48-px boxes at the other bound": (50, 38, dict(size_range=(1.0, 1.0),
                                                    offset_range=(1.4999, 1.5))),
    # Boxes inside their own cell: every pixel has at most one writer.
    "single writer": (48, 38, dict(size_range=(0.1, 0.2), offset_range=(0.45, 0.55))),
}


@pytest.mark.parametrize("name", list(SCENES))
def test_render_equals_algorithm_1(name):
    height, width, kwargs = SCENES[name]
    scene = make_scene(height, width, seed=sorted(SCENES).index(name), **kwargs)
    expected = algorithm_1(*scene)
    np.testing.assert_allclose(render(*scene).numpy(), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(render_dense(*scene).numpy(), expected, rtol=1e-10, atol=1e-12)


def test_render_equals_algorithm_1_on_a_210x160_frame():
    # Space Invaders' frame size (§2.3): 18×14 cells, H_img not a multiple of 12. The
    # reference runs on a random subset of pixels plus the last rows and columns.
    scene = make_scene(210, 160, seed=12, batch=1)
    rng = np.random.default_rng(12)
    pixels = [(int(py), int(px)) for py, px in zip(rng.integers(0, 210, 300),
                                                    rng.integers(0, 160, 300))]
    pixels += [(209, px) for px in range(0, 160, 7)] + [(py, 159) for py in range(0, 210, 7)]
    expected = algorithm_1(*scene, pixels=pixels)
    rows, cols = np.array(pixels).T
    got = render(*scene).numpy()
    np.testing.assert_allclose(got[0, rows, cols], expected[0, rows, cols], rtol=1e-10,
                               atol=1e-12)


def test_scenes_exercise_overlaps_single_writers_and_image_edges():
    # Guards the scenes above, counted by the reference: the single-writer scene has exactly
    # one writer where any, the random scene has pixels with many, and boxes leave the image.
    for name, low, high in (("single writer", 1, 1), ("48x48 random", 1, 4)):
        height, width, kwargs = SCENES[name]
        scene = make_scene(height, width, seed=sorted(SCENES).index(name), **kwargs)
        writes = np.zeros(scene[4].shape[:3], int)
        algorithm_1(*scene, writes_out=writes)
        assert writes.min() == 0 and writes[writes > 0].min() == low
        assert writes.max() >= high, name
    _, _, _, boxes, _ = make_scene(50, 38, seed=1)
    assert np.any(boxes[..., 0] < 0) and np.any(boxes[..., 0] + boxes[..., 2] > 1)
    assert np.any(boxes[..., 1] < 0) and np.any(boxes[..., 1] + boxes[..., 3] > 1)


def test_render_float32_matches_dense():
    scene = [x.astype(np.float32) for x in make_scene(84, 84, seed=7, batch=1)]
    np.testing.assert_allclose(render(*scene).numpy(), render_dense(*scene).numpy(),
                               atol=2e-6)


def test_window_is_the_exact_reach_of_a_sprite():
    # Brute force over extreme boxes: centre at −0.5 and 1.5 cells, size 48 px; rows whose
    # centre satisfies −1 < sy < 14 (in pixels, independent of the renderer).
    reach_before, reach_after = 0, 0
    for centre in (-6.0, 18.0):
        top, size = centre - 24.0, 48.0
        rows = [py for py in range(-100, 100)
                if -1 < -0.5 + SPRITE * ((py + 0.5) - top) / size < SPRITE]
        reach_before = max(reach_before, -min(rows))
        reach_after = max(reach_after, max(rows) - (CELL - 1))
    needed = max(math.ceil(reach_before / CELL), math.ceil(reach_after / CELL))
    assert (reach_before, reach_after) == (32, 32)  # rows 12i − 32 … 12i + 43
    assert math.ceil(max(reach_before, reach_after) / CELL) > 2  # window 2 is too small
    assert cell_window(12, 48.0, 14) == needed == 3


def test_out_of_window_boxes_are_clipped_to_the_window():
    # Boxes of up to 48 px around centres in [−0.5, 1.5] cells need window 3; with
    # window=1 they overflow, and the sprite is drawn only on cells i ± 1, j ± 1.
    scene = make_scene(50, 38, seed=11, batch=1, size_range=(0.5, 1.0))
    np.testing.assert_allclose(render(*scene, window=1).numpy(),
                               algorithm_1(*scene, window=1), rtol=1e-10, atol=1e-12)
    assert not np.allclose(render(*scene, window=1).numpy(), render_dense(*scene).numpy())


RENDERERS = {"render": render, "render_dense": render_dense}


def _directional_check(scene, index, seed, eps=1e-6, render=render, output_index=4):
    """<∇_x L, v> from the tape vs the central difference of L along a random v
    (scene[output_index] has the output's shape: the background)."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=scene[output_index].shape)
    direction = rng.normal(size=scene[index].shape)

    def loss(args):
        return float(np.sum(render(*args).numpy() * weights))

    variables = [tf.constant(x) for x in scene]
    with tf.GradientTape() as tape:
        tape.watch(variables[index])
        value = tf.reduce_sum(render(*variables) * weights)
    gradient = tape.gradient(value, variables[index]).numpy()
    plus = list(scene)
    minus = list(scene)
    plus[index] = scene[index] + eps * direction
    minus[index] = scene[index] - eps * direction
    numeric = (loss(plus) - loss(minus)) / (2 * eps)
    return np.sum(gradient * direction), numeric


@pytest.mark.parametrize("renderer_name", list(RENDERERS))
def test_gradient_wrt_boxes_matches_finite_differences(renderer_name):
    # render's gradient is TF's; render_dense's is written out (renderer._dense_sums).
    render = RENDERERS[renderer_name]
    scene = make_scene(26, 20, seed=3, batch=1, size_range=(0.3, 1.0))
    boxes = scene[3]
    rng = np.random.default_rng(5)
    weights = rng.normal(size=scene[4].shape)
    variables = [tf.constant(x) for x in scene]
    with tf.GradientTape() as tape:
        tape.watch(variables[3])
        value = tf.reduce_sum(render(*variables) * weights)
    gradient = tape.gradient(value, variables[3]).numpy()
    # Central differences, every box coordinate at once: one batch of 2·n shifted copies.
    eps = 1e-7
    n = boxes.size
    shifts = np.eye(n).reshape((n,) + boxes.shape[1:]) * eps  # [n, Hc, Wc, 4]
    batch = lambda x: np.concatenate([x] * (2 * n))
    shifted = np.concatenate([boxes + shifts, boxes - shifts])  # [2n, Hc, Wc, 4]
    images = render(batch(scene[0]), batch(scene[1]), batch(scene[2]), shifted,
                    batch(scene[4])).numpy()
    values = np.sum(images * weights, axis=(1, 2, 3))  # [2n]
    numeric = ((values[:n] - values[n:]) / (2 * eps)).reshape(boxes.shape)
    assert np.abs(gradient).max() > 1.0
    np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("renderer_name", list(RENDERERS))
@pytest.mark.parametrize("index,name", [(0, "rgb"), (1, "alpha"), (2, "importance"),
                                        (4, "background")])
def test_gradient_flows_to_every_input(index, name, renderer_name):
    scene = make_scene(26, 20, seed=4, batch=1, size_range=(0.3, 1.0))
    analytic, numeric = _directional_check(scene, index, seed=index,
                                           render=RENDERERS[renderer_name])
    assert abs(numeric) > 1e-3, name
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, err_msg=name)


def test_dense_gradient_equals_the_differentiated_windowed_renderer():
    """render_dense's written-out gradient = TF's gradient of render, input by input, on a
    48×48 float32 scene with overlaps, edges and z_pres on and off, under XLA (as trained)."""
    scene = [tf.constant(x.astype(np.float32)) for x in make_scene(48, 48, seed=21, batch=3)]
    weights = tf.constant(np.random.default_rng(21).normal(size=scene[4].shape), tf.float32)

    def gradients(fn):
        @tf.function(jit_compile=True)
        def compiled(*args):
            with tf.GradientTape() as tape:
                tape.watch(args)
                value = tf.reduce_sum(fn(*args) * weights)
            return tape.gradient(value, args)
        return [g.numpy() for g in compiled(*scene)]

    for name, dense, windowed in zip(("rgb", "alpha", "importance", "boxes", "background"),
                                     gradients(render_dense), gradients(render)):
        scale = np.abs(windowed).max()
        assert scale > 0, name
        np.testing.assert_allclose(dense, windowed, rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=name)


def test_render_compiles_with_xla():
    scene = [x.astype(np.float32) for x in make_scene(50, 38, seed=9, batch=1)]
    compiled = tf.function(render, jit_compile=True)
    np.testing.assert_allclose(compiled(*scene).numpy(), render_dense(*scene).numpy(),
                               atol=2e-6)


def test_bad_shapes_raise_clear_errors():
    rgb, alpha, importance, boxes, background = make_scene(48, 48, seed=0, batch=1)
    with pytest.raises(ValueError, match="ceil"):
        render(rgb, alpha, importance, boxes, background[:, :36])
    with pytest.raises(ValueError, match="alpha"):
        render(rgb, alpha[..., :7, :], importance, boxes, background)
    with pytest.raises(ValueError, match="boxes"):
        render(rgb, alpha, importance, boxes[..., :3], background)
    with pytest.raises(ValueError, match="window"):
        render(rgb, alpha, importance, boxes, background, window=-1)


# ---- Benchmark: time and peak memory linear in image area (§1.7 scaling requirement) ----

_BENCHMARK = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np, tensorflow as tf
    from spair_tf.renderer import render
    size, jit = int(sys.argv[1]), sys.argv[2] == "xla"
    grid = -(-size // 12)
    rng = np.random.default_rng(0)
    cells = (1, grid, grid)
    rgb = rng.uniform(size=cells + (14, 14, 3)).astype(np.float32)
    alpha = rng.uniform(size=cells + (14, 14, 1)).astype(np.float32)
    importance = np.maximum(alpha * 2.0, 0.01).astype(np.float32)
    cy = 12 * (np.arange(grid)[:, None] + rng.uniform(-0.5, 1.5, cells))
    cx = 12 * (np.arange(grid)[None, :] + rng.uniform(-0.5, 1.5, cells))
    h, w = 48 * rng.uniform(size=cells), 48 * rng.uniform(size=cells)
    boxes = np.stack([(cy - h / 2) / size, (cx - w / 2) / size, h / size, w / size],
                     -1).astype(np.float32)
    background = np.zeros((1, size, size, 3), np.float32)
    args = [tf.constant(x) for x in (rgb, alpha, importance, boxes, background)]
    fn = tf.function(render, jit_compile=jit)
    fn.get_concrete_function(*args)  # trace once, outside the measurement
    usage = lambda: resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/statm") as f:  # resident set size now (Linux)
        before = int(f.read().split()[1]) * resource.getpagesize() / 2**20
    fn(*args).numpy()  # first call: graph optimisation (and XLA compilation) + one render
    peak = usage().ru_maxrss / 1024
    wall, cpu = [], []
    for _ in range(3):
        start, start_cpu = time.perf_counter(), usage()
        fn(*args).numpy()
        end_cpu = usage()
        wall.append(time.perf_counter() - start)
        cpu.append(end_cpu.ru_utime + end_cpu.ru_stime - start_cpu.ru_utime - start_cpu.ru_stime)
    print(json.dumps(dict(size=size, mode=sys.argv[2], wall_s=round(min(wall), 4),
                          cpu_s=round(min(cpu), 4),
                          max_rss_mb=round(peak, 1), extra_rss_mb=round(peak - before, 1))))
""")


def run_benchmark(sizes=(48, 96, 192, 384, 768, 1536), mode="graph"):
    """One subprocess per image size (batch 1, float32): best-of-3 wall and CPU time of one
    render after a first call; the process's peak RSS (ru_maxrss, with TF itself) and its
    rise over the RSS before the first call (`extra_rss_mb`: the renderer's working memory
    plus a size-independent part for graph optimisation or XLA compilation; the allocator
    keeps freed memory, so later calls do not show it again).
    mode: "graph" (tf.function) | "xla" (tf.function(jit_compile=True))."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=root)
    rows = []
    for size in sizes:
        out = subprocess.run([sys.executable, "-c", _BENCHMARK, str(size), mode], env=env,
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    return rows


@pytest.mark.slow
def test_benchmark_time_and_memory_grow_linearly_with_area():
    rows = run_benchmark()
    by_size = {row["size"]: row for row in rows}
    # The size-independent part of the first call (graph optimisation) is what 48×48 shows.
    fixed = by_size[48]["extra_rss_mb"]
    # The 4× area steps where the work dominates TF's fixed costs; CPU time, not wall time,
    # since the machine may be shared.
    for small, large in ((384, 768), (768, 1536)):
        time_ratio = by_size[large]["cpu_s"] / by_size[small]["cpu_s"]
        memory_ratio = ((by_size[large]["extra_rss_mb"] - fixed)
                        / (by_size[small]["extra_rss_mb"] - fixed))
        assert 3.0 < time_ratio < 5.5, (small, large, time_ratio)
        assert 3.0 < memory_ratio < 5.5, (small, large, memory_ratio)


if __name__ == "__main__":
    # PYTHONPATH=. python tests/test_renderer.py [graph|xla]  → prints the benchmark table.
    run_benchmark(mode=sys.argv[1] if len(sys.argv) > 1 else "graph")


def test_render_with_sizes_known_only_at_run_time_equals_static_render():
    """The any-size SavedModel traces `render` with unknown H, W and grid (§1.7)."""
    rng = np.random.default_rng(11)
    dynamic = tf.function(render, input_signature=[
        tf.TensorSpec([None, None, None, 14, 14, 3], tf.float32),
        tf.TensorSpec([None, None, None, 14, 14, 1], tf.float32),
        tf.TensorSpec([None, None, None, 14, 14, 1], tf.float32),
        tf.TensorSpec([None, None, None, 4], tf.float32),
        tf.TensorSpec([None, None, None, 3], tf.float32)])
    for size in [(12, 12), (50, 38), (130, 61)]:
        grid = (-(-size[0] // 12), -(-size[1] // 12))
        shape = (2,) + grid
        rgb = rng.uniform(size=shape + (14, 14, 3)).astype(np.float32)
        alpha = rng.uniform(size=shape + (14, 14, 1)).astype(np.float32)
        importance = alpha + 0.01
        cell = np.stack(np.meshgrid(np.arange(grid[0]), np.arange(grid[1]), indexing="ij"), -1)
        extent = 48.0 * rng.uniform(0.1, 1.0, size=shape + (2,))
        centre = 12.0 * (cell + rng.uniform(-0.5, 1.5, size=shape + (2,)))
        boxes = np.concatenate([(centre - extent / 2) / size, extent / size], -1)
        background = rng.uniform(size=(2,) + size + (3,)).astype(np.float32)
        args = [tf.constant(a, tf.float32) for a in (rgb, alpha, importance, boxes,
                                                     background)]
        np.testing.assert_allclose(dynamic(*args).numpy(), render(*args).numpy(),
                                   atol=1e-5)


# --- The Fig. 2–3 runs' renderer (SPAIR_SPEC §6) ----------------------------------------

def weighted_kernel(rgb, weight, boxes, background):
    """auto_yolo's July-2018 render_sprites kernel, per pixel and per sprite (SPAIR_SPEC §6).

    weighted_sum = bg, weight_sum = 1; each sprite whose coordinate lies in (−1, S) adds its
    bilinear weight w' and w'·o' (both with taps outside the sprite reading 0) to them;
    output = weighted_sum / weight_sum.
    """
    batch, grid_h, grid_w, size_y, size_x, _ = rgb.shape
    _, height, width, _ = background.shape
    out = np.empty_like(background)
    for b in range(batch):
        for py in range(height):
            for px in range(width):
                weighted_sum, weight_sum = background[b, py, px].copy(), 1.0
                for i in range(grid_h):
                    for j in range(grid_w):
                        top, left, box_h, box_w = boxes[b, i, j]
                        sy = -0.5 + size_y * ((py + 0.5) / height - top) / box_h
                        sx = -0.5 + size_x * ((px + 0.5) / width - left) / box_w
                        if not (-1 < sy < size_y and -1 < sx < size_x):
                            continue
                        y0, x0 = math.floor(sy), math.floor(sx)
                        w_p, o_p = 0.0, np.zeros(rgb.shape[-1])
                        for yy, wy in ((y0, 1 - (sy - y0)), (y0 + 1, sy - y0)):
                            for xx, wx in ((x0, 1 - (sx - x0)), (x0 + 1, sx - x0)):
                                if 0 <= yy < size_y and 0 <= xx < size_x:
                                    w_p += wy * wx * weight[b, i, j, yy, xx, 0]
                                    o_p = o_p + wy * wx * rgb[b, i, j, yy, xx]
                        weight_sum += w_p
                        weighted_sum = weighted_sum + w_p * o_p
                out[b, py, px] = weighted_sum / weight_sum
    return out


def weighted_scene(height, width, seed, **kwargs):
    rgb, alpha_tilde, _, boxes, background = make_scene(height, width, seed, **kwargs)
    return rgb, np.exp(5.0 * (2.0 * alpha_tilde - 1.0)), boxes, background


@pytest.mark.parametrize("name", ["48x48 random", "50x38 non-multiple of 12",
                                  "all z_pres on, large overlapping boxes", "tiny boxes"])
def test_weighted_compositing_equals_the_july_2018_kernel(name):
    height, width, kwargs = SCENES[name]
    rgb, weight, boxes, background = weighted_scene(height, width, seed=5, **kwargs)
    expected = weighted_kernel(rgb, weight, boxes, background)
    for fn in (render, render_dense):
        got = fn(rgb, weight, None, boxes, background, compositing="weighted").numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12, err_msg=fn.__name__)


@pytest.mark.parametrize("renderer_name", list(RENDERERS))
@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_weighted_compositing_gradients_match_finite_differences(index, renderer_name):
    rgb, weight, boxes, background = weighted_scene(26, 20, seed=6, batch=1,
                                                    size_range=(0.3, 1.0))
    fn = RENDERERS[renderer_name]

    def weighted(rgb, weight, boxes, background):
        return fn(rgb, weight, None, boxes, background, compositing="weighted")

    analytic, numeric = _directional_check([rgb, weight, boxes, background], index,
                                           seed=index, render=weighted, output_index=3)
    assert abs(numeric) > 1e-3
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


def test_unknown_compositing_is_an_error():
    scene = make_scene(24, 24, seed=0, batch=1)
    with pytest.raises(ValueError, match=r"compositing='alpha'.*\('paper', 'weighted'\)"):
        render(*scene, compositing="alpha")
