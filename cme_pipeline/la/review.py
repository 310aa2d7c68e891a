"""Clerical review of `possible` matches: an encrypted review pack, and applying the decisions.

The pack shows each retained `possible` child beside the best candidate register record, with
the matcher's per-field weights, under a random review id (not personal). It is sealed under
the LA's review key, so a copy left on a shared drive is unreadable without the key store.
Decisions come back as ``review_id,decision`` (``match`` or ``no-match``): a confirmed match
is deleted (and the retained key rotated so its ciphertext is unrecoverable), a rejected one
becomes ``unmatched`` with the normal retention period. All or nothing: one bad row applies none.
Each decided pair is also kept for the next runs to learn from, as its agreement levels and the
decision only (``store.decided_pairs``, ``matching.learn``), in the same transaction.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import re
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from cme_pipeline.crypto.envelope import review_cipher
from cme_pipeline.durable import write_atomic
from cme_pipeline.errors import CiphertextInvalid, KeyUnavailable, UsageError
from cme_pipeline.home import Home
from cme_pipeline.la.restricted import withhold
from cme_pipeline.schemas import CANONICAL_PERSON, HEALTH_EXTRACT
from cme_pipeline.store import load_registers
from cme_pipeline.store import retained as rstore
from cme_pipeline.store import staging as sstore
from cme_pipeline.store.decided_pairs import DecidedPair, record_decided_pairs

DECISIONS = ("match", "no-match")
DECISION_COLUMNS = ("review_id", "decision")
PACK_MAGIC = b"CME-REVIEW/2\n"
PACK_SUFFIX = ".cmereview"
PERSON_FIELDS = tuple(c for c in CANONICAL_PERSON if c != "record_id")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?")
# Control characters (C0, DEL, C1) and Unicode bidirectional controls: in a terminal, a
# spreadsheet or a browser they can hide text, reorder a row or rewrite the screen.
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class ReviewResult:
    """Counts of applied decisions (for the evidence ledger)."""

    confirmed_matches: int  # retained rows deleted beyond recovery
    rejected: int  # rows now `unmatched`, kept for the retention period
    kept_for_learning: int = 0  # decided pairs kept as agreement levels for the next runs


def visible(value: object) -> object:
    """Show control and bidirectional-control characters of a text as ``\\uXXXX`` escapes.

    A name is shown to a person exactly as held, except that nothing in it can act on the
    display (an ANSI escape, a right-to-left override). Non-text values pass through.
    """
    if isinstance(value, str) and _INVISIBLE.search(value):
        return _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)
    return value


def escape_formula(value: object) -> object:
    """Defuse a spreadsheet formula: a text cell starting with = + - @ gets a leading apostrophe.

    A plain signed number (a negative weight read back as text) is left alone: a spreadsheet
    reads it as a number, not a formula.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def build_pack(home: Home, la_code: str) -> pd.DataFrame:
    """Every `possible` retained child beside its best candidate, with per-field weights.

    Args:
        home: the LA's services (store, keys).
        la_code: the LA's ONS code.

    Returns:
        One row per review id: ``review_id``, ``register``, ``probability``, ``restricted``,
        ``health_<field>`` and ``register_<field>`` for the canonical person fields, and
        ``weight_<comparison>`` (bits) for each comparison the matcher makes; a restricted
        child's placing fields, on both sides, show ``restricted.WITHHELD``. Plaintext: keep it
        in memory.
    """
    from cme_pipeline import matching
    from cme_pipeline.la.minimise import read_retained

    every = read_retained(home, la_code)
    possible = every[every["outcome"] == "possible"].reset_index(drop=True)
    if possible.empty:
        return pd.DataFrame(columns=["review_id", "register", "probability"])
    engine = home.store(la_code)
    registers = load_registers(engine, la_code)
    # The model is fitted on every retained child (the matched ones no longer exist), which is
    # enough to explain a pair; review ids stand in as record ids so nothing personal keys rows.
    health = matching.health_to_canonical(every[list(HEALTH_EXTRACT)])
    health["record_id"] = every["review_id"].fillna("").to_numpy()
    rows = []
    for source, register in registers.items():
        wanted = possible[possible["best_register"] == source]
        if wanted.empty:
            continue
        canonical = matching.register_to_canonical(register).set_index("record_id", drop=False)
        model = matching.fit_model(health, canonical.reset_index(drop=True))
        for item in wanted.itertuples():
            row: dict[str, object] = {"review_id": item.review_id, "register": source,
                                      "probability": item.best_probability, "restricted": item.restricted}
            mine = health.loc[health["record_id"] == item.review_id].iloc[0]
            row.update({f"health_{f}": mine[f] for f in PERSON_FIELDS})
            if item.best_register_record_id in canonical.index:
                theirs = canonical.loc[str(item.best_register_record_id)]
                row.update({f"register_{f}": theirs[f] for f in PERSON_FIELDS})
                weights = matching.explain(health, canonical.reset_index(drop=True), str(item.review_id),
                                           str(item.best_register_record_id), model=model)
                row.update({f"weight_{c}": round(float(w), 2) for c, w in zip(weights["comparison"], weights["weight"], strict=True)})
            rows.append(row)
    for item in possible[~possible["best_register"].isin(list(registers))].itertuples():
        rows.append({"review_id": item.review_id, "register": item.best_register, "probability": item.best_probability,
                     "restricted": item.restricted})
    # A restricted child's candidate record would place them as well as their own would.
    return withhold(pd.DataFrame(rows).sort_values("review_id").reset_index(drop=True))


