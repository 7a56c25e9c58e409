"""The one training loop, shared by SPAIR and the AIR/DAIR baselines (SPAIR_SPEC §1.11, §4.2).

A model follows this protocol:

    model.compute_loss(images, step, training=True) -> (loss, terms)
        images float32 [B, H, W, 3] in [0, 1]; loss the batch-mean negative ELBO; terms a
        dict name -> scalar tensor, each written to TensorBoard.
    model.detect(images, mode="mean"|"paper") -> dict(boxes [B, K, 4], scores [B, K],
        valid [B, K], counts [B], reconstruction [B, H, W, 3])

The loop: a `@tf.function` step (Adam; gradients all-reduced over replicas, clipped by
global norm, optional gradient noise), `tf.train.Checkpoint` + `CheckpointManager` with
restore-on-start, validation every `eval_every` steps, the best-by-validation-AP checkpoint
kept apart, early stopping with patience, and at the end the best checkpoint evaluated on
the test set and written (atomically) to `model_dir/results.json`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from spair_tf import evaluation
from spair_tf import io_utils
from spair_tf import schedules
from spair_tf.config import TrainConfig


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is kept."""


class IncompatibleCheckpoint(ValueError):
    """model_dir holds a checkpoint of a different model or configuration."""


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(learning_rate=config.learning_rate, beta_1=config.adam_beta1,
                                 beta_2=config.adam_beta2, epsilon=config.adam_epsilon)


def git_commit() -> str | None:
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


