import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))                    # verilator_standin
sys.path.insert(0, str(HERE.parent / "hw"))      # netgen


@pytest.fixture(scope="session", autouse=True)
def thresher_cache(tmp_path_factory):
    """One temporary THRESHER_CACHE for the whole session: every test starts cold, yet the
    Verilator runtime objects are compiled once per session, not once per test module."""
    cache = tmp_path_factory.mktemp("thresher-cache")
    old = os.environ.get("THRESHER_CACHE")
    os.environ["THRESHER_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("THRESHER_CACHE", None)
    else:
        os.environ["THRESHER_CACHE"] = old
