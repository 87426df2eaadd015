"""Secrets appear nowhere: neither the plaintext passwords (migrator, runtime, admin) nor the
SCRAM verifiers the server stores for them, in pyinfra's output at ``-vvv`` (which prints the
catalog fact's output), in the server log, in pg_stat_statements or in any process's argv.

One dedicated server logs everything it can (``log_statement = 'all'``, every duration with
its statement, every transaction sampled, errors with their statement), with the logging
extensions platform teams install for compliance: pgaudit (``pgaudit.log = 'all'`` with its
parameters; PostgreSQL 15, Debian's postgresql-15-pgaudit) and auto_explain (every plan, with
its query text), and tracks every statement in pg_stat_statements. The CLI deploy runs twice
under ``strace -f -e trace=execve``: a cold deploy creating the roles, then after the role
passwords were rotated (so ALTER ROLE ... PASSWORD is exercised too); then a plan and an audit
(probes included). Needs ``strace`` (apt-get install strace).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pgprov.catalog.psql import PSQL_FLAGS, local_psql
from pgprov.model.secrets import scram_verifier, verifier_matches
from pgprov.sql.quiet import QUIET
from pgprov.sql.render import ENV, render

from tests.deploykit import (
    PYINFRA,
    REPO,
    env_data,
    login,
    secret_file,
    stored_verifiers,
    write_inventory,
)
from tests.e2e.helpers import console
from tests.pgserver import Names, Server, local_server

ROLES = ("migrator", "runtime")
STRACE = ("strace", "-f", "-e", "trace=execve", "-s", "4096")
SECRETS = ("migrator", "runtime", "rotated_migrator", "rotated_runtime", "admin")
LOGGING = {
    "log_statement": "'all'",
    "log_min_duration_statement": "0",
    "log_min_duration_sample": "0",
    "log_statement_sample_rate": "1",
    "log_transaction_sample_rate": "1",
    "log_min_error_statement": "'error'",
    "shared_preload_libraries": "'pg_stat_statements,auto_explain'",
    "pg_stat_statements.track": "'all'",
    "pg_stat_statements.track_utility": "on",
    "auto_explain.log_min_duration": "0",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_nested_statements": "on",
}
PGAUDIT = {
    "shared_preload_libraries": "'pgaudit,pg_stat_statements,auto_explain'",
    "pgaudit.log": "'all'",
    "pgaudit.log_parameter": "on",
    "pgaudit.log_catalog": "on",
    "pgaudit.log_relation": "on",
}
# pgaudit exists here for PostgreSQL 15 only (Debian's package; .ci/run installs it).
PGAUDIT_LIBRARY = Path("/usr/lib/postgresql/15/lib/pgaudit.so")


def logging_settings(major: str | None) -> dict[str, str]:
    if major == "18":
        return LOGGING
    if not PGAUDIT_LIBRARY.exists():
        pytest.fail(f"{PGAUDIT_LIBRARY} is missing: apt-get install postgresql-15-pgaudit")
    return {**LOGGING, **PGAUDIT}


@dataclass
class Capture:
    """What the two runs left behind. Only the return codes show in a failure report: the
    rest holds the very secrets searched for."""

    server: Server = field(repr=False)
    names: Names
    passwords: dict[str, str] = field(repr=False)
    output: str = field(default="", repr=False)
    trace: str = field(default="", repr=False)
    server_log: str = field(default="", repr=False)
    statements: str = field(default="", repr=False)  # every query text pg_stat_statements kept
    # The verifiers pg_authid held after each run, by "run N role".
    verifiers: dict[str, str] = field(default_factory=dict, repr=False)
    returncodes: list[int] = field(default_factory=list)

    def role(self, which: str) -> str:
        return getattr(self.names, which)

    def secret_parts(self) -> dict[str, str]:
        """Each verifier whole and its StoredKey and ServerKey alone (a partial leak counts)."""
        parts = {}
        for label, verifier in self.verifiers.items():
            stored_key, server_key = verifier.rsplit("$", 1)[1].split(":")
            parts.update({label: verifier, f"{label} StoredKey": stored_key})
            parts[f"{label} ServerKey"] = server_key
        return parts


def traced_deploy(directory: Path, inventory: Path, run: int) -> tuple[int, str, str]:
    trace = directory / f"strace-{run}.txt"
    proc = subprocess.run(
        [*STRACE, "-o", str(trace), PYINFRA, "-y", "-vvv", str(inventory), "deploy/provision.py"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr, trace.read_text()


def tracked_statements(server: Server) -> str:
    with server.connect() as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        rows = conn.execute("SELECT query FROM pg_stat_statements").fetchall()
    return "\n".join(row[0] for row in rows)


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Capture]:
    if shutil.which("strace") is None:
        pytest.fail("strace is required for the secrets tests (apt-get install strace)")
    major = os.environ.get("PGPROV_TEST_PG") or None
    with local_server(major, settings=logging_settings(major)) as server:
        assert server.cluster is not None
        directory = tmp_path_factory.mktemp("secrets")
        names = Names.new()
        env = env_data(server, names, directory)
        rotated = {f"rotated_{role}": f"{env.passwords[role]}-Rotated9" for role in ROLES}
        result = Capture(
            server,
            names,
            {**{r: env.passwords[r] for r in ROLES}, **rotated, "admin": server.password},
        )
        inventory = write_inventory(directory, env.data)
        for run in (1, 2):
            if run == 2:
                for role in ROLES:
                    secret_file(directory, role, rotated[f"rotated_{role}"])
            code, output, trace = traced_deploy(directory, inventory, run)
            result.returncodes.append(code)
            result.output += output
            result.trace += trace
            found = stored_verifiers(server, *(result.role(r) for r in ROLES))
            result.verifiers.update({f"run {run} {role}": v for role, v in found.items()})
        for script in ("pgprov-plan", "pgprov-verify"):
            proc = console(script, inventory)
            result.returncodes.append(proc.returncode)
            result.output += proc.stdout + proc.stderr
        result.server_log = server.cluster.logfile.read_text()
        result.statements = tracked_statements(server)
        yield result


def test_both_traced_deploys_succeed_and_the_second_rotates_the_passwords(capture: Capture):
    # Two deploys, then a plan and an audit of the converged environment.
    assert capture.returncodes == [0, 0, 0, 0], capture.output[-3000:]
    for role in ROLES:
        assert f"set the password of role {capture.role(role)}" in capture.output
    # Four verifiers: each role's first one, then a new one (new salt) after the rotation.
    assert len(capture.verifiers) == 4
    assert len(set(capture.verifiers.values())) == 4


def test_vvv_printed_the_catalog_fact_and_the_plan(capture: Capture):
    """What the leak tests below search really was printed: the fact's output (-vvv) with its
    stored-password section, and the plan with the SQL carrying the masked verifiers."""
    assert re.search(r'\{"passwords" ?: ?\{', capture.output)
    assert re.search(r'"scram" ?: ?"4096:[^"]+", ?"digest" ?: ?"[0-9a-f]{64}"', capture.output)
    assert "PASSWORD '<redacted>'" in capture.output


@pytest.mark.parametrize("secret", SECRETS)
def test_no_plaintext_password_in_pyinfra_output(capture: Capture, secret: str):
    # Only masked text reaches the assertion, so a failure report does not leak it further.
    password = capture.passwords[secret]
    leaks = [
        line.replace(password, "<THE PASSWORD>")[:300]
        for line in capture.output.splitlines()
        if password in line
    ]
    assert leaks == [], f"the {secret} password is in pyinfra's output"


def test_no_verifier_in_pyinfra_output(capture: Capture):
    leaks = [label for label, part in capture.secret_parts().items() if part in capture.output]
    assert leaks == [], "in pyinfra's -vvv output"


def test_the_server_logged_the_deploy_but_not_its_password_statements(capture: Capture):
    log = capture.server_log
    # The database transaction's grants run inside the lock-retry block (deploy/sql/locks.py).
    assert "statement: DO" in log and "\tGRANT " in log, (
        "log_statement = 'all' did not log the deploy"
    )
    # The statements around each password statement are logged up to the one that stops it.
    assert log.count("statement: SET log_statement = 'none'") >= 5
    assert "PASSWORD" not in log
    # Nor the snapshot's stored-password query, which carries the key of its digests.
    assert "json_object_agg(rolname" not in log
    # The logging extensions were there to hear it: auto_explain logged plans with their query
    # text, and on 15 pgaudit logged statements with their parameters.
    assert "Query Text:" in log, "auto_explain logged nothing"
    if capture.server.major == 15:
        assert "AUDIT: SESSION," in log, "pgaudit logged nothing"


@pytest.mark.parametrize("secret", SECRETS)
def test_no_plaintext_password_in_the_server_log(capture: Capture, secret: str):
    found = capture.passwords[secret] in capture.server_log
    assert not found, f"the {secret} password is in the server log"


def test_no_verifier_in_the_server_log(capture: Capture):
    leaks = [label for label, part in capture.secret_parts().items() if part in capture.server_log]
    assert leaks == [], "in the server log"


def test_no_verifier_in_pg_stat_statements(capture: Capture):
    assert "pg_advisory_xact_lock" in capture.statements, "pg_stat_statements tracked nothing"
    leaks = [label for label, part in capture.secret_parts().items() if part in capture.statements]
    assert leaks == [], "in pg_stat_statements"
    assert "PASSWORD" not in capture.statements
    # Nor the snapshot's digest query (pg_stat_statements keeps its text, the key as $1).
    assert "json_object_agg(rolname" not in capture.statements


@pytest.mark.parametrize("secret", SECRETS)
def test_no_plaintext_password_in_any_process_argv(capture: Capture, secret: str):
    execs = [line for line in capture.trace.splitlines() if "execve(" in line]
    assert any("psql" in line for line in execs), "strace did not see psql started"
    assert any("pgprov.migrate.upgrade" in line for line in execs), (
        "strace did not see the migrator"
    )
    leaks = sum(capture.passwords[secret] in line for line in execs)
    assert leaks == 0, f"the {secret} password is in {leaks} execve argv"


def test_no_verifier_in_any_process_argv(capture: Capture):
    execs = "\n".join(line for line in capture.trace.splitlines() if "execve(" in line)
    leaks = [label for label, part in capture.secret_parts().items() if part in execs]
    assert leaks == [], "in an execve argv"


def test_the_server_stores_scram_verifiers_of_the_rotated_passwords(capture: Capture):
    final = stored_verifiers(capture.server, *(capture.role(r) for r in ROLES))
    for role in ROLES:
        stored = final[capture.role(role)]
        assert stored.startswith("SCRAM-SHA-256$4096:")
        assert verifier_matches(capture.passwords[f"rotated_{role}"], stored)
        assert not verifier_matches(capture.passwords[role], stored)
    conn = login(
        capture.server,
        capture.names.runtime,
        capture.passwords["rotated_runtime"],
        capture.names.database,
    )
    conn.close()


def run_psql(server: Server, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [local_psql(), *PSQL_FLAGS, "-f", "-"],
        input=script,
        env={**os.environ, **server.libpq_env()},
        capture_output=True,
        text=True,
        check=False,
    )


def logged_while(server: Server, script: str) -> str:
    """What the server log received while psql ran ``script`` (which must fail)."""
    log = server.cluster.logfile  # type: ignore[union-attr]
    before = log.stat().st_size
    proc = run_psql(server, script)
    assert proc.returncode != 0 and "does not exist" in proc.stderr, proc.stderr
    with log.open() as fh:
        fh.seek(before)
        return fh.read()


def test_a_failing_password_statement_leaves_no_statement_or_context_in_the_log(
    capture: Capture,
):
    """An error logs its STATEMENT line (log_min_error_statement) and, inside a DO block, a
    CONTEXT line quoting the SQL statement: the settings around password statements keep both
    out. The same DO block without them shows that the log would have had the verifier."""
    verifier = scram_verifier("never-a-real-password")
    stored_key = verifier.rsplit("$", 1)[1].split(":")[0]
    missing = f"{capture.names.prefix}_missing"
    alter = render(
        "roles.sql.j2",
        mask=False,
        quiet=QUIET,
        create=[],
        alter=[{"name": missing, "attributes": [], "verifier": verifier}],
        revoke_memberships=[],
        grant_memberships=[],
    )
    do_block = (
        "DO $x$ BEGIN EXECUTE 'ALTER ROLE ' || quote_ident("
        f"'{missing}') || ' PASSWORD ' || quote_literal('{verifier}'); END $x$;\n"
    )
    quiet = ENV.from_string('{% import "unlogged.sql.j2" as q %}{{ q.begin(s) }}').render(s=QUIET)

    control = logged_while(capture.server, do_block)
    assert stored_key in control and "CONTEXT:" in control and "STATEMENT:" in control

    for script in (alter, quiet + do_block):
        written = logged_while(capture.server, script)
        assert f'role "{missing}" does not exist' in written, written
        assert stored_key not in written
        assert "STATEMENT:" not in written and "CONTEXT:" not in written
