"""The diagnostic scripts' own arithmetic (scripts/*_probe.py), against brute force."""

import dataclasses
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


def test_digit_pool_probe_sets():
    """The seen-digits set is the test set's configuration on the training digit pool:
    its digits are training digits, the test set's are not (crops against the pools)."""
    from spair_tf import datasets, digits

    probe = _script("addition_digit_pool_probe")
    config = datasets.ScatterConfig(min_digits=1, max_digits=1, n_images=12, split="test",
                                    seed=2)
    train = datasets.generate(dataclasses.replace(config, split="train", seed=0))
    test = datasets.generate(config)
    small = probe.probe_sets(train, test, (dataclasses.replace(config, split="train",
                                                                digits_per_class=3), config),
                             load=lambda c: c, n_images=5)["seen_digits"]
    assert (small.split, small.seed, small.digits_per_class) == ("train", 2, 3)
    train_config = dataclasses.replace(config, split="train", seed=0)
    sets = probe.probe_sets(train, test, (train_config, config), load=datasets.generate,
                            n_images=5)
    assert sets["test"] is test
    for name in ("images", "boxes", "counts", "labels"):
        np.testing.assert_array_equal(getattr(sets["train_images"], name),
                                      getattr(train, name)[:5])

    def crops(data):  # each image's one digit, cut at its box (inclusive pixel indices)
        return {data.images[i, y0:y1 + 1, x0:x1 + 1, 0].tobytes()
                for i, (y0, x0, y1, x1) in enumerate(data.boxes[:, 0].astype(int))}

    def trimmed(pool):  # each sprite cut at its nonzero rows and columns
        out = set()
        for sprite in np.round(pool * 255).astype(np.uint8):
            rows, cols = np.nonzero(sprite.any(1))[0], np.nonzero(sprite.any(0))[0]
            out.add(sprite[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].tobytes())
        return out

    pools = digits.digit_pools()
    train_pool, test_pool = trimmed(pools["train"][0]), trimmed(pools["test"][0])
    assert crops(sets["seen_digits"]) <= train_pool
    assert not crops(sets["seen_digits"]) & test_pool
    assert crops(test) <= test_pool


@pytest.fixture(scope="module")
def zwhat_digit_probe():
    return _script("zwhat_digit_probe")


def test_zwhat_probe_matching_against_brute_force(zwhat_digit_probe):
    rng = np.random.default_rng(0)
    for _ in range(50):
        k, g = rng.integers(1, 8), rng.integers(0, 5)
        corner = rng.uniform(0, 30, (k + g, 2))
        size = rng.uniform(4, 14, (k + g, 2))
        boxes = np.concatenate([corner, corner + size], 1)
        cells, gt = boxes[:k], boxes[k:]
        present = rng.random(k) < 0.7
        got = zwhat_digit_probe.match_objects(cells, present, gt)
        for row, box in enumerate(gt):
            best, best_iou = -1, -1.0
            for cell in range(k):
                if not present[cell]:
                    continue
                y0, x0 = max(box[0], cells[cell, 0]), max(box[1], cells[cell, 1])
                y1, x1 = min(box[2], cells[cell, 2]), min(box[3], cells[cell, 3])
                inter = max(0, y1 - y0) * max(0, x1 - x0)
                union = ((box[2] - box[0]) * (box[3] - box[1])
                         + (cells[cell, 2] - cells[cell, 0]) * (cells[cell, 3] - cells[cell, 1])
                         - inter)
                if inter / union > best_iou:
                    best, best_iou = cell, inter / union
            assert got[row] == (best if best_iou >= 0.5 else -1)


def test_zwhat_probe_classifiers(zwhat_digit_probe):
    probe = zwhat_digit_probe
    rng = np.random.default_rng(1)
    # The loss's gradient against central differences.
    x1 = np.concatenate([rng.normal(size=(30, 4)), np.ones((30, 1))], 1)
    onehot = np.eye(10)[rng.integers(0, 10, 30)]
    flat = rng.normal(size=5 * 10)
    _, grad = probe.linear_loss(flat, x1, onehot, 0.1)
    step = 1e-6
    numeric = [(probe.linear_loss(flat + step * e, x1, onehot, 0.1)[0]
                - probe.linear_loss(flat - step * e, x1, onehot, 0.1)[0]) / (2 * step)
               for e in np.eye(len(flat))]
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)
    # k-NN against a per-point loop.
    train_x, train_y = rng.normal(size=(200, 3)), rng.integers(0, 10, 200)
    test_x = rng.normal(size=(40, 3))
    expected = []
    for point in test_x:
        nearest = np.argsort(((train_x - point) ** 2).sum(1), kind="stable")[:5]
        expected.append(np.bincount(train_y[nearest], minlength=10).argmax())
    np.testing.assert_array_equal(probe.predict_knn(train_x, train_y, test_x), expected)
    # Separable classes: the linear fit gets them right, the shuffled labels do not.
    centres = rng.normal(scale=5, size=(10, 6))
    y = rng.integers(0, 10, 500)
    x = centres[y] + rng.normal(size=(500, 6))
    assert probe.accuracies(x[:400], y[:400], x[400:], y[400:])["linear"] > 0.95
    assert probe.accuracies(x[:400], rng.permutation(y[:400]), x[400:], y[400:])["linear"] < 0.4


def test_zwhat_probe_gt_windows(zwhat_digit_probe):
    images = np.zeros((1, 30, 30, 3), np.uint8)
    images[0, 10:15, 20:23] = 255
    windows = zwhat_digit_probe.gt_windows(images, np.array([[[10, 20, 14, 22]]], np.float32),
                                           np.array([1]))
    expected = np.zeros((14, 14), np.float32)
    # box centre (12, 21) → window rows 5..18, columns 14..27 of the image
    expected[10 - 5:15 - 5, 20 - 14:23 - 14] = 1.0
    np.testing.assert_array_equal(windows.reshape(14, 14), expected)
