"""From an export's headings to our register contract (DESIGN.md §3): presets and mapping files.

A mapping says, for each column of the register contract, which heading(s) of the export hold it:
one heading, or a list of alternatives (the first present is used), except ``address``, whose
listed headings are joined (address lines and town). A ``[constants]`` table gives a value for a
contract column the export does not have (``school_type = "maintained"`` for a census of
maintained schools only). Presets cover the usual exports; a small TOML file covers the rest::

    # mapping for our case-management system's EHE report
    date_format = "%d/%m/%Y"          # optional: the one date format of the file
    [columns]
    record_id = "Case Ref"
    forename = "First Name"
    surname = "Last Name"
    dob = "Birth Date"
    address = ["Address 1", "Address 2", "Town"]
    postcode = "Post Code"
    notified_date = "Date Notified"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cme_pipeline.errors import UsageError
from cme_pipeline.la.register_files import heading_key
from cme_pipeline.schemas import REGISTER_SOURCES, register_fields

# Our own contract names are always accepted, so a register exported by this tool (or written
# by hand to the contract) imports without a mapping.
_PERSON: dict[str, tuple[str, ...]] = {
    "forename": ("Legal Forename", "Forename", "First Name", "Firstname", "Given Name"),
    "middle_names": ("Middle Names", "Middle Name", "Legal Middle Names", "Other Names"),
    "surname": ("Legal Surname", "Surname", "Last Name", "Family Name"),
    "dob": ("Date of Birth", "DOB", "Birth Date", "D.O.B."),
    "sex": ("Gender", "Sex"),
    "postcode": ("Postcode", "Post Code", "Address Postcode"),
}
_ADDRESS = ("Address Line 1", "Address Line 2", "Address Line 3", "Address Line 4", "Address Line 5",
            "Address 1", "Address 2", "Address 3", "Address 4", "House Name/Number", "Street",
            "Locality", "Town", "Town/City", "County")

PRESETS: dict[str, dict[str, tuple[str, ...]]] = {
    # A school census (PLASC) style pupil export from a school MIS: UPN, legal and preferred
    # names, and the pupil's enrolment. Preferred names are not read: the NHS holds legal ones.
    "plasc": _PERSON | {
        "record_id": ("UPN", "Unique Pupil Number"),
        "address": _ADDRESS,
        "school_code": ("School LAESTAB", "LAESTAB", "LA Estab", "DfE Number", "School Number", "School Code"),
        "school_type": ("School Type", "Establishment Type"),
        "enrolment_status": ("Enrolment Status", "Enrol Status", "Enrolment"),
    },
    "eotas": _PERSON | {
        "record_id": ("Case Reference", "Case Ref", "Reference", "UPN", "Pupil Reference"),
        "address": _ADDRESS,
        "provision": ("Provision", "Provision Type", "Placement", "EOTAS Provision"),
    },
    "ehe": _PERSON | {
        "record_id": ("Case Reference", "Case Ref", "Reference", "EHE Reference"),
        "address": _ADDRESS,
        "notified_date": ("Date Notified", "Notified Date", "Notification Date", "Date of Notification"),
    },
    "cme": _PERSON | {
        "record_id": ("Case Reference", "Case Ref", "Reference", "CME Reference"),
        "address": _ADDRESS,
        "referral_date": ("Referral Date", "Date of Referral", "Date Referred"),
    },
}
DEFAULT_PRESET: dict[str, str] = {"school_census": "plasc", "eotas": "eotas", "ehe": "ehe", "cme": "cme"}
# Dates as UK exports write them; month-first (US) is never guessed: 03/04/2015 is 3 April.
DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M",
                "%d/%m/%Y %H:%M:%S", "%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True)
class ColumnMapping:
    """How one register's contract columns are read from an export."""

    source: str
    name: str  # the preset's name or the mapping file's name, for messages
    columns: dict[str, tuple[str, ...]]  # contract column -> candidate (or, for address, joined) headings
    constants: dict[str, str] = field(default_factory=dict)
    date_formats: tuple[str, ...] = DATE_FORMATS
    # A heading holding the whole address; used alone when present, before joining lines.
    full_address: tuple[str, ...] = ()

    def wanted(self) -> set[str]:
        """Every heading this mapping could read."""
        return {h for headings in self.columns.values() for h in headings} | set(self.full_address)


@dataclass(frozen=True)
class Resolved:
    """A mapping applied to one export's headings: where each contract column comes from."""

    source: str
    sources: dict[str, tuple[str, ...]]  # contract column -> the export's headings actually used
    constants: dict[str, str]
    unmapped_required: tuple[str, ...]  # required contract columns with neither heading nor constant
    ignored: tuple[str, ...]  # the export's headings nothing reads (dropped unread)
    date_formats: tuple[str, ...]


def preset(source: str, name: str | None = None) -> ColumnMapping:
    """The named preset (default: the usual one for ``source``), with our contract names added.

    Raises:
        UsageError: unknown register or preset.
    """
    _check_source(source)
    chosen = name or DEFAULT_PRESET[source]
    if chosen not in PRESETS:
        raise UsageError(f"unknown mapping preset {chosen!r} (presets: {', '.join(sorted(PRESETS))})")
    base = PRESETS[chosen]
    columns = {}
    for f in register_fields(source):
        own = (f.name,)
        columns[f.name] = own + base.get(f.name, ()) if f.name != "address" else base["address"]
    return ColumnMapping(source, f"preset {chosen}", columns, full_address=("Address", "Full Address"))


