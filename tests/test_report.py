"""spair_tf.report: the README's Fig. 2 table is the one the records give."""

import json
import os
import re

import numpy as np
import pytest

from spair_tf import report

README = os.path.join(report.REPOSITORY, "README.md")


def _readme_table():
    with open(README) as f:
        text = f.read()
    match = re.search(r"<!-- fig2:begin[^>]*-->\n(.*?)\n<!-- fig2:end -->", text, re.S)
    assert match, "README.md has no fig2:begin / fig2:end block"
    return match.group(1)


def test_readme_table_is_the_records_table():
    """A record changed without re-running `python -m spair_tf.report` fails here."""
    assert _readme_table() == report.markdown(report.measured())


def test_every_cell_is_a_percentage_of_a_fig2_condition():
    cells = report.measured()
    assert len(cells) == len(report.RECORDS)
    for cell in cells:
        assert 0.0 <= cell["AP"] <= 100.0, cell
        assert cell["model"] in report.MODELS and cell["n"] in report.N_DIGITS
        # Every learned model's cell says how it was evaluated (SPAIR_SPEC §1.12).
        assert (cell["mode"] is None) == (cell["model"] == "ConnComp"), cell


def test_cells_read_the_named_values(tmp_path):
    """Fractions become percent, list indices work, and a cell sits in its own row/column."""
    (tmp_path / "run.json").write_text(json.dumps(
        {"test": {"AP": 0.5, "AP_corrected": 0.25},
         "val_curve": [{"step": 1000}, {"step": 7000}]}))
    (tmp_path / "cc.json").write_text(json.dumps({"per_n": {"3": {"AP_paper_protocol": 71.0}}}))
    (tmp_path / "air.json").write_text(json.dumps({"best_val": {"AP": 0.125, "mode": "mean"},
                                                   "steps": 3000}))
    records = (report.Record("SPAIR", 9, "run.json", ("test", "AP"), ("val_curve", -1, "step"),
                             "original"),
               report.Record("SPAIR", 9, "run.json", ("test", "AP"), ("val_curve", -1, "step"),
                             "original", variant="July-2018 model"),
               report.Record("ConnComp", 3, "cc.json", ("per_n", "3", "AP_paper_protocol"),
                             None, "spec", percent=True),
               report.Record("AIR", 9, "air.json", ("best_val", "AP"), ("steps",), "spec",
                             split="val"))
    cells = report.measured(records, root=str(tmp_path))
    assert [(c["model"], c["n"], c["AP"], c["AP_corrected"], c["mode"], c["steps"])
            for c in cells] == [
        ("SPAIR", 9, 50.0, 25.0, None, 7000), ("SPAIR", 9, 50.0, 25.0, None, 7000),
        ("ConnComp", 3, 71.0, None, None, None), ("AIR", 9, 12.5, None, "mean", 3000)]
    rows = report.markdown(cells).splitlines()
    row9 = next(r for r in rows if r.startswith("| 9 |")).split(" | ")
    assert row9[1] == ("50.0 / 25.0 (orig., 7k steps)<br>"
                       "50.0 / 25.0 (orig., July-2018 model, 7k steps)")
    assert row9[3] == "12.5 (MNIST, 3k steps, mean mode, val)"
    row3 = next(r for r in rows if r.startswith("| 3 |")).split(" | ")
    assert row3[7] == "71.0 (MNIST)" and row3[1] == ""


def test_a_missing_record_or_key_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"test": {}}))
    records = (report.Record("SPAIR", 1, "run.json", ("test", "AP"), ("steps",), "spec"),)
    with pytest.raises(ValueError, match=r"run\.json has no \('test', 'AP'\)"):
        report.measured(records, root=str(tmp_path))
    records = (report.Record("SPAIR", 1, "gone.json", ("test", "AP"), ("steps",), "spec"),)
    with pytest.raises(ValueError, match=r"gone\.json does not exist"):
        report.measured(records, root=str(tmp_path))


def _readme_block(name):
    with open(README) as f:
        text = f.read()
    match = re.search(rf"<!-- {name}:begin[^>]*-->\n(.*?)\n<!-- {name}:end -->", text, re.S)
    assert match, f"README.md has no {name}:begin / {name}:end block"
    return match.group(1)


def test_readme_fig4_table_is_the_records_table():
    assert _readme_block("fig4") == report.addition_markdown(report.addition_measured())


def test_fig4_cells_are_accuracies_of_its_methods_and_sizes():
    cells = report.addition_measured()
    assert len(cells) == len(report.ADDITION_RECORDS)
    for cell in cells:
        assert 0.0 <= cell["accuracy"] <= 1.0 and cell["steps"] > 0, cell
        assert cell["method"] in report.ADDITION_METHODS, cell
        assert cell["thousands"] in report.ADDITION_SIZES, cell


