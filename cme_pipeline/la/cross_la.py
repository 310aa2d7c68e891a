"""The cross-LA check: is a child an LA could not find on its own registers on another Welsh LA's?

Once every LA of a round has run, each LA's `unmatched` children are looked for on the other
LAs' registers by privacy-preserving record linkage (docs/cross-la.md):

1. a secret the LAs share for this check only is created in the key store;
2. each LA encodes its unmatched children and those of its register records its own run did not
   match (a matched one is a pupil living here) as hardened Bloom filters (``linkage.encode``)
   under that secret, and those of them with a middle name a second time without the postcode
   (``linkage.middle``), and those of its children with a previous postcode (they moved) a
   second time with that postcode (``linkage.previous``), and gives them to the linkage unit with
   its LA's index, never a record id;
3. the linkage unit (``linkage.unit``, a separate process holding no secret) answers, for each
   child, the LA whose register holds them, if any; nothing about which register record;
4. the secret is destroyed (the encodings, in memory only, go with the process);
5. each LA transfers the children found elsewhere to the LA that holds them (``la/transfers.py``:
   the record sealed into that LA's store, acknowledged there within 28 days) and deletes them
   from its retained list, as a follow-up finding
   ``other_la_register`` (row deleted, retained key rotated), notes those only possibly found
   (``possibly_on_<LA code>``, kept), and records in its ledger how many were found on, or
   possibly on, each other LA's register: LA codes and counts, never a child.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cme_pipeline import evidence
from cme_pipeline.crypto.clk import create_round_secret, destroy_round_secret, token_hasher
from cme_pipeline.home import Home
from cme_pipeline.la import transfers
from cme_pipeline.la.follow_up import POSSIBLE_NOTE
from cme_pipeline.la.minimise import read_retained
from cme_pipeline.linkage import (
    DEFAULT_HOUSEHOLD_THRESHOLD,
    DEFAULT_MIDDLE_THRESHOLD,
    DEFAULT_POSSIBLE_THRESHOLD,
    DEFAULT_RARE_THRESHOLD,
    DEFAULT_THRESHOLD,
    DEFAULT_UNIQUE_THRESHOLD,
    MIDDLE_ENCODING,
    ClkConfig,
    MiddleEncodings,
    PreviousEncodings,
    encode,
    encode_middle,
    encode_previous,
    household_labels,
    rare_names,
    run_linkage_unit,
)
from cme_pipeline.schemas import PREVIOUS_POSTCODE
from cme_pipeline.store import follow_up as fstore
from cme_pipeline.store import retained as rstore
from cme_pipeline.store import staging as sstore
from cme_pipeline.store.register_claims import claimed
from cme_pipeline.store.registers import load_registers

OUTCOME = "other_la_register"  # the follow-up outcome a child found elsewhere is resolved with
MOVED_OUTCOME = "other_la_extract"  # ... and one now on another LA's later GP extract (moved there)
RUN_PREFIX = evidence.CROSS_LA_RUN_PREFIX
_PERSON = ("forename", "middle_names", "surname", "dob", "sex", "postcode")


@dataclass(frozen=True)
class CrossLaResult:
    """One LA's part of a check (counts and LA codes only)."""

    la_code: str
    checked: int  # unmatched children looked for
    found_in: dict[str, int]  # other LA's code -> children of ours found on its registers
    run_id: str
    possible_in: dict[str, int] = field(default_factory=dict)  # noted "possibly on LA X's register", kept
    moved_to: dict[str, int] = field(default_factory=dict)  # other LA's code -> children now on its later extract

    @property
    def removed(self) -> int:
        """Children removed from the retained list (found on a register, or moved)."""
        return sum(self.found_in.values()) + sum(self.moved_to.values())


