"""Declared read-only roles (``pg_readers``): a NOLOGIN group whose members read every table
and sequence in schema app, including tables the migrator creates after the deploy, and can
do nothing else; once undeclared, the group loses everything in one deploy (the role stays).

One environment for the module; a login role that is a member of the reader group (as an
identity tool or a DBA would add it) is what the tests log in as.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql

from tests.deploykit import (
    DeployEnv,
    env_data,
    login,
    run_api,
    run_cli,
    run_module,
    snapshot,
    write_inventory,
)
from tests.e2e.helpers import APP_TABLES, assert_one_clear_line
from tests.pgserver import Names, Server, drop_prefixed

NO_CHANGES = {"provision": False, "migrate": False, "gin_index": False}
MEMBER_PASSWORD = "reader-member-Pw9"


@dataclass
class Readers:
    names: Names
    env: DeployEnv
    directory: Path

    @property
    def reader(self) -> str:
        return self.names.role("readers")

    @property
    def member(self) -> str:
        return self.names.role("analyst")


@pytest.fixture(scope="module")
def readers(pg_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Readers]:
    names = Names.new()
    directory = tmp_path_factory.mktemp("readers")
    try:
        reader = names.role("readers")
        env = env_data(pg_server, names, directory, pg_readers=[reader])
        result = run_api(env.data)
        assert result.success, result
        with pg_server.connect() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                    sql.Identifier(names.role("analyst")),
                    sql.Literal(MEMBER_PASSWORD),
                    sql.Identifier(reader),
                )
            )
        yield Readers(names, env, directory)
    finally:
        drop_prefixed(pg_server, names.prefix)


def as_member(server: Server, r: Readers) -> psycopg.Connection:
    return login(server, r.member, MEMBER_PASSWORD, r.names.database, autocommit=True)


def audit(r: Readers, data: dict) -> subprocess.CompletedProcess[str]:
    return run_module("pgprov.verify", str(write_inventory(r.directory, data)))


def test_reader_is_a_nologin_group_created_by_the_deploy(pg_server: Server, readers: Readers):
    snap = snapshot(pg_server, readers.env)
    role = snap.roles[readers.reader]
    assert not role.login and not role.superuser
    with pg_server.connect() as conn:
        (password,) = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (readers.reader,)
        ).fetchone()
    assert password is None


def test_member_selects_every_table_and_sequence_in_the_schema(pg_server: Server, readers: Readers):
    with as_member(pg_server, readers) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'app' AND c.relkind = 'r'"
            )
        ]
        assert set(tables) >= APP_TABLES
        for table in tables:
            conn.execute(sql.SQL("SELECT count(*) FROM app.{}").format(sql.Identifier(table)))
        conn.execute("SELECT last_value FROM app.checklist_id_seq")


def test_member_reads_a_table_the_migrator_creates_after_the_deploy(
    pg_server: Server, readers: Readers
):
    with pg_server.connect(readers.names.database) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(readers.names.migrator)))
        conn.execute("CREATE TABLE app.pgprov_later (id serial PRIMARY KEY, note text)")
        conn.execute("INSERT INTO app.pgprov_later (note) VALUES ('visible')")
    with as_member(pg_server, readers) as conn:
        assert conn.execute("SELECT note FROM app.pgprov_later").fetchall() == [("visible",)]
        conn.execute("SELECT last_value FROM app.pgprov_later_id_seq")


WRITES = {
    "insert": "INSERT INTO app.unit (name) VALUES ('x')",
    "update": "UPDATE app.unit SET name = name",
    "delete": "DELETE FROM app.unit",
    "truncate": "TRUNCATE app.unit",
    "nextval": "SELECT nextval('app.unit_id_seq')",
    "create_in_app": "CREATE TABLE app.pgprov_reader_made (x int)",
    "create_in_public": "CREATE TABLE public.pgprov_reader_made (x int)",
    "temp_table": "CREATE TEMP TABLE pgprov_reader_tmp (x int)",
    "drop": "DROP TABLE app.unit",
    "function_created_later": "SELECT app.pgprov_reader_fn()",
}


@pytest.mark.parametrize("action", list(WRITES))
def test_member_cannot_write_create_or_execute(pg_server: Server, readers: Readers, action: str):
    if action == "function_created_later":
        with pg_server.connect(readers.names.database) as conn:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(readers.names.migrator)))
            conn.execute(
                "CREATE OR REPLACE FUNCTION app.pgprov_reader_fn() RETURNS int "
                "LANGUAGE sql AS 'SELECT 1'"
            )
    with as_member(pg_server, readers) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(WRITES[action])


def test_audit_lists_the_member_reading_through_the_group(pg_server: Server, readers: Readers):
    assert run_api(readers.env.data).success  # the tables created above become readable
    proc = audit(readers, readers.env.data)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any(
        readers.member in line
        and f"role {readers.reader}" in line
        and f"reads schema app through {readers.reader}" in line
        for line in lines
    ), proc.stdout
    access = [line for line in lines if line.strip().startswith("NOTE") and " reach " in line]
    group = [line for line in access if f" {readers.reader} " in line]
    assert len(group) == 1 and "table SELECT x" in group[0] and "INSERT" not in group[0], access


def test_bad_reader_names_stop_the_run_naming_inventory_host_and_key(
    pg_server: Server, readers: Readers
):
    before = snapshot(pg_server, readers.env)
    for bad in (readers.names.runtime, "PUBLIC", "pg_monitor"):
        data = {**readers.env.data, "pg_readers": [readers.reader, bad]}
        proc = run_cli(readers.directory, data)
        assert_one_clear_line(proc, "tests/inventory.py", "@local", "pg_readers")
    assert snapshot(pg_server, readers.env) == before


def test_undeclared_reader_loses_all_access_in_one_deploy_and_is_kept(
    pg_server: Server, readers: Readers
):
    undeclared = {k: v for k, v in readers.env.data.items() if k != "pg_readers"}
    seen = audit(readers, undeclared)
    assert seen.returncode == 1
    assert any(
        line.strip().startswith("DRIFT") and readers.reader in line and "table app.unit" in line
        for line in seen.stdout.splitlines()
    ), seen.stdout

    first = run_api(undeclared)
    assert first.success and first.changed["provision"], first
    second = run_api(undeclared)
    assert second.success and second.changed == NO_CHANGES, second

    snap = snapshot(pg_server, readers.env)
    assert readers.reader in snap.roles, "the role itself is kept"
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        as_member(pg_server, readers)
    with pg_server.connect(readers.names.database) as conn:
        held = conn.execute(
            "SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a "
            "WHERE a.grantee = %s::regrole AND c.relnamespace = 'app'::regnamespace",
            (readers.reader,),
        ).fetchone()
        defaults = conn.execute(
            "SELECT count(*) FROM pg_default_acl d, aclexplode(d.defaclacl) a "
            "WHERE a.grantee = %s::regrole",
            (readers.reader,),
        ).fetchone()
    assert held == (0,) and defaults == (0,)
    assert audit(readers, undeclared).returncode == 0
