"""Password references resolve or fail with one clear line; verifiers equal PostgreSQL's own."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from pgprov.model.secrets import (
    Secret,
    SecretError,
    SecretRef,
    StoredPassword,
    new_password_key,
    parse_secret_ref,
    resolve,
    saslprep,
    scram_verifier,
    stored_password_digest,
    stored_password_matches,
    verifier_matches,
)

PLAINTEXT = "s3cr3t-Value!"

# Verifiers stored by real servers (CREATE ROLE ... PASSWORD '<plaintext>' with
# password_encryption = scram-sha-256, then SELECT rolpassword FROM pg_authid), PostgreSQL
# 15 and 18. The non-ASCII cases take each SASLprep path: mapping (no-break space to space,
# soft hyphen to nothing), NFKC (fullwidth letters, circled digit), and the fallback to the
# raw password when SASLprep prohibits it (mixed bidi text; a control character).
SERVER_VERIFIERS = [
    (
        "correct horse battery staple",
        "SCRAM-SHA-256$4096:bLJQfUziaMbaG9kXaGlpTg==$SK/WJ9jMkm4K3ZLUTW5YorZ9mLf+zSwl5fY+Lc2ESIo="
        ":lW12yjnTHpNJl6KRLu+zZdGaDlo/9x5qdS8GzRAHB6k=",
    ),
    (
        "correct horse battery staple",
        "SCRAM-SHA-256$4096:d9vwxFVPaoLm/6sMRTSuxw==$Q7syxCBgw8x437NPp9Q6yhDgpGeeVhPrKI4l2z3i2ow="
        ":PdOb7k9kxBSdYZ2UMLan2uSUf1MV7IE9/XpcObbYzeM=",
    ),
    (
        "pässwörd\u00a0x\u00adz",
        "SCRAM-SHA-256$4096:sqhcJB4+yDPCbpYQXzL9Cw==$aI+B+/GmIAZYmdXffNbasZgLtIa/Ku5j4EAfXmk82dQ="
        ":IOQAGC0BLGSG0doorGw7uW6cFHf2zD6pI743VO+eaQw=",
    ),
    (
        "Ｐａｓｓ①",
        "SCRAM-SHA-256$4096:z8A9RdQcEh18V8QY7TL9rw==$vCFrTQpyvQAfXzY9iPiO75S/5Nx1l7KoRtCgGEa0HmU="
        ":xJM393c+ZGMQtA5Kaide2XRLOBYclGYlrI8YkSMg4Ys=",
    ),
    (
        "\u0627\u0644abc",
        "SCRAM-SHA-256$4096:M6Cd3lWRYI2M89A5jIZmmQ==$4eBMDfEEsTKcl0dD8zkNFxz/ftHQU2GUOcacHvkVN5w="
        ":qB4S3zJDz7VPeQfa1Lz5aclNEBIWjtXjp/dzL59H524=",
    ),
    (
        "\u0007ctrl\u00e9",
        "SCRAM-SHA-256$4096:ARsDDXljdYIZGqvxitFmoQ==$5/ce5wpFBA38WbRRmIZHdG9r4B+LCNcu4z5gX867Z2w="
        ":Q5fGxHV9hMzcEhK7Dg/ZQd9iNxcppSZas4BIvExW644=",
    ),
]


def salt_of(verifier: str) -> bytes:
    return base64.b64decode(verifier.split("$")[1].split(":")[1])


def secret_file(tmp_path: Path, content: bytes, mode: int = 0o600) -> Path:
    path = tmp_path / "password"
    path.write_bytes(content)
    path.chmod(mode)
    return path


# --- parsing references ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "source", "description"),
    [
        (
            "env:APP_RUNTIME_PASSWORD",
            "env",
            "APP_RUNTIME_PASSWORD",
            "environment variable APP_RUNTIME_PASSWORD",
        ),
        ("file:/run/secrets/app", "file", "/run/secrets/app", "file /run/secrets/app"),
    ],
)
def test_references_parse_to_kind_and_source(
    text: str, kind: str, source: str, description: str
) -> None:
    ref = parse_secret_ref(text, allow_literal=False)
    assert (ref.kind, ref.source, ref.describe()) == (kind, source, description)


def test_file_reference_expands_home() -> None:
    ref = parse_secret_ref("file:~/pw", allow_literal=False)
    assert ref.source == str(Path.home() / "pw")


def test_literal_is_accepted_where_allowed_and_described_without_value() -> None:
    ref = parse_secret_ref(f"literal:{PLAINTEXT}", allow_literal=True)
    assert ref.kind == "literal"
    assert ref.describe() == "literal in the inventory"
    assert PLAINTEXT not in repr(ref)
    assert resolve(ref).reveal() == PLAINTEXT


def test_literal_is_refused_where_not_allowed_without_echoing_it() -> None:
    with pytest.raises(SecretError, match="only in the local and dev") as info:
        parse_secret_ref(f"literal:{PLAINTEXT}", allow_literal=False)
    assert PLAINTEXT not in str(info.value)


@pytest.mark.parametrize(
    "text",
    [PLAINTEXT, f"evn:{PLAINTEXT}", f"ENV:{PLAINTEXT}", "", f"{PLAINTEXT}:x"],
)
def test_unrecognised_reference_is_refused_without_echoing_it(text: str) -> None:
    with pytest.raises(SecretError, match="not a password reference") as info:
        parse_secret_ref(text, allow_literal=True)
    assert PLAINTEXT not in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("env:", "does not name an environment variable"),
        ("env:APP-PASSWORD", "does not name an environment variable"),
        ("file:", "is not an absolute path"),
        ("file:secrets/pw", "is not an absolute path"),
        ("literal:", "password is empty"),
    ],
)
def test_malformed_references_are_refused(text: str, message: str) -> None:
    with pytest.raises(SecretError, match=message):
        parse_secret_ref(text, allow_literal=True)


# --- resolving references -------------------------------------------------------------


def test_env_reference_resolves_from_given_environment() -> None:
    ref = parse_secret_ref("env:APP_RUNTIME_PASSWORD", allow_literal=False)
    assert resolve(ref, {"APP_RUNTIME_PASSWORD": PLAINTEXT}).reveal() == PLAINTEXT


def test_env_reference_defaults_to_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPROV_TEST_SECRET", PLAINTEXT)
    ref = parse_secret_ref("env:PGPROV_TEST_SECRET", allow_literal=False)
    assert resolve(ref).reveal() == PLAINTEXT


def test_missing_env_var_names_the_variable() -> None:
    ref = parse_secret_ref("env:APP_RUNTIME_PASSWORD", allow_literal=False)
    with pytest.raises(SecretError) as info:
        resolve(ref, {})
    assert str(info.value) == "environment variable APP_RUNTIME_PASSWORD is not set"


def test_empty_env_var_is_refused() -> None:
    ref = parse_secret_ref("env:APP_RUNTIME_PASSWORD", allow_literal=False)
    with pytest.raises(SecretError, match="APP_RUNTIME_PASSWORD is empty"):
        resolve(ref, {"APP_RUNTIME_PASSWORD": ""})


@pytest.mark.parametrize("ending", [b"", b"\n", b"\r\n", b"\nsecond line\n"])
def test_file_reference_resolves_to_first_line(tmp_path: Path, ending: bytes) -> None:
    path = secret_file(tmp_path, PLAINTEXT.encode() + ending)
    ref = parse_secret_ref(f"file:{path}", allow_literal=False)
    assert resolve(ref).reveal() == PLAINTEXT


@pytest.mark.parametrize("content", [b"", b"\n", b"\nsecond line\n"])
def test_empty_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = secret_file(tmp_path, content)
    with pytest.raises(SecretError, match=f"file {path} is empty"):
        resolve(SecretRef("file", str(path)))


def test_missing_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "absent"
    with pytest.raises(SecretError) as info:
        resolve(SecretRef("file", str(path)))
    assert str(info.value) == f"file {path} does not exist"


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="cannot be read: Is a directory"):
        resolve(SecretRef("file", str(tmp_path)))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_file_open_to_group_or_others_is_refused_without_value(tmp_path: Path, mode: int) -> None:
    path = secret_file(tmp_path, PLAINTEXT.encode(), mode)
    if os.geteuid() == 0:
        # Root-owned files follow a laxer rule; give this one an ordinary owner.
        os.chown(path, 65534, -1)
    with pytest.raises(SecretError, match=r"accessible by group or others.*0600") as info:
        resolve(SecretRef("file", str(path)))
    assert PLAINTEXT not in str(info.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a root-owned file")
def test_root_owned_file_may_be_group_readable_but_not_world_readable(tmp_path: Path) -> None:
    assert resolve(SecretRef("file", str(secret_file(tmp_path, b"pw", 0o640)))).reveal() == "pw"
    with pytest.raises(SecretError, match=r"mode 0644.*0640"):
        resolve(SecretRef("file", str(secret_file(tmp_path, b"pw", 0o644))))


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = secret_file(tmp_path, b"caf\xe9\n")
    with pytest.raises(SecretError, match="is not UTF-8 text"):
        resolve(SecretRef("file", str(path)))


# --- Secret ---------------------------------------------------------------------------


def test_secret_never_prints_its_value() -> None:
    secret = Secret(PLAINTEXT)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret])]
    assert all(PLAINTEXT not in text for text in shown)
    assert str(secret) == "Secret('***')"
    assert secret.reveal() == PLAINTEXT


def test_secrets_compare_by_value() -> None:
    assert Secret(PLAINTEXT) == Secret(PLAINTEXT)
    assert Secret(PLAINTEXT) != Secret("other")


# --- SCRAM-SHA-256 verifiers ----------------------------------------------------------


@pytest.mark.parametrize(("password", "server_verifier"), SERVER_VERIFIERS)
def test_verifier_equals_postgresql_for_same_salt(password: str, server_verifier: str) -> None:
    assert scram_verifier(password, salt=salt_of(server_verifier)) == server_verifier


def test_verifier_accepts_secret_and_iterations() -> None:
    password, server_verifier = SERVER_VERIFIERS[0]
    salt = salt_of(server_verifier)
    assert scram_verifier(Secret(password), salt=salt) == server_verifier
    assert scram_verifier(password, salt=salt, iterations=10000).startswith(
        "SCRAM-SHA-256$10000:bLJQfUziaMbaG9kXaGlpTg==$"
    )


def test_verifier_has_fresh_16_byte_salt_and_4096_iterations() -> None:
    first, second = scram_verifier(PLAINTEXT), scram_verifier(PLAINTEXT)
    assert first != second
    assert first.startswith("SCRAM-SHA-256$4096:")
    assert len(salt_of(first)) == 16
    assert PLAINTEXT not in first


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"iterations": 0}, "at least 1"), ({"salt": b""}, "salt must not be empty")],
)
def test_verifier_refuses_bad_parameters(kwargs: dict, message: str) -> None:
    with pytest.raises(SecretError, match=message):
        scram_verifier(PLAINTEXT, **kwargs)


def test_empty_password_has_no_verifier() -> None:
    with pytest.raises(SecretError, match="password is empty"):
        scram_verifier("")


@pytest.mark.parametrize(
    ("password", "prepared"),
    [
        ("plain ascii\t\x07", "plain ascii\t\x07"),
        ("pässwörd\u00a0x\u00adz", "pässwörd xz"),
        ("Ｐａｓｓ①", "Pass1"),
        ("\u0627\u0644abc", "\u0627\u0644abc"),
        ("\u0007ctrl\u00e9", "\u0007ctrl\u00e9"),
        ("\u00ad", "\u00ad"),
    ],
)
def test_saslprep_follows_postgresql(password: str, prepared: str) -> None:
    assert saslprep(password) == prepared


@pytest.mark.parametrize(("password", "server_verifier"), SERVER_VERIFIERS)
def test_verifier_matches_server_verifier_of_same_password(
    password: str, server_verifier: str
) -> None:
    assert verifier_matches(password, server_verifier)
    assert verifier_matches(Secret(password), server_verifier)


def test_verifier_does_not_match_other_password() -> None:
    password, server_verifier = SERVER_VERIFIERS[0]
    assert not verifier_matches(password + "!", server_verifier)


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "",
        "md5" + "0" * 32,
        "SCRAM-SHA-256$4096:bLJQfUziaMbaG9kXaGlpTg==$SK/WJ9jMkm4K3ZLUTW5YorZ9",
        "SCRAM-SHA-256$4096:bLJQfUziaMbaG9kXaGlpTg==$not base64!:lW12yjnTHpNJl6KRLu+zZdGaDlo=",
        "SCRAM-SHA-256$0:bLJQfUziaMbaG9kXaGlpTg==$SK/WJ9jMkm4K3ZLUTW5YorZ9mLf+zSwl5fY+Lc2ESIo="
        ":lW12yjnTHpNJl6KRLu+zZdGaDlo/9x5qdS8GzRAHB6k=",
        "SCRAM-SHA-256$4096:bLJQfUziaMbaG9kXaGlpTg==$c2hvcnQ=:c2hvcnQ=",
        "SCRAM-SHA-1$4096:bLJQfUziaMbaG9kXaGlpTg==$SK/WJ9jMkm4K3ZLUTW5YorZ9mLf+zSwl5fY+Lc2ESIo="
        ":lW12yjnTHpNJl6KRLu+zZdGaDlo/9x5qdS8GzRAHB6k=",
        "correct horse battery staple",
    ],
)
def test_verifier_matches_is_false_for_missing_md5_or_malformed(stored: str | None) -> None:
    assert not verifier_matches("correct horse battery staple", stored)


def stored_as_snapshot_reports(verifier: str, key: str) -> StoredPassword:
    """What inspect.sql.j2 reports for ``verifier``: iterations:salt and the keyed digest."""
    return StoredPassword(verifier.split("$")[1], stored_password_digest(verifier, key))


@pytest.mark.parametrize(("password", "server_verifier"), SERVER_VERIFIERS)
def test_stored_password_matches_a_server_verifier_through_its_keyed_digest(
    password: str, server_verifier: str
) -> None:
    key = new_password_key()
    stored = stored_as_snapshot_reports(server_verifier, key)
    assert stored_password_matches(password, stored, key)
    assert stored_password_matches(Secret(password), stored, key)
    assert not stored_password_matches(password + "!", stored, key)


def test_stored_password_needs_the_key_of_its_query() -> None:
    password, server_verifier = SERVER_VERIFIERS[0]
    stored = stored_as_snapshot_reports(server_verifier, new_password_key())
    assert not stored_password_matches(password, stored, new_password_key())
    assert not stored_password_matches(password, stored, "")


def test_stored_password_reveals_neither_keys_of_the_verifier() -> None:
    _, server_verifier = SERVER_VERIFIERS[0]
    stored_key, server_key = server_verifier.split("$")[2].split(":")
    shown = repr(stored_as_snapshot_reports(server_verifier, new_password_key()))
    assert stored_key not in shown and server_key not in shown


@pytest.mark.parametrize(
    "stored",
    [
        None,
        StoredPassword(None, "00" * 32),  # an MD5 hash or anything that is not SCRAM
        StoredPassword("4096", "00" * 32),
        StoredPassword("x:bLJQfUziaMbaG9kXaGlpTg==", "00" * 32),
        StoredPassword("0:bLJQfUziaMbaG9kXaGlpTg==", "00" * 32),
        StoredPassword("4096:not base64!", "00" * 32),
    ],
)
def test_stored_password_is_no_match_when_missing_or_malformed(
    stored: StoredPassword | None,
) -> None:
    assert not stored_password_matches("correct horse battery staple", stored, "k" * 32)
