"""A record of processing activities (UK GDPR Article 30 style), generated from the configuration.

Generated rather than written by hand so that it cannot drift from what the pipeline does: the
data categories are the health extract's data contract, the retention periods are the settings.
The DPO reviews and owns the legal wording; the facts here come from the code.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from pathlib import Path

from cme_pipeline import __version__, durable
from cme_pipeline.config import Settings
from cme_pipeline.evidence.ledger import config_hash
from cme_pipeline.evidence.report import CSS
from cme_pipeline.schemas import HEALTH_EXTRACT_FIELDS, REGISTER_LABELS, RETAINED_META

PURPOSES = (
    "Identify children of compulsory school age who may be missing education, as the local "
    "authority must (Education Act 1996, section 436A), by comparing an NHS extract of children "
    "registered with a GP in the area against the authority's education registers.",
    "Keep, for follow-up by Children Missing Education officers, only the records of children "
    "found on no education register, and of possible matches until an officer has reviewed them.",
)
FIELD_DESCRIPTIONS = {
    "nhs_number": "NHS number (identifier)",
    "forename": "Forename", "middle_names": "Middle names", "surname": "Surname",
    "former_surname": "Former surname", "dob": "Date of birth", "sex": "Sex",
    "address_line1": "Address line 1", "address_line2": "Address line 2", "address_line3": "Address line 3",
    "address_line4": "Address line 4", "postcode": "Postcode",
    "gp_practice_code": "GP practice code (organisation, not the child)",
    "registration_date": "Date of GP registration",
    "restricted": "Restricted (NHS sensitive flag): no address, postcode or GP practice is received",
    "previous_postcode": "Postcode of the previous address, for a child who moved in the twelve months before "
                         "the extract (the cross-LA check looks for them there); not received for a restricted record",
}
RECIPIENTS = (
    "No one outside the local authority. Within it, Children Missing Education officers see the "
    "retained records of unmatched children and the possible matches they review.",
    "The DPO and auditors receive counts, identifiers of files and keys, and signed evidence only.",
)
SECURITY = (
    "The extract crosses from the NHS partner encrypted to the authority's key (X25519, AES-256-GCM) "
    "with an Ed25519-signed manifest; a delivery that fails any check is quarantined, still encrypted.",
    "Health data is decrypted only in memory; staged records are encrypted under a per-delivery "
    "data key, which is destroyed after matching (crypto-shredding), so deleted records cannot be "
    "recovered from disks, database pages or backups.",
    "Retained records are encrypted under a separate retained-data key and purged automatically at expiry.",
    "Great Expectations checks at every step: exact column set, no clinical fields, and no data "
    "of a matched child in what is kept.",
    "Logs, task results and reports carry counts and identifiers of files and keys only.",
    "An append-only, hash-chained evidence ledger with Ed25519-signed checkpoints and deletion "
    "certificates, verifiable by anyone holding the published verification key (cme evidence verify).",
)


def ropa_file(settings: Settings) -> Path:
    """Where the record of processing is written."""
    return settings.home / "reports" / "record_of_processing.html"


def render_ropa(settings: Settings) -> Path:
    """Write the record of processing (HTML) from the configuration; return its path.

    Args:
        settings: the configuration it describes.
    """
    categories = "".join(
        f"<tr><td><code>{escape(f.name)}</code></td><td>{escape(FIELD_DESCRIPTIONS.get(f.name, f.name))}</td>"
        f"<td>{'personal' if f.personal else 'not about the child'}</td></tr>"
        for f in HEALTH_EXTRACT_FIELDS
    )
    registers = "".join(f"<li>{escape(label)}</li>" for label in REGISTER_LABELS.values())
    section = [
        "<h1>Record of processing: finding children missing education</h1>",
        f"<p>Generated {escape(dt.datetime.now(dt.UTC).isoformat(timespec='seconds'))} by cme-pipeline "
        f"{escape(__version__)} from configuration <code>{escape(config_hash(settings)[:16])}</code>.</p>",
        "<h2>Controller</h2><p>Each participating local authority is controller for its own area's "
        "extract and registers; the NHS partner is controller of the extract until it is delivered.</p>",
        "<h2>Purposes</h2><ul>", *(f"<li>{escape(p)}</li>" for p in PURPOSES), "</ul>",
        "<h2>Data subjects</h2><p>Children of compulsory school age registered with a GP practice in the area.</p>",
        "<h2>Categories of personal data (the extract's data contract)</h2>",
        f"<table><tr><th>Field</th><th>Meaning</th><th>Kind</th></tr>{categories}</table>",
        "<p>No clinical information and no data about parents or carers is received. Retained "
        f"records also carry: {escape(', '.join(RETAINED_META))}.</p>",
        "<h2>Sources</h2><ul><li>NHS Wales Shared Services Partnership: the GP-registration extract</li>",
        f"{registers}</ul>",
        "<h2>Recipients</h2><ul>", *(f"<li>{escape(r)}</li>" for r in RECIPIENTS), "</ul>",
        "<h2>Retention</h2><table>",
        "<tr><th>Children matched to an education register</th><td>Deleted when the run finishes "
        "(data key destroyed); nothing of them is kept.</td></tr>",
        f"<tr><th>Children on no register</th><td data-retention-days=\"{settings.retention_days}\">"
        f"{settings.retention_days} days, then purged: long enough for a CME officer's enquiries (initial "
        "checks within 20 school days, follow-up within a term), short enough that data about a child "
        "found in education elsewhere is not kept for a year.</td></tr>",
        f"<tr><th>Possible matches</th><td data-review-days=\"{settings.review_days}\">Reviewed within "
        f"{settings.review_days} days: a possible match waits for a person's decision, not for follow-up.</td></tr>",
        "<tr><th>Evidence (ledger, certificates, reports)</th><td>Kept as the authority's audit record; "
        "it holds no personal data.</td></tr></table>",
        "<h2>Security measures</h2><ul>", *(f"<li>{escape(s)}</li>" for s in SECURITY), "</ul>",
        "<h2>Transfers outside the UK</h2><p>None.</p>",
    ]
    page = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Record of processing</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(section) + "\n</body></html>\n")
    target = ropa_file(settings)
    durable.write_atomic(target, page.encode())
    return target
