"""The LA's privacy notice (UK GDPR Articles 13 and 14), in English and Welsh, from configuration.

Generated, like the record of processing (``evidence/ropa.py``), so that it cannot drift from what
the pipeline does: the categories are the health extract's data contract, the periods are the
settings. The LA's contact details come from its own ``notice.toml``: code cannot know them, and a
placeholder in a notice published to families would be worse than no notice, so a missing or
empty key refuses the notice. The wording itself lives in ``la/notice_text.py``.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cme_pipeline.areas import LA_NAMES
from cme_pipeline.config import Settings
from cme_pipeline.errors import ConfigError, UsageError
from cme_pipeline.la.notice_text import (
    DAYS_LABELS,
    FIELD_CATEGORIES,
    LA_NAMES_CY,
    LANGUAGES,
    REGISTER_NAMES,
    WORDING,
    Language,
)
from cme_pipeline.schemas import HEALTH_EXTRACT_FIELDS, REGISTER_SOURCES

REQUIRED_KEYS: Final = ("controller_contact", "dpo_name", "dpo_email", "dpo_address")
OPTIONAL_KEYS: Final = ("controller_name", "cme_officer_contact")
# Keys that may have a Welsh form under ``[cy]``; an email address is the same in both languages.
WELSH_KEYS: Final = ("controller_name", "controller_contact", "cme_officer_contact", "dpo_name", "dpo_address")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_MARKDOWN_SPECIAL = re.compile(r"[\\`*_\[\]<>|#]")

Item = tuple[str, str]  # (label, text); an empty label makes a plain bullet
Block = str | tuple[Item, ...]  # a paragraph, or a bulleted list


@dataclass(frozen=True)
class NoticeConfig:
    """The LA's contact details for its notice, as ``notice.toml`` gives them.

    ``welsh`` holds Welsh forms of ``WELSH_KEYS`` where the LA has them; the Welsh notice uses
    the English value otherwise (an address or a name is often the same).
    """

    controller_contact: str
    dpo_name: str
    dpo_email: str
    dpo_address: str
    controller_name: str | None = None
    cme_officer_contact: str | None = None
    welsh: dict[str, str] = field(default_factory=dict)

    def value(self, key: str, language: Language) -> str | None:
        """The value of ``key`` for a notice in ``language``."""
        if language == "cy" and key in self.welsh:
            return self.welsh[key]
        found: str | None = getattr(self, key)
        return found


@dataclass(frozen=True)
class Notice:
    """A rendered notice's structure: plain text, escaped only by the Markdown or HTML writer."""

    language: Language
    title: str
    sections: tuple[tuple[str, tuple[Block, ...]], ...]  # (heading, blocks); "" heads the lead


def config_path(settings: Settings, la_code: str) -> Path:
    """Where an LA's notice settings live by default: ``la/<code>/notice.toml``."""
    return settings.la_dir(la_code) / "notice.toml"


def load_notice_config(path: Path) -> NoticeConfig:
    """Read and check an LA's ``notice.toml``.

    Args:
        path: the TOML file.

    Raises:
        UsageError: one line naming the file and the key that is missing, empty, unknown or of
            the wrong type (never its value).
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no privacy notice settings at {path} (`cme notice --example-config` prints a "
                         "template)") from None
    except (OSError, UnicodeDecodeError):
        raise UsageError(f"{path} is not a readable UTF-8 file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML ({exc})") from None
    welsh_table = raw.pop("cy", {})
    if not isinstance(welsh_table, dict):
        raise UsageError(f"cy in {path} must be a table ([cy])")
    values = _strings(raw, REQUIRED_KEYS + OPTIONAL_KEYS, path, "")
    welsh = _strings(welsh_table, WELSH_KEYS, path, "cy.")
    for key in REQUIRED_KEYS:
        if key not in values:
            raise UsageError(f"{key} is missing from {path}")
    if not _EMAIL.fullmatch(values["dpo_email"]):
        raise UsageError(f"dpo_email in {path} is not an email address")
    return NoticeConfig(**values, welsh=welsh)


def _strings(table: dict[str, object], allowed: tuple[str, ...], path: Path, prefix: str) -> dict[str, str]:
    """Check a TOML table's keys and values; addresses may span lines, joined here with commas."""
    values: dict[str, str] = {}
    for key, value in table.items():
        if key not in allowed:
            raise UsageError(f"{prefix}{key} in {path} is not a notice setting (expected {', '.join(allowed)})")
        if not isinstance(value, str):
            raise UsageError(f"{prefix}{key} in {path} must be a string")
        text = ", ".join(line.strip().rstrip(",") for line in value.splitlines() if line.strip())
        if not text:
            raise UsageError(f"{prefix}{key} in {path} is empty")
        values[key] = text
    return values


