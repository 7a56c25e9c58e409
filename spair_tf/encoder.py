"""SPAIR's per-cell encoder with lateral connections (SPAIR_SPEC §1.2, §1.3, paper §4.3).

Each cell (i, j) of the H×W grid predicts one object from its backbone feature f_ij and the
object vectors of its four already-processed neighbours (i−1, j−1), (i−1, j), (i−1, j+1),
(i, j−1). Visiting cells in raster order would take H·W sequential steps; but a cell only
depends on those four neighbours, so all cells on the wavefront t = 2i + j are independent
and the encoder runs in 2(H − 1) + W steps (`wavefront_schedule`). All sampling noise is
drawn per cell before the loop, so any valid visiting order gives identical results
(`raster_schedule` is kept as the reference the tests compare against).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from spair_tf import glimpse as glimpse_lib
from spair_tf import latents
from spair_tf import schedules
from spair_tf.config import SpairConfig
from spair_tf.networks import mlp




# --------------------------------------------------------------------------------------
# Visiting orders. A schedule is an int32 [T, n] table of flat cell ids (i·W + j) visited
# at each of T sequential steps; the id N = H·W marks an unused slot.

def wavefront_schedule(grid_h, grid_w):
    """Cells with equal t = 2i + j, one step per t: [2(H − 1) + W, min(H, ceil(W/2))]."""
    n_steps = 2 * (grid_h - 1) + grid_w
    width = tf.minimum(grid_h, (grid_w + 1) // 2)
    t = tf.range(n_steps)[:, None]                                   # [T, 1]
    first_row = tf.maximum(0, (t - grid_w + 2) // 2)                 # smallest i with j < W
    i = first_row + tf.range(width)[None, :]                         # [T, n]
    j = t - 2 * i
    valid = (i < grid_h) & (j >= 0) & (j < grid_w)
    return tf.where(valid, i * grid_w + j, grid_h * grid_w)


def raster_schedule(grid_h, grid_w):
    """One cell per step in raster order: [H·W, 1]."""
    return tf.range(grid_h * grid_w)[:, None]


def parallel_schedule(grid_h, grid_w):
    """All cells at once: valid only without lateral connections. [1, H·W]."""
    return tf.range(grid_h * grid_w)[None, :]


def neighbour_sources(table, grid_h, grid_w, depth):
    """Where each scheduled cell finds its four neighbours' object vectors (§1.2).

    The neighbours of cell (i, j) are (i−1, j−1), (i−1, j), (i−1, j+1), (i, j−1), each
    visited some lag ≥ 1 steps earlier, at most `depth` = K steps (`schedule_depth`). With
    the object vectors of the last K steps kept newest first and flattened to [K·n, B, V],
    followed by the edge element at row K·n, neighbour (lag, slot) is row
    (lag − 1)·n + slot, and a neighbour outside the grid (or of an unused slot) is row K·n.

    Args:
      table: int32 [T, n] schedule (flat ids i·W + j; H·W marks an unused slot).
      grid_h, grid_w: the grid size.
      depth: K, a Python int (a static shape for XLA).
    Returns:
      sources: int32 [T, n, 4] rows as above;
      positions: int32 [H·W], position t·n + slot of each cell in the schedule.
    """
    n_steps, n_slots = tf.shape(table)[0], tf.shape(table)[1]
    n_cells = grid_h * grid_w
    flat = tf.reshape(table, [-1])                                   # [T·n]
    used = flat < n_cells
    # Unused slots all scatter to the extra row N, which is dropped.
    positions = tf.scatter_nd(flat[:, None], tf.range(n_steps * n_slots),
                              [n_cells + 1])[:n_cells]               # [N]
    i, j = flat // grid_w, flat % grid_w
    rows = tf.stack([i - 1, i - 1, i - 1, i], -1)                   # [T·n, 4]
    cols = tf.stack([j - 1, j, j + 1, j - 1], -1)
    inside = (rows >= 0) & (cols >= 0) & (cols < grid_w) & used[:, None]
    neighbour = tf.where(inside, rows * grid_w + cols, 0)
    where = tf.gather(positions, neighbour)                          # [T·n, 4]
    step = tf.range(n_steps * n_slots)[:, None] // n_slots
    lag = step - where // n_slots
    inside &= lag > 0      # a neighbour in the same step (no lateral order) is not read
    sources = tf.where(inside, (lag - 1) * n_slots + where % n_slots, depth * n_slots)
    return tf.reshape(sources, [n_steps, n_slots, 4]), positions


# Static step counts up to this are unrolled into straight-line code (the wavefront over a
# 48×48 crop has 10 steps, over an 84×84 image 19); longer schedules run as a while loop.
UNROLL_MAX_STEPS = 24


# Each visiting order: its table, its number of steps T(H, W) and the largest lag K(W)
# between a cell and its neighbours ((i−1, j−1) is 3 wavefront steps back, W + 1 raster
# steps back; without lateral connections nothing is read). T and K are Python ints for a
# static grid, the static shapes XLA needs.
SCHEDULES = {
    "wavefront": (wavefront_schedule, lambda h, w: 2 * (h - 1) + w, lambda w: 3),
    "raster": (raster_schedule, lambda h, w: h * w, lambda w: w + 1),
    "parallel": (parallel_schedule, lambda h, w: 1, lambda w: 1),
}


def schedule_depth(schedule, grid_w):
    """K: the largest lag between a cell and its neighbours in `schedule` (SCHEDULES)."""
    return SCHEDULES[schedule][2](grid_w)


class CellEncoder(keras.layers.Layer):
    """The per-cell networks of §1.2 and the loop that applies them cell by cell.

    Networks (two ReLU hidden layers of 100, linear output; weights shared across cells):
      box:    [f_ij, context] → z_where mean (4), raw std (4), box features (100)
      object: glimpse (14·14·3) → MLP [512, 256] → z_what mean (A), raw std (A)
      depth:  [f_ij, context, box features, box, z_what] → mean, raw std, features (100)
      pres:   [f_ij, context, depth features, box, z_what, depth] → z_pres logit
    The context is the four earlier neighbours' object vectors [b_y, b_x, h, w, z_what,
    depth, z_pres] (post-transform values); a neighbour outside the grid is the learned
    edge element (sigmoid on its box and z_pres entries).
    """

    N_HEAD_FEATURES = 100

    def __init__(self, config: SpairConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        c, hidden, f = config, config.hidden_units, self.N_HEAD_FEATURES
        self.box_net = mlp(hidden, 8 + f, name="box_net")
        self.object_encoder = mlp(c.encoder_units, 2 * c.n_what, name="object_encoder")
        self.depth_net = mlp(hidden, 2 + f, name="depth_net")
        self.pres_net = mlp(hidden, 1, name="pres_net")

    def build(self, features_shape):
        c, f = self.config, self.N_HEAD_FEATURES
        context = 4 * c.n_object_vector if c.lateral else 0
        base = c.n_features + context
        self.box_net.build((None, base))
        self.object_encoder.build((None, c.object_size * c.object_size * 3))
        self.depth_net.build((None, base + f + 4 + c.n_what))
        self.pres_net.build((None, base + f + 4 + c.n_what + 1))
        self.edge_element = self.add_weight(
            name="edge_element", shape=(c.n_object_vector,), initializer="zeros")
        super().build(features_shape)

    def edge_vector(self):
        """The learned stand-in for a neighbour outside the grid: [n_object_vector]."""
        e, a = self.edge_element, self.config.n_what
        return tf.concat([tf.sigmoid(e[:4]), e[4:4 + a + 1], tf.sigmoid(e[4 + a + 1:])], 0)

    def call(self, images, features, noise, step, hard_pres=False, schedule="wavefront"):
        """Encodes every cell.

        Args:
          images: [B, H_img, W_img, 3] in [0, 1].
          features: [B, H, W, n_features] from the backbone.
          noise: dict of per-cell noise, each [B, H, W, d]: "where" (4), "what" (A),
            "depth" (1) standard normal, "pres" (1) uniform in (0, 1).
          step: global step (training wheels, §1.3).
          hard_pres: z_pres = round(relaxed sample) (evaluation) instead of the relaxed one.
          schedule: "wavefront" or "raster" (identical results; raster is the reference).
        Returns:
          dict of [B, H, W, d] tensors: where_mean, where_std, z_where, what_mean,
          what_std, z_what, depth_mean, depth_std, z_depth, pres_logit, z_pres, and the
          post-transform box (b_y, b_x, h, w) and depth.
        """
        c = self.config
        dtype = features.dtype
        shape = tf.shape(features)
        batch, grid_h, grid_w = shape[0], shape[1], shape[2]
        n_cells = grid_h * grid_w
        if c.lateral and schedule not in ("wavefront", "raster"):
            raise ValueError(f"schedule={schedule!r}: expected 'wavefront' or 'raster'.")
        order = schedule if c.lateral else "parallel"
        make_table, count_steps, max_lag = SCHEDULES[order]
        table = make_table(grid_h, grid_w)
        static_h, static_w = features.shape[1], features.shape[2]
        if order == "raster" and static_w is None:
            raise ValueError("schedule='raster' needs a static grid width (a test reference).")
        depth = max_lag(static_w)
        # A static trip count where the grid is static lets XLA compile the loop and its
        # gradient (which needs bounded accumulators).
        n_steps = (count_steps(static_h, static_w)
                   if static_h is not None and static_w is not None else None)

        def cells_first(x):  # [B, H, W, d] → [N + 1, B, d]; row N is the unused slot
            x = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [n_cells, batch, -1])
            return tf.concat([x, tf.zeros_like(x[:1])], axis=0)

        cell_inputs = {"features": cells_first(features),
                       **{name: cells_first(v) for name, v in noise.items()}}

        # Each step reads its cells' neighbours from the object vectors of the last K steps
        # (a [K, n, B, V] history, newest first) or the edge element, through a table
        # precomputed from the schedule; each step's outputs go to a TensorArray, put in
        # cell order once after the loop. Per step this costs O(n·B), not O(H·W·B): the
        # loop is linear in image area (a scatter into a full grid copies it every step).
        pixels = glimpse_lib.batch_last(images)                      # [H_img, W_img, B, 3]
        sources, positions = neighbour_sources(table, grid_h, grid_w, depth)
        n_slots = tf.shape(table)[1]
        n_vector = c.n_object_vector
        edge = tf.tile(tf.cast(self.edge_vector(), dtype)[None, None], [1, batch, 1])
        history = tf.zeros([depth, n_slots, batch, n_vector], dtype)  # [K, n, B, V]

        packed = tf.TensorArray(dtype, size=n_steps if n_steps else tf.shape(table)[0],
                                element_shape=tf.TensorShape([None, None, self.n_outputs]))

        def body(t, history, packed, count=None):
            # count (unrolled steps only): the step's used slots, a prefix of the n slots;
            # only those are encoded, and the rest of the step's outputs are zeros.
            ids = table[t] if count is None else table[t, :count]   # [n]
            i, j = ids // grid_w, ids % grid_w
            inputs = {k: tf.gather(v, ids) for k, v in cell_inputs.items()}  # [n, B, d]
            n_used = tf.shape(ids)[0]
            if c.lateral:
                recent = tf.concat([tf.reshape(history, [-1, batch, n_vector]), edge], 0)
                context = tf.gather(recent, sources[t, :n_used])    # [n, 4, B, V]
                context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]),
                                     [n_used, batch, -1])           # [n, B, 4V]
            else:  # the ablation (§5.3): one step, no neighbours
                context = tf.zeros([n_used, batch, 0], dtype)
            cell = self._encode_cells(pixels, inputs, context, i, j, step, hard_pres)
            vector, out = cell["object_vector"], cell["packed"]
            if count is not None:
                unused = [[0, n_slots - count], [0, 0], [0, 0]]
                vector, out = tf.pad(vector, unused), tf.pad(out, unused)
            history = tf.concat([vector[None], history[:-1]], 0)
            return t + 1, history, packed.write(t, out)

        if n_steps is not None and n_steps <= UNROLL_MAX_STEPS:
            # Unrolled: straight-line code that XLA fuses across steps, and a backward pass
            # without the loop's stacks of saved intermediates (BUILD_NOTES, "Benchmarks").
            # Each step encodes only its used slots (the wavefront over 4×4 cells has 16
            # cells in 10 steps of 2 slots).
            with tf.init_scope():
                used = (make_table(static_h, static_w).numpy() < static_h * static_w)
            n_slots = used.shape[1]
            state = (history, packed)
            for t in range(n_steps):
                count = int(used[t].sum())
                assert used[t, :count].all(), "a schedule's used slots come first"
                _, *state = body(t, *state, count=count)
            packed = state[1]
        else:
            _, _, packed = tf.while_loop(
                lambda t, *_: t < tf.shape(table)[0], body,
                (tf.constant(0), history, packed), parallel_iterations=1,
                maximum_iterations=n_steps)

        outputs = tf.gather(tf.reshape(packed.stack(), [-1, batch, self.n_outputs]),
                            positions)                               # [N, B, D]
        outputs = tf.transpose(tf.reshape(outputs, [grid_h, grid_w, batch, -1]),
                               [2, 0, 1, 3])                         # [B, H, W, D]
        return self._unpack(outputs)

    # Fields packed per cell in the loop's output buffer, with their sizes.
    def _fields(self):
        a = self.config.n_what
        return (("where_mean", 4), ("where_std", 4), ("z_where", 4), ("box", 4),
                ("what_mean", a), ("what_std", a), ("z_what", a),
                ("depth_mean", 1), ("depth_std", 1), ("z_depth", 1), ("depth", 1),
                ("pres_logit", 1), ("z_pres", 1))

    @property
    def n_outputs(self):
        return sum(size for _, size in self._fields())

    def _unpack(self, packed):
        names, sizes = zip(*self._fields())
        return dict(zip(names, tf.split(packed, sizes, axis=-1)))

    def _encode_cells(self, pixels, inputs, context, i, j, step, hard_pres):
        """One wavefront step: the four networks for n cells. Tensors are [n, B, d];
        pixels [H_img, W_img, B, 3] (glimpse.batch_last of the images)."""
        c = self.config
        wheels = c.training_wheels_steps
        # §1.3 holds the box, depth and pres heads; the Fig. 2–3 runs only pres (§6).
        heads_wheels = wheels if c.training_wheels_latents == "all" else 0
        std = lambda raw: latents.std_from_raw(raw, c.std_transform)  # noqa: E731
        n, batch = tf.shape(context)[0], tf.shape(context)[1]
        flat = lambda x: tf.reshape(x, [n * batch, -1])  # noqa: E731
        unflat = lambda x: tf.reshape(x, [n, batch, -1])  # noqa: E731
        base = [flat(inputs["features"])] + ([flat(context)] if c.lateral else [])

        # z_where: box offsets and size (§1.3, §1.4).
        box_out = self.box_net(tf.concat(base, -1))
        where_mean = schedules.with_training_wheels(box_out[:, :4], step, heads_wheels)
        where_raw_std = schedules.with_training_wheels(box_out[:, 4:8], step, heads_wheels)
        box_features = box_out[:, 8:]
        where_std = std(where_raw_std)
        z_where = latents.reparameterise(where_mean, where_std, flat(inputs["where"]))
        b_y, b_x, h, w = latents.squash_where(z_where)
        box = tf.stack([b_y, b_x, h, w], axis=-1)                    # [nB, 4]

        # z_what from the glimpse of that box (§1.5).
        cell_ij = tf.cast(tf.stack([i, j], -1), box.dtype)[:, None]  # [n, 1, 2]
        centre = c.cell_size * (cell_ij + unflat(box[:, :2]))        # [n, B, 2] pixels
        size = c.anchor_size * unflat(box[:, 2:])
        glimpses = glimpse_lib.cell_glimpses(pixels, centre, size, i, j, c.object_size,
                                             c.cell_size, outside=c.glimpse_outside)
        what_out = self.object_encoder(tf.reshape(glimpses, [n * batch, -1]))
        what_mean, what_raw_std = what_out[:, :c.n_what], what_out[:, c.n_what:]
        what_std = std(what_raw_std)
        z_what = latents.reparameterise(what_mean, what_std, flat(inputs["what"]))

        # z_depth (§1.3).
        depth_out = self.depth_net(tf.concat(base + [box_features, box, z_what], -1))
        depth_mean = schedules.with_training_wheels(depth_out[:, :1], step, heads_wheels)
        depth_raw_std = schedules.with_training_wheels(depth_out[:, 1:2], step, heads_wheels)
        depth_features = depth_out[:, 2:]
        depth_std = std(depth_raw_std)
        z_depth = latents.reparameterise(depth_mean, depth_std, flat(inputs["depth"]))
        depth = latents.squash_depth(z_depth)

        # z_pres (§1.3): relaxed Bernoulli, hard at evaluation.
        pres_logit = self.pres_net(tf.concat(base + [depth_features, box, z_what, depth], -1))
        pres_logit = schedules.with_training_wheels(pres_logit, step, wheels)
        z_pres = latents.relaxed_pres(pres_logit, flat(inputs["pres"]),
                                      temperature=c.temperature, hard=hard_pres)

        object_vector = tf.concat([box, z_what, depth, z_pres], -1)
        packed = tf.concat([where_mean, where_std, z_where, box, what_mean, what_std, z_what,
                            depth_mean, depth_std, z_depth, depth, pres_logit, z_pres], -1)
        return {"object_vector": unflat(object_vector), "packed": unflat(packed)}

    def get_config(self):
        return {**super().get_config()}
