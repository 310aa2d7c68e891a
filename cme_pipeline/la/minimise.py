"""Minimisation: stage a delivery encrypted, keep only unmatched/possible children, shred the rest.

The steps of ``minimise`` each commit with the delivery's phase, so killing the process at any
point and running again resumes where it stopped and converges to the same retained set:

1. *seal* (one transaction): decrypt the staged rows in memory, check the retained frame
   (``verify_retained``), insert possible/unmatched rows re-encrypted under the retained key,
   delete matched staged rows, record counts; phase ``sealed``. A child held from an earlier
   delivery who is on this one is no longer held twice (``_earlier_records``): matched now, its
   earlier record is deleted as a follow-up finding; retained again, the new record replaces the
   earlier one and takes over the officer's note (and, possible both times, its review id, so
   a reviewer's pack still applies). (The retained key is then rotated, as after any deletion.)
2. *clear*: delete the delivery's remaining staged rows, checkpoint the WAL; phase ``cleared``.
3. *shred*: destroy the delivery's data key, record when; phase ``shredded``.

No key is destroyed before the retained rows it protected are committed under another key.
Only counts and ids are logged.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy.engine import Connection, Engine

from cme_pipeline import evidence
from cme_pipeline.config import Settings
from cme_pipeline.crypto.envelope import create_data_key, data_cipher, destroy_data_key, nhs_tagger
from cme_pipeline.errors import CmeError, KeyUnavailable
from cme_pipeline.home import Home
from cme_pipeline.schemas import (
    FIELDS_ADDED_SINCE_SCHEMA_1,
    HEALTH_EXTRACT,
    MATCH_OUTCOME,
    OUTCOMES,
    RETAINED,
    RETAINED_HEALTH_FIELDS,
)
from cme_pipeline.store import follow_up as fstore
from cme_pipeline.store import retained as rstore
from cme_pipeline.store import staging as sstore
from cme_pipeline.store.register_claims import replace_claims

VerifyRetained = Callable[[pd.DataFrame, frozenset[str]], None]
# The follow-up outcome of an earlier record whose child a later delivery matched to a register
# (la/follow_up.py CHECK_OUTCOMES).
LATER_MATCH_OUTCOME = "matched_later_extract"
LISTED = (*RETAINED, "health_record_id", "delivery_id")


@dataclass(frozen=True)
class MinimiseResult:
    """Counts and key facts of one delivery's minimisation (no personal data)."""

    received: int
    matched: int
    possible: int
    unmatched: int
    retained: int
    data_key_id: str
    key_destroyed_at: str
    retention_expiry: dt.date


# -- record (de)serialisation -------------------------------------------------------------------


def _value(v: Any) -> str | None:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    return v.isoformat() if isinstance(v, dt.date) else str(v)


def seal_fields(row: Mapping[Any, Any], fields: tuple[str, ...]) -> bytes:
    """Serialise the named fields of a record for sealing (JSON; values str or null)."""
    return json.dumps([_value(row.get(f)) for f in fields], ensure_ascii=False, separators=(",", ":")).encode()


def open_fields(plain: bytes, fields: tuple[str, ...]) -> dict[str, str | None]:
    """Inverse of ``seal_fields``.

    A record sealed before a field was added to the contract lacks it: that field reads as null
    (a child retained under extract schema 1 was never marked restricted).
    """
    values = json.loads(plain)
    added = len(fields) - len(values)
    if 0 < added and set(fields[-added:]) <= set(FIELDS_ADDED_SINCE_SCHEMA_1):
        values += [None] * added
    return dict(zip(fields, values, strict=True))


# -- staging -----------------------------------------------------------------------------------


