r"""SPAIR's speed and scaling figures, and where the time of a training step goes.

    python -m spair_tf.bench [--profile] [--output_json=results/benchmarks/spair.json]

SPAIR_SPEC §1.11 (the training step: batch 32, Adam, clipping, gradient noise) and the
scaling requirement of §1.7 (inference time and memory linear in image area). One JSON
document is printed (and, with --output_json, written atomically with the command line):

- "matmul": the fp32 matmul rate of this machine, measured in the same run (a
  2048×2048 @ 2048×2048 `tf.matmul` in a tf.function, best of several).
- "train": the real training step, `spair_tf.training.Trainer._train_step` without a
  strategy (the loss and its gradients; the finiteness check; clipping, gradient noise and
  Adam compiled as one XLA computation), at batch 32 on 48×48 images with the training
  wheels off (global step ≥ 1000): images/s, and the FLOP floor = FLOPs per step / the
  matmul rate (the better of the rates measured before and after the step). The ratio
  step time / floor is the figure of merit (target ≤ 1.6).
- "forward": `model.detect(images, mode="mean")` in a tf.function compiled with XLA as
  evaluation compiles it (--noforward_xla: the plain graph, as the SavedModel runs it) at
  batch 1, one subprocess per image size: best time and peak RSS beside the baseline of
  the same process after building the model on 48×48 (Linux VmHWM, reset at the baseline;
  ru_maxrss is reported too, but on Linux it carries the parent's RSS across fork + exec),
  and the growth per 4× image area (target 3.5–5×: linear in area). The RSS includes the
  runtime and XLA's compiler (about 1 GiB whatever the size), so beside it, under XLA, is
  the memory the compiled forward itself plans (`xla_buffer_plan`: its inputs, outputs and
  the one block of intermediates, from XLA's buffer assignment) and that plan's growth.
- "models" (--sections=models): SPAIR beside AIR and DAIR (SPAIR_SPEC §4.2, §4.3), each
  through the same real Trainer step at --models_batch_size (64, AIR's batch) on 48×48
  images: AIR/DAIR with n = --models_n_steps fixed steps (5, Experiment 1's n = 5 setting,
  14×14 glimpses, no gradient noise as in configs/comparison/), SPAIR with its defaults.
  The models are timed in alternating rounds so that each sees the same machine load;
  images/s is the batch over the median round's step time (the best is reported beside it).
- "profile" (--profile): the training step cut into separately compiled pieces (backbone,
  encoder loop, decoder, renderer, loss, backward of each, optimizer), each timed with
  real inputs passed as tf.function arguments (a captured constant would be folded away at
  trace time), beside its FLOPs; and the TF profiler's trace of the full step, summed by op
  type and by region.

Every time is the best of several repeats (other processes share the machine), in wall
clock, with this process's CPU time (all threads) beside it; the load averages are
recorded beside each section.

FLOP counting (`flop_terms`): analytic, from the built model's layer shapes. Only the
matmul-class ops are counted (every convolution, dense layer and einsum: the glimpse
sampler's two and the renderer's two per block), 2 FLOPs per multiply-add; elementwise ops,
gathers and reductions are not (they are bounded by memory, not by the matmul rate). The
forward pass counts one evaluation per grid cell (the unused slots a while-loop wavefront
runs are reported apart as "executed" work, not model work). The backward pass of a
product costs one forward's FLOPs per operand that needs a gradient: both operands except
where one is the input image (the first convolution, and the glimpse einsum that reads
the image), so the floor counts only the gradients the step needs. TF's own profiler
cannot do this count: it has no FLOP statistics for Einsum, and it counts a while loop's
body once, not once per iteration (checked on TF 2.21).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time

from absl import flags

GIB = 2 ** 30
TARGET_RATIO_TO_FLOOR = 1.6
TARGET_GROWTH_PER_4X_AREA = (3.5, 5.0)
MEMORY_LIMIT_BYTES = 24 * GIB
BASELINE_IMAGE_SIZE = 48

flags.DEFINE_string("output_json", None, "Also write the JSON here (atomically), e.g. "
                    "results/benchmarks/spair.json.")
flags.DEFINE_bool("profile", False, "Add the breakdown of the training step (pieces and "
                  "the TF profiler's op trace) and an op trace of each forward pass.")
flags.DEFINE_integer("models_batch_size", 64, "Batch of the models section (AIR's batch).",
                     lower_bound=1)
flags.DEFINE_integer("models_n_steps", 5, "AIR/DAIR fixed steps in the models section (the "
                     "n of Experiment 1).", lower_bound=1)
flags.DEFINE_integer("models_rounds", 5, "Alternating timed rounds of the models section.",
                     lower_bound=1)
flags.DEFINE_list("sections", ["train", "forward"], "Which measurements to run: train "
                  "(matmul rate, training step, FLOP floor), forward (scaling) and/or models "
                  "(SPAIR, AIR and DAIR training images/s side by side).")
flags.DEFINE_integer("batch_size", 32, "Training step batch (SPAIR_SPEC §1.11).", lower_bound=1)
flags.DEFINE_integer("train_image_size", 48, "Side of the training images in px.",
                     lower_bound=12)
flags.DEFINE_integer("global_step", 1000, "Global step the training benchmark starts at "
                     "(≥ 1000: training wheels off, SPAIR_SPEC §1.3).", lower_bound=0)
flags.DEFINE_list("forward_sizes", ["48", "192", "768", "1536"], "Image sides (px) of the "
                  "forward-pass benchmark, batch 1, one subprocess each.")
flags.DEFINE_integer("repeats", 5, "Timed repeats; the best is reported.", lower_bound=1)
flags.DEFINE_integer("steps_per_repeat", 5, "Training steps per timed repeat.", lower_bound=1)
flags.DEFINE_integer("forward_repeats", 3, "Timed forward passes per image size.",
                     lower_bound=1)
flags.DEFINE_integer("matmul_size", 2048, "Side of the square fp32 matmul that measures the "
                     "machine's FLOP rate.", lower_bound=16)
flags.DEFINE_integer("forward_timeout", 3600, "Seconds allowed to one forward subprocess.",
                     lower_bound=1)
flags.DEFINE_bool("forward_xla", True, "Compile the forward pass with XLA (jit_compile), as "
                  "evaluation does; --noforward_xla times the plain graph (and, with "
                  "--profile, traces its ops).")
flags.DEFINE_bool("forward_worker", False, "Internal: measure one forward pass of "
                  "--forward_sizes[0] in this process and print its JSON.")
FLAGS = flags.FLAGS


# --------------------------------------------------------------------------------------
# Small helpers.

def load_average():
    """The 1-, 5- and 15-minute load averages (others share the machine)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def peak_rss_bytes():
    """This process's peak resident set size by getrusage (ru_maxrss: KiB on Linux).

    On Linux ru_maxrss survives fork + exec: a subprocess started by a large process
    reports at least its parent's RSS at the fork. `memory_status` does not.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def memory_status():
    """Current and peak RSS of this process in bytes: /proc/self/status VmRSS, VmHWM (Linux).

    VmHWM belongs to the process image (reset by exec) and can be reset to the current RSS
    with `reset_peak_rss`. Elsewhere: (None, ru_maxrss).
    """
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if line.startswith("Vm"))
        return (int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024)
    except (OSError, KeyError, ValueError):
        return None, peak_rss_bytes()


def reset_peak_rss():
    """Resets VmHWM to the current RSS (Linux ≥ 4.0); returns False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _check_image_size(size, name):
    if isinstance(size, bool) or not isinstance(size, int) or size < 12:
        raise ValueError(f"{name}={size!r}: expected an int ≥ 12 (one 12-px cell).")
    return size


