"""The benchmark's code paths at tiny sizes (spair_tf/bench.py; SPAIR_SPEC §1.7, §1.11).

The FLOP count is checked against the ops the model really runs: an eager forward pass
(where the encoder's while loop runs as a Python loop, one iteration per wavefront step)
records the runtime shapes of every Dense layer, convolution and einsum, and the reference
count is computed from those shapes alone.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from spair_tf import bench
from spair_tf.config import SpairConfig
from spair_tf.model import SPAIR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _einsum_macs(equation, *shapes):
    """Multiply-adds of a two-operand einsum: the product of every index's size."""
    inputs = equation.replace(" ", "").split("->")[0].split(",")
    sizes, batch = {}, []
    for spec, shape in zip(inputs, shapes):
        named, dims = spec, tuple(shape)
        if "..." in spec:
            start = spec.index("...")
            named = spec.replace("...", "")
            n_batch = len(shape) - len(named)
            batch.append(dims[start:start + n_batch])
            dims = dims[:start] + dims[start + n_batch:]
        for letter, size in zip(named, dims):
            sizes[letter] = max(sizes.get(letter, 1), size)
    return int(np.prod(np.broadcast_shapes(*batch), dtype=np.int64)
               * np.prod(list(sizes.values()), dtype=np.int64))


def test_einsum_reference_counts_every_index_once():
    assert _einsum_macs("ij,jk->ik", (2, 3), (3, 5)) == 2 * 3 * 5
    assert _einsum_macs("...mn,...xn->...mx", (4, 2, 7, 3), (4, 1, 5, 3)) == 4 * 2 * 7 * 3 * 5