def _register_records(home: Home, la_code: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The LA's register records its own latest run did not match to a child of its extract, and
    the names of all its register records (its name frequencies, ``linkage.rare``).

    A matched record is a pupil living here; leaving them out keeps another LA's child who only
    shares their name and date of birth from being "found", and keeps them out of the check.
    """
    engine = home.store(la_code)
    with engine.connect() as conn:
        taken = claimed(conn, la_code)
    frames, names = [], []
    for source, frame in load_registers(engine, la_code).items():
        free = [(source, str(r)) not in taken for r in frame["record_id"]]
        frames.append(frame.loc[free].reindex(columns=[*_PERSON, "address"]))
        names.append(frame.reindex(columns=["forename", "surname"]))
    if not frames:
        return pd.DataFrame(columns=[*_PERSON, "address"]), pd.DataFrame(columns=["forename", "surname"])
    return pd.concat(frames, ignore_index=True), pd.concat(names, ignore_index=True)


def check_round(
    home: Home, la_codes: list[str], register_las: list[str] | None = None, today: dt.date | None = None,
    threshold: float = DEFAULT_THRESHOLD, config: ClkConfig | None = None, round_id: str | None = None,
    possible_threshold: float = DEFAULT_POSSIBLE_THRESHOLD,
    household_threshold: float | None = DEFAULT_HOUSEHOLD_THRESHOLD,
    unique_threshold: float | None = DEFAULT_UNIQUE_THRESHOLD,
    middle_threshold: float | None = DEFAULT_MIDDLE_THRESHOLD,
    rare_threshold: float | None = DEFAULT_RARE_THRESHOLD,
    previous: bool = True,
) -> list[CrossLaResult]:
    """Look for each LA's unmatched children on the other LAs' registers; remove those found.

    Args:
        home: the services (every LA's store and the key store holding the check's secret).
        la_codes: the LAs whose unmatched children are looked for.
        register_las: the LAs whose registers are searched (default: ``la_codes``); an LA is
            never searched for its own children.
        today: the day (retention is judged by it; default today).
        threshold: the Dice similarity at or above which a child counts as found (and is removed).
        possible_threshold: from here up to ``threshold`` a child is only noted as possibly on
            that LA's register (``possibly_on_<LA code>``) and kept: name and date of birth agree
            but not the postcode, as for a child who moved, and as for a namesake.
        config: how encodings are built (the same for every LA).
        household_threshold: from here a child also counts as found when another child of its
            address is found with it at one address of the other LA's register
            (``linkage.households``: a family that moved); None: no household evidence.
        unique_threshold: from here a child also counts as found when its best pair has no rival
            (``linkage.unique``: neither the child nor that register record agrees nearly as well
            with anyone else); None: no such evidence.
        middle_threshold: from here a child with a middle name also counts as found when its
            second encoding (``linkage.middle``: no postcode) agrees with a register record's;
            None: no second encodings are made.
        rare_threshold: from here a child whose surname and forename are both rare in its LA's
            registers (``linkage.rare``) also counts as found: names, date of birth and sex agree,
            and a namesake born the same day is improbable; None: no such evidence.
        previous: whether a child with a previous postcode (it moved) is also looked for at that
            postcode (``linkage.previous``).
        round_id: the check's id (default: a fresh one); names its secret and ledger run id.
    """
    today = today or dt.date.today()
    round_id = round_id or f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
    run_id = f"{RUN_PREFIX}{round_id}"
    parties = list(dict.fromkeys([*la_codes, *(register_las or la_codes)]))
    queries: list[tuple[str, list[tuple[str, str]], pd.DataFrame]] = []
    create_round_secret(home.keys, round_id)
    try:
        hasher = token_hasher(home.keys, round_id)
        second = token_hasher(home.keys, round_id, MIDDLE_ENCODING) if middle_threshold is not None else None
        q_parts, q_party, t_parts, t_party, q_group, t_group, q_tags, q_day = [], [], [], [], [], [], [], []
        q_rare: list[np.ndarray] = []
        m_rows, m_queries, m_targets, m_party = [], [], [], []
        p_rows, p_queries = [], []
        offset = 0
        for i, code in enumerate(parties):
            registers, names = _register_records(home, code)
            if code in la_codes:
                held = read_retained(home, code, outcome="unmatched", today=today)
                q_rare.append(rare_names(held, names))
                queries.append((code, list(zip(held["delivery_id"], held["health_record_id"], strict=True)), held))
                person = held.reindex(columns=list(_PERSON))
                q_parts.append(encode(person, hasher, config))
                if second is not None:
                    rows, encodings = encode_middle(person, second)
                    m_rows.append(rows + offset)
                    m_queries.append(encodings)
                if previous:
                    rows, encodings = encode_previous(held.reindex(columns=[*_PERSON, PREVIOUS_POSTCODE]), hasher, config)
                    p_rows.append(rows + offset)
                    p_queries.append(encodings)
                offset += len(held)
                q_party.append(np.full(len(held), i, dtype=np.int64))
                q_group.append(household_labels(held.get("address_line1"), held.get("postcode")))
                q_tags.append(hasher.tags([str(v) for v in held["nhs_number"]]))
                q_day.append(np.array([_extract_day(d) for d in held["delivery_id"]], dtype=np.int64))
            if code in (register_las or la_codes):
                t_parts.append(encode(registers, hasher, config))
                if second is not None:
                    rows, encodings = encode_middle(registers, second)
                    m_targets.append(encodings)
                    m_party.append(np.full(len(rows), i, dtype=np.int64))
                t_party.append(np.full(len(registers), i, dtype=np.int64))
                t_group.append(household_labels(registers["address"], registers["postcode"]))
            del registers, names
        del hasher, second
    finally:
        destroy_round_secret(home.keys, round_id)  # no encoding can be made or compared again
    households = household_threshold is not None
    found = run_linkage_unit(np.concatenate(q_parts), np.concatenate(q_party),
                             np.concatenate(t_parts), np.concatenate(t_party),
                             min(possible_threshold, threshold, threshold if unique_threshold is None else unique_threshold),
                             np.concatenate(q_group) if households else None,
                             np.concatenate(t_group) if households else None,
                             # pairs from here are also the rivals of linkage.unique
                             household_threshold if household_threshold is not None else DEFAULT_HOUSEHOLD_THRESHOLD,
                             np.concatenate(q_tags), np.concatenate(q_day),
                             MiddleEncodings(np.concatenate(m_rows), np.concatenate(m_queries),
                                             np.concatenate(m_targets), np.concatenate(m_party))
                             if middle_threshold is not None else None,
                             middle_threshold if middle_threshold is not None else DEFAULT_MIDDLE_THRESHOLD,
                             unique=unique_threshold is not None,
                             previous=PreviousEncodings(np.concatenate(p_rows), np.concatenate(p_queries))
                             if previous and p_rows else None)
    del q_parts, t_parts, q_tags, m_queries, m_targets, p_queries
    rules = (threshold, unique_threshold, middle_threshold)
    sure = found.confirmed(*rules)
    if rare_threshold is not None:  # the LA's own judgement: the unit never learns which names are rare
        sure = sure | (np.concatenate(q_rare)[found.query] & (found.dice >= rare_threshold))
    hits = {q: (parties[p], bool(s)) for q, p, s
            in zip(found.query.tolist(), found.found_party(*rules).tolist(), sure.tolist(), strict=True)}
    moves = {} if found.moved is None or found.moved_party is None else {
        q: parties[p] for q, p in zip(found.moved.tolist(), found.moved_party.tolist(), strict=True)}
    results, offset = [], 0
    for code, refs, held in queries:
        mine = {refs[q - offset]: hit for q, hit in hits.items() if offset <= q < offset + len(refs)}
        moved = {refs[q - offset]: to for q, to in moves.items() if offset <= q < offset + len(refs)}
        offset += len(refs)
        results.append(_apply(home, code, mine, moved, held, today, run_id))
    return results


def _extract_day(delivery_id: str) -> int:
    """The extract date of a delivery as YYYYMMDD, from its id (``D20261001-W06000015-…``); 0 if none."""
    day = str(delivery_id)[1:9]
    return int(day) if day.isdigit() else 0


def _apply(home: Home, la_code: str, found: dict[tuple[str, str], tuple[str, bool]], moved: dict[tuple[str, str], str],
           held: pd.DataFrame, today: dt.date, run_id: str) -> CrossLaResult:
    """Transfer the children found elsewhere, or now on another LA's later extract, to that LA and
    delete them here (as a follow-up finding), note the possible ones, record counts."""
    engine = home.store(la_code)
    with engine.connect() as conn:
        live = fstore.live_children(conn, la_code, today)
    gone = [key for key, (_, sure) in found.items() if sure and key in live]
    away = [key for key in moved if key in live and key not in set(gone)]
    maybe = [key for key, (_, sure) in found.items() if not sure and key in live and key not in moved]
    if gone or away:  # sent first: a crash before the deletion leaves them held, to be found again
        by_ref = held.set_index(["delivery_id", "health_record_id"], drop=False)
        transfers.send(home, la_code, by_ref.loc[gone + away].reset_index(drop=True),
                       [found[k][0] for k in gone] + [moved[k] for k in away], today, run_id)
    with engine.begin() as conn:
        rstore.delete_retained_keys(conn, la_code, gone + away)
        fstore.record_resolutions(conn, la_code, [(OUTCOME, live[k]) for k in gone]
                                  + [(MOVED_OUTCOME, live[k]) for k in away], today)
        for other in sorted({found[k][0] for k in maybe}):
            fstore.set_notes(conn, la_code, [k for k in maybe if found[k][0] == other], f"{POSSIBLE_NOTE}{other}", today)
    if gone or away:
        sstore.release_deleted_space(engine)
        rstore.finish_shredding(engine, home.keys, la_code)
    counts = dict(sorted(Counter(found[k][0] for k in gone).items()))
    moves = dict(sorted(Counter(moved[k] for k in away).items()))
    possible = dict(sorted(Counter(found[k][0] for k in maybe).items()))
    evidence.record(home.settings, la_code, run_id, "cross_la_check", {
        "checked": len(held), "found_on_other_la_register": counts, "removed": len(gone) + len(away),
        "possibly_on_other_la_register": possible, "moved_to_other_la": moves,
    })
    evidence.checkpoint(home.settings, home.keys, la_code)
    return CrossLaResult(la_code, len(held), counts, run_id, possible, moves)
