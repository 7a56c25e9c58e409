"""Tests of spair_tf.metrics (SPAIR_SPEC §3) against independent references.

References: a naive per-pair IoU loop; pycocotools' COCOeval for the "coco" protocol; a
brute-force implementation of §3.1 written from the spec text (Python lists, exact
fractions for precision and recall) for the "paper" and "corrected" protocols; hand-built
cases whose AP is computed in closed form for each quirk of the original.
"""

import contextlib
import io
from fractions import Fraction

import numpy as np
import pytest

from spair_tf import metrics

THRESHOLDS = metrics.DEFAULT_IOU_THRESHOLDS


# ------------------------------------------------------------------------------
# Independent references

def naive_iou(a, b):
    """IoU of two [ymin, xmin, ymax, xmax] boxes, one pair at a time."""
    h = min(a[2], b[2]) - max(a[0], b[0])
    w = min(a[3], b[3]) - max(a[1], b[1])
    if h <= 0 or w <= 0:
        return 0.0
    inter = h * w
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def brute_force_ap(preds, scores, gts, threshold, protocol, batch_size=32):
    """SPAIR_SPEC §3.1 (protocol "paper") or §3.2 ("corrected") with lists and Fractions."""
    n = len(gts)
    if protocol == "paper":
        batches = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
    else:
        batches = [list(range(n))]
    total = Fraction(0)
    for batch in batches:
        records, n_gt = [], 0
        for i in batch:
            remaining = [list(g) for g in gts[i]]
            n_gt += len(remaining)
            had_gt = bool(remaining)
            order = sorted(range(len(preds[i])), key=lambda k: -scores[i][k])
            for k in order:
                if not remaining:
                    if protocol == "paper" and had_gt:
                        break          # the original drops the rest of this image
                    records.append((scores[i][k], 0))
                    continue
                ious = [naive_iou(preds[i][k], g) for g in remaining]
                best = ious.index(max(ious))
                if ious[best] > threshold:
                    records.append((scores[i][k], 1))
                    remaining.pop(best)
                else:
                    records.append((scores[i][k], 0))
        records = sorted(records, key=lambda r: -r[0])
        precisions, recalls, tp = [], [], 0
        for rank, (_, hit) in enumerate(records, start=1):
            tp += hit
            precisions.append(Fraction(tp, rank))
            recalls.append(Fraction(tp, n_gt) if n_gt else None)
        points = []
        for j in range(11):
            level = Fraction(j, 10)
            candidates = [p for p, r in zip(precisions, recalls) if r is not None and r >= level]
            points.append(max(candidates) if candidates else Fraction(0))
        total += len(batch) * sum(points) / 11
    return float(total / n)