@pytest.mark.parametrize("height, width", [(24, 36), (24, 96)])
def test_flop_terms_equal_the_ops_the_model_runs(monkeypatch, height, width):
    """Per piece, the analytic multiply-adds equal those of the recorded runtime shapes.

    24×36 px: a 2×3 grid whose wavefront table has unused slots (5 steps × 2 slots, 6
    cells; unrolled, so only the 6 cells are encoded), rendered densely; 24×96 px: a 2×8
    grid, rendered by the windowed renderer.
    """
    tf.keras.utils.set_random_seed(0)
    model = SPAIR(SpairConfig())
    model.build((None, 48, 48, 3))
    batch = 2
    recorded = []

    def record(kind, original):
        def wrapper(self, inputs, *args, **kwargs):
            out = original(self, inputs, *args, **kwargs)
            recorded.append((kind, self, tuple(inputs.shape), tuple(out.shape),
                             tuple(self.kernel.shape)))
            return out
        return wrapper

    original_einsum = tf.einsum

    def einsum(equation, *operands, **kwargs):
        recorded.append(("einsum", equation, _einsum_macs(
            equation, *[tuple(o.shape) for o in operands])))
        return original_einsum(equation, *operands, **kwargs)

    monkeypatch.setattr(keras.layers.Dense, "call",
                        record("dense", keras.layers.Dense.call))
    monkeypatch.setattr(keras.layers.Conv2D, "call",
                        record("conv", keras.layers.Conv2D.call))
    monkeypatch.setattr(tf, "einsum", einsum)
    images = tf.random.stateless_uniform((batch, height, width, 3), seed=(1, 2))
    model(images, step=1000, mode="train")
    monkeypatch.undo()

    measured = {}
    for entry in recorded:
        if entry[0] == "dense":
            _, layer, shape_in, _, (fan_in, units) = entry
            decoder = any(layer is other for other in model.object_decoder.layers)
            piece = "decoder" if decoder else "encoder"
            macs = int(np.prod(shape_in[:-1])) * fan_in * units
        elif entry[0] == "conv":
            _, _, _, shape_out, (kh, kw, c_in, c_out) = entry
            piece, macs = "backbone", int(np.prod(shape_out[:-1])) * kh * kw * c_in * c_out
        else:
            _, equation, macs = entry
            # The glimpse sampler's einsums carry the loop's leading slot axis "n".
            piece = "encoder" if equation.startswith("nb") else "renderer"
        measured[piece] = measured.get(piece, 0) + macs

    terms = bench.flop_terms(model, batch, height, width)
    executed = {}
    for t in terms:
        executed[t.piece] = executed.get(t.piece, 0) + t.executed_macs
    assert executed == measured
    # The model work counts each cell once; a while loop would also run the unused slots.
    cells = (height // 12) * (width // 12)
    slots = bench.wavefront_slots(height // 12, width // 12)
    encoder = [t for t in terms if t.piece == "encoder"]
    assert sum(t.executed_macs for t in encoder) * cells == sum(t.macs for t in encoder) * slots
    # Unrolled wavefronts (≤ UNROLL_MAX_STEPS steps) encode only the cells; the while loop
    # runs every slot of its 2(H − 1) + W steps.
    assert bench.wavefront_slots(2, 3) == 6 and bench.wavefront_slots(2, 8) == 16
    assert bench.wavefront_slots(10, 8) == (2 * 9 + 8) * 4
    names = {t.name.split("/")[0] for t in terms if t.piece == "renderer"}
    assert names == ({"render_dense"} if bench.uses_dense_renderer(height, width)
                     else {"render"})


def test_flop_summary_adds_backward_per_operand_needing_a_gradient():
    terms = [bench.FlopTerm("backbone", "a", 10, 1, 10), bench.FlopTerm("encoder", "b", 5, 2, 8)]
    summary = bench.summarise_flops(terms)
    assert summary["forward"] == 2 * (10 + 5)
    assert summary["backward"] == 2 * (10 * 1 + 5 * 2)
    assert summary["step"] == summary["forward"] + summary["backward"]
    assert summary["executed_forward"] == 2 * (10 + 8)


def test_growth_ratios_per_4x_area():
    sizes = [48, 96, 384]
    linear = bench.growth_ratios(sizes, [s * s for s in sizes])
    assert [g["ratio_per_4x_area"] for g in linear] == pytest.approx([4.0, 4.0])
    assert [g["area_ratio"] for g in linear] == pytest.approx([4.0, 16.0])
    quadratic = bench.growth_ratios(sizes, [s ** 4 for s in sizes])
    assert [g["ratio_per_4x_area"] for g in quadratic] == pytest.approx([16.0, 16.0])


def test_matmul_rate_is_two_n_cubed_over_the_best_time():
    rate = bench.matmul_rate(size=64, repeats=2)
    assert rate["flops"] == 2 * 64 ** 3
    assert rate["best_s"] == min(rate["times_s"]) > 0
    assert rate["flops_per_s"] == pytest.approx(rate["flops"] / rate["best_s"])


class _TinyTrainer:
    """A stand-in with Trainer's `_train_step(batch)`: one matmul and one einsum."""

    def __init__(self):
        self.weights = tf.Variable(tf.ones([64, 64]))

        @tf.function
        def step(batch):
            x = tf.matmul(batch["images"], self.weights)
            return {"loss": tf.reduce_sum(tf.einsum("ij,jk->ik", x, self.weights))}

        self._train_step = step


def test_trace_sums_op_time_by_type_and_region():
    trace = bench.trace_train_step(_TinyTrainer(), tf.ones([64, 64]), steps=2)
    types = {row["name"] for row in trace["by_type"]}
    assert {"MatMul", "Einsum"} <= types
    assert sum(row["share"] for row in trace["by_region"]) == pytest.approx(1.0)
    assert trace["op_seconds_per_call"] > 0


def test_bad_input_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="forward_sizes"):
        bench._parse_sizes(["48", "big"])
    with pytest.raises(ValueError, match="12-px cell"):
        bench._parse_sizes(["5"])
    with pytest.raises(ValueError, match="unknown"):
        bench.run_benchmarks(sections=["speed"])
    with pytest.raises(ValueError, match="train section"):
        bench.run_benchmarks(sections=["forward"], profile=True)


def test_cli_forward_section_writes_json_with_the_command(tmp_path):
    """The entry point: one forward subprocess at 24×24, JSON written atomically."""
    path = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "spair_tf.bench", "--sections=forward", "--forward_sizes=24",
         "--forward_repeats=1", f"--output_json={path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(path.read_text())
    assert result["command"].startswith("python -m spair_tf.bench --sections=forward")
    (run,) = result["forward"]["runs"]
    assert run["image_size"] == 24 and run["cells"] == 4 and run["xla"]
    assert run["best_s"] == min(run["times_s"]) > 0
    assert run["peak_rss_bytes"] >= run["baseline_rss_bytes"] > 0
    assert result["forward"]["all_within_memory_limit"]
    plan = run["xla_buffer_plan"]  # the forward's own memory, from XLA's buffer assignment
    assert plan["parameter_bytes"] >= 4 * 24 * 24 * 3 and plan["temp_bytes"] > 0
    assert plan["total_bytes"] == sum(v for k, v in plan.items() if k.endswith("_bytes")
                                      and k != "total_bytes")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_xla_buffer_plan_reads_the_inputs_and_outputs_xla_planned(tmp_path):
    """A module whose inputs and output sizes are known: 1,000 + 500 floats in, 500 out."""
    code = ("import tensorflow as tf\n"
            "@tf.function(jit_compile=True)\n"
            "def tiny_module(x, y):\n"
            "    return tf.reduce_sum(tf.sin(x)[:, None] * y[None, :], axis=0)\n"
            "print(tiny_module(tf.ones([1000]), tf.ones([500])).shape)\n")
    dump = tmp_path / "dump"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                 XLA_FLAGS=f"--xla_dump_to={dump} --xla_dump_hlo_module_re=.*tiny_module.*"))
    assert done.returncode == 0, done.stderr[-2000:]
    plan = bench.xla_buffer_plan(str(dump), "tiny_module")
    assert plan["parameter_bytes"] == 4 * 1500 and plan["output_bytes"] == 4 * 500
    assert "tiny_module" in plan["module"]
    assert bench.xla_buffer_plan(str(dump), "no_such_module") is None


