"""Column sets and types of every table and file: the single source of truth (DESIGN.md §3).

Other modules import these tuples instead of spelling column names themselves, so a change to a
data contract happens here, once, and the Great Expectations minimisation suites follow it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal["str", "date", "sex", "float", "int", "datetime"]


@dataclass(frozen=True)
class Field:
    """One column of a data contract."""

    name: str
    kind: Kind = "str"
    required: bool = False
    personal: bool = True  # whether the value identifies or describes a child
    # Places the child (where they live, or near it): empty on a restricted record, and then not
    # required even if ``required`` says so.
    location: bool = False


def names(fields: tuple[Field, ...]) -> tuple[str, ...]:
    """The column names of a field tuple, in order."""
    return tuple(f.name for f in fields)


# -- canonical person columns: what matching/ and `cme link` read ------------------------------
CANONICAL_PERSON_FIELDS: Final = (
    Field("record_id", required=True, personal=False),
    Field("forename"),
    Field("middle_names"),
    Field("surname"),
    Field("dob", "date"),
    Field("sex", "sex"),
    Field("address", location=True),
    Field("postcode", location=True),
)
CANONICAL_PERSON: Final = names(CANONICAL_PERSON_FIELDS)

# -- the health extract, partner -> LA. Nothing else may cross the boundary. -------------------
HEALTH_EXTRACT_FIELDS: Final = (
    Field("nhs_number", required=True),
    Field("forename", required=True),
    Field("middle_names"),
    Field("surname", required=True),
    Field("former_surname"),
    Field("dob", "date", required=True),
    Field("sex", "sex", required=True),
    Field("address_line1", required=True, location=True),
    Field("address_line2", location=True),
    Field("address_line3", location=True),
    Field("address_line4", location=True),
    Field("postcode", required=True, location=True),
    # A practice serves a few square miles: for a restricted child it narrows down where they
    # live, and matching never uses it, so the partner leaves it empty too.
    Field("gp_practice_code", required=True, personal=False, location=True),
    Field("registration_date", "date", required=True, personal=False),
    # The PDS sensitive ("S") flag: Y, or N/empty. It says something about the child's family
    # (domestic abuse, an adoption), so it is personal data itself.
    Field("restricted"),
    # The postcode of the child's previous address, when the current one dates from within the
    # twelve months before the extract (the NHS keeps address history); empty otherwise. A child
    # who moved since the registers were taken is on them at that address: the cross-LA check
    # looks for them there too (linkage/previous.py). Empty on a restricted record.
    Field("previous_postcode", location=True),
)
HEALTH_EXTRACT: Final = names(HEALTH_EXTRACT_FIELDS)
# Required on every record, except the location fields of a restricted one (HEALTH_LOCATION).
HEALTH_REQUIRED: Final = tuple(f.name for f in HEALTH_EXTRACT_FIELDS if f.required)
HEALTH_LOCATION: Final = tuple(f.name for f in HEALTH_EXTRACT_FIELDS if f.location)
HEALTH_ADDRESS_LINES: Final = ("address_line1", "address_line2", "address_line3", "address_line4")
RESTRICTED: Final = "restricted"
PREVIOUS_POSTCODE: Final = "previous_postcode"
RESTRICTED_CODES: Final = ("Y", "N")  # or empty, which means N
# Schema 2 added ``restricted``, schema 3 ``previous_postcode`` (each last, so a record sealed
# under an earlier schema is a prefix of one). Schema 1 deliveries are refused: they cannot say
# which children must not be placed. Schema 2 deliveries are read as schema 3 with no previous
# postcodes (a partner not yet sending them loses only the cross-LA check's second look).
EXTRACT_SCHEMA_VERSION: Final = "cme-health-extract/3"
FIELDS_ADDED_SINCE_SCHEMA_1: Final = (RESTRICTED, PREVIOUS_POSTCODE)
# The columns each accepted schema's extract has, in order.
EXTRACT_SCHEMAS: Final[dict[str, tuple[str, ...]]] = {
    "cme-health-extract/2": HEALTH_EXTRACT[:-1],
    EXTRACT_SCHEMA_VERSION: HEALTH_EXTRACT,
}


def is_restricted(value: object) -> bool:
    """Whether a ``restricted`` value marks the record restricted (exactly ``Y``)."""
    return value == "Y"

SEX_CODES: Final = ("M", "F", "U")

# -- the LA's education registers ---------------------------------------------------------------
RegisterSource = Literal["school_census", "eotas", "ehe", "cme"]
REGISTER_SOURCES: Final[tuple[RegisterSource, ...]] = ("school_census", "eotas", "ehe", "cme")
REGISTER_LABELS: Final[dict[str, str]] = {
    "school_census": "School census (PLASC), maintained and independent schools",
    "eotas": "Education other than at school (EOTAS)",
    "ehe": "Elective Home Education register",
    "cme": "Children Missing Education register",
}
SCHOOL_TYPES: Final = ("maintained", "independent")

# Person columns every register shares; `record_id` is the register's own id (UPN for the
# census, the LA's case reference for the others).
REGISTER_PERSON_FIELDS: Final = (
    Field("record_id", required=True, personal=False),
    Field("forename", required=True),
    Field("middle_names"),
    Field("surname", required=True),
    Field("dob", "date", required=True),
    Field("sex", "sex"),
    Field("address", location=True),
    Field("postcode", location=True),
)
REGISTER_EXTRA_FIELDS: Final[dict[str, tuple[Field, ...]]] = {
    "school_census": (
        Field("school_code", required=True, personal=False, location=True),  # a school places a child
        Field("school_type", required=True, personal=False),
        Field("enrolment_status", required=True, personal=False),
    ),
    "eotas": (Field("provision", required=True, personal=False),),
    "ehe": (Field("notified_date", "date", required=True, personal=False),),
    "cme": (Field("referral_date", "date", required=True, personal=False),),
}


def register_fields(source: str) -> tuple[Field, ...]:
    """All fields of one register, person columns first.

    Args:
        source: one of ``REGISTER_SOURCES``.
    """
    return REGISTER_PERSON_FIELDS + REGISTER_EXTRA_FIELDS[source]


def register_columns(source: str) -> tuple[str, ...]:
    """The column names of one register (as loaded from the LA database, without ``la_code``)."""
    return names(register_fields(source))


# Every column, in any contract, that places a child or narrows down where they live: what no
# output may show of a restricted child.
PLACING_COLUMNS: Final = frozenset(
    f.name
    for f in (*CANONICAL_PERSON_FIELDS, *HEALTH_EXTRACT_FIELDS, *REGISTER_PERSON_FIELDS,
              *(g for extra in REGISTER_EXTRA_FIELDS.values() for g in extra))
    if f.location
)


# -- matching output ----------------------------------------------------------------------------
Outcome = Literal["matched", "possible", "unmatched"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("matched", "possible", "unmatched")
MATCH_OUTCOME: Final = (
    "health_record_id",  # a per-delivery row reference, never the NHS number
    "outcome",
    "register",
    "register_record_id",
    "probability",
)
LINK_PAIRS: Final = ("left_id", "right_id", "probability", "band")
BANDS: Final = ("match", "possible")

# A reviewed pair as the model saw it (``matching.learn``): the agreement level of each comparison
# (``matching.compare.LEVELS``, -1 where a value was missing) and the officer's decision. Levels
# say how two records compare, never what they hold: no value, hash or record id of either side.
DECISION_PATTERN: Final = ("forename", "surname", "dob", "sex", "middle", "location")
DECIDED_PAIR: Final = (*DECISION_PATTERN, "same")

# -- retained (encrypted at rest) ---------------------------------------------------------------
RETAINED_HEALTH_FIELDS: Final = HEALTH_EXTRACT
RETAINED_META: Final = (
    "outcome",
    "best_probability",
    "best_register",
    "run_id",
    "retention_expiry",
)
RETAINED: Final = RETAINED_HEALTH_FIELDS + RETAINED_META
RETAINED_OUTCOMES: Final = ("possible", "unmatched")

# -- partner-side ground truth (never read by LA-side code) -------------------------------------
# ``registers``: the child's records on their own LA's registers; ``other_la``: the LA whose
# register holds them instead (schooled across a border or moved since the census), else empty.
TRUTH: Final = ("nhs_number", "la_code", "registers", "reason", "household_id", "twin", "restricted", "other_la")
REGISTER_TRUTH: Final = ("register", "record_id", "la_code", "nhs_number", "noise")
