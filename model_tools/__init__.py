"""thresher's model side: import QONNX, fold to an exact integer network, run it (no amaranth here)."""

from .errors import ThresherError
from .ir import Conv, Dense, Dequant, InputQuantizer, IntegerNetwork, MaxPool, Thresholds

__all__ = ["ThresherError", "Conv", "Dense", "Dequant", "InputQuantizer", "IntegerNetwork", "MaxPool",
           "Thresholds"]
