r"""Evaluates a trained model's best checkpoint on any dataset preset (SPAIR_SPEC §3).

    python -m spair_tf.evaluate --model_dir=DIR --dataset=experiment2 --n_digits=12 \
        --output_json=PATH [--eval_mode=paper|mean] [--checkpoint=latest|best]
    python -m spair_tf.evaluate --model_dir=DIR --n_digits_sweep=1-20 --output_json=PATH

The model is rebuilt from the flags its training run was given (recorded in DIR/flags.json
when training starts); a flag on this command line (or in a --flagfile) overrides the
record, so `--dataset=experiment2 --n_digits=12` evaluates the same model on other data.
The test split of the dataset flags is evaluated; the JSON has every metric of §3 plus the
mode, the checkpoint, the flags taken from the record and the command.

--n_digits_sweep evaluates the test split once per digit count instead (Fig. 3: a model
trained on Experiment 2 crops, tested on full 84×84 images with n = 1..20); the JSON holds
the metrics per n and, for an Experiment 2 model, the paper's figures for its training
condition (SPAIR_SPEC §5.2).
"""

from __future__ import annotations

import dataclasses
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
flags.DEFINE_list("n_digits_sweep", None, "Evaluate once per digit count, e.g. 1-20 or "
                  "1,5,10 (ranges inclusive); replaces --n_digits.")
FLAGS = flags.FLAGS


def paper_figures(dataset, digit_range):
    """Fig. 3's values for an Experiment 2 model of `digit_range`: {metric: {n: value}}."""
    from spair_tf import paper_numbers

    if dataset != "experiment2":
        return None
    return {metric: by_condition[digit_range]
            for metric, by_condition in paper_numbers.EXPERIMENT2.items()}


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

    sweep = None if FLAGS.n_digits_sweep is None else cli.parse_digit_counts(FLAGS.n_digits_sweep)
    adopted = flags_util.adopt_recorded_flags(FLAGS.model_dir)
    _, _, test_cfg = cli.data_configs()
    if sweep is not None and FLAGS.dataset == "space_invaders":
        raise ValueError("--n_digits_sweep needs a digit dataset; Space Invaders frames have "
                         "no digits (drop --n_digits_sweep)")
    configs = ([test_cfg] if sweep is None else
               [dataclasses.replace(test_cfg, min_digits=n, max_digits=n) for n in sweep])
    for config in configs:
        config.validate()  # a bad n fails here, before anything is built
    model, path = None, None
    per_n = {}
    for config in configs:
        data = cli.load_data(config)
        if model is None:
            model, path = restore_model(FLAGS.model_dir, FLAGS.checkpoint,
                                        data.images.shape[1:])
        if not evaluation.has_boxes(data):  # Space Invaders: the loss terms, no AP
            step = int(os.path.basename(path).rsplit("-", 1)[1])
            result = evaluation.validation_loss(model, data, step, FLAGS.eval_batch_size,
                                                xla=FLAGS.xla)
            print(f"reconstruction {result['reconstruction']:.2f}, loss {result['loss']:.2f}, "
                  f"count {result['count']:.2f} per image (no boxes, so no AP); "
                  f"{result['n_images']} images", flush=True)
            break
        result = evaluation.evaluate(model, data, FLAGS.eval_batch_size, FLAGS.eval_mode,
                                     xla=FLAGS.xla)
        prefix = "" if sweep is None else f"n={config.max_digits}: "
        se = result["AP_batch_se"]
        spread = ("" if se is None else
                  f" ± {se:.4f} (SE over {FLAGS.eval_batch_size}-image batches)")
        print(f"{prefix}AP {result['AP']:.4f}{spread} (paper protocol), corrected "
              f"{result['AP_corrected']:.4f}, coco {result['AP_coco']:.4f}; count |Δ| "
              f"{result['count_abs_error']:.3f}, 0-1 {result['count_01_error']:.3f}; mode "
              f"{result['mode']}, {result['n_images']} images", flush=True)
        per_n[str(config.max_digits)] = {**result, "dataset": config.__dict__}
    record = {"checkpoint": path, "command": " ".join(sys.argv),
              "flags_from_training_record": {name: FLAGS[name].value for name in adopted}}
    if sweep is None:
        result.update(dataset=test_cfg.__dict__, **record)
    else:
        result = {"per_n": per_n, "n_digits": sweep, "mode": FLAGS.eval_mode,
                  "paper": paper_figures(FLAGS.dataset, FLAGS.digit_range), **record}
    if FLAGS.output_json:
        io_utils.atomic_write_json(FLAGS.output_json, result)


if __name__ == "__main__":
    cli.run(main)
