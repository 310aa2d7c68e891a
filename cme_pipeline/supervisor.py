"""Run a set of named child processes as one service, and stop every one of them together.

``cme airflow`` starts several long-lived programs (Airflow's API server, scheduler, DAG
processor, triggerer, Celery workers, a Redis broker). Each child gets its own process group,
working directory and environment. A SIGTERM (a service manager) or SIGINT (Ctrl-C) to this
process is passed to every group; what has not ended after a grace period is SIGKILLed, so
nothing is left behind. Airflow puts each task process in a process group of its own, and a
task whose parent died is re-parented: so this process makes itself the "child subreaper"
(Linux ``PR_SET_CHILD_SUBREAPER``), every descendant stays below it, and the final SIGKILL goes
to every descendant still alive, whatever its group. If one child dies on its own the service
is incomplete: everything is stopped, with one line naming the component. The exception is a
redundant component (one Celery worker of several): its death is reported in one line and the
rest go on, since the point of several workers is that the others take over its tasks; when
the last of them is gone, everything stops.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import psutil

# How long a component may take to end after SIGTERM before its group is SIGKILLed: Airflow's
# scheduler and workers finish their shutdown (close DB sessions, requeue) in a few seconds.
DEFAULT_GRACE_SECONDS = 30.0
_POLL_SECONDS = 0.2
_PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def become_subreaper() -> None:
    """Make orphaned descendants of this process re-parent to it rather than to init (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def descendants() -> list[psutil.Process]:
    """Every live (not zombie) process below this one."""
    alive = []
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
    return alive


@dataclass
class Component:
    """One named child process, leader of its own process group."""

    name: str
    process: subprocess.Popen[bytes]
    redundant: bool = False  # one of several interchangeable ones (Celery workers)
    reported: bool = False


@dataclass
class Supervisor:
    """Start named children, then wait until a signal or an unexpected exit stops them all."""

    grace_seconds: float = DEFAULT_GRACE_SECONDS
    components: list[Component] = field(default_factory=list)
    _stop_signal: int | None = None

    def start(self, name: str, argv: Sequence[str], cwd: Path, env: Mapping[str, str],
              log: Path | None = None, redundant: bool = False) -> Component:
        """Start one component in its own process group.

        Args:
            name: what the one-line messages call it (``scheduler``, ``worker1``).
            argv: the program and its arguments.
            cwd: its own working directory (created 0700 if missing).
            env: its whole environment.
            log: a file for its output (0600, appended); None shares this process's stdout/stderr.
            redundant: one of several interchangeable components; the rest go on without it.
        """
        if not self.components:
            become_subreaper()
        cwd.mkdir(mode=0o700, parents=True, exist_ok=True)
        out = None
        if log is not None:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            out = os.fdopen(fd, "ab")
        try:
            process = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdout=out,
                                       stderr=subprocess.STDOUT if out else None, start_new_session=True)
        finally:
            if out is not None:
                out.close()
        component = Component(name, process, redundant)
        self.components.append(component)
        return component

    def run(self) -> int:
        """Wait for SIGTERM/SIGINT or a component's exit; stop everything; return the exit status.

        0 when stopped by a signal, 1 when a component ended on its own.
        """
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            ended = self._wait_for_first_exit()
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if ended is None:
            return 0
        sys.stderr.write(f"cme airflow: {ended.name} stopped unexpectedly (exit status {ended.process.returncode}); "
                         "stopped the other components\n")
        return 1

    def stop(self) -> None:
        """SIGTERM every component's group, wait up to the grace period, then SIGKILL what is left."""
        for component in self.components:
            _signal_group(component, signal.SIGTERM)
        for process in descendants():  # a task in a group of its own, an orphan
            with contextlib.suppress(psutil.Error):
                process.terminate()
        deadline = time.monotonic() + self.grace_seconds
        while time.monotonic() < deadline and self._reap():
            time.sleep(_POLL_SECONDS)
        for component in self.components:
            _signal_group(component, signal.SIGKILL)
        for process in descendants():
            with contextlib.suppress(psutil.Error):
                process.kill()
        for component in self.components:
            component.process.wait()
        while self._reap():
            time.sleep(_POLL_SECONDS)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_signal = signum

    def _wait_for_first_exit(self) -> Component | None:
        while self._stop_signal is None:
            for component in self.components:
                if component.process.poll() is None or component.reported:
                    continue
                if not component.redundant or not any(
                        c.redundant and c.process.poll() is None for c in self.components):
                    return component
                component.reported = True
                sys.stderr.write(f"cme airflow: {component.name} stopped unexpectedly (exit status "
                                 f"{component.process.returncode}); the others take over its tasks\n")
                sys.stderr.flush()
            self._reap()
            time.sleep(_POLL_SECONDS)
        return None

    def _reap(self) -> list[psutil.Process]:
        """Collect exited orphans re-parented to us (components are reaped by their Popen);
        return the descendants still alive."""
        ours = {c.process.pid for c in self.components}
        for component in self.components:
            component.process.poll()
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process().children():
                if child.pid not in ours and child.status() == psutil.STATUS_ZOMBIE:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(child.pid, os.WNOHANG)
        return descendants()


def _signal_group(component: Component, sig: int) -> None:
    # The group id is the leader's pid; it stays valid while any member lives, even after the
    # leader itself has been reaped.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(component.process.pid, sig)

