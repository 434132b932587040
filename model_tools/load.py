"""Loading an integer network from whatever a user names: a QONNX file (imported and folded), a
directory written by ``thresher compile``, or the name of a built-in model (``default``, ``tfc``)."""

from __future__ import annotations

from pathlib import Path

from .builtin import BUILTIN_MODELS, builtin_model
from .errors import ThresherError
from .fold import fold
from .importer import load_onnx
from .ir import IntegerNetwork

__all__ = ["load_model", "load_network", "resolve_model"]


def resolve_model(name) -> Path:
    """The path a model argument stands for: a built-in model's name (unless a file or folder of
    that name exists here, which wins), else the path itself."""
    path = Path(name)
    if str(name) in BUILTIN_MODELS and not path.exists():
        return builtin_model(str(name))
    return path


def load_model(path, *, input_type: str | None = None) -> IntegerNetwork:
    """Import and fold a QONNX file (or a built-in model) in one step; ``input_type`` (``UINT8``,
    ``BIPOLAR``, ...) declares the raw input's integer type (overriding the graph's annotation)."""
    return fold(load_onnx(resolve_model(path), input_type=input_type))


def load_network(path, *, input_type: str | None = None) -> IntegerNetwork:
    """An integer network from a QONNX file, a compiled directory or a built-in model's name.

    ``input_type``: see :func:`load_model`; a compiled directory keeps the type it was compiled
    with, and a different one is an error.
    """
    path = resolve_model(path)
    if path.is_dir():
        if not (path / "network.json").exists():
            raise ThresherError(f"{path}: a directory without network.json (not a compiled model)")
        net = IntegerNetwork.load(path)
        if input_type is not None and str(input_type).upper() != net.input.input_type:
            raise ThresherError(f"{path}: compiled with input type {net.input.input_type or 'float'}"
                                f"; --input-type {str(input_type).upper()} applies when compiling")
        return net
    return load_model(path, input_type=input_type)
