"""Subject access requests (UK GDPR Art. 15) about the health data the LA received for CME.

A request names a child by NHS number, or by forename, surname, date of birth and postcode; it
is searched for, exactly after normalisation, among the children the LA still holds (retained
and `possible`). Anything else gets one answer, the same for every child: no data is held, and
here is when each delivery's data was deleted. It must be the same, because a child deleted as
matched and a child never delivered leave the same trace (none) and the LA cannot and must not
tell them apart. Nothing about another child is ever shown: not a near miss, not the register
record a `possible` match resembles.

The request is read from a file or stdin, never the command line (shell history, ``ps``), and
kept only in memory; its details reach no log, exception message or ledger entry.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import sys
import tomllib
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from cme_pipeline import nhs_number
from cme_pipeline.areas import LA_NAMES
from cme_pipeline.crypto import signing
from cme_pipeline.errors import CmeError, UsageError
from cme_pipeline.evidence import certificate, files
from cme_pipeline.evidence.ledger import processed_deliveries
from cme_pipeline.home import Home
from cme_pipeline.la import follow_up
from cme_pipeline.la.intake import REJECTION_SUFFIX
from cme_pipeline.la.minimise import read_retained
from cme_pipeline.runs import waiting_deliveries
from cme_pipeline.schemas import RETAINED_HEALTH_FIELDS

Route = Literal["nhs_number", "demographics"]
FIELDS = ("nhs_number", "forename", "surname", "dob", "postcode")
DEMOGRAPHICS = ("forename", "surname", "dob", "postcode")
MAX_REQUEST_BYTES = 64 * 1024  # a request is five short lines; more is the wrong file
_POSTCODE = re.compile(r"[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}")
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|&#!~])")
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# (outcome code, day) of the officer's latest follow-up note on a retained child, or None.
NoteLookup = Callable[[Home, str, str, str], tuple[str, dt.date] | None]

_LABELS = {
    "nhs_number": "NHS number", "forename": "Forename", "middle_names": "Middle names", "surname": "Surname",
    "former_surname": "Former surname", "dob": "Date of birth", "sex": "Sex", "address_line1": "Address line 1",
    "address_line2": "Address line 2", "address_line3": "Address line 3", "address_line4": "Address line 4",
    "postcode": "Postcode", "gp_practice_code": "GP practice code",
    "registration_date": "Registered with the GP practice on",
    "restricted": "Restricted (NHS sensitive record)",
    "previous_postcode": "Postcode of the previous address",
}
_WHY = {
    "unmatched": "The child was in the delivery but was not found on any of the local authority's education "
                 "registers, so the CME officer keeps this record to find out whether the child is receiving "
                 "a suitable education.",
    "possible": "A record on one of the local authority's education registers may be this child, but not "
                "certainly. An officer will compare the two: if they are the same child, this record is "
                "deleted; if not, it is kept for the CME officer's enquiries.",
}


class AmbiguousRequest(UsageError):
    """The details match children of more than one NHS number: answering could show another child."""


@dataclass(frozen=True)
class SubjectRequest:
    """One request's details, normalised; its repr shows the route only (it may reach a log)."""

    nhs_number: str | None = None
    forename: str | None = None
    surname: str | None = None
    dob: dt.date | None = None
    postcode: str | None = None

    @property
    def route(self) -> Route:
        """How the child is looked for."""
        return "nhs_number" if self.nhs_number is not None else "demographics"

    def __repr__(self) -> str:
        return f"SubjectRequest(route={self.route!r})"


@dataclass(frozen=True)
class DeliveryDeletion:
    """One processed delivery, as its signed deletion certificate states it (no personal data)."""

    delivery_id: str
    extract_date: str  # "unknown" when the ledger does not say
    deleted_on: dt.date  # the day the delivery's data key was destroyed
    kept_until: str  # retention end of the children kept for follow-up


@dataclass(frozen=True)
class SarAnswer:
    """The answer to give, and whether a record was held."""

    held: bool
    text: str
    route: Route
    records: int = 0

    def __repr__(self) -> str:  # the text holds the child's record when held
        return f"SarAnswer(held={self.held}, route={self.route!r}, records={self.records})"


# -- reading a request ----------------------------------------------------------------------------


