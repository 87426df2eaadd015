SET application_name = 'pgprov deploy';
SELECT pg_catalog.set_config('client_connection_check_interval', '1s', false)
WHERE pg_catalog.current_setting('server_version_num')::integer >= 140000 \g /dev/null
SET log_transaction_sample_rate = 0;
BEGIN;
SELECT pg_catalog.pg_advisory_xact_lock(1885827186) \g /dev/null
SET log_statement = 'none'; SET log_min_duration_statement = -1; SET log_min_duration_sample = -1; SET log_min_error_statement = 'panic'; SET log_error_verbosity = 'terse'; SET log_transaction_sample_rate = 0; SET pg_stat_statements.track = 'none'; SET pgaudit.log = 'none'; SET pgaudit.role = ''; SET auto_explain.log_min_duration = -1;
DO $pgprov$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'app_migrator') THEN
    CREATE ROLE "app_migrator" LOGIN INHERIT PASSWORD 'SCRAM-SHA-256$4096:Zml4ZWQtc2FsdA==$fixed-stored-key=:fixed-server-key=';
  END IF;
END $pgprov$;
RESET auto_explain.log_min_duration; RESET pgaudit.role; RESET pgaudit.log; RESET pg_stat_statements.track; RESET log_transaction_sample_rate; RESET log_error_verbosity; RESET log_min_error_statement; RESET log_min_duration_sample; RESET log_min_duration_statement; RESET log_statement;
COMMENT ON ROLE "app_migrator" IS 'pgprov: managed role';
SET log_statement = 'none'; SET log_min_duration_statement = -1; SET log_min_duration_sample = -1; SET log_min_error_statement = 'panic'; SET log_error_verbosity = 'terse'; SET log_transaction_sample_rate = 0; SET pg_stat_statements.track = 'none'; SET pgaudit.log = 'none'; SET pgaudit.role = ''; SET auto_explain.log_min_duration = -1;
DO $pgprov$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'app_runtime') THEN
    CREATE ROLE "app_runtime" LOGIN INHERIT PASSWORD 'SCRAM-SHA-256$4096:Zml4ZWQtc2FsdA==$fixed-stored-key=:fixed-server-key=';
  END IF;
END $pgprov$;
RESET auto_explain.log_min_duration; RESET pgaudit.role; RESET pgaudit.log; RESET pg_stat_statements.track; RESET log_transaction_sample_rate; RESET log_error_verbosity; RESET log_min_error_statement; RESET log_min_duration_sample; RESET log_min_duration_statement; RESET log_statement;
COMMENT ON ROLE "app_runtime" IS 'pgprov: managed role';
COMMIT;
RESET log_transaction_sample_rate;
SELECT pg_catalog.pg_advisory_lock(1885827186) \g /dev/null
SELECT 'CREATE DATABASE "hinfelaar_fastapi" OWNER "app_migrator" ENCODING ''UTF8'' TEMPLATE template0'
WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = 'hinfelaar_fastapi') \gexec
SELECT pg_catalog.pg_advisory_unlock(1885827186) \g /dev/null
\connect "hinfelaar_fastapi"
SET application_name = 'pgprov deploy';
SELECT pg_catalog.set_config('client_connection_check_interval', '1s', false)
WHERE pg_catalog.current_setting('server_version_num')::integer >= 140000 \g /dev/null
BEGIN;
SELECT pg_catalog.pg_advisory_xact_lock(1885827186) \g /dev/null
DO $pgprov_retry$
DECLARE
  started constant timestamptz := pg_catalog.clock_timestamp();
  pause double precision := 0.1;
  tries integer := 0;
BEGIN
  PERFORM pg_catalog.set_config('lock_timeout', '500ms', true);
  LOOP
    tries := tries + 1;
    BEGIN
      EXECUTE $pgprov_body$
ALTER ROLE "app_migrator" IN DATABASE "hinfelaar_fastapi" SET "search_path" TO 'app', 'public';
ALTER ROLE "app_runtime" IN DATABASE "hinfelaar_fastapi" SET "search_path" TO 'app', 'public';
CREATE SCHEMA IF NOT EXISTS "app" AUTHORIZATION "app_migrator";
REVOKE CONNECT, TEMPORARY ON DATABASE "hinfelaar_fastapi" FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE "app_migrator" REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
GRANT CONNECT ON DATABASE "hinfelaar_fastapi" TO "app_runtime";
GRANT USAGE ON SCHEMA "app" TO "app_runtime";
ALTER DEFAULT PRIVILEGES FOR ROLE "app_migrator" IN SCHEMA "app" GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO "app_runtime";
ALTER DEFAULT PRIVILEGES FOR ROLE "app_migrator" IN SCHEMA "app" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "app_runtime";
$pgprov_body$;
      RETURN;
    EXCEPTION WHEN lock_not_available THEN
      IF pg_catalog.clock_timestamp() - started
         + pg_catalog.make_interval(secs => pause + 500 / 1000.0)
         > pg_catalog.make_interval(secs => 60000 / 1000.0) THEN
        RAISE EXCEPTION 'pgprov: %: locks not granted in % tries within pg_lock_wait (% ms, pg_lock_timeout % ms each); rolled back, nothing changed; blocking sessions: %',
          'database hinfelaar_fastapi', tries, 60000, 500,
          (SELECT coalesce(
         pg_catalog.string_agg(
           pg_catalog.format('pid %s (user %s, application_name %L, %s, transaction open %s s)',
                             a.pid, a.usename, a.application_name, coalesce(a.state, 'state not visible'),
                             coalesce(pg_catalog.round(extract(epoch FROM pg_catalog.clock_timestamp() - a.xact_start))::text, '?')),
           '; ' ORDER BY a.xact_start),
         'none left (they have ended)')
FROM pg_catalog.pg_stat_activity a
WHERE a.pid <> pg_catalog.pg_backend_pid()
  AND a.datname = pg_catalog.current_database()
  AND coalesce(a.xact_start, '-infinity') < pg_catalog.clock_timestamp() - pg_catalog.make_interval(secs => 0.5)
  AND EXISTS (SELECT FROM pg_catalog.pg_locks l
              WHERE l.pid = a.pid AND l.granted AND l.locktype IN ('relation', 'object', 'tuple'))
)
          USING ERRCODE = 'lock_not_available';
      END IF;
    END;
    PERFORM pg_catalog.pg_sleep(pause);
    pause := least(pause * 2, 2.0);
  END LOOP;
END
$pgprov_retry$;
COMMIT;
