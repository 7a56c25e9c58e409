"""The diagnostic scripts' own arithmetic (scripts/*_probe.py), against brute force."""

import importlib.util
import itertools
import os

import numpy as np
import pytest

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script(name):
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(REPOSITORY, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def extra_detection_probe():
    return _script("extra_detection_probe")


@pytest.fixture(scope="module")
def box_looseness_probe():
    return _script("box_looseness_probe")


@pytest.mark.parametrize("seed", range(5))
def test_count_distribution_equals_enumerating_every_on_off_pattern(extra_detection_probe,
                                                                  seed):
    beta = np.random.default_rng(seed).uniform(size=7)
    brute = np.zeros(len(beta) + 1)
    for pattern in itertools.product((0, 1), repeat=len(beta)):
        on = np.array(pattern)
        brute[on.sum()] += np.prod(np.where(on == 1, beta, 1 - beta))
    np.testing.assert_allclose(extra_detection_probe.count_distribution(beta), brute,
                               atol=1e-12)


def test_inside_share_and_kinds(extra_detection_probe):
    gt = np.array([10.0, 10.0, 20.0, 20.0])
    # The top half of the GT box: all of it inside, IoU 0.5 → a duplicate at the threshold.
    assert extra_detection_probe.inside_share(np.array([10.0, 10.0, 15.0, 20.0]), gt) == 1.0
    # A quarter of the GT box: inside, IoU 0.25 → a part.
    box = np.array([10.0, 10.0, 15.0, 15.0])
    assert extra_detection_probe.kind(0.25, extra_detection_probe.inside_share(box, gt)) \
        == "part"
    # Overlapping the GT box's corner by a quarter of its own area → background.
    box = np.array([15.0, 15.0, 25.0, 25.0])
    assert extra_detection_probe.inside_share(box, gt) == pytest.approx(0.25)
    assert extra_detection_probe.kind(0.14, 0.25) == "background"
    assert extra_detection_probe.kind(0.5, 0.0) == "duplicate"


def test_probe_finds_a_split_digit(extra_detection_probe):
    """Two cells above each other each holding a piece of the digit: a part in the next row."""
    gt = np.array([6.0, 2.0, 18.0, 10.0])  # crosses the row boundary at y = 12
    boxes = np.zeros((16, 4))
    boxes[:] = [40.0, 40.0, 44.0, 44.0]  # every other cell far away
    boxes[0] = [6.0, 2.0, 12.0, 10.0]    # cell (0, 0): the top half
    boxes[4] = [13.0, 2.0, 18.0, 10.0]   # cell (1, 0): the bottom 5 of 12 rows
    beta = np.full(16, 0.01)
    beta[0], beta[4] = 0.9, 0.6
    out = extra_detection_probe.probe(boxes, beta, gt, grid_width=4)
    assert out["second"]["kind"] == "part"
    assert out["second"]["cell_offset"] == [1, 0]
    assert out["gt_crosses_row_boundary"] and not out["gt_crosses_column_boundary"]
    assert out["extra_beta_mass"]["part"] == pytest.approx(0.6)
    assert out["extra_beta_mass"]["background"] == pytest.approx(0.14)
    assert out["p_count_ge_2"] > 0.9 * 0.6


def test_resized_boxes_keep_their_centres(box_looseness_probe):
    boxes = np.random.default_rng(0).uniform(0, 40, size=(20, 4))
    boxes[:, 2:] = boxes[:, :2] + np.random.default_rng(1).uniform(3, 15, size=(20, 2))
    out = box_looseness_probe.shrunk([boxes], 1.5, 2.5)[0]
    np.testing.assert_allclose(out[:, 2] - out[:, 0], boxes[:, 2] - boxes[:, 0] - 1.5)
    np.testing.assert_allclose(out[:, 3] - out[:, 1], boxes[:, 3] - boxes[:, 1] - 2.5)
    np.testing.assert_allclose(out[:, 0] + out[:, 2], boxes[:, 0] + boxes[:, 2])
    np.testing.assert_allclose(out[:, 1] + out[:, 3], boxes[:, 1] + boxes[:, 3])
    # Shrunk past zero: a sliver about the centre, never an inverted box.
    tiny = box_looseness_probe.shrunk([boxes], 100.0, 100.0)[0]
    assert np.all(tiny[:, 2] > tiny[:, 0]) and np.all(tiny[:, 3] > tiny[:, 1])


def _best_gt_by_loop(pred, gt):
    """Index of the GT box each prediction overlaps most, and that IoU, by plain loops."""
    best = []
    for p in pred:
        ious = []
        for g in gt:
            h = max(0.0, min(p[2], g[2]) - max(p[0], g[0]))
            w = max(0.0, min(p[3], g[3]) - max(p[1], g[1]))
            union = (p[2] - p[0]) * (p[3] - p[1]) + (g[2] - g[0]) * (g[3] - g[1]) - h * w
            ious.append(h * w / union)
        best.append((int(np.argmax(ious)), max(ious)))
    return best


@pytest.mark.parametrize("take_size, take_centre", [(True, True), (True, False),
                                                    (False, True)])
def test_oracle_boxes_take_the_most_overlapping_gt(box_looseness_probe, take_size,
                                                   take_centre):
    rng = np.random.default_rng(2)
    gt = np.array([[5.0, 5.0, 15.0, 12.0], [20.0, 25.0, 33.0, 34.0], [30.0, 3.0, 40.0, 9.0]])
    pred = np.concatenate([gt + rng.uniform(-2, 2, size=gt.shape),
                           [[44.0, 44.0, 47.0, 47.0]]])  # the last overlaps no GT box
    out = box_looseness_probe._with_gt([pred], [gt], take_size, take_centre)[0]
    for k, (index, iou) in enumerate(_best_gt_by_loop(pred, gt)):
        if iou == 0:
            np.testing.assert_array_equal(out[k], pred[k])
            continue
        size_from = gt[index] if take_size else pred[k]
        centre_from = gt[index] if take_centre else pred[k]
        np.testing.assert_allclose(out[k, 2:] - out[k, :2], size_from[2:] - size_from[:2])
        np.testing.assert_allclose(out[k, 2:] + out[k, :2], centre_from[2:] + centre_from[:2])
