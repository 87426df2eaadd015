BEGIN;
SELECT pg_catalog.pg_advisory_xact_lock(1885827186) \g /dev/null
DO $pgprov$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'app_migrator') THEN
    CREATE ROLE "app_migrator" LOGIN INHERIT PASSWORD 'SCRAM-SHA-256$4096:Zml4ZWQtc2FsdA==$fixed-stored-key=:fixed-server-key=';
  END IF;
END $pgprov$;
DO $pgprov$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'app_runtime') THEN
    CREATE ROLE "app_runtime" LOGIN INHERIT PASSWORD 'SCRAM-SHA-256$4096:Zml4ZWQtc2FsdA==$fixed-stored-key=:fixed-server-key=';
  END IF;
END $pgprov$;
COMMIT;
SELECT pg_catalog.pg_advisory_lock(1885827186) \g /dev/null
SELECT 'CREATE DATABASE "hinfelaar_fastapi" OWNER "app_migrator" ENCODING ''UTF8'' TEMPLATE template0'
WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = 'hinfelaar_fastapi') \gexec
SELECT pg_catalog.pg_advisory_unlock(1885827186) \g /dev/null
\connect "hinfelaar_fastapi"
BEGIN;
SELECT pg_catalog.pg_advisory_xact_lock(1885827186) \g /dev/null
ALTER ROLE "app_migrator" IN DATABASE "hinfelaar_fastapi" SET "search_path" TO 'app', 'public';
ALTER ROLE "app_runtime" IN DATABASE "hinfelaar_fastapi" SET "search_path" TO 'app', 'public';
CREATE SCHEMA IF NOT EXISTS "app" AUTHORIZATION "app_migrator";
REVOKE CONNECT, TEMPORARY ON DATABASE "hinfelaar_fastapi" FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE "app_migrator" REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
GRANT CONNECT ON DATABASE "hinfelaar_fastapi" TO "app_runtime";
GRANT USAGE ON SCHEMA "app" TO "app_runtime";
ALTER DEFAULT PRIVILEGES FOR ROLE "app_migrator" IN SCHEMA "app" GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO "app_runtime";
ALTER DEFAULT PRIVILEGES FOR ROLE "app_migrator" IN SCHEMA "app" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "app_runtime";
COMMIT;