def stage_delivery(home: Home, la_code: str, delivery_id: str, extract: pd.DataFrame) -> int:
    """Encrypt and stage every row of a delivery under a new per-delivery data key.

    Row ``i`` gets ``health_record_id = matching.convert.health_row_ids(n)[i]``. All rows go in
    one transaction, so a crash leaves none or all. Staging a delivery already staged (or
    minimised) is a no-op returning its count; a discarded delivery is staged afresh.

    Args:
        home: the LA's services (store, keys).
        la_code: the LA's ONS code.
        delivery_id: the delivery's id from its manifest.
        extract: ``HEALTH_EXTRACT`` columns, in delivery order.

    Returns:
        The number of rows staged (the delivery's received count).
    """
    from cme_pipeline.matching.convert import health_row_ids

    keys = home.keys
    engine = home.store(la_code)
    with engine.connect() as conn:
        existing = sstore.get_delivery(conn, la_code, delivery_id)
    if existing is not None and existing["phase"] != sstore.DISCARDED:
        return int(existing["received"])
    key_id = create_data_key(keys, la_code, delivery_id)
    cipher = data_cipher(keys, la_code, delivery_id)
    tagger = nhs_tagger(keys, la_code, delivery_id)
    records = extract[list(HEALTH_EXTRACT)].to_dict("records")
    ids = health_row_ids(len(records))
    rows = (
        {
            "health_record_id": rid,
            "nhs_tag": tagger.tag(str(rec["nhs_number"])),
            "ciphertext": cipher.encrypt(rid, seal_fields(rec, HEALTH_EXTRACT)),
        }
        for rid, rec in zip(ids, records, strict=True)
    )
    with engine.begin() as conn:
        sstore.delete_staged(conn, la_code, delivery_id)
        sstore.insert_staged(conn, la_code, delivery_id, rows)
        blank = dict.fromkeys(("run_id", "matched", "possible", "unmatched", "retained", "retention_expiry",
                               "sealed_at", "key_destroyed_at"))
        sstore.put_delivery(conn, la_code, delivery_id, phase=sstore.STAGED, received=len(records),
                            data_key_id=key_id, staged_at=sstore.utc_now(), **blank)
    return len(records)


def _decrypt_staged(home: Home, la_code: str, delivery_id: str, sealed: list[tuple[str, str, bytes]]) -> pd.DataFrame:
    keys = home.keys
    try:
        cipher = data_cipher(keys, la_code, delivery_id)
    except KeyUnavailable:
        raise KeyUnavailable(
            f"LA {la_code}: staged records of delivery {delivery_id} cannot be read: its data key is destroyed"
        ) from None
    records = [open_fields(cipher.decrypt(rid, blob), HEALTH_EXTRACT) for rid, _tag, blob in sealed]
    frame = pd.DataFrame.from_records(records, columns=list(HEALTH_EXTRACT))
    frame.index = pd.Index([rid for rid, _tag, _blob in sealed], name="health_record_id")
    return frame


def load_staged(home: Home, la_code: str, delivery_id: str) -> pd.DataFrame:
    """Decrypt a staged delivery in memory, in ``health_record_id`` order.

    Args:
        home: the LA's services (store, keys).
        la_code: the LA's ONS code.
        delivery_id: the delivery's id.

    Returns:
        ``HEALTH_EXTRACT`` columns, a fresh 0..n-1 index.

    Raises:
        KeyUnavailable: the delivery's data key is destroyed (or it was never staged).
    """
    engine = home.store(la_code)
    with engine.connect() as conn:
        sealed = sstore.select_staged(conn, la_code, delivery_id)
    return _decrypt_staged(home, la_code, delivery_id, sealed).reset_index(drop=True)


def staged_count(home: Home, la_code: str, delivery_id: str) -> int:
    """How many staged rows the delivery still has (0 after minimisation)."""
    engine = home.store(la_code)
    with engine.connect() as conn:
        return sstore.count_staged(conn, la_code, delivery_id)


# -- minimisation ------------------------------------------------------------------------------


