"""Training throughput of AIR and DAIR (SPAIR_SPEC §4.2, §4.3): images/s at batch 64.

Both models in one process on the same machine: Experiment 1 settings (48×48 images,
n = 5 steps, 14×14 glimpses), one @tf.function step = forward, backward, clip-by-global-norm
1.0 and Adam, on a fixed random batch. The models are timed in alternating rounds so that
both see the same machine load; each figure is the median over rounds.

    cd /work/main && TF_CPP_MIN_LOG_LEVEL=2 /work/venv/bin/python \
        results/air/throughput_benchmark.py --output results/air/throughput.json
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from baselines.air import AIR, AirConfig  # noqa: E402


def make_step(model):
    optimizer = keras.optimizers.Adam(1e-4)

    @tf.function
    def train_step(images, step):
        with tf.GradientTape() as tape:
            loss, _ = model.compute_loss(images, step)
        grads = tape.gradient(loss, model.trainable_variables)
        grads, _ = tf.clip_by_global_norm(grads, 1.0)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return train_step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--n_steps", type=int, default=5, help="AIR/DAIR steps (= n digits)")
    parser.add_argument("--image_size", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps_per_round", type=int, default=10)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    shape = (args.image_size, args.image_size, 3)
    images = tf.random.stateless_uniform((args.batch_size,) + shape, seed=(0, 0))
    step = tf.constant(0, tf.int64)
    steps = {}
    for name in ("air", "dair"):
        model = AIR(AirConfig(model=name, fixed_steps=args.n_steps, glimpse_size=14),
                    shape, seed=0)
        steps[name] = make_step(model)
        for _ in range(3):  # trace and warm up
            steps[name](images, step).numpy()
    seconds = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, train_step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps_per_round):
                loss = train_step(images, step)
            loss.numpy()
            seconds[name].append((time.perf_counter() - start) / args.steps_per_round)
    result = {
        "batch_size": args.batch_size, "image_size": args.image_size, "n_steps": args.n_steps,
        "rounds": args.rounds, "steps_per_round": args.steps_per_round,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, TF {tf.__version__}",
        "load_average_at_end": os.getloadavg(),
        "command": "TF_CPP_MIN_LOG_LEVEL=2 /work/venv/bin/python " + " ".join(sys.argv),
    }
    for name, values in seconds.items():
        median = float(np.median(values))
        result[name] = {"seconds_per_step_median": median,
                        "seconds_per_step_all": [float(v) for v in values],
                        "images_per_second": args.batch_size / median}
        print(f"{name}: {median * 1000:.1f} ms/step, {args.batch_size / median:.1f} images/s")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
