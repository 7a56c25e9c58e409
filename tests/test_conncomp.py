"""Tests of baselines.conncomp (SPAIR_SPEC §4.1) against independent references.

References: scipy.ndimage.label with the 4-connectivity structure (partitions compared as
equivalence classes, independent of label values), scipy.ndimage.find_objects for boxes,
the foreground rule written in numpy, and a synthetic image whose best τ is known by
construction.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from baselines import conncomp

FOUR_CONNECTED = scipy.ndimage.generate_binary_structure(2, 1)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scipy_labels(masks):
    return np.stack([scipy.ndimage.label(m, structure=FOUR_CONNECTED)[0] for m in masks]) \
        if len(masks) else np.zeros(np.shape(masks), np.int32)


def assert_same_partition(labels, reference, masks):
    """Same background and same equivalence classes of foreground pixels, per image."""
    labels, reference = np.asarray(labels), np.asarray(reference)
    assert labels.shape == reference.shape
    np.testing.assert_array_equal(labels > 0, masks)
    image = np.broadcast_to(np.arange(len(masks))[:, None, None], masks.shape)[masks]
    ours, theirs = labels[masks].astype(np.int64), reference[masks].astype(np.int64)
    n_ours = len(np.unique(np.stack([image, ours]), axis=1).T)
    n_theirs = len(np.unique(np.stack([image, theirs]), axis=1).T)
    n_pairs = len(np.unique(np.stack([image, ours, theirs]), axis=1).T)
    # A bijection between our classes and scipy's within every image.
    assert n_ours == n_theirs == n_pairs


def spiral(n):
    """A one-pixel-wide square spiral filling an n×n mask: one very long component."""
    mask = np.zeros((n, n), bool)
    top, left, bottom, right = 0, 0, n - 1, n - 1
    y, x = 0, 0
    mask[0, 0] = True
    direction = 0
    moves = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    while True:
        dy, dx = moves[direction]
        ny, nx = y + dy, x + dx
        # Advance while the cell two steps ahead is not part of the spiral.
        if 0 <= ny < n and 0 <= nx < n and not mask[ny, nx] and not (
                0 <= ny + dy < n and 0 <= nx + dx < n and mask[ny + dy, nx + dx]):
            y, x = ny, nx
            mask[y, x] = True
            continue
        direction = (direction + 1) % 4
        dy, dx = moves[direction]
        ny, nx = y + dy, x + dx
        if not (0 <= ny < n and 0 <= nx < n) or mask[ny, nx] or (
                0 <= ny + dy < n and 0 <= nx + dx < n and mask[ny + dy, nx + dx]):
            return mask


def serpentine(h, w):
    """Rows joined alternately at the right and left ends: a snake of length ≈ h·w/2."""
    mask = np.zeros((h, w), bool)
    mask[::2] = True
    for row in range(1, h, 2):
        mask[row, w - 1 if (row // 2) % 2 == 0 else 0] = True
    return mask


# ------------------------------------------------------------------------------
# Partitions equal scipy's

SHAPES = [(1, 1), (1, 40), (40, 1), (3, 7), (8, 13), (16, 16), (47, 13), (48, 48)]


def random_masks(rng, shape, count):
    density = rng.uniform(0.02, 0.98, size=(count, 1, 1))
    return rng.random((count,) + shape) < density


def test_partition_equals_scipy_on_10000_random_masks():
    rng = np.random.default_rng(0)
    per_shape = 10_000 // len(SHAPES) + 1
    total = 0
    for shape in SHAPES:
        masks = random_masks(rng, shape, per_shape)
        labels = conncomp.connected_components(masks).numpy()
        assert labels.dtype == np.int32
        assert_same_partition(labels, scipy_labels(masks), masks)
        total += len(masks)
    assert total >= 10_000


def test_labels_are_consecutive_in_raster_order_of_first_pixel():
    # Our documented numbering is scipy's: 1..K per image, by each component's first pixel.
    rng = np.random.default_rng(1)
    masks = random_masks(rng, (20, 31), 300)
    labels = conncomp.connected_components(masks).numpy()
    np.testing.assert_array_equal(labels, scipy_labels(masks))
    for lab in labels:
        k = lab.max()
        assert set(np.unique(lab)) == set(range(k + 1))


WORST_CASES = {
    "spiral48": spiral(48),
    "spiral97": spiral(97),
    "serpentine48": serpentine(48, 48),
    "serpentine_tall": serpentine(95, 7),
    "checkerboard": np.add.outer(np.arange(48), np.arange(48)) % 2 == 0,
    "empty": np.zeros((48, 48), bool),
    "full": np.ones((48, 48), bool),
    "odd": np.random.default_rng(2).random((47, 13)) < 0.55,
    "rings": np.isin(np.maximum.outer(np.abs(np.arange(-20, 21)),
                                      np.abs(np.arange(-20, 21))) % 4, (0, 1)),
}


def test_worst_cases_equal_scipy():
    # One batch (zero-padded to 97×97, which joins nothing): one compilation.
    masks = np.zeros((len(WORST_CASES), 97, 97), bool)
    for i, mask in enumerate(WORST_CASES.values()):
        masks[i, :mask.shape[0], :mask.shape[1]] = mask
    labels = conncomp.connected_components(masks).numpy()
    assert_same_partition(labels, scipy_labels(masks), masks)
    counts = dict(zip(WORST_CASES, labels.max(axis=(1, 2))))
    for name in ("spiral48", "spiral97", "serpentine48", "serpentine_tall", "full"):
        assert counts[name] == 1, name
    assert counts["checkerboard"] == 48 * 48 // 2 and counts["empty"] == 0


@pytest.mark.parametrize("mask", [
    np.ones((1, 1), bool), np.zeros((1, 1), bool),
    np.array([[1, 1, 0, 1, 0, 0, 1, 1, 1]], bool),
    np.array([[1, 1, 0, 1, 0, 0, 1, 1, 1]], bool).T,
], ids=["one_on", "one_off", "row", "column"])
def test_degenerate_shapes_equal_scipy(mask):
    labels = conncomp.connected_components(mask[None]).numpy()
    np.testing.assert_array_equal(labels, scipy_labels(mask[None]))


def test_images_in_a_batch_are_labelled_independently():
    # The same pixels touching across the image boundary must not join.
    masks = np.zeros((3, 4, 4), bool)
    masks[0, 3, :] = True       # last row of image 0
    masks[1, 0, :] = True       # first row of image 1 (next in memory)
    masks[2, :, 0] = True
    labels = conncomp.connected_components(masks).numpy()
    assert [lab.max() for lab in labels] == [1, 1, 1]
    # Within a row, the last column does not touch the next row's first column.
    row_wrap = np.zeros((1, 3, 4), bool)
    row_wrap[0, 0, 3] = row_wrap[0, 1, 0] = True
    assert conncomp.connected_components(row_wrap).numpy().max() == 2


def test_runs_inside_tf_function_with_unknown_batch_and_size():
    @tf.function(input_signature=[tf.TensorSpec([None, None, None], tf.bool)])
    def label(mask):
        return conncomp.connected_components(mask)

    rng = np.random.default_rng(3)
    for shape in [(5, 9, 11), (2, 48, 48)]:
        masks = rng.random(shape) < 0.5
        assert_same_partition(label(tf.constant(masks)).numpy(), scipy_labels(masks), masks)


def test_empty_batch():
    assert conncomp.connected_components(np.zeros((0, 5, 5), bool)).shape == (0, 5, 5)


def test_wrong_dtype_or_rank_raises():
    with pytest.raises(TypeError, match="boolean"):
        conncomp.connected_components(np.zeros((1, 4, 4), np.float32))
    with pytest.raises(TypeError, match="boolean"):
        conncomp.connected_components(tf.zeros((1, 4, 4), tf.int32))
    with pytest.raises(ValueError, match="rank 3"):
        conncomp.connected_components(np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="rank 3"):
        conncomp.connected_components(np.zeros((1, 4, 4, 1), bool))


# ------------------------------------------------------------------------------
# Foreground mask and detections

def test_foreground_mask_is_summed_absolute_difference_at_least_tau():
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (6, 9, 7, 3)).astype(np.float32) / 255.0
    background = (0.2, 0.5, 1.0)
    distance = np.abs(images - np.array(background, np.float32)).sum(axis=-1)
    for tau in [0.0, 0.01, 0.3, 1.1, 2.5]:
        expected = distance >= np.float32(tau)
        got = conncomp.foreground_mask(images, tau, background).numpy()
        np.testing.assert_array_equal(got, expected)
    # Inclusive: a pixel exactly at distance τ is foreground.
    image = np.zeros((1, 1, 2, 3), np.float32)
    image[0, 0, 0] = [0.25, 0.25, 0.0]
    assert conncomp.foreground_mask(image, 0.5).numpy().tolist() == [[[True, False]]]
    # uint8 images are divided by 255.
    as_uint8 = (images * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(conncomp.foreground_mask(as_uint8, 0.3, background),
                                  conncomp.foreground_mask(images, 0.3, background))


def reference_boxes(mask):
    """[ymin, xmin, ymax, xmax] per component, in label order, from scipy.find_objects."""
    labels = scipy.ndimage.label(mask, structure=FOUR_CONNECTED)[0]
    return np.array([[s[0].start, s[1].start, s[0].stop - 1, s[1].stop - 1]
                     for s in scipy.ndimage.find_objects(labels)], np.float32).reshape(-1, 4)


def test_conncomp_detect_boxes_equal_reference():
    rng = np.random.default_rng(5)
    images = np.zeros((40, 30, 26, 3), np.float32)
    mask = rng.random((40, 30, 26)) < rng.uniform(0.05, 0.6, (40, 1, 1))
    images[mask] = rng.uniform(0.2, 1.0, (mask.sum(), 1))
    boxes, scores = conncomp.conncomp_detect(images, tau=0.05)
    assert len(boxes) == len(scores) == 40
    for b, s, m in zip(boxes, scores, mask):
        assert b.dtype == np.float32 and s.dtype == np.float32
        np.testing.assert_array_equal(b, reference_boxes(m))
        np.testing.assert_array_equal(s, np.ones(len(b)))


def test_conncomp_detect_over_several_chunks():
    # More images than one labelling call takes (1,000): boxes keep their image.
    rng = np.random.default_rng(6)
    mask = rng.random((1100, 4, 5)) < 0.4
    images = np.repeat(mask[..., None], 3, axis=-1).astype(np.float32)
    boxes, _ = conncomp.conncomp_detect(images, tau=1.0)
    for b, m in zip(boxes, mask):
        np.testing.assert_array_equal(b, reference_boxes(m))


def test_bad_detection_inputs_raise():
    with pytest.raises(ValueError, match="tau"):
        conncomp.foreground_mask(np.zeros((1, 4, 4, 3)), -0.1)
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        conncomp.foreground_mask(np.zeros((4, 4, 3)), 0.1)
    with pytest.raises(ValueError, match="background"):
        conncomp.foreground_mask(np.zeros((1, 4, 4, 3)), 0.1, background=(0, 0))
    with pytest.raises(TypeError, match="float"):
        conncomp.foreground_mask(np.zeros((1, 4, 4, 3), np.int64), 0.1)


# ------------------------------------------------------------------------------
# τ search

def bridged_squares(n_images=4):
    """Two bright 6×6 squares joined by a faint bridge (distance 3·0.1 = 0.3 to black).

    τ ≤ 0.3 merges them into one component (one box covering both, AP 0 at every IoU
    threshold above 0.5 and far from 1 overall); 0.3 < τ ≤ 3 finds exactly the two GT
    boxes (AP 1); τ > 3 finds nothing (AP 0).
    """
    images = np.zeros((n_images, 20, 20, 3), np.float32)
    images[:, 2:8, 2:8] = 1.0
    images[:, 2:8, 12:18] = 1.0
    images[:, 4, 8:12] = 0.1
    gts = [np.array([[2, 2, 7, 7], [2, 12, 7, 17]], np.float32)] * n_images
    return images, gts


def test_search_tau_finds_known_best_and_breaks_ties_to_smallest():
    images, gts = bridged_squares()
    taus = [0.1, 0.2, 0.29, 0.35, 0.5, 3.0, 3.1]
    best, table = conncomp.search_tau(images, gts, taus)
    assert best == pytest.approx(0.35)
    aps = [row["AP"] for row in table]
    assert [row["tau"] for row in table] == pytest.approx(taus)
    assert aps[3:6] == [1.0, 1.0, 1.0] and aps[6] == 0.0 and max(aps[:3]) < 0.5


def test_search_tau_validates_inputs():
    images, gts = bridged_squares()
    with pytest.raises(ValueError, match="taus"):
        conncomp.search_tau(images, gts, [])
    with pytest.raises(ValueError, match="one array per image"):
        conncomp.search_tau(images, gts[:2], [0.5])


# ------------------------------------------------------------------------------
# Command line

def run_in_process(capsys, *args):
    status = conncomp.run(["conncomp", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("args", [
    ["--n_digits", "3", "--tau", "-1", "--output_json", "x.json"],
    ["--n_digits", "3", "--output_json", "x.json"],
    ["--n_digits", "3", "--tau", "0.1", "--tau_search", "--output_json", "x.json"],
    ["--n_digits", "3", "--tau", "0.1", "--split", "bogus"],
    ["--n_digits", "3", "--tau", "0.1"],
    ["--paper_table", "--benchmark"],
    ["--experiment2_table", "--paper_table", "--output_json", "x.json"],
    ["--n_digits", "99", "--tau", "0.1", "--output_json", "x.json"],
], ids=["negative_tau", "no_tau", "tau_and_search", "bad_split", "no_output",
        "two_modes", "two_tables", "too_many_digits"])
def test_cli_user_mistakes_exit_2_with_one_line(capsys, monkeypatch, tmp_path, args):
    monkeypatch.chdir(tmp_path)
    status, out, err = run_in_process(capsys, *args)
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:"), err
    assert not os.path.exists(tmp_path / "x.json")


def test_cli_process_exit_status_and_no_traceback():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "baselines.conncomp", "--n_digits", "3", "--tau", "-1",
         "--output_json", "x.json"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert [l for l in result.stderr.splitlines() if l.startswith("error:")] == [
        "error: flag --tau=-1: -1.0 is not a non-negative number"]


def test_cli_evaluates_experiment1_data_and_writes_all_keys(capsys, tmp_path):
    import json

    output = tmp_path / "out.json"
    status, out, _ = run_in_process(capsys, "--n_digits", "1", "--tau", "0.01",
                                    "--n_images", "40", "--output_json", str(output))
    assert status == 0
    written = json.loads(output.read_text())
    assert {"AP", "AP_at", "AP_corrected", "AP_coco", "count_abs_error", "count_01_error",
            "tau", "n_images", "protocol", "command"} <= set(written)
    assert written["n_images"] == 40 and written["tau"] == 0.01
    assert written["command"] == ("python -m baselines.conncomp --n_digits 1 --tau 0.01 "
                                  f"--n_images 40 --output_json {output}")
    assert len(out.strip().splitlines()) == 1


def test_cli_experiment2_table_uses_the_papers_tau_per_n(capsys, tmp_path):
    """One row per n = 1..20 on full 84×84 images, at the original's τ for AP, with the
    paper's Fig. 3 figures beside the rows that have them."""
    import json

    from spair_tf import paper_numbers

    output = tmp_path / "e2.json"
    status, out, _ = run_in_process(capsys, "--experiment2_table", "--n_images", "4",
                                    "--output_json", str(output))
    assert status == 0
    per_n = json.loads(output.read_text())["per_n"]
    assert sorted(map(int, per_n)) == list(range(1, 21))
    for n, row in per_n.items():
        assert row["tau"] == paper_numbers.CONNCOMP_TAU_EXPERIMENT2_AP[int(n)]
        assert row["n_images"] == 4 and 0.0 <= row["AP_paper_protocol"] <= 100.0
        assert row["AP_paper_figure"] == paper_numbers.EXPERIMENT2["AP"]["CC"].get(int(n))
    assert per_n["20"]["count_abs_error_paper_figure"] == 2.799
    assert len(out.strip().splitlines()) == 20


