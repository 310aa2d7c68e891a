"""Fuzzing the readers of untrusted files: the delivery reader (strict parse and whole intake) and
the readers of ``cme link``.

Each reader, given random or mutated bytes, either accepts well-formed input or rejects it with
the project's error: one line, naming no value of the input. Never another exception, never a
half-written store or output file.

The whole-intake tests (sealing with the LA's receiving keys, then opening: signature, one-time key,
decryption) run once per key store, ``[file]`` and ``[pkcs11]``. The parser and ``cme link``
tests run once: they read bytes and never open a key store, so the backend cannot change them.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fixtures_hostile import leaked, mutated, one_line
from fixtures_matching import background_people
from fixtures_quality import EXTRACT_DATE, LA, YEAR
from hypothesis import HealthCheck, example, given, settings
from hypothesis import event as _event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from softhsm import use_keystore

from cme_pipeline.cli import main
from cme_pipeline.commands.link import read_people
from cme_pipeline.config import Settings, load_settings
from cme_pipeline.crypto.boundary import MAGIC
from cme_pipeline.errors import DeliveryRejected, UsageError
from cme_pipeline.home import open_home
from cme_pipeline.la.intake import REJECTION_SUFFIX, DeliveryQuarantined, open_delivery_file
from cme_pipeline.quality.extract_csv import parse_extract
from cme_pipeline.schemas import CANONICAL_PERSON, HEALTH_EXTRACT, LINK_PAIRS
from cme_pipeline.simulate import simulate_la
from cme_pipeline.simulate.package import package_extract

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_SIM = simulate_la(LA, children=6, seed=11, year_start=YEAR)
GOOD_FRAME = _SIM.extract[list(HEALTH_EXTRACT)].reset_index(drop=True)
GOOD = GOOD_FRAME.to_csv(index=False, lineterminator="\n").encode()
GOOD_CELLS = tuple(sorted({v for v in GOOD_FRAME.to_numpy().ravel() if v}))


def event(outcome: str) -> None:
    """Count an outcome for ``--hypothesis-show-statistics`` (both branches must be exercised)."""
    if currently_in_test_context():
        _event(outcome)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _check_rejection(exc: DeliveryRejected, data: bytes) -> None:
    """The rejection is one line, and neither it nor its ledger details quote the input."""
    message = str(exc)
    assert one_line(message), message
    assert not leaked(message, _text(data), GOOD_CELLS), message
    details = json.dumps(getattr(exc, "details", {}), ensure_ascii=False)
    assert not leaked(details, _text(data), GOOD_CELLS), details


def _parse_or_reject(data: bytes) -> pd.DataFrame | None:
    try:
        frame = parse_extract(data)
    except DeliveryRejected as exc:
        _check_rejection(exc, data)
        event(f"rejected {exc.check}")
        return None
    event("accepted")
    assert tuple(frame.columns) == HEALTH_EXTRACT
    assert all(isinstance(v, str) for v in frame.to_numpy().ravel())
    return frame


# -- the strict parse ----------------------------------------------------------------------------


def test_the_good_file_parses_exactly() -> None:
    frame = _parse_or_reject(GOOD)
    assert frame is not None and frame.equals(GOOD_FRAME.astype(object))


@FAST
@given(st.binary(max_size=3000))
@example(b"")
@example(b"\x00")
@example(b'"')
@example(b"\xef\xbb\xbf")
def test_parse_of_random_bytes_accepts_or_rejects_cleanly(data: bytes) -> None:
    _parse_or_reject(data)


@FAST
@given(mutated(GOOD))
def test_parse_of_a_mutated_extract_accepts_or_rejects_cleanly(data: bytes) -> None:
    _parse_or_reject(data)


@FAST
@given(st.data())
def test_parse_of_a_headerless_extract_never_echoes_its_first_row(data: st.DataObject) -> None:
    # A file without its header: the first data row is read as the header. Cells that repeat in
    # that row (a town that is also the LA's name, a forename equal to a surname) are values.
    value = data.draw(st.sampled_from(GOOD_CELLS))
    row = list(GOOD_FRAME.iloc[0])
    i, j = data.draw(st.lists(st.integers(0, len(row) - 1), min_size=2, max_size=2, unique=True))
    row[i] = row[j] = value
    body = io.StringIO()
    csv.writer(body, lineterminator="\n").writerow(row)
    _parse_or_reject(body.getvalue().encode())


_CELL = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12) | st.sampled_from(
    ['=HYPERLINK("http://x","y")', "'; DROP TABLE pupils;--", "<script>alert(1)</script>",
     "\u202eevil", "a\nb", 'say "hi"', " ", "\ufeff", "x" * 255]
)


@FAST
@given(st.lists(st.lists(_CELL, min_size=len(HEALTH_EXTRACT), max_size=len(HEALTH_EXTRACT)), max_size=6))
def test_parse_reads_back_exactly_what_a_csv_writer_wrote(rows: list[list[str]]) -> None:
    body = io.StringIO()
    writer = csv.writer(body, lineterminator="\r\n")
    writer.writerow(HEALTH_EXTRACT)
    writer.writerows(rows)
    frame = _parse_or_reject(body.getvalue().encode())
    assert frame is not None  # every field is under the length limit: well-formed, so accepted
    # csv writes a row of one empty field as "" ; every row here has 14 fields, so none is lost
    assert frame.to_numpy().tolist() == rows


# -- the whole intake ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, module_keystore_backend: str) -> Iterator[Settings]:
    with pytest.MonkeyPatch.context() as keystore:
        env = use_keystore(keystore, module_keystore_backend)
        yield load_settings(tmp_path_factory.mktemp(f"fuzz-{module_keystore_backend}") / "home", environ=env)


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and "keys" not in p.parts}


def _intake(home: Settings, plaintext: bytes) -> None:
    """Package ``plaintext`` as the partner would, open it, and check nothing is half-done."""
    path = package_extract(home, LA, plaintext, extract_date=EXTRACT_DATE)
    _open_and_check(home, path, plaintext)


def _open_and_check(home: Settings, path: Path, plaintext: bytes) -> None:
    sealed = path.read_bytes()
    before = _files(home.home)
    try:
        try:
            result = open_delivery_file(open_home(home), LA, path, YEAR)
        except DeliveryQuarantined as exc:
            event(f"quarantined {exc.check}")
            _check_rejection(exc, plaintext)
            after = _files(home.home)
            note = exc.quarantined.with_name(exc.quarantined.name + REJECTION_SUFFIX)
            # the delivery moved, byte for byte, to quarantine with a note; nothing else changed
            assert set(before) - set(after) == {path}
            assert set(after) - set(before) == {exc.quarantined, note}
            assert after[exc.quarantined] == sealed
            assert not leaked(after[note].decode(), _text(plaintext), GOOD_CELLS)
            assert all(after[p] == before[p] for p in set(after) & set(before))
        else:
            event("accepted")
            assert _files(home.home) == before  # opening writes nothing
            assert tuple(result.extract.columns) == HEALTH_EXTRACT and result.validation.success
    finally:
        for folder in (home.inbox(LA), home.quarantine(LA)):
            shutil.rmtree(folder, ignore_errors=True)


def test_intake_accepts_the_good_file(home: Settings) -> None:
    _intake(home, GOOD)
    path = package_extract(home, LA, GOOD, extract_date=EXTRACT_DATE)
    assert open_delivery_file(open_home(home), LA, path, YEAR).extract.equals(GOOD_FRAME.astype(object))
    shutil.rmtree(home.inbox(LA))


@SLOW
@given(mutated(GOOD))
@example(GOOD.replace(b"\n", b"\r\n"))
@example(b"\xef\xbb\xbf" + GOOD)
@example(GOOD.split(b"\n", 1)[1])
def test_intake_of_a_mutated_extract_accepts_or_quarantines_cleanly(home: Settings, data: bytes) -> None:
    _intake(home, data)


@SLOW
@given(st.binary(max_size=500))
def test_intake_of_random_bytes_quarantines_cleanly(home: Settings, data: bytes) -> None:
    _intake(home, data)


@SLOW
@given(st.data())
def test_intake_of_a_damaged_delivery_file_quarantines_cleanly(home: Settings, data: st.DataObject) -> None:
    # damage to the sealed file itself (not the plaintext): signature, hash or AEAD catch it
    path = package_extract(home, LA, GOOD, extract_date=EXTRACT_DATE)
    blob = path.read_bytes()
    path.write_bytes(data.draw(mutated(blob, most=2)))
    if path.read_bytes() == blob:
        shutil.rmtree(home.inbox(LA))
        return
    _open_and_check(home, path, GOOD)


FORGED_HEADERS = {
    "deep nesting": b"[" * 200_000,
    "length past the end": b"{",
    "list": b"[]",
    "wrong types": b'{"manifest": {"delivery_id": {"x": [1]}}, "signature": 5}',
    "not utf-8": b'{"manifest": "\xff\xfe"}',
}


@pytest.mark.parametrize("case", list(FORGED_HEADERS), ids=list(FORGED_HEADERS))
def test_intake_of_a_forged_delivery_header_quarantines_cleanly(home: Settings, case: str) -> None:
    header = FORGED_HEADERS[case]
    declared = len(header) + (1000 if case == "length past the end" else 0)
    home.inbox(LA).mkdir(parents=True, exist_ok=True)
    path = home.inbox(LA) / "D20261001-W06000015-00000000.cmedelivery"
    path.write_bytes(MAGIC + struct.pack(">I", declared) + header + b"ciphertext")
    _open_and_check(home, path, b"")


# -- the readers of `cme link` -----------------------------------------------------------------

PEOPLE = pd.DataFrame(
    {
        "record_id": [f"p{i}" for i in range(len(GOOD_FRAME))],
        "forename": GOOD_FRAME["forename"],
        "middle_names": GOOD_FRAME["middle_names"],
        "surname": GOOD_FRAME["surname"],
        "dob": GOOD_FRAME["dob"],
        "sex": GOOD_FRAME["sex"],
        "address": GOOD_FRAME["address_line1"] + ", " + GOOD_FRAME["address_line2"],
        "postcode": GOOD_FRAME["postcode"],
    }
)[list(CANONICAL_PERSON)]
PEOPLE_CSV = PEOPLE.to_csv(index=False, lineterminator="\n").encode()
PEOPLE_CELLS = tuple(sorted({v for v in PEOPLE.drop(columns="record_id").to_numpy().ravel() if v}))


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cme-fuzz-") as name:
        yield Path(name)


def _read_or_reject(data: bytes) -> None:
    with _scratch() as folder:
        path = folder / "in.csv"
        path.write_bytes(data)
        try:
            frame = read_people(path, "LEFT")
        except UsageError as exc:
            event("rejected")
            assert one_line(str(exc)), str(exc)
            assert not leaked(str(exc).replace(str(path), ""), _text(data), PEOPLE_CELLS), str(exc)
            return
    event("read")
    assert "record_id" in frame.columns and set(frame.columns) <= set(CANONICAL_PERSON)
    assert not frame.columns.duplicated().any()
    ids = frame["record_id"]
    assert ids.map(lambda v: isinstance(v, str) and v.strip() != "").all() and ids.is_unique
    assert all(isinstance(v, str) for v in frame.to_numpy().ravel())


@FAST
@given(st.binary(max_size=2000) | st.binary(max_size=2000).map(lambda b: b"record_id,forename,dob\n" + b))
@example(b"record_id\n")
@example(b"record_id,Record_ID\n1,2\n")
@example(b"record_id,forename,FORENAME\n1,a,b\n")
def test_link_reader_on_random_bytes_reads_or_rejects_cleanly(data: bytes) -> None:
    _read_or_reject(data)


@FAST
@given(mutated(PEOPLE_CSV))
def test_link_reader_on_a_mutated_file_reads_or_rejects_cleanly(data: bytes) -> None:
    _read_or_reject(data)


def _cme_link(folder: Path, left: bytes, right: bytes) -> tuple[int, str, Path]:
    (folder / "left.csv").write_bytes(left)
    (folder / "right.csv").write_bytes(right)
    out = folder / "pairs.csv"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["--home", str(folder / "home"), "link", str(folder / "left.csv"),
                     str(folder / "right.csv"), "--out", str(out)])
    return code, err.getvalue(), out


def _check_link_outcome(code: int, err: str, out: Path, inputs: bytes) -> None:
    assert "Traceback" not in err
    event(f"exit {code}")
    if code == 0:
        pairs = pd.read_csv(out, dtype={"left_id": str, "right_id": str}, keep_default_na=False)
        assert tuple(pairs.columns) == LINK_PAIRS
        assert pairs["probability"].between(0, 1).all() and set(pairs["band"]) <= {"match", "possible"}
        matches = pairs[pairs["band"] == "match"]
        assert matches["left_id"].is_unique and matches["right_id"].is_unique
    else:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("cme link: "), err
        assert not leaked(lines[0].replace(str(out.parent), ""), _text(inputs), PEOPLE_CELLS), err
        assert not out.exists()


@SLOW
@given(mutated(PEOPLE_CSV), mutated(PEOPLE_CSV))
@example(PEOPLE_CSV, PEOPLE_CSV)
def test_cme_link_in_process_on_mutated_files(left: bytes, right: bytes) -> None:
    with _scratch() as folder:
        code, err, out = _cme_link(folder, left, right)
        _check_link_outcome(code, err, out, left + right)


CLI_CASES = {
    "good": (PEOPLE_CSV, PEOPLE_CSV),
    "binary": (bytes(range(256)) * 4, PEOPLE_CSV),
    "utf16": (PEOPLE_CSV.decode().encode("utf-16"), PEOPLE_CSV),
    "no record_id": (PEOPLE_CSV.replace(b"record_id", b"id", 1), PEOPLE_CSV),
    "unterminated quote": (PEOPLE_CSV, PEOPLE_CSV + b'"p99,Ann\n'),
}


@pytest.mark.parametrize("case", list(CLI_CASES), ids=list(CLI_CASES))
def test_cme_link_command_exits_cleanly(case: str, tmp_path: Path) -> None:
    left, right = CLI_CASES[case]
    (tmp_path / "left.csv").write_bytes(left)
    (tmp_path / "right.csv").write_bytes(right)
    out = tmp_path / "pairs.csv"
    cme = Path(sys.executable).with_name("cme")
    proc = subprocess.run(
        [str(cme), "--home", str(tmp_path / "home"), "link", "left.csv", "right.csv", "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )
    if case == "good":
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode != 0
    _check_link_outcome(proc.returncode, proc.stderr, out, left + right)


def test_a_headerless_extract_whose_first_row_repeats_a_value_is_not_echoed() -> None:
    # found by the fuzzer: "repeated column(s) Cardiff" quoted a town from the first data row
    row = ["9991922229", "David", "Jack", "Evans", "", "2014-09-29", "M", "38 Stryd Fawr", "Cardiff",
           "Cardiff", "", "CF24 4JW", "W97001", "2017-07-11"]
    with pytest.raises(DeliveryRejected) as caught:
        parse_extract((",".join(row) + "\n").encode())
    assert "Cardiff" not in str(caught.value) and "exact_columns" in str(caught.value)
    with pytest.raises(DeliveryRejected) as caught:
        parse_extract((",".join([*HEALTH_EXTRACT, "dob"]) + "\n").encode())
    assert "repeated column(s) dob" in str(caught.value)


@pytest.mark.parametrize("header", ["record_id,Record_ID", "record_id,record_id", "record_id,forename, FORENAME"])
def test_cme_link_rejects_a_repeated_column(header: str, tmp_path: Path) -> None:
    # found by the fuzzer: Record_ID beside record_id crashed with a traceback
    path = tmp_path / "in.csv"
    path.write_text(header + "\n" + ",".join(["a1"] * (header.count(",") + 1)) + "\n")
    with pytest.raises(UsageError, match="LEFT file repeats the column"):
        read_people(path, "LEFT")


def _small_files_only() -> None:  # pragma: no cover - runs in the child before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))


def test_cme_link_on_a_full_disk_leaves_no_partial_pairs_file(tmp_path: Path) -> None:
    # found by review: the pairs were written in place, so a failed write left 2000 bytes of
    # pairs that looked like a (short) result
    crowd = background_people(300)
    crowd.to_csv(tmp_path / "left.csv", index=False)
    crowd.assign(record_id="R" + crowd["record_id"]).to_csv(tmp_path / "right.csv", index=False)
    cme = Path(sys.executable).with_name("cme")
    proc = subprocess.run(
        [str(cme), "--home", str(tmp_path / "home"), "link", "left.csv", "right.csv", "--out", "pairs.csv"],
        cwd=tmp_path, capture_output=True, text=True, check=False, preexec_fn=_small_files_only,
    )
    assert proc.returncode == 2 and proc.stderr.splitlines()[-1].startswith("cme link: cannot write pairs.csv")
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["left.csv", "right.csv"]
