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
        if not c.lateral:
            table = parallel_schedule(grid_h, grid_w)
        elif schedule == "wavefront":
            table = wavefront_schedule(grid_h, grid_w)
        elif schedule == "raster":
            table = raster_schedule(grid_h, grid_w)
        else:
            raise ValueError(f"schedule={schedule!r}: expected 'wavefront' or 'raster'.")

        def cells_first(x):  # [B, H, W, d] → [N + 1, B, d]; row N is the unused slot
            x = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [n_cells, batch, -1])
            return tf.concat([x, tf.zeros_like(x[:1])], axis=0)

        cell_inputs = {"features": cells_first(features),
                       **{name: cells_first(v) for name, v in noise.items()}}

        # The object-vector grid, padded by one row above and a column either side, all
        # initialised to the edge element; interior cells are overwritten as visited and
        # only read after they are (their neighbours come earlier in every schedule).
        padded_w = grid_w + 2
        n_padded = (grid_h + 1) * padded_w
        grid = tf.tile(tf.cast(self.edge_vector(), dtype)[None, None],
                       [n_padded + 1, batch, 1])                     # [P + 1, B, V]
        outputs = tf.zeros([n_cells + 1, batch, self.n_outputs], dtype)

        def body(t, grid, outputs):
            ids = table[t]                                           # [n]
            n = tf.shape(ids)[0]
            valid = ids < n_cells
            i, j = ids // grid_w, ids % grid_w
            inputs = {k: tf.gather(v, ids) for k, v in cell_inputs.items()}  # [n, B, d]
            neighbours = tf.stack([i * padded_w + j, i * padded_w + j + 1,
                                   i * padded_w + j + 2, (i + 1) * padded_w + j], axis=-1)
            context = tf.gather(grid, neighbours)                    # [n, 4, B, V]
            context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [n, batch, -1])
            cell = self._encode_cells(images, inputs, context, i, j, step, hard_pres)
            own = tf.where(valid, (i + 1) * padded_w + j + 1, n_padded)
            grid = tf.tensor_scatter_nd_update(grid, own[:, None], cell["object_vector"])
            outputs = tf.tensor_scatter_nd_update(outputs, ids[:, None], cell["packed"])
            return t + 1, grid, outputs

        # A static trip count where the grid is static lets XLA compile the loop and its
        # gradient (which needs a bounded accumulator).
        static_h, static_w = features.shape[1], features.shape[2]
        n_steps = None
        if static_h is not None and static_w is not None:
            n_steps = (1 if not c.lateral else
                       2 * (static_h - 1) + static_w if schedule == "wavefront" else
                       static_h * static_w)
        _, _, outputs = tf.while_loop(
            lambda t, *_: t < tf.shape(table)[0], body,
            (tf.constant(0), grid, outputs), parallel_iterations=1,
            maximum_iterations=n_steps)

        outputs = tf.transpose(tf.reshape(outputs[:n_cells], [grid_h, grid_w, batch, -1]),
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

    def _encode_cells(self, images, inputs, context, i, j, step, hard_pres):
        """One wavefront step: the four networks for n cells. Tensors are [n, B, d]."""
        c = self.config
        wheels = c.training_wheels_steps
        n, batch = tf.shape(context)[0], tf.shape(context)[1]
        flat = lambda x: tf.reshape(x, [n * batch, -1])  # noqa: E731
        unflat = lambda x: tf.reshape(x, [n, batch, -1])  # noqa: E731
        base = [flat(inputs["features"])] + ([flat(context)] if c.lateral else [])

        # z_where: box offsets and size (§1.3, §1.4).
        box_out = self.box_net(tf.concat(base, -1))
        where_mean = schedules.with_training_wheels(box_out[:, :4], step, wheels)
        where_raw_std = schedules.with_training_wheels(box_out[:, 4:8], step, wheels)
        box_features = box_out[:, 8:]
        where_std = latents.std_from_raw(where_raw_std)
        z_where = latents.reparameterise(where_mean, where_std, flat(inputs["where"]))
        b_y, b_x, h, w = latents.squash_where(z_where)
        box = tf.stack([b_y, b_x, h, w], axis=-1)                    # [nB, 4]

        # z_what from the glimpse of that box (§1.5).
        cell_ij = tf.cast(tf.stack([i, j], -1), box.dtype)[:, None]  # [n, 1, 2]
        centre = c.cell_size * (cell_ij + unflat(box[:, :2]))        # [n, B, 2] pixels
        size = c.anchor_size * unflat(box[:, 2:])
        glimpses = glimpse_lib.cell_glimpses(images, centre, size, i, j, c.object_size, c.cell_size)
        what_out = self.object_encoder(tf.reshape(glimpses, [n * batch, -1]))
        what_mean, what_raw_std = what_out[:, :c.n_what], what_out[:, c.n_what:]
        what_std = latents.std_from_raw(what_raw_std)
        z_what = latents.reparameterise(what_mean, what_std, flat(inputs["what"]))

        # z_depth (§1.3).
        depth_out = self.depth_net(tf.concat(base + [box_features, box, z_what], -1))
        depth_mean = schedules.with_training_wheels(depth_out[:, :1], step, wheels)
        depth_raw_std = schedules.with_training_wheels(depth_out[:, 1:2], step, wheels)
        depth_features = depth_out[:, 2:]
        depth_std = latents.std_from_raw(depth_raw_std)
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
