"""Lock discipline without a server: the host data keys, the retry budget, the SQL retry loop."""

from __future__ import annotations

from typing import Any

import pytest
from pgprov.model.spec import SpecError, build_spec
from pgprov.sql.locks import (
    LockPolicy,
    LockTimeout,
    dollar_tag,
    psql_meta_command,
    retry_on_lock_timeout,
    with_lock_retries,
)

from tests.unit.test_plan import split_spec

BASE: dict[str, Any] = {
    "pg_environment": "staging",
    "pg_profile": "split",
    "pg_migrator_password": "env:MIGRATOR_PW",
    "pg_runtime_password": "env:RUNTIME_PW",
}


def error_of(**changes: Any) -> str:
    with pytest.raises(SpecError) as caught:
        build_spec({**BASE, **changes}, inventory="inventories/staging.py", host="db1")
    return str(caught.value)


def test_default_lock_timeout_is_at_most_one_second_and_the_wait_is_bounded() -> None:
    spec = split_spec()
    assert 0 < spec.lock_timeout <= 1.0
    assert spec.lock_timeout < spec.lock_wait <= 300


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(0.2, 0.2), (2, 2.0), ("250ms", 0.25), ("1.5s", 1.5), ("2min", 120.0), (" 3 s ", 3.0)],
)
def test_durations_are_seconds_or_numbers_with_a_unit(value: Any, seconds: float) -> None:
    spec = split_spec(pg_lock_timeout=value, pg_lock_wait="10min")
    assert spec.lock_timeout == seconds


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("pg_lock_timeout", "fast", "is not a duration"),
        ("pg_lock_timeout", "1h", "is not a duration"),
        ("pg_lock_timeout", 0, "out of range"),
        ("pg_lock_timeout", -1, "out of range"),
        ("pg_lock_timeout", True, "is not a duration"),
        ("pg_lock_wait", "0.5ms", "out of range"),
        ("pg_lock_wait", "2 days", "is not a duration"),
    ],
)
def test_bad_duration_is_one_line_naming_inventory_host_and_key(
    key: str, value: Any, needle: str
) -> None:
    message = error_of(**{key: value})
    assert message.startswith(f"inventories/staging.py: host db1: {key}: ")
    assert needle in message
    assert "\n" not in message


def test_wait_shorter_than_one_lock_timeout_is_refused() -> None:
    message = error_of(pg_lock_timeout="2s", pg_lock_wait="1s")
    assert message == (
        "inventories/staging.py: host db1: pg_lock_wait: 1s is shorter than pg_lock_timeout (2s)"
    )


def test_pauses_keep_every_try_inside_the_budget() -> None:
    policy = LockPolicy(lock_timeout=0.5, lock_wait=10)
    pauses = policy.pauses()
    assert pauses[:4] == [0.1, 0.2, 0.4, 0.8]
    assert max(pauses) == 2.0
    tries = len(pauses) + 1
    assert tries * policy.lock_timeout + sum(pauses) <= policy.lock_wait
    # one more pause and try would not have fitted
    assert (tries + 1) * policy.lock_timeout + sum(pauses) + 2.0 > policy.lock_wait


def test_budget_of_one_lock_timeout_means_exactly_one_try() -> None:
    assert LockPolicy(lock_timeout=1, lock_wait=1).pauses() == []


def test_retry_stops_at_the_first_success_and_sleeps_between_tries() -> None:
    outcomes = [LockTimeout("t1"), LockTimeout("t2"), "done"]
    slept: list[float] = []

    def once() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert retry_on_lock_timeout(once, LockPolicy(0.5, 10), sleep=slept.append) == "done"
    assert slept == [0.1, 0.2]


