"""Where a campaign's tasks run: this process, a local pool of processes, or a Dask cluster.

A campaign (``thresher verify --random``, ``thresher explore``) is many independent tasks, each a
picklable module-level function called with its own arguments. :class:`Campaign` runs them on a
:class:`concurrent.futures.Executor` -- the same code path (``Executor.submit``, then
``concurrent.futures.wait`` for the first to complete) whatever the executor is:

``Campaign(workers=N)``
    a :class:`~concurrent.futures.ProcessPoolExecutor` of N processes (started with ``spawn``:
    no fork of a process that may hold threads and open libraries). At most N tasks are in
    flight, so that when a worker process dies (a segfault, ``os._exit``, the OOM killer) and
    takes the pool down with it, the tasks it may have been running are few: they are run again
    one at a time in a pool of one, the one that dies alone is reported as dead, and the campaign
    goes on with a new pool.
``Campaign(scheduler="tcp://HOST:8786")``
    a Dask ``distributed.Client(address).get_executor()`` (the ``[cluster]`` extra, imported only
    here). Every task is submitted at once and the scheduler spreads them; a task whose workers
    keep dying is given up by the scheduler (``KilledWorker``, after its
    ``distributed.scheduler.allowed-failures`` retries) and reported as dead.
``Campaign()``
    this process, one task after the other (for the library, debuggers and tests that patch
    functions); an exception is still reported per task.

:meth:`Campaign.run` yields ``(index, outcome)`` as tasks complete, the outcome being what the
task returned or a :class:`TaskFailure` (it raised, or it died). What a task computes must depend
only on its arguments, so that results are the same whichever executor ran them.

Tasks share the caches under ``$THRESHER_CACHE`` (Verilator libraries, see
:mod:`thresher.sim.toolchain`): entries appear by atomic renames, under file locks, so processes on
one host, or hosts sharing one filesystem, never see half an entry.

Members
-------
Campaign            the executor of a campaign's tasks (a context manager).
TaskFailure         a task that did not return: ``died`` or raised.
default_workers()   what ``--workers`` defaults to: the CPUs this process may use.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import re
import signal
import time
import traceback
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from ..model_tools import progress
from ..model_tools.errors import ThresherError

__all__ = ["Campaign", "TaskFailure", "default_workers"]


def default_workers() -> int:
    """The CPUs this process may run on (``os.sched_getaffinity``), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:   # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class TaskFailure:
    """A task that did not return a result: it ``died`` (its worker process went away) or it
    raised; ``message`` says what happened, ``detail`` holds the traceback if there is one."""

    died: bool
    message: str
    detail: str = ""

    def __str__(self) -> str:
        return self.message


def _set_build_jobs(jobs: str) -> None:
    """A pool worker's initializer: its share of the compile jobs (see ``Campaign._pool``)."""
    os.environ["THRESHER_BUILD_JOBS"] = jobs


class _InlineExecutor(cf.Executor):
    """Runs each task at submission, in this process: a completed future."""

    def submit(self, fn, /, *args, **kwargs):
        future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:   # the task's failure, reported like any executor's
            if isinstance(e, KeyboardInterrupt):
                raise
            future.set_exception(e)
        return future