def load_mapping(source: str, path: Path) -> ColumnMapping:
    """A mapping file (TOML: ``[columns]``, optional ``[constants]`` and ``date_format``).

    Raises:
        UsageError: unreadable file, unknown contract column, or a heading that is not text.
    """
    _check_source(source)
    try:
        spec: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        where = f" ({exc.__class__.__name__})" if not isinstance(exc, tomllib.TOMLDecodeError) else f": {exc}"
        raise UsageError(f"mapping file {path.name} is not readable TOML{where}") from None
    known = {f.name for f in register_fields(source)}
    unknown = set(spec) - {"columns", "constants", "date_format", "register"}
    if unknown:
        raise UsageError(f"mapping file {path.name}: unknown setting {sorted(unknown)[0]!r}")
    if spec.get("register", source) != source:
        raise UsageError(f"mapping file {path.name} is for register {spec['register']!r}, not {source!r}")
    columns: dict[str, tuple[str, ...]] = {}
    for column, headings in dict(spec.get("columns", {})).items():
        if column not in known:
            raise UsageError(f"mapping file {path.name}: {column!r} is not a column of the {source} register "
                             f"(columns: {', '.join(sorted(known))})")
        listed = (headings,) if isinstance(headings, str) else tuple(headings) if isinstance(headings, list) else ()
        if not listed or not all(isinstance(h, str) and h.strip() for h in listed):
            raise UsageError(f"mapping file {path.name}: column {column!r} must name a heading or a list of headings")
        columns[column] = listed
    constants = {str(k): str(v) for k, v in dict(spec.get("constants", {})).items()}
    for column in constants:
        if column not in known or column == "record_id":
            raise UsageError(f"mapping file {path.name}: constant {column!r} is not an allowed column")
    fmt = spec.get("date_format")
    if fmt is not None and (not isinstance(fmt, str) or "%" not in fmt):
        raise UsageError(f"mapping file {path.name}: date_format must be a strftime pattern such as \"%d/%m/%Y\"")
    return ColumnMapping(source, f"mapping {path.name}", columns, constants, (fmt,) if fmt else DATE_FORMATS)


def resolve(mapping: ColumnMapping, headings: tuple[str, ...]) -> Resolved:
    """Which of the export's headings feed each contract column."""
    present = {heading_key(h): h for h in headings}
    sources: dict[str, tuple[str, ...]] = {}
    full = [present[heading_key(c)] for c in mapping.full_address if heading_key(c) in present]
    for column, candidates in mapping.columns.items():
        if column == "address" and full:
            sources[column] = (full[0],)
            continue
        found = [present[heading_key(c)] for c in candidates if heading_key(c) in present]
        if found:
            sources[column] = tuple(dict.fromkeys(found)) if column == "address" else (found[0],)
    used = {heading_key(h) for hs in sources.values() for h in hs}
    missing = tuple(
        f.name for f in register_fields(mapping.source)
        if f.required and f.name not in sources and f.name not in mapping.constants
    )
    return Resolved(
        source=mapping.source,
        sources=sources,
        constants={k: v for k, v in mapping.constants.items() if k not in sources},
        unmapped_required=missing,
        ignored=tuple(h for h in headings if h and heading_key(h) not in used),
        date_formats=mapping.date_formats,
    )


def describe(resolved: Resolved, mapping_name: str) -> list[str]:
    """Lines for ``--dry-run``: each contract column and where it comes from (headings only)."""
    lines = [f"mapping: {mapping_name}"]
    for f in register_fields(resolved.source):
        if f.name in resolved.sources:
            joined = " + ".join(repr(h) for h in resolved.sources[f.name])
            lines.append(f"  {f.name:<17} <- {joined}")
        elif f.name in resolved.constants:
            lines.append(f"  {f.name:<17} =  {resolved.constants[f.name]!r} (constant)")
        else:
            lines.append(f"  {f.name:<17}    (not in the export{'; required' if f.required else ''})")
    if resolved.ignored:
        lines.append(f"dropped unread: {len(resolved.ignored)} column(s): " + ", ".join(repr(h) for h in resolved.ignored))
    return lines


def _check_source(source: str) -> None:
    if source not in REGISTER_SOURCES:
        raise UsageError(f"unknown register {source!r} (registers: {', '.join(REGISTER_SOURCES)})")


def as_template(mapping: ColumnMapping) -> str:
    """A mapping file to start from: the preset's first heading for each column."""
    lines = [f"# cme registers mapping for the {mapping.source} register ({mapping.name})",
             'register = "' + mapping.source + '"', "# date_format = \"%d/%m/%Y\"", "", "[columns]"]
    for column, headings in mapping.columns.items():
        shown = headings[1] if len(headings) > 1 else headings[0]
        if column == "address":
            lines.append("address = [" + ", ".join(f'"{h}"' for h in headings[:3]) + ', "Town"]')
        else:
            lines.append(f'{column} = "{shown}"')
    example = "school_type = \"maintained\"" if mapping.source == "school_census" else "sex = \"U\""
    lines += ["", "[constants]  # a value for a column the export does not have", f"# {example}"]
    return "\n".join(lines) + "\n"

