"""`python -m spair_tf.train`: restart after kill -9, and one-line errors (SPAIR_SPEC §1.11).

Every test runs the real entry point in a subprocess with tiny networks and a few 48×48
one-digit images; the error cases are started together, since each pays TensorFlow's
start-up.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_FLAGS = ["--n_what=4", "--backbone_filters=8", "--n_features=8", "--hidden_units=8",
              "--encoder_units=16", "--decoder_units=16"]
DATA_FLAGS = ["--dataset=experiment1", "--n_digits=1", "--train_images=64", "--val_images=8",
              "--test_images=8"]
COUNT_PRIOR_DECAY_STEPS = 3


def _env():
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    return env


def _command(model_dir, cache_dir, *extra):
    return [sys.executable, "-m", "spair_tf.train", f"--model_dir={model_dir}",
            f"--data_cache_dir={cache_dir}", *DATA_FLAGS, *TINY_FLAGS, "--batch_size=4",
            "--patience=0", "--training_wheels_steps=2",
            f"--count_prior_decay_steps={COUNT_PRIOR_DECAY_STEPS}", *extra]


def _error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith(("error:", "FATAL"))]


def _checkpoint_number(path):
    return int(path.rsplit("-", 1)[1])


# ------------------------------------------------------------------------------------------
# Restore-on-start

def test_kill_9_then_the_same_command_resumes_from_the_last_checkpoint(tmp_path):
    model_dir, cache = tmp_path / "model", tmp_path / "cache"
    command = _command(model_dir, cache, "--max_steps=4", "--eval_every=2", "--log_every=1",
                       "--eval_mode=paper")
    with open(tmp_path / "first.err", "w") as err:
        first = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                                 stderr=err)
        deadline = time.time() + 600
        while not os.path.exists(model_dir / "ckpt" / "checkpoint"):
            assert first.poll() is None, (tmp_path / "first.err").read_text()[-3000:]
            assert time.time() < deadline, "no checkpoint within 600 s"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed_at = _checkpoint_number(tf.train.latest_checkpoint(str(model_dir / "ckpt")))
    assert killed_at == 2, "the first run ended before it could be killed"
    with open(model_dir / "flags.json") as f:   # written before the first step
        assert json.load(f)["hidden_units"] == ["8"]

    second = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True,
                            timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resumed from step {killed_at} (" in second.stderr
    with open(model_dir / "results.json") as f:
        results = json.load(f)
    assert results["steps"] == 4
    # One validation entry per evaluation step, none lost or repeated across the restart.
    with open(model_dir / "val_history.json") as f:
        assert [h["step"] for h in json.load(f)] == [2, 4]
    assert [h["step"] for h in results["val_history"]] == [2, 4]
    # The step counter and Adam's own counter continued together.
    reader = tf.train.load_checkpoint(str(model_dir / "ckpt" / "ckpt-4"))
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 4
    assert reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 4

    # The schedules are functions of the restored step: the update logged at step s used
    # the count prior of step s − 1, s_t = (1e6 − 0.0125)·0.1^(t/3) + 0.0125 (§1.10).
    files = sorted((model_dir / "train").glob("events.out.tfevents.*"))
    assert len(files) == 2
    logged = {}
    for record in tf.data.TFRecordDataset(str(files[-1])):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
            if value.tag == "count_prior_log_odds":
                logged[event.step] = float(tf.make_ndarray(value.tensor))
    assert sorted(logged) == list(range(killed_at + 1, 5))
    for step, value in logged.items():
        t = step - 1
        s_t = (1e6 - 0.0125) * 0.1 ** (t / COUNT_PRIOR_DECAY_STEPS) + 0.0125
        assert value == pytest.approx(math.log(s_t + 1e-6), rel=1e-5), step

    # `spair_tf.evaluate` with only the directory rebuilds the tiny model from flags.json
    # (the default-sized model would not match the checkpoint) and evaluates the run's
    # test split in the run's mode; a flag on its command line overrides the record.
    evaluated = subprocess.run(
            [sys.executable, "-m", "spair_tf.evaluate", f"--model_dir={model_dir}",
             f"--output_json={tmp_path / 'eval.json'}", "--test_images=4"],
            cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    with open(tmp_path / "eval.json") as f:
        evaluation = json.load(f)
    assert evaluation["mode"] == "paper" and evaluation["n_images"] == 4
    assert evaluation["flags_from_training_record"]["hidden_units"] == ["8"]
    assert "test_images" not in evaluation["flags_from_training_record"]

    # --n_digits_sweep: one evaluation per digit count, the data of each named in its row.
    swept = subprocess.run(
            [sys.executable, "-m", "spair_tf.evaluate", f"--model_dir={model_dir}",
             f"--output_json={tmp_path / 'sweep.json'}", "--test_images=4",
             "--n_digits_sweep=2-3,1"],
            cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert swept.returncode == 0, swept.stderr[-3000:]
    with open(tmp_path / "sweep.json") as f:
        sweep = json.load(f)
    assert sweep["n_digits"] == [1, 2, 3] and sorted(sweep["per_n"]) == ["1", "2", "3"]
    for n, row in sweep["per_n"].items():
        assert row["dataset"]["min_digits"] == row["dataset"]["max_digits"] == int(n)
        assert row["n_images"] == 4 and row["mode"] == "paper"
    assert sweep["paper"] is None   # Fig. 3's figures belong to Experiment 2 models only
    assert [line.split(":")[0] for line in swept.stdout.splitlines()] == ["n=1", "n=2", "n=3"]


# ------------------------------------------------------------------------------------------
# Bad input: a clear message, no traceback. The cases run concurrently.

def _incompatible_checkpoint(model_dir):
    """A checkpoint of a SPAIR with n_what=4, as the CLI's tiny flags would write."""
    from spair_tf.config import SpairConfig, TrainConfig
    from spair_tf.model import SPAIR
    from spair_tf.training import Trainer

    config = SpairConfig(n_what=4, backbone_filters=8, n_features=8, hidden_units=(8,),
                         encoder_units=(16,), decoder_units=(16,))
    trainer = Trainer(lambda: SPAIR(config), TrainConfig(batch_size=4), str(model_dir),
                      image_shape=(48, 48, 3))
    trainer.checkpoints.latest.save(checkpoint_number=7)


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    cache = root / "cache"
    _incompatible_checkpoint(root / "incompatible")
    cases = {
        "unknown_flag": ["--n_whta=4"],
        "absl_bound": ["--log_every=0"],
        "config_range": ["--batch_size=0"],
        "incompatible": ["--n_what=6"],
    }
    processes = {}
    for name, extra in cases.items():
        model_dir = root / name
        processes[name] = subprocess.Popen(
            _command(model_dir, cache, *extra), cwd=REPO, env=_env(), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    runs = {}
    for name, process in processes.items():
        out, err = process.communicate(timeout=900)
        runs[name] = (process.returncode, out, err)
    return runs


def _assert_one_clear_line(run, exit_code, *needles):
    code, _, stderr = run
    assert code == exit_code, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = _error_lines(stderr)
    assert len(lines) == 1, stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_unknown_flag_is_named_by_absl_without_traceback(error_runs):
    _assert_one_clear_line(error_runs["unknown_flag"], 1, "Unknown command line flag 'n_whta'",
                           "n_what")


def test_flag_below_its_bound_is_named_by_absl_without_traceback(error_runs):
    _assert_one_clear_line(error_runs["absl_bound"], 1, "--log_every=0")


def test_flag_outside_the_config_range_names_flag_value_and_range(error_runs):
    _assert_one_clear_line(error_runs["config_range"], 2, "error: bad flag value:",
                           "--batch_size=0", "expected a value > 0")


def test_incompatible_checkpoint_names_the_directory_and_the_fix(error_runs):
    line = _assert_one_clear_line(error_runs["incompatible"], 2, "incompatible", "ckpt-7",
                                  "use a new --model_dir, or the flags it was trained with")
    assert "shape" in line   # the cause: a variable of another size


@pytest.mark.slow
def test_diverging_run_stops_with_the_step_and_the_loss_terms(tmp_path):
    """Adam at lr 1e30 overflows at once: exit 1, one line with the step and the terms.
    (Slow: it traces a training step; the loop's own behaviour is in test_training.py.)"""
    run = subprocess.run(
        _command(tmp_path / "model", tmp_path / "cache", "--learning_rate=1e30",
                 "--max_steps=50", "--eval_every=10"),
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    line = _assert_one_clear_line((run.returncode, run.stdout, run.stderr), 1,
                                  "error: the loss is", "at step 1", "reconstruction=",
                                  "kl_pres=", "--learning_rate", "no checkpoint")
    assert not os.path.exists(tmp_path / "model" / "results.json"), line


def test_digit_count_sweeps_parse_ranges_and_name_bad_items():
    from spair_tf.cli import parse_digit_counts

    assert parse_digit_counts(["1-3", "7", " 2 "]) == [1, 2, 3, 7]
    assert parse_digit_counts(["1-20"]) == list(range(1, 21))
    for bad, needle in [("0", "≥ 1"), ("5-2", "ascending"), ("a", "not a count"),
                        ("-3", "not a count"), ("1-2-3", "not a count")]:
        with pytest.raises(ValueError, match=needle) as error:
            parse_digit_counts([bad])
        assert repr(bad) in str(error.value)
    with pytest.raises(ValueError, match="empty"):
        parse_digit_counts([])


# ------------------------------------------------------------------------------------------
# The training record that evaluate / export rebuild the model from

def _flag_values(*argv):
    from absl import flags

    values = flags.FlagValues()
    flags.DEFINE_list("hidden_units", ["100", "100"], "", flag_values=values)
    flags.DEFINE_integer("n_what", 50, "", flag_values=values)
    flags.DEFINE_bool("lateral", True, "", flag_values=values)
    flags.DEFINE_string("model_dir", None, "", flag_values=values)
    values(["prog", *argv])
    return values


def test_recorded_flags_fill_what_the_command_line_leaves_unset(tmp_path):
    from spair_tf.flags_util import adopt_recorded_flags

    (tmp_path / "flags.json").write_text(json.dumps(
            {"hidden_units": ["8", "4"], "n_what": 4, "lateral": False,
             "model_dir": "/elsewhere", "spair": {"not": "a flag"}}))
    values = _flag_values("--n_what=6", f"--model_dir={tmp_path}")
    assert adopt_recorded_flags(str(tmp_path), values) == ["hidden_units", "lateral"]
    assert values.hidden_units == ["8", "4"] and values.lateral is False
    assert values.n_what == 6 and values.model_dir == str(tmp_path)  # the command line wins
    assert adopt_recorded_flags(str(tmp_path / "no_record"), _flag_values()) == []
    older = tmp_path / "older_run"   # runs before flags.json: the flags in results.json
    older.mkdir()
    (older / "results.json").write_text(json.dumps({"flags": {"n_what": 4}, "steps": 9}))
    values = _flag_values()
    assert adopt_recorded_flags(str(older), values) == ["n_what"] and values.n_what == 4


def test_a_corrupt_training_record_is_named_with_the_fix(tmp_path):
    from spair_tf.flags_util import adopt_recorded_flags

    (tmp_path / "flags.json").write_text('{"n_what": 4')
    with pytest.raises(ValueError, match=r"flags\.json is unreadable .*--flagfile"):
        adopt_recorded_flags(str(tmp_path), _flag_values())
