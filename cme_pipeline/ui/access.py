"""Who may open which page: our three roles mapped onto Airflow's auth manager.

Every page is a *custom view* of the auth manager, named by ``Page.resource``; a page is shown
only to a user the auth manager authorises to ``GET`` it (``is_authorized_custom_view``):

- With the FAB auth manager (production, ``docker/``), that is a permission, ``can_read`` on
  ``CME DPO``, ``CME Auditor``, ``CME Analyst`` or ``CME Officer``, granted to the LA's roles
  (docker/README.md).
- Airflow's SimpleAuthManager (the embedded default; ``airflow standalone`` insists on it) has
  four fixed roles, viewer to admin, and lets every logged-in user see every custom view. So on
  it the pages also require the user's *CME role*, looked up by user name
  (``[cme] simple_auth_manager_roles``, by default ``analyst``, ``dpo`` and ``auditor`` are
  users of the role of the same name); Airflow's ``admin`` sees every page, as it would with FAB,
  whose Admin role holds every permission.

The auditor may open the DPO pages too: checking what the DPO is shown is part of an audit. The
CME officer's page is the analyst's (LA analysts work the retained list); its form's ``POST`` is
authorised exactly as its ``GET``: the ``CME Officer`` resource exists for nothing but recording
findings, so holding it is the permission to record them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class Page:
    """One of our pages: its path under the app, the custom view resource that guards it."""

    name: str
    title: str
    resource: str


DPO = Page("dpo", "DPO: deletion evidence", "CME DPO")
AUDITOR = Page("auditor", "Auditor: runs and evidence", "CME Auditor")
ANALYST = Page("analyst", "Analyst: review queue and retention", "CME Analyst")
OFFICER = Page("officer", "CME officer: follow-up findings", "CME Officer")
PAGES = (DPO, AUDITOR, ANALYST, OFFICER)

# CME role -> the pages it may open.
ROLE_PAGES: Mapping[str, frozenset[str]] = {
    "dpo": frozenset({DPO.name}),
    "auditor": frozenset({AUDITOR.name, DPO.name}),
    "analyst": frozenset({ANALYST.name, OFFICER.name}),
}
DEFAULT_SIMPLE_ROLES = "analyst:analyst,dpo:dpo,auditor:auditor"


class AirflowUser(Protocol):
    """What we use of an Airflow user (``BaseUser``)."""

    def get_name(self) -> str:
        """The user name."""
        ...


class CustomViewAuthority(Protocol):
    """What we use of an Airflow auth manager (``BaseAuthManager``)."""

    def is_authorized_custom_view(self, *, method: Literal["GET"], resource_name: str, user: Any) -> bool:
        """Whether ``user`` may ``method`` the custom view ``resource_name``."""
        ...


def parse_roles(spec: str) -> dict[str, str]:
    """``user:role,user:role`` -> {user: CME role}; unknown roles are refused.

    Args:
        spec: the ``[cme] simple_auth_manager_roles`` setting.

    Raises:
        ValueError: an entry is not ``user:role`` or names a role we do not have.
    """
    roles: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        user, sep, role = (s.strip() for s in part.partition(":"))
        if not sep or not user or role not in ROLE_PAGES:
            raise ValueError(f"[cme] simple_auth_manager_roles: {part!r} is not user:role with a role of {sorted(ROLE_PAGES)}")
        roles[user] = role
    return roles


def admits(authority: CustomViewAuthority, user: AirflowUser, page: Page, *,
           simple_roles: Mapping[str, str] | None = None, simple_admin: bool = False) -> bool:
    """Whether ``user`` may open ``page``.

    Args:
        authority: the auth manager.
        user: the authenticated user.
        page: the page asked for.
        simple_roles: on SimpleAuthManager, user name -> CME role (None on any other auth
            manager, whose own answer is then the whole decision).
        simple_admin: on SimpleAuthManager, whether the user has Airflow's admin role.
    """
    if not authority.is_authorized_custom_view(method="GET", resource_name=page.resource, user=user):
        return False
    if simple_roles is None or simple_admin:
        return True
    return page.name in ROLE_PAGES.get(simple_roles.get(user.get_name(), ""), frozenset())
