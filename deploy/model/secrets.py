"""Password references and SCRAM-SHA-256 verifiers: how a role's password is named and hashed.

Inventories never hold a plaintext password (key decision 4). They hold a *reference*:

- ``env:NAME``      an environment variable on the controller;
- ``file:/path``    the first line of a file on the controller (absolute path, ``~`` expanded);
- ``literal:VALUE`` the password itself, accepted only where the caller allows literals
  (the local and dev inventories).

Literals need the explicit ``literal:`` prefix rather than "anything that is not env:/file:",
so a typo such as ``evn:APP_DB_PASSWORD`` is an error instead of silently becoming the
password. For the same reason an unrecognised reference is never echoed in an error: it may
be a pasted password.

The role's password is then sent to PostgreSQL as a SCRAM-SHA-256 verifier computed here,
byte-for-byte what the server itself would store for that plaintext, so the plaintext never
reaches the target, argv, pyinfra output or the server log::

    ref = parse_secret_ref("env:APP_RUNTIME_PASSWORD", allow_literal=False)
    password = resolve(ref)                 # SecretError names the variable if unset
    verifier = scram_verifier(password)     # 'SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>'
    verifier_matches(password, rolpassword) # True: the role already has this password

The verifier is a secret too (it allows offline guessing and server impersonation), so the
catalog snapshot never carries it: it carries a ``StoredPassword`` (the SCRAM iteration count
and salt, which any client sees during authentication anyway, and a digest of the verifier
keyed with a random per-query key the controller keeps)::

    stored_password_matches(password, role.password, snapshot.password_key)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import stat
import stringprep
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "DEFAULT_ITERATIONS",
    "SALT_LENGTH",
    "Secret",
    "SecretError",
    "SecretRef",
    "StoredPassword",
    "new_password_key",
    "parse_secret_ref",
    "resolve",
    "saslprep",
    "scram_verifier",
    "stored_password_digest",
    "stored_password_matches",
    "verifier_matches",
]

# PostgreSQL's defaults: scram_iterations (PG 16+; fixed before) and SCRAM_DEFAULT_SALT_LEN.
DEFAULT_ITERATIONS = 4096
SALT_LENGTH = 16

_SCHEME = "SCRAM-SHA-256"
_KEY_LENGTH = hashlib.sha256().digest_size
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SecretError(ValueError):
    """A password reference is malformed or cannot be resolved; the message is one line."""


class Secret:
    """A plaintext password that does not print itself; ``reveal()`` is the only way out."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class SecretRef:
    """Where a password comes from; describing it never reveals the value."""

    kind: Literal["env", "file", "literal"]
    source: str
    literal: Secret | None = field(default=None, repr=False)

    def describe(self) -> str:
        if self.kind == "env":
            return f"environment variable {self.source}"
        if self.kind == "file":
            return f"file {self.source}"
        return "literal in the inventory"


def parse_secret_ref(text: str, *, allow_literal: bool) -> SecretRef:
    """Parse ``env:NAME``, ``file:/path`` or (if allowed) ``literal:VALUE``.

    >>> parse_secret_ref("env:APP_DB_PASSWORD", allow_literal=False).describe()
    'environment variable APP_DB_PASSWORD'
    """
    kind, sep, rest = text.partition(":")
    if sep and kind == "env":
        if not _ENV_NAME.fullmatch(rest):
            # Not echoed: what follows env: may be a password typed in the wrong place.
            raise SecretError(
                "env: reference does not name an environment variable "
                "(letters, digits and underscores)"
            )
        return SecretRef("env", rest)
    if sep and kind == "file":
        path = Path(rest).expanduser()
        # A relative path would depend on where pyinfra happens to be started from.
        if not path.is_absolute():
            raise SecretError("file: reference is not an absolute path")
        return SecretRef("file", str(path))
    if sep and kind == "literal":
        if not allow_literal:
            raise SecretError(
                "literal passwords are allowed only in the local and dev inventories; "
                "use env:NAME or file:/path"
            )
        if not rest:
            raise SecretError("literal: password is empty")
        return SecretRef("literal", "", Secret(rest))
    expected = (
        "env:NAME, file:/path or literal:VALUE" if allow_literal else "env:NAME or file:/path"
    )
    raise SecretError(f"not a password reference (expected {expected})")