def example_config(settings: Settings, la_code: str) -> str:
    """A commented ``notice.toml`` to fill in: valid TOML, refused until its values are filled."""
    area = _area(la_code, "en")
    default = WORDING["en"]["default_controller"].format(area=area)
    return f"""\
# Privacy notice settings of {area} ({la_code}), read by `cme notice --la {la_code}`.
# Save as {config_path(settings, la_code)}
# and fill in every value. An empty value is refused: the notice is published to families,
# so it must never carry a placeholder.

# The controller's name as the notice should give it (optional; default "{default}").
# controller_name = ""

# How to contact the council about this processing: address, telephone, web page.
controller_contact = ""

# The Data Protection Officer: name (or role), email and postal address. An address may be a
# multi-line string (\"\"\"...\"\"\"): its lines are joined with commas.
dpo_name = ""
dpo_email = ""
dpo_address = ""

# The Children Missing Education team (optional).
# cme_officer_contact = ""

# Welsh forms, where they differ from the English (optional; the email address is shared).
[cy]
# controller_name = ""
# controller_contact = ""
# cme_officer_contact = ""
# dpo_name = ""
# dpo_address = ""
"""


def build_notice(settings: Settings, la_code: str, config: NoticeConfig, language: Language,
                 *, issued: dt.date | None = None) -> Notice:
    """The notice's structure, with every figure taken from ``settings`` and contact from ``config``.

    Args:
        settings: the pipeline's settings (retention, review and quarantine periods, register age).
        la_code: the LA's ONS code.
        config: the LA's contact details.
        language: ``en`` or ``cy``.
        issued: the date printed on the notice (default today).
    """
    if language not in LANGUAGES:
        raise UsageError(f"language {language} refused: it must be one of {', '.join(LANGUAGES)}")
    words = WORDING[language]
    area = _area(la_code, language)
    facts = {
        "area": area,
        "controller": config.value("controller_name", language) or words["default_controller"].format(area=area),
        "issued": (issued or dt.date.today()).isoformat(),
        "dpo_name": config.value("dpo_name", language) or "",
        "dpo_email": config.dpo_email,
        "dpo_address": config.value("dpo_address", language) or "",
        "retention_days": str(settings.retention_days),
        "review_days": str(settings.review_days),
        "quarantine_days": str(settings.quarantine_days),
        "register_max_days": str(settings.register_max_days),
    }

    def say(key: str) -> str:
        return words[key].format(**facts)

    def bullets(*keys: str) -> tuple[Item, ...]:
        return tuple(("", say(k)) for k in keys)

    contact: list[Item] = [(say("l_contact"), config.value("controller_contact", language) or "")]
    officer = config.value("cme_officer_contact", language)
    if officer:
        contact.append((say("l_cme_officer"), officer))
    dpo: tuple[Item, ...] = ((say("l_name"), facts["dpo_name"]), (say("l_email"), facts["dpo_email"]),
                             (say("l_address"), facts["dpo_address"]))
    # Each configured period behind its label, so the figure can be read back and checked.
    periods = ((say("l_matched"), say("matched")),
               *((label, say(setting)) for setting, label in DAYS_LABELS[language].items()))
    rights = tuple((say(f"l_{r}"), say(r))
                   for r in ("access", "rectification", "erasure", "restriction", "objection", "complaint"))
    sections: list[tuple[str, tuple[Block, ...]]] = [
        ("", (say("issued"), say("lead"))),
        (say("h_controller"), (say("controller"), tuple(contact))),
        (say("h_dpo"), (dpo, say("dpo"))),
        (say("h_purpose"), (say("purpose"), tuple(("", r) for r in _registers(language)), say("purpose_outcome"))),
        (say("h_legal"), (bullets("legal_gdpr", "legal_436a", "legal_regulations"),)),
        (say("h_source"), (say("source"),)),
        (say("h_categories"), (say("categories"), tuple(("", c) for c in _categories(language)),
                               say("categories_not"))),
        (say("h_recipients"), (bullets("recipients_officers", "recipients_dpo", "recipients_none"),)),
        (say("h_matching"), (say("matching"),)),
        (say("h_retention"), (say("retention"), periods)),
        (say("h_rights"), (say("rights"), rights, say("exercise"))),
        (say("h_complaints"), (say("complaints"),)),
    ]
    return Notice(language, say("title"), tuple(sections))