def test_fig4_cells_read_their_records(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"test_accuracy": 0.25, "steps": 12400}))
    (tmp_path / "b.json").write_text(json.dumps({"test_accuracy": 0.5}))
    records = (report.AdditionRecord("TrueBB", 8, "a.json"),
               report.AdditionRecord("ConvNet", 1, "a.json", note="a note"))
    table = report.addition_markdown(report.addition_measured(records, root=str(tmp_path)))
    rows = {r.split(" | ")[0].lstrip("| "): r.split(" | ") for r in table.splitlines()[2:]}
    assert rows["TrueBB"][3] == "0.250 (12k steps)" and rows["TrueBB"][4] == "0.700"
    assert rows["ConvNet"][1] == "0.250 (12k steps, a note)" and rows["ConvNet"][3] == ""
    assert rows["ConnComp"][4] == "—"   # no paper value at 8k
    with pytest.raises(ValueError, match=r"b\.json has no test_accuracy or steps"):
        report.addition_measured((report.AdditionRecord("TrueBB", 8, "b.json"),),
                                 root=str(tmp_path))


def test_fig4_cell_over_seeds_is_their_mean_with_a_t_interval(tmp_path):
    for name, accuracy, steps in (("s0", 0.6, 30000), ("s1", 0.7, 41000), ("s2", 0.8, 35000)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"test_accuracy": accuracy,
                                                           "steps": steps}))
    record = report.AdditionRecord("TrueBB", 32, ("s0.json", "s1.json", "s2.json"))
    (cell,) = report.addition_measured((record,), root=str(tmp_path))
    half = 4.302652729911275 * 0.1 / np.sqrt(3)   # t(0.975, 2 dof) · sd / √n
    assert cell["seeds"] == 3 and cell["steps"] == 41000
    np.testing.assert_allclose([cell["accuracy"], *cell["ci95"]], [0.7, 0.7 - half, 0.7 + half])
    row = next(r for r in report.addition_markdown([cell]).splitlines()
               if r.startswith("| TrueBB |")).split(" | ")
    assert row[5] == f"0.700 [{0.7 - half:.3f}, {0.7 + half:.3f}] (3 seeds, ≤ 41k steps)"


