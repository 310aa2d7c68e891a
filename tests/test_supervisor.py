"""The supervisor `cme airflow` runs its components under, with real child processes.

A service manager's SIGTERM must end every process started, even one that ignores SIGTERM and
one that moved to a session of its own (as Airflow's task processes do); a component that dies
stops the rest with one line naming it, unless it is one of several redundant workers.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

# The supervised program: components given as JSON [name, shell command, redundant]; it prints
# "ready" once they are started, then supervises them.
PROGRAM = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from cme_pipeline.supervisor import Supervisor
    supervisor = Supervisor(grace_seconds=2)
    for name, command, redundant in json.loads(sys.argv[1]):
        supervisor.start(name, ["sh", "-c", command], Path(sys.argv[2]) / name, {"PATH": "/usr/bin:/bin"},
                         redundant=redundant)
    print("ready", flush=True)
    sys.exit(supervisor.run())
""")


def _start(tmp_path: Path, components: list[tuple[str, str, bool]]) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", PROGRAM, json.dumps(components), str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _tree(pid: int, *sleeps: str) -> list[psutil.Process]:
    """The descendants of ``pid`` once a ``sleep`` of each given length runs among them."""
    while True:
        found = _alive(psutil.Process(pid).children(recursive=True))
        try:
            # A process between fork and exec, or exiting, has an empty command line: not yet (or
            # no longer) the sleep we wait for.
            running = {line[-1] for p in found if p.name() == "sleep" and (line := p.cmdline())}
        except psutil.Error:  # one ended while we looked
            continue
        if running >= set(sleeps):
            return found
        psutil.wait_procs([], timeout=0.1)


def test_sigterm_ends_every_process_even_ones_that_ignore_it_or_left_the_group(tmp_path: Path) -> None:
    process = _start(tmp_path, [
        ("plain", "sleep 1000", False),
        # Ignores SIGTERM, and forks a grandchild into a session of its own whose parent then dies.
        ("stubborn", "trap '' TERM; (setsid sleep 1001 &); sleep 1002", False),
    ])
    started = _tree(process.pid, "1000", "1001", "1002")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0  # a fail-safe, not a speed check
    assert not _alive(started), [p.cmdline() for p in _alive(started)]
    assert (tmp_path / "plain").is_dir() and (tmp_path / "plain").stat().st_mode & 0o777 == 0o700


def test_a_component_that_dies_stops_the_rest_with_one_line_naming_it(tmp_path: Path) -> None:
    process = _start(tmp_path, [("api-server", "sleep 1000", False), ("scheduler", "sleep 1; exit 3", False)])
    started = _tree(process.pid, "1000")
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert stderr.splitlines() == ["cme airflow: scheduler stopped unexpectedly (exit status 3); stopped the other components"]
    assert not _alive(started)


def test_one_redundant_worker_dying_leaves_the_rest_running_until_the_last_goes(tmp_path: Path) -> None:
    process = _start(tmp_path, [
        ("scheduler", "sleep 1000", False),
        ("worker1", "sleep 1; exit 9", True),
        ("worker2", "sleep 4; exit 9", True),
    ])
    started = _tree(process.pid, "1000")
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert stderr.splitlines() == [
        "cme airflow: worker1 stopped unexpectedly (exit status 9); the others take over its tasks",
        "cme airflow: worker2 stopped unexpectedly (exit status 9); stopped the other components",
    ]
    assert not _alive(started)
