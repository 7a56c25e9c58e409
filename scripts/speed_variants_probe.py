"""Diagnostic: two speed variants of the training step's pieces, each timed beside the code
it would replace, in one process (BUILD_NOTES, "Benchmarks"; neither was adopted).

- Backbone: `tf.nn.conv2d` with explicit bottom/right padding (no Pad op forward, no Slice
  op backward) against `Backbone` (`tf.pad` + VALID), forward + backward, batch 32, 48×48.
- Renderer: the dense per-pixel sums with channels first ([B, K, C, H, W], so every einsum
  contracts a contiguous axis) against `renderer._dense_sums`, forward + backward under XLA,
  B = 32, K = 16 sprites, 48×48.

    PYTHONPATH=. python scripts/speed_variants_probe.py --output_json=PATH

Each variant is checked against the reference's values first; the JSON has every timing
(best and median of `--repeats`, over `--rounds` alternating rounds).
"""

import sys
import time

import numpy as np
from absl import app, flags

from spair_tf import io_utils

FLAGS = flags.FLAGS


def explicit_padding_backbone(backbone, images):
    """Backbone's computation with the bottom/right padding inside each strided conv."""
    import tensorflow as tf

    x = images
    for conv, stride in zip(backbone.strided, backbone.STRIDES):
        pads = []
        for n in x.shape[1:3]:
            remainder = n % stride
            pads.append(max(backbone.KERNEL_SIZE - (stride if remainder == 0 else remainder), 0))
        x = tf.nn.conv2d(x, conv.kernel, strides=stride,
                         padding=[[0, 0], [0, pads[0]], [0, pads[1]], [0, 0]])
        x = tf.nn.relu(tf.nn.bias_add(x, conv.bias))
    for conv in backbone.pointwise:
        x = conv(x)
    return x


def channels_first_sums(maps, s_y, s_x):
    """renderer._dense_sums with channels first inside (the same values; autodiff gradient
    of the forward, where _dense_sums writes its gradient out)."""
    import tensorflow as tf

    from spair_tf.glimpse import interpolation_matrix

    n_channels = maps.shape[-1] - 2
    m = tf.transpose(maps, [0, 1, 4, 2, 3])                          # [B, K, 2+C, S, S]
    r_y = interpolation_matrix(s_y, maps.shape[2], "zero")          # [B, K, H, S]
    r_x = interpolation_matrix(s_x, maps.shape[3], "zero")          # [B, K, W, S]
    columns = tf.einsum("bkcmn,bkxn->bkcmx", m, r_x)                # [B, K, 2+C, S, W]
    rendered = tf.einsum("bkym,bkcmx->bkcyx", r_y, columns)         # [B, K, 2+C, H, W]
    alpha_p, gamma_p, colour = rendered[:, :, :1], rendered[:, :, 1:2], rendered[:, :, 2:]
    inside = (tf.reduce_sum(r_y, -1)[..., :, None]
              * tf.reduce_sum(r_x, -1)[..., None, :])[:, :, None]   # [B, K, 1, H, W]
    one = tf.concat([alpha_p * colour, alpha_p * inside], 2)
    sums = tf.reduce_sum(tf.concat([one, gamma_p * one, gamma_p], 2), axis=1)
    assert sums.shape[1] == 2 * n_channels + 3
    return tf.transpose(sums, [0, 2, 3, 1])                         # [B, H, W, 2C+3]


def _timings(functions, args, repeats, rounds):
    """{name: [seconds per call]} over alternating rounds; each function warmed up first."""
    import tensorflow as tf

    def finish(result):
        return [np.asarray(t) for t in tf.nest.flatten(result)]

    for fn in functions.values():
        finish(fn(*args))
        finish(fn(*args))
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, fn in functions.items():
            for _ in range(repeats):
                start = time.perf_counter()
                finish(fn(*args))
                times[name].append(time.perf_counter() - start)
    return times


def _summary(times):
    return {name: {"best_ms": 1e3 * min(t), "median_ms": 1e3 * float(np.median(t)),
                   "times_s": t} for name, t in times.items()}


def _with_gradient(forward, sources, weight):
    import tensorflow as tf

    def step(*args):
        with tf.GradientTape() as tape:
            tape.watch(args)
            loss = tf.reduce_sum(forward(*args) * weight)
        return tape.gradient(loss, sources(args))
    return step


def backbone_variants(repeats, rounds):
    import tensorflow as tf

    from spair_tf.backbone import Backbone

    backbone = Backbone()
    backbone.build((None, 48, 48, 3))
    images = tf.random.stateless_uniform([32, 48, 48, 3], seed=[0, 1])
    difference = float(tf.reduce_max(tf.abs(explicit_padding_backbone(backbone, images)
                                            - backbone(images))))
    weight = tf.random.stateless_normal([32, 4, 4, backbone.n_features], seed=[2, 3])

    def graph(forward):
        def step(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(forward(x) * weight)
            return tape.gradient(loss, backbone.trainable_variables)
        return tf.function(step)

    times = _timings({"tf.pad + VALID (Backbone)": graph(backbone),
                      "explicit padding": graph(
                          lambda x: explicit_padding_backbone(backbone, x))},
                     (images,), repeats, rounds)
    return {"max_abs_difference": difference, "forward_backward": _summary(times)}


def renderer_variants(repeats, rounds):
    import tensorflow as tf

    from spair_tf import renderer

    batch, n_sprites, size, sprite, channels = 32, 16, 48, 14, 3
    rng = np.random.default_rng(0)
    maps = tf.constant(rng.random([batch, n_sprites, sprite, sprite, 2 + channels]),
                       tf.float32)
    top = rng.uniform(0.0, 0.8, [batch, n_sprites, 1])
    side = rng.uniform(0.2, 0.6, [batch, n_sprites, 1])
    pixels = (np.arange(size) + 0.5) / size
    s_y = tf.constant(-0.5 + sprite * (pixels - top) / side, tf.float32)
    s_x = tf.constant(-0.5 + sprite * (pixels - top[:, ::-1]) / side, tf.float32)
    weight = tf.constant(rng.normal(size=[batch, size, size, 2 * channels + 3]), tf.float32)
    difference = float(tf.reduce_max(tf.abs(channels_first_sums(maps, s_y, s_x)
                                            - renderer._dense_sums(maps, s_y, s_x))))
    functions = {name: tf.function(_with_gradient(fn, lambda args: list(args), weight),
                                   jit_compile=True)
                 for name, fn in (("_dense_sums", renderer._dense_sums),
                                  ("channels first", channels_first_sums))}
    times = _timings(functions, (maps, s_y, s_x), repeats, rounds)
    return {"max_abs_difference": difference, "forward_backward": _summary(times)}


def main(argv):
    del argv
    result = {"command": " ".join(sys.argv),
              "backbone": backbone_variants(FLAGS.repeats, FLAGS.rounds),
              "renderer": renderer_variants(FLAGS.repeats, FLAGS.rounds)}
    for piece in ("backbone", "renderer"):
        for name, timing in result[piece]["forward_backward"].items():
            print(f"{piece}: {name}: best {timing['best_ms']:.1f} ms, median "
                  f"{timing['median_ms']:.1f} ms")
    if FLAGS.output_json:
        io_utils.atomic_write_json(FLAGS.output_json, result, indent=1)


if __name__ == "__main__":
    flags.DEFINE_string("output_json", None, "Where to write the timings (atomically).")
    flags.DEFINE_integer("repeats", 10, "Timed calls per round.", lower_bound=1)
    flags.DEFINE_integer("rounds", 3, "Alternating rounds.", lower_bound=1)
    app.run(main)
