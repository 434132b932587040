"""Where the tests find the read-only ``shared/`` folder: beside the checkout, never a machine path."""

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
SHARED = CHECKOUT.parent / "shared"
TFC = SHARED / "models" / "TFC_2W2A.onnx"
MNIST4 = SHARED / "data" / "mnist4"
DEFAULT = CHECKOUT / "model_tools" / "data" / "default.onnx"