def _wait(outputs):
    """Blocks until every output tensor exists: fetches one element of each to the host."""
    import tensorflow as tf

    for tensor in tf.nest.flatten(outputs):
        if isinstance(tensor, (tf.Tensor, tf.Variable)):
            # One element, not the whole tensor: a copy would add to the measured time.
            (tensor if tensor.shape.num_elements() == 1 else tf.reshape(tensor, [-1])[:1]).numpy()


@dataclasses.dataclass
class Timing:
    """Seconds per call of each timed repeat: wall clock and this process's CPU time.

    CPU time (all threads) is the work done; on a shared machine it is less disturbed by
    other processes than wall time, which is the figure asked for (best = min over repeats).
    """

    times_s: list
    cpu_times_s: list

    @property
    def best_s(self):
        return min(self.times_s)

    @property
    def best_cpu_s(self):
        return min(self.cpu_times_s)

    def as_dict(self, prefix=""):
        return {f"{prefix}best_s": self.best_s, f"{prefix}times_s": self.times_s,
                f"{prefix}best_cpu_s": self.best_cpu_s,
                f"{prefix}cpu_times_s": self.cpu_times_s}


def best_time(fn, args, repeats, number=1):
    """Calls fn(*args) `number` times per repeat, `repeats` times; returns a Timing.

    The first call (tracing, compilation) happens before, untimed.
    """
    _wait(fn(*args))
    times, cpu_times = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(number):
            out = fn(*args)
        _wait(out)
        times.append((time.perf_counter() - start) / number)
        cpu_times.append((time.process_time() - start_cpu) / number)
    return Timing(times, cpu_times)


def growth_ratios(sizes, values):
    """Growth between consecutive image sizes, raw and per 4× image area.

    For square images of sides s1 < s2 the area grows by a = (s2/s1)²; a value v grows by
    v2/v1, i.e. (v2/v1)^(log 4 / log a) per 4× area (4.0 for exactly linear growth).
    """
    out = []
    for (s1, v1), (s2, v2) in zip(zip(sizes, values), zip(sizes[1:], values[1:])):
        area = (s2 / s1) ** 2
        ratio = v2 / v1 if v1 and v1 > 0 and v2 is not None else None
        per_4x = (ratio ** (math.log(4.0) / math.log(area))
                  if ratio is not None and ratio > 0 and area > 1 else None)
        out.append({"from": s1, "to": s2, "area_ratio": area, "ratio": ratio,
                    "ratio_per_4x_area": per_4x})
    return out


# --------------------------------------------------------------------------------------
# FLOPs, counted analytically from the built model (module docstring).

@dataclasses.dataclass(frozen=True)
class FlopTerm:
    """One matmul-class op of the forward pass.

    Attributes:
      piece: "backbone", "encoder", "decoder" or "renderer".
      name: the op (layer or einsum).
      macs: multiply-adds of one forward evaluation per cell (model work).
      grad_operands: operands that need a gradient in the training step (0, 1 or 2); the
        backward pass costs grad_operands × macs.
      executed_macs: multiply-adds actually executed (a while-loop wavefront's unused
        slots too).
    """

    piece: str
    name: str
    macs: int
    grad_operands: int
    executed_macs: int

    @property
    def forward_flops(self):
        return 2 * self.macs

    @property
    def backward_flops(self):
        return 2 * self.macs * self.grad_operands


def _dense_terms(piece, net, rows, executed_rows, grad_first_input=True):
    """Every Dense layer of an MLP applied to `rows` rows."""
    terms = []
    for k, layer in enumerate(net.layers):
        fan_in, units = (int(d) for d in layer.kernel.shape)
        grads = 2 if (k > 0 or grad_first_input) else 1
        terms.append(FlopTerm(piece, f"{net.name}/{layer.name}", rows * fan_in * units, grads,
                              executed_rows * fan_in * units))
    return terms


