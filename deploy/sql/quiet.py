"""The settings that keep a statement carrying a secret out of every log, and when they matter.

A SCRAM verifier (``CREATE/ALTER ROLE ... PASSWORD``) and the snapshot's digest key must reach
neither the server log (as the statement, with its duration, as an error's STATEMENT or
CONTEXT line), nor pg_stat_statements, nor the logging extensions platform teams load
(pgaudit's session and object audit, auto_explain's plans with their query text). Each is
switched off for that statement only, in an earlier statement, by the settings the admin may
set: ``has_parameter_privilege`` decides (a provider may ``GRANT SET ON PARAMETER``), not
rolsuper. ``sql_templates/unlogged.sql.j2`` renders them; the snapshot reads which ones the
admin may set and what each one is now.

    [s.name for s in QUIET]                  # what the snapshot asks about
    logs(setting, "all")                     # True: this value would log the statement
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QuietSetting:
    name: str
    value: str  # the value that keeps the secret out, as SQL (a number or a quoted string)
    quiet_values: tuple[str, ...]  # current values that log nothing of the statement anyway
    extension: str | None = None  # loaded separately (shared_preload_libraries)
    # Logs every such statement when active (the run names it when the admin cannot set it);
    # the others log one only when it fails (an error's STATEMENT and CONTEXT lines).
    always: bool = True


QUIET = (
    QuietSetting("log_statement", "'none'", ("none",)),
    QuietSetting("log_min_duration_statement", "-1", ("-1",)),
    QuietSetting("log_min_duration_sample", "-1", ("-1",)),
    QuietSetting("log_min_error_statement", "'panic'", ("panic", "fatal"), always=False),
    QuietSetting("log_error_verbosity", "'terse'", ("terse",), always=False),
    QuietSetting("log_transaction_sample_rate", "0", ("0",)),
    QuietSetting("pg_stat_statements.track", "'none'", ("none",), "pg_stat_statements"),
    QuietSetting("pgaudit.log", "'none'", ("none",), "pgaudit"),
    QuietSetting("pgaudit.role", "''", ("",), "pgaudit"),
    QuietSetting("auto_explain.log_min_duration", "-1", ("-1",), "auto_explain"),
)
BY_NAME = {setting.name: setting for setting in QUIET}


def logs(setting: QuietSetting, current: str | None) -> bool:
    """Whether ``current`` (None: the extension is not loaded) would let a secret through."""
    return current is not None and current not in setting.quiet_values
