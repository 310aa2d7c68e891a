"""The FastAPI app Airflow's API server mounts under ``/cme`` (``plugins/cme_pages.py``).

Routes of a plugin's app inherit no authentication from Airflow: every route here depends on
``current_user`` (Airflow's ``get_user``: 401 without a valid token or session cookie) and then
on ``authorize`` for its page (403 unless ``ui.access`` admits the user). Nothing is read before
both have passed. Pages are drawn in a worker thread (FastAPI runs ``def`` routes in its pool).

The officer's form is the one route that changes anything, and Airflow's session cookie alone
authenticates a request (``get_user`` falls back to it when there is no bearer token). The cookie
is ``SameSite=Lax``, which keeps it off a POST from another *site*, but not from another origin of
the same site (another port or subdomain of the host). So a POST must also come from this server's
own page: its ``Origin`` (or, without one, its ``Referer``) must be the server's origin, as the
request reached us or as ``[api] base_url`` names it (behind a proxy); the officer's page sends
``Referrer-Policy: same-origin`` so that a browser sends them. A request that carries a bearer token is
authenticated by that token, which no other site can make a browser send, and needs no check.

Airflow loads plugins in every component, the DAG processor too, so this module imports only
FastAPI: the pages' modules (the store, pandas) are imported by the first request.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the dependencies from the route
# functions' annotations, and those name closures (``current_user``) a string could not resolve.

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from cme_pipeline.config import Settings, load_settings
from cme_pipeline.ui.access import ANALYST, AUDITOR, DPO, OFFICER, PAGES, Page
from cme_pipeline.ui.html import href, link, page

URL_PREFIX = "/cme"
# Our pages: no script at all, styles inline, framed only by Airflow's own UI (same origin).
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
# The officer's page posts its form to itself: a same-origin form action, and the same-origin
# Origin/Referer the POST is checked by (with "no-referrer" a browser sends "Origin: null").
FORM_CSP = PAGE_CSP.replace("form-action 'none'", "form-action 'self'")
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
FORM_HEADERS = {**HEADERS, "Referrer-Policy": "same-origin"}
REFUSALS = {401: "Log in to Airflow to see this page.", 403: "Your role may not open this page.",
            404: "There is no such page, LA or run."}
CROSS_SITE = "The form was not sent from this server's own page, so it was refused (cross-site request)."
NOT_A_FORM = "Send the form from the officer's page."
TOO_LARGE = "The form is too large: send at most 1 MiB of decisions at once."
OWN_DETAILS = frozenset({CROSS_SITE, NOT_A_FORM, TOO_LARGE})
MAX_FORM_BYTES = 1 << 20


def create_app(current_user: Callable[..., Any], authorize: Callable[[Any, Page], bool],
               login_url: Callable[[str], str] = lambda _next: "/", settings: Callable[[], Settings] = load_settings,
               today: Callable[[], dt.date] = dt.date.today,
               trusted_origins: Callable[[], Iterable[str]] = tuple) -> FastAPI:
    """The pages' app.

    Args:
        current_user: a FastAPI dependency that returns the authenticated user or raises 401/403;
            given a bearer token it must authenticate by it alone, as Airflow's ``get_user`` does
            (the officer's form trusts such a request without the same-origin check).
        authorize: whether a user may open a page (called in a worker thread).
        login_url: the auth manager's login page, given where to come back to.
        settings: the home's settings, read per request (``CME_HOME`` in the API server's env).
        today: the day retention is judged by (and the officer's findings are dated).
        trusted_origins: origins besides the request's own a form may be posted from (Airflow's
            ``[api] base_url``, when a proxy in front changes the scheme or host).
    """
    app = FastAPI(title="cme-pipeline pages", docs_url=None, redoc_url=None, openapi_url=None)

    def guard(target: Page) -> Callable[..., Any]:
        def allowed(user: Annotated[Any, Depends(current_user)]) -> Any:
            if not authorize(user, target):
                raise HTTPException(403, "Forbidden")
            return user
        return allowed

    def any_page(user: Annotated[Any, Depends(current_user)]) -> list[Page]:
        mine = [p for p in PAGES if authorize(user, p)]
        if not mine:
            raise HTTPException(403, "Forbidden")
        return mine

    def same_origin(request: Request) -> None:
        """A state-changing request is refused unless a bearer token or this server's page sent it."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return  # get_user authenticates by the token, never the cookie, when one is given
        sent = request.headers.get("origin", "")
        if sent in ("", "null"):
            sent = request.headers.get("referer", "")
        ours = {_origin(str(request.base_url)), *(_origin(o) for o in trusted_origins())}
        if not sent or _origin(sent) not in ours:
            raise HTTPException(403, CROSS_SITE)

    @app.exception_handler(StarletteHTTPException)
    async def refused(request: Request, exc: StarletteHTTPException) -> Response:
        text = exc.detail if isinstance(exc.detail, str) and exc.detail in OWN_DETAILS else REFUSALS.get(exc.status_code, "The page could not be shown.")
        extra = ""
        if exc.status_code == 401:
            extra = f"<p>{link(login_url(str(request.url)), 'Log in')}</p>"
        return _html(page(f"{exc.status_code}: {text}", extra), exc.status_code)

    @app.get("/", response_class=HTMLResponse)
    def home_page(request: Request, mine: Annotated[list[Page], Depends(any_page)]) -> Response:
        base = _base(request)
        items = "".join(f"<li>{link(href(base, p.name), p.title)}</li>" for p in mine)
        return _html(page("CME pages", f"<ul>{items}</ul>"))

    @app.get("/dpo", response_class=HTMLResponse, dependencies=[Depends(guard(DPO))])
    def dpo_index(request: Request) -> Response:
        from cme_pipeline.home import open_home
        from cme_pipeline.la.follow_up import report_summary
        from cme_pipeline.ui import dpo
        from cme_pipeline.ui.analyst import las_with_store

        s = settings()
        home, day = open_home(s), today()
        follow_up = {la: report_summary(home, la, day) for la in las_with_store(s)}
        return _html(dpo.index(s, home.keys, _base(request), follow_up))

    @app.get("/dpo/{la_code}/{run_id}", response_class=HTMLResponse, dependencies=[Depends(guard(DPO))])
    def dpo_run(request: Request, la_code: str, run_id: str) -> Response:
        from cme_pipeline.home import open_home
        from cme_pipeline.ui import dpo

        s = settings()
        body = dpo.run_page(s, open_home(s).keys, _base(request), la_code, run_id)
        if body is None:
            raise HTTPException(404, "Not Found")
        return _html(body)

    @app.get("/dpo/{la_code}/{run_id}/report", response_class=HTMLResponse, dependencies=[Depends(guard(DPO))])
    def dpo_report(la_code: str, run_id: str) -> Response:
        from cme_pipeline.evidence import files
        from cme_pipeline.evidence.verify import evidence_las

        s = settings()
        path = files.report_file(s, la_code, run_id)  # the file name is a hash of the run id: no traversal
        if la_code not in evidence_las(s) or not path.is_file():
            raise HTTPException(404, "Not Found")
        return _html(path.read_text(encoding="utf-8"))

    @app.get("/auditor", response_class=HTMLResponse, dependencies=[Depends(guard(AUDITOR))])
    def auditor_page(request: Request) -> Response:
        from cme_pipeline.home import open_home
        from cme_pipeline.ui import auditor

        s = settings()
        return _html(auditor.render(s, open_home(s).keys, _base(request)))

    @app.get("/analyst", response_class=HTMLResponse, dependencies=[Depends(guard(ANALYST))])
    def analyst_page() -> Response:
        from cme_pipeline.home import open_home
        from cme_pipeline.ui import analyst

        return _html(analyst.render(open_home(settings()), today()))

    @app.get("/officer", response_class=HTMLResponse, dependencies=[Depends(guard(OFFICER))])
    def officer_page(request: Request) -> Response:
        from cme_pipeline.home import open_home
        from cme_pipeline.ui import officer

        return _html(officer.render(open_home(settings()), _base(request), today()), form=True)

    @app.post("/officer", response_class=HTMLResponse,
              dependencies=[Depends(guard(OFFICER)), Depends(same_origin)])  # in this order: 401, 403, then origin
    async def officer_findings(request: Request) -> Response:
        form = await _form(request)

        def answer() -> tuple[str, bool]:
            from cme_pipeline.home import open_home
            from cme_pipeline.ui import officer

            home, day = open_home(settings()), today()
            done = officer.apply(home, _one(form, "la"), form.get("ref", []), form.get("outcome", []),
                                 _one(form, "csv"), day)
            return officer.render(home, _base(request), day, done), done.ok

        body, ok = await run_in_threadpool(answer)  # the store, key rotation and ledger: off the event loop
        return _html(body, 200 if ok else 400, form=True)

    return app


