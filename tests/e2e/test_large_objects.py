"""Large objects hold data (``lo_unlink`` deletes it): the deploy never removes one. Privileges
on them nobody declared are revoked, on all of an owner's objects at once; objects of owners
``pg_large_objects`` does not declare are named by the audit and left for a person; declared,
they pass. The snapshot reads them aggregated per owner, so thousands of them are one row.
Privileges change in committed batches: a blocker, an unlink or a SIGKILL of the whole deploy
between batches leaves what was done, and the next deploy does the rest."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest
from pgprov.catalog.state import AclEntry
from pgprov.model.spec import PUBLIC
from psycopg import sql

from tests.deploykit import DeployEnv, run_api, run_cli, snapshot, write_inventory
from tests.e2e.helpers import (
    assert_one_clear_line,
    combined,
    console,
    lines_with,
    login,
    managed_admin_env,
    owners_and_acls,
)
from tests.e2e.traffic import kill_when, start_deploy
from tests.pgserver import Names, Server, drop_prefixed

pytestmark = pytest.mark.db


def large_objects(server: Server, names: Names) -> dict[int, tuple[str, list[str]]]:
    """oid -> (owner, ACL entries as text) of every large object of the database."""
    return owners_and_acls(
        server,
        names.database,
        "SELECT oid::bigint, pg_get_userbyid(lomowner)::text, COALESCE(lomacl::text[], '{}')"
        " FROM pg_largeobject_metadata",
    )


def create_as(server: Server, names: Names, role: str, data: bytes) -> int:
    with server.connect(names.database) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        return conn.execute("SELECT lo_from_bytea(0, %s)::bigint", [data]).fetchone()[0]


def reads(env: DeployEnv, server: Server, names: Names, oid: int) -> bytes | str:
    """What the runtime's own session gets from lo_get: the data, or the error's class."""
    with login(server, env, names, "runtime") as conn:
        try:
            return conn.execute("SELECT lo_get(%s)", [oid]).fetchone()[0]
        except psycopg.Error as exc:
            return type(exc).__name__


def test_privileges_on_large_objects_are_revoked_and_the_objects_are_left_for_a_person(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    stranger, migrator, runtime = names.role("x"), names.migrator, names.runtime
    ident = {"x": sql.Identifier(stranger), "r": sql.Identifier(runtime)}
    # The migrator's report, readable and writable by the runtime; a stranger's, whose SELECT
    # the runtime may pass on; one the runtime made itself (anyone may create large objects).
    report = create_as(pg_server, names, migrator, b"report")
    secret = create_as(pg_server, names, stranger, b"secret")
    stash = create_as(pg_server, names, runtime, b"stash")
    with pg_server.connect(names.database) as conn:
        for statement in (
            f"GRANT SELECT, UPDATE ON LARGE OBJECT {report} TO {{r}}",
            f"GRANT SELECT ON LARGE OBJECT {secret} TO {{r}} WITH GRANT OPTION",
            f"GRANT SELECT ON LARGE OBJECT {secret} TO PUBLIC",
        ):
            conn.execute(sql.SQL(statement).format(**ident))
    assert reads(deployed, pg_server, names, report) == b"report"
    assert reads(deployed, pg_server, names, secret) == b"secret"
    inventory = write_inventory(tmp_path, deployed.data)

    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 1, audit.stdout + audit.stderr
    for needles in (
        ("DRIFT", runtime, f"large objects owned by {migrator}", "SELECT"),
        ("DRIFT", runtime, f"large objects owned by {migrator}", "UPDATE"),
        ("DRIFT", runtime, f"large objects owned by {stranger}", "WITH GRANT OPTION"),
        ("DRIFT", "PUBLIC", f"large objects owned by {stranger}", "SELECT"),
        ("DRIFT", stranger, "large objects owned", f"1 (oids {secret}..{secret})"),
        ("DRIFT", runtime, "large objects owned", f"1 (oids {stash}..{stash})"),
        ("DRIFT", migrator, "large objects owned", f"1 (oids {report}..{report})"),
    ):
        assert lines_with(audit.stdout, *needles), (needles, audit.stdout)

    deploy = run_cli(tmp_path, deployed.data)
    assert deploy.returncode == 0, combined(deploy)
    [notice] = lines_with(combined(deploy), "left for a person", "large objects")
    assert f"owned by {stranger}" in notice and f"owned by {runtime}" in notice
    assert reads(deployed, pg_server, names, report) == "InsufficientPrivilege"
    assert reads(deployed, pg_server, names, secret) == "InsufficientPrivilege"
    assert reads(deployed, pg_server, names, stash) == b"stash"  # its own, never unlinked
    assert large_objects(pg_server, names) == {
        report: (migrator, [f"{migrator}=rw/{migrator}"]),
        secret: (stranger, [f"{stranger}=rw/{stranger}"]),
        stash: (runtime, []),
    }
    again = run_api(deployed.data)
    assert again.success and not any(again.changed.values()), again

    # Declared: the owners' objects belong, and the runtime reads the migrator's.
    declared = {
        **deployed.data,
        "pg_large_objects": {"migrator": {"runtime": ["SELECT"]}, "runtime": {}, stranger: {}},
    }
    grant = run_api(declared)
    assert grant.success and grant.changed["provision"], grant
    assert reads(deployed, pg_server, names, report) == b"report"
    inventory = write_inventory(tmp_path, declared)
    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert lines_with(audit.stdout, "OK", runtime, f"large objects owned by {migrator}", "SELECT")
    again = run_cli(tmp_path, declared)
    assert again.returncode == 0 and not lines_with(combined(again), "left for a person")


def test_thousands_of_large_objects_are_one_row_of_the_snapshot_and_one_statement(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    """An application's 25,000 large objects, each readable by a stranger: the snapshot holds
    one row for their owner with the count, and one deploy revokes the privilege on every one
    of them (the oids go to REVOKE on the server, 10,000 at a time)."""
    stranger, runtime = names.role("x"), names.runtime
    with pg_server.connect(names.database) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(runtime)))
        conn.execute("SELECT lo_create(0) FROM generate_series(1, 25000)")
        conn.execute(
            sql.SQL(
                "DO $$ DECLARE o oid; n int := 0; BEGIN"
                " FOR o IN SELECT oid FROM pg_largeobject_metadata LOOP"
                " EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO {}', o); n := n + 1;"
                " IF n % 1000 = 0 THEN COMMIT; END IF; END LOOP; END $$"
            ).format(sql.Identifier(stranger))
        )
    snap = snapshot(pg_server, deployed)
    [lo] = snap.large_objects
    assert (lo.owner, lo.count, lo.acl) == (
        runtime,
        25000,
        ((AclEntry(stranger, "SELECT"), 25000),),
    )

    repair = run_api({**deployed.data, "pg_large_objects": {"runtime": {}}})
    assert repair.success and repair.changed["provision"], repair
    with pg_server.connect(names.database) as conn:
        left = conn.execute(
            "SELECT count(*) FILTER (WHERE lomacl IS NOT NULL AND cardinality(lomacl) > 1),"
            " count(*) FROM pg_largeobject_metadata"
        ).fetchone()
    assert tuple(left) == (0, 25000)


def test_the_snapshot_counts_each_object_once_whatever_its_acl(
    deployed: DeployEnv, pg_server: Server, names: Names
) -> None:
    """Objects with no ACL, an empty one (the owner revoked its own), and several entries
    (PUBLIC, a stranger with UPDATE and a grant option): the snapshot's one scan gives each
    owner the count, oid range and per-entry counts read object by object."""
    stranger, runtime, migrator = names.role("x"), names.runtime, names.migrator
    plain = [create_as(pg_server, names, runtime, b"a") for _ in range(3)]
    emptied = [create_as(pg_server, names, runtime, b"b") for _ in range(2)]
    shared = [create_as(pg_server, names, runtime, b"c") for _ in range(4)]
    other = [create_as(pg_server, names, migrator, b"d") for _ in range(2)]
    x, r = sql.Identifier(stranger), sql.Identifier(runtime)
    with pg_server.connect(names.database) as conn:
        for oid in emptied:
            conn.execute(
                sql.SQL("REVOKE ALL ON LARGE OBJECT {} FROM {}").format(sql.Literal(oid), r)
            )
        for i, oid in enumerate(shared):
            conn.execute(
                sql.SQL("GRANT SELECT ON LARGE OBJECT {} TO PUBLIC").format(sql.Literal(oid))
            )
            if i % 2:
                grant = "GRANT SELECT, UPDATE ON LARGE OBJECT {} TO {} WITH GRANT OPTION"
                conn.execute(sql.SQL(grant).format(sql.Literal(oid), x))
    assert all(
        acl == [] for oid, (_, acl) in large_objects(pg_server, names).items() if oid in plain
    )

    got = {lo.owner: lo for lo in snapshot(pg_server, deployed).large_objects}
    mine = [*plain, *emptied, *shared]
    assert (got[runtime].count, got[runtime].first, got[runtime].last) == (9, min(mine), max(mine))
    assert (got[migrator].count, got[migrator].first, got[migrator].last) == (2, *sorted(other))
    assert dict(got[runtime].acl) == {
        AclEntry(PUBLIC, "SELECT"): 4,
        AclEntry(stranger, "SELECT", True): 2,
        AclEntry(stranger, "UPDATE", True): 2,
    }
    assert got[migrator].acl == ()


def test_lo_compat_privileges_on_is_named_as_a_way_past_every_large_objects_privileges(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    report = create_as(pg_server, names, names.migrator, b"report")
    data = {**deployed.data, "pg_large_objects": {"migrator": {}}}
    inventory = write_inventory(tmp_path, data)
    assert console("pgprov-verify", inventory, "--no-probes").returncode == 0
    assert reads(deployed, pg_server, names, report) == "InsufficientPrivilege"

    database = sql.Identifier(names.database)
    with pg_server.connect() as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET lo_compat_privileges = on").format(database))
    assert reads(deployed, pg_server, names, report) == b"report"  # no grant, yet it reads
    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 1, audit.stdout + audit.stderr
    assert lines_with(audit.stdout, "DRIFT", "PUBLIC", "lo_compat_privileges", "every role")


def strangers_reach(server: Server, names: Names) -> int:
    """How many large objects the stranger may still read."""
    with server.connect(names.database) as conn:
        return strangers_reach_on(conn, names.role("x"))


def strangers_reach_on(conn: psycopg.Connection, stranger: str) -> int:
    return conn.execute(
        "SELECT count(*) FROM pg_largeobject_metadata m, aclexplode(m.lomacl) x"
        " WHERE x.grantee = %s::regrole",
        [stranger],
    ).fetchone()[0]


@pytest.fixture
def files(deployed: DeployEnv, pg_server: Server, names: Names) -> list[int]:
    """2,500 large objects the runtime owns (declared), each readable by a stranger: three
    batches for the deploy's revoke."""
    with pg_server.connect(names.database) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(names.runtime)))
        oids = [
            row[0]
            for row in conn.execute(
                "SELECT lo_create(0)::bigint FROM generate_series(1, 2500) ORDER BY 1"
            ).fetchall()
        ]
        conn.execute(
            sql.SQL(
                "DO $$ DECLARE o oid; BEGIN FOR o IN SELECT oid FROM pg_largeobject_metadata"
                " LOOP EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO {}', o); END LOOP;"
                " END $$"
            ).format(sql.Identifier(names.role("x")))
        )
    assert strangers_reach(pg_server, names) == 2500
    return sorted(oids)


