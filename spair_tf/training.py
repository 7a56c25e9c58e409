"""The one training loop, shared by SPAIR and the AIR/DAIR baselines (SPAIR_SPEC §1.11, §4.2).

A model follows this protocol:

    model.compute_loss(images, step, training=True) -> (loss, terms)
        images float32 [B, H, W, 3] in [0, 1]; loss the batch-mean negative ELBO; terms a
        dict name -> scalar tensor, each written to TensorBoard.
    model.detect(images, mode="mean"|"paper") -> dict(boxes [B, K, 4], scores [B, K],
        valid [B, K], counts [B], reconstruction [B, H, W, 3])
    model.stem (optional): a layer applied to the images first; with `TrainConfig.xla` it
        runs outside the XLA cluster, and the loss is called as
        compute_loss(images, step, training=True, features=model.stem(images)).

The loop (§1.11): a `@tf.function` step — Adam on the gradient of the global-batch mean loss,
all-reduced over replicas, clipped by global norm, plus gradient noise; `tf.train.Checkpoint`
+ `CheckpointManager` with restore-on-start; validation every `eval_every` steps, the
best-by-validation checkpoint kept apart (highest AP, or with `TrainConfig.selection =
"reconstruction"` lowest reconstruction loss for data without boxes), early stopping with
patience; at the end the best checkpoint evaluated on the test set and written (atomically)
to `model_dir/results.json`.

Crash safety. Every schedule (count prior, training wheels, gradient noise, AIR's prior) is
a function of the checkpointed global step, so a run killed at any point and started again
with the same command continues where its last checkpoint left off. At an evaluation step
the order is: evaluate → val_history.json (atomic) → checkpoint (the commit point) → best
checkpoint; on restart the history is cut back to the restored step and a best checkpoint
lost between commit and copy is written again. TF writes a checkpoint's files under a
temporary name, renames them, and only then replaces the `checkpoint` state file atomically
(`file_io.atomic_write_string_to_file`), so a restart never sees a half-written checkpoint.

Distribution: any tf.distribute strategy (default, MirroredStrategy,
MultiWorkerMirroredStrategy). With several workers only the chief writes to `model_dir`
(checkpoints, TensorBoard, JSON files); the other workers save their checkpoints to a
temporary directory that is deleted at the end (TF's multi-worker guide), restore from the
chief's, and receive the chief's validation AP so that every worker takes the same
best-checkpoint and early-stopping decisions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from spair_tf import evaluation
from spair_tf import io_utils
from spair_tf import schedules
from spair_tf.config import TrainConfig

# Outline colours of the TensorBoard box images: ground truth green, predictions red.
GT_COLOUR = (0.0, 1.0, 0.0)
PREDICTION_COLOUR = (1.0, 0.2, 0.2)


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN or Inf; the last good checkpoint is kept."""


class IncompatibleCheckpoint(ValueError):
    """model_dir holds a checkpoint of a different model or configuration."""


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(learning_rate=config.learning_rate, beta_1=config.adam_beta1,
                                 beta_2=config.adam_beta2, epsilon=config.adam_epsilon)


