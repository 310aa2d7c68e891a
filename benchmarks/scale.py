"""All-Wales `cme run` speed (median of N) and the large-population run (K x Wales).

    .venv/bin/python benchmarks/scale.py wales --runs 3 [--code DIR] [--counts-out FILE]
    .venv/bin/python benchmarks/scale.py population --multiple K [--runs 1]
    .venv/bin/python benchmarks/scale.py compare --before DIR [--after DIR] [--runs 3] [--la CODES]
    .venv/bin/python benchmarks/scale.py keyops [--children 1000 8000]

`wales` simulates all 22 LAs once (about 440,000 children), copies that home (and its key
directory) afresh for every run, and times `cme run --la all` in a fresh process. `--code DIR`
runs another checkout of the code (e.g. the commit before a change) with this virtualenv, so
"before" and "after" see the same delivered data. `population --multiple K` does the same with
K x 440,000 children split over the 22 LAs (the simulator's LAs are the 22 Welsh ones, so each
grows K-fold).

Peak memory is the largest sum of RSS over `cme run` and all its descendants, sampled every
0.2 s with psutil (a forked worker shares pages with its parent until it writes them, so the sum
over-counts a little). The per-LA counts (received, matched, possible, retained) of every run
are printed and must be identical across runs; `--counts-out` saves them for comparing two
checkouts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
WALES_CHILDREN = 440_000
SUMMARY_ROW = re.compile(r"^(W06\d{6})\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\w+)\s*$")


def _cme(code: Path, home: Path, *args: str) -> list[str]:
    # `python -m` puts the working directory first on sys.path: `code`'s package is the one run.
    return [sys.executable, "-m", "cme_pipeline.cli", "--home", str(home), *args]


class _TreeMemory:
    """The largest summed RSS of a process and all its descendants, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.peak = 0
        self._root = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self._root, *self._root.children(recursive=True)]
            except psutil.Error:
                return
            total = 0
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(0.2)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


_LAST_CPU = [0.0]  # CPU seconds (user + sys) of the last `cme run` and every process it waited for


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _simulate(code: Path, home: Path, children: int | None, las: str = "all") -> float:
    args = ["simulate", "--la", las] + (["--children", str(children)] if children else [])
    start = time.perf_counter()
    done = subprocess.run(_cme(code, home, *args), cwd=code, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"simulate failed: {done.stderr.strip()[-2000:]}")
    return time.perf_counter() - start


def _copy_home(template: Path, target: Path) -> Path:
    """A fresh copy of the simulated home and its key directory (`<home>.keys`, its sibling)."""
    target.mkdir()
    for name in ("home", "home.keys"):
        shutil.copytree(template / name, target / name, symlinks=True)
    return target / "home"


