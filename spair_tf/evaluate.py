r"""Evaluates a trained model's best checkpoint on any dataset preset (SPAIR_SPEC §3).

    python -m spair_tf.evaluate --model_dir=DIR --dataset=experiment2 --n_digits=12 \
        --output_json=PATH [--eval_mode=paper|mean] [--checkpoint=latest|best]

The model is rebuilt from the flags its training run was given (recorded in DIR/flags.json
when training starts); a flag on this command line (or in a --flagfile) overrides the
record, so `--dataset=experiment2 --n_digits=12` evaluates the same model on other data.
The test split of the dataset flags is evaluated; the JSON has every metric of §3 plus the
mode, the checkpoint, the flags taken from the record and the command.
"""

from __future__ import annotations

import os
import sys

from absl import flags

from spair_tf import cli
from spair_tf import flags_util
from spair_tf import train  # noqa: F401  (defines the model and data flags)

flags.DEFINE_string("output_json", None, "Where to write the metrics (atomically).")
flags.DEFINE_enum("checkpoint", "best", ("best", "latest"),
                  "Which checkpoint of --model_dir to evaluate.")
flags.DEFINE_integer("eval_batch_size", 32, "Images per evaluation batch (the paper "
                     "protocol pools per batch of 32).", lower_bound=1)
FLAGS = flags.FLAGS


def restore_model(model_dir, which="best", image_shape=(48, 48, 3)):
    """Builds the model the flags describe and restores its checkpoint from model_dir."""
    import tensorflow as tf

    model_fn, _ = train.model_fn_from_flags(image_shape)
    model = model_fn()
    model.build((None,) + tuple(image_shape))
    directory = os.path.join(model_dir, "best" if which == "best" else "ckpt")
    path = tf.train.latest_checkpoint(directory)
    if path is None:
        raise ValueError(f"no {which} checkpoint in {directory!r}: train a model there first "
                         "(python -m spair_tf.train --model_dir=...).")
    # The training layout (model + optimizer): checkpoints written before session 5 reach
    # the backbone's convolutions and AIR's separate heads only through the optimizer's
    # variable list (a Keras list of layers was invisible to tf.train.Checkpoint), so the
    # optimizer is built too; its values are not used.
    from spair_tf.config import TrainConfig
    from spair_tf.training import make_optimizer

    optimizer = make_optimizer(TrainConfig())
    optimizer.build(model.trainable_variables)
    try:
        tf.train.Checkpoint(model=model, optimizer=optimizer).restore(path).expect_partial() \
            .assert_existing_objects_matched()
    except (AssertionError, ValueError) as error:
        raise ValueError(f"checkpoint {path} does not match the model the flags describe; "
                         "pass the --flagfile it was trained with.") from error
    return model, path


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}; all options are --flags.")
    if not FLAGS.model_dir:
        raise ValueError("--model_dir is required.")
    from spair_tf import evaluation, io_utils

    adopted = flags_util.adopt_recorded_flags(FLAGS.model_dir)
    _, _, test_cfg = cli.data_configs()
    data = cli.load_data(test_cfg)
    model, path = restore_model(FLAGS.model_dir, FLAGS.checkpoint, data.images.shape[1:])
    result = evaluation.evaluate(model, data, FLAGS.eval_batch_size, FLAGS.eval_mode,
                                 xla=FLAGS.xla)
    result.update(checkpoint=path, dataset=test_cfg.__dict__, command=" ".join(sys.argv),
                  flags_from_training_record={name: FLAGS[name].value for name in adopted})
    if FLAGS.output_json:
        io_utils.atomic_write_json(FLAGS.output_json, result)
    print(f"AP {result['AP']:.4f} (paper protocol), corrected {result['AP_corrected']:.4f}, "
          f"coco {result['AP_coco']:.4f}; count |Δ| {result['count_abs_error']:.3f}, "
          f"0-1 {result['count_01_error']:.3f}; mode {result['mode']}, "
          f"{result['n_images']} images")


if __name__ == "__main__":
    cli.run(main)
