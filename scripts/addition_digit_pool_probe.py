"""Diagnostic: how much of a Fig. 4 run's test error is unseen digit instances.

Our addition images draw each split's digits from its own pool (SPAIR_SPEC §2.1: 4,000
training digits, 400 per class), where the original drew from EMNIST's far larger splits.
TrueBB, whose boxes are exact, overfits here (training batches ≈ 0.95, test 0.69). This
script restores a finished stage-2 run's best checkpoint and measures its sum accuracy on
three sets of 1,000 images (the run's own flags otherwise):

- `train_images`: the first 1,000 of its training images (seen images);
- `seen_digits`: new images (the test split's seed) drawn from the training digit pool
  (as the run drew it, --train_digits_per_class included): digits seen in training, in
  new combinations;
- `test`: the run's test set (the test digit pool: digits never seen).

The drop from `train_images` to `seen_digits` is the cost of new combinations, and the drop
from `seen_digits` to `test` the cost of new digit instances.

    PYTHONPATH=. python scripts/addition_digit_pool_probe.py \
        --flagfile=configs/addition/truebb.flags --train_images=32000 \
        --model_dir=<a copy of results/addition/truebb_32k_state> --output_json=PATH

A SPAIR or AIR run also needs --stage1_dir (and --flagfile of its stage 1), as for
`python -m spair_tf.addition`. The copy is needed because the run's directory is opened as
for resuming (nothing is written to it by this script).
"""

import dataclasses
import sys

from absl import flags

from spair_tf import addition, cli, io_utils

FLAGS = flags.FLAGS
PROBE_IMAGES = 1000


def probe_sets(train, test, configs, load=cli.load_data, n_images=PROBE_IMAGES):
    """{name: dataset} of the three evaluation sets (module docstring). configs: the
    (train, test) ScatterConfigs; load: ScatterConfig → dataset."""
    train_config, test_config = configs
    first = train.head(n_images)
    seen = load(dataclasses.replace(test_config, split="train",
                                    digits_per_class=train_config.digits_per_class))
    return {"train_images": first, "seen_digits": seen, "test": test}


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.output_json:
        raise ValueError("--output_json is required.")
    run = addition.stage2_from_flags()
    stage2, (train, _, test), (train_config, _, test_config) = run.stage2, run.data, run.configs
    checkpoint = stage2.checkpoints.restore_best(FLAGS.model_dir)
    if checkpoint is None:
        raise ValueError(f"{FLAGS.model_dir} has no best checkpoint: pass a finished run.")
    sets = probe_sets(train, test, (train_config, test_config))
    accuracy = {name: stage2.accuracy(data, stage2.config.batch_size)
                for name, data in sets.items()}
    record = {"accuracy": accuracy,
              "n_images": {name: len(data) for name, data in sets.items()},
              "checkpoint": checkpoint, "best_step": int(stage2.best_step.numpy()),
              "stage1_checkpoint": run.stage1_checkpoint,
              "representation": stage2.representation,
              "command": "PYTHONPATH=. python " + " ".join(sys.argv)}
    io_utils.atomic_write_json(FLAGS.output_json, record)
    print(" ".join(f"{name} {value:.4f}" for name, value in accuracy.items()), flush=True)


if __name__ == "__main__":
    from spair_tf import evaluate, train  # noqa: F401  (define the model, data and training
    #                                                   flags, and --output_json)
    addition.define_flags()
    cli.run(main)
