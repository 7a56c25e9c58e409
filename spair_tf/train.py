r"""Trains SPAIR (or the AIR / DAIR baselines) with the shared training loop.

    python -m spair_tf.train --flagfile=configs/<experiment>.flags --model_dir=DIR

Every hyperparameter of SPAIR_SPEC is a flag whose default is the paper's value
(`--helpfull` lists them): the SpairConfig fields (§1), the TrainConfig fields (§1.11) and
the AirConfig fields prefixed `air_` (§4.2). Re-running the same command resumes from the
latest checkpoint in --model_dir (also after `kill -9`). The flags given are recorded in
DIR/flags.json, from which `spair_tf.evaluate` and `spair_tf.export` rebuild the model. At
the end the best-by-validation-AP checkpoint is evaluated on the test set and written to
DIR/results.json.

Scale-out: `--strategy=mirrored` splits each batch over the local devices;
`--strategy=multi_worker` runs one process per worker, each started with the same flags
and its own TF_CONFIG, e.g. for worker 0 of two:

    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                "task": {"type": "worker", "index": 0}}' python -m spair_tf.train ...

--batch_size is the global batch. Only the chief (worker 0) writes to --model_dir, which
the other workers must be able to read (restore-on-start).
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags

from spair_tf import cli
from spair_tf import flags_util
from spair_tf.config import SpairConfig, TrainConfig

flags.DEFINE_enum("model", "spair", ("spair", "air", "dair"), "Which model to train.")
flags.DEFINE_string("model_dir", None, "Checkpoints, TensorBoard logs and results.json.")
flags.DEFINE_enum("strategy", "default", ("default", "mirrored", "multi_worker"),
                  "tf.distribute strategy: one device, all local devices, or "
                  "MultiWorkerMirroredStrategy configured by TF_CONFIG.")
flags.DEFINE_enum("eval_mode", "mean", ("mean", "paper"),
                  "Inference mode of the reported metrics (SPAIR_SPEC §1.12).")
flags.DEFINE_integer("log_every", 50, "Steps between TensorBoard scalars and progress lines.",
                     lower_bound=1)
flags.DEFINE_string("export_dir", None, "If set, export a SavedModel of the best checkpoint "
                    "here after training.")
cli.define_data_flags()
flags_util.define_flags(SpairConfig)
flags_util.define_flags(TrainConfig)


def _define_air_flags():
    from baselines.air import AirConfig

    flags_util.define_flags(AirConfig, prefix="air_", skip=("model",))


_define_air_flags()
FLAGS = flags.FLAGS


def model_fn_from_flags(image_shape):
    """A function building the model the flags describe, and a JSON record of its config.

    A value out of range is a ValueError naming the flag.
    """
    if FLAGS.model == "spair":
        from spair_tf.model import SPAIR

        config = _config_from_flags(SpairConfig)
        return (lambda: SPAIR(config)), {"spair": config.__dict__}
    from baselines.air import AIR, AirConfig

    config = _config_from_flags(AirConfig, prefix="air_", skip=("model",), model=FLAGS.model)
    return (lambda: AIR(config, image_shape=image_shape)), {"air": config.__dict__}


def _config_from_flags(cls, prefix="", **kwargs):
    try:
        return flags_util.config_from_flags(cls, prefix=prefix, **kwargs)
    except ValueError as error:
        text = str(error)
        flag = text if text.startswith("--") else f"--{prefix}{text}"
        raise ValueError(f"bad flag value: {flag}") from error


def make_strategy(name):
    """The tf.distribute strategy of --strategy (created before any other TF work)."""
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        # The cluster and this process's task come from the TF_CONFIG environment variable.
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}; all options are --flags.")
    if not FLAGS.model_dir:
        raise ValueError("--model_dir is required: where checkpoints and results go.")
    from spair_tf import datasets
    from spair_tf.training import Trainer, TrainingDiverged

    train_config = _config_from_flags(TrainConfig)
    strategy = make_strategy(FLAGS.strategy)
    if train_config.batch_size % strategy.num_replicas_in_sync:
        raise ValueError(
            f"--batch_size={train_config.batch_size} does not split over "
            f"{strategy.num_replicas_in_sync} replicas; use a multiple of "
            f"{strategy.num_replicas_in_sync}.")
    train_cfg, val_cfg, test_cfg = cli.data_configs()
    train_data = cli.load_data(train_cfg)
    val_data, test_data = cli.load_data(val_cfg), cli.load_data(test_cfg)
    image_shape = train_data.images.shape[1:]
    model_fn, model_record = model_fn_from_flags(image_shape)
    os.makedirs(FLAGS.model_dir, exist_ok=True)
    record = {name: FLAGS[name].value for name in FLAGS
              if FLAGS[name].present or name in ("model", "dataset")}
    record = json.loads(json.dumps({**record, **model_record}, default=str))
    trainer = Trainer(model_fn, train_config, FLAGS.model_dir, strategy=strategy,
                      image_shape=image_shape, log_every=FLAGS.log_every,
                      flags_record=record)
    # A resumed run draws a new data order (the iterator's position is not checkpointed).
    dataset = datasets.to_tf_dataset(train_data, batch_size=train_config.batch_size,
                                     shuffle=True, repeat=True,
                                     seed=train_config.seed + trainer.restore())
    if trainer.is_chief:  # the checkpoint matches these flags: evaluate/export rebuild from them
        from spair_tf import io_utils

        io_utils.atomic_write_json(os.path.join(FLAGS.model_dir, "flags.json"), record)
    try:
        results = trainer.fit(dataset, val_data=val_data, test_data=test_data,
                              eval_mode=FLAGS.eval_mode)
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    if not trainer.is_chief:
        return
    if FLAGS.export_dir:
        from spair_tf import export

        export.export_model(trainer.model, FLAGS.export_dir)
        results["export_dir"] = FLAGS.export_dir
    test = results.get("test", {})
    nan = float("nan")
    if "best_val_AP" in results:
        scores = (f"best val AP {results['best_val_AP']:.4f} at step {results['best_step']}; "
                  f"test AP {test.get('AP', nan):.4f} (corrected "
                  f"{test.get('AP_corrected', nan):.4f}, mode {FLAGS.eval_mode})")
    else:
        scores = (f"best val reconstruction {results['best_val_reconstruction']:.2f} at step "
                  f"{results['best_step']}; test reconstruction "
                  f"{test.get('reconstruction', nan):.2f}")
    print(f"done: {results['steps']} steps; {scores}; results in "
          f"{os.path.join(FLAGS.model_dir, 'results.json')}")


if __name__ == "__main__":
    cli.run(main)
