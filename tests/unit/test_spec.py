"""An environment's spec: defaults from the contracts, and one clear line for every bad input.

Also the reset guard (``pgprov.local.reset.check_resettable``), which is a decision on the spec.
"""

from __future__ import annotations

from typing import Any

import pytest
from pgprov.local.reset import ResetRefused, check_resettable
from pgprov.model.spec import Spec, SpecError, build_spec

INVENTORY = "inventories/staging.py"
HOST = "db1"

SPLIT = {
    "pg_environment": "staging",
    "pg_profile": "split",
    "pg_migrator_password": "env:APP_MIGRATOR_PASSWORD",
    "pg_runtime_password": "env:APP_RUNTIME_PASSWORD",
}
SINGLE = {
    "pg_environment": "dev",
    "pg_profile": "single_user",
    "pg_app_user_password": "env:APP_DB_PASSWORD",
}


def spec_of(base: dict[str, Any], **changes: Any) -> Spec:
    data = {**base, **changes}
    return build_spec(
        {k: v for k, v in data.items() if v is not ...}, inventory=INVENTORY, host=HOST
    )


def error_of(base: dict[str, Any], **changes: Any) -> str:
    with pytest.raises(SpecError) as caught:
        spec_of(base, **changes)
    return str(caught.value)


def assert_one_line_naming(message: str, field: str) -> None:
    assert "\n" not in message
    assert message.startswith(f"{INVENTORY}: host {HOST}: {field}: "), message


# --- defaults -------------------------------------------------------------------------------


def test_split_defaults_follow_the_contract() -> None:
    spec = spec_of(SPLIT)
    assert spec.database == "hinfelaar_fastapi"
    assert spec.schema_name == "app"
    assert (spec.migrator, spec.runtime) == ("app_migrator", "app_runtime")
    assert spec.roles == ["app_migrator", "app_runtime"]
    assert spec.owner == "app_migrator"
    assert spec.runtime_role == "app_runtime"
    assert spec.gin_opclass == "jsonb_ops"
    assert spec.schema_mode == "migrate"
    assert spec.password_update == "on_create"
    assert spec.search_path == ("app", "public")
    assert not spec.createdb
    assert not spec.runtime_can_create


def test_single_user_profile_has_one_owner_role_and_no_runtime() -> None:
    spec = spec_of(SINGLE)
    assert spec.app_user == "hinfelaar_fastapi_db_user"
    assert spec.roles == ["hinfelaar_fastapi_db_user"]
    assert spec.owner == "hinfelaar_fastapi_db_user"
    assert spec.runtime_role is None


def test_passwords_are_references_keyed_by_the_role_they_belong_to() -> None:
    spec = spec_of(SPLIT, pg_migrator="mig", pg_runtime="web")
    assert set(spec.passwords) == {"mig", "web"}
    assert spec.passwords["web"].kind == "env"
    assert spec.passwords["web"].source == "APP_RUNTIME_PASSWORD"


def test_admin_connection_comes_from_pg_admin_keys() -> None:
    spec = spec_of(SPLIT, pg_admin_host="db.internal", pg_admin_port=6432, pg_admin_user="admin")
    assert (spec.admin.host, spec.admin.port, spec.admin.user) == ("db.internal", 6432, "admin")
    assert spec.admin.dbname == "postgres"


def test_spec_is_frozen() -> None:
    spec = spec_of(SPLIT)
    with pytest.raises(ValueError):
        spec.database = "other"  # type: ignore[misc]


# --- invalid input: one line naming inventory, host and field --------------------------------

BAD_IDENTIFIERS = [
    pytest.param("App", id="uppercase"),
    pytest.param("1app", id="starts-with-digit"),
    pytest.param("a" * 64, id="64-chars"),
    pytest.param("app;drop", id="semicolon"),
    pytest.param('app"; DROP ROLE postgres; --', id="injection"),
    pytest.param("", id="empty"),
    pytest.param("app-x", id="dash"),
]


@pytest.mark.parametrize("value", BAD_IDENTIFIERS)
@pytest.mark.parametrize(
    "key", ["pg_database", "pg_schema", "pg_migrator", "pg_runtime", "pg_environment"]
)
def test_invalid_identifier_is_refused_naming_the_field(key: str, value: str) -> None:
    message = error_of(SPLIT, **{key: value})
    assert_one_line_naming(message, key)
    assert "not a valid identifier" in message


def test_sixty_three_character_identifier_is_the_longest_accepted() -> None:
    assert spec_of(SPLIT, pg_database="a" * 63).database == "a" * 63


@pytest.mark.parametrize("key", ["pg_database", "pg_schema", "pg_runtime"])
def test_identifier_with_trailing_newline_is_refused(key: str) -> None:
    assert_one_line_naming(error_of(SPLIT, **{key: "app\n"}), key)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("pg_schema", "pg_app"),
        ("pg_schema", "information_schema"),
        ("pg_database", "postgres"),
        ("pg_database", "template1"),
    ],
)
def test_system_database_and_schema_names_are_refused(key: str, value: str) -> None:
    assert_one_line_naming(error_of(SPLIT, **{key: value}), key)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("pg_migrator", "postgres"),
        ("pg_runtime", "pg_x"),
        ("pg_runtime", "public"),
        ("pg_migrator", "current_user"),
    ],
)
def test_reserved_role_name_is_refused(key: str, value: str) -> None:
    message = error_of(SPLIT, **{key: value})
    assert_one_line_naming(message, key)
    assert "reserved role name" in message


