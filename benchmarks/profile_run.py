"""Where a `cme run` spends its CPU: cProfile of one in-process run, or of the cross-LA check alone,
on a copy of a simulated home.

    .venv/bin/python benchmarks/profile_run.py run --home-from /work/bench/wales --la W06000011 [--top 40]
    .venv/bin/python benchmarks/profile_run.py run --home-from /work/bench/wales --la all --workers 2 \
        --no-profile --keep /tmp/ran          # a home whose LAs have run, for the next line
    .venv/bin/python benchmarks/profile_run.py cross-la --home-from /tmp/ran [--no-profile]

`--home-from` holds `home/` and `home.keys/` (as `scale.py wales --keep-home` leaves them); they
are copied to a temporary place first. `run` is `cme run --la CODES --no-cross-la` in this
process (one worker unless `--workers`: then every task runs here and the profile sees them
all); `cross-la` is the check `cme run` does after its runs, alone. Prints wall and CPU (this
process and its children), then the functions with the most cumulative and own time; `--save
FILE` keeps the raw profile for `python -m pstats`. Start-up paid once per process (imports, the
GX context) is in a `run` profile too: profile one LA and then three to tell it from the per-LA
cost.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import shutil
import tempfile
import time
from pathlib import Path


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("run", "cross-la"))
    parser.add_argument("--home-from", type=Path, required=True, help="directory holding home/ and home.keys/")
    parser.add_argument("--la", default="all", help="CODE[,CODE..] or all")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--save", type=Path)
    parser.add_argument("--no-profile", action="store_true", help="time only")
    parser.add_argument("--keep", type=Path, help="copy the home here afterwards (home/ and home.keys/)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cme-profile-") as tmp:
        for name in ("home", "home.keys"):
            shutil.copytree(args.home_from / name, Path(tmp) / name, symlinks=True)
        home = Path(tmp) / "home"
        profile = cProfile.Profile()
        start, cpu = time.perf_counter(), _cpu()
        if not args.no_profile:
            profile.enable()
        try:
            status = _run(args.what, home, args.la, args.workers)
        finally:
            profile.disable()
        wall, used = time.perf_counter() - start, _cpu() - cpu
        if args.keep:
            for name in ("home", "home.keys"):
                shutil.copytree(Path(tmp) / name, args.keep / name, symlinks=True)
    print(f"{args.what} --la {args.la}: exit {status}, {wall:.1f} s wall, {used:.1f} s CPU "
          f"({'not ' if args.no_profile else ''}profiled), load {os.getloadavg()[0]:.2f}")
    if args.no_profile:
        return
    if args.save:
        profile.dump_stats(args.save)
    for key in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(key).print_stats(args.top)
        print(out.getvalue())


def _run(what: str, home: Path, las: str, workers: int) -> int:
    if what == "run":
        from cme_pipeline.cli import main as cme

        return cme(["--home", str(home), "run", "--la", las, "--workers", str(workers), "--no-cross-la"])
    from cme_pipeline.areas import parse_la_codes
    from cme_pipeline.config import load_settings
    from cme_pipeline.home import secure_process
    from cme_pipeline.pipeline.cross_la import run_check

    settings = load_settings(home)
    secure_process(settings)
    results = run_check(settings, parse_la_codes(las))
    print(f"cross-LA check: {sum(r['checked'] for r in results.values())} looked for, "
          f"{sum(r['removed'] for r in results.values())} removed")
    return 0


if __name__ == "__main__":
    main()
