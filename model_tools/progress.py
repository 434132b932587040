"""Progress on long steps, reported by the layer that does the work and shown by the application.

The steps that take time live deep down (synthesis and place-and-route in ``hw.build``, the
Verilator compile and batch simulation in ``sim``), while only the application knows where to show
them. So the libraries call :func:`step` and :func:`bar`, which report to the *current reporter*
(a context variable): silent by default, so library use and tests print nothing, and
:class:`StderrReporter` when the command line installs it with :func:`reporting`.

    with progress.step("synthesis (yosys)"):
        run_yosys()
    tick = progress.bar(len(x), "Verilator batch")
    for i in ...: tick(i + 1)

On a terminal a step shows a line that counts its elapsed seconds and a bar shows tqdm's bar with
its rate and ETA; elsewhere (a log, CI) each step prints one line when it starts and one with its
time when it ends, so nothing long is ever silent.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator, TextIO

__all__ = ["Reporter", "StderrReporter", "bar", "note", "reporting", "step"]


class Reporter:
    """Where progress goes. This base class is the silent reporter."""

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        yield

    def bar(self, total: int, label: str) -> Callable[[int], None] | None:
        return None

    def note(self, text: str) -> None:
        pass


class StderrReporter(Reporter):
    """Progress for a person: live on a terminal, one line per start and end elsewhere."""

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty() if live is None else live

    def _say(self, text: str, end: str = "\n") -> None:
        self.stream.write(text + end)
        self.stream.flush()

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        start = time.monotonic()
        stop = threading.Event()
        ticker = None
        if self.live:
            def tick():
                while not stop.wait(1.0):
                    self._say(f"\r  {label} ... {time.monotonic() - start:.0f} s", end="")
            self._say(f"  {label} ...", end="")
            ticker = threading.Thread(target=tick, daemon=True)
            ticker.start()
        else:
            self._say(f"thresher: {label} ...")
        ok = False
        try:
            yield
            ok = True
        finally:
            stop.set()
            if ticker is not None:
                ticker.join()
            took = time.monotonic() - start
            outcome = "done" if ok else "stopped"
            if self.live:
                self._say(f"\r  {label}: {outcome} in {took:.1f} s\033[K")
            else:
                self._say(f"thresher: {label}: {outcome} in {took:.1f} s")

    def note(self, text: str) -> None:
        self._say(f"thresher: {text}")

    def bar(self, total: int, label: str) -> Callable[[int], None] | None:
        if not self.live:
            return _LineBar(self, total, label)
        from tqdm import tqdm
        bar = tqdm(total=total, desc=f"  {label}", leave=False, file=self.stream)

        def update(done: int) -> None:
            bar.n = done
            bar.refresh()
            if done >= total:
                bar.close()
                self._say(f"  {label}: {total:,} in {bar.format_dict['elapsed']:.1f} s")
        return update


class _LineBar:
    """A bar for logs: a line at the start, one at each quarter, one at the end, with elapsed time."""

    def __init__(self, reporter: StderrReporter, total: int, label: str):
        self.reporter, self.total, self.label = reporter, total, label
        self.start = time.monotonic()
        self.next_quarter = 1
        reporter._say(f"thresher: {label}: 0/{total:,}")

    def __call__(self, done: int) -> None:
        crossed = False
        while self.next_quarter <= 4 and done * 4 >= self.next_quarter * self.total:
            self.next_quarter += 1
            crossed = True
        if crossed:      # one line per update, however many quarters it crossed
            self.reporter._say(f"thresher: {self.label}: {done:,}/{self.total:,} in "
                               f"{time.monotonic() - self.start:.1f} s")


_current: ContextVar[Reporter] = ContextVar("thresher_progress_reporter", default=Reporter())


@contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Send the progress of everything inside the ``with`` block to ``reporter``."""
    token = _current.set(reporter)
    try:
        yield reporter
    finally:
        _current.reset(token)


def step(label: str):
    """A context manager around a step that reports no progress of its own (shows elapsed time)."""
    return _current.get().step(label)


def bar(total: int, label: str) -> Callable[[int], None] | None:
    """A callback ``update(done)`` for a step of ``total`` units, or ``None`` when nobody listens."""
    return _current.get().bar(total, label)


def note(text: str) -> None:
    """Say one line about what is happening and why (a step-down, a rebuild at a lower clock)."""
    _current.get().note(text)
