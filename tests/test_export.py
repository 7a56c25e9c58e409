"""The SavedModel (spair_tf.export) and the detect CLI (spair_tf.detect)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from spair_tf.config import SpairConfig
from spair_tf.export import export_model
from spair_tf.model import SPAIR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = SpairConfig(n_what=8, hidden_units=(16,), encoder_units=(32,), decoder_units=(32,),
                   backbone_filters=8, n_features=8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tf.keras.utils.set_random_seed(3)
    model = SPAIR(TINY)
    model.build((None, 48, 48, 3))
    # A strong pres bias so that some cells are on and the comparison is not vacuous.
    bias = model.encoder.pres_net.layers[-1].bias
    bias.assign(tf.constant([0.3]))
    path = str(tmp_path_factory.mktemp("export") / "saved_model")
    export_model(model, path)
    return model, path


def test_saved_model_in_a_plain_tensorflow_process_gives_the_models_detections(exported,
                                                                              tmp_path):
    model, path = exported
    rng = np.random.default_rng(0)
    images = {"a": rng.uniform(size=(3, 48, 48, 3)), "b": rng.uniform(size=(1, 84, 61, 3))}
    np.savez(tmp_path / "images.npz", **images)
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "d = tf.saved_model.load(sys.argv[1]); x = np.load(sys.argv[2])\n"
        "out = {}\n"
        "for k in x.files:\n"
        "    r = d.signatures['serving_default'](images=tf.constant(x[k], tf.float32))\n"
        "    out.update({k + '/' + n: v.numpy() for n, v in r.items()})\n"
        "np.savez(sys.argv[3], **out)\n"
        "assert not any(m.startswith(('spair_tf', 'baselines')) for m in sys.modules)\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""}
    subprocess.run([sys.executable, "-c", script, path, str(tmp_path / "images.npz"),
                    str(tmp_path / "out.npz")], check=True, env=env, cwd=str(tmp_path))
    served = np.load(tmp_path / "out.npz")
    for key, x in images.items():
        want = model.detect(tf.constant(x, tf.float32), mode="mean")
        for i in range(len(x)):
            valid = want["valid"][i].numpy()
            n = int(served[key + "/num_detections"][i])
            assert n == valid.sum()
            order = np.argsort(-want["scores"][i].numpy()[valid], kind="stable")
            np.testing.assert_allclose(served[key + "/boxes"][i, :n],
                                       want["boxes"][i].numpy()[valid][order], atol=1e-4)
            np.testing.assert_allclose(served[key + "/scores"][i, :n],
                                       want["scores"][i].numpy()[valid][order], atol=1e-5)
            assert np.all(served[key + "/scores"][i, n:] == 0)
        np.testing.assert_allclose(served[key + "/reconstruction"],
                                   want["reconstruction"].numpy(), atol=1e-4)
    assert sum(int(served[k].sum()) for k in served.files if k.endswith("num_detections")) > 0


def test_detect_cli_writes_json_and_overlays_for_png_jpeg_gray_and_rgba(exported, tmp_path):
    from PIL import Image

    _, path = exported
    rng = np.random.default_rng(1)
    files = []
    for name, mode, shape in [("rgb.png", "RGB", (40, 52, 3)), ("gray.png", "L", (30, 30)),
                              ("rgba.png", "RGBA", (48, 48, 4)), ("photo.jpg", "RGB", (64, 20, 3))]:
        Image.fromarray(rng.integers(0, 255, size=shape, dtype=np.uint8), mode).save(
            tmp_path / name)
        files.append(str(tmp_path / name))
    out_dir = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "spair_tf.detect", f"--saved_model={path}",
         f"--output_dir={out_dir}"] + files, capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(records) == 4
    for record, file in zip(records, files):
        stem = os.path.splitext(os.path.basename(file))[0]
        assert (out_dir / f"{stem}.boxes.png").exists()
        assert json.loads((out_dir / f"{stem}.json").read_text()) == record
        assert len(record["boxes"]) == len(record["scores"])


def test_detect_cli_names_an_unreadable_image(exported, tmp_path):
    _, path = exported
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    result = subprocess.run(
        [sys.executable, "-m", "spair_tf.detect", f"--saved_model={path}", str(bad)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 2
    assert "not_an_image.png" in result.stderr and "Traceback" not in result.stderr