def wavefront_slots(grid_h, grid_w, lateral=True):
    """Cell evaluations the encoder's loop executes (§1.2).

    Mirrors encoder.CellEncoder.call: an unrolled wavefront (at most UNROLL_MAX_STEPS
    steps) encodes only the H·W cells; the while loop runs T = 2(H − 1) + W steps of
    min(H, ceil(W/2)) slots, some unused; without lateral connections all H·W cells in one
    step.
    """
    from spair_tf.encoder import UNROLL_MAX_STEPS

    n_steps = 2 * (grid_h - 1) + grid_w
    if not lateral or n_steps <= UNROLL_MAX_STEPS:
        return grid_h * grid_w
    return n_steps * min(grid_h, (grid_w + 1) // 2)


def uses_dense_renderer(height, width):
    """Whether SPAIR.decode renders an image of this size with renderer.render_dense."""
    from spair_tf import model as model_lib

    return max(height, width) <= getattr(model_lib, "DENSE_RENDER_MAX_SIZE", 0)


def _block_pairs(grid, window):
    """Pairs (cell i, offset d), |d| ≤ window, whose target cell i + d is inside the grid."""
    return sum(max(0, min(grid, grid - d) - max(0, -d)) for d in range(-window, window + 1))


def flop_terms(model, batch, height, width):
    """The matmul-class ops of SPAIR's forward pass on [batch, height, width, 3] images.

    Args:
      model: a built spair_tf.model.SPAIR.
      batch, height, width: the input's shape.
    Returns:
      A list of FlopTerm (module docstring: what is counted and how).
    """
    from spair_tf import glimpse

    c = model.config
    terms = []
    # Backbone (§1.1): strided 4×4 convolutions, output length ceil(n/s), then 1×1.
    h, w = height, width
    for k, (conv, stride) in enumerate(zip(model.backbone.strided, model.backbone.STRIDES)):
        kh, kw, c_in, c_out = (int(d) for d in conv.kernel.shape)
        h, w = -(-h // stride), -(-w // stride)
        macs = batch * h * w * kh * kw * c_in * c_out
        terms.append(FlopTerm("backbone", conv.name, macs, 1 if k == 0 else 2, macs))
    for conv in model.backbone.pointwise:
        _, _, c_in, c_out = (int(d) for d in conv.kernel.shape)
        macs = batch * h * w * c_in * c_out
        terms.append(FlopTerm("backbone", conv.name, macs, 2, macs))

    # Encoder (§1.2): four MLPs and one glimpse per cell.
    grid_h, grid_w = -(-height // c.cell_size), -(-width // c.cell_size)
    rows = batch * grid_h * grid_w
    executed = batch * wavefront_slots(grid_h, grid_w, c.lateral)
    enc = model.encoder
    for net in (enc.box_net, enc.object_encoder, enc.depth_net, enc.pres_net):
        terms += _dense_terms("encoder", net, rows, executed)
    # Glimpse (§1.5, glimpse.cell_glimpses): G_y·window then ·G_xᵀ over a window of
    # min(n, 2·cell_window + 1 cells) px per axis; the first einsum's other operand is the image.
    size, channels = c.object_size, 3
    span = (2 * glimpse.cell_window(c.cell_size, c.anchor_size, size) + 1) * c.cell_size
    window_h, window_w = min(height, span), min(width, span)
    per_cell = size * window_h * window_w * channels
    terms.append(FlopTerm("encoder", "glimpse/rows", rows * per_cell, 1, executed * per_cell))
    per_cell = size * size * window_w * channels
    terms.append(FlopTerm("encoder", "glimpse/columns", rows * per_cell, 2,
                          executed * per_cell))

    # Object decoder (§1.6).
    terms += _dense_terms("decoder", model.object_decoder, rows, rows)

    # Renderer (§1.7): the model renders images up to model.DENSE_RENDER_MAX_SIZE px with
    # renderer.render_dense (every sprite on the whole image), larger ones with the windowed
    # renderer.render. Both first multiply the sprite maps (α̃, γ, o: 2 + C channels) by
    # R_xᵀ, then R_y by that. The windowed one does so per column offset d_x ∈ [−n, n] and
    # block offset (d_y, d_x), only for sprites whose target block lies inside the grid.
    maps = 2 + channels
    if uses_dense_renderer(height, width):
        macs = batch * grid_h * grid_w * size * width * maps * size
        terms.append(FlopTerm("renderer", "render_dense/columns", macs, 2, macs))
        macs = batch * grid_h * grid_w * height * width * maps * size
        terms.append(FlopTerm("renderer", "render_dense/rows", macs, 2, macs))
        # The sums over sprites (Σα'·Ro, Σγ'α'·Ro, ...) are elementwise products and a
        # reduction, not counted; the coverage count is an einsum of two step functions,
        # which have no gradient.
        macs = batch * grid_h * grid_w * height * width
        terms.append(FlopTerm("renderer", "render_dense/coverage", macs, 0, macs))
        return terms
    n = glimpse.cell_window(c.cell_size, c.anchor_size, size)
    pairs_h, pairs_w = _block_pairs(grid_h, n), _block_pairs(grid_w, n)
    macs = batch * grid_h * pairs_w * size * c.cell_size * maps * size
    terms.append(FlopTerm("renderer", "render/columns", macs, 2, macs))
    macs = batch * pairs_h * pairs_w * c.cell_size * c.cell_size * maps * size
    terms.append(FlopTerm("renderer", "render/rows", macs, 2, macs))
    return terms


def summarise_flops(terms):
    """Totals of a list of FlopTerm: forward, backward, training step, by piece."""
    pieces = {}
    for t in terms:
        p = pieces.setdefault(t.piece, {"forward": 0, "backward": 0, "executed_forward": 0})
        p["forward"] += t.forward_flops
        p["backward"] += t.backward_flops
        p["executed_forward"] += 2 * t.executed_macs
    forward = sum(p["forward"] for p in pieces.values())
    backward = sum(p["backward"] for p in pieces.values())
    return {"forward": forward, "backward": backward, "step": forward + backward,
            "executed_forward": sum(p["executed_forward"] for p in pieces.values()),
            "by_piece": pieces,
            "terms": [dict(dataclasses.asdict(t), forward_flops=t.forward_flops,
                           backward_flops=t.backward_flops) for t in terms]}


# --------------------------------------------------------------------------------------
# Measurements.

def matmul_rate(size=2048, repeats=10):
    """The fp32 matmul rate (FLOP/s) of a size×size @ size×size tf.matmul in a tf.function.

    The operands are function arguments (not captured constants), so nothing is folded at
    trace time. Returns a dict with the best time and the rate 2·size³ / best time.
    """
    import tensorflow as tf

    if size < 1 or repeats < 1:
        raise ValueError(f"size={size}, repeats={repeats}: expected positive ints.")
    a = tf.random.stateless_normal([size, size], seed=(0, 1))
    b = tf.random.stateless_normal([size, size], seed=(0, 2))
    product = tf.function(tf.linalg.matmul)
    load = load_average()
    timing = best_time(product, (a, b), repeats)
    flops = 2 * size ** 3
    return {"size": size, "flops": flops, **timing.as_dict(),
            "flops_per_s": flops / timing.best_s, "load_average": [load, load_average()]}


def _build_trainer(batch_size, image_size, global_step, model_dir, seed=0):
    """SPAIR's Trainer (its defaults) with its global step set to `global_step`."""
    trainer = _build_model_trainer("spair", batch_size, image_size, None, model_dir, seed)
    trainer.step.assign(global_step)
    return trainer


def _build_model_trainer(name, batch_size, image_size, n_steps, model_dir, seed=0):
    """The Trainer of SPAIR (its defaults) or of AIR / DAIR with n fixed steps (§4.2, §4.3)."""
    import tensorflow as tf

    from spair_tf.config import SpairConfig, TrainConfig
    from spair_tf.training import Trainer

    shape = (image_size, image_size, 3)
    tf.keras.utils.set_random_seed(seed)
    if name == "spair":
        from spair_tf.model import SPAIR

        return Trainer(lambda: SPAIR(SpairConfig()),
                       TrainConfig(batch_size=batch_size, seed=seed), model_dir,
                       image_shape=shape)
    from baselines.air import AIR, AirConfig

    config = AirConfig(model=name, fixed_steps=n_steps, glimpse_size=14)
    return Trainer(lambda: AIR(config, image_shape=shape, seed=seed),
                   TrainConfig(batch_size=batch_size, gradient_noise=False, seed=seed),
                   model_dir, image_shape=shape)


def benchmark_models(names=("spair", "air", "dair"), batch_size=64, image_size=48, n_steps=5,
                     rounds=5, steps_per_round=5, global_step=1000):
    """Training images/s of several models through the same Trainer step, side by side.

    Every model is built and compiled first; then `rounds` rounds each time
    `steps_per_round` steps of every model in turn, so that all see the same load. Reports,
    per model, the median and best seconds per step over the rounds and images/s from the
    median; and each model's images/s relative to the first (SPAIR).
    """
    import numpy as np

    images = _training_images(batch_size, image_size)
    batch = {"images": images}
    load = load_average()
    out = {"batch_size": batch_size, "image_size": [image_size, image_size],
           "n_steps_air_dair": n_steps, "rounds": rounds, "steps_per_round": steps_per_round,
           "models": {}}
    with contextlib.ExitStack() as stack:
        trainers, first_call = {}, {}
        for name in names:
            model_dir = stack.enter_context(tempfile.TemporaryDirectory())
            trainers[name] = _build_model_trainer(name, batch_size, image_size, n_steps,
                                                  model_dir)
            trainers[name].step.assign(global_step)
            start = time.perf_counter()
            _wait(trainers[name]._train_step(batch))
            first_call[name] = time.perf_counter() - start
        times = {name: [] for name in names}
        for _ in range(rounds):
            for name in names:
                start = time.perf_counter()
                for _ in range(steps_per_round):
                    result = trainers[name]._train_step(batch)
                _wait(result)
                times[name].append((time.perf_counter() - start) / steps_per_round)
    for name in names:
        median = float(np.median(times[name]))
        out["models"][name] = {"first_call_s": first_call[name], "step_times_s": times[name],
                               "median_step_s": median, "best_step_s": min(times[name]),
                               "images_per_s": batch_size / median}
    reference = out["models"][names[0]]["images_per_s"]
    for name in names:
        out["models"][name]["images_per_s_relative_to_" + names[0]] = (
                out["models"][name]["images_per_s"] / reference)
    out["load_average"] = [load, load_average()]
    return out


def _training_images(batch_size, image_size, seed=0):
    import tensorflow as tf

    return tf.random.stateless_uniform([batch_size, image_size, image_size, 3], seed=(seed, 1))


def benchmark_train_step(trainer, images, repeats=5, steps_per_repeat=5, rate=None):
    """Times Trainer's compiled training step on a fixed batch; best of `repeats`.

    Args:
      trainer: a spair_tf.training.Trainer (its global step already ≥ 1000).
      images: [B, H, W, 3] in [0, 1], passed to the step as its (non-constant) argument.
      rate: the matmul rate in FLOP/s, for the FLOP floor (None: no floor).
    """
    batch_size, height, width = (int(d) for d in images.shape[:3])
    batch = {"images": images}
    step = lambda: trainer._train_step(batch)  # noqa: E731  the loop's own compiled step
    load = load_average()
    start_step = int(trainer.step.numpy())
    start = time.perf_counter()
    _wait(step())
    trace_s = time.perf_counter() - start
    timing = best_time(lambda: step(), (), repeats, steps_per_repeat)
    best = timing.best_s
    flops = summarise_flops(flop_terms(trainer.model, batch_size, height, width))
    out = {"batch_size": batch_size, "image_size": [height, width],
           "global_step_start": start_step, "first_call_s": trace_s,
           "best_step_s": best, "step_times_s": timing.times_s,
           "best_step_cpu_s": timing.best_cpu_s, "step_cpu_times_s": timing.cpu_times_s,
           "steps_per_repeat": steps_per_repeat,
           "images_per_s": batch_size / best, "flops": flops,
           "load_average": [load, load_average()]}
    if rate:
        floor = flops["step"] / rate
        out.update({"floor_s": floor, "ratio_to_floor": best / floor,
                    "target_ratio_to_floor": TARGET_RATIO_TO_FLOOR,
                    "meets_target": best / floor <= TARGET_RATIO_TO_FLOOR})
    return out


FORWARD_FUNCTION_NAME = "spair_forward"  # names the XLA module the forward compiles to
_ALLOCATION_KINDS = ("parameter", "maybe-live-out", "preallocated-temp", "constant",
                     "thread-local")


def xla_buffer_plan(dump_dir, module_pattern=FORWARD_FUNCTION_NAME):
    """The memory XLA planned for one compiled module: bytes by kind of allocation.

    Reads the `*buffer-assignment.txt` that XLA writes with `--xla_dump_to` for the module
    whose name contains `module_pattern` (`XLA_FLAGS`, set before TensorFlow starts). Each
    `allocation N: size S, <kind>...` line is one buffer of the plan: "parameter" (the
    inputs: weights and image), "maybe-live-out" (the outputs), "preallocated-temp" (one
    block that holds every intermediate, offsets reused as values die: its size is the
    computation's peak working memory), "constant", "thread-local". Returns {"parameter_bytes",
    "output_bytes", "temp_bytes", "constant_bytes", "thread_local_bytes", "total_bytes",
    "module"}, or None if no such module was dumped. The plan is what the compiled code
    allocates, independent of the allocator, the runtime and the compiler's own memory.
    """
    paths = sorted(glob.glob(os.path.join(dump_dir, "*buffer-assignment.txt")))
    paths = [p for p in paths if module_pattern in os.path.basename(p)]
    if not paths:
        return None
    path = max(paths, key=os.path.getsize)  # the module itself, not a helper it spawned
    sizes = dict.fromkeys(_ALLOCATION_KINDS, 0)
    with open(path) as f:
        for line in f:
            if not line.startswith("allocation "):
                continue
            # "allocation 3: size 1024, parameter 0, shape |f32[256]| at ShapeIndex {}:",
            # "allocation 1: size 2000, output shape is |f32[500]|, maybe-live-out:",
            # "allocation 7: size 878309424, preallocated-temp:"
            attributes = line.split(":", 1)[1]
            size = int(attributes.split(",", 1)[0].split()[1])
            kind = next((k for k in _ALLOCATION_KINDS if f", {k}" in attributes), None)
            if kind is None:
                raise ValueError(f"{path}: unknown allocation kind in {line.strip()!r}")
            sizes[kind] += size
    return {"parameter_bytes": sizes["parameter"], "output_bytes": sizes["maybe-live-out"],
            "temp_bytes": sizes["preallocated-temp"], "constant_bytes": sizes["constant"],
            "thread_local_bytes": sizes["thread-local"], "total_bytes": sum(sizes.values()),
            "module": os.path.basename(path)}


def forward_worker(image_size, repeats=3, seed=0, trace=False, xla=True):
    """One forward-pass measurement (run in a fresh process; see benchmark_forward).

    Builds SPAIR on 48×48 and takes the baseline RSS there, then times
    `model.detect(images, "mean")` in a tf.function (compiled with XLA if `xla`, as
    evaluation compiles it; the first call includes the compilation) on one random image of
    image_size × image_size (best of `repeats` after a first, tracing call). The peak is
    the process's RSS high-water mark over tracing and the runs, measured from the
    baseline (VmHWM reset after building the model), input image included; ru_maxrss is
    reported beside it.
    """
    image_size = _check_image_size(image_size, "image_size")
    import tensorflow as tf

    from spair_tf.config import SpairConfig
    from spair_tf.model import SPAIR

    tf.keras.utils.set_random_seed(seed)
    model = SPAIR(SpairConfig())
    model.build((None, BASELINE_IMAGE_SIZE, BASELINE_IMAGE_SIZE, 3))
    baseline, _ = memory_status()
    baseline_ru_maxrss = peak_rss_bytes()
    peak_was_reset = reset_peak_rss()
    def spair_forward(images):  # the name finds the XLA module in a dump (xla_buffer_plan)
        return model.detect(images, mode="mean")

    assert spair_forward.__name__ == FORWARD_FUNCTION_NAME
    detect = tf.function(spair_forward, jit_compile=xla)
    images = tf.random.stateless_uniform([1, image_size, image_size, 3], seed=(seed, 2))
    load = load_average()
    start = time.perf_counter()
    _wait(detect(images))
    first_call = time.perf_counter() - start
    timing = best_time(detect, (images,), repeats)
    _, peak = memory_status()
    grid = -(-image_size // model.config.cell_size)
    out = {"image_size": image_size, "xla": bool(xla), "cells": grid * grid,
           **timing.as_dict(),
           "first_call_s": first_call, "baseline_rss_bytes": baseline,
           "peak_rss_bytes": peak,
           "extra_rss_bytes": peak - baseline if baseline is not None else None,
           "peak_reset_after_baseline": peak_was_reset,
           "ru_maxrss_baseline_bytes": baseline_ru_maxrss, "ru_maxrss_bytes": peak_rss_bytes(),
           "forward_flops": summarise_flops(flop_terms(model, 1, image_size, image_size))[
               "forward"],
           "wavefront_steps": 2 * (grid - 1) + grid,
           "source_sha256_16": source_state()["sha256_16"],  # the code this process ran
           "load_average": [load, load_average()]}
    if trace and not xla:  # an XLA cluster is one op to the profiler: nothing to break down
        out["op_trace"] = trace_function(detect, (images,), steps=1)
    return out


def benchmark_forward(sizes, repeats=3, timeout=3600, trace=False, xla=True):
    """forward_worker for each size, each in its own subprocess, and the growth ratios."""
    sizes = [_check_image_size(s, "forward size") for s in sizes]
    runs = []
    for size in sizes:
        command = [sys.executable, "-m", "spair_tf.bench", "--forward_worker",
                   f"--forward_sizes={size}", f"--forward_repeats={repeats}",
                   f"--{'' if trace else 'no'}profile", f"--{'' if xla else 'no'}forward_xla"]
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with tempfile.TemporaryDirectory(prefix="spair_xla_dump_") as dump_dir:
            env = dict(os.environ,
                       TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
            if xla:  # XLA writes its buffer plan of the forward's module (xla_buffer_plan)
                env["XLA_FLAGS"] = " ".join(filter(None, [
                    os.environ.get("XLA_FLAGS"), f"--xla_dump_to={dump_dir}",
                    f"--xla_dump_hlo_module_re=.*{FORWARD_FUNCTION_NAME}.*"]))
            try:
                done = subprocess.run(command, capture_output=True, text=True,
                                      timeout=timeout, cwd=root, env=env)
            except subprocess.TimeoutExpired:
                runs.append({"image_size": size, "error": f"timed out after {timeout} s"})
                continue
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode != 0 or not lines:
                runs.append({"image_size": size, "error": f"exit code {done.returncode}",
                             "stderr_tail": done.stderr[-2000:]})
                continue
            run = json.loads(lines[-1])
            if xla:
                run["xla_buffer_plan"] = xla_buffer_plan(dump_dir)
            runs.append(run)
    ok = [r for r in runs if "error" not in r]
    ok_sizes = [r["image_size"] for r in ok]
    plans = [r.get("xla_buffer_plan") for r in ok]
    plan_growth = {}
    if ok and all(plans):
        plan_growth = {
            "xla_temp_memory_growth": growth_ratios(ok_sizes,
                                                    [p["temp_bytes"] for p in plans]),
            "xla_total_memory_growth": growth_ratios(ok_sizes,
                                                     [p["total_bytes"] for p in plans])}
    return {
        "batch_size": 1, "mode": "mean", "xla": bool(xla), "runs": runs,
        "time_growth": growth_ratios(ok_sizes, [r["best_s"] for r in ok]),
        "cpu_time_growth": growth_ratios(ok_sizes, [r["best_cpu_s"] for r in ok]),
        "extra_memory_growth": growth_ratios(ok_sizes, [r["extra_rss_bytes"] for r in ok]),
        "peak_memory_growth": growth_ratios(ok_sizes, [r["peak_rss_bytes"] for r in ok]),
        **plan_growth,
        "target_growth_per_4x_area": list(TARGET_GROWTH_PER_4X_AREA),
        "memory_limit_bytes": MEMORY_LIMIT_BYTES,
        "all_within_memory_limit": len(ok) == len(runs) and all(
            r["peak_rss_bytes"] <= MEMORY_LIMIT_BYTES for r in ok),
    }


# --------------------------------------------------------------------------------------
# Profile of the training step.

@contextlib.contextmanager
def _recording(owner, name, record):
    """Temporarily wraps owner.name so the arguments of its (eager) calls land in `record`.

    Used once, eagerly, to catch the real tensors the model passes to its encoder and
    renderer; the model's code is not copied.
    """
    original = getattr(owner, name)
    own_attribute = name in vars(owner)  # a module's function; else a method of the class

    def wrapper(*args, **kwargs):
        record["args"], record["kwargs"] = args, kwargs
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)
    try:
        yield record
    finally:
        if own_attribute:
            setattr(owner, name, original)
        else:
            delattr(owner, name)


class _PrecomputedModel:
    """Stands in for the model inside SPAIR.compute_loss: returns a given forward pass.

    So the loss is timed by the model's own code on precomputed latents, not a copy of it.
    """

    def __init__(self, model, out):
        self.config = model.config
        self.count_prior_log_odds = model.count_prior_log_odds
        self._out = out

    def __call__(self, images, step=0, mode="train", features=None):
        return self._out


def _floating(structure):
    import tensorflow as tf

    return [t for t in tf.nest.flatten(structure) if t.dtype.is_floating]


def _with_backward(forward, variables, n_sources):
    """A function computing forward(*args) and its VJP with random cotangents.

    The gradient is taken w.r.t. `variables` and the floating tensors of the first
    `n_sources` arguments (those that need a gradient in the real step); the cotangents
    are the last argument (one per floating output).
    """
    import tensorflow as tf

    def forward_backward(*args):
        *inputs, cotangents = args
        sources = _floating(inputs[:n_sources])
        with tf.GradientTape() as tape:
            tape.watch(sources)
            outputs = _floating(forward(*inputs))
        grads = tape.gradient(outputs, list(variables) + sources, output_gradients=cotangents)
        return [g for g in grads if g is not None]

    return forward_backward


def _cotangents(outputs, seed):
    import tensorflow as tf

    return [tf.random.stateless_normal(tf.shape(t), seed=(seed, k), dtype=t.dtype)
            for k, t in enumerate(_floating(outputs))]


def _time_piece(name, forward, inputs, variables, n_sources, flops, repeats, number,
                xla=False):
    """Forward and forward+backward times of one piece; backward = their difference.

    xla: compile the piece with XLA (as the training step compiles it) or as a graph.
    """
    import tensorflow as tf

    fwd = tf.function(forward, jit_compile=xla)
    outputs = fwd(*inputs)
    fwd_t = best_time(fwd, inputs, repeats, number)
    entry = {"piece": name, "compiled": "xla" if xla else "graph",
             "forward_s": fwd_t.best_s, "forward_cpu_s": fwd_t.best_cpu_s,
             "forward_flops": flops.get("forward", 0), "backward_flops": flops.get("backward", 0)}
    if n_sources is not None:
        both = tf.function(_with_backward(forward, variables, n_sources), jit_compile=xla)
        both_t = best_time(both, tuple(inputs) + (_cotangents(outputs, 7),), repeats, number)
        entry.update({"forward_backward_s": both_t.best_s,
                      "forward_backward_cpu_s": both_t.best_cpu_s,
                      "backward_s": max(both_t.best_s - fwd_t.best_s, 0.0),
                      "backward_cpu_s": max(both_t.best_cpu_s - fwd_t.best_cpu_s, 0.0)})
    for part in ("forward", "backward"):
        seconds = entry.get(f"{part}_s")
        if seconds and entry[f"{part}_flops"]:
            entry[f"{part}_flops_per_s"] = entry[f"{part}_flops"] / seconds
    return entry, outputs


def profile_train_step(trainer, images, repeats=5, number=3, rate=None, trace_steps=3):
    """The training step cut into separately compiled pieces, and the TF profiler's trace.

    Each piece is compiled as the step compiles it: with `TrainConfig.xla`, the model's
    `stem` (SPAIR's backbone) as a graph, everything else with XLA (the optimizer too, as
    without a distribution strategy). Pieces (each a tf.function taking its real inputs as
    arguments, at global step ≥ 1000): backbone; encoder (the wavefront loop: glimpses and
    the four per-cell networks); decode (object decoder, sprite transforms and renderer,
    `SPAIR.decode`) and within it the object-decoder MLP and the renderer alone; loss
    (`SPAIR.compute_loss` on precomputed latents: BCE, Normal KLs, count-prior KL);
    optimizer (clip, gradient noise, Adam).
    Each piece's backward = time(forward + VJP with random cotangents) − time(forward).
    Diagnostics beside the loop: every cell's glimpse in one call, and the four per-cell
    networks on all cells in one call (their sum against the loop shows the loop overhead).
    """
    import tensorflow as tf

    from spair_tf import glimpse as glimpse_lib
    from spair_tf import renderer
    from spair_tf.model import SPAIR
    from spair_tf.training import make_optimizer

    model = trainer.model
    c = model.config
    batch_size, height, width = (int(d) for d in images.shape[:3])
    step = tf.constant(int(trainer.step.numpy()), tf.int64)
    flops = summarise_flops(flop_terms(model, batch_size, height, width))["by_piece"]
    load = load_average()
    pieces = []

    xla = bool(trainer.config.xla)
    stem = getattr(model, "stem", None)

    def piece(name, forward, inputs, variables, n_sources, piece_flops, compiled=None):
        entry, outputs = _time_piece(name, forward, inputs, variables, n_sources,
                                     piece_flops or {}, repeats, number,
                                     xla=xla if compiled is None else compiled)
        pieces.append(entry)
        return outputs

    # Real intermediate tensors: one eager forward pass, recording what the model passes
    # to its encoder and to whichever renderer it uses at this size.
    encoder_call, render_call, dense_call = {}, {}, {}
    with _recording(model.encoder, "call", encoder_call), \
            _recording(renderer, "render", render_call), \
            _recording(renderer, "render_dense", dense_call):
        out = model(images, step=step, mode="train")
    render_name, render_fn = ("render_dense", renderer.render_dense) if dense_call else (
        "render", renderer.render)
    render_call = dense_call or render_call
    features = model.backbone(images)
    noise = encoder_call["kwargs"]["noise"]
    z = {k: v for k, v in out.items() if k != "reconstruction"}
    render_args = render_call["args"]

    piece("backbone", lambda x: model.backbone(x), (images,),
          model.backbone.trainable_variables, 0, flops.get("backbone"),
          compiled=xla and stem is not model.backbone)
    if xla and stem is model.backbone:  # why the step keeps it out of the XLA cluster
        piece("diagnostic: backbone compiled with XLA", lambda x: model.backbone(x),
              (images,), model.backbone.trainable_variables, 0, flops.get("backbone"),
              compiled=True)
    encoder_kwargs = encoder_call["kwargs"]  # e.g. hard_pres, as the model passes them
    piece("encoder", lambda f, x, e, t: model.encoder(
              x, **{**encoder_kwargs, "features": f, "noise": e, "step": t}),
          (features, images, noise, step), model.encoder.trainable_variables, 1,
          flops.get("encoder"))
    decoder_flops = {k: flops.get("decoder", {}).get(k, 0) + flops.get("renderer", {}).get(k, 0)
                     for k in ("forward", "backward")}
    piece("decode (decoder + renderer)", lambda zz, x: model.decode(zz, x),
          (z, images), model.object_decoder.trainable_variables, 1, decoder_flops)
    piece("object decoder MLP", lambda v: model.object_decoder(v),
          (tf.reshape(z["z_what"], [-1, c.n_what]),),
          model.object_decoder.trainable_variables, 1, flops.get("decoder"))
    render_kwargs = render_call["kwargs"]
    piece(f"renderer ({render_name})", lambda *a: render_fn(*a, **render_kwargs),
          tuple(render_args), [], 4, flops.get("renderer"))
    piece("loss", lambda o, x, t: SPAIR.compute_loss(_PrecomputedModel(model, o), x, t)[0],
          (out, images, step), [], 1, {})

    # The update Trainer applies after the gradients (clip by global norm, gradient noise,
    # Adam; SPAIR_SPEC §1.11), on real gradients, with its own optimizer.
    with tf.GradientTape() as tape:
        loss, _ = model.compute_loss(images, step, training=True)
    variables = model.trainable_variables
    grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]
    optimizer = make_optimizer(trainer.config)
    optimizer.build(variables)

    def update(gs):
        grad_norm = tf.linalg.global_norm(gs)
        optimizer.apply_gradients(zip(trainer._finish(gs, grad_norm), variables))
        return grad_norm

    # Compiled as Trainer compiles it: one XLA computation without a strategy.
    piece("optimizer (clip, noise, Adam)", update, (grads,), [], None, {},
          compiled=bool(trainer._fused_apply))

    # The whole loss and its gradients (no optimizer), to compare with the pieces' sum.
    piece("model loss (full forward)",
          lambda x, t: model.compute_loss(x, t, training=True)[0], (images, step),
          model.trainable_variables, 0, {k: sum(p[k] for p in flops.values())
                                         for k in ("forward", "backward")})

    # Diagnostics: the loop's work done in one call over all cells.
    grid_h, grid_w = int(features.shape[1]), int(features.shape[2])
    n_cells = grid_h * grid_w
    ii, jj = tf.meshgrid(tf.range(grid_h), tf.range(grid_w), indexing="ij")
    rows_, cols_ = tf.reshape(ii, [-1]), tf.reshape(jj, [-1])
    pixel = model.pixel_boxes(z["box"])                                # [B, H, W, 4]
    pixel = tf.transpose(tf.reshape(pixel, [batch_size, n_cells, 4]), [1, 0, 2])  # [N, B, 4]
    glimpse_flops = {"forward": 0, "backward": 0}
    for t in flop_terms(model, batch_size, height, width):
        if t.name.startswith("glimpse/"):
            glimpse_flops["forward"] += t.forward_flops
            glimpse_flops["backward"] += t.backward_flops
    piece("diagnostic: all glimpses in one call",
          lambda centre, size, x: glimpse_lib.cell_glimpses(
              glimpse_lib.batch_last(x), centre, size, rows_, cols_, c.object_size,
              c.cell_size),
          (pixel[..., :2], pixel[..., 2:], images), [], 2, glimpse_flops)
    enc = model.encoder
    rows = batch_size * n_cells
    nets = (enc.box_net, enc.object_encoder, enc.depth_net, enc.pres_net)
    net_inputs = [tf.random.stateless_normal([rows, int(net.layers[0].kernel.shape[0])],
                                             seed=(3, k)) for k, net in enumerate(nets)]
    net_flops = {"forward": 0, "backward": 0}
    for t in flop_terms(model, batch_size, height, width):
        if t.piece == "encoder" and not t.name.startswith("glimpse/"):
            net_flops["forward"] += t.forward_flops
            net_flops["backward"] += t.backward_flops
    piece("diagnostic: the four per-cell networks in one call",
          lambda xs: [net(x) for net, x in zip(nets, xs)], (net_inputs,),
          [v for net in nets for v in net.trainable_variables], 1, net_flops)

    steps_in_loop = 2 * (grid_h - 1) + grid_w if c.lateral else 1  # wavefront_schedule
    result = {"pieces": pieces, "wavefront_steps": steps_in_loop,
              "load_average": [load, load_average()]}
    if rate:
        for entry in pieces:
            for part in ("forward", "backward"):
                if entry.get(f"{part}_flops") and entry.get(f"{part}_s"):
                    entry[f"{part}_floor_s"] = entry[f"{part}_flops"] / rate
    result["op_trace"] = trace_train_step(trainer, images, trace_steps)
    return result


def _region(op_name):
    """Region of an op of the training step, from its name scope (approximate).

    Ops built inside the model's call carry its scope ("spair…/"), the backward ones
    "gradient_tape/"; the loss (built in compute_loss, outside the call), clipping,
    gradient noise, Adam and the gradient sums carry none.
    """
    backward = op_name.startswith("gradient_tape/")
    name = op_name[len("gradient_tape/"):] if backward else op_name
    for key, region in (("backbone", "backbone"), ("cell_encoder", "encoder loop"),
                        ("object_decoder", "object decoder")):
        if key in name:
            break
    else:
        region = ("renderer and sprite transforms" if name.startswith("spair")
                  else "loss, clipping, noise, Adam, gradient sums (unscoped)")
    return f"{region} ({'backward' if backward else 'forward'})"


# Ops whose trace event spans other ops (a loop's or a call's body): not counted themselves.
_CONTAINER_OPS = ("While", "StatelessWhile", "If", "StatelessIf", "PartitionedCall",
                  "StatefulPartitionedCall")


def trace_train_step(trainer, images, steps=3, top=25):
    """Op time of Trainer's compiled training step from the TF profiler (`trace_function`)."""
    batch = {"images": images}
    return trace_function(lambda: trainer._train_step(batch), (), steps, top)


def trace_function(fn, args, steps=3, top=25):
    """Op time of fn(*args) from the TF profiler's trace, per call.

    Sums, over `steps` calls (after an untimed one), the durations of the ops on the TF
    compute threads, by op type, by region (name scope: backbone, encoder loop, object
    decoder, the rest of the model's call, unscoped; forward/backward) and by op. Ops on
    different threads overlap, so the sum can exceed wall time: compare shares.
    """
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    _wait(fn(*args))
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            start = time.perf_counter()
            for _ in range(steps):
                _wait(fn(*args))
            wall = (time.perf_counter() - start) / steps
        finally:
            tf.profiler.experimental.stop()
        paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        if not paths:
            return {"error": "the profiler wrote no trace"}
        space = xplane_pb2.XSpace()
        with open(paths[0], "rb") as f:
            space.ParseFromString(f.read())
    by_type, by_region, by_op = {}, {}, {}
    for plane in space.planes:
        metadata = plane.event_metadata
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = metadata[event.metadata_id].name
                if ":" not in name or "::" in name:
                    continue  # executor bookkeeping ("ExecutorState::Process"), not an op
                op_name, op_type = name.rsplit(":", 1)
                if op_type in _CONTAINER_OPS:
                    continue
                seconds = event.duration_ps * 1e-12 / steps
                op_type = op_type.replace("_MklNative", "").replace("_Mkl", "")
                by_type[op_type] = by_type.get(op_type, 0.0) + seconds
                region = _region(op_name)
                by_region[region] = by_region.get(region, 0.0) + seconds
                by_op[name] = by_op.get(name, 0.0) + seconds
    total = sum(by_type.values())

    def ranked(table, limit=None):
        items = sorted(table.items(), key=lambda kv: -kv[1])[:limit]
        return [{"name": k, "s_per_call": v, "share": v / total if total else None}
                for k, v in items]

    return {"calls": steps, "wall_s_per_call_traced": wall, "op_seconds_per_call": total,
            "by_type": ranked(by_type, top), "by_region": ranked(by_region),
            "top_ops": ranked(by_op, top)}


# --------------------------------------------------------------------------------------
# Entry point.

def machine_info():
    """CPU, core count and library versions; TF's thread pools if TF is already loaded."""
    from importlib import metadata

    cpu = None
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), None)
    info = {"cpu": cpu or platform.processor(), "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version()}
    with contextlib.suppress(metadata.PackageNotFoundError):
        info["tensorflow"] = metadata.version("tensorflow")
    if "tensorflow" in sys.modules:  # not imported just for this: the forward-only parent
        tf = sys.modules["tensorflow"]
        info.update({
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "devices": [d.name for d in tf.config.list_logical_devices()]})
    return info


def git_commit():
    """HEAD of the repository this file is in (as spair_tf.training.git_commit, without
    importing TensorFlow into the forward benchmark's parent process)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def source_state():
    """What code the figures measure: HEAD, the files changed since, and a hash of each
    spair_tf module (other work may sit uncommitted in the tree)."""
    import hashlib

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    package = os.path.join(root, "spair_tf")
    hashes = {}
    for name in sorted(os.listdir(package)):
        if name.endswith(".py"):
            with open(os.path.join(package, name), "rb") as f:
                hashes[f"spair_tf/{name}"] = hashlib.sha256(f.read()).hexdigest()[:16]
    try:
        status = subprocess.run(["git", "status", "--porcelain", "--", "spair_tf"], cwd=root,
                                capture_output=True, text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        status = None
    return {"git_commit": git_commit(), "uncommitted": status, "sha256_16": hashes}


def command_line():
    return shlex.join(["python", "-m", "spair_tf.bench"] + sys.argv[1:])


def run_benchmarks(sections=("train", "forward"), profile=False, batch_size=32,
                   train_image_size=48, global_step=1000, forward_sizes=(48, 192, 768, 1536),
                   repeats=5, steps_per_repeat=5, forward_repeats=3, matmul_size=2048,
                   forward_timeout=3600, models_batch_size=64, models_n_steps=5,
                   models_rounds=5, forward_xla=True):
    """All requested measurements as one JSON-able dict (see the module docstring)."""
    unknown = set(sections) - {"train", "forward", "models"}
    if unknown:
        raise ValueError(f"sections={list(sections)}: unknown {sorted(unknown)}; use train, "
                         "forward and/or models.")
    if profile and "train" not in sections:
        raise ValueError("--profile needs the train section (--sections=train[,forward]).")
    result = {"command": command_line(), "source": source_state(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "load_average_start": load_average(),
              "flop_counting": "analytic: every convolution, dense layer and einsum (glimpse "
                               "sampler, renderer) of the forward pass, 2 FLOPs per "
                               "multiply-add, one evaluation per grid cell; backward = one "
                               "forward per operand that needs a gradient (not the input "
                               "image); elementwise ops not counted. See spair_tf/bench.py."}
    if "train" in sections:
        # The matmul rate before and after the step (the load changes); the floor uses the
        # best, so it is the machine's rate, not a loaded moment's.
        before = matmul_rate(matmul_size)
        with tempfile.TemporaryDirectory() as model_dir:
            trainer = _build_trainer(batch_size, train_image_size, global_step, model_dir)
            images = _training_images(batch_size, train_image_size)
            train = benchmark_train_step(trainer, images, repeats, steps_per_repeat)
            after = matmul_rate(matmul_size)
            rate = max(before["flops_per_s"], after["flops_per_s"])
            result["matmul"] = {"before_train": before, "after_train": after,
                                "flops_per_s": rate}
            floor = train["flops"]["step"] / rate
            train.update({"floor_s": floor, "ratio_to_floor": train["best_step_s"] / floor,
                          "target_ratio_to_floor": TARGET_RATIO_TO_FLOOR,
                          "meets_target": train["best_step_s"] / floor <= TARGET_RATIO_TO_FLOOR})
            result["train"] = train
            if profile:
                result["profile"] = profile_train_step(trainer, images, repeats, rate=rate)
    if "models" in sections:
        result["models"] = benchmark_models(
                batch_size=models_batch_size, image_size=train_image_size,
                n_steps=models_n_steps, rounds=models_rounds, steps_per_round=steps_per_repeat,
                global_step=global_step)
    if "forward" in sections:
        result["forward"] = forward = benchmark_forward(
            [int(s) for s in forward_sizes], forward_repeats, forward_timeout, trace=profile,
            xla=forward_xla)
        # Others may edit the package meanwhile: say if a subprocess ran different code.
        forward["same_source_as_parent"] = all(
            run.pop("source_sha256_16", None) == result["source"]["sha256_16"]
            for run in forward["runs"] if "error" not in run)
    result["machine"] = machine_info()
    result["load_average_end"] = load_average()
    return result


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}; all options are --flags.")
    if FLAGS.forward_worker:
        if len(FLAGS.forward_sizes) != 1:
            raise ValueError(f"--forward_worker measures one size; got --forward_sizes="
                             f"{','.join(FLAGS.forward_sizes)}.")
        print(json.dumps(forward_worker(_parse_sizes(FLAGS.forward_sizes)[0],
                                        FLAGS.forward_repeats, trace=FLAGS.profile,
                                        xla=FLAGS.forward_xla)))
        return
    result = run_benchmarks(
        sections=FLAGS.sections, profile=FLAGS.profile, batch_size=FLAGS.batch_size,
        train_image_size=FLAGS.train_image_size, global_step=FLAGS.global_step,
        forward_sizes=_parse_sizes(FLAGS.forward_sizes), repeats=FLAGS.repeats,
        steps_per_repeat=FLAGS.steps_per_repeat, forward_repeats=FLAGS.forward_repeats,
        matmul_size=FLAGS.matmul_size, forward_timeout=FLAGS.forward_timeout,
        models_batch_size=FLAGS.models_batch_size, models_n_steps=FLAGS.models_n_steps,
        models_rounds=FLAGS.models_rounds, forward_xla=FLAGS.forward_xla)
    if FLAGS.output_json:
        from spair_tf import io_utils

        io_utils.atomic_write_json(FLAGS.output_json, result)
    print(json.dumps(result, indent=2, sort_keys=True))


def _parse_sizes(values):
    try:
        sizes = [int(v) for v in values]
    except ValueError as error:
        raise ValueError(f"--forward_sizes={','.join(values)}: expected image sides in px, "
                         "e.g. 48,192,768,1536.") from error
    return [_check_image_size(s, "--forward_sizes entry") for s in sizes]


if __name__ == "__main__":
    from spair_tf import cli

    cli.run(main)