def pycocotools_ap(preds, scores, gts, thresholds):
    """Per-threshold AP from COCOeval (bbox, one class, area 'all', no detection cap)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for i, (p, s, g) in enumerate(zip(preds, scores, gts)):
        images.append({"id": i + 1})
        for box in g:
            ymin, xmin, ymax, xmax = (float(v) for v in box)
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": 1,
                "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                "area": (xmax - xmin) * (ymax - ymin), "iscrowd": 0})
        for box, score in zip(p, s):
            ymin, xmin, ymax, xmax = (float(v) for v in box)
            results.append({"image_id": i + 1, "category_id": 1, "score": float(score),
                            "bbox": [xmin, ymin, xmax - xmin, ymax - ymin]})
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = {"images": images, "annotations": annotations,
                                "categories": [{"id": 1}]}
        ground_truth.createIndex()
        detections = ground_truth.loadRes(results)
        evaluation = COCOeval(ground_truth, detections, "bbox")
        evaluation.params.imgIds = [image["id"] for image in images]
        evaluation.params.iouThrs = np.array(thresholds, dtype=np.float64)
        evaluation.params.maxDets = [100000]
        evaluation.params.areaRng = [[0.0, 1e10]]
        evaluation.params.areaRngLbl = ["all"]
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][:, :, 0, 0, 0]                    # [T, R]
    assert np.all(precision > -1)
    return precision.mean(axis=1)


def random_boxes(rng, n, size=20, half=False):
    """Integer (or half-integer) boxes, so that xywh <-> xyxy conversions are exact."""
    corners = rng.integers(0, size, (n, 2, 2))
    low, high = corners.min(axis=1), corners.max(axis=1) + rng.integers(0, 3, (n, 2))
    boxes = np.concatenate([low, high], axis=1).astype(np.float64)
    if half:
        boxes += rng.integers(0, 2, boxes.shape) * 0.5
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
    return boxes


def random_detection_set(rng, max_images=10, max_gt=6, max_pred=8, half=False):
    """Varying counts, empty images, score ties, duplicated and near-duplicated boxes."""
    n = int(rng.integers(1, max_images + 1))
    preds, scores, gts = [], [], []
    for _ in range(n):
        g = random_boxes(rng, int(rng.integers(0, max_gt + 1)), half=half)
        k = int(rng.integers(0, max_pred + 1))
        p = random_boxes(rng, k, half=half)
        if len(g) and k and rng.random() < 0.6:
            m = min(k, len(g))
            p[:m] = g[rng.permutation(len(g))[:m]] + rng.integers(-1, 2, (m, 4)) * (
                rng.random() < 0.5)
            p[:, 2:] = np.maximum(p[:, 2:], p[:, :2])
        if k and rng.random() < 0.3:
            p[-1] = p[0]                                           # duplicate detection
        if rng.random() < 0.5:
            s = rng.choice([0.25, 0.5, 0.75], size=k)              # many ties
        else:
            s = rng.random(k)
        preds.append(p)
        scores.append(s)
        gts.append(g)
    return preds, scores, gts


# ------------------------------------------------------------------------------
# IoU

def test_iou_matrix_equals_naive_pairwise_iou():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 30, (17, 4))
    a[:, 2:] = a[:, :2] + rng.uniform(0, 10, (17, 2))
    b = rng.uniform(0, 30, (11, 4))
    b[:, 2:] = b[:, :2] + rng.uniform(0, 10, (11, 2))
    b[0, 2] = b[0, 0]                                  # a zero-height box
    expected = np.array([[naive_iou(x, y) for y in b] for x in a])
    np.testing.assert_allclose(metrics.iou_matrix(a, b), expected, rtol=1e-12, atol=0)


def test_iou_matrix_closed_forms():
    gt = np.array([[0.0, 0.0, 10.0, 10.0]])
    pred = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [5, 5, 15, 15], [10, 0, 20, 10],
                     [3, 3, 3, 8]], dtype=np.float64)
    # identical; half; 25 / 175; touching edges only; zero area.
    np.testing.assert_array_equal(metrics.iou_matrix(pred, gt)[:, 0],
                                  [1.0, 0.5, 25.0 / 175.0, 0.0, 0.0])
    assert metrics.iou_matrix(np.zeros((0, 4)), gt).shape == (0, 1)


# ------------------------------------------------------------------------------
# "coco" protocol = pycocotools

def test_coco_protocol_equals_pycocotools_on_random_detection_sets():
    rng = np.random.default_rng(1)
    compared = 0
    for trial in range(300):
        preds, scores, gts = random_detection_set(rng, half=trial % 2 == 1)
        if not sum(len(p) for p in preds) or not sum(len(g) for g in gts):
            continue          # pycocotools cannot load no results; no GT gives -1
        expected = pycocotools_ap(preds, scores, gts, THRESHOLDS)
        result = metrics.average_precision(preds, scores, gts, protocol="coco")
        np.testing.assert_allclose(list(result["AP_at"].values()), expected, atol=1e-6,
                                   rtol=0, err_msg=f"trial {trial}")
        assert result["AP"] == pytest.approx(expected.mean(), abs=1e-6)
        compared += 1
    assert compared > 250


def test_coco_protocol_equals_pycocotools_on_dense_large_set():
    rng = np.random.default_rng(2)
    preds, scores, gts = random_detection_set(rng, max_images=200, max_gt=12, max_pred=20)
    expected = pycocotools_ap(preds, scores, gts, THRESHOLDS)
    result = metrics.average_precision(preds, scores, gts, protocol="coco")
    np.testing.assert_allclose(list(result["AP_at"].values()), expected, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------
# "paper" and "corrected" protocols = brute force from the spec text

@pytest.mark.parametrize("batch_size", [1, 2, 3, 32])
def test_paper_protocol_equals_brute_force(batch_size):
    rng = np.random.default_rng(10 + batch_size)
    for trial in range(40):
        preds, scores, gts = random_detection_set(rng, max_images=9)
        result = metrics.average_precision(preds, scores, gts, protocol="paper",
                                           batch_size=batch_size)
        for t in THRESHOLDS:
            expected = brute_force_ap(preds, scores, gts, t, "paper", batch_size)
            assert result["AP_at"][t] == pytest.approx(expected, abs=1e-12), (trial, t)
        assert result["AP"] == pytest.approx(np.mean(list(result["AP_at"].values())))


def test_corrected_protocol_equals_brute_force():
    rng = np.random.default_rng(20)
    for trial in range(60):
        preds, scores, gts = random_detection_set(rng, max_images=9)
        result = metrics.average_precision(preds, scores, gts, protocol="corrected")
        for t in THRESHOLDS:
            expected = brute_force_ap(preds, scores, gts, t, "corrected")
            assert result["AP_at"][t] == pytest.approx(expected, abs=1e-12), (trial, t)


# ------------------------------------------------------------------------------
# The quirks of the paper protocol, one hand-built case each (closed-form AP)

SQUARE = [0.0, 0.0, 10.0, 10.0]
FAR = [30.0, 30.0, 40.0, 40.0]


def test_drop_after_exhaustion_raises_ap_over_corrected():
    # Image A: its GT found (0.9), then a spurious box (0.8); image B: GT found at 0.7.
    preds = [np.array([SQUARE, FAR]), np.array([SQUARE])]
    scores = [np.array([0.9, 0.8]), np.array([0.7])]
    gts = [np.array([SQUARE]), np.array([SQUARE])]
    paper = metrics.average_precision(preds, scores, gts, protocol="paper")
    corrected = metrics.average_precision(preds, scores, gts, protocol="corrected")
    # Paper: the spurious box is dropped, ranking TP, TP -> 1.
    assert paper["AP"] == pytest.approx(1.0)
    # Corrected: TP, FP, TP -> precision 1 up to recall 1/2, then 2/3 (5 of 11 points).
    assert corrected["AP"] == pytest.approx((6 * 1.0 + 5 * 2.0 / 3.0) / 11)


def test_per_batch_pooling_differs_from_global_pooling():
    # Image A: one GT, a confident miss (0.9); image B: one GT, a hit (0.5).
    preds = [np.array([FAR]), np.array([SQUARE])]
    scores = [np.array([0.9]), np.array([0.5])]
    gts = [np.array([SQUARE]), np.array([SQUARE])]
    per_image = metrics.average_precision(preds, scores, gts, protocol="paper", batch_size=1)
    pooled = metrics.average_precision(preds, scores, gts, protocol="paper", batch_size=2)
    assert per_image["AP"] == pytest.approx(0.5)          # (0 + 1) / 2
    # FP, TP pooled: precision 1/2 at recall 1/2 -> 6 of 11 points at 1/2.
    assert pooled["AP"] == pytest.approx(6 * 0.5 / 11)
    assert metrics.average_precision(preds, scores, gts, protocol="corrected")["AP"] == \
        pytest.approx(pooled["AP"])


def _two_hits_then_a_miss():
    """Three one-GT images: hit, hit, miss (batches of 2 give batch APs 1 and 0)."""
    preds = [np.array([SQUARE]), np.array([SQUARE]), np.array([FAR])]
    return preds, [np.ones(1)] * 3, [np.array([SQUARE])] * 3


def test_batch_mean_is_weighted_by_batch_size():
    # Batches of 2 and 1 image: [hit, hit] (AP 1) and [miss] (AP 0) -> 2/3, not 1/2.
    result = metrics.average_precision(*_two_hits_then_a_miss(), protocol="paper",
                                       batch_size=2)
    assert result["AP"] == pytest.approx(2.0 / 3.0)


def test_batch_standard_error_is_the_spread_of_brute_force_batch_aps():
    rng = np.random.default_rng(30)
    for trial in range(10):
        preds, scores, gts = random_detection_set(rng, max_images=9)
        n = len(gts) - len(gts) % 3
        if n < 6:
            continue
        preds, scores, gts = preds[:n], scores[:n], gts[:n]
        result = metrics.average_precision(preds, scores, gts, protocol="paper", batch_size=3)
        batch_aps = [np.mean([brute_force_ap(preds[s:s + 3], scores[s:s + 3], gts[s:s + 3],
                                             t, "paper", 3) for t in THRESHOLDS])
                     for s in range(0, n, 3)]
        # Equal batches: the textbook sd / √B.
        expected = np.std(batch_aps, ddof=1) / np.sqrt(len(batch_aps))
        assert result["AP_batch_se"] == pytest.approx(expected, abs=1e-12), trial


def test_batch_standard_error_weights_a_short_last_batch():
    # Batches of 2 and 1 image with APs 1 and 0: AP 2/3, weights 2/3 and 1/3, so
    # SE² = 2/1 · ((2/3)²(1/3)² + (1/3)²(2/3)²) = 16/81.
    preds, scores, gts = _two_hits_then_a_miss()
    result = metrics.average_precision(preds, scores, gts, protocol="paper", batch_size=2)
    assert result["AP_batch_se"] == pytest.approx(4.0 / 9.0)
    one_batch = metrics.average_precision(preds, scores, gts, protocol="paper", batch_size=32)
    assert one_batch["AP_batch_se"] is None
    assert "AP_batch_se" not in metrics.average_precision(preds, scores, gts,
                                                          protocol="corrected")


def test_match_requires_iou_strictly_above_threshold():
    # IoU exactly 0.5: not a match at 0.5 in the paper protocol, a match in COCO's (>=).
    preds = [np.array([[0.0, 0.0, 10.0, 5.0]])]
    scores = [np.ones(1)]
    gts = [np.array([SQUARE])]
    paper = metrics.average_precision(preds, scores, gts, protocol="paper")["AP_at"]
    coco = metrics.average_precision(preds, scores, gts, protocol="coco")["AP_at"]
    assert paper[0.4] == 1.0 and paper[0.5] == 0.0 and paper[0.6] == 0.0
    assert coco[0.5] == pytest.approx(1.0) and coco[0.6] == 0.0


def test_highest_iou_remaining_gt_first_on_ties_last_in_coco():
    # The first prediction overlaps both GTs equally; the second fits only GT 2.
    gt = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 10.0, 10.0, 20.0]])
    preds = [np.array([[0.0, 5.0, 10.0, 15.0], [0.0, 11.0, 10.0, 20.0]])]
    scores = [np.array([0.9, 0.8])]
    # Paper: 1st takes GT 1 (the first of the tied GTs, IoU 1/3), 2nd takes GT 2 (0.9).
    paper = metrics.average_precision(preds, scores, [gt], protocol="paper")["AP_at"]
    assert paper[0.3] == 1.0
    # COCO: 1st takes GT 2 (the last tied), 2nd only overlaps matched GT 2 -> FP.
    coco = metrics.average_precision(preds, scores, [gt], protocol="coco")["AP_at"]
    assert coco[0.3] == pytest.approx((51 * 1.0) / 101)          # recall 1/2 at precision 1


def test_predictions_on_image_without_gt_are_false_positives():
    preds = [np.array([SQUARE]), np.array([SQUARE])]
    scores = [np.array([0.9]), np.array([0.5])]
    gts = [np.zeros((0, 4)), np.array([SQUARE])]
    result = metrics.average_precision(preds, scores, gts, protocol="paper")
    assert result["AP"] == pytest.approx(11 * 0.5 / 11)            # FP then TP: 1/2


# ------------------------------------------------------------------------------
# Extremes

@pytest.mark.parametrize("protocol", metrics.PROTOCOLS)
def test_perfect_predictions_give_ap_one(protocol):
    rng = np.random.default_rng(3)
    gts = [random_boxes(rng, int(rng.integers(1, 6))) + [0, 0, 1, 1] for _ in range(70)]
    gts = [g[np.lexsort(g.T)] for g in gts]
    # Distinct boxes per image so that each prediction has a unique IoU-1 partner.
    gts = [np.unique(g, axis=0) for g in gts]
    preds = [g.copy() for g in gts]
    scores = [rng.random(len(g)) for g in gts]
    result = metrics.average_precision(preds, scores, gts, protocol=protocol)
    assert result["AP"] == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in result["AP_at"].values())


@pytest.mark.parametrize("protocol", metrics.PROTOCOLS)
def test_no_predictions_give_ap_zero(protocol):
    gts = [np.array([SQUARE])] * 5
    preds = [np.zeros((0, 4))] * 5
    scores = [np.zeros(0)] * 5
    assert metrics.average_precision(preds, scores, gts, protocol=protocol)["AP"] == 0.0


@pytest.mark.parametrize("protocol", metrics.PROTOCOLS)
def test_no_ground_truth_gives_ap_zero(protocol):
    preds = [np.array([SQUARE])] * 3
    scores = [np.ones(1)] * 3
    gts = [np.zeros((0, 4))] * 3
    assert metrics.average_precision(preds, scores, gts, protocol=protocol)["AP"] == 0.0


# ------------------------------------------------------------------------------
# Counts and the summary

def test_count_errors_closed_form():
    pred, true = [3, 5, 5, 0, 2], [3, 4, 7, 0, 1]
    assert metrics.count_abs_error(pred, true) == pytest.approx((0 + 1 + 2 + 0 + 1) / 5)
    assert metrics.count_01_error(pred, true) == pytest.approx(3 / 5)


def test_count_confusion_tallies_true_against_predicted():
    pred, true = [3, 5, 5, 0, 2, 5], [3, 4, 7, 0, 1, 4]
    assert metrics.count_confusion(pred, true) == {
        "0": {"0": 1}, "1": {"2": 1}, "3": {"3": 1}, "4": {"5": 2}, "7": {"5": 1}}
    rng = np.random.default_rng(0)
    pred, true = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    table = metrics.count_confusion(pred, true)
    dense = np.zeros((4, 4), int)
    np.add.at(dense, (true, pred), 1)                               # independent tally
    for n in range(4):
        for m in range(4):
            assert table.get(str(n), {}).get(str(m), 0) == dense[n, m]
    with pytest.raises(ValueError, match="one count per image"):
        metrics.count_confusion([1, 2], [1])


def test_evaluate_detections_combines_protocols_and_counts():
    rng = np.random.default_rng(4)
    preds, scores, gts = random_detection_set(rng, max_images=40)
    result = metrics.evaluate_detections(preds, scores, gts)
    assert set(result) == {"AP", "AP_at", "AP_batch_se", "AP_corrected", "AP_coco",
                           "count_abs_error", "count_01_error", "count_confusion"}
    assert result["AP"] == metrics.average_precision(preds, scores, gts)["AP"]
    assert result["AP_corrected"] == metrics.average_precision(
        preds, scores, gts, protocol="corrected")["AP"]
    assert result["AP_coco"] == metrics.average_precision(
        preds, scores, gts, protocol="coco")["AP"]
    k = np.array([len(p) for p in preds])
    g = np.array([len(x) for x in gts])
    assert result["count_abs_error"] == pytest.approx(np.abs(k - g).mean())
    assert result["count_01_error"] == pytest.approx((k != g).mean())
    explicit = metrics.evaluate_detections(preds, scores, gts, pred_counts=g)
    assert explicit["count_abs_error"] == 0.0 and explicit["count_01_error"] == 0.0


# ------------------------------------------------------------------------------
# Bad input

def test_bad_inputs_raise_clear_errors():
    box = [np.array([SQUARE])]
    one = [np.ones(1)]
    with pytest.raises(ValueError, match="protocol"):
        metrics.average_precision(box, one, box, protocol="voc")
    with pytest.raises(ValueError, match="lengths"):
        metrics.average_precision(box * 2, one, box)
    with pytest.raises(ValueError, match=r"\[K, 4\]"):
        metrics.average_precision([np.zeros((2, 3))], one, box)
    with pytest.raises(ValueError, match="one score per box"):
        metrics.average_precision(box, [np.ones(2)], box)
    with pytest.raises(ValueError, match="ymax < ymin"):
        metrics.average_precision([np.array([[5.0, 0.0, 1.0, 4.0]])], one, box)
    with pytest.raises(ValueError, match="NaN"):
        metrics.average_precision(box, [np.array([np.nan])], box)
    with pytest.raises(ValueError, match="batch_size"):
        metrics.average_precision(box, one, box, batch_size=0)
    with pytest.raises(ValueError, match="iou_thresholds"):
        metrics.average_precision(box, one, box, iou_thresholds=[0.5, 1.5])
    with pytest.raises(TypeError, match="lists"):
        metrics.average_precision(np.zeros((1, 1, 4)), one, box)
    with pytest.raises(ValueError, match="one count per image"):
        metrics.count_abs_error([1, 2], [1])


def test_box_agreement_pairs_each_gt_with_its_best_prediction():
    """Hand-built: image 0 has a prediction 2 px taller (1 px each side) than its GT and one
    shifted 3 px right of another GT; image 1 has a GT with no overlapping prediction."""
    gts = [np.array([[10, 10, 20, 18], [30, 30, 40, 40]], float),
           np.array([[0, 0, 5, 5]], float)]
    preds = [np.array([[33, 1, 43, 5], [9, 10, 21, 18], [30, 33, 40, 43]], float),
             np.array([[20, 20, 30, 30]], float)]
    result = metrics.box_agreement(preds, gts)
    iou_a = (10 * 8) / (12 * 8)                     # nested: GT area over prediction area
    iou_b = (10 * 7) / (10 * 10 + 10 * 10 - 10 * 7)  # 3-px shift of a 10×10 box
    assert result["n_gt"] == 3 and result["n_matched"] == 2
    assert result["iou_mean"] == pytest.approx((iou_a + iou_b) / 2)
    assert result["iou_median"] == pytest.approx((iou_a + iou_b) / 2)
    assert result["fraction_iou_above"] == {"0.5": pytest.approx(2 / 3),  # 0.83, 0.54, 0
                                            "0.7": pytest.approx(1 / 3)}
    diff = result["mean_difference_px"]
    assert diff["height"] == pytest.approx(1.0) and diff["width"] == pytest.approx(0.0)
    assert diff["centre_y"] == pytest.approx(0.0) and diff["centre_x"] == pytest.approx(1.5)
    assert diff["top"] == pytest.approx(-0.5) and diff["bottom"] == pytest.approx(0.5)
    assert diff["left"] == pytest.approx(1.5) and diff["right"] == pytest.approx(1.5)
    # Agrees with a brute-force pairing over random boxes.
    rng = np.random.default_rng(0)
    gts, preds = [], []
    for _ in range(20):
        g = rng.uniform(0, 40, (3, 2))
        gts.append(np.concatenate([g, g + rng.uniform(2, 12, (3, 2))], 1))
        p = rng.uniform(0, 40, (4, 2))
        preds.append(np.concatenate([p, p + rng.uniform(2, 12, (4, 2))], 1))
    result = metrics.box_agreement(preds, gts)
    best, heights = [], []
    for p, g in zip(preds, gts):
        for box in g:
            ious = [metrics.iou_matrix(box[None], q[None])[0, 0] for q in p]
            k = int(np.argmax(ious))
            best.append(ious[k])
            if ious[k] > 0:
                heights.append((p[k, 2] - p[k, 0]) - (box[2] - box[0]))
    matched = [b for b in best if b > 0]
    assert result["n_matched"] == len(matched)
    assert result["iou_mean"] == pytest.approx(np.mean(matched))
    assert result["mean_difference_px"]["height"] == pytest.approx(np.mean(heights))
    assert result["fraction_iou_above"]["0.5"] == pytest.approx(np.mean(np.array(best) > 0.5))