def test_retry_gives_up_with_the_last_lock_timeout_when_the_budget_is_spent() -> None:
    calls: list[int] = []

    def once() -> None:
        calls.append(1)
        raise LockTimeout(f"try {len(calls)}")

    policy = LockPolicy(0.5, 3)
    with pytest.raises(LockTimeout, match=f"try {len(policy.pauses()) + 1}"):
        retry_on_lock_timeout(once, policy, sleep=lambda _: None)


def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    def once() -> None:
        calls.append(1)
        raise RuntimeError("syntax error")

    with pytest.raises(RuntimeError):
        retry_on_lock_timeout(once, LockPolicy(0.5, 10), sleep=lambda _: None)
    assert calls == [1]


def test_dollar_tag_never_occurs_in_the_quoted_text() -> None:
    assert dollar_tag("SELECT 1", "b") == "$b$"
    assert dollar_tag("x $b$ y $b1$", "b") == "$b2$"


def test_retry_block_runs_the_body_in_a_subtransaction_with_the_lock_timeout() -> None:
    body = 'ALTER TABLE "app"."checklist" OWNER TO "app_migrator";\n'
    sql = with_lock_retries(body, LockPolicy(0.25, 30), what="database db")
    assert sql.startswith("DO $pgprov_retry$")
    assert "set_config('lock_timeout', '250ms', true)" in sql
    assert "EXCEPTION WHEN lock_not_available" in sql
    assert f"EXECUTE $pgprov_body$\n{body}$pgprov_body$;" in sql
    assert sql.index("EXECUTE") < sql.index("EXCEPTION") < sql.index("pg_sleep")
    assert "USING ERRCODE = 'lock_not_available'" in sql
    assert "'database db'" in sql


def test_body_that_contains_the_tags_cannot_break_out_of_the_quoting() -> None:
    body = "SELECT '$pgprov_body$ $pgprov_retry$';"
    sql = with_lock_retries(body, LockPolicy(0.5, 5), what="x")
    assert "EXECUTE $pgprov_body1$\n" + body + "\n$pgprov_body1$;" in sql
    assert sql.startswith("DO $pgprov_retry1$")


def test_psql_meta_commands_are_refused_in_the_server_side_body() -> None:
    with pytest.raises(ValueError, match="meta-command"):
        with_lock_retries("SELECT 1 \\gexec", LockPolicy(0.5, 5), what="x")
    with pytest.raises(ValueError, match="meta-command"):
        with_lock_retries("SELECT 1;\n\\connect other", LockPolicy(0.5, 5), what="x")


@pytest.mark.parametrize(
    "text",
    [
        'GRANT SELECT ON "app"."evil \\g" TO "x";',
        'REVOKE ALL ON "public"."a\\! rm -rf /" FROM "b\\o /tmp/x";',
        'SELECT "q""\\gexec";',
        "SELECT 'it''s \\copy';",
        "SELECT E'a\\'\\\\g';",
        "SELECT $f$ \\g $f$, $1;",
        "SELECT 1; -- \\connect other\nSELECT 2;",
        "SELECT 1 /* a /* nested \\g */ \\! */;",
        "COMMENT ON ROLE \"x\ny\\! z\" IS 'new\nline \\g';",
    ],
)
def test_names_and_literals_with_backslashes_are_data_not_meta_commands(text: str) -> None:
    assert psql_meta_command(text) is None
    assert "EXECUTE" in with_lock_retries(text, LockPolicy(0.5, 5), what="x")


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("SELECT 1 \\gexec", "\\gexec"),
        ("SELECT 'a' \\g /tmp/x", "\\g /tmp/x"),
        ('SELECT "a" \\! id', "\\! id"),
        ("SELECT E'\\'' \\o f", "\\o f"),
        ("SELECT $a$x$a$ \\gset", "\\gset"),
        ("SELECT 1 /* c */ \\q", "\\q"),
        ("SELECT x$1$ \\g", "\\g"),
    ],
)
def test_meta_commands_outside_quotes_are_found(text: str, command: str) -> None:
    assert psql_meta_command(text) == command
