"""Roles that read every table without a grant are named as bypass, like SUPERUSER: members of
pg_execute_server_program (``COPY ... TO PROGRAM``), pg_read_server_files and
pg_write_server_files, directly or through a group. The deploy cannot take cluster-wide
memberships from roles it does not manage; the audit fails until the inventory expects them."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import sql

from tests.deploykit import env_data, run_api, write_inventory
from tests.e2e.helpers import console
from tests.pgserver import Names, Server

pytestmark = pytest.mark.db


def bypass_lines(text: str, role: str) -> list[str]:
    return [line for line in text.splitlines() if "can bypass" in line and f" {role} " in line]


def test_server_program_and_file_roles_are_named_as_bypass(
    pg_server: Server, names: Names, tmp_path: Path
) -> None:
    env = env_data(pg_server, names, tmp_path)
    assert run_api(env.data).success
    direct, group, member = names.role("ops"), names.role("files"), names.role("etl")
    with pg_server.connect() as conn:
        for role, login in ((direct, "LOGIN"), (group, "NOLOGIN"), (member, "LOGIN")):
            conn.execute(sql.SQL("CREATE ROLE {} " + login).format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT pg_execute_server_program TO {}").format(sql.Identifier(direct))
        )
        conn.execute(sql.SQL("GRANT pg_read_server_files TO {}").format(sql.Identifier(group)))
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(member))
        )

    audit = console("pgprov-verify", write_inventory(tmp_path, env.data), "--no-probes")
    assert audit.returncode == 1, audit.stdout + audit.stderr
    [line] = bypass_lines(audit.stdout, direct)
    assert "DRIFT" in line and "member of pg_execute_server_program" in line, line
    [line] = bypass_lines(audit.stdout, member)
    assert "DRIFT" in line and "member of pg_read_server_files" in line, line

    expected = {**env.data, "pg_privileged_roles": [pg_server.superuser, direct, group, member]}
    audit = console("pgprov-verify", write_inventory(tmp_path, expected), "--no-probes")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    [line] = bypass_lines(audit.stdout, direct)
    assert line.lstrip().startswith("OK"), line