def _dask_client(address: str):
    try:
        import distributed
    except ImportError:
        raise ThresherError("--scheduler needs Dask distributed: pip install 'thresher[cluster]'"
                            ) from None
    try:
        return distributed.Client(address, timeout="20s", set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise ThresherError(f"--scheduler {address}: cannot reach the Dask scheduler ({e})"
                            ) from None


class Campaign:
    """The executor of a campaign's tasks; use it as a context manager.

    Parameters
    ----------
    workers : int or None
        Run tasks in a pool of this many local processes. ``None`` (and no ``scheduler``): in
        this process, one after the other.
    scheduler : str or None
        The address of a Dask scheduler (``tcp://HOST:8786``); excludes ``workers``.

    Raises
    ------
    ThresherError
        Both given; ``workers`` below 1; ``scheduler`` given but Dask distributed not installed
        (the ``[cluster]`` extra) or the scheduler not reachable.
    """

    def __init__(self, workers: int | None = None, scheduler: str | None = None):
        if workers is not None and scheduler is not None:
            raise ThresherError("give --workers (local processes) or --scheduler (a Dask "
                                "cluster), not both")
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ThresherError(f"--workers needs a positive number of processes, not {workers!r}")
        self.workers, self.scheduler = workers, scheduler
        self._client = self._executor = None

    # -- the executor ----------------------------------------------------------------------------

    def __enter__(self) -> "Campaign":
        if self.scheduler is not None:
            self._client = _dask_client(self.scheduler)
            self._executor = self._client.get_executor(pure=False)
        elif self.workers is not None:
            self._executor = self._pool(self.workers)
        else:
            self._executor = _InlineExecutor()
        return self

    def __exit__(self, *exc) -> None:
        failed = exc[0] is not None
        if isinstance(self._executor, cf.ProcessPoolExecutor):
            self._executor.shutdown(wait=not failed, cancel_futures=failed)
        elif self._executor is not None:
            self._executor.shutdown(wait=not failed)
        if self._client is not None:
            self._client.close()
        self._client = self._executor = None

    @staticmethod
    def _pool(workers: int) -> cf.ProcessPoolExecutor:
        """``workers`` spawned processes, each told how many compile jobs its share of the cores
        allows (``THRESHER_BUILD_JOBS``, unless set): a task's Verilator build compiles on two
        cores by default, so two workers would otherwise run four compilers on two cores."""
        jobs = os.environ.get("THRESHER_BUILD_JOBS") or str(max(1, default_workers() // workers))
        return cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_set_build_jobs, initargs=(jobs,))

    def describe(self) -> str:
        """Where the tasks run, for a person: ``"2 local processes"``, ``"this process"``, or
        the Dask scheduler's address and its workers."""
        if self.scheduler is not None:
            if self._client is None:
                return f"Dask scheduler {self.scheduler}"
            workers = self._client.scheduler_info(n_workers=-1).get("workers", {})
            threads = sum(w.get("nthreads", 0) for w in workers.values())
            return (f"Dask scheduler {self.scheduler} ({len(workers)} workers, "
                    f"{threads} threads)")
        if self.workers is not None:
            return f"{self.workers} local process{'es' if self.workers > 1 else ''}"
        return "this process"

    def info(self) -> dict:
        """Where the tasks run, for a JSON report."""
        kind = "dask" if self.scheduler else "processes" if self.workers else "inline"
        return {"executor": kind, "workers": self.workers, "scheduler": self.scheduler,
                "description": self.describe()}

    # -- running tasks ---------------------------------------------------------------------------

    def run(self, fn: Callable, tasks: Sequence[tuple], *,
            label: str | None = None) -> Iterator[tuple[int, Any]]:
        """Run ``fn(*tasks[i])`` for every ``i``; yield ``(i, result)`` as each completes, the
        result being a :class:`TaskFailure` if the task raised or died. With ``label``, a
        progress bar of that name counts the tasks done (once the caller has handled each)."""
        tick = progress.bar(len(tasks), label) if label else None
        for done, (i, outcome) in enumerate(self._run(fn, tasks), 1):
            yield i, outcome
            if tick is not None:
                tick(done)

    def _run(self, fn: Callable, tasks: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        """:meth:`run` without the progress bar.

        A worker that dies takes down with it the tasks it held besides the one that killed it
        (a local pool breaks as a whole; Dask gives up on every task queued on a worker that
        keeps dying). So those tasks are suspects, and each is run once more on its own, with no
        other suspect beside it: the one that dies alone is reported as dead.
        """
        if self._executor is None:
            raise RuntimeError("Campaign.run outside its 'with' block")
        local_pool = isinstance(self._executor, cf.ProcessPoolExecutor)
        limit = self.workers if local_pool else len(tasks)
        pending = deque(range(len(tasks)))
        suspects: deque[int] = deque()   # to be run again, one at a time
        tried_alone: set[int] = set()
        in_flight: dict[cf.Future, int] = {}
        alone = None                     # local: the pool of one of a suspect's re-run
        retrying = None                  # Dask: the suspect being run again
        try:
            while pending or suspects or in_flight:
                if local_pool and suspects and not in_flight:
                    alone = self._pool(1)
                    i = suspects.popleft()
                    in_flight[alone.submit(fn, *tasks[i])] = i
                    tried_alone.add(i)
                elif not (local_pool and suspects):
                    while pending and len(in_flight) < limit:
                        i = pending.popleft()
                        in_flight[self._executor.submit(fn, *tasks[i])] = i
                    if suspects and retrying is None:
                        retrying = suspects.popleft()
                        in_flight[self._executor.submit(fn, *tasks[retrying])] = retrying
                        tried_alone.add(retrying)
                done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
                broken = []
                for future in sorted(done, key=in_flight.get):
                    i = in_flight.pop(future)
                    if i == retrying:
                        retrying = None
                    try:
                        yield i, future.result()
                    except BrokenProcessPool:
                        broken.append(i)
                    except Exception as e:
                        failure = _failure(e)
                        if failure.died and i not in tried_alone:
                            suspects.append(i)
                        else:
                            yield i, failure
                if not broken:
                    if alone is not None and not in_flight:
                        alone.shutdown()
                        alone = None
                    continue
                held = broken + list(in_flight.values())
                in_flight.clear()
                pool = alone if alone is not None else self._executor
                if len(held) == 1:          # it died alone: it is the one
                    yield held[0], TaskFailure(True, f"its worker process died"
                                                     f"{_exit_status(pool)} while running it")
                else:
                    suspects.extend(sorted(held))
                pool.shutdown(wait=False, cancel_futures=True)
                if alone is not None:
                    alone = None
                else:
                    self._executor = self._pool(self.workers)
        finally:
            if alone is not None:
                alone.shutdown(wait=False, cancel_futures=True)

def _failure(e: BaseException) -> TaskFailure:
    name = type(e).__name__
    detail = "".join(traceback.format_exception(e))
    if name == "KilledWorker":      # distributed's: the task's workers died, again and again
        tried = re.search(r"on (\d+) different workers", str(e))
        return TaskFailure(True, "its worker process died while running it (on "
                           + (f"{tried[1]} Dask workers" if tried else "each Dask worker that "
                              "tried it") + ")", detail)
    return TaskFailure(False, f"{name}: {e}", detail)


def _exit_status(pool: cf.ProcessPoolExecutor) -> str:
    """``" (exit status N)"`` of a pool of one whose process died, if it can be told."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for _ in range(20):     # the pool's manager thread joins the dead process a moment later
        if any(p.exitcode is not None for p in processes):
            break
        time.sleep(0.05)
    codes = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
    if not codes:
        return ""
    # the pool terminates its other processes (SIGTERM) once one has died
    code = sorted(codes, key=lambda c: c == -signal.SIGTERM)[0]
    return f" (killed by signal {-code})" if code < 0 else f" (exit status {code})"