def test_reserved_app_user_name_is_refused() -> None:
    assert_one_line_naming(error_of(SINGLE, pg_app_user="pg_signal"), "pg_app_user")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("pg_profile", "shared"),
        ("pg_gin_opclass", "gin_trgm_ops"),
        ("pg_schema_mode", "magic"),
        ("pg_password_update", "sometimes"),
        ("pg_app_port", 70000),
        ("pg_admin_port", 0),
    ],
)
def test_value_outside_the_allowed_set_is_refused_naming_the_field(key: str, value: Any) -> None:
    assert_one_line_naming(error_of(SPLIT, **{key: value}), key)


@pytest.mark.parametrize("key", ["pg_databse", "pg_gin_opclas", "pg_admin_hots"])
def test_unknown_pg_setting_is_a_typo_error(key: str) -> None:
    message = error_of(SPLIT, **{key: "x"})
    assert_one_line_naming(message, key)
    assert "unknown setting" in message


def test_non_pg_host_data_is_ignored() -> None:
    assert spec_of(SPLIT, ssh_user="deploy", _sudo=True).database == "hinfelaar_fastapi"


@pytest.mark.parametrize("key", ["pg_profile", "pg_environment"])
def test_missing_required_setting_is_named(key: str) -> None:
    message = error_of(SPLIT, **{key: ...})
    assert_one_line_naming(message, key)
    assert "missing" in message


@pytest.mark.parametrize(
    ("base", "key"),
    [
        (SPLIT, "pg_migrator_password"),
        (SPLIT, "pg_runtime_password"),
        (SINGLE, "pg_app_user_password"),
    ],
)
def test_missing_password_reference_for_a_managed_role_is_named(
    base: dict[str, Any], key: str
) -> None:
    message = error_of(base, **{key: ...})
    assert_one_line_naming(message, key)
    assert "missing for role" in message


def test_password_of_an_unmanaged_role_is_not_required() -> None:
    assert spec_of(SINGLE).passwords.keys() == {"hinfelaar_fastapi_db_user"}


@pytest.mark.parametrize("environment", ["staging", "production", "qa"])
@pytest.mark.parametrize("key", ["pg_runtime_password", "pg_admin_password"])
def test_literal_password_is_refused_outside_local_and_dev(environment: str, key: str) -> None:
    message = error_of(SPLIT, pg_environment=environment, **{key: "literal:xyz"})
    assert_one_line_naming(message, key)
    assert "literal passwords are allowed only" in message
    assert "xyz" not in message


@pytest.mark.parametrize("environment", ["local", "dev"])
def test_literal_password_is_accepted_in_local_and_dev(environment: str) -> None:
    spec = spec_of(SPLIT, pg_environment=environment, pg_runtime_password="literal:xyz")
    ref = spec.passwords["app_runtime"]
    assert ref.kind == "literal"
    assert ref.literal is not None
    assert ref.literal.reveal() == "xyz"


def test_malformed_password_reference_is_not_echoed() -> None:
    message = error_of(SPLIT, pg_runtime_password="hunter2-pasted-here")
    assert_one_line_naming(message, "pg_runtime_password")
    assert "hunter2" not in message


def test_createdb_with_split_profile_is_refused_naming_pg_createdb() -> None:
    assert_one_line_naming(error_of(SPLIT, pg_createdb=True), "pg_createdb")


def test_createdb_with_split_profile_is_refused() -> None:
    message = error_of(SPLIT, pg_createdb=True)
    assert "\n" not in message
    assert message.startswith(f"{INVENTORY}: host {HOST}: ")
    assert "only the single_user profile may have CREATEDB" in message


def test_createdb_is_allowed_for_single_user() -> None:
    assert spec_of(SINGLE, pg_createdb=True).createdb


def test_duplicate_role_names_are_refused_naming_the_key() -> None:
    assert_one_line_naming(error_of(SPLIT, pg_runtime="app_migrator"), "pg_runtime")


def test_duplicate_role_names_are_refused() -> None:
    message = error_of(SPLIT, pg_runtime="app_migrator")
    assert "\n" not in message
    assert message.startswith(f"{INVENTORY}: host {HOST}: ")
    assert "managed roles must differ" in message


# --- reset guard ------------------------------------------------------------------------------


@pytest.mark.parametrize("environment", ["staging", "production", "qa"])
def test_reset_is_refused_for_environments_not_meant_to_be_thrown_away(
    environment: str,
) -> None:
    spec = spec_of(SPLIT, pg_environment=environment)
    with pytest.raises(ResetRefused) as caught:
        check_resettable("@local", spec)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{INVENTORY}: host @local: ")
    assert repr(environment) in message


@pytest.mark.parametrize("environment", ["local", "dev"])
def test_reset_is_allowed_for_local_and_dev_on_local_targets(environment: str) -> None:
    check_resettable("@local", spec_of(SPLIT, pg_environment=environment))


def test_reset_is_refused_against_a_remote_host() -> None:
    with pytest.raises(ResetRefused, match="only against @local"):
        check_resettable("dev-db.example.com", spec_of(SINGLE))
