"""The embedded default model and its held-out test images (no torch or scikit-learn needed).

``default.onnx`` was trained by ``python -m model_tools.train`` (see ``default.json`` for the
command, seed and accuracy); ``digits_test.npz`` is the test part of ``train.digits_split(0)``,
stored so that the demo runs on a core install.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"
DEFAULT_MODEL = DATA / "default.onnx"

__all__ = ["DEFAULT_MODEL", "default_record", "digits_test"]


def default_record() -> dict:
    """How the default model was trained and what it scored (``default.json``)."""
    return json.loads((DATA / "default.json").read_text())


def digits_test() -> tuple[np.ndarray, np.ndarray]:
    """The held-out digits: raw pixels float32 (540, 1, 8, 8) in 0..255, and int64 labels."""
    with np.load(DATA / "digits_test.npz") as f:
        return f["x"].astype(np.float32), f["y"].astype(np.int64)
