"""Role settings without a server: pg_role_settings / pg_connection_limits validation, the plan
from hand-built snapshots (with the server's verdicts as the settings check reports them),
the one-line rejection, the audit rows and the check's input.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from pgprov.access.settings import settings_problem
from pgprov.audit.audit import role_checks, setting_checks
from pgprov.catalog.facts import check_input
from pgprov.catalog.state import SettingCheck, Snapshot
from pgprov.model.inventory import load_specs
from pgprov.model.spec import SpecError

from tests.unit.test_plan import (
    DB,
    MIGRATOR,
    RUNTIME,
    converged_split,
    items_of,
    plan_for,
    single_spec,
    split_spec,
    with_role,
)

RUNTIME_LIMITS = {"runtime": {"statement_timeout": "30s", "work_mem": "8MB"}}


def verdicts(snap: Snapshot, *checks: tuple[str, str, str | None, str | None]) -> Snapshot:
    """The snapshot with the settings check's verdicts: (name, value, normalized, error)."""
    found = {
        (name, value): SettingCheck(name, value, "user", normalized, error)
        for name, value, normalized, error in checks
    }
    return dataclasses.replace(snap, setting_checks={**snap.setting_checks, **found})


def with_settings(snap: Snapshot, role: str, by_database: dict[str, tuple[str, ...]]) -> Snapshot:
    return with_role(snap, role, settings=by_database)


def converged_with_limits() -> Snapshot:
    snap = with_settings(
        converged_split(),
        RUNTIME,
        {DB: ("search_path=app, public", "statement_timeout=30s", "work_mem=8MB")},
    )
    return verdicts(
        snap, ("statement_timeout", "30s", "30s", None), ("work_mem", "8MB", "8MB", None)
    )


# --- validation (spec) -------------------------------------------------------------------------


def test_values_are_kept_as_the_text_set_sends() -> None:
    spec = split_spec(
        pg_role_settings={"runtime": {"statement_timeout": 30000, "jit": False, "x.y": 1.5}},
        pg_connection_limits={"runtime": 40},
    )
    assert spec.role_settings == {
        "runtime": {"statement_timeout": "30000", "jit": "off", "x.y": "1.5"}
    }
    assert spec.connection_limits == {"runtime": 40}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"pg_role_settings": {"reader": {"work_mem": "1MB"}}},
            "pg_role_settings: reader: Input should be 'migrator', 'runtime' or 'app_user'",
        ),
        (
            {"pg_role_settings": {"runtime": {"Work_Mem": "1MB"}}},
            "pg_role_settings: runtime.Work_Mem: 'Work_Mem' is not a setting name",
        ),
        (
            {"pg_role_settings": {"runtime": {"work_mem; drop": "1MB"}}},
            "pg_role_settings: runtime.work_mem; drop: 'work_mem; drop' is not a setting name",
        ),
        (
            {"pg_role_settings": {"runtime": {"search_path": "x"}}},
            "pg_role_settings: runtime.search_path: search_path cannot be declared here: "
            "managed by the deploy (pg_schema)",
        ),
        (
            {"pg_role_settings": {"migrator": {"role": "postgres"}}},
            "pg_role_settings: migrator.role: role cannot be declared here",
        ),
        (
            {"pg_role_settings": {"runtime": {"work_mem": None}}},
            "pg_role_settings: runtime.work_mem: None is not a setting value",
        ),
        (
            {"pg_role_settings": {"runtime": {"work_mem": ["1MB"]}}},
            "pg_role_settings: runtime.work_mem: ['1MB'] is not a setting value",
        ),
        (
            {"pg_role_settings": {"app_user": {"work_mem": "1MB"}}},
            "pg_role_settings: app_user: not a role of the split profile (migrator, runtime)",
        ),
        (
            {"pg_connection_limits": {"runtime": -2}},
            "pg_connection_limits: runtime: Input should be greater than or equal to -1",
        ),
        (
            {"pg_connection_limits": {"runtime": True}},
            "pg_connection_limits: runtime: Input should be a valid integer",
        ),
        (
            {"pg_connection_limits": {"migrator": "5"}},
            "pg_connection_limits: migrator: Input should be a valid integer",
        ),
    ],
)
def test_bad_declarations_fail_in_one_line_naming_inventory_host_and_key(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError) as caught:
        split_spec(**data)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"inventories/staging.py: host db1: {message}"), text


def test_single_user_declares_settings_for_app_user_only() -> None:
    spec = single_spec(pg_role_settings={"app_user": {"work_mem": "4MB"}})
    assert spec.role_settings == {"app_user": {"work_mem": "4MB"}}
    with pytest.raises(SpecError, match="runtime: not a role of the single_user profile"):
        single_spec(pg_connection_limits={"runtime": 3})