def test_a_batch_waits_for_the_applications_open_unlink_and_stops_naming_it_keeping_earlier_batches(
    deployed: DeployEnv, files: list[int], pg_server: Server, names: Names, tmp_path: Path
) -> None:
    """The application deletes a file (lo_unlink) in a transaction it keeps open: the deploy's
    third batch waits for it in tries of pg_lock_timeout; past pg_lock_wait it stops in one line
    naming the application's pid, the first two batches (2,000 objects) committed. Once the
    application rolls back, the next deploy revokes the rest."""
    data = {
        **deployed.data,
        "pg_large_objects": {"runtime": {}},
        "pg_lock_timeout": "200ms",
        "pg_lock_wait": "2s",
    }
    app = login(pg_server, deployed, names, "runtime")
    app.autocommit = False
    app.execute("SELECT lo_unlink(%s)", [files[2100]])
    try:
        proc = run_cli(tmp_path, data)
        line = assert_one_clear_line(proc, f"pid {app.info.backend_pid} ", "pg_lock_wait")
        assert f"large objects owned by {names.runtime}" in line, line
        assert strangers_reach(pg_server, names) == 500
    finally:
        app.rollback()
        app.close()
    assert run_cli(tmp_path, data).returncode == 0
    assert strangers_reach(pg_server, names) == 0
    assert len(large_objects(pg_server, names)) == 2500


