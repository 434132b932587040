"""Reading user arrays and writing results without ever leaving a half-written file behind."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np

from .errors import ThresherError

__all__ = ["load_array", "save_array", "atomic_write_bytes"]


def load_array(path) -> np.ndarray:
    """A numeric ``.npy`` array (no pickles); a clear error for anything else."""
    path = Path(path)
    if not path.exists():
        raise ThresherError(f"{path}: no such file")
    if path.is_dir():
        raise ThresherError(f"{path}: is a directory, expected a .npy file")
    try:
        with open(path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                raise ThresherError(f"{path}: not a .npy file (save arrays with numpy.save)")
        array = np.load(path, allow_pickle=False)
    except ThresherError:
        raise
    except (ValueError, OSError, EOFError) as e:
        raise ThresherError(f"{path}: unreadable .npy file ({e})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise ThresherError(f"{path}: holds {getattr(array, 'dtype', type(array))}, expected numbers")
    return array


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory, then rename, so an
    existing file is never left half-written. The file gets the user's umask, like any other
    file the user's programs write (``tempfile.mkstemp`` would make it private, mode 0600)."""
    path = Path(path)
    if path.is_dir():
        raise ThresherError(f"{path}: is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ThresherError(f"{parent}: no such directory")
    for _ in range(100):
        tmp = parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # umask applies
            break
        except FileExistsError:
            continue
    else:
        raise ThresherError(f"{parent}: cannot create a temporary file")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


def save_array(path, array: np.ndarray) -> None:
    """``numpy.save`` to exactly ``path`` (no ``.npy`` appended), atomically."""
    import io
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())