# --- the server's verdicts -----------------------------------------------------------------------


def test_nothing_declared_means_no_server_check() -> None:
    assert check_input(split_spec()) is None


def test_check_input_names_the_roles_the_database_and_each_distinct_value() -> None:
    spec = split_spec(
        pg_runtime="svc",
        pg_role_settings={
            "runtime": {"work_mem": "8MB", "statement_timeout": "30s"},
            "migrator": {"statement_timeout": "30s"},
        },
    )
    assert json.loads(check_input(spec) or "") == {
        "roles": [MIGRATOR, "svc"],
        "database": DB,
        "values": [["statement_timeout", "30s"], ["work_mem", "8MB"]],
    }


@pytest.mark.parametrize(
    ("check", "reason"),
    [
        (None, "not checked by the server (the catalog snapshot has no verdict for it)"),
        (SettingCheck("work_mem", "8MB", None, None, None), "the server has no such setting"),
        (
            SettingCheck("work_mem", "8MB", "postmaster", None, "cannot be changed"),
            "cannot be set per role (its context is postmaster)",
        ),
        (
            SettingCheck("work_mem", "8MB", "user", None, 'invalid value for parameter "work_mem"'),
            "the server rejects '8MB': invalid value for parameter \"work_mem\"",
        ),
    ],
)
def test_a_value_the_server_does_not_accept_is_one_line(
    check: SettingCheck | None, reason: str
) -> None:
    spec = split_spec(pg_role_settings={"runtime": {"work_mem": "8MB"}})
    snap = converged_split()
    if check is not None:
        snap = dataclasses.replace(snap, setting_checks={("work_mem", "8MB"): check})
    assert settings_problem(spec, snap) == (
        f"inventories/staging.py: host db1: pg_role_settings: runtime.work_mem: {reason}"
    )


def test_accepted_values_are_no_problem() -> None:
    spec = split_spec(pg_role_settings=RUNTIME_LIMITS)
    assert settings_problem(spec, converged_with_limits()) is None


# --- the plan --------------------------------------------------------------------------------------


def test_converged_settings_and_limits_give_an_empty_plan() -> None:
    spec = split_spec(pg_role_settings=RUNTIME_LIMITS, pg_connection_limits={"runtime": 20})
    snap = with_role(converged_with_limits(), RUNTIME, connection_limit=20)
    assert plan_for(spec, snap).empty


def test_a_value_stored_in_another_spelling_counts_as_converged() -> None:
    spec = split_spec(pg_role_settings={"runtime": {"statement_timeout": "30000ms"}})
    snap = with_settings(
        converged_split(), RUNTIME, {DB: ("search_path=app, public", "statement_timeout=30000")}
    )
    snap = verdicts(
        snap,
        ("statement_timeout", "30000ms", "30s", None),
        ("statement_timeout", "30000", "30s", None),
    )
    assert plan_for(spec, snap).empty


def test_declared_settings_are_set_in_the_database() -> None:
    spec = split_spec(pg_role_settings=RUNTIME_LIMITS)
    snap = verdicts(
        converged_split(),
        ("statement_timeout", "30s", "30s", None),
        ("work_mem", "8MB", "8MB", None),
    )
    assert items_of(plan_for(spec, snap)) == [
        (
            f"set statement_timeout of role {RUNTIME} in database {DB} to 30s",
            f'ALTER ROLE "{RUNTIME}" IN DATABASE "{DB}" SET "statement_timeout" TO \'30s\';',
        ),
        (
            f"set work_mem of role {RUNTIME} in database {DB} to 8MB",
            f'ALTER ROLE "{RUNTIME}" IN DATABASE "{DB}" SET "work_mem" TO \'8MB\';',
        ),
    ]


def test_a_changed_value_is_set_and_says_what_it_was() -> None:
    spec = split_spec(
        pg_role_settings={"runtime": {"statement_timeout": "30s", "work_mem": "16MB"}}
    )
    snap = verdicts(converged_with_limits(), ("work_mem", "16MB", "16MB", None))
    assert items_of(plan_for(spec, snap)) == [
        (
            f"set work_mem of role {RUNTIME} in database {DB} to 16MB (was 8MB)",
            f'ALTER ROLE "{RUNTIME}" IN DATABASE "{DB}" SET "work_mem" TO \'16MB\';',
        )
    ]


