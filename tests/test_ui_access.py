"""Who may open which CME page, and the pages' app refusing before it reads anything.

The real auth managers and a real browser are in ``test_ui_pages.py``; here the decision itself
(``ui.access``) and the app's 401/403/404 with a stand-in for Airflow's user dependency.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

from cme_pipeline.config import load_settings
from cme_pipeline.ui.access import (
    ANALYST,
    AUDITOR,
    DPO,
    PAGES,
    ROLE_PAGES,
    Page,
    admits,
    parse_roles,
)
from cme_pipeline.ui.app import PAGE_CSP, create_app, external_views
from cme_pipeline.ui.html import cells, href, page


class User:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_name(self) -> str:
        return self.name


class Simple:
    """SimpleAuthManager's answer for custom views: every logged-in user."""

    def is_authorized_custom_view(self, *, method: str, resource_name: str, user: Any) -> bool:
        return True


class Permissions:
    """FAB's answer: ``can_read`` on the resource, granted to the user's roles."""

    def __init__(self, granted: dict[str, set[str]]) -> None:
        self.granted = granted

    def is_authorized_custom_view(self, *, method: str, resource_name: str, user: Any) -> bool:
        return method == "GET" and resource_name in self.granted.get(user.get_name(), set())


def test_on_simple_auth_manager_the_cme_role_decides() -> None:
    roles = parse_roles("analyst:analyst,dpo:dpo,auditor:auditor,jo:dpo")
    allowed = {name: {p.name for p in PAGES if admits(Simple(), User(name), p, simple_roles=roles)}
               for name in ("analyst", "dpo", "auditor", "jo", "stranger")}
    assert allowed == {"analyst": {"analyst"}, "dpo": {"dpo"}, "auditor": {"auditor", "dpo"}, "jo": {"dpo"},
                       "stranger": set()}
    assert all(admits(Simple(), User("admin"), p, simple_roles=roles, simple_admin=True) for p in PAGES)


def test_on_any_other_auth_manager_its_permission_decides() -> None:
    fab = Permissions({"dpo": {"CME DPO"}, "auditor": {"CME Auditor", "CME DPO"}})
    assert [p.name for p in PAGES if admits(fab, User("dpo"), p)] == ["dpo"]
    assert [p.name for p in PAGES if admits(fab, User("auditor"), p)] == ["dpo", "auditor"]
    assert not any(admits(fab, User("analyst"), p) for p in PAGES)
    # SimpleAuthManager's roles do not leak into another manager's decision
    assert not admits(fab, User("analyst"), ANALYST, simple_roles=None)


@pytest.mark.parametrize("spec", ["dpo", "dpo:", ":dpo", "dpo:superuser", "dpo:dpo,bob:admin"])
def test_a_bad_role_mapping_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="simple_auth_manager_roles"):
        parse_roles(spec)


def test_every_role_and_page_is_known() -> None:
    assert {r for pages in ROLE_PAGES.values() for r in pages} == {p.name for p in PAGES}
    assert [v["href"] for v in external_views()] == ["cme/dpo", "cme/auditor", "cme/analyst"]


def _client(tmp_path: Path) -> TestClient:
    def current_user(request: Request) -> User:
        name = request.headers.get("x-user")
        if not name:
            raise HTTPException(401, "Not authenticated")
        return User(name)

    def authorize(user: Any, target: Page) -> bool:
        return target.name in ROLE_PAGES.get(user.get_name(), frozenset())

    settings = load_settings(tmp_path / "home", environ={})
    app = create_app(current_user, authorize, settings=lambda: settings, today=lambda: dt.date(2026, 9, 1))
    root = FastAPI()
    root.mount("/cme", app)
    return TestClient(root)


ROUTES = {"/cme/dpo": DPO, "/cme/dpo/W06000002/manual__x": DPO, "/cme/dpo/W06000002/manual__x/report": DPO,
          "/cme/auditor": AUDITOR, "/cme/analyst": ANALYST}


def test_the_app_refuses_anonymous_and_wrong_roles_before_reading(tmp_path: Path) -> None:
    client = _client(tmp_path)
    for path, target in ROUTES.items():
        anonymous = client.get(path)
        assert anonymous.status_code == 401 and "Log in" in anonymous.text, path
        for role, pages in ROLE_PAGES.items():
            got = client.get(path, headers={"x-user": role}).status_code
            if target.name not in pages:
                assert got == 403, (path, role)
            else:
                assert got in (200, 404), (path, role)  # an empty home: no such LA or run
    assert client.get("/cme/", headers={"x-user": "nobody"}).status_code == 403
    assert not (tmp_path / "home" / "la").exists()  # refused or empty, nothing was created


def test_pages_are_html_without_scripts_and_escape_what_they_show(tmp_path: Path) -> None:
    client = _client(tmp_path)
    for role, path in (("dpo", "/cme/dpo"), ("auditor", "/cme/auditor"), ("analyst", "/cme/analyst")):
        r = client.get(path, headers={"x-user": role})
        assert r.status_code == 200 and r.headers["content-security-policy"] == PAGE_CSP
        assert r.headers["cache-control"] == "no-store" and "<script" not in r.text
    hostile = "<script>alert(1)</script>"
    assert hostile not in page(hostile, "".join(cells(hostile, '"onload="x')))
    assert href("/cme", "dpo", "W06000002", "manual__2026-09-01T00:00:00+00:00") == (
        "/cme/dpo/W06000002/manual__2026-09-01T00%3A00%3A00%2B00%3A00")
    assert href("/cme", "../../etc") == "/cme/..%2F..%2Fetc"