def _pack_csv(frame: pd.DataFrame) -> bytes:
    safe = frame.map(escape_formula)
    return safe.to_csv(index=False, lineterminator="\n").encode()


def export_pack(home: Home, la_code: str, out: Path | None = None) -> tuple[Path, int]:
    """Write the encrypted review pack; return its path and how many records it holds.

    The pack is sealed under a key derived from the current retained-key version and says which
    version and when it was exported (both bound into the ciphertext), so it stops opening once
    a rotation follows a deletion, and ``read_pack`` refuses it after the review period.

    Args:
        home: the LA's services (store, keys).
        la_code: the LA's ONS code.
        out: the file to write (default ``la/<code>/reports/review-<UTC time>.cmereview``).
    """
    frame = build_pack(home, la_code)
    version = rstore.current_version(home.store(la_code), home.keys, la_code)
    exported_on = dt.date.today().isoformat()
    header = f"{la_code} {version} {exported_on}"
    sealed = PACK_MAGIC + header.encode() + b"\n" + review_cipher(home.keys, la_code, version).encrypt(
        header, _pack_csv(frame))
    if out is None:
        stamp = sstore.utc_now().strftime("%Y%m%dT%H%M%SZ")
        out = home.settings.reports_dir(la_code) / f"review-{stamp}{PACK_SUFFIX}"
    write_atomic(out, sealed)
    return out, len(frame)


def read_pack(home: Home, la_code: str, path: Path, today: dt.date | None = None) -> pd.DataFrame:
    """Decrypt a review pack (cells as exported, formulas already defused).

    Args:
        home: the LA's services (keys; the settings give the review period).
        la_code: the LA whose retained key sealed it.
        path: the pack file.
        today: the date to judge the pack's age by (default: today).

    Raises:
        UsageError: not a pack, older than the review period, or closed by a later rotation.
    """
    blob = path.read_bytes()
    head, _, sealed = blob[len(PACK_MAGIC):].partition(b"\n")
    try:
        sealed_for, version_text, exported_text = head.decode("ascii").split(" ")
        version, exported_on = int(version_text), dt.date.fromisoformat(exported_text)
    except ValueError:
        version = -1
    if not blob.startswith(PACK_MAGIC) or version < 1:
        raise UsageError(f"{path.name} is not a review pack")
    if sealed_for != la_code:
        raise CiphertextInvalid(f"review pack {path.name} was altered or sealed for another LA")
    if ((today or dt.date.today()) - exported_on).days > home.settings.review_days:
        raise UsageError(f"review pack {path.name} is older than the {home.settings.review_days}-day review "
                         "period; export a new one")
    try:
        plain = review_cipher(home.keys, la_code, version).decrypt(head.decode("ascii"), sealed)
    except KeyUnavailable:
        raise UsageError(f"review pack {path.name} was closed: children in it were deleted since it was "
                         "exported; export a new one") from None
    except CiphertextInvalid:
        raise CiphertextInvalid(f"review pack {path.name} was altered or sealed for another LA") from None
    return pd.read_csv(io.BytesIO(plain), dtype=str, keep_default_na=False)


def render_pack(frame: pd.DataFrame, fmt: str = "csv") -> str:
    """The pack as CSV (formula-safe) or as an HTML table (every cell escaped).

    In both, control and bidirectional-control characters are shown as escapes (``visible``).
    """
    shown = frame.map(visible)
    if fmt == "html":
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>\n"
            for row in shown.itertuples(index=False)
        )
        return f"<table>\n<tr>{head}</tr>\n{body}</table>\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(frame.columns)
    writer.writerows(shown.map(escape_formula).itertuples(index=False))
    return buffer.getvalue()


