"""Provisioning a real remote target over SSH: pyinfra's ``@ssh`` connector against an OpenSSH
server on loopback, psql on the target as the server's OS user through sudo (peer auth on the
unix socket), Aerich migrations through an SSH tunnel on pyinfra's own connection.

The target is this machine seen through sshd (tests/e2e/sshhost.py): a deploy user with key
login and NOPASSWD sudo, and a PostgreSQL cluster whose superuser ``pgprov`` is also the OS user
running it. PostgreSQL major: PGPROV_TEST_PG (15: system binaries, 18: the wheel).

How the tunnel is proven: the server logs every connection (log_connections) and sshd logs every
direct-tcpip channel (LogLevel DEBUG1). During the first run the admin only ever connects over
the unix socket, so every TCP session the server sees is the migrator's; the test requires as
many channels to 127.0.0.1:<db port> as there were TCP sessions. A migrator that bypassed the
tunnel (connected straight to the port, which is reachable from this controller too) would
leave TCP sessions without channels, and the test would fail.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pgprov.catalog.state import PUBLIC, Snapshot
from pgprov.local.embedded import free_port
from pgprov.model.spec import GIN_INDEX, GIN_TABLE

from tests import deploykit
from tests.deploykit import login, snapshot, stored_verifiers
from tests.e2e.helpers import (
    MIGRATIONS,
    SCHEMA,
    TABLE_PRIVILEGES,
    app_relations,
    assert_one_clear_line,
    default_privileges,
    prefixed_objects,
    privileges,
)
from tests.e2e.sshhost import (
    MISSING_TOOLS_HINT,
    SCRATCH_DIRS,
    LogCursor,
    SshTarget,
    TargetUnavailable,
    check_prerequisites,
    cluster_on_target,
    direct_tcpip_targets,
    files_containing,
    new_client_key,
    parse_trace,
    pg_sessions,
    run_pyinfra,
    ssh_inventory,
    ssh_target,
    sudo_commands,
)
from tests.pgserver import Names, Server, drop_prefixed, make_base

pytestmark = pytest.mark.db

MAJOR = os.environ.get("PGPROV_TEST_PG") or None
HOST = "127.0.0.1"
OS_SUPERUSER = "pgprov"  # runs the server, and is the cluster's superuser (peer auth)


@dataclass
class TargetHost:
    """The SSH target with its PostgreSQL, and how to run the real deploy against it."""

    base: Path
    ssh: SshTarget
    server: Server

    def data(self, names: Names, **overrides: Any) -> dict[str, Any]:
        """Staging host data: admin via sudo + peer on the socket, migrations through a tunnel."""
        cluster = self.server.cluster
        assert cluster is not None
        return {
            "pg_inventory": "tests/e2e/test_ssh.py",
            "pg_environment": "staging",
            "pg_profile": "split",
            "pg_database": names.database,
            "pg_migrator": names.migrator,
            "pg_runtime": names.runtime,
            "pg_admin_sudo_user": OS_SUPERUSER,
            "pg_admin_host": str(cluster.sockdir),
            "pg_admin_port": cluster.port,
            "pg_app_host": "127.0.0.1",
            "pg_app_port": cluster.port,
            "pg_tunnel": True,
            "pg_migrator_password": "env:APP_MIGRATOR_PASSWORD",
            "pg_runtime_password": "env:APP_RUNTIME_PASSWORD",
            **overrides,
        }

    def run(
        self,
        names: Names,
        passwords: dict[str, str],
        *args: str,
        ssh: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> subprocess.CompletedProcess[str]:
        directory = make_base(f"pgprov-ssh-run-{names.prefix}-")
        try:
            data = {**self.data(names, **overrides), **(ssh or {})}
            inventory = ssh_inventory(directory, self.ssh, data)
            return run_pyinfra(inventory, *args, env=passwords, home=directory / "home")
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def new_passwords(names: Names) -> dict[str, str]:
    return {
        "APP_MIGRATOR_PASSWORD": f"mig-{names.prefix}-{secrets.token_urlsafe(18)}",
        "APP_RUNTIME_PASSWORD": f"run-{names.prefix}-{secrets.token_urlsafe(18)}",
    }


@pytest.fixture(scope="module")
def target() -> Iterator[TargetHost]:
    """sshd + sudo user + PostgreSQL on the "host"; everything removed afterwards, pass or fail."""
    try:
        check_prerequisites()
    except TargetUnavailable as exc:
        message = f"no SSH target here: {exc} ({MISSING_TOOLS_HINT})"
        if os.environ.get("PGPROV_REQUIRE_SSH") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    base = make_base("pgprov-ssh-")
    try:
        with ssh_target(base / "ssh") as ssh, cluster_on_target(base, MAJOR) as server:
            yield TargetHost(base=base, ssh=ssh, server=server)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Stage:
    """One pyinfra run and what the target logged while it ran, then the catalog after it."""

    proc: subprocess.CompletedProcess[str]
    pg_log: str
    sshd_log: str
    sudo_log: str
    trace: str
    snapshot: Snapshot

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr


@dataclass
class Deployment:
    """--dry on an empty server, then two real runs, all through SSH; observed, not asserted."""

    host: TargetHost
    names: Names
    env: deploykit.DeployEnv
    passwords: dict[str, str]
    started: float
    before: Snapshot
    dry: Stage
    first: Stage
    second: Stage
    user_files: tuple[set[str], set[str]]  # before the runs, after them

    @property
    def secrets(self) -> dict[str, str]:
        """Plaintext passwords and the SCRAM verifiers the server stores for them."""
        found = {f"password {k}": v for k, v in self.passwords.items()}
        verifiers = stored_verifiers(self.host.server, self.names.migrator, self.names.runtime)
        for role in (self.names.migrator, self.names.runtime):
            assert verifiers.get(role), f"no stored verifier for {role}"
            found[f"verifier of {role}"] = verifiers[role]
        return found


def deploy_user_files(host: TargetHost) -> set[str]:
    """Every file the deploy user owns in the scratch places, and everything in its home: where
    pyinfra stages uploads (``/tmp/pyinfra-<sha1>``) and keeps its temporary files."""
    uid = pwd.getpwnam(host.ssh.user).pw_uid
    found = {str(p) for p in host.ssh.home.rglob("*")}
    for place in SCRATCH_DIRS:
        for dirpath, _, filenames in os.walk(place):
            for name in filenames:
                path = Path(dirpath, name)
                with contextlib.suppress(OSError):
                    if path.lstat().st_uid == uid:
                        found.add(str(path))
    return found


@pytest.fixture(scope="module")
def deployment(target: TargetHost) -> Iterator[Deployment]:
    names = Names.new()
    passwords = new_passwords(names)
    env = deploykit.DeployEnv(data=target.data(names))
    cursors = [
        LogCursor(Path(target.server.cluster.logfile)),  # type: ignore[union-attr]
        LogCursor(target.ssh.sshd_log),
        LogCursor(target.ssh.sudo_log),
        LogCursor(target.ssh.trace_log),
    ]

    def stage(*args: str) -> Stage:
        for cursor in cursors:
            cursor.mark()
        proc = target.run(names, passwords, *args)
        logs = [cursor.since() for cursor in cursors]
        return Stage(proc, *logs, snapshot=snapshot(target.server, env))

    try:
        started = time.time()
        leftovers_before = deploy_user_files(target)
        before = snapshot(target.server, env)
        dry = stage("--dry")
        first = stage()
        second = stage()
        yield Deployment(
            host=target,
            names=names,
            env=env,
            passwords=passwords,
            started=started,
            before=before,
            dry=dry,
            first=first,
            second=second,
            user_files=(leftovers_before, deploy_user_files(target)),
        )
    finally:
        drop_prefixed(target.server, names.prefix)


# -- 1. the first run: admin through sudo + peer, migrations through the tunnel ----------------


def test_first_run_succeeds_over_ssh(deployment: Deployment) -> None:
    first = deployment.first
    assert first.proc.returncode == 0, first.output
    assert f"[{HOST}] Connected" in first.output
    if MAJOR:
        assert first.snapshot.major == int(MAJOR)


def test_psql_runs_on_the_target_as_the_server_os_user_through_sudo(
    deployment: Deployment,
) -> None:
    first, ssh = deployment.first, deployment.host.ssh
    commands = sudo_commands(first.sudo_log)
    assert commands, f"sudo logged nothing during the run:\n{first.sudo_log}"
    for command in commands:
        assert (command.user, command.run_as) == (ssh.user, OS_SUPERUSER), command
        psql = re.findall(r"\bpsql (-X[^;()']*)", command.command)
        # Before the server has said whether event triggers may be switched off, a probe
        # connects first and runs nothing (``-c ''``; pgprov.catalog.session).
        probes = [p for p in psql if p.rstrip(" \\").endswith(" -w -c")]
        sessions = [p for p in psql if p not in probes]
        assert len(sessions) == 1 and len(probes) <= 1, f"expected one psql in: {command.command}"
        # The catalog read folds psql's errors into its output (``2>&1``) to report them once.
        arguments = sessions[0].rstrip().removesuffix(" 2>&1").rstrip(" \\")
        assert arguments.endswith(" -f -") and " -c " not in sessions[0], (
            f"expected psql reading its script from stdin: {command.command}"
        )
    admin = [s for s in pg_sessions(first.pg_log) if s.user == OS_SUPERUSER]
    assert admin, f"no admin session in the server log:\n{first.pg_log}"
    assert {(s.source, s.method, s.identity) for s in admin} == {("[local]", "peer", OS_SUPERUSER)}


def test_first_run_creates_roles_database_schema_and_grants(deployment: Deployment) -> None:
    names, snap = deployment.names, deployment.first.snapshot
    assert deployment.before.database is None
    for role in (names.migrator, names.runtime):
        state = snap.roles.get(role)
        assert state is not None, f"role {role} was not created"
        assert state.login and state.has_password and not state.superuser
    assert snap.database is not None and snap.database.owner == names.migrator
    assert privileges(snap.database, names.runtime) >= {"CONNECT"}
    assert privileges(snap.database, PUBLIC) == set()
    schema = snap.schemas.get(SCHEMA)
    assert schema is not None and schema.owner == names.migrator
    assert privileges(schema, names.runtime) == {"USAGE"}
    assert default_privileges(snap, names.migrator, "r", names.runtime) == TABLE_PRIVILEGES
    assert snap.roles[names.runtime].setting(names.database, "search_path") == "app, public"
    for role, secret in (
        (names.runtime, deployment.passwords["APP_RUNTIME_PASSWORD"]),
        (names.migrator, deployment.passwords["APP_MIGRATOR_PASSWORD"]),
    ):
        with login(deployment.host.server, role, secret, names.database) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)


def test_first_run_applies_the_migrations_as_the_migrator(deployment: Deployment) -> None:
    names, snap = deployment.names, deployment.first.snapshot
    assert set(snap.migrations or ()) == set(MIGRATIONS)
    with deployment.host.server.connect(names.database) as conn:
        versions = {row[0] for row in conn.execute(f"SELECT version FROM {SCHEMA}.aerich")}
    assert versions == set(MIGRATIONS)
    tables = app_relations(snap, "table")
    assert "aerich" in tables
    for name, table in tables.items():
        assert table.owner == names.migrator, name
        expected = set() if name == "aerich" else TABLE_PRIVILEGES
        assert privileges(table, names.runtime) == expected, name


def test_migrations_reach_the_database_through_the_ssh_tunnel(deployment: Deployment) -> None:
    first, port = deployment.first, deployment.host.server.port
    tcp = [s for s in pg_sessions(first.pg_log) if s.over_tcp]
    assert tcp, f"no TCP session during the run (did the migrations run?):\n{first.pg_log}"
    # Before provisioning, the deploy checks the endpoint through the tunnel: one connection
    # that never authenticates. Every session that did is the migrator's.
    probes = [s for s in tcp if (s.user, s.method) == ("", "")]
    assert len(probes) == 1, tcp
    authenticated = [s for s in tcp if s not in probes]
    assert {(s.user, s.method) for s in authenticated} == {
        (deployment.names.migrator, "scram-sha-256")
    }
    channels = direct_tcpip_targets(first.sshd_log)
    assert channels == [("127.0.0.1", port)] * len(tcp), (
        f"{len(tcp)} TCP sessions at the server, sshd channels {channels}: a migrator "
        "connection that bypassed the tunnel has no channel"
    )


# -- 2. the GIN index, and a converged second run ----------------------------------------------


def test_gin_index_exists_and_is_valid(deployment: Deployment) -> None:
    index = deployment.first.snapshot.indexes.get(GIN_INDEX)
    assert index is not None, deployment.first.output
    assert index.valid and index.table == GIN_TABLE
    assert index.opclasses == ("jsonb_ops",)
    assert "USING gin (answers)" in index.definition


def test_second_run_reports_no_changes(deployment: Deployment) -> None:
    second = deployment.second
    assert second.proc.returncode == 0, second.output
    assert second.output.count(f"[{HOST}] No changes") == 3, second.output
    assert f"[{HOST}] Success" not in second.output
    assert second.snapshot == deployment.first.snapshot


def test_converged_run_costs_one_catalog_read_and_opens_no_tunnel(deployment: Deployment) -> None:
    second = deployment.second
    assert len(sudo_commands(second.sudo_log)) == 1, second.sudo_log
    assert direct_tcpip_targets(second.sshd_log) == []
    assert [s for s in pg_sessions(second.pg_log) if s.over_tcp] == []


# -- 3. --dry over SSH -------------------------------------------------------------------------


def test_dry_run_over_ssh_lists_the_sql_and_changes_nothing(deployment: Deployment) -> None:
    dry, names = deployment.dry, deployment.names
    assert dry.proc.returncode == 0, dry.output
    assert dry.snapshot == deployment.before
    assert dry.snapshot.database is None and names.migrator not in dry.snapshot.roles
    for sql in (
        f'CREATE ROLE "{names.migrator}"',
        f'CREATE ROLE "{names.runtime}"',
        f'CREATE DATABASE "{names.database}"',
        f'GRANT CONNECT ON DATABASE "{names.database}" TO "{names.runtime}"',
        f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{GIN_INDEX}"',
    ):
        assert sql in dry.output, f"the plan does not show {sql!r}:\n{dry.output}"
    assert "<redacted>" in dry.output
    assert "SCRAM-SHA-256$" not in dry.output
    assert not any(p in dry.output for p in deployment.passwords.values())


def test_dry_run_only_reads_the_catalog(deployment: Deployment) -> None:
    dry = deployment.dry
    assert len(sudo_commands(dry.sudo_log)) == 1, dry.sudo_log
    assert direct_tcpip_targets(dry.sshd_log) == []
    assert [s for s in pg_sessions(dry.pg_log) if s.over_tcp] == []


# -- 4. nothing secret stays on the target -----------------------------------------------------


def test_no_file_holds_a_password_or_verifier_after_the_runs(deployment: Deployment) -> None:
    host = deployment.host
    needles = deployment.secrets
    try:
        pgprov_home = Path(pwd.getpwnam(OS_SUPERUSER).pw_dir)
    except KeyError:
        pgprov_home = Path("/nonexistent")
    roots = [*SCRATCH_DIRS, host.ssh.home, pgprov_home]
    exclude = [p for p in (host.ssh.trace_log,) if p is not None]
    found = files_containing(roots, needles, newer_than=deployment.started - 1, exclude=exclude)
    assert {str(path): labels for path, labels in found.items()} == {}


def test_no_temporary_file_of_the_deploy_user_remains(deployment: Deployment) -> None:
    before, after = deployment.user_files
    assert after - before == set()


def test_sql_reaches_psql_on_stdin_and_no_secret_reaches_argv(deployment: Deployment) -> None:
    trace = "".join(s.trace for s in (deployment.dry, deployment.first, deployment.second))
    if deployment.host.ssh.trace_log is None:
        pytest.skip("strace cannot ptrace here: argv on the target not observed")
    parsed = parse_trace(trace)
    psql = [argv for argv in parsed.execs if argv.split(",")[0].endswith('psql"')]
    assert psql, "no psql was started on the target"
    # Every psql reads its SQL from stdin, but the probe, which runs none (``-c ''``).
    assert all(argv.endswith(('"-f", "-"', '"-w", "-c", ""')) for argv in psql), psql
    assert any(argv.endswith('"-f", "-"') for argv in psql), psql
    for label, value in deployment.secrets.items():
        assert not [argv for argv in parsed.execs if value in argv], f"{label} in argv"


def test_files_the_target_writes_hold_no_secret_after_the_run(deployment: Deployment) -> None:
    ssh = deployment.host.ssh
    if ssh.trace_log is None:
        pytest.skip("strace cannot ptrace here: files written on the target not observed")
    trace = "".join(s.trace for s in (deployment.dry, deployment.first, deployment.second))
    written = {
        path
        for path in parse_trace(trace).written
        if not path.startswith(("/dev/", "/proc/")) and path != str(ssh.trace_log)
    }
    remaining = {path for path in written if Path(path).is_file()}
    leaking = {
        path
        for path in remaining
        if any(
            value in Path(path).read_text(errors="replace") for value in deployment.secrets.values()
        )
    }
    assert leaking == set(), f"files written on the target during the runs: {sorted(written)}"


# -- 5. unreachable or untrusted targets fail with one clear line ------------------------------


@pytest.fixture
def fresh(target: TargetHost) -> Iterator[tuple[Names, dict[str, str]]]:
    names = Names.new()
    yield names, new_passwords(names)
    drop_prefixed(target.server, names.prefix)


def test_wrong_ssh_key_fails_with_one_line_naming_the_host(
    target: TargetHost, fresh: tuple[Names, dict[str, str]]
) -> None:
    names, passwords = fresh
    stranger = new_client_key(target.base, f"stranger-{names.prefix}")
    proc = target.run(names, passwords, ssh={"ssh_key": str(stranger)})
    assert_one_clear_line(proc, f"[{HOST}]", "Authentication error")
    assert prefixed_objects(target.server, names.prefix) == []


def test_unreachable_ssh_port_fails_with_one_line_naming_the_host(
    target: TargetHost, fresh: tuple[Names, dict[str, str]]
) -> None:
    names, passwords = fresh
    closed = free_port()
    proc = target.run(names, passwords, ssh={"ssh_port": closed})
    line = assert_one_clear_line(proc, f"[{HOST}]", "Could not connect")
    assert str(closed) in line
    assert prefixed_objects(target.server, names.prefix) == []


def test_unknown_host_key_is_refused_with_one_line_naming_the_host(
    target: TargetHost, fresh: tuple[Names, dict[str, str]]
) -> None:
    names, passwords = fresh
    impostor = new_client_key(target.base, f"impostor-{names.prefix}")
    known_hosts = target.base / f"known_hosts-{names.prefix}"
    public = " ".join(impostor.with_suffix(".pub").read_text().split()[:2])
    known_hosts.write_text(f"[{HOST}]:{target.ssh.port} {public}\n")
    proc = target.run(names, passwords, ssh={"ssh_known_hosts_file": str(known_hosts)})
    assert_one_clear_line(proc, f"[{HOST}]", "host key")
    assert prefixed_objects(target.server, names.prefix) == []


def test_tunnel_to_a_closed_port_fails_with_one_line_naming_host_and_port(
    target: TargetHost, fresh: tuple[Names, dict[str, str]]
) -> None:
    names, passwords = fresh
    closed = free_port()
    proc = target.run(names, passwords, pg_app_port=closed)
    assert_one_clear_line(proc, f"[{HOST}]", f"SSH tunnel: 127.0.0.1:{closed}")


def test_tunnel_to_a_closed_port_stops_before_any_change(
    target: TargetHost, fresh: tuple[Names, dict[str, str]]
) -> None:
    names, passwords = fresh
    proc = target.run(names, passwords, pg_app_port=free_port())
    assert proc.returncode != 0
    assert prefixed_objects(target.server, names.prefix) == []
