"""pgprov-plan's formats and exit codes, from plans built by hand (no server, no pyinfra)."""

from __future__ import annotations

import json

import pytest
from pgprov.audit.planreport import (
    Change,
    HostPlan,
    PlanReport,
    main,
    render_json,
    render_markdown,
    render_text,
)

REVOKE = 'REVOKE TRUNCATE ON TABLE "app"."checklist" FROM "app_runtime";\n'


def changed(name: str = "db1") -> HostPlan:
    return HostPlan(
        name,
        status="changes",
        database="hinfelaar_fastapi",
        admin="postgres at db:5432",
        pending_migrations=["1_20260101000000_add.py"],
        changes=[
            Change(
                "provision", "revoke TRUNCATE on table app.checklist for role app_runtime", REVOKE
            ),
            Change("migrate", "apply migration 1_20260101000000_add.py as app_migrator", ""),
        ],
    )


def converged(name: str = "db2") -> HostPlan:
    return HostPlan(name, database="hinfelaar_fastapi", admin="postgres at db:5432")


def failed(name: str = "db3") -> HostPlan:
    return HostPlan(name, status="error", error=f"inv.py: host {name}: cannot read the catalog")


@pytest.mark.parametrize(
    ("hosts", "code"),
    [
        ([converged(), converged("db4")], 0),
        ([converged(), changed()], 1),
        ([changed(), failed()], 2),
    ],
    ids=["all_converged", "changes_pending", "an_error_wins"],
)
def test_exit_code(hosts: list[HostPlan], code: int):
    assert PlanReport("inv.py", hosts).exit_code == code


def test_text_ends_with_a_no_changes_line_per_converged_host():
    text = render_text(PlanReport("inv.py", [converged(), changed(), converged("db4")]))
    lines = text.splitlines()
    assert lines[0] == "Plan: 2 changes on 1 of 3 hosts, 2 converged."
    assert lines[-2:] == [
        "db2: No changes (database hinfelaar_fastapi is as declared)",
        "db4: No changes (database hinfelaar_fastapi is as declared)",
    ]
    assert "  + revoke TRUNCATE on table app.checklist for role app_runtime" in lines
    assert "      " + REVOKE.rstrip("\n") in lines


def test_markdown_has_a_section_per_host_and_sql_fences():
    md = render_markdown(PlanReport("inv.py", [changed(), converged(), failed()]))
    assert "**Plan: 2 changes on 1 of 3 hosts, 1 converged, 1 failed.**" in md
    assert "### `db1`: 2 changes" in md
    assert "### `db2`: no changes" in md
    assert "### `db3`: error" in md
    assert (
        "1. revoke TRUNCATE on table app.checklist for role app_runtime\n\n```sql\n"
        + REVOKE
        + "```"
        in md
    )
    # A migration has no SQL of its own to show: no empty fence.
    assert "2. apply migration 1_20260101000000_add.py as app_migrator\n\n```" not in md
    assert "Pending migrations: `1_20260101000000_add.py`" in md


def test_json_shape():
    document = json.loads(render_json(PlanReport("inv.py", [changed(), failed()])))
    assert document["summary"] == {
        "hosts": 2,
        "changed": 1,
        "converged": 0,
        "errors": 1,
        "changes": 2,
    }
    host = document["hosts"][0]
    assert set(host) == {
        "host",
        "status",
        "database",
        "admin",
        "error",
        "pending_migrations",
        "notices",
        "changes",
    }
    assert host["changes"][0] == {
        "step": "provision",
        "description": "revoke TRUNCATE on table app.checklist for role app_runtime",
        "sql": REVOKE,
    }
    assert document["hosts"][1]["error"] == "inv.py: host db3: cannot read the catalog"


def test_missing_inventory_exits_2_with_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "none.py"), "--format", "json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"{tmp_path / 'none.py'}: no such inventory file\n"


def test_an_unexpected_failure_is_an_error_in_one_line_not_changes_pending(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pgprov.audit.planreport

    def broken(inventory: str, limit: str | None) -> None:
        raise ValueError("database db: something nobody foresaw")

    monkeypatch.setattr(pgprov.audit.planreport, "make_plan", broken)
    assert main(["inventories/production.py"]) == 2
    err = capsys.readouterr().err
    assert (
        err == "pgprov-plan: unexpected error: ValueError: database db: something nobody foresaw\n"
    )
