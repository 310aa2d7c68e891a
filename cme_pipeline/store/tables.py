"""SQLAlchemy tables of the LA store. Column sets come from ``cme_pipeline.schemas``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from cme_pipeline.schemas import DECISION_PATTERN, REGISTER_SOURCES, Field, register_fields

metadata = sa.MetaData()

_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "str": sa.String(),
    "date": sa.Date(),
    "sex": sa.String(1),
    "float": sa.Float(),
    "int": sa.Integer(),
    "datetime": sa.DateTime(timezone=True),
}


def _column(f: Field, primary_key: bool = False) -> sa.Column[Any]:
    return sa.Column(f.name, _TYPES[f.kind], nullable=not f.required, primary_key=primary_key)


def _register_table(source: str) -> sa.Table:
    # The registers are the LA's own education data, held in plain form as the LA's MIS would;
    # nothing health-derived is ever written to these tables.
    fields = register_fields(source)
    return sa.Table(
        f"register_{source}",
        metadata,
        sa.Column("la_code", sa.String(9), primary_key=True),
        *(_column(f, primary_key=f.name == "record_id") for f in fields),
    )


REGISTER_TABLES: dict[str, sa.Table] = {s: _register_table(s) for s in REGISTER_SOURCES}

# When each register was last replaced, and from what: the run refuses registers too old to
# match against (a child who joined a school after the export would be sent to follow-up).
register_loads = sa.Table(
    "register_loads",
    metadata,
    sa.Column("la_code", sa.String(9), primary_key=True),
    sa.Column("source", sa.String(16), primary_key=True),
    sa.Column("as_of", sa.Date, nullable=False),  # the day the export was taken
    sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("origin", sa.String(16), nullable=False),  # "file" (an LA export) or "simulated"
    sa.Column("file_sha256", sa.String(64), nullable=False),  # "" for simulated registers
)


# -- health data: staged deliveries and retained children (DESIGN.md §1 steps 2 and 5) ----------
# No column below holds a plaintext personal value: health fields are sealed in `ciphertext`
# (crypto/envelope.py) and NHS numbers appear only as keyed HMAC tags. PostgreSQL would
# otherwise keep deleted values in heap pages, indexes, WAL and even error messages.

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("la_code", sa.String(9), primary_key=True),
    sa.Column("delivery_id", sa.String(64), primary_key=True),
    # staged -> sealed (retained committed, matched rows deleted) -> cleared (no staged rows)
    # -> shredded (data key destroyed); or discarded.
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("received", sa.Integer, nullable=False),
    sa.Column("data_key_id", sa.String(160), nullable=False),
    sa.Column("staged_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.String(250)),
    sa.Column("matched", sa.Integer),
    sa.Column("possible", sa.Integer),
    sa.Column("unmatched", sa.Integer),
    sa.Column("retained", sa.Integer),
    sa.Column("retention_expiry", sa.Date),
    sa.Column("sealed_at", sa.DateTime(timezone=True)),
    sa.Column("key_destroyed_at", sa.DateTime(timezone=True)),
)

staged = sa.Table(
    "staged",
    metadata,
    sa.Column("la_code", sa.String(9), primary_key=True),
    sa.Column("delivery_id", sa.String(64), primary_key=True),
    sa.Column("health_record_id", sa.String(16), primary_key=True),
    sa.Column("nhs_tag", sa.String(64), nullable=False),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
)

retained = sa.Table(
    "retained",
    metadata,
    sa.Column("la_code", sa.String(9), primary_key=True),
    sa.Column("delivery_id", sa.String(64), primary_key=True),
    sa.Column("health_record_id", sa.String(16), primary_key=True),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("best_probability", sa.Float),
    sa.Column("best_register", sa.String(32)),
    sa.Column("best_register_record_id", sa.String(64)),  # the LA's own register id, not health data
    sa.Column("retention_expiry", sa.Date, nullable=False),
    sa.Column("review_id", sa.String(32), unique=True),  # random, for `possible` rows in review packs
    sa.Column("key_version", sa.Integer, nullable=False),
    sa.Column("nhs_tag", sa.String(64), nullable=False),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
)
sa.Index("ix_retained_expiry", retained.c.la_code, retained.c.retention_expiry)

# The officer's latest note on a child still held ("still under enquiry", and when): part of the
# child's record, so it goes with the retained row (purge, resolution, review) by cascade.
follow_up_notes = sa.Table(
    "follow_up_notes",
    metadata,
    sa.Column("la_code", sa.String(9), primary_key=True),
    sa.Column("delivery_id", sa.String(64), primary_key=True),
    sa.Column("health_record_id", sa.String(16), primary_key=True),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("recorded_on", sa.Date, nullable=False),
    sa.ForeignKeyConstraint(
        ["la_code", "delivery_id", "health_record_id"],
        ["retained.la_code", "retained.delivery_id", "retained.health_record_id"],
        ondelete="CASCADE",
    ),
)

# One row per resolved child, for the follow-up figures: outcome and dates only. Nothing links it
# to the child: not the delivery, not the row, so it outlives the child's deleted record.
follow_up_resolutions = sa.Table(
    "follow_up_resolutions",
    metadata,
    sa.Column("la_code", sa.String(9), primary_key=True),
    sa.Column("resolution_id", sa.String(32), primary_key=True),  # random
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("retained_on", sa.Date, nullable=False),
    sa.Column("resolved_on", sa.Date, nullable=False),
)

retained_keys = sa.Table(
    "retained_keys",
    metadata,
    sa.Column("la_code", sa.String(9), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # Set in the transaction that deletes retained rows sealed under this version: their
    # ciphertext may survive in pages or WAL, so the version must be rotated out and destroyed.
    sa.Column("shred_due", sa.Boolean, nullable=False, default=False),
    sa.Column("destroyed_at", sa.DateTime(timezone=True)),
)

review_decisions = sa.Table(
    "review_decisions",
    metadata,
    sa.Column("la_code", sa.String(9), primary_key=True),
    sa.Column("review_id", sa.String(32), primary_key=True),
    sa.Column("delivery_id", sa.String(64), nullable=False),
    sa.Column("health_record_id", sa.String(16), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
)

# Review decisions as the model saw them, for the next runs to learn from (``matching.learn``): the
# agreement level of each comparison and the decision, with the matching run and the day. No
# value, hash or record id of either record (not the review id, delivery or row of the child, nor
# the register record), so a row outlives the child's crypto-shredded data without pointing to it.
decided_pairs = sa.Table(
    "decided_pairs",
    metadata,
    sa.Column("la_code", sa.String(9), primary_key=True),
    sa.Column("decision_id", sa.String(32), primary_key=True),  # random
    sa.Column("run_id", sa.String(250), nullable=False),  # the run that sent the child to review
    sa.Column("decided_on", sa.Date, nullable=False),
    sa.Column("register", sa.String(32), nullable=False),
    *(sa.Column(f"level_{c}", sa.SmallInteger, nullable=False) for c in DECISION_PATTERN),  # -1: missing
    sa.Column("same", sa.Boolean, nullable=False),  # the officer's decision: the same child
)

# Register records the LA's latest run matched to a child on its own GP extract (ids only, the
# LA's own references): the cross-LA check leaves them out, since a pupil found here lives here,
# and another LA's unmatched child who merely shares their name and birthday must not be
# "found" on them. Replaced at every sealing.
register_claims = sa.Table(
    "register_claims",
    metadata,
    sa.Column("la_code", sa.String(9), primary_key=True),
    sa.Column("register", sa.String(32), primary_key=True),
    sa.Column("record_id", sa.String(64), primary_key=True),
)

# Children transferred between LAs (the 28-day rule): in the sending LA's store a row with no
# data ("out"); in the receiving LA's store the child's record sealed under the transfer's own
# key ("in"), until the receiving LA acknowledges it. Ids, LA codes and dates only otherwise.
transfers = sa.Table(
    "transfers",
    metadata,
    sa.Column("la_code", sa.String(9), primary_key=True),
    sa.Column("transfer_id", sa.String(32), primary_key=True),
    sa.Column("direction", sa.String(3), nullable=False),  # out | in
    sa.Column("other_la", sa.String(9), nullable=False),
    sa.Column("sent_on", sa.Date, nullable=False),
    sa.Column("acknowledged_on", sa.Date),
    sa.Column("ciphertext", sa.LargeBinary),  # "in" rows until acknowledged
)