def _counts(outcomes: pd.DataFrame, received: int, staged_ids: list[str] | None) -> dict[str, int]:
    missing = [c for c in MATCH_OUTCOME if c not in outcomes.columns]
    if missing:
        raise CmeError(f"match outcomes lack column(s) {', '.join(missing)}")
    bad = ~outcomes["outcome"].isin(OUTCOMES)
    if bad.any():
        raise CmeError(f"match outcomes row {int(bad.to_numpy().argmax()) + 1}: outcome is not one of {', '.join(OUTCOMES)}")
    counts: dict[str, int] = {o: int((outcomes["outcome"] == o).sum()) for o in OUTCOMES}
    if len(outcomes) != received or sum(counts.values()) != received:
        raise CmeError(
            f"counts do not reconcile: received {received}, outcomes {len(outcomes)} "
            f"(matched {counts['matched']} + possible {counts['possible']} + unmatched {counts['unmatched']})"
        )
    ids = outcomes["health_record_id"].astype(str)
    if ids.duplicated().any():
        raise CmeError(f"match outcomes row {int(ids.duplicated().to_numpy().argmax()) + 1}: repeated health_record_id")
    if staged_ids is not None and sorted(ids) != staged_ids:
        raise CmeError("match outcomes do not name exactly the staged records of the delivery")
    return counts


def _result(row: dict[str, Any]) -> MinimiseResult:
    destroyed = row["key_destroyed_at"]
    if destroyed is not None and destroyed.tzinfo is None:  # SQLite returns naive UTC
        destroyed = destroyed.replace(tzinfo=dt.UTC)
    return MinimiseResult(
        received=int(row["received"]), matched=int(row["matched"]), possible=int(row["possible"]),
        unmatched=int(row["unmatched"]), retained=int(row["retained"]), data_key_id=str(row["data_key_id"]),
        key_destroyed_at=destroyed.isoformat() if destroyed is not None else "",
        retention_expiry=row["retention_expiry"],
    )


def _retained_frame(
    staged: pd.DataFrame, outcomes: pd.DataFrame, run_id: str, today: dt.date, settings: Settings
) -> pd.DataFrame:
    keep = outcomes[outcomes["outcome"].isin(("possible", "unmatched"))].set_index("health_record_id")
    frame = staged.loc[list(keep.index), list(RETAINED_HEALTH_FIELDS)].copy()
    frame["outcome"] = keep["outcome"].to_numpy()
    frame["best_probability"] = pd.to_numeric(keep["probability"], errors="coerce").to_numpy()
    # object, not pandas' inferred str dtype: a missing register must stay None (str stores NaN,
    # which PostgreSQL would write into a text column as the string 'NaN').
    frame["best_register"] = pd.Series([_value(v) or None for v in keep["register"]], index=frame.index, dtype=object)
    frame["run_id"] = run_id
    review = today + dt.timedelta(days=settings.review_days)
    frame["retention_expiry"] = [review if o == "possible" else settings.retention_expiry(today) for o in frame["outcome"]]
    frame["best_register_record_id"] = pd.Series(
        [_value(v) or None for v in keep["register_record_id"]], index=frame.index, dtype=object
    )
    return frame


@dataclass(frozen=True)
class _Earlier:
    """The records held from earlier deliveries whose child is on this delivery."""

    matched_now: list[tuple[str, str]]  # (delivery_id, health_record_id) of those this one matched
    replaced: dict[tuple[str, str], str]  # of those retained again -> this delivery's record id
    review_ids: dict[str, str]  # this delivery's record id -> the review id it takes over (possible both times)


def _earlier_records(home: Home, conn: Connection, la_code: str, delivery_id: str, staged: pd.DataFrame,
                     outcomes: pd.DataFrame, today: dt.date) -> _Earlier:
    """Which records held from earlier deliveries this delivery matches now, or retains again.

    The NHS number is compared in memory only, both sides decrypted here; nothing stores it.
    """
    rows = rstore.select_retained(conn, la_code, live_on=today, other_than=delivery_id)
    found = _Earlier([], {}, {})
    if not rows:
        return found
    earlier = _open_retained(home, la_code, rows)
    here = dict(zip(staged["nhs_number"].astype(str), staged.index.astype(str), strict=True))
    outcome_of = dict(zip(outcomes["health_record_id"].astype(str), outcomes["outcome"].astype(str), strict=True))
    for number, old_delivery, old_record, old_outcome, review_id in zip(
            earlier["nhs_number"], earlier["delivery_id"], earlier["health_record_id"], earlier["outcome"],
            earlier["review_id"], strict=True):
        new_record = here.get(str(number)) if number else None
        if new_record is None:
            continue  # not on this extract: still held (moved away, or left the GP list)
        if outcome_of[new_record] == "matched":
            found.matched_now.append((str(old_delivery), str(old_record)))
            continue
        found.replaced[(str(old_delivery), str(old_record))] = new_record
        if old_outcome == "possible" and outcome_of[new_record] == "possible" and isinstance(review_id, str):
            # A reviewer's pack names the review id: the decision still applies to the new record.
            found.review_ids[new_record] = review_id
    return found


