"""Diagnostic: how well a SPAIR model's z_what tells the digits apart (addition task).

SPAIR-Fixed (Fig. 4) learns the sum from a frozen SPAIR's z_what means, and ours does not
fit even its training images (results/addition/digit_pool_probe_32k.json: 0.19 on its own
stage 1, 0.24 on the stand-in). This script asks whether the information is there. On the addition images (the model's flags,
--dataset=addition) it runs the model in mean mode, pairs each ground-truth digit with the
present cell whose box overlaps it most (IoU ≥ 0.5, else the digit is unmatched), and fits
two classifiers of the digit's class to the matched cells' z_what means:

- `linear`: multinomial logistic regression on standardised features (L2 1e-3, L-BFGS);
- `knn`: the 5 nearest training objects (Euclidean, standardised), majority vote.

Both are fitted on the objects of the first --probe_train_images training images and
scored on the objects of the test images (unseen digit instances). The same two
classifiers on the pixels of a 14×14 window centred on each GT box (`gt_pixels`) show what
the digit pool allows. With per-digit accuracy p and per-image count accuracy q, an
image's five digits are all right with probability about q·p⁵, a rough ceiling for a
classifier of the sum that reads these objects.

    PYTHONPATH=. python scripts/zwhat_digit_probe.py --model_dir=RUN \
        --flagfile=configs/addition/data.flags --output_json=PATH

RUN's flags.json gives the model (as for `python -m spair_tf.evaluate`).
"""

import sys

import numpy as np
from absl import flags
from scipy import optimize

from spair_tf import cli, flags_util, io_utils, metrics

FLAGS = flags.FLAGS
WINDOW = 14
N_CLASSES = 10
MATCH_IOU = 0.5


def match_objects(boxes, present, gt_boxes):
    """For each GT box, the present cell of highest IoU with it (≥ MATCH_IOU), or −1.

    boxes [K, 4], present bool [K], gt_boxes [G, 4] → int [G] cell indices."""
    cells = np.nonzero(present)[0]
    if len(cells) == 0 or len(gt_boxes) == 0:
        return np.full(len(gt_boxes), -1)
    iou = metrics.iou_matrix(gt_boxes, boxes[cells])                  # [G, K']
    best = iou.argmax(1)
    return np.where(iou[np.arange(len(gt_boxes)), best] >= MATCH_IOU, cells[best], -1)


def gt_windows(images, boxes, counts):
    """The WINDOW×WINDOW pixels centred on each GT box, flattened: float [ΣG, WINDOW²]."""
    half = WINDOW // 2
    padded = np.pad(images[..., 0], [(0, 0), (half, half), (half, half)]).astype(np.float32)
    out = []
    for i, count in enumerate(counts):
        for y0, x0, y1, x1 in boxes[i, :count]:
            cy, cx = int(round((y0 + y1) / 2)), int(round((x0 + x1) / 2))
            out.append(padded[i, cy:cy + WINDOW, cx:cx + WINDOW].ravel() / 255.0)
    return np.asarray(out, np.float32).reshape(-1, WINDOW * WINDOW)


def standardise(train, test):
    mean, std = train.mean(0), train.std(0) + 1e-6
    return (train - mean) / std, (test - mean) / std


