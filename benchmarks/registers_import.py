"""Benchmark: importing a Cardiff-size school census from CSV and from .xlsx (issue 18).

Writes the simulated Cardiff census (about 57,000 pupils) as a PLASC-style export with legal and
preferred names, split address lines, dd/mm/yyyy dates and four columns of data that must be
dropped, once as Windows-1252 CSV and once as .xlsx; then times, each repeat on a fresh home,
``prepare`` (read, map, clean, check with the registers GX suite) and ``import_register``
(replace in one transaction, ledger entry, signed checkpoint). Prints every repeat, the medians
and the process's peak memory. Usage::

    .venv/bin/python benchmarks/registers_import.py [--repeats 5] [--children N]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from cme_pipeline.config import load_settings
from cme_pipeline.home import close_homes, open_home
from cme_pipeline.la.register_import import import_register, prepare
from cme_pipeline.la.register_mapping import preset
from cme_pipeline.simulate.la import simulate_la

LA = "W06000015"
HEADINGS = ["UPN", "Legal Surname", "Legal Forename", "Preferred Surname", "Preferred Forename", "Middle Names",
            "Date of Birth", "Gender", "Address Line 1", "Town", "Postcode", "LAESTAB", "School Type",
            "Enrolment Status", "Ethnicity", "SEN Provision", "FSM Eligible", "Parent/Carer Name"]


def _rows(census: pd.DataFrame) -> list[list[object]]:
    rows: list[list[object]] = []
    for r in census.itertuples(index=False):
        line1, _, town = (r.address or "").partition(", ")
        dob = dt.date.fromisoformat(r.dob).strftime("%d/%m/%Y")
        rows.append([r.record_id, r.surname, r.forename, r.surname, r.forename, r.middle_names or "", dob,
                     {"M": "Male", "F": "Female"}.get(r.sex, "Unknown"), line1, town, r.postcode or "",
                     r.school_code, r.school_type.title(), r.enrolment_status, "WBRI", "N", "N", "Parent Name"])
    return rows


def write_csv(rows: list[list[object]], path: Path) -> None:
    """The census as a Windows-1252, semicolon-delimited CSV (characters it lacks replaced)."""
    out = io.StringIO(newline="")
    w = csv.writer(out, delimiter=";", lineterminator="\r\n")
    w.writerow(HEADINGS)
    w.writerows(rows)
    path.write_bytes(out.getvalue().encode("cp1252", errors="replace"))


def write_xlsx(rows: list[list[object]], path: Path) -> None:
    """The census as a one-sheet .xlsx (dates of birth as real Excel dates)."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("Pupils")
    sheet.append(HEADINGS)
    for row in rows:
        d, m, y = str(row[6]).split("/")
        sheet.append([*row[:6], dt.datetime(int(y), int(m), int(d)), *row[7:]])
    book.save(path)


def _one(path: Path, root: Path) -> tuple[float, float, int]:
    settings = load_settings(root / "home", environ={"CME_KEYSTORE": f"file:{root / 'keys'}"})
    home = open_home(settings)
    start = time.perf_counter()
    prepared = prepare(path, preset("school_census"))
    middle = time.perf_counter()
    if prepared.problems:
        raise SystemExit("benchmark file refused: " + prepared.problems[0])
    done = import_register(home, LA, prepared, as_of=dt.date.today(), run_id="registers__bench")
    end = time.perf_counter()
    close_homes()
    return middle - start, end - middle, done.rows


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--children", type=int, help="children simulated (default: Cardiff's real size)")
    args = parser.parse_args()
    census = simulate_la(LA, args.children, seed=3).registers["school_census"]
    rows = _rows(census)
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}; python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        files = {"csv": Path(tmp) / "census.csv", "xlsx": Path(tmp) / "census.xlsx"}
        write_csv(rows, files["csv"])
        write_xlsx(rows, files["xlsx"])
        print(f"census rows: {len(rows)}; csv {files['csv'].stat().st_size / 2**20:.1f} MiB, "
              f"xlsx {files['xlsx'].stat().st_size / 2**20:.1f} MiB")
        for kind, path in files.items():
            reads, writes = [], []
            for i in range(args.repeats):
                root = Path(tmp) / f"{kind}-{i}"
                read, write, loaded = _one(path, root)
                reads.append(read)
                writes.append(write)
                print(f"  {kind} repeat {i + 1}: prepare {read:.2f}s, import {write:.2f}s ({loaded} rows)")
            print(f"{kind}: median prepare {statistics.median(reads):.2f}s, import {statistics.median(writes):.2f}s, "
                  f"total {statistics.median(r + w for r, w in zip(reads, writes, strict=True)):.2f}s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (whole process, simulation included): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
