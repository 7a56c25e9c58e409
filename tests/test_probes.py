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