def read_decisions(path: Path) -> pd.DataFrame:
    """Read a decisions CSV (``review_id,decision``), every cell as text."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        raise UsageError(f"{path.name} is not a readable CSV of review_id,decision") from None


def _validated(decisions: pd.DataFrame, awaiting: dict[str, tuple[str, str]]) -> list[tuple[str, str]]:
    if tuple(c.strip().lower() for c in decisions.columns) != DECISION_COLUMNS:
        raise UsageError("decisions must have exactly the columns review_id,decision")
    seen: set[str] = set()
    out = []
    for i, (rid, decision) in enumerate(decisions.itertuples(index=False), start=1):
        rid, decision = str(rid).strip(), str(decision).strip().lower()
        if decision not in DECISIONS:
            raise UsageError(f"decisions row {i}: decision must be match or no-match")
        if rid not in awaiting:
            raise UsageError(f"decisions row {i}: review_id is not a possible match awaiting review")
        if rid in seen:
            raise UsageError(f"decisions row {i}: review_id repeats an earlier row")
        seen.add(rid)
        out.append((rid, decision))
    return out


def _decided_pairs(home: Home, la_code: str, review_ids: set[str], today: dt.date) -> dict[str, DecidedPair]:
    """What the model saw of each review id's pair (agreement levels), without the decision yet.

    Read before the deciding transaction (it decrypts the children concerned, in memory only). A
    pair whose register record has gone since (the register was replaced) has nothing to learn.
    """
    from cme_pipeline import matching
    from cme_pipeline.la.minimise import read_retained

    possible = read_retained(home, la_code, outcome="possible", today=today)
    possible = possible[possible["review_id"].isin(review_ids)].reset_index(drop=True)
    if possible.empty:
        return {}
    health = matching.health_to_canonical(possible[list(HEALTH_EXTRACT)])
    out: dict[str, DecidedPair] = {}
    registers = load_registers(home.store(la_code), la_code)
    for source in sorted(set(possible["best_register"].dropna()) & set(registers)):
        canonical = matching.register_to_canonical(registers[source]).set_index("record_id", drop=False)
        rows = possible.index[(possible["best_register"] == source)
                              & possible["best_register_record_id"].isin(canonical.index)]
        if len(rows) == 0:
            continue
        theirs = canonical.loc[possible.loc[rows, "best_register_record_id"].astype(str)]
        levels = matching.agreement_patterns(health.loc[rows], theirs)
        for row, pattern in zip(rows, levels.itertuples(index=False), strict=True):
            out[str(possible.at[row, "review_id"])] = DecidedPair(
                run_id=str(possible.at[row, "run_id"]), register=source, levels=tuple(int(v) for v in pattern),
                same=False)
    return out


def apply_decisions(home: Home, la_code: str, decisions: pd.DataFrame, today: dt.date) -> ReviewResult:
    """Apply review decisions in one transaction; nothing is applied if any row is bad.

    Args:
        home: the LA's services; its settings give the retention period.
        la_code: the LA's ONS code.
        decisions: ``review_id``, ``decision`` (``match`` | ``no-match``) columns.
        today: the decision date (a rejected match is kept until today + retention days).

    Raises:
        UsageError: a row names an unknown review id or a bad decision (the message gives the row).
    """
    engine = home.store(la_code)
    asked = {str(v).strip() for v in decisions.iloc[:, 0]} if decisions.shape[1] else set()
    seen = _decided_pairs(home, la_code, asked, today)
    with engine.begin() as conn:
        awaiting = rstore.awaiting_review(conn, la_code, today)
        chosen = _validated(decisions, awaiting)
        confirmed = [awaiting[rid] for rid, d in chosen if d == "match"]
        rstore.delete_retained_keys(conn, la_code, confirmed)
        rejected = [rid for rid, d in chosen if d == "no-match"]
        rstore.reject_possible(conn, la_code, rejected, home.settings.retention_expiry(today))
        now = sstore.utc_now()
        rstore.record_decisions(conn, la_code, (
            {"review_id": rid, "delivery_id": awaiting[rid][0], "health_record_id": awaiting[rid][1],
             "decision": d, "decided_at": now}
            for rid, d in chosen
        ))
        learned = record_decided_pairs(conn, la_code, today, (
            replace(seen[rid], same=d == "match") for rid, d in chosen if rid in seen))
    sstore.release_deleted_space(engine)
    rstore.finish_shredding(engine, home.keys, la_code)
    return ReviewResult(confirmed_matches=len(confirmed), rejected=len(chosen) - len(confirmed),
                        kept_for_learning=learned)
