"""The DPO's, auditor's, analyst's and CME officer's pages in Airflow's UI, in a real browser on a
real API server.

A home with one completed run of ``cme_matching`` (simulated delivery, ``cme run``), then the real
``airflow api-server`` on it with our plugin (``plugins/cme_pages.py``) and the embedded default's
SimpleAuthManager users. Headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven
by selenium) logs in on Airflow's own login page as ``dpo`` and sees the run's certificate
verified, then as ``auditor`` and ``analyst``, and last as ``analyst`` records on the officer's
page that one retained child was found at a school in Wales; plain HTTP checks every route refuses
anonymous requests (401) and every user whose role may not open it (403), the officer's form too,
and that the form refuses Airflow's own session cookie sent from another origin.

Screenshots go to the test's temporary directory; with ``CME_UPDATE_SCREENSHOTS=1`` also to
``docs/screenshots/`` (the README links them), so an ordinary test run leaves the tree as it was.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait
from test_airflow_ui import READY_WITHIN, Api, _free_port, stop_group

from cme_pipeline.config import Settings, load_settings
from cme_pipeline.embedded_airflow import airflow_environment
from cme_pipeline.evidence import FOLLOW_UP_RUN_PREFIX, ledger
from cme_pipeline.home import open_home
from cme_pipeline.la.follow_up import OUTCOMES, ref_of
from cme_pipeline.la.minimise import read_retained

pytestmark = pytest.mark.airflow

LA = "W06000002"  # Gwynedd
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")

# The home's one delivery, simulated, run and witnessed in a child process: `cme run` sets Airflow's
# environment for the process it runs in, which must not leak into the rest of the session.
BUILD = """
import sys
from cme_pipeline.cli import main
from cme_pipeline.config import load_settings
from cme_pipeline.simulate.wales import simulate_to_home
home, la = sys.argv[1], sys.argv[2]
simulate_to_home(load_settings(home), [la], children=300, seed=14)
assert main(["--home", home, "run", "--la", la]) == 0
sys.exit(main(["--home", home, "partner", "witness"]))  # the NHS partner cosigns the run's checkpoint
"""


@dataclass(frozen=True)
class Server:
    """The running API server, the home it serves and the completed run."""

    base: str
    settings: Settings
    run_id: str
    passwords: dict[str, str]
    shots: Path

    def token(self, user: str) -> str:
        body = json.dumps({"username": user, "password": self.passwords[user]}).encode()
        request = urllib.request.Request(self.base + "/auth/token", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(json.loads(response.read())["access_token"])

    def get(self, path: str, token: str | None = None) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self._send(urllib.request.Request(self.base + path, headers=headers))

    def post(self, path: str, form: dict[str, str], token: str | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, str]:
        """A form as a browser posts it (url-encoded), with a bearer token or the given headers."""
        sent = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        data = urllib.parse.urlencode(form).encode()
        return self._send(urllib.request.Request(self.base + path, data=data, headers=sent, method="POST"))

    @staticmethod
    def _send(request: urllib.request.Request) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(request, timeout=120) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read().decode(errors="replace")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CME_", "AIRFLOW"))}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("ui-pages")
    home = root / "home"
    settings = load_settings(home, environ={})
    built = subprocess.run([sys.executable, "-c", BUILD, str(home), LA], env=_clean_env() | {"CME_HOME": str(home)},
                           capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    run_id = next(str(e["run_id"]) for e in ledger.read_entries(settings, LA) if e["event"] == "run_completed")

    port = _free_port()
    airflow = shutil.which("airflow", path=os.path.dirname(sys.executable))
    assert airflow, "the airflow command is not installed in this environment"
    env = _clean_env() | airflow_environment(settings) | {
        "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "AIRFLOW__API__WORKERS": "1",  # one process: its tokens and the browser's cookie agree
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
    log = open(root / "api-server.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen([airflow, "api-server", "--port", str(port)], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        api = Api(port, settings)

        def serving() -> bool:
            assert process.poll() is None, (root / "api-server.log").read_text()[-3000:]
            return bool(api.call("GET", "/api/v2/version"))

        api.wait("serving", serving)
        passwords = json.loads((settings.airflow_home / "simple_auth_manager_passwords.json.generated").read_text())
        shots = root / "screenshots"
        shots.mkdir()
        yield Server(f"http://localhost:{port}", settings, run_id, passwords, shots)
    finally:
        stop_group(process)
        log.close()


def _routes(server: Server) -> dict[str, str]:
    """Every route of the app -> the page (``ui.access``) that guards it ("" for the index)."""
    run = f"/cme/dpo/{LA}/{quote(server.run_id, safe='')}"
    return {"/cme/": "", "/cme/dpo": "dpo", run: "dpo", f"{run}/report": "dpo",
            "/cme/auditor": "auditor", "/cme/analyst": "analyst", "/cme/officer": "officer"}


# Who may open which page (docs: README "The Airflow UI"; code: cme_pipeline/ui/access.py).
ADMITS = {"dpo": {"dpo"}, "auditor": {"auditor", "dpo"}, "analyst": {"analyst", "officer"},
          "admin": {"dpo", "auditor", "analyst", "officer"}}
NO_FORM = {"la": "", "ref": "", "outcome": "", "csv": ""}  # read only by a user who may post it: no such LA


def test_anonymous_requests_are_refused(server: Server) -> None:
    for path in _routes(server):
        status, body = server.get(path)
        assert status == 401, (path, status)
        assert "Log in" in body
        assert server.get(path, token="not-a-token")[0] in (401, 403), path
    status, body = server.post("/cme/officer", NO_FORM, headers={"Origin": server.base})
    assert status == 401 and "Log in" in body
    assert server.post("/cme/officer", NO_FORM, token="not-a-token")[0] in (401, 403)


def test_each_role_opens_its_pages_and_is_refused_the_others(server: Server) -> None:
    for user, pages in ADMITS.items():
        token = server.token(user)
        for path, page in _routes(server).items():
            status, _ = server.get(path, token)
            assert status == (200 if page in pages or not page else 403), (user, path, status)
        status, _ = server.post("/cme/officer", NO_FORM, token)
        assert status == (400 if "officer" in pages else 403), (user, "POST /cme/officer", status)
    assert server.get(f"/cme/dpo/{LA}/no_such_run", server.token("dpo"))[0] == 404
    assert server.get("/cme/dpo/W06000099/" + quote(server.run_id, safe=""), server.token("dpo"))[0] == 404


def test_the_officers_form_refuses_the_session_cookie_from_another_origin(server: Server) -> None:
    """Airflow's session cookie alone authenticates (``get_user``); SameSite=Lax still sends it
    from another port of the same host, so the form also wants its own page's origin."""
    cookie = {"Cookie": f"_token={server.token('analyst')}"}
    port = int(server.base.rsplit(":", 1)[1])
    for elsewhere in ({"Origin": f"http://localhost:{port + 1}"}, {"Origin": "null"}, {},
                      {"Referer": f"http://127.0.0.1:{port}/cme/officer"}):
        status, body = server.post("/cme/officer", NO_FORM, headers=cookie | elsewhere)
        assert status == 403 and "cross-site request" in body, (elsewhere, status)
    for own in ({"Origin": server.base}, {"Referer": f"{server.base}/cme/officer"}):
        assert server.post("/cme/officer", NO_FORM, headers=cookie | own)[0] == 400, own  # read: no such LA


