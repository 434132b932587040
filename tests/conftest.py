import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))   # test helpers (qonnx_builder, brevitas_factory) import by name

SHARED = TESTS.parent.parent / "shared"


@pytest.fixture(scope="session")
def shared():
    """The read-only ../shared folder beside the checkout (models and data)."""
    assert (SHARED / "models" / "TFC_2W2A.onnx").exists(), f"{SHARED} is missing"
    return SHARED
