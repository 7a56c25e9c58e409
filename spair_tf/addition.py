r"""The addition task (paper Fig. 4; SPAIR_SPEC §2.2, §5.4), stage 2: learning the sum of an
image's five digits from a trained SPAIR's (or AIR's) objects.

Stage 1 is an ordinary SPAIR or AIR run on the addition images
(`configs/addition/{spair,air}_stage1.flags`). Stage 2 freezes it and trains a classifier on
its per-object representation:

    python -m spair_tf.addition --flagfile=configs/addition/stage2_fixed.flags \
        --stage1_dir=runs/addition_stage1 --train_images=32000 --model_dir=runs/add_fixed_32k

The same command resumes a stopped run; with --max_steps set to the run's last checkpoint it
trains no further and only tests the best checkpoint (DIR/results.json). Fig. 4's other
columns (TrueBB, ConnComp, ConvNet) have no stage 1: `--baseline=truebb|conncomp|convnet`
(`configs/addition/{truebb,conncomp,convnet}.flags`) trains that object source from scratch
with the same classifier (baselines/addition.py).

Facts of the original (auto_yolo, aaai_2019: `algs.py` math_config, `models/core.py`
build_math, `models/networks.py` SimpleRecurrentRegressionNetwork, `models/yolo_air.py` with
noisy=False; `experiments/addition/stage2/yolo_air_stage2.py`), followed here:
- The representation: every cell's z_what at its mean (the Gaussian latents' stds are zeroed
  in stage 2) and its z_pres a random hard sample, round(sigmoid(Concrete sample)); the
  encoder otherwise runs as in training, cell by cell with its lateral context.
- The classifier: each object's z_what through an MLP [100, 100] with a linear output of
  size A (z_what's size); the present objects (z_pres = 1) moved to the front in cell order;
  an LSTM of 128 units over them; its output after the last present object through an MLP
  [100, 100] to 46 logits (sums 0..45). An image with no present object gets the LSTM's
  zero initial output (the original gathers index −1 there).
- The loss is the softmax cross-entropy alone (no reconstruction, no KL); Adam 1e-4,
  gradients clipped to global norm 1.0, batch 32, validation accuracy every 1,000 steps,
  the best kept, patience 10,000 steps, at most 200,000.
- "fixed": every SPAIR weight frozen. "unfixed": the object encoder (glimpse → z_what)
  trained with the classifier, the rest frozen.
- AIR-Fixed / AIR-Unfixed (`--model=air`; `experiments/addition/stage2/air_stage2.py`,
  `models/air.py`): the stage-1 AIR runs all 5 steps with z_pres ≡ 1 (max_time_steps=5,
  run_all_time_steps), and its z_what is a sample (the original's AIR has no noise-free
  stage 2); unfixed trains AIR's object encoder.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import NamedTuple

import keras
import tensorflow as tf
from absl import flags

from spair_tf import training
from spair_tf.networks import mlp

N_CLASSES = 46          # sums of five digits: 0..45
REPRESENTATIONS = ("fixed", "unfixed")
# Stage 2 runs the encoder with every schedule (training wheels) over.
LATE_STEP = 10 ** 9


def object_representation(model, images, pres_noise=None):
    """SPAIR's objects as stage 2 sees them: (z_what [B, N, A], z_pres [B, N]), cells in
    raster order (N = H·W cells).

    z_what is each cell's posterior mean; z_pres is a hard sample, round(sigmoid((logit +
    logistic(u)) / τ)) with u ~ U(0, 1) (`pres_noise` [B, H, W, 1] replaces u; u = ½ gives
    z_pres = [β > ½], the "mean" mode's). The backbone gets no gradient.
    """
    features = tf.stop_gradient(model.backbone(images))              # [B, H, W, F]
    noise = model.cell_noise(features, sample_latents=False, sample_pres=pres_noise is None)
    if pres_noise is not None:
        noise["pres"] = pres_noise
    z = model.encode(images, step=LATE_STEP, mode="paper", features=features, noise=noise)
    shape = tf.shape(features)
    n_cells = shape[1] * shape[2]
    z_what = tf.reshape(z["z_what"], [shape[0], n_cells, model.config.n_what])
    z_pres = tf.reshape(z["z_pres"], [shape[0], n_cells])
    return z_what, tf.stop_gradient(z_pres)


def air_object_representation(model, images):
    """AIR's objects as stage 2 sees them: (z_what [B, T, A] sampled, z_pres [B, T]), one
    object per step; z_pres is the step's hard z_pres while it runs, 0 after it stopped
    (≡ 1 with fixed steps, the addition task's setting)."""
    inferred = model.infer(images, mode="paper")
    z_pres = inferred["z_pres"] * inferred["alive_before"]
    return inferred["z_what"], tf.stop_gradient(z_pres)


class Objects:
    """A stage-1 model seen as stage 2's input: `objects(batch)` → (z_what, z_pres) from the
    batch's images, the layer "unfixed" trains (`object_encoder`), z_what's size (`n_what`)
    and `extra(data)`, the per-image arrays its batches need beyond the dataset's own (none);
    `representations`: the ways Stage2 may train it. The Fig. 4 baselines
    (baselines/addition.py, `BaselineObjects`) have the same interface.
    """

    representations = REPRESENTATIONS

    def __init__(self, model):
        from spair_tf.model import SPAIR

        self.model = model
        if isinstance(model, SPAIR):
            self.n_what = model.config.n_what
            self.object_encoder = model.encoder.object_encoder
            self._represent = object_representation
        elif hasattr(model, "infer"):  # baselines.air.AIR
            self.n_what = model.config.z_what_size
            self.object_encoder = model.object_encoder
            self._represent = air_object_representation
        else:
            raise TypeError(f"stage 2 reads SPAIR or AIR, got {type(model).__name__}.")

    def __call__(self, batch):
        return self._represent(self.model, batch["images"])

    def extra(self, data):
        return {}


def present_first(values, present):
    """values [B, N, d] with the present objects (present [B, N] in {0, 1}) moved to the
    front, in their original order; the absent ones follow, also in order."""
    order = tf.argsort(1.0 - tf.cast(present, tf.float32), axis=1, stable=True)   # [B, N]
    return tf.gather(values, order, batch_dims=1)


class SumClassifier(keras.Model):
    """Stage 2's classifier (module docstring): objects → logits of their digits' sum.

    Args:
      n_what: z_what's size A (the input MLP's output size too).
      lstm_units: 128 in the original.
      hidden_units: of the input and output MLPs, (100, 100) in the original.
    """

    def __init__(self, n_what, lstm_units=128, hidden_units=(100, 100), **kwargs):
        super().__init__(**kwargs)
        self.n_what = n_what
        self.input_network = mlp(hidden_units, n_what, name="input_network")
        self.lstm = keras.layers.LSTM(lstm_units, return_sequences=True, name="lstm")
        self.output_network = mlp(hidden_units, N_CLASSES, name="output_network")

    def build(self, input_shape=None):
        self.input_network.build((None, self.n_what))
        self.lstm.build((None, None, self.n_what))
        self.output_network.build((None, self.lstm.units))
        self.built = True

    def call(self, z_what, z_pres):
        """z_what [B, N, A], z_pres [B, N] (hard) → logits [B, 46]."""
        shape = tf.shape(z_what)
        objects = tf.reshape(self.input_network(tf.reshape(z_what, [-1, self.n_what])),
                             shape)                                          # [B, N, A]
        objects = present_first(objects, z_pres)
        outputs = self.lstm(objects)                                         # [B, N, U]
        n_present = tf.cast(tf.reduce_sum(z_pres, axis=1), tf.int32)         # [B]
        last = tf.gather(outputs, tf.maximum(n_present - 1, 0), batch_dims=1)  # [B, U]
        last = tf.where((n_present > 0)[:, None], last, tf.zeros_like(last))
        return self.output_network(last)


def sums_of(labels):
    """Each image's label: the sum of its digits' classes (labels [B, M], −1 = no digit)."""
    return tf.reduce_sum(tf.maximum(labels, 0), axis=1)


class Stage2:
    """An object source + SumClassifier, trained on the sums (module docstring).

    The source is a restored stage-1 model (`Objects(SPAIR or AIR)`, representation
    "fixed" or "unfixed") or a Fig. 4 baseline (`baselines.addition.BaselineObjects`,
    representation "raw": all of it trained from its initialisation).
    model_dir holds ckpt/ and best/ (classifier, object encoder, optimizer, step, best
    validation accuracy), val_history.json and, at the end, results.json; a run started
    again with the same command resumes from its latest checkpoint.
    """

    def __init__(self, objects, representation, model_dir, config):
        if representation not in objects.representations:
            raise ValueError(f"representation={representation!r}: {type(objects).__name__} "
                             f"takes {objects.representations}.")
        self.objects = objects
        self.representation, self.model_dir, self.config = representation, model_dir, config
        self.classifier = SumClassifier(self.objects.n_what)
        self.classifier.build()
        self.trainable = list(self.classifier.trainable_variables)
        if representation != "fixed":
            self.trainable += list(self.objects.object_encoder.trainable_variables)
        self.optimizer = training.make_optimizer(config)
        self.optimizer.build(self.trainable)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.best_accuracy = tf.Variable(-1.0, dtype=tf.float64, trainable=False)
        self.best_step = tf.Variable(-1, dtype=tf.int64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(
            classifier=self.classifier, object_encoder=self.objects.object_encoder,
            optimizer=self.optimizer, step=self.step, best_accuracy=self.best_accuracy,
            best_step=self.best_step)
        self.checkpoints = training.RunCheckpoints(self.checkpoint, model_dir)
        self._train_step = tf.function(self._step, jit_compile=config.xla)
        self._predict = tf.function(self._logits, jit_compile=config.xla)

    def _logits(self, batch):
        return self.classifier(*self.objects(batch))

    def _step(self, batch):
        labels = batch["labels"]
        with tf.GradientTape() as tape:
            logits = self._logits(batch)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=sums_of(labels), logits=logits))
        gradients = tape.gradient(loss, self.trainable)
        if self.config.clip_norm:
            gradients, _ = tf.clip_by_global_norm(gradients, self.config.clip_norm)
        self.optimizer.apply_gradients(zip(gradients, self.trainable))
        self.step.assign_add(1)
        accuracy = tf.reduce_mean(tf.cast(
            tf.argmax(logits, axis=1, output_type=tf.int32) == sums_of(labels), tf.float32))
        return loss, accuracy

    def accuracy(self, data, batch_size, extra=None):
        """Fraction of `data`'s images whose sum is predicted exactly (one sampled z_pres).
        extra: `self.objects.extra(data)`, if the caller has it already."""
        from spair_tf import datasets

        correct, total = 0, 0
        extra = self.objects.extra(data) if extra is None else extra
        for batch in datasets.to_tf_dataset(data, batch_size, shuffle=False, repeat=False,
                                            drop_remainder=False, extra=extra):
            predicted = tf.argmax(self._predict(batch), axis=1, output_type=tf.int32)
            correct += int(tf.reduce_sum(tf.cast(predicted == sums_of(batch["labels"]),
                                                 tf.int32)))
            total += int(batch["images"].shape[0])
        return correct / total

    def train(self, train_data, val_data, test_data, log_every=100):
        """Trains to max_steps or patience; returns the results (also in results.json)."""
        from spair_tf import datasets, io_utils

        c = self.config
        latest = self.checkpoints.restore_latest(self.model_dir)
        if latest:
            print(f"resumed from step {int(self.step.numpy())} ({latest})", flush=True)
        self.checkpoints.repair_best(int(self.step.numpy()), int(self.best_step.numpy()))
        history = training.load_val_history(self.model_dir, int(self.step.numpy()))
        batches = iter(datasets.to_tf_dataset(train_data, c.batch_size, seed=c.seed,
                                              extra=self.objects.extra(train_data)))
        val_extra = self.objects.extra(val_data)  # found once, used at every validation
        started, first = time.time(), int(self.step.numpy())
        # A run restarted after its patience ran out trains no further.
        stopped = training.patience_exhausted(first, int(self.best_step.numpy()), c.patience)
        while not stopped and int(self.step.numpy()) < c.max_steps:
            batch = next(batches)
            loss, accuracy = self._train_step(batch)
            step = int(self.step.numpy())
            if step % log_every == 0:
                rate = (step - first) / (time.time() - started)
                print(f"step {step}: loss {float(loss):.3f}, batch accuracy "
                      f"{float(accuracy):.3f}, {rate:.2f} steps/s", flush=True)
            if step % c.eval_every and step != c.max_steps:
                continue
            val_accuracy = self.accuracy(val_data, c.batch_size, val_extra)
            history.append({"step": step, "accuracy": val_accuracy, "loss": float(loss)})
            print(f"step {step}: validation accuracy {val_accuracy:.4f}", flush=True)
            improved = val_accuracy > float(self.best_accuracy.numpy())
            if improved:
                self.best_accuracy.assign(val_accuracy)
                self.best_step.assign(step)
            io_utils.atomic_write_json(os.path.join(self.model_dir, "val_history.json"),
                                       history)
            self.checkpoints.commit(step, improved)
            stopped = training.patience_exhausted(step, int(self.best_step.numpy()),
                                                  c.patience)
            if stopped:
                print(f"stopping: no better validation accuracy since step "
                      f"{int(self.best_step.numpy())}", flush=True)
        best = self.checkpoints.restore_best(self.model_dir)
        if best is None:
            raise ValueError("no validation has run yet: raise --max_steps to at least "
                             f"--eval_every={c.eval_every}.")
        results = {"test_accuracy": self.accuracy(test_data, c.batch_size),
                   "best_step": int(self.best_step.numpy()),
                   "best_val_accuracy": float(self.best_accuracy.numpy()),
                   "steps": max(h["step"] for h in history),
                   "representation": self.representation, "n_train": len(train_data),
                   "stage1_model": (None if self.representation == "raw"
                                    else type(self.objects.model).__name__),
                   "baseline": getattr(self.objects, "name", None),
                   "checkpoint": best, "val_history": history}
        return results


def check_flags(dataset, model, baseline=None, stage1_dir=None):
    """Raises ValueError unless stage 2 can run on `dataset` with a stage-1 `model` (from
    --stage1_dir) or, instead, a Fig. 4 `baseline`."""
    if dataset != "addition":
        raise ValueError(f"--dataset={dataset}: stage 2 learns the sums of the addition "
                         "task; pass --dataset=addition.")
    if baseline:
        if stage1_dir:
            raise ValueError(f"--baseline={baseline} is trained from scratch (Fig. 4 has no "
                             "stage 1 for it): drop --stage1_dir.")
        return
    if not stage1_dir:
        raise ValueError("--stage1_dir is required (the SPAIR or AIR run whose objects stage "
                         "2 reads), or pass --baseline=truebb|conncomp|convnet.")
    if model not in ("spair", "air"):
        raise ValueError(f"--model={model}: Fig. 4 compares SPAIR and AIR; stage 2 reads the "
                         "objects of either.")


class Stage2Run(NamedTuple):
    """A stage-2 run as the flags describe it (`stage2_from_flags`)."""
    stage2: Stage2
    data: tuple             # (train, val, test) datasets.Scattered
    configs: tuple          # their ScatterConfigs
    stage1_checkpoint: str | None
    adopted: list           # names of the flags taken from the stage-1 run's record


def stage2_from_flags() -> Stage2Run:
    """The run that the command line's flags (absl's FLAGS) describe, before any training.
    Used by `main` and by the diagnostic scripts that evaluate a finished run
    (scripts/addition_digit_pool_probe.py)."""
    from spair_tf import cli, evaluate, flags_util
    from spair_tf.config import TrainConfig

    values = flags.FLAGS
    if not values.model_dir:
        raise ValueError("--model_dir is required.")
    baseline = values.baseline
    if baseline and values["representation"].present:
        raise ValueError(f"--representation={values.representation} is for a stage-1 model: "
                         f"--baseline={baseline} is trained end to end (raw).")
    adopted = (flags_util.adopt_recorded_flags(values.stage1_dir)
               if values.stage1_dir and not baseline else [])
    check_flags(values.dataset, values.model, baseline, values.stage1_dir)
    configs = cli.data_configs()
    for config in configs:
        config.validate()
    data = tuple(cli.load_data(config) for config in configs)
    config = flags_util.config_from_flags(TrainConfig)
    keras.utils.set_random_seed(config.seed)
    if baseline:
        from baselines.addition import BaselineObjects

        objects, representation, stage1_checkpoint = BaselineObjects(baseline), "raw", None
    else:
        stage1, stage1_checkpoint = evaluate.restore_model(values.stage1_dir, "best",
                                                           data[0].images.shape[1:])
        objects, representation = Objects(stage1), values.representation
    return Stage2Run(Stage2(objects, representation, values.model_dir, config), data,
                     tuple(configs), stage1_checkpoint, adopted)


def main(argv):
    from spair_tf import io_utils

    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}; all options are --flags.")
    FLAGS = flags.FLAGS
    run = stage2_from_flags()
    os.makedirs(FLAGS.model_dir, exist_ok=True)
    results = run.stage2.train(*run.data, log_every=FLAGS.log_every)
    results.update(stage1_checkpoint=run.stage1_checkpoint, command=" ".join(sys.argv),
                   flags_from_stage1_record={name: FLAGS[name].value for name in run.adopted},
                   train_config=run.stage2.config.__dict__,
                   data={split: dataclasses.asdict(config) for split, config in
                         zip(("train", "val", "test"), run.configs)})
    io_utils.atomic_write_json(os.path.join(FLAGS.model_dir, "results.json"), results)
    print(f"test accuracy {results['test_accuracy']:.4f} at step {results['best_step']} "
          f"({results['n_train']} training images, {results['representation']})", flush=True)


def define_flags():
    """The flags of stage 2 beyond the model, data and training flags of spair_tf.train."""
    flags.DEFINE_string("stage1_dir", None, "The stage-1 SPAIR run (its model_dir or a "
                        "committed state): its best checkpoint is restored.")
    flags.DEFINE_enum("representation", "fixed", REPRESENTATIONS, "fixed: SPAIR frozen; "
                      "unfixed: its object encoder trained with the classifier.")
    flags.DEFINE_enum("baseline", None, ("truebb", "conncomp", "convnet"),
                      "Instead of a stage-1 model, a Fig. 4 baseline trained end to end with "
                      "the classifier (baselines/addition.py); no --stage1_dir.")


if __name__ == "__main__":
    from spair_tf import cli, train  # noqa: F401  (defines the model, data and training flags)

    define_flags()
    cli.run(main)
