"""Where a sweep's points run: in this process, in local processes, or on Dask.

Every executor has the same shape: a context manager whose ``run(tasks)``
yields each task's record as it finishes, in any order.  Records never carry
where they ran, and the seeds travel inside the tasks, so all executors give
the same results.  Leaving the ``with`` block early (Ctrl-C, an error) cancels
what has not run and stops every process the executor started.

* ``SerialExecutor``   one point after another, here (tests, debugging);
* ``ProcessExecutor``  ``concurrent.futures.ProcessPoolExecutor``: all cores;
* ``DaskExecutor``     a Dask ``distributed`` cluster (``tcp://HOST:PORT``),
  or a ``LocalCluster`` it starts.  Dask does the scheduling; its workers
  need docksim's code importable (start them from the checkout, or with it
  on PYTHONPATH), not the scenario file.

The pool and Dask send points in jobs of several (``sweep.batching``), a few
jobs per worker in flight, so the per-job cost is paid once for many points
and a Ctrl-C has little queued work to cancel.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import uuid
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Iterable, Iterator

from sweep.batching import Batcher
from sweep.worker import Task, run_batch, run_task
from vocab.schema import ScenarioError


def _lost(task: Task, exc: BaseException) -> dict:
    """The record of a point whose worker died or could not run it."""
    return {"point": task.point_id, "index": task.index, "params": task.point,
            "seeds": list(task.seeds), "status": "failed",
            "error": f"{type(exc).__name__}: {exc}", "elapsed_s": 0.0}


def _next_batch(queue: deque, batcher: Batcher) -> list[Task]:
    return [queue.popleft() for _ in range(min(batcher.size(len(queue)), len(queue)))]


class SerialExecutor:
    name = "serial"

    def __enter__(self) -> "SerialExecutor":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def run(self, tasks: Iterable[Task]) -> Iterator[dict]:
        for task in tasks:
            yield run_task(task)


def _ready(_: int) -> bool:
    return True


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group; the parent alone decides what
    # stops, so workers must not die mid-point with a traceback each.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ProcessExecutor:
    """Local worker processes, ``workers`` of them (default: every core)."""

    name = "processes"

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    @staticmethod
    def start_method() -> str:
        """fork when this process has one thread: workers start in milliseconds with
        everything imported.  With other threads (Jupyter's kernel, a progress
        bar) a forked child could inherit a held lock, so then forkserver, which
        forks from a clean single-threaded server; spawn where neither exists."""
        methods = multiprocessing.get_all_start_methods()
        if "fork" in methods and threading.active_count() == 1:
            return "fork"
        return "forkserver" if "forkserver" in methods else "spawn"

    def __enter__(self) -> "ProcessExecutor":
        context = multiprocessing.get_context(self.start_method())
        self._pool = ProcessPoolExecutor(self.workers, mp_context=context,
                                         initializer=_ignore_sigint)
        # start the workers now, before a progress bar's thread exists and its clock runs
        list(self._pool.map(_ready, range(self.workers)))
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def run(self, tasks: Iterable[Task]) -> Iterator[dict]:
        queue, batcher = deque(tasks), Batcher(self.workers)
        pending: dict[Future, list[Task]] = {}
        limit = 2 * self.workers
        while queue or pending:
            while queue and len(pending) < limit:
                batch = _next_batch(queue, batcher)
                pending[self._pool.submit(run_batch, batch)] = batch
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                batch = pending.pop(future)
                try:
                    records = future.result()
                except Exception as exc:  # noqa: BLE001 -- e.g. BrokenProcessPool
                    records = [_lost(task, exc) for task in batch]
                batcher.observe(records)
                yield from records


_SCHEMES = ("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")


class DaskExecutor:
    """A Dask cluster: ``address`` is ``tcp://HOST:PORT`` or ``local``."""

    def __init__(self, address: str, workers: int | None = None, processes: bool = True):
        if address != "local" and not address.startswith(_SCHEMES):
            raise ScenarioError(f"--scheduler {address}: expected tcp://HOST:PORT or local")
        self.address, self.workers, self.processes = address, workers, processes
        self.name = "dask-local" if address == "local" else "dask"
        self.cluster = self.client = None
        self._futures: set = set()

    def __enter__(self) -> "DaskExecutor":
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ScenarioError("--scheduler: Dask is not installed "
                                '(pip install "dask[distributed]")') from None
        if self.address == "local":
            self.cluster = LocalCluster(n_workers=self.workers or os.cpu_count() or 1,
                                        threads_per_worker=1, processes=self.processes,
                                        dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
            return self
        try:
            self.client = Client(self.address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ScenarioError(f"--scheduler {self.address}: cannot reach the Dask "
                                f"scheduler ({exc})") from None
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._futures:
                self.client.cancel(list(self._futures))
        finally:
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()

    def _threads(self) -> int:
        workers = self.client.scheduler_info().get("workers", {})
        return max(1, sum(worker.get("nthreads", 1) for worker in workers.values()))

    def run(self, tasks: Iterable[Task]) -> Iterator[dict]:
        from distributed import as_completed
        queue = deque(tasks)
        if not queue:
            return
        threads = self._threads()
        batcher, limit = Batcher(threads), 2 * threads
        run = uuid.uuid4().hex[:8]  # unique keys: a cluster may hold another sweep's jobs
        batches: dict = {}
        finished = as_completed()

        def submit() -> None:
            batch = _next_batch(queue, batcher)
            future = self.client.submit(run_batch, batch, pure=False,
                                        key=f"docksim-{run}-{batch[0].index}-{len(batch)}")
            batches[future.key] = batch
            self._futures.add(future)
            finished.add(future)

        while queue and len(batches) < limit:
            submit()
        for future in finished:
            batch = batches.pop(future.key)
            try:
                records = future.result()
            except Exception as exc:  # noqa: BLE001 -- e.g. KilledWorker
                records = [_lost(task, exc) for task in batch]
            self._futures.discard(future)
            future.release()
            batcher.observe(records)
            while queue and len(batches) < limit:
                submit()
            yield from records


def make_executor(scheduler: str | None, workers: int | None):
    """The executor the CLI's ``--scheduler`` and ``--workers`` ask for."""
    if workers is not None and workers < 1:
        raise ScenarioError(f"--workers: must be at least 1, not {workers}")
    if scheduler is None:
        return ProcessExecutor(workers)
    if scheduler == "serial":
        return SerialExecutor()
    return DaskExecutor(scheduler, workers)