def test_undeclared_settings_are_reset_in_the_database_and_role_wide_but_not_elsewhere() -> None:
    snap = with_settings(
        converged_split(),
        RUNTIME,
        {
            DB: ("search_path=app, public", "jit=off"),
            "": ("work_mem=64MB", "pg_stat_statements.track=none"),
            "postgres": ("work_mem=32MB",),
        },
    )
    assert items_of(plan_for(split_spec(), snap)) == [
        (
            f"reset undeclared jit of role {RUNTIME} in database {DB} (was off)",
            f'ALTER ROLE "{RUNTIME}" IN DATABASE "{DB}" RESET "jit";',
        ),
        (
            f"reset undeclared work_mem of role {RUNTIME} in all databases (was 64MB)",
            f'ALTER ROLE "{RUNTIME}" RESET "work_mem";',
        ),
        (
            f"reset undeclared pg_stat_statements.track of role {RUNTIME} in all databases "
            "(was none)",
            f'ALTER ROLE "{RUNTIME}" RESET "pg_stat_statements"."track";',
        ),
    ]


def test_settings_follow_the_logical_role_when_it_is_renamed() -> None:
    spec = split_spec(pg_runtime="svc", pg_role_settings={"runtime": {"work_mem": "8MB"}})
    snap = converged_split()
    renamed = dataclasses.replace(
        snap,
        roles={
            MIGRATOR: snap.roles[MIGRATOR],
            "svc": dataclasses.replace(snap.roles[RUNTIME], name="svc"),
        },
    )
    snap = verdicts(renamed, ("work_mem", "8MB", "8MB", None))
    described = [description for description, _ in items_of(plan_for(spec, snap))]
    assert f"set work_mem of role svc in database {DB} to 8MB" in described


def test_connection_limit_converges_both_ways() -> None:
    declared = split_spec(pg_connection_limits={"runtime": 20})
    assert items_of(plan_for(declared, converged_split())) == [
        (
            f"set the connection limit of role {RUNTIME} to 20 (was none)",
            f'ALTER ROLE "{RUNTIME}" CONNECTION LIMIT 20;',
        )
    ]
    drifted = with_role(converged_split(), MIGRATOR, connection_limit=3)
    [(description, sql)] = items_of(plan_for(split_spec(), drifted))
    assert description == f"remove the connection limit of role {MIGRATOR} (was 3)"
    assert sql.replace("  ", " ") == f'ALTER ROLE "{MIGRATOR}" CONNECTION LIMIT -1;'


# --- the audit shares the definition ---------------------------------------------------------------


def test_audit_rows_show_normalised_values_and_flag_drift() -> None:
    spec = split_spec(pg_role_settings=RUNTIME_LIMITS, pg_connection_limits={"runtime": 20})
    snap = with_settings(
        converged_with_limits(),
        RUNTIME,
        {
            DB: ("search_path=app, public", "statement_timeout=30000", "work_mem=4MB"),
            "": ("jit=off",),
        },
    )
    snap = verdicts(
        snap, ("statement_timeout", "30000", "30s", None), ("work_mem", "4MB", "4MB", None)
    )
    rows = {
        (c.subject, c.object, c.check): (c.declared, c.actual, c.verdict)
        for c in setting_checks("db1", spec, snap) + role_checks("db1", spec, snap)
    }
    assert rows[(RUNTIME, f"database {DB}", "statement_timeout")] == ("30s", "30s", "OK")
    assert rows[(RUNTIME, f"database {DB}", "work_mem")] == ("8MB", "4MB", "DRIFT")
    assert rows[(RUNTIME, "all databases", "jit")] == ("(not set)", "off", "DRIFT")
    assert rows[(RUNTIME, f"database {DB}", "search_path")] == ("app, public", "app, public", "OK")
    assert rows[(RUNTIME, "role", "CONNECTION LIMIT")] == ("20", "none", "DRIFT")
    assert rows[(MIGRATOR, "role", "CONNECTION LIMIT")] == ("none", "none", "OK")


# --- the staging and production inventories ------------------------------------------------------


@pytest.mark.parametrize("file", ["staging.py", "production.py"])
def test_staging_and_production_bound_the_runtimes_statements_and_idle_transactions(
    monkeypatch: pytest.MonkeyPatch, file: str
) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    for name in ("DB_TARGET", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD"):
        monkeypatch.delenv(name, raising=False)
    [(_, spec)] = load_specs(f"inventories/{file}")
    assert spec.role_settings["runtime"] == {
        "statement_timeout": "30s",
        "idle_in_transaction_session_timeout": "60s",
    }
    # Migrations and index builds may run long; only an idle open transaction is bounded.
    assert spec.role_settings["migrator"] == {"idle_in_transaction_session_timeout": "10min"}
