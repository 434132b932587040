"""The models and data that ship inside the package, found through :mod:`importlib.resources`.

- ``default``: the embedded digits model. ``default.onnx`` was trained by
  ``python -m thresher.model_tools.train`` (``default.json`` records the command, seed and accuracy);
  ``digits_test.npz`` is the test part of ``train.digits_split(0)``, stored so that the demo runs on
  a core install, without torch or scikit-learn.
- ``tfc``: FINN's trained MNIST TFC_2W2A from the QONNX model zoo (licence in
  ``tfc_2w2a.LICENSE.txt``), with four MNIST test images from FINN (``mnist4.LICENSE.txt``); the
  benchmark and the RTL examples run on it.

Every command that takes a model also takes one of these names (``thresher info default``).
"""

from __future__ import annotations

import atexit
import json
from contextlib import ExitStack
from functools import cache
from importlib.resources import as_file, files
from pathlib import Path

import numpy as np

__all__ = ["BUILTIN_MODELS", "DEFAULT_MODEL", "TFC_MODEL", "builtin_model", "data_path",
           "default_record", "digits_test", "mnist4"]

_DATA = files(__package__) / "data"
_KEEP = ExitStack()          # files extracted by as_file() live until the interpreter exits
atexit.register(_KEEP.close)

#: name -> (file in ``data/``, one line on what it is)
BUILTIN_MODELS = {
    "default": ("default.onnx", "the demo's digits CNN (8x8 pixels, 4-bit weights, 2-bit activations)"),
    "tfc": ("tfc_2w2a.onnx", "FINN's MNIST TFC_2W2A (784-64-64-64-10, 2-bit weights and activations)"),
}


@cache
def data_path(name: str) -> Path:
    """A real file system path to the shipped data file ``name`` (extracted if the package is zipped)."""
    return _KEEP.enter_context(as_file(_DATA / name))


def builtin_model(name: str) -> Path:
    """The path of the built-in model ``name`` (a key of :data:`BUILTIN_MODELS`)."""
    return data_path(BUILTIN_MODELS[name][0])


DEFAULT_MODEL = builtin_model("default")
TFC_MODEL = builtin_model("tfc")


def default_record() -> dict:
    """How the default model was trained and what it scored (``default.json``)."""
    return json.loads((_DATA / "default.json").read_text())


def digits_test() -> tuple[np.ndarray, np.ndarray]:
    """The held-out digits: raw pixels float32 (540, 1, 8, 8) in 0..255, and int64 labels."""
    with np.load(data_path("digits_test.npz")) as f:
        return f["x"].astype(np.float32), f["y"].astype(np.int64)


def mnist4() -> tuple[np.ndarray, np.ndarray]:
    """Four MNIST test images for TFC: float32 (4, 1, 28, 28) in 0..255, and their labels 7 2 1 0."""
    return (np.load(data_path("mnist4_input.npy")).astype(np.float32),
            np.load(data_path("mnist4_labels.npy")).astype(np.int64))
