"""spair_tf.figures: the committed figures draw what the records hold, beside the paper's."""

import dataclasses
import json
import os

import numpy as np
import pytest
from PIL import Image

from spair_tf import figures
from spair_tf import paper_numbers
from spair_tf import report

COMMITTED = os.path.join(report.REPOSITORY, figures.DEFAULT_OUTPUT_DIR, "figures.json")


def _as_json(obj):
    return json.loads(json.dumps(obj))


def test_committed_figures_are_the_records_figures():
    """A record changed without re-running `python -m spair_tf.figures` fails here."""
    with open(COMMITTED) as f:
        committed = json.load(f)
    for name, data in figures.figure_data().items():
        assert committed[name] == _as_json(data), name
    for png in ("fig2.png", "fig3.png", "fig4.png", "training_curves.png"):
        assert os.path.exists(os.path.join(os.path.dirname(COMMITTED), png)), png


def _lines(ax, gid):
    return [line for line in ax.get_lines() if line.get_gid() == gid]


def test_fig2_draws_each_cell_and_the_papers_means():
    data = figures.fig2_data()
    figure = figures.draw_fig2(data)
    cells = report.measured()
    for ax, model in zip(figure.axes, report.MODELS):
        ours = sorted((float(line.get_xdata()[0]), float(line.get_ydata()[0]))
                      for line in _lines(ax, "ours"))
        assert ours == sorted((c["n"], c["AP"]) for c in cells if c["model"] == model), model
        paper = paper_numbers.EXPERIMENT1_AP[model]
        means = [paper[n][0] if isinstance(paper[n], tuple) else paper[n]
                 for n in report.N_DIGITS]
        (line,) = _lines(ax, "paper")
        np.testing.assert_allclose(np.asarray(line.get_ydata(), float), means)
        np.testing.assert_allclose(np.asarray(line.get_xdata(), float), report.N_DIGITS)


def _ap(row, keys):
    """A row's AP, read by its record's keys (written here, not through report.lookup)."""
    for key in keys:
        row = row[key]
    return float(row)


def test_fig3_draws_our_sweeps_and_the_papers_curves():
    data = figures.fig3_data()
    figure = figures.draw_fig3(data)
    ap_axis = figure.axes[0]
    ours = _lines(ap_axis, "ours")
    assert len(ours) == len(figures.EXPERIMENT2_RECORDS)
    for record, line in zip(figures.EXPERIMENT2_RECORDS, ours):
        with open(os.path.join(report.REPOSITORY, record.path)) as f:
            rows = json.load(f)["per_n"]
        ns = sorted(int(n) for n in rows)
        scale = 1.0 if record.percent else 100.0
        np.testing.assert_allclose(line.get_xdata(), ns)
        np.testing.assert_allclose(line.get_ydata(),
                                   [scale * _ap(rows[str(n)], record.ap) for n in ns])
    papers = _lines(ap_axis, "paper")
    assert len(papers) == len(figures.EXPERIMENT2_CONDITIONS)
    for line, condition in zip(papers, figures.EXPERIMENT2_CONDITIONS):
        expected = paper_numbers.EXPERIMENT2["AP"][condition]
        np.testing.assert_allclose(line.get_xdata(), sorted(expected))
        np.testing.assert_allclose(line.get_ydata(), [expected[n] for n in sorted(expected)])


def test_fig3_reads_fractions_percentages_and_partial_counts(tmp_path):
    (tmp_path / "sweep.json").write_text(json.dumps({"steps": 24600, "per_n": {
        "10": {"AP": 0.25, "count_abs_error": 0.5},
        "2": {"AP": 0.75}}}))
    record = figures.Experiment2Record("1-5", "SPAIR", "sweep.json", ("AP",), False,
                                       (("count_abs_error", ("count_abs_error",)),),
                                       steps=("steps",))
    data = figures.fig3_data((record,), root=str(tmp_path))
    (ap,) = data["AP"]["ours"]
    assert (ap["n"], ap["value"]) == ([2, 10], [75.0, 25.0])
    assert ap["label"] == "SPAIR, 25k steps"
    (count,) = data["count_abs_error"]["ours"]
    assert (count["n"], count["value"]) == ([10], [0.5])
    assert data["count_01_error"]["ours"] == []


