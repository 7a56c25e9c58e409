"""Frozen configuration objects for SPAIR and its training (SPAIR_SPEC §1, §1.11).

Library code takes one of these explicitly; absl flags live only in the entry points
(`train`, `evaluate`, `export`, `detect`), which build a config from the flags. Every default
is the paper's value (spec section in the comment beside it).
"""

from __future__ import annotations

import dataclasses
import math


BACKGROUND_MODES = ("fixed", "learn_solid", "learn")
COMPOSITING = ("paper", "weighted")
STD_TRANSFORMS = ("sigmoid", "exp")
TRAINING_WHEELS_LATENTS = ("all", "pres")
GLIMPSE_OUTSIDE = ("clamp", "zero")


@dataclasses.dataclass(frozen=True)
class SpairConfig:
    """What the SPAIR model computes (SPAIR_SPEC §1).

    Attributes:
        cell_size: c, pixels per grid cell (§1.1); fixed by the backbone's strides 2·2·3.
        anchor_size: a, box size in pixels when h = w = 1 (§1.4).
        object_size: side of a glimpse and of a decoded sprite (§1.5, §1.6).
        n_what: A, size of z_what (§1.3).
        backbone_filters: filters of the backbone's convolutions (§1.1).
        n_features: size of the backbone's per-cell feature f_ij (§1.1).
        hidden_units: hidden layers of the box, depth and pres networks (§1.2).
        encoder_units / decoder_units: the object encoder / decoder MLPs (§1.2, §1.6).
        lateral: use the lateral context of the four earlier neighbours (§1.2); False is the
            ablation of the paper's Fig. 7.
        temperature: τ of the relaxed Bernoulli z_pres (§1.3).
        background: "fixed" | "learn_solid" | "learn" (§1.8).
        background_colour: RGB in [0, 1] for "fixed".
        count_prior_*: the schedule of s_t (§1.10).
        training_wheels_steps: steps during which box, depth and pres heads get no gradient (§1.3).
        where_prior_*, depth_prior_*, what_prior_*: Normal priors on pre-squash values (§1.3).
        compositing: "paper" (§1.7) or "weighted": the renderer of the runs behind the
            paper's Figs. 2–3 (§6; spair_tf/renderer.py), which has no depth, so z_depth is
            then unused and out of the loss.
        std_transform: std of the Normal latents from the raw output: "sigmoid" (§1.3,
            2·sigmoid) or "exp" (§6).
        training_wheels_latents: what the training wheels hold: "all" (§1.3: box, depth and
            pres heads) or "pres" (§6: the pres logits only).
        glimpse_outside: glimpse taps beyond the image: "clamp" (§1.5) or "zero" (§6).
    """

    cell_size: int = 12
    anchor_size: float = 48.0
    object_size: int = 14
    n_what: int = 50
    backbone_filters: int = 128
    n_features: int = 100
    hidden_units: tuple[int, ...] = (100, 100)
    encoder_units: tuple[int, ...] = (512, 256)
    decoder_units: tuple[int, ...] = (256, 512)
    lateral: bool = True
    temperature: float = 1.0
    background: str = "fixed"
    background_colour: tuple[float, float, float] = (0.0, 0.0, 0.0)
    count_prior_initial: float = 1e6
    count_prior_final: float = 0.0125
    count_prior_decay_steps: float = 1000.0
    count_prior_decay_rate: float = 0.1
    training_wheels_steps: int = 1000
    where_prior_mean: tuple[float, float, float, float] = (
        0.0, 0.0, math.log(0.1 / 0.9), math.log(0.1 / 0.9))
    where_prior_std: tuple[float, float, float, float] = (1.0, 1.0, 0.5, 0.5)
    depth_prior_mean: float = 0.0
    depth_prior_std: float = 1.0
    what_prior_mean: float = 0.0
    what_prior_std: float = 1.0
    compositing: str = "paper"
    std_transform: str = "sigmoid"
    training_wheels_latents: str = "all"
    glimpse_outside: str = "clamp"

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the field, the value and the allowed range."""
        if self.cell_size != 12:
            raise ValueError(
                    f"cell_size={self.cell_size}: the backbone's strides (2, 2, 3) fix the cell "
                    "size at 12 px (SPAIR_SPEC §1.1).")
        _positive("anchor_size", self.anchor_size)
        for name in ("object_size", "n_what", "backbone_filters", "n_features"):
            _positive(name, getattr(self, name))
        _positive("temperature", self.temperature)
        if self.background not in BACKGROUND_MODES:
            raise ValueError(
                    f"background={self.background!r}: expected one of {BACKGROUND_MODES}.")
        if len(self.background_colour) != 3 or not all(
                0.0 <= v <= 1.0 for v in self.background_colour):
            raise ValueError(
                    f"background_colour={self.background_colour}: expected three values in [0, 1].")
        if not self.count_prior_final > 0 or not self.count_prior_initial > 0:
            raise ValueError(
                    "count_prior_initial and count_prior_final must be > 0, got "
                    f"{self.count_prior_initial}, {self.count_prior_final}.")
        if not 0 < self.count_prior_decay_rate <= 1:
            raise ValueError(
                    f"count_prior_decay_rate={self.count_prior_decay_rate}: expected (0, 1].")
        _positive("count_prior_decay_steps", self.count_prior_decay_steps)
        for name, allowed in (("compositing", COMPOSITING), ("std_transform", STD_TRANSFORMS),
                              ("training_wheels_latents", TRAINING_WHEELS_LATENTS),
                              ("glimpse_outside", GLIMPSE_OUTSIDE)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}: expected one of {allowed}.")
        if self.training_wheels_steps < 0:
            raise ValueError(
                    f"training_wheels_steps={self.training_wheels_steps}: expected >= 0.")
        for name in ("where_prior_std", "depth_prior_std", "what_prior_std"):
            values = getattr(self, name)
            for v in (values if isinstance(values, tuple) else (values,)):
                _positive(name, v)

    @property
    def n_object_vector(self) -> int:
        """Size of a cell's object vector: box (4), z_what (A), depth (1), z_pres (1)."""
        return 4 + self.n_what + 2