def resolve(ref: SecretRef, env: Mapping[str, str] | None = None) -> Secret:
    """The password ``ref`` points to; ``env`` defaults to the controller's environment."""
    if ref.kind == "literal":
        if ref.literal is None:
            raise SecretError("literal in the inventory has no value")
        return ref.literal
    if ref.kind == "env":
        value = (os.environ if env is None else env).get(ref.source)
        if value is None:
            raise SecretError(f"{ref.describe()} is not set")
        if not value:
            raise SecretError(f"{ref.describe()} is empty")
        return Secret(value)
    return Secret(_read_secret_file(ref))


def _read_secret_file(ref: SecretRef) -> str:
    path = Path(ref.source)
    try:
        with path.open("rb") as fh:
            _check_file_mode(ref, os.fstat(fh.fileno()))
            raw = fh.readline()
    except FileNotFoundError:
        raise SecretError(f"{ref.describe()} does not exist") from None
    except OSError as exc:
        raise SecretError(f"{ref.describe()} cannot be read: {exc.strerror}") from None
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"{ref.describe()} is not UTF-8 text") from None
    value = line.rstrip("\r\n")
    if not value:
        raise SecretError(f"{ref.describe()} is empty (the password is its first line)")
    return value


def _check_file_mode(ref: SecretRef, st: os.stat_result) -> None:
    """Refuse a password file others can read, as libpq does for ~/.pgpass and sslkey.

    Refusing (not warning) because a warning scrolls by in pyinfra output while the password
    stays exposed. libpq's relaxation for root-owned files (group-readable allowed) is kept,
    so files provisioned by configuration management with owner root, group app still work.
    Pipes pass (they are 0600), so ``file:/dev/fd/N`` from a shell's ``<(pass show x)`` works.
    """
    mode = stat.S_IMODE(st.st_mode)
    too_open = mode & (0o037 if st.st_uid == 0 else 0o077)
    if too_open:
        limit = "0640" if st.st_uid == 0 else "0600"
        raise SecretError(
            f"{ref.describe()} is accessible by group or others (mode {mode:04o}); "
            f"restrict it to {limit} or less"
        )


def saslprep(password: str) -> str:
    """The password as PostgreSQL's ``pg_saslprep`` prepares it before hashing.

    Implemented rather than rejecting non-ASCII passwords because the server and libpq
    accept them, and a verifier must equal what they compute. Faithful to
    ``src/common/saslprep.c``: ASCII is returned unchanged (even control characters); the
    prohibited-character and bidi checks look at the mapped, not-yet-normalised characters;
    a password that fails SASLprep is used as it is (the server and libpq both fall back to
    the raw bytes, so it still logs in).
    """
    if password.isascii():
        return password
    mapped = [
        " " if stringprep.in_table_c12(ch) else ch
        for ch in password
        if not stringprep.in_table_b1(ch)
    ]
    if not mapped or any(_prohibited(ch) for ch in mapped):
        return password
    if any(stringprep.in_table_d1(ch) for ch in mapped) and (
        any(stringprep.in_table_d2(ch) for ch in mapped)
        or not stringprep.in_table_d1(mapped[0])
        or not stringprep.in_table_d1(mapped[-1])
    ):
        return password
    return unicodedata.normalize("NFKC", "".join(mapped))


def _prohibited(ch: str) -> bool:
    # RFC 4013 section 2.3 (C.1.2, C.2.1, C.2.2, C.3-C.9) plus unassigned code points (A.1).
    return (
        stringprep.in_table_c12(ch)
        or stringprep.in_table_c21_c22(ch)
        or stringprep.in_table_c3(ch)
        or stringprep.in_table_c4(ch)
        or stringprep.in_table_c5(ch)
        or stringprep.in_table_c6(ch)
        or stringprep.in_table_c7(ch)
        or stringprep.in_table_c8(ch)
        or stringprep.in_table_c9(ch)
        or stringprep.in_table_a1(ch)
    )