def render_notice(settings: Settings, la_code: str, config: NoticeConfig, language: Language,
                  *, issued: dt.date | None = None) -> str:
    """The notice as Markdown (arguments as for ``build_notice``)."""
    notice = build_notice(settings, la_code, config, language, issued=issued)
    lines = [f"# {_markdown(notice.title)}"]
    for heading, blocks in notice.sections:
        if heading:
            lines += ["", f"## {_markdown(heading)}"]
        for block in blocks:
            lines.append("")
            if isinstance(block, str):
                lines.append(_markdown(block))
            else:
                lines += [f"- **{_markdown(label)}:** {_markdown(text)}" if label else f"- {_markdown(text)}"
                          for label, text in block]
    return "\n".join(lines) + "\n"


def render_notice_html(settings: Settings, la_code: str, config: NoticeConfig, language: Language,
                       *, issued: dt.date | None = None) -> str:
    """The notice as a standalone HTML page (arguments as for ``build_notice``)."""
    notice = build_notice(settings, la_code, config, language, issued=issued)

    def esc(text: str) -> str:
        return html.escape(text, quote=False)  # text content only: apostrophes stay readable

    parts = [f'<!DOCTYPE html>\n<html lang="{language}"><head><meta charset="utf-8">'
             f"<title>{esc(notice.title)}</title></head><body>", f"<h1>{esc(notice.title)}</h1>"]
    for heading, blocks in notice.sections:
        if heading:
            parts.append(f"<h2>{esc(heading)}</h2>")
        for block in blocks:
            if isinstance(block, str):
                parts.append(f"<p>{esc(block)}</p>")
            else:
                items = "".join(f"<li><strong>{esc(label)}:</strong> {esc(text)}</li>" if label
                                else f"<li>{esc(text)}</li>" for label, text in block)
                parts.append(f"<ul>{items}</ul>")
    return "\n".join(parts) + "\n</body></html>\n"


def _area(la_code: str, language: Language) -> str:
    """The principal area's name in the notice's language."""
    if la_code not in LA_NAMES:
        raise UsageError(f"LA {la_code} is not the ONS code of a Welsh principal area")
    return LA_NAMES_CY[la_code] if language == "cy" else LA_NAMES[la_code]


def _categories(language: Language) -> list[str]:
    """What the extract holds, from its data contract; a field without a description stops the
    notice, since a notice must never understate what is received."""
    described: list[str] = []
    for f in HEALTH_EXTRACT_FIELDS:
        text = FIELD_CATEGORIES[language].get(f.name)
        if text is None:
            raise ConfigError(f"health extract field {f.name} has no description in la/notice_text.py")
        if text not in described:
            described.append(text)
    return described


def _registers(language: Language) -> list[str]:
    """The registers matched against, from the data contract."""
    missing = [s for s in REGISTER_SOURCES if s not in REGISTER_NAMES[language]]
    if missing:
        raise ConfigError(f"register {missing[0]} has no name in la/notice_text.py")
    return [REGISTER_NAMES[language][s] for s in REGISTER_SOURCES]


def _markdown(text: str) -> str:
    """Escape Markdown syntax, so a configured value shows as typed and cannot inject markup."""
    return _MARKDOWN_SPECIAL.sub(lambda m: "\\" + m.group(0), text)
