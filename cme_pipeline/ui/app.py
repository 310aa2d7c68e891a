"""The FastAPI app Airflow's API server mounts under ``/cme`` (``plugins/cme_pages.py``).

Routes of a plugin's app inherit no authentication from Airflow: every route here depends on
``current_user`` (Airflow's ``get_user``: 401 without a valid token or session cookie) and then
on ``authorize`` for its page (403 unless ``ui.access`` admits the user). Nothing is read before
both have passed. Pages are drawn in a worker thread (FastAPI runs ``def`` routes in its pool).

Airflow loads plugins in every component, the DAG processor too, so this module imports only
FastAPI: the pages' modules (the store, pandas) are imported by the first request.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the dependencies from the route
# functions' annotations, and those name closures (``current_user``) a string could not resolve.

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from cme_pipeline.config import Settings, load_settings
from cme_pipeline.ui.access import ANALYST, AUDITOR, DPO, PAGES, Page
from cme_pipeline.ui.html import href, link, page

URL_PREFIX = "/cme"
# Our pages: no script at all, styles inline, framed only by Airflow's own UI (same origin).
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
REFUSALS = {401: "Log in to Airflow to see this page.", 403: "Your role may not open this page.",
            404: "There is no such page, LA or run."}


def create_app(current_user: Callable[..., Any], authorize: Callable[[Any, Page], bool],
               login_url: Callable[[str], str] = lambda _next: "/", settings: Callable[[], Settings] = load_settings,
               today: Callable[[], dt.date] = dt.date.today) -> FastAPI:
    """The pages' app.

    Args:
        current_user: a FastAPI dependency that returns the authenticated user or raises 401/403.
        authorize: whether a user may open a page (called in a worker thread).
        login_url: the auth manager's login page, given where to come back to.
        settings: the home's settings, read per request (``CME_HOME`` in the API server's env).
        today: the day retention is judged by.
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

    @app.exception_handler(StarletteHTTPException)
    async def refused(request: Request, exc: StarletteHTTPException) -> Response:
        text = REFUSALS.get(exc.status_code, "The page could not be shown.")
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
        from cme_pipeline.ui import dpo

        s = settings()
        return _html(dpo.index(s, open_home(s).keys, _base(request)))

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

    return app


def _base(request: Request) -> str:
    """Where this app is mounted (``/cme``, after any base URL of Airflow's)."""
    return str(request.scope.get("root_path", "")).rstrip("/") or URL_PREFIX


def _html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers={**HEADERS, "Content-Security-Policy": PAGE_CSP})


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

    return create_app(current_user, authorize, login_url)


def external_views() -> list[dict[str, str]]:
    """Airflow's navigation entries for the pages (shown in its UI, each page in a frame)."""
    return [{"name": p.title, "href": f"{URL_PREFIX.lstrip('/')}/{p.name}", "url_route": f"cme-{p.name}",
             "destination": "nav", "category": "CME"} for p in PAGES]


__all__ = ["URL_PREFIX", "airflow_app", "create_app", "external_views"]
