"""Create the CME roles of the FAB auth manager and their page permissions (run by airflow-init).

Airflow's FAB auth manager answers a plugin page's ``is_authorized_custom_view`` from a
permission, ``can_read`` on the page's resource (``CME DPO``, ``CME Auditor``, ``CME Analyst``,
``CME Officer``: the CME officer's page, whose form records follow-up findings).
No part of Airflow creates those resources, and ``airflow roles add-perms`` refuses a resource that
does not exist, so this script creates them, one FAB role per CME role holding the pages that role
may open (``cme_pipeline.ui.access``, the same table the embedded default uses), and gives them to
Admin too. Idempotent: run on every ``docker compose up``; it only ever adds.

A person gets two roles: Airflow's own (``User`` for an analyst, ``Viewer`` for a DPO or an
auditor) and one of these (docker/README.md, "Roles").

    python docker/fab_roles.py        # with the Airflow environment of the compose file
"""

from __future__ import annotations

from cme_pipeline.ui.access import PAGES, ROLE_PAGES

# FAB role -> CME role (ui.access.ROLE_PAGES). FAB's own Admin, Op, User, Viewer, Public stay as they are.
FAB_ROLES = {"Analyst": "analyst", "DPO": "dpo", "Auditor": "auditor"}
READ = "can_read"


def role_permissions() -> dict[str, list[tuple[str, str]]]:
    """FAB role -> its (action, resource) permissions on our pages."""
    resource = {p.name: p.resource for p in PAGES}
    return {fab: sorted((READ, resource[page]) for page in ROLE_PAGES[cme]) for fab, cme in FAB_ROLES.items()}


def main() -> int:
    """Create what is missing; print one line per role."""
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    with get_application_builder() as appbuilder:
        sm = appbuilder.sm
        admin = sm.find_role("Admin")
        for name, perms in role_permissions().items():
            role = sm.find_role(name) or sm.add_role(name)
            for action, resource in perms:
                permission = sm.create_permission(action, resource)  # creates the resource if missing
                sm.add_permission_to_role(role, permission)
                if admin is not None:
                    sm.add_permission_to_role(admin, permission)
            print(f"role {name}: " + ", ".join(f"{a} on {r}" for a, r in perms))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
