"""thresher's model side: import QONNX, fold to an exact integer network, run it (no amaranth here)."""

from .errors import ThresherError
from .fold import fold
from .load import load_model, load_network
from .importer import load_onnx
from .ir import Conv, Dense, Dequant, InputQuantizer, IntegerNetwork, MaxPool, Thresholds

__all__ = ["fold", "load_model", "load_network", "load_onnx", "ThresherError", "Conv", "Dense", "Dequant", "InputQuantizer", "IntegerNetwork", "MaxPool",
           "Thresholds"]
