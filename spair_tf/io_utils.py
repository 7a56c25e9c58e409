"""Atomic file writes shared by every module that saves something.

A reader must never see a half-written file (a crash mid-write, or two processes writing the
same cache entry). Every writer here writes to a temporary file in the destination's own
directory, flushes and fsyncs it, then renames it over the destination with `os.replace`,
which is atomic on POSIX and Windows when both paths are on one file system.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile

import numpy as np

# A fixed timestamp for the members of the .npz archives written here, so that the same arrays
# always give the same bytes (and so the same sha256): numpy's own savez stamps the current time.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _read_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files readable by the owner only; give finished files the usual mode
# (0o666 less the umask, read once at import since reading it means setting it).
_FILE_MODE = 0o666 & ~_read_umask()


def _fsync_directory(directory):
    """Best effort: make the rename itself durable (not supported on every OS/file system)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_binary_file(path):
    """Yields a binary file object; on success it replaces `path` atomically, else it vanishes."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(
        dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with contextlib.suppress(OSError):  # not every OS/file system has fchmod
            os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp_path)
        raise
    _fsync_directory(directory)


def atomic_write_bytes(path, data: bytes) -> None:
    """Writes `data` to `path` atomically, creating parent directories."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"atomic_write_bytes needs bytes, got {type(data).__name__}; "
                        "use atomic_write_text for str.")
    with _atomic_binary_file(path) as f:
        f.write(data)


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> None:
    """Writes the string `text` to `path` atomically (UTF-8 by default)."""
    if not isinstance(text, str):
        raise TypeError(f"atomic_write_text needs str, got {type(text).__name__}; "
                        "use atomic_write_bytes for bytes.")
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path, obj, indent: int = 2) -> None:
    """Writes `obj` as JSON (sorted keys, trailing newline) to `path` atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=True) + "\n"
    atomic_write_text(path, text)


def atomic_save_npz(path, **arrays) -> None:
    """Saves arrays as an uncompressed .npz (readable by `np.load`) atomically.

    Unlike `np.savez`, the path is used exactly as given (no ".npz" appended) and the archive
    bytes depend only on the arrays (fixed member timestamps), so equal data has an equal
    checksum. Object arrays are refused (they would need pickle to load).
    """
    if not arrays:
        raise ValueError("atomic_save_npz needs at least one array, e.g. atomic_save_npz(p, x=x).")
    with _atomic_binary_file(path) as f:
        with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, value in arrays.items():
                array = np.asanyarray(value)
                if array.dtype.hasobject:
                    raise TypeError(f"atomic_save_npz: array {name!r} has dtype object; "
                                    "only plain numeric/bool/string arrays can be saved.")
                info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_EPOCH)
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = 0o644 << 16
                with zf.open(info, mode="w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
