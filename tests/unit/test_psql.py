"""How psql is started: connection in argv, secrets never; the password on stdin when needed."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
from pgprov.catalog.psql import (
    admin_password,
    passfile_password,
    probe_argv,
    psql_argv,
    shell_command,
    stdin_for,
)
from pgprov.catalog.session import psql_environment
from pgprov.model.secrets import Secret, SecretError, parse_secret_ref
from pgprov.model.spec import AdminConnection

PASSWORD = "s3cr3t pass'word"
PINNED = psql_environment()
ADMIN = AdminConnection(
    host="db.internal",
    port=6432,
    user="admin",
    password=parse_secret_ref("literal:" + PASSWORD, allow_literal=True),
)


def test_argv_holds_connection_and_flags_but_never_the_password() -> None:
    argv = psql_argv(ADMIN)
    assert argv[0] == "psql"
    assert {"-X", "-q", "-A", "-t"} <= set(argv)
    assert "ON_ERROR_STOP=1" in argv
    assert argv[argv.index("-h") + 1] == "db.internal"
    assert argv[argv.index("-p") + 1] == "6432"
    assert argv[argv.index("-U") + 1] == "admin"
    assert argv[argv.index("-d") + 1] == "postgres"
    assert argv[-2:] == ["-f", "-"]
    assert not any(PASSWORD in part or "s3cr3t" in part for part in argv)


def test_argv_omits_unset_host_and_user_and_takes_another_database() -> None:
    argv = psql_argv(AdminConnection(), dbname="hinfelaar_fastapi")
    assert "-h" not in argv
    assert "-U" not in argv
    assert argv[argv.index("-d") + 1] == "hinfelaar_fastapi"


@pytest.mark.parametrize("off", [False, True])
def test_shell_command_once_the_server_answered_is_the_quoted_argv(off: bool) -> None:
    command = shell_command(ADMIN, password_on_stdin=False, event_triggers_off=off)
    pinned = psql_environment(event_triggers_off=off)
    assert shlex.split(command) == ["env", pinned, *psql_argv(ADMIN)]
    assert ("event_triggers=off" in command) is off


def test_shell_command_with_password_reads_it_from_stdin_first() -> None:
    command = shell_command(ADMIN, password_on_stdin=True, event_triggers_off=False)
    outer = shlex.split(command)
    assert outer[:2] == ["sh", "-c"]
    assert len(outer) == 3
    prologue = "IFS= read -r PGPASSWORD && export PGPASSWORD && exec "
    assert outer[2].startswith(prologue)
    assert shlex.split(outer[2][len(prologue) :]) == ["env", PINNED, *psql_argv(ADMIN)]
    assert "s3cr3t" not in command


def test_probe_connects_like_the_session_never_prompts_and_reads_no_stdin() -> None:
    argv = probe_argv(ADMIN, dbname="app")
    session = psql_argv(ADMIN, dbname="app")
    assert argv[: session.index("-f")] == session[: session.index("-f")]
    assert argv[-3:] == ["-w", "-c", ""]
    assert "-f" not in argv


# A stand-in for psql: as the probe (``-c`` in argv) it answers like the server in PROBE;
# as the session it prints what it received.
FAKE_PSQL = """#!/bin/sh
for a in "$@"; do
  if [ "$a" = "-c" ]; then
    [ -z "$PROBE" ] && exit 0
    echo "psql: error: connection to server failed: FATAL:  $PROBE" >&2; exit 2
  fi
