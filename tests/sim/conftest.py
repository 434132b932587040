import os
from contextlib import contextmanager

import pytest

from thresher.model_tools import progress


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


class RecordingReporter(progress.Reporter):
    """Progress as a list of events: ``("step", label)`` when a step starts, and
    ``("bar", label, total, updates)`` for a bar, ``updates`` growing with each ``update(done)``."""

    def __init__(self):
        self.events = []

    @contextmanager
    def step(self, label):
        self.events.append(("step", label))
        yield

    def bar(self, total, label):
        updates = []
        self.events.append(("bar", label, total, updates))
        return updates.append


@pytest.fixture
def progress_events():
    """The progress events reported during the test (see :class:`RecordingReporter`)."""
    reporter = RecordingReporter()
    with progress.reporting(reporter):
        yield reporter.events