def test_an_object_the_application_unlinks_while_its_batch_waits_is_left_out_of_it(
    deployed: DeployEnv, files: list[int], pg_server: Server, names: Names, tmp_path: Path
) -> None:
    """The application's open lo_unlink commits while the deploy's batch waits for it: the
    batch is tried again without that object, and the deploy succeeds."""
    data = {**deployed.data, "pg_large_objects": {"runtime": {}}, "pg_lock_timeout": "200ms"}
    app = login(pg_server, deployed, names, "runtime")
    app.autocommit = False
    app.execute("SELECT lo_unlink(%s)", [files[2100]])
    timer = threading.Timer(1.5, app.commit)
    timer.start()
    try:
        proc = run_cli(tmp_path, data)
    finally:
        timer.join()
        app.close()
    assert proc.returncode == 0, combined(proc)
    assert strangers_reach(pg_server, names) == 0
    assert len(large_objects(pg_server, names)) == 2499


def test_a_managed_admin_revokes_on_the_managed_roles_objects_and_leaves_a_strangers_saying_so(
    pg_server: Server, names: Names, tmp_path: Path
) -> None:
    """A managed service's admin (CREATEROLE, CREATEDB, no superuser) has the managed roles'
    privileges, not a stranger's: it revokes what the migrator's objects give away, leaves the
    stranger's in one line, and the audit keeps naming them."""
    admin, stranger, runtime = names.role("admin"), names.role("x"), names.runtime
    env = managed_admin_env(pg_server, names, tmp_path)
    try:
        assert run_api(env.data).success
        with pg_server.connect() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(stranger)))
        report = create_as(pg_server, names, names.migrator, b"report")
        secret = create_as(pg_server, names, stranger, b"secret")
        with pg_server.connect(names.database) as conn:
            for oid in (report, secret):
                conn.execute(
                    sql.SQL(f"GRANT SELECT ON LARGE OBJECT {oid} TO {{}}").format(
                        sql.Identifier(runtime)
                    )
                )
        data = {**env.data, "pg_large_objects": {"migrator": {}, stranger: {}}}
        deploy = run_cli(tmp_path, data)
        assert deploy.returncode == 0, combined(deploy)
        [notice] = lines_with(combined(deploy), f"the admin {admin} does not have the owners'")
        assert f"SELECT on large objects owned by {stranger} for role {runtime}" in notice
        assert reads(env, pg_server, names, report) == "InsufficientPrivilege"
        assert reads(env, pg_server, names, secret) == b"secret"
        audit = console("pgprov-verify", write_inventory(tmp_path, data), "--no-probes")
        assert audit.returncode == 1, audit.stdout + audit.stderr
        assert lines_with(audit.stdout, "DRIFT", runtime, f"large objects owned by {stranger}")
    finally:
        drop_prefixed(pg_server, names.prefix)