def test_addition_record_script_writes_what_the_report_reads(tmp_path):
    import subprocess
    import sys

    def results(steps, best_step, accuracy):
        return {"test_accuracy": accuracy, "best_step": best_step, "best_val_accuracy": 0.5,
                "steps": steps, "n_train": 8000, "representation": "raw",
                "baseline": "truebb", "stage1_model": None,
                "train_config": {"patience": 10000, "seed": 3},
                "val_history": [{"step": s, "accuracy": 0.1, "loss": 1.0}
                                for s in range(1000, steps + 1, 1000)],
                "command": "spair_tf/addition.py --flagfile=configs/addition/truebb.flags "
                           "--train_images=8000 --model_dir=RUN"}

    script = os.path.join(report.REPOSITORY, "scripts", "addition_record.py")
    env = {**os.environ, "PYTHONPATH": report.REPOSITORY}
    for name, steps, best, stopped in (("stopped", 25000, 15000, True),
                                       ("running", 24000, 15000, False)):
        run = tmp_path / name
        run.mkdir()
        (run / "results.json").write_text(json.dumps(results(steps, best, 0.25)))
        out = tmp_path / f"{name}.json"
        subprocess.run([sys.executable, script, f"--run_dir={run}", "--method=TrueBB",
                        "--train_command=python -m spair_tf.addition ...",
                        f"--output_json={out}"], check=True, env=env, capture_output=True)
        record = json.loads(out.read_text())
        assert record["stopped_by_patience"] is stopped
        assert record["paper"]["test_accuracy"] == 0.700     # Fig. 4, TrueBB at 8k
        assert record["seed"] == 3 and len(record["val_curve"]) == steps // 1000
        assert "--flagfile=configs/addition/truebb.flags" in record["commands"]["test_best"]
        assert record["train_digits_per_class"] is None
        cells = report.addition_measured(
            (report.AdditionRecord("TrueBB", 8, out.name),), root=str(tmp_path))
        assert (cells[0]["accuracy"], cells[0]["steps"]) == (0.25, steps)
    # The training pool: from the recorded data configs, or the command line before them.
    import importlib.util
    spec = importlib.util.spec_from_file_location("addition_record", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    old = results(2000, 1000, 0.1)
    assert module.train_digits_per_class(old) is None
    old["command"] += " --train_digits_per_class=100"
    assert module.train_digits_per_class(old) == 100
    new = {**old, "data": {"train": {"digits_per_class": 200}}}
    assert module.train_digits_per_class(new) == 200
    failed = subprocess.run([sys.executable, script, f"--run_dir={tmp_path / 'stopped'}",
                             "--method=TrueBox", "--train_command=x",
                             f"--output_json={tmp_path / 'x.json'}"], env=env,
                            capture_output=True, text=True)
    assert failed.returncode == 2 and "--method='TrueBox'" in failed.stderr
    assert not (tmp_path / "x.json").exists()


def test_spair_progress_record_script_writes_what_the_report_reads(tmp_path):
    import subprocess
    import sys

    script = os.path.join(report.REPOSITORY, "scripts", "spair_progress_record.py")
    env = {**os.environ, "PYTHONPATH": report.REPOSITORY}
    run = tmp_path / "run"
    run.mkdir()
    history = [{"step": s, "AP": ap, "count_abs_error": 0.5}
               for s, ap in ((1000, 0.2), (2000, 0.45), (3000, 0.4))]
    (run / "val_history.json").write_text(json.dumps(history))
    (run / "flags.json").write_text(json.dumps({"n_digits": 7, "digit_frame": "emnist",
                                                  "dataset": "experiment1", "model": "spair"}))
    test = {"AP": 0.43, "AP_corrected": 0.42, "mode": "paper", "n_images": 1000,
            "checkpoint": "/somewhere/best/ckpt-2000", "dataset": {"unkept": 1}}
    (tmp_path / "test.json").write_text(json.dumps(test))
    out = tmp_path / "progress.json"
    args = [sys.executable, script, f"--run_dir={run}", "--state=results/spair/x_state", f"--output_json={out}"]
    test_arg = f"--test_json={tmp_path / 'test.json'}"
    for command in ("train one", "train two", "train two"):
        subprocess.run(args + [f"--train_command={command}", test_arg],
                       check=True, env=env, capture_output=True)
    record = json.loads(out.read_text())
    assert record["best_val"]["step"] == 2000 and record["last_val_step"] == 3000
    assert record["paper_test_AP"] == 0.659                   # Fig. 2, SPAIR at n = 7
    assert "original code's digits" in record["description"]
    assert record["commands"]["train"] == ["train one", "train two"]
    assert record["test"]["step"] == 2000 and "dataset" not in record["test"]
    cells = report.measured((report.Record("SPAIR", 7, out.name, ("test", "AP"),
                                           report.LAST_VALIDATED_STEP, "original"),),
                            root=str(tmp_path))
    assert (cells[0]["AP"], cells[0]["AP_corrected"], cells[0]["steps"]) == (43.0, 42.0, 3000)
    # The addition task's stage 1: the same record, no paper AP (Fig. 4 is stage 2's).
    (run / "flags.json").write_text(json.dumps({"n_digits": 5, "digit_frame": "emnist",
                                                  "dataset": "addition", "model": "spair",
                                                  "train_images": 1000}))
    stage1 = tmp_path / "stage1.json"
    subprocess.run(args[:-1] + [f"--output_json={stage1}", "--train_command=stage 1"],
                   check=True, env=env, capture_output=True)
    record = json.loads(stage1.read_text())
    assert record["description"].startswith("Addition task (Fig. 4), SPAIR's stage 1")
    assert "1,000 training images" in record["description"]
    assert record["paper_test_AP"] is None and record["data"]["train_images"] == 1000
    (run / "flags.json").write_text(json.dumps({"dataset": "space_invaders", "model": "spair"}))
    refused = subprocess.run(args[:-1] + [f"--output_json={tmp_path / 'x.json'}",
                                          "--train_command=x"], env=env, capture_output=True,
                             text=True)
    assert refused.returncode == 2 and "space_invaders" in refused.stderr
    (run / "flags.json").write_text(json.dumps({"n_digits": 7, "digit_frame": "emnist",
                                                  "dataset": "experiment1", "model": "spair"}))
    # A test of another checkpoint than the best is refused, and nothing is written.
    test["checkpoint"] = "/somewhere/best/ckpt-3000"
    (tmp_path / "test.json").write_text(json.dumps(test))
    failed = subprocess.run(args[:-1] + [f"--output_json={tmp_path / 'x.json'}",
                                         "--train_command=t", test_arg],
                            env=env, capture_output=True, text=True)
    assert failed.returncode == 2 and "step 3000" in failed.stderr
    assert not (tmp_path / "x.json").exists()