def read_request(source: str | Path) -> SubjectRequest:
    """Read a request from a small TOML or ``key = value`` file, or from stdin (``"-"``).

    Fields: ``nhs_number``, or all of ``forename``, ``surname``, ``dob`` (YYYY-MM-DD) and
    ``postcode``; not both. Errors name the field or line, never a value or the file's name
    (an officer may name the file after the child).

    Args:
        source: the request file, or ``"-"`` for stdin.

    Raises:
        UsageError: the file is missing, unreadable, or a field is missing, unknown or malformed.
    """
    if str(source) == "-":
        text = sys.stdin.read(MAX_REQUEST_BYTES + 1)
        if len(text.encode("utf-8", errors="replace")) > MAX_REQUEST_BYTES:
            raise UsageError("the request is too large for a subject access request")
    else:
        path = Path(source)
        if not path.is_file():
            raise UsageError("the --request file does not exist or is not a file")
        if path.stat().st_size > MAX_REQUEST_BYTES:
            raise UsageError("the --request file is too large for a subject access request")
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise UsageError("the request is not UTF-8 text") from None
        except OSError:
            raise UsageError("the --request file cannot be read") from None
    return parse_request(text)


def parse_request(text: str) -> SubjectRequest:
    """Parse and check a request's text (TOML, or plain ``key = value`` lines).

    Raises:
        UsageError: as ``read_request``.
    """
    try:
        raw: Mapping[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        raw = _key_values(text)
    if any(k not in FIELDS for k in raw):
        # The unknown key itself is not echoed: a malformed line may hold a name.
        raise UsageError(f"the request has a field that is not one of {', '.join(FIELDS)}")
    values = {k: _text(k, v) for k, v in raw.items()}
    values = {k: v for k, v in values.items() if v}
    if "nhs_number" in values:
        if set(values) & set(DEMOGRAPHICS):
            raise UsageError("give nhs_number, or forename, surname, dob and postcode, not both")
        return SubjectRequest(nhs_number=_nhs_number(values["nhs_number"]))
    missing = [k for k in DEMOGRAPHICS if k not in values]
    if missing:
        raise UsageError(f"the request lacks {', '.join(missing)} "
                         "(give nhs_number, or all of forename, surname, dob and postcode)")
    return SubjectRequest(forename=fold_name(values["forename"]), surname=fold_name(values["surname"]),
                          dob=_dob(values["dob"]), postcode=_postcode(values["postcode"]))


def _key_values(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"request line {number} is not field = value")
        if key in out:
            raise UsageError(f"request line {number}: a field is given twice")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key] = value
    return out


def _text(name: str, value: object) -> str:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime) and name == "dob":
        return value.isoformat()  # TOML's own date type
    if isinstance(value, int) and not isinstance(value, bool) and name == "nhs_number":
        return str(value)  # an unquoted TOML number
    if not isinstance(value, str):
        raise UsageError(f"{name} in the request must be text")
    return value.strip()


def _nhs_number(value: str) -> str:
    digits = value.replace(" ", "").replace("-", "")
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        raise UsageError("nhs_number in the request must be ten digits (spaces and hyphens allowed)")
    if not nhs_number.is_valid(digits):
        raise UsageError("nhs_number in the request fails the NHS number check digit: check it was copied correctly")
    return digits


def _dob(value: str) -> dt.date:
    try:
        if len(value) != 10:
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UsageError("dob in the request must be a date written YYYY-MM-DD") from None


def _postcode(value: str) -> str:
    code = normalise_postcode(value)
    if not _POSTCODE.fullmatch(code):
        raise UsageError("postcode in the request is not a UK postcode")
    return code


def fold_name(value: str) -> str:
    """A name compared case-, space- and diacritic-insensitively (Siân ap Rhys == SIAN APRHYS)."""
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c) and not c.isspace()).casefold()


def normalise_postcode(value: str) -> str:
    """Upper case, all spaces removed."""
    return "".join(value.split()).upper()


# -- finding the child ------------------------------------------------------------------------------


def find_records(retained: pd.DataFrame, request: SubjectRequest) -> pd.DataFrame:
    """The retained rows that are the requested child: every detail equal after normalisation.

    Args:
        retained: decrypted retained rows (``read_retained``).
        request: the request.

    Raises:
        AmbiguousRequest: the demographics match rows of more than one NHS number.
    """
    def texts(column: str) -> list[str]:
        return ["" if not isinstance(v, str) else v for v in retained[column]]

    if request.route == "nhs_number":
        hits = [nhs_number.normalise(v) == request.nhs_number for v in texts("nhs_number")]
    else:
        assert request.dob is not None
        hits = [fold_name(f) == request.forename and fold_name(s) == request.surname
                and d == request.dob.isoformat() and normalise_postcode(p) == request.postcode
                for f, s, d, p in zip(texts("forename"), texts("surname"), texts("dob"), texts("postcode"),
                                      strict=True)]
    found = retained.loc[pd.Series(hits, index=retained.index, dtype=bool)] if len(retained) else retained
    if found["nhs_number"].nunique() > 1:
        raise AmbiguousRequest("the details match more than one child's record: ask the requester for "
                               "the child's NHS number and answer by that")
    return found


