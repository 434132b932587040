"""Reading user arrays and writing results without ever leaving a half-written file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import ThresherError

__all__ = ["load_array", "save_array", "atomic_write_bytes", "load_network"]


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
    """Write ``data`` to ``path`` through a temporary file in the same directory, then rename."""
    path = Path(path)
    if path.is_dir():
        raise ThresherError(f"{path}: is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ThresherError(f"{parent}: no such directory")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_array(path, array: np.ndarray) -> None:
    """``numpy.save`` to exactly ``path`` (no ``.npy`` appended), atomically."""
    import io
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def load_network(path):
    """An integer network from a QONNX file or from a directory written by ``thresher compile``."""
    from .fold import load_model
    from .ir import IntegerNetwork
    path = Path(path)
    if path.is_dir():
        if not (path / "network.json").exists():
            raise ThresherError(f"{path}: a directory without network.json (not a compiled model)")
        return IntegerNetwork.load(path)
    return load_model(path)
