"""Which roles pgprov may manage, decided from the spec and the snapshot (no server)."""

from __future__ import annotations

import dataclasses

import pytest
from pgprov.access.roles import MANAGED_MARK, identity_problem
from pgprov.catalog.state import Snapshot
from pgprov.model.spec import SpecError

from tests.unit.test_plan import converged_split, items_of, plan_for, role, split_spec

PREFIX = "inventories/staging.py: host db1"


def with_role(snap: Snapshot, name: str, **changes: object) -> Snapshot:
    return dataclasses.replace(snap, roles={**snap.roles, name: role(name, **changes)})


def test_a_converged_environment_has_no_identity_problem() -> None:
    assert identity_problem(split_spec(), converged_split()) is None


def test_the_connecting_admin_named_as_a_managed_role_is_refused() -> None:
    snap = dataclasses.replace(converged_split(), current_user="app_runtime")
    problem = identity_problem(split_spec(), snap)
    assert problem is not None
    assert problem.startswith(f"{PREFIX}: pg_runtime: app_runtime is the admin"), problem


@pytest.mark.parametrize("attribute", ["superuser", "createrole", "bypassrls", "replication"])
def test_an_unmarked_powerful_role_is_refused(attribute: str) -> None:
    snap = with_role(converged_split(), "app_migrator", comment=None, **{attribute: True})
    problem = identity_problem(split_spec(), snap)
    assert problem is not None
    assert problem.startswith(f"{PREFIX}: pg_migrator: role app_migrator already exists with "), (
        problem
    )
    assert attribute.upper() in problem


@pytest.mark.parametrize("comment", [None, "created by hand", MANAGED_MARK + " (forged?)"])
def test_a_powerful_reader_without_the_exact_mark_is_refused(comment: str | None) -> None:
    snap = with_role(converged_split(), "bi", comment=comment, createrole=True, login=False)
    problem = identity_problem(split_spec(pg_readers=["bi"]), snap)
    assert problem is not None and problem.startswith(f"{PREFIX}: pg_readers: role bi"), problem


def test_a_marked_role_that_drifted_to_superuser_is_repaired_not_refused() -> None:
    snap = with_role(converged_split(), "app_runtime", superuser=True)
    assert identity_problem(split_spec(), snap) is None
    assert ("set NOSUPERUSER on role app_runtime", 'ALTER ROLE "app_runtime" NOSUPERUSER;') in (
        items_of(plan_for(split_spec(), snap))
    )


def test_an_unmarked_plain_role_is_marked_by_the_deploy() -> None:
    snap = with_role(converged_split(), "app_migrator", comment=None)
    assert identity_problem(split_spec(), snap) is None
    assert items_of(plan_for(split_spec(), snap)) == [
        (
            "mark role app_migrator as managed by pgprov (COMMENT ON ROLE)",
            "COMMENT ON ROLE \"app_migrator\" IS 'pgprov: managed role';",
        )
    ]


def test_a_missing_reader_is_created_with_the_mark() -> None:
    [item] = plan_for(split_spec(pg_readers=["bi"]), converged_split()).roles
    assert 'CREATE ROLE "bi" NOLOGIN' in item.sql
    assert "COMMENT ON ROLE \"bi\" IS 'pgprov: managed role';" in item.sql


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"pg_privileged_roles": ["app_runtime"]}, "pg_privileged_roles"),
        ({"pg_readers": ["bi"], "pg_privileged_roles": ["bi"]}, "pg_privileged_roles"),
        ({"pg_admin_user": "app_migrator"}, "pg_migrator"),
        ({"pg_admin_user": "bi", "pg_readers": ["bi"]}, "pg_readers"),
    ],
)
def test_the_spec_refuses_a_managed_role_as_privileged_or_as_the_admin(
    data: dict[str, object], key: str
) -> None:
    with pytest.raises(SpecError) as caught:
        split_spec(**data)
    assert str(caught.value).startswith(f"{PREFIX}: {key}: "), caught.value