def test_count_tau_search_picks_the_tau_scipy_counts_say_is_best():
    """The re-tuned τ of each count metric equals a brute force over the grid with
    scipy.ndimage.label's component counts (smallest τ on ties)."""
    import scipy.ndimage

    from spair_tf import metrics

    rng = np.random.default_rng(3)
    images = scipy.ndimage.gaussian_filter(rng.random((24, 20, 20, 3)), (0, 1.5, 1.5, 0))
    images = (images - images.min()) / (images.max() - images.min())            # [24,20,20,3]
    # Multiples of 1/256: every channel sum is exact in float32 and float64 alike, so both
    # sides threshold the same distances whatever their summation order.
    images = np.round(images * 256) / 256
    true_counts = rng.integers(1, 6, size=24)
    taus = np.linspace(0.6, 2.4, 13)
    distance = np.abs(images).sum(axis=-1)
    structure = scipy.ndimage.generate_binary_structure(2, 1)
    reference = {}
    for name, error in (("count_abs_error", metrics.count_abs_error),
                        ("count_01_error", metrics.count_01_error)):
        values = [error([scipy.ndimage.label(d >= np.float32(t), structure)[1]
                         for d in distance], true_counts) for t in taus]
        assert len(set(values)) > 3, values   # the choice of τ matters on these images
        reference[name] = {"tau": float(taus[int(np.argmin(values))]), "value": min(values)}
    found = conncomp.count_tau_search(images.astype(np.float32), true_counts, taus)
    assert found.keys() == reference.keys()
    for name in reference:
        assert found[name]["tau"] == reference[name]["tau"], name
        assert found[name]["value"] == pytest.approx(reference[name]["value"]), name


def test_benchmark_agrees_with_scipy_and_times_each_side():
    result = conncomp.benchmark(n_masks=20, size=12, density=0.5, repeats=2, seed=3)
    assert result["labels_equal_scipy"] is True
    for key in ("tf_seconds_best", "scipy_loop_seconds_best", "xla_pass_seconds_best"):
        assert 0 < result[key] < 60, (key, result[key])
    assert result["tf_over_xla_pass"] == pytest.approx(
        result["tf_seconds_best"] / result["xla_pass_seconds_best"])