class RunCheckpoints:
    """A run's two checkpoint directories: `write_dir`/ckpt (the latest, `max_to_keep` of
    them) and `write_dir`/best (the best validation so far), of one tf.train.Checkpoint.

    Every loop here commits an evaluation step in the module docstring's order: validate →
    history → `commit` (latest, then best if it improved); a best checkpoint lost between the
    two is written again by `repair_best` on restart. Used by `Trainer` and by the addition
    task's stage 2 (spair_tf/addition.py).
    """

    def __init__(self, checkpoint, write_dir, max_to_keep=2):
        self.checkpoint = checkpoint
        self.latest = tf.train.CheckpointManager(
            checkpoint, os.path.join(write_dir, "ckpt"), max_to_keep=max_to_keep)
        self.best = tf.train.CheckpointManager(
            checkpoint, os.path.join(write_dir, "best"), max_to_keep=1)

    def restore_latest(self, model_dir):
        """Restores model_dir/ckpt's latest checkpoint, if any; returns its path or None.

        Raises IncompatibleCheckpoint, naming the directory and the fix, if it is of another
        model or size.
        """
        latest = tf.train.latest_checkpoint(os.path.join(model_dir, "ckpt"))
        if latest:
            try:
                self.checkpoint.restore(latest).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.OpError) as error:
                detail = " ".join(str(error).split())[:300]
                raise IncompatibleCheckpoint(
                    f"model_dir {model_dir!r} holds a checkpoint ({latest}) that does not "
                    "match this model and configuration; use a new --model_dir, or the flags "
                    f"it was trained with. ({type(error).__name__}: {detail})") from error
        return latest

    def commit(self, step, improved):
        """Saves the latest checkpoint at `step`, then the best one if it `improved`."""
        self.latest.save(checkpoint_number=step)
        if improved:
            self.best.save(checkpoint_number=step)

    def repair_best(self, step, best_step):
        """Writes the best checkpoint again if a crash came between commit and copy."""
        best = self.best.latest_checkpoint
        if step > 0 and best_step == step and (best is None or not best.endswith(f"-{step}")):
            self.best.save(checkpoint_number=step)

    def restore_best(self, model_dir):
        """Restores model_dir/best's checkpoint (every object of this run's checkpoint it
        holds); returns its path, or None if there is none."""
        best = tf.train.latest_checkpoint(os.path.join(model_dir, "best"))
        if best:
            self.checkpoint.restore(best).expect_partial()
        return best


def patience_exhausted(step, best_step, patience):
    """True once `patience` steps (0: never) have passed since the best validation."""
    return bool(patience) and best_step >= 0 and step - best_step >= patience


def git_commit() -> str | None:
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def strategy_is_default(strategy) -> bool:
    """True for TF's default strategy (no tf.distribute strategy chosen: one device)."""
    return type(strategy).__name__ == "_DefaultDistributionStrategy"