def _run_once(code: Path, home: Path, las: str = "all") -> tuple[float, int, dict[str, list[int]], str]:
    start = time.perf_counter()
    cpu_before = _children_cpu()
    proc = subprocess.Popen(_cme(code, home, "run", "--la", las), cwd=code, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    memory = _TreeMemory(proc.pid)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    peak = memory.stop()
    _LAST_CPU[0] = _children_cpu() - cpu_before
    if proc.returncode != 0:
        sys.exit(f"cme run failed ({proc.returncode}): {err.strip()[-2000:]}")
    counts = {m[1]: [int(m[3]), int(m[4]), int(m[5]), int(m[6])]
              for m in (SUMMARY_ROW.match(line) for line in out.splitlines()) if m and m[7] == "completed"}
    expected = 22 if las == "all" else len(las.split(","))
    if len(counts) != expected:
        sys.exit(f"expected {expected} completed LAs, got {len(counts)}:\n{out}")
    return wall, peak, counts, err


def _task_seconds_per_la(home: Path) -> dict[str, float]:
    """Seconds inside each LA's tasks (Airflow's task durations), over every cme_matching run."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{home / 'airflow' / 'airflow.db'}")
    seconds: dict[str, float] = {}
    try:
        with engine.connect() as conn:
            for run_id, planned in conn.execute(sa.text(
                    "SELECT run_id, value FROM xcom WHERE dag_id='cme_matching' AND task_id='plan'")).all():
                codes = json.loads(planned) if isinstance(planned, str | bytes) else planned
                for map_index, duration in conn.execute(sa.text(
                        "SELECT map_index, duration FROM task_instance WHERE dag_id='cme_matching' AND run_id=:r "
                        "AND task_id LIKE 'per_la.%' AND map_index >= 0"), {"r": run_id}):
                    code = codes[map_index]
                    seconds[code] = seconds.get(code, 0.0) + float(duration or 0)
    finally:
        engine.dispose()
    return seconds


def _fixed_and_per_child(seconds: dict[str, float], counts: dict[str, list[int]]) -> tuple[float, float]:
    """Least-squares line through (children, task seconds) of the LAs: seconds per LA and per child."""
    import numpy as np

    codes = sorted(seconds)
    slope, intercept = np.polyfit([counts[c][0] for c in codes], [seconds[c] for c in codes], 1)
    return float(intercept), float(slope)


def measure(code: Path, runs: int, children: int | None, counts_out: Path | None, label: str,
            kept: Path | None = None) -> None:
    """Simulate once, then `runs` timed `cme run --la all` on fresh copies of the home.

    With `kept`, the simulated home is kept there (simulated by this checkout if it is not there
    yet), so two checkouts measured at different times still see the same delivered data."""
    with tempfile.TemporaryDirectory(prefix="cme-scale-") as tmp:
        template = kept or Path(tmp) / "template"
        total = children or WALES_CHILDREN
        if kept is not None and (kept / "home").exists():
            print(f"{label}: reusing the simulated home in {kept} (code: {code})", flush=True)
        else:
            template.mkdir(exist_ok=True)
            simulated = _simulate(ROOT if kept else code, template / "home", children)
            print(f"{label}: simulated {total:,} children over 22 LAs in {simulated:.1f} s (code: {code})",
                  flush=True)
        walls, peaks, first = [], [], None
        for i in range(runs):
            home = _copy_home(template, Path(tmp) / f"run{i}")
            load = os.getloadavg()[0]
            wall, peak, counts, err = _run_once(code, home)
            walls.append(wall)
            peaks.append(peak)
            if first is None:
                first = counts
            elif counts != first:
                sys.exit(f"run {i + 1}: per-LA counts differ from run 1")
            received = sum(c[0] for c in counts.values())
            print(f"run {i + 1}: {wall:.1f} s wall, {_LAST_CPU[0]:.1f} s CPU, peak RSS (sum over processes) {peak / 2**20:.0f} MiB, "
                  f"{received:,} children ({wall / received * 1e6:.0f} us per child), load before {load:.2f}",
                  flush=True)
            for line in err.splitlines():
                if re.search(r"in \d+s$", line):
                    print(f"  {line.strip()}")
            seconds = _task_seconds_per_la(home)
            fixed, per_child = _fixed_and_per_child(seconds, counts)
            print(f"  in tasks: {sum(seconds.values()):.1f} s over the LAs; fit: {fixed:.2f} s per LA + "
                  f"{per_child * 1e6:.0f} us per child; per LA: "
                  + ", ".join(f"{c} {seconds[c]:.1f} s ({counts[c][0]})" for c in sorted(seconds)), flush=True)
            shutil.rmtree(home.parent)
        assert first is not None
        received = sum(c[0] for c in first.values())
        print(f"{label}: median {statistics.median(walls):.1f} s over {runs} run(s) "
              f"({', '.join(f'{w:.1f}' for w in walls)}); peak RSS {max(peaks) / 2**20:.0f} MiB; "
              f"{received:,} children, {statistics.median(walls) / received * 1e6:.0f} us per child; "
              f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}")
        print("counts (received, matched, possible, retained): "
              + ", ".join(f"{k} {v}" for k, v in sorted(first.items())))
        if counts_out:
            counts_out.write_text(json.dumps(first, indent=1, sort_keys=True))


def key_operations(children: list[int]) -> None:
    """Count key-store calls per method in one LA's `cme run` (one worker) at several sizes.

    The difference between the sizes is the per-child part (the design says none: a key store
    is called per key, never per record); the rest is per LA and run. Each size runs in its own
    process (Airflow binds to one home per process).
    """
    rows: dict[int, dict[str, int]] = {}
    for n in children:
        done = subprocess.run([sys.executable, __file__, "keyops-one", "--children", str(n)],
                              capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            sys.exit(done.stderr[-2000:])
        rows[n] = json.loads(done.stdout.strip().splitlines()[-1])
    for name in sorted({m for r in rows.values() for m in r}):
        print(f"{name:>22}: " + ", ".join(f"{rows[n].get(name, 0)} at {n:,} children" for n in children))
    print("total key-store calls per LA run: "
          + ", ".join(f"{sum(rows[n].values())} at {n:,} children" for n in children))


def _key_operations_one(children: int) -> None:
    from collections import Counter

    from cme_pipeline.cli import main as cme
    from cme_pipeline.config import load_settings
    from cme_pipeline.crypto.keystore import FileKeyStore
    from cme_pipeline.simulate.wales import simulate_to_home

    la = "W06000015"
    calls: Counter[str] = Counter()
    methods = ("exists", "destroy", "names", "create_secret", "derive", "create_signing_key", "sign",
               "create_agreement_key", "agree", "put_public", "public_key")
    originals = {name: getattr(FileKeyStore, name) for name in methods}

    def counting(name: str):  # type: ignore[no-untyped-def]
        def call(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls[name] += 1
            return originals[name](self, *args, **kwargs)
        return call

    with tempfile.TemporaryDirectory(prefix="cme-keyops-") as tmp:
        settings = load_settings(Path(tmp) / "home", environ={})
        simulate_to_home(settings, [la], children=children, seed=7)
        for name in methods:
            setattr(FileKeyStore, name, counting(name))
        status = cme(["--home", str(settings.home), "run", "--la", la, "--workers", "1"])
        if status != 0:
            sys.exit(f"cme run failed ({status})")
    print(json.dumps(dict(calls)))


def compare(before: Path, after: Path, runs: int, las: str = "all") -> None:
    """Before and after on copies of one simulated all-Wales home, alternating, so both see the
    same machine load; the per-LA counts must be identical everywhere."""
    with tempfile.TemporaryDirectory(prefix="cme-compare-") as tmp:
        template = Path(tmp) / "template"
        template.mkdir()
        simulated = _simulate(ROOT, template / "home", None, las)
        print(f"simulated --la {las} in {simulated:.1f} s", flush=True)
        results: dict[str, list[tuple[float, float, int]]] = {"before": [], "after": []}
        first = None
        for i in range(runs):
            for label, code in (("before", before), ("after", after)):
                home = _copy_home(template, Path(tmp) / f"{label}{i}")
                load = os.getloadavg()[0]
                wall, peak, counts, _ = _run_once(code, home, las)
                first = first or counts
                if counts != first:
                    sys.exit(f"{label} run {i + 1}: per-LA counts differ from the first run's")
                seconds = _task_seconds_per_la(home)
                fixed, per_child = _fixed_and_per_child(seconds, counts)
                results[label].append((wall, _LAST_CPU[0], peak))
                print(f"{label} {i + 1}: {wall:.1f} s wall, {_LAST_CPU[0]:.1f} s CPU, peak RSS (sum) "
                      f"{peak / 2**20:.0f} MiB, load before {load:.2f}; in tasks {sum(seconds.values()):.1f} s "
                      f"(fit {fixed:.2f} s per LA + {per_child * 1e6:.0f} us per child)", flush=True)
                shutil.rmtree(home.parent)
        for label, rows in results.items():
            print(f"{label}: median {statistics.median(r[0] for r in rows):.1f} s wall "
                  f"({', '.join(f'{r[0]:.1f}' for r in rows)}), median {statistics.median(r[1] for r in rows):.1f} s CPU, "
                  f"peak RSS {max(r[2] for r in rows) / 2**20:.0f} MiB")
        assert first is not None
        print("identical per-LA counts in every run (received, matched, possible, retained): "
              + ", ".join(f"{k} {v}" for k, v in sorted(first.items())))
        print(f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    w = sub.add_parser("wales")
    w.add_argument("--runs", type=int, default=3)
    w.add_argument("--code", type=Path, default=ROOT, help="checkout whose cme_pipeline runs (default: this one)")
    w.add_argument("--counts-out", type=Path)
    w.add_argument("--keep-home", type=Path, help="simulate into (or reuse) this directory, so runs of two "
                   "checkouts at different times see the same data")
    p = sub.add_parser("population")
    p.add_argument("--multiple", type=float, required=True, help="K: K x 440,000 children over the 22 LAs")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--code", type=Path, default=ROOT)
    p.add_argument("--counts-out", type=Path)
    k = sub.add_parser("keyops")
    k.add_argument("--children", type=int, nargs="+", default=[1000, 8000])
    c = sub.add_parser("compare")
    c.add_argument("--before", type=Path, required=True, help="checkout of the code before the change")
    c.add_argument("--after", type=Path, default=ROOT, help="checkout of the code after it (default: this one)")
    c.add_argument("--runs", type=int, default=3)
    c.add_argument("--la", default="all", help="LA codes to simulate and run (default all 22)")
    one = sub.add_parser("keyops-one")
    one.add_argument("--children", type=int, required=True)
    args = parser.parse_args()
    if args.what == "keyops":
        key_operations(args.children)
    elif args.what == "compare":
        compare(args.before.resolve(), args.after.resolve(), args.runs, args.la)
    elif args.what == "keyops-one":
        _key_operations_one(args.children)
    elif args.what == "wales":
        measure(args.code.resolve(), args.runs, None, args.counts_out, "all-Wales cme run",
                args.keep_home.resolve() if args.keep_home else None)
    else:
        measure(args.code.resolve(), args.runs, int(args.multiple * WALES_CHILDREN), args.counts_out,
                f"{args.multiple:g} x Wales")


if __name__ == "__main__":
    main()