done
printf "%s|%s|" "$PGPASSWORD" "$PGOPTIONS"; cat
"""


@pytest.mark.parametrize(
    ("server", "off"),
    [
        ("", True),  # 17+, and the admin may set it
        ('unrecognized configuration parameter "event_triggers"', False),  # 16 and older
        ('permission denied to set parameter "event_triggers"', False),  # not a superuser
        ('password authentication failed for user "admin"', True),  # the session says why
    ],
)
@pytest.mark.parametrize("with_password", [True, False])
def test_the_probe_decides_event_triggers_and_the_password_reaches_both(
    tmp_path: Path, server: str, off: bool, with_password: bool
) -> None:
    fake = tmp_path / "psql"
    fake.write_text(FAKE_PSQL)
    fake.chmod(0o700)
    command = shell_command(ADMIN, password_on_stdin=with_password, psql=str(fake))
    out = subprocess.run(
        ["sh", "-c", command],  # the command line as pyinfra runs it on the target
        input=stdin_for("SELECT 1;\n", Secret(PASSWORD) if with_password else None),
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"], "PROBE": server},
    ).stdout
    options = "-c search_path=pg_catalog,pg_temp" + (" -c event_triggers=off" if off else "")
    assert out == f"{PASSWORD if with_password else ''}|{options}|SELECT 1;\n"
    assert "s3cr3t" not in command


def test_stdin_puts_the_password_line_before_the_script() -> None:
    assert stdin_for("SELECT 1;\n", Secret("pw")) == "pw\nSELECT 1;\n"
    assert stdin_for("SELECT 1;\n", None) == "SELECT 1;\n"


@pytest.mark.parametrize("value", ["pw\nDROP DATABASE x;", "pw\r"])
def test_password_with_a_line_break_is_refused(value: str) -> None:
    with pytest.raises(SecretError, match="line break") as caught:
        stdin_for("SELECT 1;\n", Secret(value))
    assert "pw" not in str(caught.value)


# --- .pgpass ------------------------------------------------------------------------------------


def pgpass(tmp_path: Path, text: str) -> str:
    path = tmp_path / "pgpass"
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def reveal(secret: Secret | None) -> str | None:
    return None if secret is None else secret.reveal()


def test_first_matching_pgpass_line_wins(tmp_path: Path) -> None:
    path = pgpass(
        tmp_path,
        "# comment\n"
        "other:5432:*:admin:wrong-host\n"
        "db.internal:6432:postgres:admin:right\n"
        "*:*:*:*:fallback\n",
    )
    assert reveal(passfile_password("db.internal", 6432, "postgres", "admin", path)) == "right"
    assert reveal(passfile_password("elsewhere", 1, "x", "y", path)) == "fallback"


def test_pgpass_wildcards_match_any_value(tmp_path: Path) -> None:
    path = pgpass(tmp_path, "*:6432:*:admin:pw\n")
    assert reveal(passfile_password("h1", 6432, "db", "admin", path)) == "pw"
    assert passfile_password("h1", 5432, "db", "admin", path) is None


def test_pgpass_escaped_colon_and_backslash(tmp_path: Path) -> None:
    path = pgpass(tmp_path, "db\\:x:5432:*:admin:pa\\:ss\\\\word\n")
    assert reveal(passfile_password("db:x", 5432, "d", "admin", path)) == "pa:ss\\word"


def test_pgpass_missing_host_matches_localhost(tmp_path: Path) -> None:
    path = pgpass(tmp_path, "localhost:5432:*:admin:local\n")
    assert reveal(passfile_password(None, 5432, "d", "admin", path)) == "local"


def test_pgpass_missing_file_or_malformed_lines_give_none(tmp_path: Path) -> None:
    assert passfile_password("h", 5432, "d", "u", str(tmp_path / "absent")) is None
    path = pgpass(tmp_path, "h:5432:d:u\n\nh:5432:d\n")
    assert passfile_password("h", 5432, "d", "u", path) is None


def test_pgpass_readable_by_others_is_ignored_like_libpq_does(tmp_path: Path) -> None:
    path = pgpass(tmp_path, "*:*:*:*:pw\n")
    Path(path).chmod(0o644)
    assert passfile_password("h", 5432, "d", "u", path) is None


def test_admin_password_prefers_the_spec_reference_then_pgpassword_then_pgpassfile(
    tmp_path: Path,
) -> None:
    assert reveal(admin_password(ADMIN, env={"PGPASSWORD": "env-pw"})) == PASSWORD
    plain = AdminConnection(host="h", user="u")
    assert reveal(admin_password(plain, env={"PGPASSWORD": "env-pw"})) == "env-pw"
    path = pgpass(tmp_path, "h:5432:postgres:u:file-pw\n")
    assert reveal(admin_password(plain, env={"PGPASSFILE": path})) == "file-pw"


def test_peer_authentication_needs_no_password() -> None:
    admin = AdminConnection(sudo_user="postgres")
    assert admin_password(admin, env={"PGPASSWORD": "env-pw"}) is None