def _seal(home: Home, engine: Engine, la_code: str, delivery_id: str, run_id: str,
          outcomes: pd.DataFrame, counts: dict[str, int], verify: VerifyRetained | None, today: dt.date,
          also_claimed: Iterable[tuple[str, str]] = ()) -> None:
    keys = home.keys
    version = rstore.current_version(engine, keys, la_code)
    cipher = rstore.CipherCache(keys, la_code).get(version, delivery_id)
    with engine.begin() as conn:
        staged = _decrypt_staged(home, la_code, delivery_id, sstore.select_staged(conn, la_code, delivery_id))
        frame = _retained_frame(staged, outcomes, run_id, today, home.settings)
        matched_ids = outcomes.loc[outcomes["outcome"] == "matched", "health_record_id"].astype(str)
        matched_numbers = frozenset(str(n) for n in staged.loc[list(matched_ids), "nhs_number"])
        if verify is not None:
            verify(frame[list(RETAINED)].reset_index(drop=True), matched_numbers)  # raises: nothing committed
        del matched_numbers
        earlier = _earlier_records(home, conn, la_code, delivery_id, staged, outcomes, today)
        rows = []
        for rid, rec in zip(frame.index, frame.to_dict("records"), strict=True):
            rows.append({
                "delivery_id": delivery_id, "health_record_id": rid, "run_id": run_id,
                "outcome": rec["outcome"],
                "best_probability": None if pd.isna(rec["best_probability"]) else float(rec["best_probability"]),
                "best_register": rec["best_register"], "best_register_record_id": rec["best_register_record_id"],
                "retention_expiry": rec["retention_expiry"],
                "review_id": (earlier.review_ids.get(rid) or f"RV-{secrets.token_hex(5).upper()}")
                if rec["outcome"] == "possible" else None,
                # No tag: nothing looks a retained child up by NHS number, and a tag under a key
                # that outlives the row would reverse to the number (10^9 candidates).
                "key_version": version, "nhs_tag": "",
                "ciphertext": cipher.encrypt(rid, seal_fields(rec, RETAINED_HEALTH_FIELDS)),
            })
        rstore.delete_retained(conn, la_code, delivery_id=delivery_id)  # a seal that died half-way
        gone = [*earlier.matched_now, *earlier.replaced]
        if gone:
            held_since = fstore.live_children(conn, la_code, today)
            notes = fstore.notes_of(conn, la_code)
            carried = {(delivery_id, new): notes[old] for old, new in earlier.replaced.items() if old in notes}
            # Deleted before the new rows go in: their review ids are taken over (unique), their
            # notes go with them (by cascade) and are written again on the new rows below.
            rstore.delete_retained_keys(conn, la_code, gone)
            fstore.record_resolutions(conn, la_code, [(LATER_MATCH_OUTCOME, held_since[k]) for k in earlier.matched_now],
                                      today)
        rstore.insert_retained(conn, la_code, rows)
        if gone:
            fstore.put_notes(conn, la_code, carried)
            # Written before the commit: a crash after it cannot lose the entry, and the run that
            # resumes an uncommitted seal finds the same records and so the same entry (the ledger
            # writes an identical entry once).
            evidence.record(home.settings, la_code, run_id, "earlier_records", {
                "delivery_id": delivery_id, "matched_now": len(earlier.matched_now),
                "retained_again": len(earlier.replaced)})
        sstore.delete_staged(conn, la_code, delivery_id, set(matched_ids))
        matched = outcomes[outcomes["outcome"] == "matched"]
        replace_claims(conn, la_code, [*zip(matched["register"].astype(str), matched["register_record_id"].astype(str),
                                            strict=True), *also_claimed])  # for the cross-LA check (la/cross_la.py)
        sstore.set_delivery(
            conn, la_code, delivery_id, phase=sstore.SEALED, run_id=run_id, matched=counts["matched"],
            possible=counts["possible"], unmatched=counts["unmatched"], retained=len(rows),
            retention_expiry=home.settings.retention_expiry(today), sealed_at=sstore.utc_now(),
        )
    _hook("sealed")