def test_the_nav_lists_the_pages(server: Server) -> None:
    status, body = server.get("/api/v2/plugins", server.token("dpo"))
    assert status == 200
    plugin = next(p for p in json.loads(body)["plugins"] if p["name"] == "cme_pages")
    assert {v["href"] for v in plugin["external_views"]} == {"cme/dpo", "cme/auditor", "cme/analyst", "cme/officer"}
    assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/cme"]


def test_no_page_shows_a_childs_nhs_number(server: Server) -> None:
    truth = (server.settings.partner_dir / "truth" / f"{LA}.csv").read_text().splitlines()[1:]
    numbers = [line.split(",")[0] for line in truth]
    assert len(numbers) == 300
    token = server.token("admin")
    pages = "".join(server.get(path, token)[1] for path in _routes(server))
    assert "W06000002" in pages and not [n for n in numbers if n in pages]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log")),
                              options=options)
    driver.set_page_load_timeout(READY_WITHIN)
    try:
        yield driver
    finally:
        driver.quit()


def _log_in(d: WebDriver, server: Server, user: str, next_path: str) -> None:
    """Airflow's own login page, as a person uses it: name, password, Sign in; back to ``next_path``."""
    d.get(f"{server.base}/auth/login?next={quote(next_path, safe='')}")
    wait = WebDriverWait(d, READY_WITHIN)
    wait.until(ec.element_to_be_clickable((By.NAME, "username"))).send_keys(user)
    d.find_element(By.NAME, "password").send_keys(server.passwords[user])
    d.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda drv: drv.current_url.startswith(server.base + next_path.split("?")[0]))
    wait.until(ec.presence_of_element_located((By.TAG_NAME, "footer")))


