SET log_transaction_sample_rate = 0;
BEGIN;
SELECT pg_catalog.pg_advisory_xact_lock(1885827186) \g /dev/null
SET log_statement = 'none'; SET log_min_duration_statement = -1; SET log_min_duration_sample = -1; SET log_min_error_statement = 'panic'; SET log_error_verbosity = 'terse'; SET log_transaction_sample_rate = 0; SET pg_stat_statements.track = 'none';
DO $pgprov$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'hinfelaar_fastapi_db_user') THEN
    CREATE ROLE "hinfelaar_fastapi_db_user" CREATEDB LOGIN INHERIT PASSWORD '<redacted>';
  END IF;
END $pgprov$;
RESET pg_stat_statements.track; RESET log_transaction_sample_rate; RESET log_error_verbosity; RESET log_min_error_statement; RESET log_min_duration_sample; RESET log_min_duration_statement; RESET log_statement;
COMMIT;
RESET log_transaction_sample_rate;
SELECT pg_catalog.pg_advisory_lock(1885827186) \g /dev/null
SELECT 'CREATE DATABASE "hinfelaar_fastapi" OWNER "hinfelaar_fastapi_db_user" ENCODING ''UTF8'' TEMPLATE template0'
WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = 'hinfelaar_fastapi') \gexec
SELECT pg_catalog.pg_advisory_unlock(1885827186) \g /dev/null
\connect "hinfelaar_fastapi"
BEGIN;
SELECT pg_catalog.pg_advisory_xact_lock(1885827186) \g /dev/null
ALTER ROLE "hinfelaar_fastapi_db_user" IN DATABASE "hinfelaar_fastapi" SET "search_path" TO 'app', 'public';
CREATE SCHEMA IF NOT EXISTS "app" AUTHORIZATION "hinfelaar_fastapi_db_user";
REVOKE CONNECT, TEMPORARY ON DATABASE "hinfelaar_fastapi" FROM PUBLIC;
COMMIT;
