"""Atomic writes (spair_tf.io_utils): content round-trips, no partial files, stable bytes."""

import hashlib
import json
import os

import numpy as np
import pytest

from spair_tf import io_utils


def _leftovers(directory):
    return [name for name in os.listdir(directory) if name.endswith(".tmp")]


def test_write_bytes_text_json_round_trip_and_create_parents(tmp_path):
    target = tmp_path / "a" / "b"
    io_utils.atomic_write_bytes(target / "x.bin", b"\x00\x01\xff")
    io_utils.atomic_write_text(target / "x.txt", "héllo\n")
    io_utils.atomic_write_json(target / "x.json", {"b": [1, 2], "a": None})
    assert (target / "x.bin").read_bytes() == b"\x00\x01\xff"
    assert (target / "x.txt").read_bytes() == "héllo\n".encode("utf-8")
    assert json.loads((target / "x.json").read_text()) == {"b": [1, 2], "a": None}
    assert _leftovers(target) == []


def test_overwrite_replaces_content(tmp_path):
    path = tmp_path / "f.txt"
    io_utils.atomic_write_text(path, "old")
    io_utils.atomic_write_text(path, "new")
    assert path.read_text() == "new"


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "data.npz"
    io_utils.atomic_save_npz(path, x=np.arange(3))
    before = path.read_bytes()
    with pytest.raises(TypeError, match="object"):
        io_utils.atomic_save_npz(path, y=np.array([{"a": 1}], dtype=object))
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_npz_round_trip_exact_path_and_stable_bytes(tmp_path):
    arrays = {"images": np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
              "boxes": np.linspace(0, 1, 8, dtype=np.float32).reshape(2, 4),
              "labels": np.array([-1, 7], np.int32)}
    first, second = tmp_path / "one.bin", tmp_path / "two.bin"
    io_utils.atomic_save_npz(first, **arrays)
    io_utils.atomic_save_npz(second, **arrays)
    assert sorted(os.listdir(tmp_path)) == ["one.bin", "two.bin"]  # no ".npz" appended
    with np.load(first, allow_pickle=False) as loaded:
        assert sorted(loaded.files) == sorted(arrays)
        for key, value in arrays.items():
            assert loaded[key].dtype == value.dtype
            np.testing.assert_array_equal(loaded[key], value)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (first, second)]
    assert digest[0] == digest[1]


def test_bad_argument_types():
    with pytest.raises(TypeError, match="bytes"):
        io_utils.atomic_write_bytes("/tmp/never_written", "text")
    with pytest.raises(TypeError, match="str"):
        io_utils.atomic_write_text("/tmp/never_written", b"bytes")
    with pytest.raises(ValueError, match="at least one array"):
        io_utils.atomic_save_npz("/tmp/never_written")
