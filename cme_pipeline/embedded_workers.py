"""Run ``cme_matching``'s LAs in parallel on the embedded default: forked workers, one per core.

Each worker is a fork of ``cme run`` that runs one ``dag.test()`` of ``cme_matching`` for its
share of the LAs, in-process, exactly as a single ``cme run`` does; the shares are balanced by
the size of the waiting deliveries. Why forked workers rather than Airflow's LocalExecutor
(``dag.test(use_executor=True)``): in Airflow 3 an executor hands each task to a supervisor that
talks to an Execution API server, which the embedded default does not run, and every task would
start a fresh interpreter and import Airflow, pandas and Great Expectations again (about 8 s).
A fork inherits what the parent imported and built once (``warm_up``): Airflow, pandas, GX and
its context, rapidfuzz.

What the workers share is what one process used to own: Airflow's metadata DB (SQLite under the
home by default; Airflow's transactions are short and SQLite serialises the writers) and the
home lock (the flock belongs to the open file the workers inherit, so the home stays locked
until the last worker ends, even if ``cme run`` itself is killed). A worker dies with its parent
(``PR_SET_PDEATHSIG``): a killed ``cme run`` leaves no run going on behind it, and like any
killed run its LAs start again from their encrypted deliveries next time.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import logging
import multiprocessing
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from cme_pipeline.config import Settings
from cme_pipeline.embedded_airflow import DagRunResult, run_dag, sync_dags
from cme_pipeline.runs import waiting_deliveries

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ShareResult:
    """One worker's LAs and its run (``None`` if the worker ended without finishing its run)."""

    la_codes: tuple[str, ...]
    result: DagRunResult | None
    problem: str = ""  # why there is no result: an exception's type or the worker's exit status


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's total)."""
    return max(1, len(os.sched_getaffinity(0)))


def split_by_size(settings: Settings, codes: Sequence[str], workers: int) -> list[list[str]]:
    """Share the LAs out so each worker gets about the same number of children.

    Largest delivery first, each to the least loaded worker (the delivery file's size stands in
    for its row count, which only decryption would tell). Shares keep the LAs' given order.

    Args:
        settings: the home.
        codes: LAs with a delivery waiting.
        workers: how many shares (at most one per LA).
    """
    sizes = {code: sum(p.stat().st_size for p in waiting_deliveries(settings, code)) for code in codes}
    loads = [0] * max(1, min(workers, len(codes)))
    chosen: list[list[str]] = [[] for _ in loads]
    for code in sorted(codes, key=lambda c: -sizes[c]):
        lightest = loads.index(min(loads))
        chosen[lightest].append(code)
        loads[lightest] += sizes[code]
    order = {code: i for i, code in enumerate(codes)}
    return [sorted(share, key=order.__getitem__) for share in chosen if share]


def warm_up() -> None:
    """Import and build once, before forking, what every LA's tasks need (start-up paid once)."""
    import rapidfuzz  # noqa: F401
    from airflow.sdk.execution_time import supervisor, task_runner  # noqa: F401

    from cme_pipeline import matching, quality  # noqa: F401

    quality.warm_up()
    sync_dags()
    _build_execution_api()


def _build_execution_api() -> None:
    """Build Airflow's in-process Execution API (its versioned routes) now, once for every worker.

    ``dag.test()`` talks to it for every task; it is built on the first request, which in a
    worker meant every worker generating the same routes again (Cadwyn: about 5 s of CPU each).
    Only the app is built here: its event-loop thread starts in each worker, after the fork.
    """
    from airflow.sdk.execution_time.supervisor import in_process_api_server

    app = in_process_api_server().app
    build_routes = getattr(app, "_cadwyn_initialize", None)
    if callable(build_routes) and getattr(app, "_cadwyn_initialized", True) is False:
        build_routes()


def run_shares(settings: Settings, dag_id: str, conf: dict[str, Any], shares: Sequence[Sequence[str]]) -> list[ShareResult]:
    """Run ``dag_id`` once per share, the shares in parallel worker processes; wait for all.

    Args:
        settings: the home (``embedded_airflow.prepare`` must have been called).
        dag_id: which DAG (its ``la_codes`` Param receives each share).
        conf: the run's other Params.
        shares: the LA codes of each worker.
    """
    context = multiprocessing.get_context("fork")
    now = dt.datetime.now(dt.UTC)
    started: list[tuple[tuple[str, ...], Any, Connection]] = []
    try:
        for share in shares:
            receiver, sender = context.Pipe(duplex=False)
            worker = context.Process(target=_worker, args=(settings, dag_id, conf | {"la_codes": list(share)},
                                                                     now + dt.timedelta(microseconds=len(started)), sender),
                                     name=f"cme-run-worker-{len(started)}", daemon=True)
            worker.start()
            sender.close()
            started.append((tuple(share), worker, receiver))
        return [_collect(codes, worker, receiver) for codes, worker, receiver in started]
    finally:
        for _, worker, _ in started:  # an exception (Ctrl-C) here: end the workers, not orphan them
            if worker.is_alive():
                worker.kill()
            worker.join()


def _collect(codes: tuple[str, ...], worker: Any, receiver: Connection) -> ShareResult:
    try:
        answer = receiver.recv()  # EOFError: the worker ended without answering
    except EOFError:
        answer = None
    worker.join()
    if isinstance(answer, DagRunResult):
        return ShareResult(codes, answer)
    problem = answer if isinstance(answer, str) else f"worker process ended with exit status {worker.exitcode}"
    return ShareResult(codes, None, problem)


def _worker(settings: Settings, dag_id: str, conf: dict[str, Any], logical_date: dt.datetime,
            answer: Connection) -> None:
    _die_with_parent()
    try:
        answer.send(run_dag(settings, dag_id, conf, logical_date))
    except Exception as exc:  # noqa: BLE001 - the console gets the type only: a message might quote a value
        # Airflow's own failure (its metadata DB, not our task code, whose errors dag.test keeps):
        # the traceback goes where Airflow's console output goes (``airflow_console_to_file``).
        logging.getLogger(__name__).exception("cme_matching worker failed")
        answer.send(f"worker failed: {type(exc).__name__}")
    finally:
        answer.close()


def _die_with_parent() -> None:
    """Have the kernel end this worker when ``cme run`` ends, however it ends (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the daemon flag still ends workers on a clean exit
        pass
    if os.getppid() == 1:  # the parent was already gone before prctl took effect
        os._exit(1)