# -- the LA-wide facts every answer shows -----------------------------------------------------------


def deletions(home: Home, la_code: str) -> list[DeliveryDeletion]:
    """Every processed delivery and when its data was deleted, from the signed certificates.

    Raises:
        CmeError: a certificate's signature or content is wrong (no answer rests on it).
    """
    settings = home.settings
    extract_dates = processed_deliveries(settings, la_code)
    folder = files.certificates_dir(settings, la_code)
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        body = certificate.read_certificate(path)
        if not signing.verify(home.keys, la_code, certificate.signed_payload(body), str(body.get("signature"))):
            raise CmeError(f"{la_code} certificate {path.name}: signature invalid; run cme evidence verify")
        facts = body.get("facts") or {}
        try:
            deleted = dt.datetime.fromisoformat(str(facts["data_key_destroyed_at"])).astimezone(dt.UTC).date()
            delivery_id = str(facts["delivery_id"])
            kept_until = dt.date.fromisoformat(str(facts["retention_expiry"])).isoformat()
        except (KeyError, ValueError, TypeError):
            raise CmeError(f"{la_code} certificate {path.name}: lacks a delivery or deletion date") from None
        out.append(DeliveryDeletion(delivery_id, extract_dates.get(delivery_id, "unknown"), deleted, kept_until))
    return sorted(out, key=lambda d: (d.deleted_on, d.delivery_id))


def _unprocessed(home: Home, la_code: str) -> tuple[int, int]:
    """(delivery files waiting in the inbox, refused ones held unopened in quarantine)."""
    folder = home.settings.quarantine(la_code)
    quarantined = [p for p in folder.iterdir() if not p.name.endswith(REJECTION_SUFFIX)] if folder.is_dir() else []
    return len(waiting_deliveries(home.settings, la_code)), len(quarantined)


# -- the answer -------------------------------------------------------------------------------------


def answer(home: Home, la_code: str, request: SubjectRequest, today: dt.date, *,
           note_of: NoteLookup = follow_up.note_of) -> SarAnswer:
    """The answer the LA can honestly give to one request.

    Args:
        home: the LA's services (store, keys, evidence).
        la_code: the LA's ONS code.
        request: the request (``read_request``).
        today: the day answered (records whose retention ended are not held).
        note_of: the officer's latest follow-up note on a retained child (code, day) or None.

    Raises:
        AmbiguousRequest: the demographics match more than one child.
        CmeError: a deletion certificate is not genuine.
    """
    found = find_records(read_retained(home, la_code, today=today), request)
    facts = _LaFacts(deletions(home, la_code), *_unprocessed(home, la_code), home.settings.quarantine_days)
    head = ["# Subject access request: health data used to find children missing education", "",
            f"Local authority: {LA_NAMES.get(la_code, la_code)} ({la_code})  ", f"Answered on: {today.isoformat()}"]
    if found.empty:
        lines = [*head, "", *_SCOPE, "", *_not_held(), "", *_deliveries(facts, held=False)]
        return SarAnswer(False, "\n".join(lines) + "\n", request.route)
    extract_dates = {d.delivery_id: d.extract_date for d in facts.deliveries}
    # A random reference: a held answer's hash in the ledger cannot be recomputed from the record.
    head[-1] += "  "
    lines = [*head, f"Answer reference: SAR-{secrets.token_hex(6).upper()}", "", *_SCOPE, "",
             "## Answer: we hold data about this child", "",
             f"We hold {_count(len(found), 'record')} about this child, shown below exactly as we hold "
             f"{'it' if len(found) == 1 else 'them'}.", ""]
    for number, (_, row) in enumerate(found.sort_values(["delivery_id", "health_record_id"]).iterrows(), start=1):
        lines += _record(home, la_code, number, row, extract_dates, note_of)
    lines += _deliveries(facts, held=True)
    return SarAnswer(True, "\n".join(lines) + "\n", request.route, len(found))


@dataclass(frozen=True)
class _LaFacts:
    deliveries: list[DeliveryDeletion]
    waiting: int
    quarantined: int
    quarantine_days: int


_SCOPE = [
    "This answer covers the health data the local authority receives from the NHS (extracts of GP "
    "registrations of children of compulsory school age) to find children who may be missing education. "
    "It does not cover the local authority's own education records (school census, education other than "
    "at school, elective home education, and the children missing education register, to which the CME "
    "officer adds a child found missing education), which are answered separately.",
]