def _shot(driver: WebDriver, server: Server, name: str, *, whole_page: bool = True) -> None:
    path = server.shots / f"{name}.png"
    if whole_page:  # the page as tall as it is (Chromium's DevTools), no more and no less
        size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 6000), "scale": 1}
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                                 "clip": clip})
        path.write_bytes(base64.b64decode(shot["data"]))
    else:
        assert driver.save_screenshot(str(path)), name
    assert path.read_bytes().startswith(b"\x89PNG")
    if os.environ.get("CME_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / path.name)


def test_the_dpo_sees_the_runs_certificate_verified(server: Server, browser: WebDriver) -> None:
    d = browser
    _log_in(d, server, "dpo", "/cme/dpo")
    assert "DPO" in d.title
    _shot(d, server, "dpo-runs")
    row = d.find_element(By.XPATH, f"//a[text()='{server.run_id}']")
    row.click()
    verdict = d.find_element(By.CSS_SELECTOR, "[data-verified]")
    assert verdict.get_attribute("data-verified") == "yes", verdict.text
    text = d.find_element(By.TAG_NAME, "body").text
    assert "deletion certificate: signature and agreement with the ledger verified" in text
    assert "NHS partner's witness: cosignatures of the signed checkpoints verified (1 cosigned)" in text
    assert server.run_id in text and "cme-deletion-certificate/1" in text and "records received 300" in text
    _shot(d, server, "dpo-run")
    # What a DPO meets on the analyst's page.
    d.get(f"{server.base}/cme/analyst")
    assert "403" in d.title


def test_the_auditor_sees_the_run_history_beside_the_ledger(server: Server, browser: WebDriver) -> None:
    d = browser
    _log_in(d, server, "auditor", "/cme/auditor")
    text = d.find_element(By.TAG_NAME, "body").text
    assert server.run_id in text and f"{LA}:completed" in text
    assert "Whole-home verification: verified" in text
    _shot(d, server, "auditor")


def test_the_analyst_sees_counts_only(server: Server, browser: WebDriver) -> None:
    d = browser
    _log_in(d, server, "analyst", "/cme/analyst")
    text = d.find_element(By.TAG_NAME, "body").text
    assert "awaiting clerical review (possible matches)" in text and "held in all" in text
    _shot(d, server, "analyst")
    # In Airflow's own navigation: the page framed in Airflow's UI.
    d.get(f"{server.base}/plugin/cme-analyst")
    WebDriverWait(d, READY_WITHIN).until(lambda drv: drv.find_elements(By.TAG_NAME, "iframe"))
    frame = d.find_element(By.TAG_NAME, "iframe")
    d.switch_to.frame(frame)
    WebDriverWait(d, READY_WITHIN).until(lambda drv: drv.find_elements(By.TAG_NAME, "footer"))
    d.switch_to.default_content()
    _shot(d, server, "analyst-in-airflow", whole_page=False)


def test_the_officer_records_that_a_child_was_found(server: Server, browser: WebDriver) -> None:
    """Last in this module: it deletes a child and adds a ledger entry the pages above do not expect."""
    held = read_retained(open_home(server.settings), LA)  # what `cme retained list` shows the officer
    child = held[held["outcome"] == "unmatched"].iloc[0]
    ref = ref_of(str(child["delivery_id"]), str(child["health_record_id"]))
    d = browser
    _log_in(d, server, "analyst", "/cme/officer")
    form = d.find_element(By.CSS_SELECTOR, f"form[data-la='{LA}']")
    form.find_elements(By.NAME, "ref")[0].send_keys(ref)
    Select(form.find_elements(By.NAME, "outcome")[0]).select_by_visible_text(OUTCOMES["school_wales"])
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    result = WebDriverWait(d, READY_WITHIN).until(lambda drv: drv.find_element(By.CSS_SELECTOR, "[data-result]"))
    assert result.get_attribute("data-result") == "recorded", result.text
    assert f"Recorded for {LA}: records deleted: 1;" in result.text
    _shot(d, server, "officer")

    after = read_retained(open_home(server.settings), LA)
    assert ref not in {ref_of(a, b) for a, b in zip(after["delivery_id"], after["health_record_id"], strict=True)}
    assert len(after) == len(held) - 1
    recorded = [e for e in ledger.read_entries(server.settings, LA) if e["event"] == "follow_up_recorded"]
    assert len(recorded) == 1 and recorded[0]["run_id"].startswith(FOLLOW_UP_RUN_PREFIX)
    assert recorded[0]["facts"]["outcomes"] == {"school_wales": 1}
    cme = shutil.which("cme", path=os.path.dirname(sys.executable))
    assert cme, "the cme command is not installed in this environment"
    verified = subprocess.run([cme, "--home", str(server.settings.home), "evidence", "verify", "--la", LA],
                              env=_clean_env(), capture_output=True, text=True, check=False)
    assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]
    # The page the officer saw: refs, never the delivery's NHS numbers, names or dates of birth.
    shown = d.page_source
    numbers = [line.split(",")[0] for line in
               (server.settings.partner_dir / "truth" / f"{LA}.csv").read_text().splitlines()[1:]]
    names = [f"{f} {s}" for f, s in zip(held["forename"], held["surname"], strict=True)]
    assert not [v for v in [*numbers, *names, *map(str, held["dob"])] if v in shown]
    assert not [s for s in held["surname"] if f">{s}<" in shown]
