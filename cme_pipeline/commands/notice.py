"""``cme notice``: the LA's privacy notice in English and Welsh, from its settings (LA side)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cme_pipeline.config import Settings
from cme_pipeline.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cme notice``."""
    p = sub.add_parser("notice", help="write the LA's privacy notice (UK GDPR Articles 13 and 14), English and Welsh")
    p.add_argument("--la", required=True, help="the LA's ONS code")
    p.add_argument("--config", type=Path, help="the LA's notice settings (TOML; default: la/<code>/notice.toml)")
    p.add_argument("--out", type=Path, help="directory for the notices (default: la/<code>/notices/)")
    p.add_argument("--example-config", action="store_true", help="print a commented notice.toml to fill in, and stop")
    p.set_defaults(handler=run_notice)


def run_notice(args: argparse.Namespace, settings: Settings) -> int:
    """Write ``privacy-notice-{en,cy}.{md,html}`` (0600); print each path."""
    import datetime as dt

    from cme_pipeline.commands.review import one_la
    from cme_pipeline.durable import write_atomic
    from cme_pipeline.la.notice import (
        LANGUAGES,
        config_path,
        example_config,
        load_notice_config,
        render_notice,
        render_notice_html,
    )

    la_code = one_la(args.la)
    if args.example_config:
        sys.stdout.write(example_config(settings, la_code))
        return 0
    source: Path = args.config or config_path(settings, la_code)
    if not source.exists():
        raise UsageError(f"no privacy notice settings at {source}: `cme notice --la {la_code} --example-config` "
                         "prints a template to fill in")
    config = load_notice_config(source)
    out: Path = args.out or settings.la_dir(la_code) / "notices"
    issued = dt.date.today()
    # Render everything before writing anything: a refused notice leaves the old ones in place.
    pages = {
        out / f"privacy-notice-{language}{suffix}": render(settings, la_code, config, language, issued=issued)
        for language in LANGUAGES
        for suffix, render in ((".md", render_notice), (".html", render_notice_html))
    }
    for path, text in pages.items():
        try:
            write_atomic(path, text.encode("utf-8"))
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or 'error'}") from None
        sys.stdout.write(f"{path}\n")
    return 0