def worker_role(strategy) -> tuple[bool, int]:
    """(is_chief, worker index) of this process under `strategy` (TF_CONFIG's task).

    The chief is the task of type "chief", else worker 0; a strategy without a cluster (one
    process) is its own chief.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    task_id = int(getattr(resolver, "task_id", None) or 0)
    if task_type is None:
        return True, 0
    jobs = resolver.cluster_spec().as_dict() if resolver is not None else {}
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0
                                        and "chief" not in jobs)
    index = task_id + (1 if task_type == "worker" and "chief" in jobs else 0)
    return is_chief, index


class Trainer:
    """Trains one model in `model_dir`, resuming from its latest checkpoint.

    Args:
      model_fn: builds the model (called inside the strategy's scope).
      config: a TrainConfig; `config.seed` seeds the initialisation, the sampling noise and
        (through the caller's dataset) the data order.
      model_dir: checkpoints (ckpt/, best/), TensorBoard logs (train/, val/),
        val_history.json and results.json live here.
      strategy: a tf.distribute strategy (default: the default strategy).
      image_shape: (H, W, 3), to build the model's variables before restoring.
      log_every: steps between TensorBoard scalars and progress lines.
      flags_record: a JSON-able record of how the run was configured (results.json).
      summary_images: how many validation images are drawn to TensorBoard at each
        evaluation (input, reconstruction, ground-truth | predicted boxes).
    """

    def __init__(self, model_fn, config: TrainConfig, model_dir: str, strategy=None,
                 image_shape=(48, 48, 3), log_every: int = 50, flags_record=None,
                 summary_images: int = 4):
        if not model_dir:
            raise ValueError("model_dir is empty: pass the directory for checkpoints and "
                             "results.")
        if log_every < 1 or summary_images < 0:
            raise ValueError(f"log_every={log_every}, summary_images={summary_images}: "
                             "expected log_every >= 1 and summary_images >= 0.")
        self.config = config
        self.model_dir = model_dir
        self.strategy = strategy or tf.distribute.get_strategy()
        self.log_every = log_every
        self.flags_record = flags_record or {}
        self.summary_images = summary_images
        self.is_chief, worker = worker_role(self.strategy)
        # Other workers need their own noise; their initial weights are the chief's (MWMS
        # broadcasts initial values).
        keras.utils.set_random_seed(config.seed + worker)
        with self.strategy.scope():
            self.model = model_fn()
            self.model.build((None,) + tuple(image_shape))
            self.optimizer = make_optimizer(config)
            self.optimizer.build(self.model.trainable_variables)
            # Counted once per step, in replica context (by the first replica).
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            # The best validation score, higher is better: the AP, or minus the
            # reconstruction loss (TrainConfig.selection). The name is the checkpoint's key.
            self.best_ap = tf.Variable(-math.inf if config.selection == "reconstruction"
                                       else -1.0, dtype=tf.float64, trainable=False,
                                       name="best_ap")
            self.best_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="best_step")
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                              step=self.step, best_ap=self.best_ap,
                                              best_step=self.best_step)
        self._write_dir = (model_dir if self.is_chief else
                           tempfile.mkdtemp(prefix=f"spair_tf_worker{worker}_"))
        self.checkpoints = RunCheckpoints(self.checkpoint, self._write_dir,
                                          max_to_keep=config.checkpoints_to_keep)
        self._restored = False
        # The loss and its gradient in one XLA cluster where config.xla (TrainConfig); the
        # all-reduce around it stays ordinary TF ops, the update after it is below. A model's
        # `stem` (SPAIR's backbone), if it has one, runs before the cluster as ordinary TF
        # ops: its convolutions are faster there on CPU (BUILD_NOTES, "Benchmarks").
        self._stem = getattr(self.model, "stem", None) if config.xla else None
        self._loss_and_grads = tf.function(self._replica_loss_and_grads,
                                           jit_compile=config.xla)
        self._head_loss_and_grads = tf.function(self._replica_loss_and_grads,
                                                jit_compile=True)
        self._compute_update = tf.function(self._distributed_update)
        # Without a distribution strategy the update (clipping, noise, Adam, step count) is
        # one XLA computation: one fused pass over the variables instead of a few hundred
        # small ops (BUILD_NOTES, "Training loop"). Keras' Adam is not compiled inside a real
        # strategy's replica context, so there it stays a graph.
        self._fused_apply = config.xla and strategy_is_default(self.strategy)
        self._apply_update = tf.function(self._distributed_apply,
                                         jit_compile=self._fused_apply)
        self._finish_update = tf.function(self._distributed_finish)
        self._from_chief = tf.function(self._broadcast_from_chief)
        self._summary_detect = {}

    # ---------------------------------------------------------------------------------
    # Checkpoints

    def restore(self) -> int:
        """Restores the latest checkpoint in model_dir if there is one; returns the step.

        Idempotent: a second call returns the step without reading the checkpoint again.
        Raises IncompatibleCheckpoint if the checkpoint is of another model or size.
        """
        if self._restored:
            return int(self.step.numpy())
        latest = self.checkpoints.restore_latest(self.model_dir)
        if latest:
            _note(f"resumed from step {int(self.step.numpy())} ({latest})")
        self._restored = True
        return int(self.step.numpy())

    # ---------------------------------------------------------------------------------
    # The step

    def _replica_update(self, images):
        """The gradient every replica starts its update from, and the loss terms (§1.11).

        The gradient of the global-batch mean loss (each replica's mean loss divided by the
        number of replicas, summed over replicas); `_finish` then clips it by its global
        norm and adds gradient noise. The terms are averaged over replicas in the same
        all-reduce. Returns (grads aligned with model.trainable_variables, their global
        norm, terms), equal on every replica.
        """
        variables = self.model.trainable_variables
        n_replicas = self.strategy.num_replicas_in_sync
        step = tf.identity(self.step)
        if self._stem is None:
            loss, terms, grads = self._loss_and_grads(images, step)
        else:
            loss, terms, grads = self._stem_then_loss_and_grads(images, step)
        # A variable the loss does not reach gets a zero update (Adam leaves it unchanged).
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                 for g, v in zip(grads, variables)]
        terms = {k: tf.cast(v, tf.float32) / n_replicas
                 for k, v in {**terms, "loss": loss}.items()}
        grads, terms = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, (grads, terms))
        grad_norm = tf.linalg.global_norm(grads)
        return grads, grad_norm, {**terms, "grad_norm": grad_norm}

    def _finish(self, grads, grad_norm):
        """Clipping by the global norm, then gradient noise of the global step (§1.11).

        Stateless noise of the global step, so the same on every replica."""
        config = self.config
        if config.clip_norm > 0:
            grads, _ = tf.clip_by_global_norm(grads, config.clip_norm, use_norm=grad_norm)
        if config.gradient_noise:
            grads = schedules.add_gradient_noise(grads, self.step, seed=config.seed)
        return grads

    def _replica_loss_and_grads(self, images, step, features=None):
        """The part XLA compiles (config.xla): the loss and the gradient of loss / replicas.

        Returns (loss, terms, gradients aligned with model.trainable_variables), or, given the
        stem's `features`, (loss, terms, d features, gradients of the non-stem variables).
        """
        n_replicas = self.strategy.num_replicas_in_sync
        variables = self.model.trainable_variables
        extra = {} if features is None else {"features": features}
        with tf.GradientTape() as tape:
            if features is not None:
                tape.watch(features)
            loss, terms = self.model.compute_loss(images, step, training=True, **extra)
            scaled = loss / tf.cast(n_replicas, loss.dtype)
        if features is None:
            return loss, terms, tape.gradient(scaled, variables)
        stem = {id(v) for v in self._stem.trainable_variables}
        grads = tape.gradient(scaled, [features] + [v for v in variables if id(v) not in stem])
        return loss, terms, grads[0], grads[1:]

    def _stem_then_loss_and_grads(self, images, step):
        """As `_replica_loss_and_grads`, with the model's stem outside the XLA cluster.

        features = stem(images) runs as ordinary TF ops under a tape; the cluster returns
        the gradient with respect to the features beside the other variables', and the
        stem's gradients are the tape's vector-Jacobian product with it: the same
        gradients as differentiating the whole loss at once (tests/test_training.py).
        """
        stem_variables = self._stem.trainable_variables
        with tf.GradientTape() as tape:
            features = self._stem(images)
        loss, terms, d_features, head_grads = self._head_loss_and_grads(images, step, features)
        stem_grads = tape.gradient(features, stem_variables, output_gradients=d_features)
        by_id = {id(v): g for v, g in zip(stem_variables, stem_grads)}
        head_grads = iter(head_grads)
        grads = [by_id[id(v)] if id(v) in by_id else next(head_grads)
                 for v in self.model.trainable_variables]
        return loss, terms, grads

    def _distributed_update(self, images):
        """strategy.run of _replica_update: per-replica (grads, grad norm), the loss terms."""
        grads, grad_norm, terms = self.strategy.run(self._replica_update, (images,))
        return grads, grad_norm, self._first_replica(terms)

    def _replica_apply(self, grads, grad_norm):
        """`_finish`, then Adam on the update, in replica context (how Keras optimizers run)."""
        grads = self._finish(grads, grad_norm)
        # A Keras optimizer sums the gradients it gets over replicas; ours are reduced
        # already, so the first replica passes them and the others pass zeros (exact).
        first = tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 0)
        grads = [g * tf.cast(first, g.dtype) for g in grads]
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        self.step.assign_add(1)

    def _distributed_apply(self, grads, grad_norm):
        self.strategy.run(self._replica_apply, (grads, grad_norm))

    def _distributed_finish(self, grads, grad_norm):
        return self.strategy.run(self._finish, (grads, grad_norm))

    def _train_step(self, batch):
        """One optimiser step on a (distributed) global batch; returns the loss terms.

        Raises TrainingDiverged, without applying the update, if the loss or the gradient
        norm is NaN or Inf (weights, optimizer state and step stay those of the last step).
        """
        grads, grad_norm, terms = self._compute_update(batch["images"])
        self._check_finite(terms)
        self._apply_update(grads, grad_norm)
        return terms

    def gradients(self, images):
        """The update one step would apply to `images` (a global batch), without applying it.

        Returns (per_replica, terms): per_replica a list (one per local replica) of lists of
        numpy gradients aligned with model.trainable_variables — all-reduced, clipped and
        noised, so equal across replicas — and terms, the loss terms (floats).
        """
        dataset = tf.data.Dataset.from_tensors(images)
        images = next(iter(self.strategy.experimental_distribute_dataset(dataset)))
        grads, grad_norm, terms = self._compute_update(images)
        grads = self._finish_update(grads, grad_norm)
        local = [self.strategy.experimental_local_results(g) for g in grads]
        per_replica = [[g[r].numpy() for g in local] for r in range(len(local[0]))]
        return per_replica, {k: float(v) for k, v in terms.items()}

    def _first_replica(self, values):
        """The first local replica's component of each distributed value in `values`."""
        return tf.nest.map_structure(
            lambda v: self.strategy.experimental_local_results(v)[0], values)

    # ---------------------------------------------------------------------------------
    # The loop

    def fit(self, train_dataset, val_data=None, test_data=None, eval_batch_size=32,
            eval_mode="mean", eval_images=None):
        """Trains to config.max_steps (or early stop) and returns the results dict.

        Args:
          train_dataset: a repeated tf.data.Dataset of dicts with "images", batched with
            the global batch size.
          val_data, test_data: datasets.Scattered sets (None skips evaluation).
          eval_mode: the inference mode of the reported metrics (§1.12).
          eval_images: evaluate on at most this many validation images.
        Raises:
          TrainingDiverged: the loss or gradient norm became NaN/Inf.
          IncompatibleCheckpoint: model_dir holds another model's checkpoint.
        """
        config = self.config
        if config.selection == "AP" and val_data is not None and not evaluation.has_boxes(
                val_data):
            raise ValueError("the validation data have no boxes, so there is no AP to pick "
                             "the best checkpoint by: train with --selection=reconstruction")
        step = self.restore()
        self.checkpoints.repair_best(step, int(self.best_step.numpy()))
        history = self._load_history(step)
        writer = self._writer("train")
        val_writer = self._writer("val")
        options = tf.data.Options()
        # Each worker keeps its share of every global batch (the data has no files).
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        iterator = iter(self.strategy.experimental_distribute_dataset(
            train_dataset.with_options(options)))
        progress = Progress(step, config.max_steps)
        started = time.time()
        stop = self._early_stop(step, progress)
        try:
            while step < config.max_steps and not stop:
                terms = self._train_step(next(iterator))
                step = int(self.step.numpy())
                if step % self.log_every == 0 or step == config.max_steps:
                    # The terms of the update from step − 1 to step (its schedules at step − 1).
                    with writer.as_default(step=step):
                        for name, value in terms.items():
                            tf.summary.scalar(name, value)
                        tf.summary.scalar("steps_per_second", progress.rate(step))
                    progress.update(step, float(terms["loss"]))
                if step % config.eval_every == 0 or step == config.max_steps:
                    self._validate_and_save(step, val_data, history, val_writer, progress,
                                            eval_batch_size, eval_mode, eval_images)
                    stop = self._early_stop(step, progress)
            progress.close()
            best = float(self.best_ap.numpy())
            results = {"steps": step, "wall_time_s": time.time() - started,
                       "best_step": int(self.best_step.numpy()),
                       **({"best_val_AP": best} if config.selection == "AP" else
                          {"best_val_reconstruction": -best}),
                       "val_history": history, "eval_mode": eval_mode,
                       "train_config": dataclasses.asdict(config), "flags": self.flags_record,
                       "git_commit": git_commit(), "command": " ".join(sys.argv)}
            if self.is_chief:
                if test_data is not None:
                    self.checkpoints.restore_best(self.model_dir)
                    results["test"] = (
                        evaluation.evaluate(self.model, test_data, eval_batch_size,
                                            eval_mode, xla=config.xla)
                        if evaluation.has_boxes(test_data) else
                        evaluation.validation_loss(self.model, test_data, step,
                                                   eval_batch_size, xla=config.xla))
                io_utils.atomic_write_json(os.path.join(self.model_dir, "results.json"),
                                           results)
            # Workers leave together (one that exits early looks like a crash to the others).
            self._from_chief(tf.constant(0.0, tf.float64))
            return results
        finally:
            writer.close()
            val_writer.close()
            if not self.is_chief:
                shutil.rmtree(self._write_dir, ignore_errors=True)

    def _check_finite(self, terms):
        values = {k: float(v) for k, v in terms.items()}
        if not (math.isfinite(values["loss"]) and math.isfinite(values["grad_norm"])):
            step = int(self.step.numpy())
            terms_text = ", ".join(f"{k}={v:.6g}" for k, v in values.items())
            latest = tf.train.latest_checkpoint(os.path.join(self.model_dir, "ckpt"))
            kept = (f"the last good checkpoint ({latest}) is kept" if latest else
                    "no checkpoint had been written yet")
            raise TrainingDiverged(
                f"the loss is {values['loss']} (gradient norm {values['grad_norm']}) at step "
                f"{step}; terms: {terms_text}. The update was not applied and {kept}; lower "
                "--learning_rate or check the input, then run again.")

    def _early_stop(self, step, progress):
        """True once the validation score has not improved for `patience` steps (checked at
        the evaluation steps, where checkpoints are, so a restarted run stops at the same
        step)."""
        best_step = int(self.best_step.numpy())
        if patience_exhausted(step, best_step, self.config.patience):
            score = "AP" if self.config.selection == "AP" else "reconstruction loss"
            progress.note(f"early stop at step {step}: no better validation {score} since "
                          f"step {best_step}.")
            return True
        return False

    def _validate_and_save(self, step, val_data, history, writer, progress, batch_size,
                           mode, max_images):
        """Evaluation step: validate, record, then commit the checkpoint (see module doc)."""
        improved = False
        by_ap = self.config.selection == "AP"
        if val_data is not None:
            result = None
            if self.is_chief:
                result = (evaluation.evaluate(self.model, val_data, batch_size, mode,
                                              max_images=max_images, xla=self.config.xla)
                          if by_ap else
                          evaluation.validation_loss(self.model, val_data, step, batch_size,
                                                     max_images=max_images,
                                                     xla=self.config.xla))
            score = (result["AP"] if by_ap else -result["reconstruction"]) if result else 0.0
            score = float(self._from_chief(tf.constant(score, tf.float64)))
            improved = score > float(self.best_ap.numpy())
            if improved:
                self.best_ap.assign(score)
                self.best_step.assign(step)
            if self.is_chief:
                history.append({"step": step, **_scalars(result),
                                **({"count_confusion": result.get("count_confusion"),
                                    "box_agreement": result.get("box_agreement")}
                                   if by_ap else {})})
                io_utils.atomic_write_json(self._history_path(), history)
                with writer.as_default(step=step):
                    for name, value in _scalars(result).items():
                        tf.summary.scalar(name, value)
                    self._image_summaries(val_data, mode)
                writer.flush()
                progress.note(f"step {step}: val AP {result['AP']:.4f} "
                              f"(corrected {result['AP_corrected']:.4f}), "
                              f"count error {result['count_abs_error']:.3f}" if by_ap else
                              f"step {step}: val reconstruction "
                              f"{result['reconstruction']:.2f}, loss {result['loss']:.2f}, "
                              f"count {result['count']:.2f}")
        self.checkpoints.commit(step, improved)

    def _broadcast_from_chief(self, value):
        """The chief's `value` (a float64 scalar) on every worker, by one all-reduce."""
        weight = tf.constant(1.0 if self.is_chief else 0.0, tf.float64)

        def replica_fn(v):
            total = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, tf.stack([v * weight, weight]))
            return total[0] / total[1]

        return self.strategy.experimental_local_results(
            self.strategy.run(replica_fn, (value,)))[0]

    def _image_summaries(self, data, mode):
        """Inputs, reconstructions and predicted boxes beside the ground truth (TensorBoard)."""
        n = min(self.summary_images, len(data.images))
        if n == 0:
            return
        images = tf.cast(data.images[:n], tf.float32) / 255.0            # [n, H, W, 3]
        if mode not in self._summary_detect:
            self._summary_detect[mode] = tf.function(
                lambda x: self.model.detect(x, mode=mode))
        out = self._summary_detect[mode](images)
        size = tf.cast(tf.tile(tf.shape(images)[1:3], [2]), tf.float32)  # [4] H, W, H, W
        gt_valid = np.arange(data.boxes.shape[1])[None, :] < data.counts[:n, None]
        gt = draw_boxes(images, data.boxes[:n] / size, gt_valid, GT_COLOUR)
        predicted = draw_boxes(images, out["boxes"] / size, out["valid"], PREDICTION_COLOUR)
        tf.summary.image("inputs", images, max_outputs=n)
        tf.summary.image("reconstructions", tf.clip_by_value(out["reconstruction"], 0.0, 1.0),
                         max_outputs=n)
        tf.summary.image("boxes_ground_truth_vs_predicted",
                         tf.concat([gt, predicted], axis=2), max_outputs=n,
                         description="Left: ground truth (green); right: the detections "
                                     "(red) of the evaluation mode.")

    def _writer(self, name):
        if not self.is_chief:
            return tf.summary.create_noop_writer()
        return tf.summary.create_file_writer(os.path.join(self.model_dir, name))

    def _history_path(self):
        return os.path.join(self.model_dir, "val_history.json")

    def _load_history(self, step):
        return load_val_history(self.model_dir, step)


def load_val_history(model_dir, step):
    """model_dir/val_history.json cut back to the restored `step` (later entries were never
    committed); [] if there is none."""
    try:
        with open(os.path.join(model_dir, "val_history.json")) as f:
            history = json.load(f)
    except (OSError, ValueError):
        return []
    return [h for h in history if h["step"] <= step]


def draw_boxes(images, boxes, valid, colour):
    """Outlines of the valid boxes drawn on the images.

    Args:
      images: [B, H, W, 3] in [0, 1].
      boxes: [B, K, 4] (ymin, xmin, ymax, xmax) normalised by (H, W, H, W).
      valid: [B, K] bool; invalid boxes are not drawn.
      colour: RGB in [0, 1].
    Returns:
      [B, H, W, 3].
    """
    images = tf.convert_to_tensor(images, tf.float32)
    boxes = tf.cast(boxes, tf.float32)
    if boxes.shape[1] == 0:  # nothing to draw (data without boxes)
        return images
    shape = tf.shape(images)
    n_boxes = tf.shape(boxes)[1]
    # One blank canvas per box, so that each box's outline can be masked by its validity.
    canvases = tf.zeros(tf.concat([[shape[0] * n_boxes], shape[1:3], [1]], 0))
    outlines = tf.image.draw_bounding_boxes(
        canvases, tf.reshape(boxes, [-1, 1, 4]), tf.ones([1, 1]))     # [B·K, H, W, 1]
    outlines = tf.reshape(outlines, tf.concat([[shape[0], n_boxes], shape[1:3], [1]], 0))
    mask = tf.reduce_max(outlines * tf.cast(valid, tf.float32)[:, :, None, None, None],
                         axis=1)                                        # [B, H, W, 1]
    return mask * tf.constant(colour, tf.float32) + (1.0 - mask) * images


def _scalars(result):
    out = {k: float(v) for k, v in result.items() if isinstance(v, (int, float, np.floating))}
    out.update({f"AP_at_{t:.1f}": float(v) for t, v in result.get("AP_at", {}).items()})
    return out


def _note(text):
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class Progress:
    """A one-line progress bar on stderr: step, loss, steps/s and ETA."""

    def __init__(self, start_step, max_steps, stream=sys.stderr):
        self.start_step, self.max_steps, self.stream = start_step, max_steps, stream
        self.start = time.time()
        self.step = start_step
        self.interactive = stream.isatty()

    def rate(self, step=None):
        """Steps per second since this session started."""
        elapsed = time.time() - self.start
        done = (self.step if step is None else step) - self.start_step
        return done / elapsed if elapsed > 0 else 0.0

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