def _no_crash(point: str) -> None:
    del point


# Test seam: tests/test_minimise_crash.py replaces this in a child process with a function that
# kills the process at the named point ("sealed", "cleared", "key_destroyed", "shredded").
crash_point: Callable[[str], None] = _no_crash


def _hook(point: str) -> None:
    crash_point(point)


def minimise(
    home: Home, la_code: str, delivery_id: str, run_id: str, outcomes: pd.DataFrame,
    verify_retained: VerifyRetained | None = None, today: dt.date | None = None,
    also_claimed: Iterable[tuple[str, str]] = (),
) -> MinimiseResult:
    """Delete matched children's health data, retain the rest re-encrypted, destroy the data key.

    Args:
        home: the LA's services; its settings give the retention and review periods.
        la_code: the LA's ONS code.
        delivery_id: the staged delivery.
        run_id: the run doing this (recorded on retained rows).
        outcomes: ``MATCH_OUTCOME`` columns, one row per staged record.
        verify_retained: called with the plaintext retained frame (``RETAINED`` columns) and the
            matched children's NHS numbers before anything is committed; raising aborts.
        today: the run's date (default: today).
        also_claimed: ``(register, record id)`` of the other register records the matched
            children matched (on a second register); claimed with the outcomes' own.

    Returns:
        Counts, the destroyed data key's id and time, and the unmatched retention expiry.

    Raises:
        CmeError: counts do not reconcile or the delivery is not staged.
    """
    today = today or dt.date.today()
    engine = home.store(la_code)
    with engine.connect() as conn:
        row = sstore.get_delivery(conn, la_code, delivery_id)
        staged_ids = [r[0] for r in sstore.select_staged(conn, la_code, delivery_id)] if row else None
    if row is None or row["phase"] == sstore.DISCARDED:
        raise CmeError(f"LA {la_code}: delivery {delivery_id} is not staged")
    if row["phase"] == sstore.STAGED:
        counts = _counts(outcomes, int(row["received"]), staged_ids)
        _seal(home, engine, la_code, delivery_id, run_id, outcomes, counts, verify_retained, today, also_claimed)
    else:
        counts = _counts(outcomes, int(row["received"]), None)
        if any(counts[o] != row[o] for o in OUTCOMES):
            raise CmeError(f"LA {la_code}: delivery {delivery_id} was minimised with other counts")
    if row["phase"] in (sstore.STAGED, sstore.SEALED):
        # Earlier records the seal deleted (``_earlier_records``) leave ciphertext in pages and WAL
        # until their key goes; also finishes a rotation a crash after the seal left owed.
        rstore.finish_shredding(engine, home.keys, la_code)
    with engine.connect() as conn:
        row = sstore.get_delivery(conn, la_code, delivery_id)
    assert row is not None
    if row["phase"] == sstore.SEALED:
        with engine.begin() as conn:
            sstore.delete_staged(conn, la_code, delivery_id)
            sstore.set_delivery(conn, la_code, delivery_id, phase=sstore.CLEARED)
        sstore.release_deleted_space(engine)
        _hook("cleared")
        row["phase"] = sstore.CLEARED
    if row["phase"] == sstore.CLEARED:
        destroy_data_key(home.keys, la_code, delivery_id)
        _hook("key_destroyed")
        with engine.begin() as conn:
            sstore.set_delivery(conn, la_code, delivery_id, phase=sstore.SHREDDED, key_destroyed_at=sstore.utc_now())
        _hook("shredded")
    with engine.connect() as conn:
        final = sstore.get_delivery(conn, la_code, delivery_id)
    assert final is not None
    result = _result(final)
    if result.received != result.matched + result.possible + result.unmatched or \
            result.retained != result.possible + result.unmatched:
        raise CmeError(f"LA {la_code}: delivery {delivery_id}: counts do not reconcile")
    return result