@pytest.mark.slow
def test_train_step_and_profile_at_a_tiny_size(tmp_path):
    """The real Trainer step and every profiled piece at batch 2 on 24×24 (minutes)."""
    trainer = bench._build_trainer(2, 24, 1000, str(tmp_path))
    images = bench._training_images(2, 24)
    train = bench.benchmark_train_step(trainer, images, repeats=1, steps_per_repeat=1,
                                       rate=1e10)
    assert train["global_step_start"] == 1000 and train["images_per_s"] > 0
    assert train["ratio_to_floor"] == pytest.approx(train["best_step_s"] / train["floor_s"])
    profile = bench.profile_train_step(trainer, images, repeats=1, number=1, rate=1e10,
                                       trace_steps=1)
    names = {p["piece"] for p in profile["pieces"]}
    assert {"backbone", "encoder", "renderer (render_dense)", "loss",
            "optimizer (clip, noise, Adam)"} <= names  # 24×24 px is rendered densely
    assert all(p["forward_s"] > 0 for p in profile["pieces"])
    # Compiled as the step compiles them without a strategy: the backbone (the model's
    # stem) as a graph, the rest (the fused optimizer update too) with XLA; the backbone
    # under XLA beside, for comparison.
    compiled = {p["piece"]: p["compiled"] for p in profile["pieces"]}
    assert trainer.config.xla
    assert compiled["backbone"] == "graph" and compiled["encoder"] == "xla"
    assert trainer._fused_apply and compiled["optimizer (clip, noise, Adam)"] == "xla"
    assert compiled["diagnostic: backbone compiled with XLA"] == "xla"
    assert profile["op_trace"]["op_seconds_per_call"] > 0


def test_models_section_times_each_model_through_the_trainer_step_in_rounds():
    """AIR and DAIR side by side: every model gets every round, images/s from the median."""
    out = bench.benchmark_models(names=("air", "dair"), batch_size=4, image_size=24, n_steps=2,
                                 rounds=3, steps_per_round=1)
    assert set(out["models"]) == {"air", "dair"} and out["batch_size"] == 4
    for name, row in out["models"].items():
        assert len(row["step_times_s"]) == 3 and row["best_step_s"] == min(row["step_times_s"])
        assert row["images_per_s"] == pytest.approx(4 / row["median_step_s"])
    assert out["models"]["air"]["images_per_s_relative_to_air"] == pytest.approx(1.0)
    ratio = out["models"]["dair"]["images_per_s"] / out["models"]["air"]["images_per_s"]
    assert out["models"]["dair"]["images_per_s_relative_to_air"] == pytest.approx(ratio)