def scram_verifier(
    password: Secret | str, *, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores in ``pg_authid.rolpassword``.

    ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (base64), as built by
    ``scram_build_secret`` in PostgreSQL's ``src/common/scram-common.c``; a random 16-byte
    salt unless one is given. libpq's ``PQencryptPasswordConn`` does the same but needs a
    connection and cannot take a salt, which rules out known-answer tests.
    """
    if iterations < 1:
        raise SecretError(f"SCRAM iteration count must be at least 1, not {iterations}")
    if salt is None:
        salt = os.urandom(SALT_LENGTH)
    elif not salt:
        raise SecretError("SCRAM salt must not be empty")
    stored_key, server_key = _scram_keys(_password_bytes(password), salt, iterations)
    return f"{_SCHEME}${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def verifier_matches(password: Secret | str, stored: str | None) -> bool:
    """Whether ``stored`` (a ``rolpassword`` value) is a SCRAM verifier of ``password``.

    False for None (no password, or rolpassword not readable), MD5 hashes and anything
    malformed, so the caller simply sets the password again.
    """
    parsed = _parse_verifier(stored)
    if parsed is None:
        return False
    iterations, salt, stored_key, server_key = parsed
    want_stored, want_server = _scram_keys(_password_bytes(password), salt, iterations)
    # Both comparisons always run, so timing does not reveal which key differed.
    same_stored = hmac.compare_digest(stored_key, want_stored)
    same_server = hmac.compare_digest(server_key, want_server)
    return same_stored and same_server


@dataclass(frozen=True)
class StoredPassword:
    """A role's stored password as the catalog snapshot reports it, without the verifier.

    ``scram`` is ``"<iterations>:<salt base64>"`` for a SCRAM-SHA-256 verifier (None for an
    MD5 hash or anything else); ``digest`` is ``stored_password_digest(verifier, key)`` with the
    key of the query that read it. Without that key (it never leaves the controller but on
    psql's stdin) the digest allows no guessing, so printing the snapshot reveals nothing.
    """

    scram: str | None
    digest: str


def new_password_key() -> str:
    """A fresh random key for one catalog query's password digests (hex, SQL-safe)."""
    return os.urandom(16).hex()


def stored_password_digest(verifier: str, key: str) -> str:
    """sha256(key || verifier) in hex: what inspect.sql.j2 computes on the server."""
    return hashlib.sha256((key + verifier).encode("utf-8")).hexdigest()


def stored_password_matches(
    password: Secret | str, stored: StoredPassword | None, key: str
) -> bool:
    """Whether ``stored`` is a SCRAM verifier of ``password``: the verifier is recomputed
    with the stored salt and iteration count, and the keyed digests compared.

    False for None (no password, or pg_authid not readable), MD5 hashes, anything malformed
    and a missing key, so the caller simply sets the password again.
    """
    if stored is None or stored.scram is None or not key:
        return False
    count, _, salt_text = stored.scram.partition(":")
    try:
        iterations = int(count)
        salt = base64.b64decode(salt_text, validate=True)
    except (ValueError, binascii.Error):
        return False
    if iterations < 1 or not salt:
        return False
    candidate = scram_verifier(password, salt=salt, iterations=iterations)
    return hmac.compare_digest(stored_password_digest(candidate, key), stored.digest)


def _password_bytes(password: Secret | str) -> bytes:
    plain = password.reveal() if isinstance(password, Secret) else password
    if not plain:
        # PostgreSQL treats an empty password as "no password" rather than hashing it.
        raise SecretError("password is empty")
    try:
        return saslprep(plain).encode("utf-8")
    except UnicodeEncodeError:
        raise SecretError("password is not valid Unicode text") from None


def _scram_keys(password: bytes, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    return hashlib.sha256(client_key).digest(), server_key


def _parse_verifier(stored: str | None) -> tuple[int, bytes, bytes, bytes] | None:
    if not stored:
        return None
    match = re.fullmatch(r"SCRAM-SHA-256\$([0-9]+):([^$:]+)\$([^$:]+):([^$:]+)", stored)
    if match is None:
        return None
    iterations = int(match[1])
    try:
        salt, stored_key, server_key = (
            base64.b64decode(part, validate=True) for part in match.group(2, 3, 4)
        )
    except binascii.Error:
        return None
    if iterations < 1 or not salt or len(stored_key) != _KEY_LENGTH:
        return None
    if len(server_key) != _KEY_LENGTH:
        return None
    return iterations, salt, stored_key, server_key


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class Credentials:
    """One run's secrets, resolved once and handed down: each managed role's password and the
    admin's (None when psql finds its own: peer authentication, PGPASSWORD, a passfile)."""

    passwords: Mapping[str, Secret]
    admin: Secret | None = None

    def password(self, role: str) -> Secret:
        return self.passwords[role]
