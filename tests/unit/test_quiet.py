"""Which logging settings the admin may switch off around a verifier, and what it is told when
it may not (decided from the snapshot; no server)."""

from __future__ import annotations

import dataclasses

from pgprov.catalog.state import QuietState
from pgprov.sql.quiet import QUIET
from pgprov.steps.plan import quiet_notice, quiet_settings

from tests.unit.test_plan import converged_split, split_spec


def with_quiet(superuser: bool, **states: QuietState) -> object:
    # Core settings at a value that logs nothing; extensions not loaded.
    everything = {
        s.name: QuietState(superuser, None if s.extension else s.quiet_values[0]) for s in QUIET
    }
    return dataclasses.replace(
        converged_split(), is_superuser=superuser, quiet={**everything, **states}
    )


def test_a_superuser_may_set_them_all_and_hears_no_notice() -> None:
    snap = with_quiet(True, **{"pgaudit.log": QuietState(True, "all")})
    assert quiet_settings(snap) == list(QUIET)
    assert quiet_notice(split_spec(), snap) is None


def test_without_the_snapshots_word_only_a_superuser_sets_them() -> None:
    assert quiet_settings(dataclasses.replace(converged_split(), quiet={})) == list(QUIET)
    bare = dataclasses.replace(converged_split(), quiet={}, is_superuser=False)
    assert quiet_settings(bare) == []


def test_a_parameter_granted_to_the_admin_is_set_and_the_rest_is_named() -> None:
    snap = with_quiet(
        False,
        log_statement=QuietState(True, "all"),
        **{
            "pgaudit.log": QuietState(False, "ddl, role"),
            "auto_explain.log_min_duration": QuietState(False, None),
        },
    )
    assert [s.name for s in quiet_settings(snap)] == ["log_statement"]
    notice = quiet_notice(split_spec(), snap)
    assert notice is not None and "\n" not in notice
    assert notice.startswith("inventories/staging.py: host db1: the admin postgres may not set ")
    assert "pgaudit.log = 'ddl, role' (pgaudit is loaded)" in notice
    assert "log_statement" not in notice  # the admin may set it
    assert "auto_explain" not in notice  # not loaded


def test_settings_that_log_nothing_now_are_not_named() -> None:
    snap = with_quiet(False, log_statement=QuietState(False, "none"))
    assert quiet_notice(split_spec(), snap) is None