# -- the retained set ----------------------------------------------------------------------------


def _open_retained(home: Home, la_code: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    ciphers = rstore.CipherCache(home.keys, la_code)
    records = []
    for row in rows:
        cipher = ciphers.get(int(row["key_version"]), row["delivery_id"])
        record: dict[str, Any] = open_fields(
            cipher.decrypt(row["health_record_id"], bytes(row["ciphertext"])), RETAINED_HEALTH_FIELDS
        )
        record.update({k: row[k] for k in ("outcome", "best_probability", "best_register", "run_id",
                                           "retention_expiry", "health_record_id", "delivery_id",
                                           "best_register_record_id", "review_id")})
        records.append(record)
    columns = [*LISTED, "best_register_record_id", "review_id"]
    return pd.DataFrame.from_records(records, columns=columns)


def read_retained(home: Home, la_code: str, *, run_id: str | None = None,
                  outcome: str | None = None, today: dt.date | None = None) -> pd.DataFrame:
    """Retained rows decrypted, with ``best_register_record_id`` and ``review_id`` (for review).

    Rows whose retention has ended (``retention_expiry <= today``) are never returned, purged or
    not.

    Args:
        home: the LA's services (store, keys).
        la_code: the LA's ONS code.
        run_id: only rows retained by this run.
        outcome: only rows with this outcome.
        today: the date to judge expiry by (default: today).
    """
    engine = home.store(la_code)
    with engine.connect() as conn:
        rows = rstore.select_retained(conn, la_code, live_on=today or dt.date.today(), run_id=run_id, outcome=outcome)
    return _open_retained(home, la_code, rows)


def list_retained(home: Home, la_code: str, run_id: str | None = None, today: dt.date | None = None) -> pd.DataFrame:
    """The retained children still within their retention, decrypted, for the CME officer and checks.

    Args:
        home: the LA's services (store, keys).
        la_code: the LA's ONS code.
        run_id: only rows retained by this run (None: all).
        today: the date to judge expiry by (default: today).

    Returns:
        ``RETAINED`` columns plus ``health_record_id`` and ``delivery_id``, ordered by delivery
        and record; ``retention_expiry`` as ``datetime.date``.
    """
    return read_retained(home, la_code, run_id=run_id, today=today)[list(LISTED)]


def rotate_retained_key(home: Home, la_code: str) -> int:
    """Re-seal every retained row under a new retained-key version and destroy the old ones.

    Args:
        home: the LA's services (store, keys).
        la_code: the LA's ONS code.

    Returns:
        The new version.
    """
    engine = home.store(la_code)
    version = rstore.rotate(engine, home.keys, la_code)
    sstore.release_deleted_space(engine)
    return version


def discard_delivery(home: Home, la_code: str, delivery_id: str) -> None:
    """Discard a failed run's work on a delivery: staged and retained rows, then its data key.

    The encrypted delivery file stays in the inbox, so it can be staged again; destroying the
    staged copy's key loses nothing. Retained rows deleted here are made unrecoverable by a
    retained-key rotation (their ciphertext may linger in PostgreSQL pages). Idempotent.

    Args:
        home: the LA's services (store, keys).
        la_code: the LA's ONS code.
        delivery_id: the delivery's id.
    """
    engine = home.store(la_code)
    keys = home.keys
    with engine.begin() as conn:
        row = sstore.get_delivery(conn, la_code, delivery_id)
        sstore.delete_staged(conn, la_code, delivery_id)
        rstore.delete_retained(conn, la_code, delivery_id=delivery_id)
        if row is not None:
            sstore.set_delivery(conn, la_code, delivery_id, phase=sstore.DISCARDED)
    sstore.release_deleted_space(engine)
    destroy_data_key(keys, la_code, delivery_id)
    if row is not None and row["key_destroyed_at"] is None:
        with engine.begin() as conn:
            sstore.set_delivery(conn, la_code, delivery_id, key_destroyed_at=sstore.utc_now())
    rstore.finish_shredding(engine, keys, la_code)