SELECTIONS = ("AP", "reconstruction")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a model is optimised (SPAIR_SPEC §1.11; AIR's values in §4.2).

    Attributes:
        batch_size: images per step (32 for SPAIR, 64 for AIR).
        learning_rate, adam_beta1, adam_beta2, adam_epsilon: Adam.
        clip_norm: gradients are clipped to this global norm (0 disables).
        gradient_noise: add N(0, 1)·0.001·0.1^(t/1000) after clipping (SPAIR only).
        max_steps: the last global step.
        eval_every: steps between validation evaluations (and checkpoints).
        patience: stop when the validation score has not improved for this many steps
            (0 disables).
        selection: the validation score that picks the best checkpoint: "AP" (the highest
            validation AP, paper protocol: the digit datasets) or "reconstruction" (the
            lowest validation reconstruction loss: data without boxes, e.g. Space Invaders;
            the original's `stopping_criteria="loss_reconstruction,min"` there).
        checkpoints_to_keep: how many recent checkpoints CheckpointManager keeps.
        seed: seeds the model's initialisation, the sampling noise and the data order.
        xla: compile the loss and its gradient with XLA (`jit_compile`): the same
            computation, fused (1.4× faster training steps on CPU, results/benchmarks);
            also the detections of validation, test and `spair_tf.evaluate` (one
            compilation per batch shape).
    """

    batch_size: int = 32
    learning_rate: float = 1e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    clip_norm: float = 1.0
    gradient_noise: bool = True
    max_steps: int = 300_000
    eval_every: int = 1000
    patience: int = 50_000
    checkpoints_to_keep: int = 3
    seed: int = 0
    xla: bool = True
    selection: str = "AP"

    def __post_init__(self):
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection={self.selection!r}: expected one of {SELECTIONS}.")
        for name in ("batch_size", "learning_rate", "max_steps", "eval_every"):
            _positive(name, getattr(self, name))
        if self.clip_norm < 0 or self.patience < 0:
            raise ValueError(
                    f"clip_norm={self.clip_norm}, patience={self.patience}: expected >= 0.")


def _positive(name, value) -> None:
    if not value > 0:
        raise ValueError(f"{name}={value}: expected a value > 0.")
