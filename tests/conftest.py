import pytest

from paths import SHARED   # test helpers import by name: pyproject's pytest pythonpath has tests/


@pytest.fixture(scope="session")
def shared():
    """The read-only ../shared folder beside the checkout (models and data)."""
    assert (SHARED / "models" / "TFC_2W2A.onnx").exists(), f"{SHARED} is missing"
    return SHARED