async def _form(request: Request) -> dict[str, list[str]]:
    """The url-encoded form of a POST, read up to ``MAX_FORM_BYTES`` (no multipart parser needed)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise HTTPException(415, NOT_A_FORM)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, TOO_LARGE)
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                        max_num_fields=10_000)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, NOT_A_FORM) from None


def _one(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name) or [""]
    return values[0]


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL or an ``Origin`` value, lower-cased, default port dropped."""
    try:
        parts = urlsplit(url.strip())
        scheme, host, port = (parts.scheme or "").lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:  # a port that is not a number
        return ""
    if not scheme or not host:
        return ""
    if ":" in host:
        host = f"[{host}]"  # IPv6
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _base(request: Request) -> str:
    """Where this app is mounted (``/cme``, after any base URL of Airflow's)."""
    return str(request.scope.get("root_path", "")).rstrip("/") or URL_PREFIX


def _html(body: str, status_code: int = 200, *, form: bool = False) -> HTMLResponse:
    headers = {**FORM_HEADERS, "Content-Security-Policy": FORM_CSP} if form else {**HEADERS, "Content-Security-Policy": PAGE_CSP}
    return HTMLResponse(body, status_code=status_code, headers=headers)


def airflow_app() -> FastAPI:
    """The app wired to the running Airflow's auth manager.

    Cheap to build: Airflow's API modules are imported on the first request, not when a
    scheduler or task process loads the plugin and never serves a page.
    """
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

    bearer = HTTPBearer(auto_error=False)

    async def current_user(request: Request,
                           credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Any:
        from airflow.api_fastapi.core_api.security import get_user

        return await get_user(request, None, credentials)  # a bearer token, else the UI's session cookie

    def authorize(user: Any, target: Page) -> bool:
        from airflow.api_fastapi.app import get_auth_manager
        from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
        from airflow.configuration import conf

        from cme_pipeline.ui.access import DEFAULT_SIMPLE_ROLES, admits, parse_roles

        manager = get_auth_manager()
        if not isinstance(manager, SimpleAuthManager):
            return admits(manager, user, target)
        roles = parse_roles(conf.get("cme", "simple_auth_manager_roles", fallback=DEFAULT_SIMPLE_ROLES))
        is_admin = str(getattr(user, "role", "") or "").upper() == "ADMIN"
        return admits(manager, user, target, simple_roles=roles, simple_admin=is_admin)

    def login_url(next_url: str) -> str:
        from airflow.api_fastapi.app import get_auth_manager

        return str(get_auth_manager().get_url_login(next_url=next_url))

    def trusted_origins() -> tuple[str, ...]:
        from airflow.configuration import conf

        base_url = conf.get("api", "base_url", fallback="") or ""
        return (base_url,) if base_url.startswith(("http://", "https://")) else ()

    return create_app(current_user, authorize, login_url, trusted_origins=trusted_origins)


def external_views() -> list[dict[str, str]]:
    """Airflow's navigation entries for the pages (shown in its UI, each page in a frame)."""
    return [{"name": p.title, "href": f"{URL_PREFIX.lstrip('/')}/{p.name}", "url_route": f"cme-{p.name}",
             "destination": "nav", "category": "CME"} for p in PAGES]


__all__ = ["URL_PREFIX", "airflow_app", "create_app", "external_views"]