def linear_loss(flat, x1, onehot, l2):
    """Mean cross-entropy of softmax(x1 @ W) + l2·|W without its bias row|², and its
    gradient; flat is W [D + 1, C] flattened, x1 the features with a column of ones."""
    w = flat.reshape(x1.shape[1], onehot.shape[1])
    logits = x1 @ w
    logits = logits - logits.max(1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    value = -(onehot * log_p).sum() / len(x1) + l2 * (w[:-1] ** 2).sum()
    grad = x1.T @ (np.exp(log_p) - onehot) / len(x1)
    grad[:-1] += 2 * l2 * w[:-1]
    return value, grad.ravel()


def fit_linear(x, y, l2=1e-3):
    """Multinomial logistic regression (`linear_loss`): weights [D + 1, C]."""
    x1 = np.concatenate([x, np.ones((len(x), 1), x.dtype)], 1).astype(np.float64)
    onehot = np.eye(N_CLASSES)[y]
    result = optimize.minimize(linear_loss, np.zeros(x1.shape[1] * N_CLASSES),
                               args=(x1, onehot, l2), jac=True, method="L-BFGS-B",
                               options={"maxiter": 500})
    return result.x.reshape(x1.shape[1], N_CLASSES)


def predict_linear(w, x):
    return (np.concatenate([x, np.ones((len(x), 1), x.dtype)], 1) @ w).argmax(1)


def predict_knn(train_x, train_y, x, k=5):
    """Majority class of the k nearest training points (ties: the smallest class)."""
    out = []
    for start in range(0, len(x), 500):
        chunk = x[start:start + 500]
        d = ((chunk[:, None, :] - train_x[None]) ** 2).sum(-1)
        nearest = np.argsort(d, axis=1, kind="stable")[:, :k]
        votes = np.apply_along_axis(np.bincount, 1, train_y[nearest], minlength=N_CLASSES)
        out.append(votes.argmax(1))
    return np.concatenate(out)


def accuracies(train_x, train_y, test_x, test_y):
    train_x, test_x = standardise(train_x, test_x)
    w = fit_linear(train_x, train_y)
    return {"linear": float(np.mean(predict_linear(w, test_x) == test_y)),
            "knn": float(np.mean(predict_knn(train_x, train_y, test_x) == test_y))}


def objects(model, data):
    """(z_what means [M, A] of the matched cells, their digit labels [M], the fraction of
    GT digits matched, the fraction of images counted right) for `data` in mean mode."""
    import tensorflow as tf

    encode = tf.function(lambda x: model.encode(x, mode="mean"), reduce_retracing=True)
    features, labels, matched, total, counted = [], [], 0, 0, 0
    for start in range(0, len(data), 32):
        images = tf.cast(data.images[start:start + 32], tf.float32) / 255.0
        out = encode(images)
        batch = images.shape[0]
        boxes = model.corner_boxes(out["box"]).numpy().reshape(batch, -1, 4)
        present = out["z_pres"].numpy().reshape(batch, -1) > 0.5
        what = out["what_mean"].numpy().reshape(batch, boxes.shape[1], -1)
        for b in range(batch):
            i = start + b
            count = data.counts[i]
            cells = match_objects(boxes[b], present[b], data.boxes[i, :count])
            found = cells >= 0
            features.append(what[b, cells[found]])
            labels.append(data.labels[i, :count][found])
            matched += int(found.sum())
            total += int(count)
            counted += int(present[b].sum() == count)
    return (np.concatenate(features), np.concatenate(labels), matched / total,
            counted / len(data))


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.output_json:
        raise ValueError("--output_json is required.")
    from spair_tf import evaluate

    adopted = flags_util.adopt_recorded_flags(FLAGS.model_dir)
    train_config, _, test_config = cli.data_configs()
    train, test = cli.load_data(train_config), cli.load_data(test_config)
    train = train.head(FLAGS.probe_train_images)
    model, checkpoint = evaluate.restore_model(FLAGS.model_dir, FLAGS.checkpoint,
                                               train.images.shape[1:])
    train_x, train_y, train_matched, _ = objects(model, train)
    test_x, test_y, test_matched, counted = objects(model, test)
    z_what = accuracies(train_x, train_y, test_x, test_y)

    def gt_labels(data):
        return np.concatenate([data.labels[i, :c] for i, c in enumerate(data.counts)])

    pixels = accuracies(gt_windows(train.images, train.boxes, train.counts), gt_labels(train),
                        gt_windows(test.images, test.boxes, test.counts), gt_labels(test))
    record = {
        "z_what": {**z_what, "train_objects": int(len(train_y)),
                   "test_objects": int(len(test_y)), "train_matched": train_matched,
                   "test_matched": test_matched},
        "gt_pixels": pixels,
        "test_count_accuracy": counted,
        "rough_ceiling_q_p5": {name: counted * (test_matched * acc) ** 5
                               for name, acc in z_what.items()},
        "checkpoint": checkpoint, "train_images": int(len(train)),
        "test_images": int(len(test)),
        "flags_from_record": {name: FLAGS[name].value for name in adopted},
        "command": "PYTHONPATH=. python " + " ".join(sys.argv),
    }
    io_utils.atomic_write_json(FLAGS.output_json, record, indent=1)
    print({"z_what": z_what, "gt_pixels": pixels, "test_matched": round(test_matched, 4),
           "test_count_accuracy": counted}, flush=True)


if __name__ == "__main__":
    from spair_tf import evaluate, train  # noqa: F401  (define the model, data and
    #                                      evaluation flags, --output_json, --checkpoint)
    flags.DEFINE_integer("probe_train_images", 2000, "Training images whose objects fit "
                         "the classifiers.")
    cli.run(main)
