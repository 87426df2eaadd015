"""Code is never adopted: a stranger's routines, triggers, rules and event triggers are named
by the audit and removed by the deploy, never handed to a managed role.

A stranger (a role pgprov does not manage) plants what would run with a managed role's or the
admin's rights once the deploy "repaired" its owner: a SECURITY DEFINER trigger function on an
app table that grants the stranger every table; a rule on a table it owns; an event trigger
whose function it owns; a function that a column default uses. Each planted body leaves a
marker file in the data directory when it runs (``COPY ... TO`` as its caller may, so a marker
proves it ran as a superuser), or shows its effect in the grants it makes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.deploykit import DeployEnv, run_api, write_inventory
from tests.e2e.helpers import (
    assert_one_clear_line,
    console,
    lines_with,
    login,
)
from tests.pgserver import Names, Server

pytestmark = pytest.mark.db

BIN = Path(sys.executable).parent


def strangers_function(
    conn: psycopg.Connection, name: str, owner: str, returns: str, body: sql.Composable
) -> None:
    """``public.<name>()`` with ``body`` (plpgsql or SQL), owned by ``owner``."""
    language = "sql" if returns == "text" else "plpgsql"
    conn.execute(
        sql.SQL("CREATE FUNCTION public.{f}() RETURNS {r} LANGUAGE {l} AS {b}").format(
            f=sql.Identifier(name), r=sql.SQL(returns), l=sql.SQL(language), b=body
        )
    )
    conn.execute(
        sql.SQL("ALTER FUNCTION public.{}() OWNER TO {}").format(
            sql.Identifier(name), sql.Identifier(owner)
        )
    )


def marks_as_superuser(name: sql.Composable) -> sql.Composable:
    """A plpgsql body that writes the file ``name`` in the data directory when a superuser
    runs it (``COPY ... TO`` a file: only a superuser may)."""
    return sql.SQL(
        "$$ BEGIN IF current_setting('is_superuser') = 'on' THEN"
        " EXECUTE format('COPY (SELECT 1) TO %L', current_setting('data_directory')"
        " || '/' || {m}); END IF; END $$"
    ).format(m=name)


def routines_of(server: Server, names: Names, owners: list[str]) -> list[tuple[str, str]]:
    with server.connect(names.database) as conn:
        return conn.execute(
            "SELECT p.proname::text, pg_get_userbyid(p.proowner)::text FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname IN ('public', 'app') AND pg_get_userbyid(p.proowner) = ANY (%s)"
            " ORDER BY 1",
            (owners,),
        ).fetchall()


def test_a_strangers_trigger_and_definer_function_are_named_and_removed_not_adopted(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    stranger = names.role("x")
    grab = f"{names.prefix}_grab"
    with pg_server.connect(names.database) as conn:
        strangers_function(
            conn,
            grab,
            stranger,
            "trigger SECURITY DEFINER",
            sql.SQL(
                "$$ BEGIN EXECUTE 'GRANT SELECT ON ALL TABLES IN SCHEMA app TO ' ||"
                " quote_ident({who}); RETURN NEW; END $$"
            ).format(who=sql.Literal(stranger)),
        )
        conn.execute(
            sql.SQL(
                "CREATE TRIGGER {t} BEFORE INSERT ON app.unit FOR EACH ROW"
                " EXECUTE FUNCTION public.{f}()"
            ).format(t=sql.Identifier(f"{names.prefix}_t"), f=sql.Identifier(grab))
        )
    inventory = write_inventory(tmp_path, deployed.data)

    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 1, audit.stdout + audit.stderr
    assert lines_with(audit.stdout, "DRIFT", stranger, f"function public.{grab}()"), audit.stdout
    assert lines_with(audit.stdout, "DRIFT", f"trigger {names.prefix}_t on app.unit", grab), (
        audit.stdout
    )

    repair = run_api(deployed.data)
    assert repair.success and repair.changed["provision"], repair
    assert routines_of(pg_server, names, [stranger, names.migrator, names.runtime]) == []

    # The service's INSERT runs nothing of the stranger's.
    with login(pg_server, deployed, names, "runtime") as conn:
        conn.execute("INSERT INTO app.unit (name, symbol) VALUES ('kelvin', 'K')")
    with pg_server.connect(names.database) as conn:
        held = conn.execute(
            "SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = %s",
            (stranger,),
        ).fetchone()
    assert held == (0,)

    again = run_api(deployed.data)
    assert again.success and not again.changed["provision"], again
    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_a_rule_on_a_strangers_table_is_dropped_before_the_table_is_repaired(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    stranger = names.role("x")
    table = sql.Identifier("app", f"{names.prefix}_log")
    with pg_server.connect(names.database) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (i int)").format(table))
        conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(table, sql.Identifier(stranger)))
        conn.execute(
            sql.SQL("CREATE RULE {r} AS ON INSERT TO {t} DO ALSO DELETE FROM app.unit").format(
                r=sql.Identifier(f"{names.prefix}_r"), t=table
            )
        )
    inventory = write_inventory(tmp_path, deployed.data)
    audit = console("pgprov-verify", inventory, "--no-probes")
    assert audit.returncode == 1, audit.stdout + audit.stderr
    rule = f"rule {names.prefix}_r on app.{names.prefix}_log"
    assert lines_with(audit.stdout, "DRIFT", rule, stranger), audit.stdout

    assert run_api(deployed.data).success
    with pg_server.connect(names.database) as conn:
        rules = conn.execute(
            "SELECT count(*) FROM pg_rules WHERE rulename = %s", (f"{names.prefix}_r",)
        ).fetchone()
        owner = conn.execute(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = %s",
            (f"{names.prefix}_log",),
        ).fetchone()
    assert rules == (0,)
    assert owner == (names.migrator,)
    assert console("pgprov-verify", inventory, "--no-probes").returncode == 0


def test_a_foreign_function_a_column_default_uses_stops_the_deploy_and_nothing_is_lost(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    stranger = names.role("x")
    symbol = f"{names.prefix}_symbol"
    with pg_server.connect(names.database) as conn:
        strangers_function(conn, symbol, stranger, "text", sql.SQL("$$SELECT 'u'$$"))
        conn.execute(
            sql.SQL("ALTER TABLE app.unit ALTER COLUMN symbol SET DEFAULT public.{}()").format(
                sql.Identifier(symbol)
            )
        )
        conn.execute("INSERT INTO app.unit (name) VALUES ('metre')")
    inventory = write_inventory(tmp_path, deployed.data)

    plan = console("pgprov-plan", inventory)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert_one_clear_line(plan, f"public.{symbol}()", stranger, "default value")
    assert not run_api(deployed.data).success
    assert routines_of(pg_server, names, [stranger]) == [(symbol, stranger)]
    with pg_server.connect(names.database) as conn:
        assert conn.execute("SELECT symbol FROM app.unit WHERE name = 'metre'").fetchone() == ("u",)
    assert console("pgprov-verify", inventory, "--no-probes").returncode == 1


def test_an_event_trigger_a_stranger_controls_is_named_and_never_runs_as_the_admin(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    stranger = names.role("x")
    function = f"{names.prefix}_on_ddl"
    marker = f"pgprov_planted_{names.prefix}_event"
    with pg_server.connect(names.database) as conn:
        # A drift for the deploy to repair: DDL it would run next to the event trigger (made
        # first: the event trigger fires on this session's DDL too).
        conn.execute(
            sql.SQL("GRANT CREATE ON SCHEMA app TO {}").format(sql.Identifier(names.runtime))
        )
        strangers_function(
            conn,
            function,
            stranger,
            "event_trigger",
            marks_as_superuser(sql.Literal(marker)),
        )
        conn.execute(
            sql.SQL(
                "CREATE EVENT TRIGGER {e} ON ddl_command_start EXECUTE FUNCTION public.{f}()"
            ).format(e=sql.Identifier(f"{names.prefix}_e"), f=sql.Identifier(function))
        )
    inventory = write_inventory(tmp_path, deployed.data)
    try:
        audit = console("pgprov-verify", inventory, "--no-probes")
        assert audit.returncode == 1, audit.stdout + audit.stderr
        assert lines_with(audit.stdout, "DRIFT", f"event trigger {names.prefix}_e", stranger), (
            audit.stdout
        )
        plan = console("pgprov-plan", inventory)
        assert plan.returncode == 2, plan.stdout + plan.stderr
        assert_one_clear_line(plan, f"event trigger {names.prefix}_e", stranger)
        assert not run_api(deployed.data).success
        with pg_server.connect(names.database) as conn:
            owner = conn.execute(
                "SELECT pg_get_userbyid(proowner)::text FROM pg_proc WHERE proname = %s",
                (function,),
            ).fetchone()
            ran = conn.execute(
                "SELECT count(*) FROM pg_ls_dir('.') f WHERE f = %s", (marker,)
            ).fetchone()
        assert owner == (stranger,)  # not handed to the migrator
        assert ran == (0,)
    finally:
        with pg_server.connect(names.database) as conn:
            conn.execute(
                sql.SQL("DROP EVENT TRIGGER IF EXISTS {}").format(
                    sql.Identifier(f"{names.prefix}_e")
                )
            )


def test_a_login_event_trigger_a_stranger_controls_never_runs_in_the_admins_sessions(
    deployed: DeployEnv, pg_server: Server, names: Names, tmp_path: Path
) -> None:
    """From PostgreSQL 17 a login event trigger runs at every connection, before any statement
    pgprov could send: the admin's sessions start with event_triggers = off (the probe and every
    later session), so plan, audit and deploy connect without running it."""
    stranger = names.role("x")
    function = f"{names.prefix}_on_login"
    trigger = f"{names.prefix}_l"
    marker = f"pgprov_planted_{names.prefix}_login"
    create = sql.SQL("CREATE EVENT TRIGGER {e} ON login EXECUTE FUNCTION public.{f}()").format(
        e=sql.Identifier(trigger), f=sql.Identifier(function)
    )
    off = "-c event_triggers=off"  # the test's own sessions, once the trigger exists
    with pg_server.connect(names.database) as conn:
        strangers_function(
            conn,
            function,
            stranger,
            "event_trigger",
            marks_as_superuser(
                sql.SQL("{} || '_' || pg_backend_pid()").format(sql.Literal(marker))
            ),
        )
        if pg_server.major < 17:
            # Nothing to defend before 17: the server has no login event.
            with pytest.raises(psycopg.Error, match="login"):
                conn.execute(create)
            return
        conn.execute(create)

    def runs(server: Server) -> int:
        with server.connect(names.database, options=off) as conn:
            found = conn.execute(
                "SELECT count(*) FROM pg_ls_dir('.') f WHERE f LIKE %s", (marker + "%",)
            ).fetchone()
        assert found is not None
        return int(found[0])

    inventory = write_inventory(tmp_path, deployed.data)
    try:
        audit = console("pgprov-verify", inventory)
        assert audit.returncode == 1, audit.stdout + audit.stderr
        assert lines_with(audit.stdout, "DRIFT", f"event trigger {trigger}", stranger), audit.stdout
        plan = console("pgprov-plan", inventory)
        assert plan.returncode == 2, plan.stdout + plan.stderr
        assert_one_clear_line(plan, f"event trigger {trigger}", stranger)
        assert not run_api(deployed.data).success
        assert runs(pg_server) == 0
        # Control: a superuser session that does not switch event triggers off runs it.
        pg_server.connect(names.database).close()
        assert runs(pg_server) == 1
    finally:
        with pg_server.connect(names.database, options=off) as conn:
            conn.execute(sql.SQL("DROP EVENT TRIGGER IF EXISTS {}").format(sql.Identifier(trigger)))
