"""Who may open which CME page, and the pages' app refusing before it reads anything.

The real auth managers and a real browser are in ``test_ui_pages.py``; here the decision itself
(``ui.access``), the app's 401/403/404 with a stand-in for Airflow's user dependency, and the CME
officer's form (same-origin check, all-or-nothing findings, the ledger entry) on a minimised store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from fixtures_minimise import MIN_DELIVERY, MIN_LA, MIN_RUN, MIN_TODAY, MatchedDelivery

from cme_pipeline import evidence
from cme_pipeline.config import Settings, load_settings
from cme_pipeline.evidence import ledger
from cme_pipeline.home import open_home
from cme_pipeline.la import follow_up
from cme_pipeline.la import minimise as m
from cme_pipeline.ui.access import (
    ANALYST,
    AUDITOR,
    DPO,
    OFFICER,
    PAGES,
    ROLE_PAGES,
    Page,
    admits,
    parse_roles,
)
from cme_pipeline.ui.app import CROSS_SITE, FORM_CSP, PAGE_CSP, create_app, external_views
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
    assert allowed == {"analyst": {"analyst", "officer"}, "dpo": {"dpo"}, "auditor": {"auditor", "dpo"},
                       "jo": {"dpo"}, "stranger": set()}
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
    assert [v["href"] for v in external_views()] == ["cme/dpo", "cme/auditor", "cme/analyst", "cme/officer"]


def _client(tmp_path: Path, settings: Settings | None = None) -> TestClient:
    def current_user(request: Request) -> User:
        name = request.headers.get("x-user")
        if not name:
            raise HTTPException(401, "Not authenticated")
        return User(name)

    def authorize(user: Any, target: Page) -> bool:
        return target.name in ROLE_PAGES.get(user.get_name(), frozenset())

    home = settings or load_settings(tmp_path / "home", environ={})
    today = dt.date.today() if settings else dt.date(2026, 9, 1)
    app = create_app(current_user, authorize, settings=lambda: home, today=lambda: today)
    root = FastAPI()
    root.mount("/cme", app)
    return TestClient(root)


ROUTES = {"/cme/dpo": DPO, "/cme/dpo/W06000002/manual__x": DPO, "/cme/dpo/W06000002/manual__x/report": DPO,
          "/cme/auditor": AUDITOR, "/cme/analyst": ANALYST, "/cme/officer": OFFICER}
SAME_ORIGIN = {"origin": "http://testserver"}  # the TestClient's own origin


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


def test_the_officers_form_is_refused_to_anonymous_wrong_roles_and_other_origins(tmp_path: Path) -> None:
    client = _client(tmp_path)
    form = {"la": "W06000002", "ref": "D1/r1", "outcome": "school_wales", "csv": ""}
    anonymous = client.post("/cme/officer", data=form, headers=SAME_ORIGIN)
    assert anonymous.status_code == 401 and "Log in" in anonymous.text
    for role, pages in ROLE_PAGES.items():
        if OFFICER.name not in pages:
            assert client.post("/cme/officer", data=form, headers={"x-user": role, **SAME_ORIGIN}).status_code == 403
    # The officer's own session, sent by another origin (another port of the same site keeps the
    # SameSite=Lax cookie), or with no Origin and no Referer at all: refused before the form is read.
    for headers in ({"origin": "http://testserver:8081"}, {"origin": "https://evil.example"}, {"origin": "null"},
                    {}, {"referer": "http://evil.example/cme/officer"}, {"origin": "http://testserver:notaport"}):
        refused = client.post("/cme/officer", data=form, headers={"x-user": "analyst", **headers})
        assert refused.status_code == 403 and html.escape(CROSS_SITE) in refused.text, headers
    # From its own page (Origin, or a same-origin Referer), or with a bearer token: read, and on this
    # empty home there is no such LA.
    for headers in (SAME_ORIGIN, {"referer": "http://testserver/cme/officer"}, {"authorization": "Bearer t"}):
        answered = client.post("/cme/officer", data=form, headers={"x-user": "analyst", **headers})
        assert answered.status_code == 400 and "no such LA" in answered.text, headers
        assert answered.headers["content-security-policy"] == FORM_CSP
        assert answered.headers["referrer-policy"] == "same-origin"
    not_a_form = client.post("/cme/officer", json=form, headers={"x-user": "analyst", **SAME_ORIGIN})
    assert not_a_form.status_code == 415
    assert not (tmp_path / "home" / "la").exists()


def test_pages_are_html_without_scripts_and_escape_what_they_show(tmp_path: Path) -> None:
    client = _client(tmp_path)
    for role, path in (("dpo", "/cme/dpo"), ("auditor", "/cme/auditor"), ("analyst", "/cme/analyst"),
                       ("analyst", "/cme/officer")):
        r = client.get(path, headers={"x-user": role})
        assert r.status_code == 200
        assert r.headers["content-security-policy"] == (FORM_CSP if path == "/cme/officer" else PAGE_CSP)
        assert r.headers["cache-control"] == "no-store" and "<script" not in r.text
    hostile = "<script>alert(1)</script>"
    assert hostile not in page(hostile, "".join(cells(hostile, '"onload="x')))
    assert href("/cme", "dpo", "W06000002", "manual__2026-09-01T00:00:00+00:00") == (
        "/cme/dpo/W06000002/manual__2026-09-01T00%3A00%3A00%2B00%3A00")
    assert href("/cme", "../../etc") == "/cme/..%2F..%2Fetc"


@pytest.mark.parametrize("keystore_backend", ["file"])
def test_the_officer_records_findings_all_or_nothing_and_the_dpo_sees_the_figures(
    staged_home: Settings, matched_delivery: MatchedDelivery
) -> None:
    home = open_home(staged_home)
    m.minimise(home, MIN_LA, MIN_DELIVERY, MIN_RUN, matched_delivery.outcomes, today=MIN_TODAY)
    staged_home.evidence_dir(MIN_LA).mkdir(parents=True, exist_ok=True)  # as a run leaves it
    held = m.read_retained(home, MIN_LA)
    refs = [follow_up.ref_of(d, r) for d, r in zip(held["delivery_id"], held["health_record_id"], strict=True)]
    client = _client(staged_home.home, staged_home)
    officer = {"x-user": "analyst", **SAME_ORIGIN}

    shown = client.get("/cme/officer", headers={"x-user": "analyst"}).text
    assert all(ref in shown for ref in refs) and "found at a school in Wales" in shown
    needles = [*map(str, held["nhs_number"]), *map(str, held["dob"]),
               *(f"{f} {s}" for f, s in zip(held["forename"], held["surname"], strict=True))]
    assert not [v for v in needles if v in shown] and not [s for s in held["surname"] if f">{s}<" in shown]

    def post(form: dict[str, str | list[str]]) -> tuple[int, str]:
        r = client.post("/cme/officer", data={"la": MIN_LA, "csv": "", **form}, headers=officer)
        return r.status_code, r.text

    # One bad row (the second filled) applies none; the message names its number, not the ref.
    status, text = post({"ref": [refs[0], "", "D1/r999999"], "outcome": ["school_wales", "", "school_wales"]})
    assert status == 400 and "decision 2: ref is not a child currently held" in text and "nothing was applied" in text
    assert 'data-result="refused"' in text and "D1/r999999" in text  # the rows are shown again to correct
    status, text = post({"ref": [refs[0]], "outcome": ["school_wales"], "csv": f"ref,outcome\n{refs[1]},ehe_notified\n"})
    assert status == 400 and "not both" in text
    status, text = post({"ref": [refs[0]], "outcome": [""]})
    assert status == 400 and "decision 1: give both a ref and an outcome" in text
    assert len(m.read_retained(home, MIN_LA)) == len(refs)
    assert not [e for e in ledger.read_entries(staged_home, MIN_LA) if e["event"] == "follow_up_recorded"]

    # A pasted CSV: applied whole, recorded as the CLI records it.
    pasted = f"ref,outcome\n{refs[0]},school_wales\n{refs[1]},under_enquiry\n"
    status, text = post({"ref": ["", ""], "outcome": ["", ""], "csv": pasted})
    assert status == 200 and 'data-result="recorded"' in text, text
    assert "records deleted: 1; added to the CME register (rest deleted): 0; still under enquiry: 1" in text
    left = {follow_up.ref_of(d, r) for d, r in zip(*(m.read_retained(home, MIN_LA)[c] for c in
                                                      ("delivery_id", "health_record_id")), strict=True)}
    assert refs[0] not in left and refs[1] in left and len(left) == len(refs) - 1
    assert "still under enquiry (" in text  # the note beside the child still held
    entries = [e for e in ledger.read_entries(staged_home, MIN_LA) if e["event"] == "follow_up_recorded"]
    assert len(entries) == 1 and entries[0]["facts"]["decisions_sha256"] == hashlib.sha256(pasted.encode()).hexdigest()
    assert entries[0]["facts"]["outcomes"] == {"school_wales": 1, "under_enquiry": 1}
    assert evidence.verify(staged_home, home.keys, la_codes=[MIN_LA], airflow=False).ok

    # The DPO's page: the follow-up figures the DPO report shows.
    dpo = client.get("/cme/dpo", headers={"x-user": "dpo"}).text
    assert "Follow-up of retained children" in dpo and "found at a school in Wales</td><td class=\"n\">1<" in dpo
    assert "resolved within 20 school days (initial checks expected)</td><td class=\"n\">1 of 1<" in dpo
    assert "of which noted still under enquiry</td><td class=\"n\">1<" in dpo


def test_the_dpo_run_page_shows_what_the_model_learned_from_review_decisions() -> None:
    from cme_pipeline.ui import dpo

    entries = [{"event": "minimised", "facts": {"received": 40, "matched": 30, "possible": 2, "unmatched": 8,
                                                  "retained": 10}},
               {"event": "matched", "facts": {"matched_by_register": {"school_census": 30},
                                              "review_decisions_learned_from": 212, "cleared_by_decisions": 61}}]
    shown = html.unescape(dpo._figures(dpo.run_figures("manual__x", entries)))
    assert "officers' earlier review decisions learned from</td><td class=\"n\">212<" in shown
    assert "instead of review because of them</td><td class=\"n\">61<" in shown
