"""The pages' HTML: one shell, tables, and escaping of every value that goes into them.

Pages hold ids, counts, dates and states only; even so every value is escaped (``html.escape``),
because a run id, an LA directory name or a ledger line is text someone else wrote.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from urllib.parse import quote

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.2rem 1.6rem;color:#1d2733;max-width:78rem}
h1{font-size:1.35rem;margin:.2rem 0 .8rem}h2{font-size:1.1rem;margin:1.4rem 0 .5rem}
table{border-collapse:collapse;margin:.4rem 0 1rem}th,td{border:1px solid #c9d2dc;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#eef2f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#116329;font-weight:600}.bad{color:#a4061d;font-weight:600}.warn{color:#8a5a00;font-weight:600}
tr.flag td{background:#fff1f1}.muted{color:#5b6875}code{font-size:12px;word-break:break-all}
nav a{margin-right:1rem}footer{margin-top:2rem;font-size:12px;color:#5b6875}
"""


def esc(value: object) -> str:
    """``value`` as text, HTML-escaped (quotes too)."""
    return html.escape(str(value), quote=True)


def href(base: str, *parts: str) -> str:
    """A link under the app's root path ``base``, each further segment percent-encoded (``/`` too)."""
    return "/".join([base, *(quote(p, safe="") for p in parts)])


def link(url: str, text: object) -> str:
    """An escaped link."""
    return f'<a href="{esc(url)}">{esc(text)}</a>'


def status(ok: bool, good: str = "verified", bad: str = "problems") -> str:
    """A coloured status word."""
    return f'<span class="{"ok" if ok else "bad"}">{esc(good if ok else bad)}</span>'


def table(header: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: frozenset[int] = frozenset(),
          flagged: Iterable[bool] | None = None) -> str:
    """A table of already-rendered cells (escape values before, or use ``cells``).

    Args:
        header: column headings (escaped here).
        rows: rendered cells per row.
        numeric: column indexes right-aligned as numbers.
        flagged: per row, whether to highlight it.
    """
    flags = iter(flagged) if flagged is not None else None
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cls = ' class="flag"' if flags is not None and next(flags) else ""
        tds = "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr{cls}>{tds}</tr>")
    if not body:
        return '<p class="muted">None.</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def cells(*values: object) -> list[str]:
    """Escaped cells."""
    return [esc(v) for v in values]


def page(title: str, body: str, *, up: str = "") -> str:
    """A whole page.

    Args:
        title: heading and title (escaped here).
        body: rendered HTML.
        up: a relative link back to the page above, if any.
    """
    nav = f"<nav>{link(up, '← back')}</nav>" if up else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>{nav}<h1>{esc(title)}</h1>{body}"
        "<footer>cme-pipeline: ids, counts and dates only; no child's personal data is shown here.</footer>"
        "</body></html>"
    )
