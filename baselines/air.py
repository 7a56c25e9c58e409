"""AIR and DAIR, the paper's sequential baselines (SPAIR_SPEC §4.2, §4.3, supplementary D.1).

Attend, Infer, Repeat (Eslami et al., 2016) in the continuous relaxation of
aakhundov/tf-attend-infer-repeat, as adapted by the SPAIR authors (e2crawfo/auto_yolo):

    for t = 1..T:
        h_t       = core(x_t, h_{t−1})            x_t = the flattened image (AIR, an LSTM)
                                                  or image − canvas (DAIR, an MLP, no recurrence)
        (μ, log σ) of z_scale (2), z_shift (2), and the z_pres logit = MLP[128](h_t)
        (w, h) = sigmoid(z_scale),  (x, y) = tanh(z_shift)
        θ_t = [[w, 0, x], [0, h, y]]              in [−1, 1] image coordinates
        glimpse = STN(image, θ_t) → z_what ~ N(encoder(glimpse)) → object = decoder(z_what)
        canvas += alive_t · z_pres_t · STN⁻¹(object, θ_t)
    reconstruction = clip(canvas, 0, 1);  loss = BCE(image, reconstruction) + KLs.

Two modes (AirConfig.fixed_steps):
  * fixed n (Experiment 1): exactly n steps with z_pres ≡ 1; no count prior is needed.
  * adaptive (AIR's own task): up to max_steps steps; z_pres is a binary Concrete sample;
    the model stops once the running Σ(1 − z_pres) ≥ 0.99: `alive_t` is 0 from then on and
    masks the canvas, the KLs and the count. The z_pres prior's log-odds are annealed from
    log 1e4 to log(1e-9 + 1e-6) (schedules.air_pres_prior_log_odds); the z_pres KL is, as in
    the original, a one-sample estimate log q(y) − log p(y) of the KL between the binary
    Concrete posterior and prior at the pre-sigmoid sample y (AirConfig.pres_kl = "concrete"),
    or the analytic Bernoulli KL of SPAIR ("bernoulli").

θ_t maps to the project's glimpse boxes (centre_y, centre_x, height, width), fractions of the
image: ((y + 1)/2, (x + 1)/2, h, w); glimpse.extract_glimpses and glimpse.place_glimpses are
the forward and the inverse transform.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from spair_tf import glimpse
from spair_tf import latents
from spair_tf import schedules
from spair_tf.networks import mlp


MODELS = ("air", "dair")
PRES_KLS = ("concrete", "bernoulli")
WHERE_HEADS = ("shared", "separate")
# The where network's outputs, in order: scale mean, scale log-std, shift mean, shift
# log-std (each (w, h) or (x, y)), z_pres logit.
WHERE_SIZES = (2, 2, 2, 2, 1)
LOGIT_CLIP = 10.0    # pre-squash values are clipped to [−10, 10] as in auto_yolo's AIR
BCE_EPS = 1e-9       # inside the BCE's logs, as in both originals (they add it; we clamp)
DETECT_MODES = ("mean", "paper")


def reconstruction_bce(images, reconstruction):
    """AIR's likelihood term (SPAIR_SPEC §4.2): BCE summed over pixels and channels → [B].

    log(max(r, BCE_EPS)) rather than the originals' log(r + BCE_EPS): inside tf.function
    grappler may fold (1 − r) + eps into (1 + eps) − r, which is 1 − r in float32 and −inf
    at r = 1. The two differ in the gradient at r = 0 (0 here, −x/eps there; BUILD_NOTES,
    "Which settings made Fig. 2's AIR and DAIR runs").
    """
    return -tf.reduce_sum(
            images * tf.math.log(tf.maximum(reconstruction, BCE_EPS))
            + (1.0 - images) * tf.math.log(tf.maximum(1.0 - reconstruction, BCE_EPS)),
            axis=[1, 2, 3])


@dataclasses.dataclass(frozen=True)
class AirConfig:
    """What the AIR / DAIR model computes (SPAIR_SPEC §4.2, §4.3).

    The defaults are those of AIR's own task (aakhundov/tf-attend-infer-repeat training.py):
    adaptive, up to 3 steps, scale prior N(−1, 0.05), shift prior N(0, 1). Experiment 1 sets
    fixed_steps = n, glimpse_size = 14 and the per-n priors of the §4.2 table.

    Attributes:
        model: "air" (LSTM core on the image) or "dair" (MLP core on image − canvas).
        fixed_steps: n → exactly n steps with z_pres ≡ 1; None → adaptive, up to max_steps.
        max_steps: the step budget of adaptive mode (ignored when fixed_steps is set).
        scale_prior_mean, scale_prior_std: Normal prior on both pre-sigmoid scale logits.
        shift_prior_mean, shift_prior_std: Normal prior on both pre-tanh shift values.
        what_prior_mean, what_prior_std: Normal prior on z_what.
        z_what_size: A, the size of z_what (50).
        glimpse_size: side of the square glimpse and decoded object (14 in the comparison,
            28 on AIR's own task, whose digits are 28×28).
        lstm_units: AIR's LSTM size; also the size of DAIR's linear core output (256).
        output_hidden_units: the MLP from the core state to the 9 step outputs ([128], ReLU).
        encoder_hidden_units, decoder_hidden_units: the object VAE's MLPs (softplus).
        dair_hidden_units: DAIR's core MLP (four ReLU layers of 256).
        temperature: τ of the binary Concrete z_pres.
        stopping_threshold: stop once Σ(1 − z_pres) reaches this (0.99).
        pres_prior_log_odds: a fixed z_pres prior log-odds; None → the annealed §4.2 schedule.
        pres_kl: the z_pres KL in adaptive mode: "concrete" (the original's one-sample KL
            between binary Concrete densities of the pre-sigmoid sample) or "bernoulli"
            (analytic KL(Bernoulli(β) ‖ Bernoulli(π)), as SPAIR's).
        shared_scale: one scale s for width and height, θ = [[s, 0, x], [0, s, y]] (the
            original aakhundov AIR, with one scale KL); False: separate (w, h), each with its
            own KL (the SPAIR authors' AIR, §4.2).
        grayscale: read and reconstruct only the first channel of the (equal-channel) images,
            so the likelihood is the original AIR's grayscale one rather than three times it;
            the reconstruction returned is repeated over the channels.
        where_heads: "shared": one MLP output_hidden_units → all 9 step outputs (the SPAIR
            authors' AIR, §4.2); "separate": each of the five outputs (scale mean, scale
            log-std, shift mean, shift log-std, z_pres logit) from its own hidden ReLU layer of
            head_hidden_units (the original aakhundov AIR: five 64-unit layers).
        head_hidden_units: the hidden layer of each separate head (64).
        decoder_noise_std: std of the Gaussian noise added to the object decoder's logits
            in the sampled passes (training and "paper" evaluation; none in "mean" mode):
            the original aakhundov AIR's `vae_likelihood_std` (0.3); 0 = none (§4.2).
    """

    model: str = "air"
    fixed_steps: int | None = None
    max_steps: int = 3
    scale_prior_mean: float = -1.0
    scale_prior_std: float = math.sqrt(0.05)
    shift_prior_mean: float = 0.0
    shift_prior_std: float = 1.0
    what_prior_mean: float = 0.0
    what_prior_std: float = 1.0
    z_what_size: int = 50
    glimpse_size: int = 14
    lstm_units: int = 256
    output_hidden_units: tuple[int, ...] = (128,)
    encoder_hidden_units: tuple[int, ...] = (512, 256)
    decoder_hidden_units: tuple[int, ...] = (256, 512)
    dair_hidden_units: tuple[int, ...] = (256, 256, 256, 256)
    temperature: float = 1.0
    stopping_threshold: float = 0.99
    pres_prior_log_odds: float | None = None
    pres_kl: str = "concrete"
    shared_scale: bool = False
    grayscale: bool = False
    where_heads: str = "shared"
    head_hidden_units: int = 64
    decoder_noise_std: float = 0.0

    def __post_init__(self):
        self.validate()

    @property
    def adaptive(self) -> bool:
        """True when the number of steps is inferred (z_pres), False for fixed n."""
        return self.fixed_steps is None

    @property
    def n_steps(self) -> int:
        """T, the static length of the step loop."""
        return self.max_steps if self.fixed_steps is None else self.fixed_steps

    def validate(self, image_shape=None) -> None:
        """Raises ValueError naming the bad field, its value and what is allowed.

        Args:
          image_shape: optionally (H, W, C) of the images the model will see; H and W must be
            at least 2 (the align-corners glimpse mapping divides by H − 1 and W − 1).
        """
        if self.model not in MODELS:
            raise ValueError(f"model={self.model!r}: expected one of {MODELS}.")
        if self.pres_kl not in PRES_KLS:
            raise ValueError(f"pres_kl={self.pres_kl!r}: expected one of {PRES_KLS}.")
        if self.where_heads not in WHERE_HEADS:
            raise ValueError(f"where_heads={self.where_heads!r}: expected one of {WHERE_HEADS}.")
        if not (isinstance(self.decoder_noise_std, (int, float))
                and math.isfinite(self.decoder_noise_std) and self.decoder_noise_std >= 0):
            raise ValueError(
                    f"decoder_noise_std={self.decoder_noise_std!r}: expected a finite value "
                    ">= 0 (0.3 in the original AIR, 0 for none).")
        if self.fixed_steps is not None and (
                not isinstance(self.fixed_steps, int) or self.fixed_steps < 1):
            raise ValueError(
                    f"fixed_steps={self.fixed_steps!r}: expected an integer >= 1 (the true "
                    "number of objects), or None for adaptive mode.")
        if not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise ValueError(f"max_steps={self.max_steps!r}: expected an integer >= 1.")
        for name in ("scale_prior_std", "shift_prior_std", "what_prior_std", "temperature"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name}={value}: expected a value > 0.")
        for name in ("z_what_size", "lstm_units", "head_hidden_units"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: expected an integer >= 1.")
        if not isinstance(self.glimpse_size, int) or self.glimpse_size < 2:
            raise ValueError(
                    f"glimpse_size={self.glimpse_size!r}: expected an integer >= 2 (14 for "
                    "the comparison, 28 for AIR's own task).")
        for name in ("output_hidden_units", "encoder_hidden_units", "decoder_hidden_units",
                     "dair_hidden_units"):
            units = getattr(self, name)
            if not all(isinstance(u, int) and u >= 1 for u in units):
                raise ValueError(f"{name}={units!r}: expected a tuple of integers >= 1.")
        if not 0 < self.stopping_threshold <= 1:
            raise ValueError(
                    f"stopping_threshold={self.stopping_threshold}: expected a value in (0, 1].")
        if image_shape is not None:
            if len(image_shape) != 3 or not all(
                    isinstance(d, int) and d >= 1 for d in image_shape):
                raise ValueError(
                        f"image_shape={image_shape!r}: expected (height, width, channels), "
                        "positive integers.")
            height, width, _ = image_shape
            if height < 2 or width < 2:
                raise ValueError(
                        f"image_shape={image_shape!r}: image size {height}×{width} not allowed; "
                        "height and width must be at least 2 pixels.")


def air_boxes(scale, shift):
    """Glimpse boxes of AIR's transform θ = [[w, 0, x], [0, h, y]] (SPAIR_SPEC §4.2).

    Args:
      scale: [..., 2] (w, h) ∈ (0, 1), the window size as a fraction of the image.
      shift: [..., 2] (x, y) ∈ (−1, 1), the window centre in [−1, 1] image coordinates.
    Returns:
      [..., 4] (centre_y, centre_x, height, width) as fractions of the image height/width,
      the box convention of spair_tf.glimpse.
    """
    w, h = scale[..., 0], scale[..., 1]
    x, y = shift[..., 0], shift[..., 1]
    return tf.stack([(y + 1.0) / 2.0, (x + 1.0) / 2.0, h, w], axis=-1)


def pixel_boxes(scale, shift, image_height, image_width):
    """AIR's detections in pixels (SPAIR_SPEC §4.2): [..., 4] (ymin, xmin, ymax, xmax).

    width = w·W_img, height = h·H_img, centre_x = W_img·(x + 1)/2, centre_y = H_img·(y + 1)/2.
    """
    boxes = air_boxes(scale, shift)
    centre_y = boxes[..., 0] * image_height
    centre_x = boxes[..., 1] * image_width
    height = boxes[..., 2] * image_height
    width = boxes[..., 3] * image_width
    return tf.stack([centre_y - height / 2.0, centre_x - width / 2.0,
                     centre_y + height / 2.0, centre_x + width / 2.0], axis=-1)


def concrete_pre_sigmoid(logits, uniform_noise, temperature):
    """Pre-sigmoid sample y of the binary Concrete z_pres = sigmoid(y) (SPAIR_SPEC §1.3, §4.2).

    y = (clip(ℓ) + log u − log(1 − u)) / τ, i.e. y ~ Logistic(clip(ℓ)/τ, 1/τ); sigmoid(y) is
    latents.relaxed_pres(ℓ, u, τ) (u at 0 or 1 guarded the same way).
    """
    logits = latents.clip_logits(tf.convert_to_tensor(logits))
    u = tf.cast(uniform_noise, logits.dtype)
    tiny = np.finfo(logits.dtype.as_numpy_dtype).tiny
    noise = tf.math.log(tf.maximum(u, tiny)) - tf.math.log(tf.maximum(1.0 - u, tiny))
    return (logits + noise) / temperature


def concrete_log_density(y, logits, temperature):
    """log density of the pre-sigmoid binary Concrete variable y (Maddison et al., 2017).

    log f(y; ℓ, τ) = log τ + (ℓ − τy) − 2·softplus(ℓ − τy), the Logistic(ℓ/τ, 1/τ) density.
    """
    a = tf.cast(logits, y.dtype) - temperature * y
    return math.log(temperature) + a - 2.0 * tf.math.softplus(a)


def update_stopping(stopping_sum, z_pres, threshold):
    """One step of AIR's relaxed stopping rule (SPAIR_SPEC §4.2).

    stopping_sum += 1 − z_pres; the step is alive iff the new sum is still < threshold.
    The sum never decreases (z_pres ≤ 1), so once a step is dead every later one is too.

    Args:
      stopping_sum: [B] the running Σ(1 − z_pres) before this step.
      z_pres: [B] this step's z_pres (relaxed in training, hard at evaluation).
      threshold: the stopping threshold (0.99).
    Returns:
      (new stopping_sum [B], alive [B] float32 ∈ {0, 1}).
    """
    stopping_sum = stopping_sum + (1.0 - z_pres)
    alive = tf.cast(stopping_sum < threshold, z_pres.dtype)
    return stopping_sum, alive


def _sum_last(x):
    return tf.reduce_sum(x, axis=-1)


class LSTMCore(keras.layers.Layer):
    """AIR's recurrent core: a standard LSTM cell (SPAIR_SPEC §4.2).

        [i, f, g, o] = x·W + h_{t−1}·U + b
        c_t = σ(f)·c_{t−1} + σ(i)·tanh(g),   h_t = σ(o)·tanh(c_t)

    AIR feeds the same flattened image at every step, so x·W + b is computed once per pass
    (`project`) and each step only adds h_{t−1}·U (`step`): the same cell, without
    recomputing the largest product (flattened image × 4·units) T times.

    Args:
      units: size of h and c (256).
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        n_inputs = input_shape[-1]
        self.kernel = self.add_weight(
                name="kernel", shape=(n_inputs, 4 * self.units), initializer="glorot_uniform")
        self.recurrent_kernel = self.add_weight(
                name="recurrent_kernel", shape=(self.units, 4 * self.units),
                initializer="orthogonal")
        # Forget-gate bias 1 (as TF1's BasicLSTMCell and Keras' unit_forget_bias).
        bias = [0.0] * self.units + [1.0] * self.units + [0.0] * (2 * self.units)
        self.bias = self.add_weight(
                name="bias", shape=(4 * self.units,),
                initializer=keras.initializers.Constant(bias))

    def initial_state(self, batch_size):
        """(h_0, c_0) = zeros, each [B, units]."""
        return (tf.zeros((batch_size, self.units)), tf.zeros((batch_size, self.units)))

    def project(self, inputs):
        """x·W + b [B, 4·units], the input's contribution to every step's gates."""
        return tf.matmul(inputs, self.kernel) + self.bias

    def step(self, projected, state):
        """One LSTM step from a projected input; returns (h_t, (h_t, c_t))."""
        h, c = state
        gates = projected + tf.matmul(h, self.recurrent_kernel)   # [B, 4·units]
        i, f, g, o = tf.split(gates, 4, axis=-1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, (h, c)

    def call(self, inputs, state):
        return self.step(self.project(inputs), state)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class SeparateHeads(keras.layers.Layer):
    """The original aakhundov AIR's where network: one small MLP per output.

    Output k = Dense(sizes[k])(ReLU(Dense(hidden_units)(h))), concatenated over k: the same
    [B, Σ sizes] layout as the shared MLP, from separate hidden layers.

    Args:
      sizes: the width of each output (WHERE_SIZES).
      hidden_units: each head's hidden layer (64 in the original).
    """

    def __init__(self, sizes=WHERE_SIZES, hidden_units: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.sizes = tuple(int(n) for n in sizes)
        self.hidden_units = int(hidden_units)
        # One attribute per head: a Python list would become a Keras TrackedList, which
        # tf.train.Checkpoint does not see (the heads would be missing from the model's
        # checkpoint; tests/test_air.py restores every variable from one).
        for k, n in enumerate(self.sizes):
            setattr(self, f"head_{k}",
                    mlp((self.hidden_units,), n, activation="relu", name=f"head_{k}"))

    @property
    def heads(self):
        """The heads, in output order."""
        return [getattr(self, f"head_{k}") for k in range(len(self.sizes))]

    def build(self, input_shape):
        for head in self.heads:
            head.build(input_shape)

    def call(self, hidden):
        return tf.concat([head(hidden) for head in self.heads], axis=-1)   # [B, Σ sizes]

    def get_config(self):
        return {**super().get_config(), "sizes": self.sizes, "hidden_units": self.hidden_units}


class AIR(keras.Model):
    """AIR (SPAIR_SPEC §4.2) or, with config.model == "dair", DAIR (§4.3).

    Learnable pieces (each a Keras layer, weights created in __init__):
      core: an LSTMCore(lstm_units) on the flattened image (AIR), or an MLP of
        four ReLU layers of 256 and a linear output of lstm_units on the flattened residual
        image − canvas (DAIR).
      where_network: MLP [128] (ReLU) → 9: scale mean (2), scale log-std (2), shift mean (2),
        shift log-std (2), z_pres logit (1); or, with where_heads="separate", the same 9
        outputs from five heads of one hidden layer each (SeparateHeads).
      object_encoder: MLP [512, 256] (softplus) on the flattened glimpse → z_what mean, log-std.
      object_decoder: MLP [256, 512] (softplus) → glimpse_size² × C logits → sigmoid.

    The protocol shared with SPAIR: compute_loss(images, step, training) and
    detect(images, mode).

    Args:
      config: an AirConfig.
      image_shape: (H, W, C) of the images (C = 3 in this project).
      seed: seeds the sampling noise (a keras.random.SeedGenerator).
    """

    def __init__(self, config: AirConfig, image_shape=(48, 48, 3), seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(config, AirConfig):
            raise TypeError(f"config must be an AirConfig, got {type(config).__name__}.")
        image_shape = tuple(int(d) for d in image_shape)
        config.validate(image_shape)
        self.config = config
        self.image_shape = image_shape
        height, width, _ = image_shape
        channels = 1 if config.grayscale else image_shape[-1]      # channels the model sees
        n_pixels = height * width * channels
        g = config.glimpse_size

        if config.model == "air":
            self.core = LSTMCore(config.lstm_units, name="core")
        else:
            self.core = mlp(config.dair_hidden_units, config.lstm_units, activation="relu",
                            name="core")
        if config.where_heads == "shared":
            self.where_network = mlp(config.output_hidden_units, sum(WHERE_SIZES),
                                     activation="relu", name="where_network")
        else:
            self.where_network = SeparateHeads(WHERE_SIZES, config.head_hidden_units,
                                               name="where_network")
        self.object_encoder = mlp(config.encoder_hidden_units, 2 * config.z_what_size,
                                  activation="softplus", name="object_encoder")
        self.object_decoder = mlp(config.decoder_hidden_units, g * g * channels,
                                  activation="softplus", name="object_decoder")
        self.core.build((None, n_pixels))
        self.where_network.build((None, config.lstm_units))
        self.object_encoder.build((None, g * g * channels))
        self.object_decoder.build((None, config.z_what_size))
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.built = True

    def get_config(self):
        return {"config": dataclasses.asdict(self.config), "image_shape": self.image_shape}

    @classmethod
    def from_config(cls, config):
        air_config = dict(config["config"])
        for key, value in air_config.items():
            if isinstance(value, list):
                air_config[key] = tuple(value)
        return cls(AirConfig(**air_config), tuple(config["image_shape"]))

    # ----------------------------------------------------------------------------------------
    # Noise and the step loop

    def draw_noise(self, batch_size):
        """All the sampling noise of one pass, drawn up front.

        Returns a dict: eps_scale [B, T, 2], eps_shift [B, T, 2], eps_what [B, T, A]
        (standard normal), u_pres [B, T] (uniform on (0, 1)) and, if
        config.decoder_noise_std > 0, eps_object [B, T, g·g·C'] (standard normal; C' the
        channels the model sees).
        """
        steps, size = self.config.n_steps, self.config.z_what_size
        noise = {
            "eps_scale": keras.random.normal((batch_size, steps, 2), seed=self.seed_generator),
            "eps_shift": keras.random.normal((batch_size, steps, 2), seed=self.seed_generator),
            "eps_what": keras.random.normal((batch_size, steps, size), seed=self.seed_generator),
            "u_pres": keras.random.uniform((batch_size, steps), seed=self.seed_generator),
        }
        if self.config.decoder_noise_std > 0:
            noise["eps_object"] = keras.random.normal(
                    (batch_size, steps, self._object_size), seed=self.seed_generator)
        return noise

    @property
    def _object_size(self):
        """g·g·C', the length of a flattened decoded object."""
        channels = 1 if self.config.grayscale else self.image_shape[-1]
        return self.config.glimpse_size ** 2 * channels

    def infer(self, images, mode="train", noise=None, keep_objects=False):
        """Runs the T steps of AIR / DAIR on a batch (SPAIR_SPEC §4.2, §4.3).

        Args:
          images: float32 [B, H, W, C] in [0, 1].
          mode: "train": sampled latents, relaxed z_pres (the training pass);
                "paper": sampled latents, z_pres a hard sample (the original's evaluation);
                "mean": latent means, z_pres = 1 iff its probability > 0.5.
          noise: optionally the dict of draw_noise (to make a pass reproducible).
          keep_objects: also return every step's placed object [B, T, H, W, C].
        Returns:
          dict of per-step tensors stacked on axis 1 (T = config.n_steps):
            scale_mean, scale_std, shift_mean, shift_std [B, T, 2] (pre-squash Normals;
            scale_mean and scale_std [B, T, 1] if config.shared_scale),
            scale [B, T, 2] (w, h), shift [B, T, 2] (x, y), boxes [B, T, 4] (glimpse boxes),
            what_mean, what_std, z_what [B, T, A], glimpses [B, T, g, g, C] (attended),
            objects [B, T, g, g, C] (decoded),
            pres_logits, pres_prob, z_pres [B, T], pres_pre [B, T] (the pre-sigmoid Concrete
            sample y, z_pres = sigmoid(y) in training; ℓ/τ in "mean" mode),
            alive [B, T] (1 while running), alive_before [B, T] (alive at the step's start),
            canvas [B, H, W, C] (unclipped), and placed [B, T, H, W, C] if keep_objects
            (C = 1 if config.grayscale).
        """
        if mode not in ("train", "paper", "mean"):
            raise ValueError(f"mode={mode!r}: expected 'train', 'paper' or 'mean'.")
        config = self.config
        images = self._model_view(images)                          # [B, H, W, C']
        batch_size = tf.shape(images)[0]
        height, width, channels = images.shape[1:]
        g = config.glimpse_size
        sample = mode != "mean"
        if noise is None and sample:
            noise = self.draw_noise(batch_size)

        flat_image = tf.reshape(images, (batch_size, height * width * channels))
        canvas = tf.zeros_like(images)                              # [B, H, W, C]
        stopping_sum = tf.zeros((batch_size,), tf.float32)          # [B]
        alive = tf.ones((batch_size,), tf.float32)                  # [B]
        if config.model == "air":
            state = self.core.initial_state(batch_size)
            projected_image = self.core.project(flat_image)         # [B, 4·lstm_units]
        keys = ("scale_mean", "scale_std", "shift_mean", "shift_std", "scale", "shift", "boxes",
                "what_mean", "what_std", "z_what", "glimpses", "objects", "pres_logits",
                "pres_prob", "pres_pre", "z_pres", "alive", "alive_before")
        steps = {key: [] for key in keys + (("placed",) if keep_objects else ())}

        # A static loop: T ≤ a handful, and a static length keeps the pass tf.function/XLA
        # friendly. Everything inside is batched over images.
        for t in range(config.n_steps):
            if config.model == "air":
                hidden, state = self.core.step(projected_image, state)  # [B, lstm_units]
            else:
                residual = flat_image - tf.reshape(canvas, tf.shape(flat_image))
                hidden = self.core(residual)                        # [B, lstm_units]
            outputs = self.where_network(hidden)                    # [B, 9]
            scale_mean, scale_log_std, shift_mean, shift_log_std, pres_logits = tf.split(
                    outputs, [2, 2, 2, 2, 1], axis=-1)
            pres_logits = pres_logits[:, 0]                         # [B]
            if config.shared_scale:                                 # one s for w and h
                scale_mean, scale_log_std = scale_mean[:, :1], scale_log_std[:, :1]
            scale_std = tf.exp(scale_log_std)                       # [B, 2]
            shift_std = tf.exp(shift_log_std)                       # [B, 2]
            z_scale, z_shift = scale_mean, shift_mean
            if sample:
                z_scale = latents.reparameterise(scale_mean, scale_std,
                                                 noise["eps_scale"][:, t, :scale_mean.shape[-1]])
                z_shift = latents.reparameterise(shift_mean, shift_std, noise["eps_shift"][:, t])
            scale = tf.sigmoid(tf.clip_by_value(z_scale, -LOGIT_CLIP, LOGIT_CLIP))  # [B, 2] (w, h)
            scale = tf.broadcast_to(scale, tf.shape(shift_mean))    # [B, 2], also if shared
            shift = tf.tanh(tf.clip_by_value(z_shift, -LOGIT_CLIP, LOGIT_CLIP))     # [B, 2] (x, y)
            boxes = air_boxes(scale, shift)[:, None, :]             # [B, 1, 4]

            glimpses = glimpse.extract_glimpses(images, boxes, (g, g))  # [B, 1, g, g, C]
            encoded = self.object_encoder(
                    tf.reshape(glimpses, (batch_size, g * g * channels)))  # [B, 2A]
            what_mean, what_log_std = tf.split(encoded, 2, axis=-1)
            what_std = tf.exp(what_log_std)                         # [B, A]
            z_what = what_mean
            if sample:
                z_what = latents.reparameterise(what_mean, what_std, noise["eps_what"][:, t])
            object_logits = self.object_decoder(z_what)             # [B, g·g·C]
            if sample and config.decoder_noise_std > 0:
                object_logits += config.decoder_noise_std * noise["eps_object"][:, t]
            objects = tf.sigmoid(tf.clip_by_value(object_logits, -LOGIT_CLIP, LOGIT_CLIP))
            objects = tf.reshape(objects, (batch_size, 1, g, g, channels))
            placed = glimpse.place_glimpses(objects, boxes, (height, width))[:, 0]  # [B, H, W, C]

            pres_prob = latents.pres_probability(pres_logits)       # [B]
            if sample:
                pres_pre = concrete_pre_sigmoid(pres_logits, noise["u_pres"][:, t],
                                                config.temperature)  # [B]
            else:
                pres_pre = latents.clip_logits(pres_logits) / config.temperature
            if not config.adaptive:
                z_pres = tf.ones_like(pres_logits)
            elif mode == "train":
                z_pres = tf.sigmoid(pres_pre)
            elif mode == "paper":
                z_pres = tf.round(tf.sigmoid(pres_pre))
            else:
                z_pres = tf.cast(pres_prob > 0.5, tf.float32)
            alive_before = alive
            stopping_sum, alive = update_stopping(stopping_sum, z_pres, config.stopping_threshold)
            canvas = canvas + (alive * z_pres)[:, None, None, None] * placed

            values = dict(scale_mean=scale_mean, scale_std=scale_std, shift_mean=shift_mean,
                          shift_std=shift_std, scale=scale, shift=shift, boxes=boxes[:, 0],
                          what_mean=what_mean, what_std=what_std, z_what=z_what,
                          glimpses=glimpses[:, 0], objects=objects[:, 0],
                          pres_logits=pres_logits, pres_prob=pres_prob, pres_pre=pres_pre,
                          z_pres=z_pres,
                          alive=alive, alive_before=alive_before)
            if keep_objects:
                values["placed"] = placed
            for key, value in values.items():
                steps[key].append(value)

        result = {key: tf.stack(value, axis=1) for key, value in steps.items()}
        result["canvas"] = canvas
        return result

    # ----------------------------------------------------------------------------------------
    # The protocol shared with SPAIR

    def pres_prior_log_odds(self, step):
        """Log-odds of the z_pres prior at global step `step` (SPAIR_SPEC §4.2)."""
        if self.config.pres_prior_log_odds is not None:
            return tf.constant(self.config.pres_prior_log_odds, tf.float32)
        return tf.cast(schedules.air_pres_prior_log_odds(tf.cast(step, tf.float32)), tf.float32)

    def kl_terms(self, inferred, step):
        """Per-image KL terms of a pass (SPAIR_SPEC §4.2), each [B].

        Normal KLs (analytic, on pre-squash values) of scale, shift and z_what, summed over
        dimensions, are counted for the steps that are alive (the originals mask them with the
        stopping rule; they are not multiplied by the relaxed z_pres). The z_pres KL
        (adaptive mode only) compares the posterior with logit ℓ to the prior with the
        annealed log-odds ℓ_p: "concrete" (the original's) is log q(y) − log p(y) at the
        pre-sigmoid sample y, q and p binary Concrete densities of temperature τ; "bernoulli"
        is KL(Bernoulli(sigmoid(ℓ)) ‖ Bernoulli(sigmoid(ℓ_p))). It is counted for every step
        that was alive when it started, so the decision to stop pays its own KL (as in the
        original).
        """
        config = self.config
        alive = inferred["alive"]                                   # [B, T]
        kl_scale = _sum_last(latents.normal_kl(
                inferred["scale_mean"], inferred["scale_std"],
                config.scale_prior_mean, config.scale_prior_std))    # [B, T]
        kl_shift = _sum_last(latents.normal_kl(
                inferred["shift_mean"], inferred["shift_std"],
                config.shift_prior_mean, config.shift_prior_std))    # [B, T]
        kl_what = _sum_last(latents.normal_kl(
                inferred["what_mean"], inferred["what_std"],
                config.what_prior_mean, config.what_prior_std))      # [B, T]
        terms = {
            "kl_scale": tf.reduce_sum(alive * kl_scale, axis=1),
            "kl_shift": tf.reduce_sum(alive * kl_shift, axis=1),
            "kl_what": tf.reduce_sum(alive * kl_what, axis=1),
        }
        if config.adaptive:
            prior_log_odds = self.pres_prior_log_odds(step)
            if config.pres_kl == "concrete":
                y = inferred["pres_pre"]                            # [B, T]
                logits = latents.clip_logits(inferred["pres_logits"])  # as in the sample
                kl_pres = (concrete_log_density(y, logits, config.temperature)
                           - concrete_log_density(y, prior_log_odds, config.temperature))
            else:
                kl_pres = latents.bernoulli_kl(inferred["pres_prob"],
                                               tf.sigmoid(prior_log_odds))  # [B, T]
            terms["kl_pres"] = tf.reduce_sum(inferred["alive_before"] * kl_pres, axis=1)
        else:
            terms["kl_pres"] = tf.zeros_like(terms["kl_what"])
        return terms

    def compute_loss(self, images, step=0, training=True, noise=None):
        """The negative ELBO, averaged over the batch (SPAIR_SPEC §4.2).

        loss = BCE(x, clip(canvas, 0, 1)) summed over pixels and channels (the first channel
               only if config.grayscale; r clamped at 1e-9 inside the logs)
               + KL(scale) + KL(shift) + KL(z_what) + KL(z_pres).

        Args:
          images: float32 [B, H, W, C] in [0, 1].
          step: the global step (int64 scalar tensor), for the z_pres prior schedule.
          training: True → relaxed z_pres (the training objective); False → hard z_pres
            samples (the original's evaluation pass).
          noise: optionally the dict of draw_noise (a reproducible pass).
        Returns:
          (loss scalar, terms: dict name → scalar batch mean: "reconstruction", "kl_where",
           "kl_scale", "kl_shift", "kl_what", "kl_pres", "kl", "count", "pres_prior_log_odds",
           and "box_width_px", "box_height_px": the sampled boxes' mean size over the steps
           that ran, a diagnostic of the scale prior's pull).
        """
        inferred = self.infer(images, mode="train" if training else "paper", noise=noise)
        images = self._model_view(images)
        bce = reconstruction_bce(images, tf.clip_by_value(inferred["canvas"], 0.0, 1.0))
        kls = self.kl_terms(inferred, step)
        kl = kls["kl_scale"] + kls["kl_shift"] + kls["kl_what"] + kls["kl_pres"]  # [B]
        loss = tf.reduce_mean(bce + kl)
        alive = inferred["alive"]                                   # [B, T]
        n_alive = tf.maximum(tf.reduce_sum(alive), 1.0)
        height, width, _ = self.image_shape
        box_w = inferred["scale"][..., 0] * width                   # [B, T] px
        box_h = inferred["scale"][..., 1] * height                  # [B, T] px
        terms = {
            "reconstruction": tf.reduce_mean(bce),
            "kl_where": tf.reduce_mean(kls["kl_scale"] + kls["kl_shift"]),
            "kl_scale": tf.reduce_mean(kls["kl_scale"]),
            "kl_shift": tf.reduce_mean(kls["kl_shift"]),
            "kl_what": tf.reduce_mean(kls["kl_what"]),
            "kl_pres": tf.reduce_mean(kls["kl_pres"]),
            "kl": tf.reduce_mean(kl),
            "count": tf.reduce_mean(tf.reduce_sum(alive, axis=1)),
            "pres_prior_log_odds": self.pres_prior_log_odds(step),
            "box_width_px": tf.reduce_sum(alive * box_w) / n_alive,
            "box_height_px": tf.reduce_sum(alive * box_h) / n_alive,
        }
        return loss, terms

    def detect(self, images, mode="mean"):
        """Objects found in a batch (SPAIR_SPEC §4.2, §1.12).

        Args:
          images: float32 [B, H, W, C] in [0, 1].
          mode: "mean" (latent means, z_pres on iff its probability > 0.5) or "paper"
            (sampled latents, z_pres a hard sample).
        Returns:
          dict: boxes [B, T, 4] float32 (ymin, xmin, ymax, xmax) in pixels; scores [B, T]
          (1.0 for a detection, 0.0 for an unused slot); valid [B, T] bool (the step ran);
          counts [B] int32; reconstruction [B, H, W, C]; pres_prob [B, T].
        """
        if mode not in DETECT_MODES:
            raise ValueError(f"mode={mode!r}: expected one of {DETECT_MODES}.")
        inferred = self.infer(images, mode=mode)
        height, width, _ = self.image_shape
        valid = inferred["alive"] > 0.5                             # [B, T]
        return {
            "boxes": pixel_boxes(inferred["scale"], inferred["shift"], height, width),
            "scores": tf.cast(valid, tf.float32),
            "valid": valid,
            "counts": tf.reduce_sum(tf.cast(valid, tf.int32), axis=1),
            "reconstruction": self._reconstruction(inferred),
            "pres_prob": inferred["pres_prob"],
        }

    def call(self, images, training=False):
        """The clipped reconstruction [B, H, W, C] (relaxed pass if training, else means)."""
        return self._reconstruction(self.infer(images, mode="train" if training else "mean"))

    def _reconstruction(self, inferred):
        """clip(canvas, 0, 1) [B, H, W, C], repeated over the channels if grayscale."""
        reconstruction = tf.clip_by_value(inferred["canvas"], 0.0, 1.0)
        if self.config.grayscale:
            reconstruction = tf.tile(reconstruction, [1, 1, 1, self.image_shape[-1]])
        return reconstruction

    def _model_view(self, images):
        """The checked float32 images [B, H, W, C], or their first channel if grayscale."""
        images = tf.convert_to_tensor(images, tf.float32)
        self._check_images(images)
        return images[..., :1] if self.config.grayscale else images

    def _check_images(self, images):
        if images.shape.rank != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(
                    f"images of shape {tuple(images.shape)}: this model was built for "
                    f"[B, {', '.join(str(d) for d in self.image_shape)}] (image_shape="
                    f"{self.image_shape}); build the model with the data's image shape.")


def DAIR(config: AirConfig, image_shape=(48, 48, 3), seed=None, **kwargs) -> AIR:
    """DAIR (SPAIR_SPEC §4.3): AIR whose core is an MLP on the residual image − canvas."""
    return AIR(dataclasses.replace(config, model="dair"), image_shape, seed=seed, **kwargs)