def test_fig3_errors_name_the_file(tmp_path):
    (tmp_path / "sweep.json").write_text(json.dumps({"per_n": {"3": {"count": 1}}}))
    record = figures.Experiment2Record("CC", "x", "sweep.json", ("AP",), True)
    with pytest.raises(ValueError, match=r"sweep\.json: per_n\[3\] has no \('AP',\)"):
        figures.fig3_data((record,), root=str(tmp_path))
    (tmp_path / "flat.json").write_text(json.dumps({"AP": 0.5}))
    with pytest.raises(ValueError, match=r"flat\.json has no per_n rows"):
        figures.fig3_data((dataclasses.replace(record, path="flat.json"),), root=str(tmp_path))
    (tmp_path / "untrained.json").write_text(json.dumps({"per_n": {"3": {"AP": 0.5}}}))
    with pytest.raises(ValueError, match=r"untrained\.json has no \('steps',\)"):
        figures.fig3_data((dataclasses.replace(record, path="untrained.json", steps=("steps",)),),
                          root=str(tmp_path))
    with pytest.raises(ValueError, match=r"gone\.json does not exist"):
        figures.fig3_data((dataclasses.replace(record, path="gone.json"),), root=str(tmp_path))


def test_fig4_draws_each_cell_with_its_interval_and_the_papers_points(tmp_path):
    # Two seeds of one cell (mean 0.3, t-interval ± 12.706·0.1/√2) and a one-seed cell.
    for name, accuracy in (("a.json", 0.25), ("b.json", 0.35), ("c.json", 0.5)):
        (tmp_path / name).write_text(json.dumps({"test_accuracy": accuracy, "steps": 1000}))
    records = (report.AdditionRecord("TrueBB", 32, ("a.json", "b.json")),
               report.AdditionRecord("ConnComp", 128, "c.json"))
    data = figures.fig4_data(records, root=str(tmp_path))
    figure = figures.draw_fig4(data)
    (ax,) = figure.axes
    ours = sorted((float(line.get_xdata()[0]), float(line.get_ydata()[0]))
                  for line in _lines(ax, "ours"))
    assert ours == pytest.approx([(32.0, 0.3), (128.0, 0.5)])
    half = 12.706 * np.std([0.25, 0.35], ddof=1) / np.sqrt(2)
    (bar,) = [c for c in ax.collections if len(c.get_segments()) == 1
              and np.allclose(c.get_segments()[0][:, 0], 32.0)]
    np.testing.assert_allclose(sorted(bar.get_segments()[0][:, 1]),
                               [0.3 - half, 0.3 + half], atol=1e-3)
    papers = _lines(ax, "paper")
    assert len(papers) == len(report.ADDITION_METHODS)
    for line, method in zip(papers, report.ADDITION_METHODS):
        paper = {k: v for k, v in paper_numbers.ADDITION[method].items() if v is not None}
        np.testing.assert_allclose(line.get_xdata(), sorted(paper))
        np.testing.assert_allclose(line.get_ydata(), [paper[k] for k in sorted(paper)])
    # ConnComp has no paper value at 8k (SPAIR_SPEC §5.4): its dashed line skips it.
    assert 8 not in data["ConnComp"]["paper"]["thousands"]


def test_training_curves_one_per_file_in_percent(tmp_path):
    (tmp_path / "air.json").write_text(json.dumps({
        "best": 0.1, "val_curve": [{"step": 1000, "val_AP": 0.02}, {"step": 2000, "val_AP": 0.1}]}))
    (tmp_path / "cc.json").write_text(json.dumps({"per_n": {}}))
    records = (report.Record("AIR", 3, "air.json", ("best",), ("val_curve", -1, "step"), "spec"),
               report.Record("AIR", 3, "air.json", ("best",), ("val_curve", -1, "step"), "spec"),
               report.Record("ConnComp", 3, "cc.json", ("x",), None, "spec"))
    (curve,) = figures.training_curve_data(records, root=str(tmp_path))
    assert curve["step"] == [1000, 2000]
    np.testing.assert_allclose(curve["AP"], [2.0, 10.0])
    assert curve["paper_test_AP"] == paper_numbers.EXPERIMENT1_AP["AIR"][3][0]


def test_write_makes_readable_pngs_and_the_json(tmp_path):
    data = figures.figure_data()
    figures.write(str(tmp_path), data, "test")
    for name in ("fig2.png", "fig3.png", "fig4.png", "training_curves.png"):
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG" and min(image.size) > 200, name
            pixels = np.asarray(image.convert("L"))
        assert pixels.std() > 5.0, f"{name} is blank"
    written = json.loads((tmp_path / "figures.json").read_text())
    assert written["command"] == "test" and written["fig2"] == _as_json(data["fig2"])
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")], "temp files left"