def test_a_deploy_killed_between_batches_is_finished_by_one_rerun(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    """200,000 of the runtime's large objects readable by a stranger. The deploy's whole process
    group gets SIGKILL once its first batches have committed (watched on the server): those
    stay revoked, the server ends the orphaned session (its client is gone), no advisory lock
    is left; one re-run revokes the rest and a further run sends nothing."""
    total, stranger = 200_000, names.role("x")
    with pg_server.connect(names.database) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(names.runtime)))
        conn.execute(f"SELECT lo_create(0) FROM generate_series(1, {total})")
        conn.execute("RESET ROLE")
        # Setup, not what is tested: every object readable by the stranger, in one statement.
        acl = f"{{{names.runtime}=rw/{names.runtime},{stranger}=r/{names.runtime}}}"
        conn.execute("UPDATE pg_largeobject_metadata SET lomacl = %s::aclitem[]", [acl])
    assert strangers_reach(pg_server, names) == total
    data = {**deployed.data, "pg_large_objects": {"runtime": {}}}
    watcher = psycopg.connect(pg_server.dsn(names.database), autocommit=True)
    try:
        deploy = start_deploy(tmp_path, data)
        killed = kill_when(
            deploy,
            lambda: 0 < strangers_reach_on(watcher, stranger) < total,
            interval=0.02,
        )
        assert killed, deploy.output()[-3000:]
        # The server ends the orphaned session (client_connection_check_interval), and with it
        # its advisory lock.
        orphaned = "SELECT pid FROM pg_locks WHERE locktype = 'advisory'"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and watcher.execute(orphaned).fetchone():
            time.sleep(0.1)
        assert watcher.execute(orphaned).fetchone() is None
        left = strangers_reach_on(watcher, stranger)
        assert 0 < left < total, left  # some batches committed, the rest not done
    finally:
        watcher.close()
    rerun = run_cli(tmp_path, data)
    assert rerun.returncode == 0, combined(rerun)[-3000:]
    assert strangers_reach(pg_server, names) == 0
    further = run_api(data)
    assert further.success and not further.any_change, further
    assert len(large_objects(pg_server, names)) == total