class Trainer:
    """Trains one model in `model_dir`, resuming from its latest checkpoint.

    Args:
      model_fn: builds the model (called inside the strategy's scope).
      config: a TrainConfig.
      model_dir: checkpoints (ckpt/, best/), TensorBoard logs (train/, val/) and
        results.json live here.
      strategy: a tf.distribute strategy (default: the default strategy).
      image_shape: (H, W, 3), to build the model's variables before restoring.
      log_every: steps between TensorBoard scalars and progress lines.
      flags_record: a JSON-able record of how the run was configured (results.json).
    """

    def __init__(self, model_fn, config: TrainConfig, model_dir: str, strategy=None,
                 image_shape=(48, 48, 3), log_every: int = 50, flags_record=None):
        self.config = config
        self.model_dir = model_dir
        self.strategy = strategy or tf.distribute.get_strategy()
        self.log_every = log_every
        self.flags_record = flags_record or {}
        with self.strategy.scope():
            self.model = model_fn()
            self.model.build((None,) + tuple(image_shape))
            self.optimizer = make_optimizer(config)
            self.optimizer.build(self.model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
            self.best_ap = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_ap")
            self.best_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="best_step")
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                              step=self.step, best_ap=self.best_ap,
                                              best_step=self.best_step)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(model_dir, "ckpt"),
            max_to_keep=config.checkpoints_to_keep)
        self.best_manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(model_dir, "best"), max_to_keep=1)
        self._train_step = tf.function(self._distributed_step)

    # ---------------------------------------------------------------------------------
    def restore(self) -> int:
        """Restores the latest checkpoint if there is one; returns the global step."""
        latest = self.manager.latest_checkpoint
        if latest:
            try:
                self.checkpoint.restore(latest).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.OpError) as error:
                raise IncompatibleCheckpoint(
                    f"model_dir {self.model_dir!r} holds a checkpoint ({latest}) that does not "
                    "match this model and configuration; use a new --model_dir or the flags "
                    f"it was trained with. ({type(error).__name__}: {str(error)[:300]})"
                ) from error
        return int(self.step.numpy())

    def _replica_step(self, images):
        model, config = self.model, self.config
        with tf.GradientTape() as tape:
            loss, terms = model.compute_loss(images, self.step, training=True)
            scaled = loss / tf.cast(self.strategy.num_replicas_in_sync, loss.dtype)
        variables = model.trainable_variables
        grads = tape.gradient(scaled, variables)
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        grads = [tf.convert_to_tensor(g) for g, _ in pairs]
        grads = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, grads)
        grad_norm = tf.linalg.global_norm(grads)
        if config.clip_norm > 0:
            grads, _ = tf.clip_by_global_norm(grads, config.clip_norm, use_norm=grad_norm)
        if config.gradient_noise:
            grads = schedules.add_gradient_noise(grads, self.step, seed=config.seed)
        terms = {**terms, "loss": loss, "grad_norm": grad_norm}
        return grads, [v for _, v in pairs], terms

    def _distributed_step(self, batch):
        grads, variables, terms = self.strategy.run(self._replica_step, (batch["images"],))
        variables = self.strategy.experimental_local_results(variables)[0]
        self.optimizer.apply_gradients(zip(grads, variables))
        self.step.assign_add(1)
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                for k, v in terms.items()}

    # ---------------------------------------------------------------------------------
    def fit(self, train_dataset, val_data=None, test_data=None, eval_batch_size=32,
            eval_mode="mean", eval_images=None):
        """Trains to config.max_steps (or early stop) and returns the results dict.

        Args:
          train_dataset: a repeated tf.data.Dataset of dicts with "images".
          val_data, test_data: datasets.Scattered sets (None skips evaluation).
          eval_mode: the inference mode of the reported metrics (§1.12).
        """
        config = self.config
        start_step = self.restore()
        train_writer = tf.summary.create_file_writer(os.path.join(self.model_dir, "train"))
        val_writer = tf.summary.create_file_writer(os.path.join(self.model_dir, "val"))
        dataset = self.strategy.experimental_distribute_dataset(train_dataset)
        iterator = iter(dataset)
        progress = Progress(start_step, config.max_steps)
        history = self._load_history()
        started = time.time()
        step = start_step
        while step < config.max_steps:
            terms = self._train_step(next(iterator))
            step = int(self.step.numpy())
            if not math.isfinite(float(terms["loss"])):
                values = {k: float(v) for k, v in terms.items()}
                raise TrainingDiverged(
                    f"the loss is {values['loss']} at step {step}; terms: {values}. The last "
                    f"good checkpoint ({self.manager.latest_checkpoint}) is kept; lower "
                    "--learning_rate or check the input.")
            if step % self.log_every == 0 or step == config.max_steps:
                with train_writer.as_default(step=step):
                    for name, value in terms.items():
                        tf.summary.scalar(name, value)
                    tf.summary.scalar("steps_per_second", progress.rate())
                progress.update(step, float(terms["loss"]))
            if step % config.eval_every == 0 or step == config.max_steps:
                self.manager.save(checkpoint_number=step)
                if val_data is not None:
                    result = evaluation.evaluate(self.model, val_data, eval_batch_size,
                                                 eval_mode, max_images=eval_images)
                    history.append({"step": step, **_scalars(result)})
                    with val_writer.as_default(step=step):
                        for name, value in _scalars(result).items():
                            tf.summary.scalar(name, value)
                    progress.note(f"step {step}: val AP {result['AP']:.4f} "
                                  f"(corrected {result['AP_corrected']:.4f}), "
                                  f"count error {result['count_abs_error']:.3f}")
                    if result["AP"] > self.best_ap.numpy():
                        self.best_ap.assign(result["AP"])
                        self.best_step.assign(step)
                        self.best_manager.save(checkpoint_number=step)
                    self._save_history(history)
                    if (config.patience and
                            step - int(self.best_step.numpy()) >= config.patience):
                        progress.note(f"early stop at step {step}: no better validation AP "
                                      f"since step {int(self.best_step.numpy())}.")
                        break
        progress.close()
        results = {"steps": step, "wall_time_s": time.time() - started,
                   "best_step": int(self.best_step.numpy()),
                   "best_val_AP": float(self.best_ap.numpy()),
                   "val_history": history, "eval_mode": eval_mode,
                   "train_config": dataclasses.asdict(config), "flags": self.flags_record,
                   "git_commit": git_commit(), "command": " ".join(sys.argv)}
        if test_data is not None:
            if self.best_manager.latest_checkpoint:
                self.checkpoint.restore(self.best_manager.latest_checkpoint).expect_partial()
            results["test"] = evaluation.evaluate(self.model, test_data, eval_batch_size,
                                                  eval_mode)
        io_utils.atomic_write_json(os.path.join(self.model_dir, "results.json"), results)
        return results

    def _history_path(self):
        return os.path.join(self.model_dir, "val_history.json")

    def _load_history(self):
        try:
            with open(self._history_path()) as f:
                history = json.load(f)
        except (OSError, ValueError):
            return []
        return [h for h in history if h["step"] <= int(self.step.numpy())]

    def _save_history(self, history):
        io_utils.atomic_write_json(self._history_path(), history)


def _scalars(result):
    out = {k: float(v) for k, v in result.items() if isinstance(v, (int, float, np.floating))}
    out.update({f"AP_at_{t:.1f}": float(v) for t, v in result.get("AP_at", {}).items()})
    return out


class Progress:
    """A one-line progress bar on stderr: step, loss, steps/s and ETA."""

    def __init__(self, start_step, max_steps, stream=sys.stderr):
        self.start_step, self.max_steps, self.stream = start_step, max_steps, stream
        self.start = time.time()
        self.step = start_step
        self.interactive = stream.isatty()

    def rate(self):
        elapsed = time.time() - self.start
        return (self.step - self.start_step) / elapsed if elapsed > 0 else 0.0

    def update(self, step, loss):
        self.step = step
        rate = self.rate()
        eta = (self.max_steps - step) / rate if rate > 0 else float("inf")
        width = 30
        done = int(width * step / max(self.max_steps, 1))
        line = (f"[{'=' * done}{'.' * (width - done)}] step {step}/{self.max_steps} "
                f"loss {loss:.2f} {rate:.2f} steps/s ETA {_duration(eta)}")
        self.stream.write(("\r" + line) if self.interactive else line + "\n")
        self.stream.flush()

    def note(self, text):
        self.stream.write(("\n" if self.interactive else "") + text + "\n")
        self.stream.flush()

    def close(self):
        if self.interactive:
            self.stream.write("\n")


def _duration(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
