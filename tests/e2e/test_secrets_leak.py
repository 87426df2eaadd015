"""Plaintext passwords (migrator, runtime, admin) appear nowhere: not in pyinfra's output at
``-vv``, not in the server log with ``log_statement = 'all'``, not in any process's argv.

One dedicated server logs every statement. The CLI deploy runs twice under
``strace -f -e trace=execve``: first creating the roles, then after the role passwords were
rotated (so ALTER ROLE ... PASSWORD is exercised too). Needs ``strace`` (apt-get install strace).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deploy.secrets import verifier_matches
from deploy.state import Snapshot
from tests.deploykit import PYINFRA, REPO, env_data, login, secret_file, snapshot, write_inventory
from tests.pgserver import Names, Server, local_server

ROLES = ("migrator", "runtime")
STRACE = ("strace", "-f", "-e", "trace=execve", "-s", "4096")
SECRETS = ("migrator", "runtime", "rotated_migrator", "rotated_runtime", "admin")


@dataclass
class Capture:
    server: Server
    names: Names
    passwords: dict[str, str]
    output: str = ""
    trace: str = ""
    server_log: str = ""
    returncodes: list[int] = field(default_factory=list)
    final: Snapshot | None = None


def traced_deploy(directory: Path, inventory: Path, run: int) -> tuple[int, str, str]:
    trace = directory / f"strace-{run}.txt"
    proc = subprocess.run(
        [*STRACE, "-o", str(trace), PYINFRA, "-y", "-vv", str(inventory), "deploy/provision.py"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr, trace.read_text()


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Capture]:
    if shutil.which("strace") is None:
        pytest.fail("strace is required for the secrets tests (apt-get install strace)")
    major = os.environ.get("PGPROV_TEST_PG") or None
    with local_server(major, settings={"log_statement": "'all'"}) as server:
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
        result.server_log = server.cluster.logfile.read_text()
        result.final = snapshot(server, env)
        yield result


def test_both_traced_deploys_succeed_and_the_second_rotates_the_passwords(capture: Capture):
    assert capture.returncodes == [0, 0], capture.output[-3000:]
    for role in (capture.names.migrator, capture.names.runtime):
        assert f"set the password of role {role}" in capture.output


@pytest.mark.parametrize("secret", SECRETS)
def test_no_plaintext_password_in_pyinfra_output(capture: Capture, secret: str):
    assert "PASSWORD '<redacted>'" in capture.output, "the plan (with -vv) was not captured"
    # Only masked text reaches the assertion, so a failure report does not leak it further.
    password = capture.passwords[secret]
    leaks = [
        line.replace(password, "<THE PASSWORD>")[:300]
        for line in capture.output.splitlines()
        if password in line
    ]
    assert leaks == [], f"the {secret} password is in pyinfra's output"


@pytest.mark.parametrize("secret", SECRETS)
def test_no_plaintext_password_in_the_server_log(capture: Capture, secret: str):
    assert "CREATE ROLE" in capture.server_log and "ALTER ROLE" in capture.server_log, (
        "log_statement = 'all' did not log the deploy's statements"
    )
    found = capture.passwords[secret] in capture.server_log
    assert not found, f"the {secret} password is in the server log"


@pytest.mark.parametrize("secret", SECRETS)
def test_no_plaintext_password_in_any_process_argv(capture: Capture, secret: str):
    execs = [line for line in capture.trace.splitlines() if "execve(" in line]
    assert any("psql" in line for line in execs), "strace did not see psql started"
    assert any("deploy.migrate" in line for line in execs), "strace did not see the migrator"
    leaks = sum(capture.passwords[secret] in line for line in execs)
    assert leaks == 0, f"the {secret} password is in {leaks} execve argv"


def test_the_server_stores_scram_verifiers_of_the_rotated_passwords(capture: Capture):
    assert capture.final is not None
    for role in ROLES:
        stored = capture.final.roles[getattr(capture.names, role)].password
        assert stored is not None and stored.startswith("SCRAM-SHA-256$4096:")
        assert verifier_matches(capture.passwords[f"rotated_{role}"], stored)
        assert not verifier_matches(capture.passwords[role], stored)
        # What the server received is the verifier, so the verifier is what the log shows.
        logged = stored in capture.server_log
        assert logged, f"the verifier of {role} is not in the server log"
    conn = login(
        capture.server,
        capture.names.runtime,
        capture.passwords["rotated_runtime"],
        capture.names.database,
    )
    conn.close()
