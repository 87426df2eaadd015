"""How psql is started on the target: one command line, SQL on stdin, no secret in argv.

The admin connection is bundled in one value (``AdminConnection``) instead of five
``psql_*`` arguments repeated on every call. On the controller itself (pyinfra ``@local``)
psql inherits PGPASSWORD/PGPASSFILE from our environment. On a remote target the password,
when one is needed, travels as the first line of stdin: a tiny ``sh`` prologue reads it into
PGPASSWORD and execs psql, which then reads the script from the rest of stdin — nothing
secret is in argv, in a file, or in pyinfra's output.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

from pgprov.catalog.session import probing_prologue, psql_environment
from pgprov.model.secrets import Credentials, Secret, SecretError, resolve
from pgprov.model.spec import PASSWORD_KEYS, AdminConnection, Spec

# VERBOSITY=terse: an error is one line, without a CONTEXT that would echo the statement
# (and with it a role's password verifier) into the deploy's output.
PSQL_FLAGS = ("-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=terse")


def psql_argv(
    admin: AdminConnection, *, dbname: str | None = None, psql: str = "psql"
) -> list[str]:
    """psql's argv: connection parameters and flags only; the script comes on stdin."""
    argv = [psql, *PSQL_FLAGS]
    if admin.host:
        argv += ["-h", admin.host]
    argv += ["-p", str(admin.port)]
    if admin.user:
        argv += ["-U", admin.user]
    argv += ["-d", dbname or admin.dbname, "-f", "-"]
    return argv


def probe_argv(
    admin: AdminConnection, *, dbname: str | None = None, psql: str = "psql"
) -> list[str]:
    """A psql that only connects like ``psql_argv``'s would, never prompts, and runs nothing."""
    argv = psql_argv(admin, dbname=dbname, psql=psql)
    return [*argv[: argv.index("-f")], "-w", "-c", ""]


def shell_command(
    admin: AdminConnection,
    *,
    password_on_stdin: bool,
    dbname: str | None = None,
    psql: str = "psql",
    event_triggers_off: bool | None = None,
) -> str:
    """The shell command line pyinfra runs on the target: psql with PGOPTIONS, which gives it
    the pinned search_path of every pgprov session and, where the server allows,
    ``event_triggers = off`` (``pgprov.catalog.session``). ``event_triggers_off`` is what this
    server answered before (a snapshot of this run); None: not known yet, probe first."""
    quoted = " ".join(shlex.quote(part) for part in psql_argv(admin, dbname=dbname, psql=psql))
    if event_triggers_off is None:
        probe = " ".join(shlex.quote(part) for part in probe_argv(admin, dbname=dbname, psql=psql))
        script = probing_prologue(probe) + "exec " + quoted
    else:
        env = shlex.quote(psql_environment(event_triggers_off=event_triggers_off))
        if not password_on_stdin:
            return f"env {env} {quoted}"
        script = f"exec env {env} {quoted}"
    if password_on_stdin:
        script = "IFS= read -r PGPASSWORD && export PGPASSWORD && " + script
    return f"sh -c {shlex.quote(script)}"


class Stdin:
    """psql's stdin for pyinfra: pyinfra reads it through ``readlines()``, and everything that
    prints it (fact and operation arguments at -v/-vv) sees only a mask, never the password."""

    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        self._text = text

    def readlines(self) -> list[str]:
        return self._text.splitlines(keepends=True)

    def __iter__(self) -> Iterator[str]:
        return iter(self.readlines())

    def text(self) -> str:
        return self._text

    def __str__(self) -> str:
        return "<psql script on stdin>"

    __repr__ = __str__


def stdin_for(script: str, password: Secret | None) -> str:
    """What psql's stdin receives: the password line first when the prologue expects it."""
    if password is None:
        return script
    value = password.reveal()
    if "\n" in value or "\r" in value:
        raise SecretError("the admin password contains a line break, which cannot be sent on stdin")
    return value + "\n" + script


_LOCAL_PSQL: list[str] = []


def local_psql() -> str:
    """psql on this machine, skipping Debian's version-picking wrapper when it is one.

    /usr/bin/psql on Debian is a Perl script that costs ~40 ms per start before it execs the
    real client; the newest installed client talks to every older server.
    """
    if not _LOCAL_PSQL:
        import glob
        import shutil

        found = shutil.which("psql") or "psql"
        try:
            with open(found, "rb") as fh:
                script = fh.read(2) == b"#!"
        except OSError:
            script = False

        def major(path: str) -> int:
            part = Path(path).parts[4]
            return int(part) if part.isdigit() else 0

        clients = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"), key=major)
        _LOCAL_PSQL.append(clients[-1] if script and clients else "psql")
    return _LOCAL_PSQL[0]


def run_local(
    admin: AdminConnection,
    script: str,
    *,
    password: Secret | None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """psql on the controller (audit, reset): the same command line and stdin as the deploy's,
    without a controlling terminal so psql can never stop to prompt for a password."""
    command = shell_command(admin, password_on_stdin=password is not None, psql=local_psql())
    return subprocess.run(
        ["sh", "-c", command],
        input=stdin_for(script, password),
        text=True,
        capture_output=True,
        env=dict(os.environ if env is None else env),
        check=False,
        start_new_session=True,
    )


def passfile_password(
    host: str | None, port: int, dbname: str, user: str | None, passfile: str | None
) -> Secret | None:
    """The password libpq would pick from a .pgpass file (first matching line), or None."""
    path = Path(passfile or os.path.expanduser("~/.pgpass"))
    if not path.is_file() or path.stat().st_mode & 0o077:
        # libpq ignores a password file that group or others can read; so do we.
        return None
    wanted = [host or "localhost", str(port), dbname, user or os.environ.get("USER", "")]
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        fields = _split_pgpass(line)
        if len(fields) != 5:
            continue
        if all(f == "*" or f == w for f, w in zip(fields[:4], wanted, strict=True)):
            return Secret(fields[4])
    return None


def _split_pgpass(line: str) -> list[str]:
    fields, current, escape = [], [], False
    for char in line:
        if escape:
            current.append(char)
            escape = False
        elif char == "\\":
            escape = True
        elif char == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    return fields


def admin_password(admin: AdminConnection, env: Mapping[str, str] | None = None) -> Secret | None:
    """The admin password as the controller knows it: the spec's reference, PGPASSWORD, or PGPASSFILE."""
    env = os.environ if env is None else env
    if admin.sudo_user:
        return None
    if admin.password is not None:
        return resolve(admin.password, env)
    if env.get("PGPASSWORD"):
        return Secret(env["PGPASSWORD"])
    return passfile_password(
        admin.host, admin.port, admin.dbname, admin.user, env.get("PGPASSFILE")
    )


def credentials_of(spec: Spec, env: Mapping[str, str] | None = None) -> Credentials:
    """Every secret a deploy of ``spec`` needs, resolved once; a SecretError names the host
    data key (``pg_runtime_password: environment variable ... is not set``)."""
    passwords: dict[str, Secret] = {}
    for key, which in PASSWORD_KEYS.items():
        role = getattr(spec, which)
        if role not in spec.roles:
            continue
        try:
            passwords[role] = resolve(spec.passwords[role], env)
        except SecretError as exc:
            raise SecretError(f"{key}: {exc}") from None
    try:
        admin = admin_password(spec.admin, env)
    except SecretError as exc:
        raise SecretError(f"pg_admin_password: {exc}") from None
    return Credentials(passwords, admin)