def _not_held() -> list[str]:
    return [
        "## Answer: we hold no data about this child", "",
        "We searched all the health data we hold for the details given in the request and found none "
        "about this child.", "",
        "We cannot tell you whether the child was ever in a delivery. When a child in a delivery is found on "
        "one of our education registers, their data is deleted at the end of that delivery's run: the key "
        "that encrypted it is destroyed, and nothing about the child is kept, not even the NHS number. So a "
        "child whose data was deleted and a child who was never in a delivery look exactly the same to us, "
        "and every request about a child whose data we do not hold gets this same answer.",
    ]


_REJECTED = (", unless the review finds that the register record is another child: then it is kept for the CME "
             "officer's enquiries for {days} days from the review.")
_PENDING = "yes, an officer has still to decide whether the register record is this child"
_IN = ("If your child was in one of these deliveries and was found on an education register, their data was "
       "deleted on the date shown for that delivery.")
_ALSO_IN = ("We cannot tell whether this child was also in another of these deliveries: if they were, and were "
            "found on an education register then, that delivery's data about them was deleted on the date shown "
            "for it.")


def _deliveries(facts: _LaFacts, *, held: bool) -> list[str]:
    title = "## Deliveries received and when their data was deleted"
    if not facts.deliveries:
        lines = [title, "", "The local authority has not yet processed any delivery of health data."]
    else:
        lines = [title, "",
                 "| Delivery | NHS extract of | Data of children found on a register deleted on "
                 "| Others kept for follow-up until at the latest |",
                 "|---|---|---|---|"]
        lines += [f"| {_code(d.delivery_id)} | {_escape(d.extract_date)} | {d.deleted_on.isoformat()} | {d.kept_until} |"
                  for d in facts.deliveries]
        lines += ["", (_ALSO_IN if held else _IN) + " Children not found on a register were kept for follow-up "
                  "until the date in the last column at the latest, and deleted sooner if a review or the CME "
                  "officer's enquiries resolved them."]
    if facts.waiting or facts.quarantined:
        lines += ["", "## Deliveries not yet searched", "",
                  f"{_count(facts.waiting, 'delivery', 'deliveries')} waiting to be processed and "
                  f"{_count(facts.quarantined, 'refused delivery', 'refused deliveries')} held unopened in "
                  f"quarantine (deleted after {facts.quarantine_days} days) are encrypted and have not been "
                  "read, so they were not searched. You may ask again once they have been processed."]
    return lines


def _record(home: Home, la_code: str, number: int, row: pd.Series, extract_dates: Mapping[str, str],
            note_of: NoteLookup) -> list[str]:
    outcome = str(row["outcome"])
    delivery_id, record_id = str(row["delivery_id"]), str(row["health_record_id"])
    note = note_of(home, la_code, delivery_id, record_id)
    expiry = row["retention_expiry"]
    expiry_text = expiry.isoformat() if isinstance(expiry, dt.date) else str(expiry)
    lines = [f"### Record {number}", "", "| What we hold | Value |", "|---|---|"]
    lines += [f"| {_LABELS.get(name, name)} | {_cell(name, row.get(name))} |" for name in RETAINED_HEALTH_FIELDS]
    lines += [
        "",
        f"- Why we hold it: {_WHY.get(outcome, _escape(outcome))}",
        f"- Where it came from: NHS extract of {_escape(extract_dates.get(delivery_id, 'unknown date'))}, "
        f"delivery {_code(delivery_id)}, processed in run {_code(str(row['run_id']))}.",
        f"- Review pending: {_PENDING if outcome == 'possible' else 'no'}.",
        f"- Latest follow-up note: {_escape(follow_up.OUTCOMES.get(note[0], note[0]))} "
        f"(recorded {note[1].isoformat()})." if note is not None
        else "- Latest follow-up note: none recorded.",
        f"- Held until: {expiry_text}; it is deleted on that day at the latest"
        + (_REJECTED.format(days=home.settings.retention_days) if outcome == "possible" else "."),
        "",
    ]
    return lines


def _cell(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        return "(none held)"
    if name == "nhs_number" and nhs_number.normalise(value):
        return nhs_number.format_334(value)
    return _escape(value)


def _escape(text: str) -> str:
    """Text as Markdown shows it: nothing in it can format, link, break a table or act on a terminal."""
    shown = _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return _MARKDOWN.sub(r"\\\1", shown)


def _code(text: str) -> str:
    """An id as a code span (shown as written), or escaped if it could break out of one."""
    return f"`{text}`" if "`" not in text and not _INVISIBLE.search(text) else _escape(text)


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"

