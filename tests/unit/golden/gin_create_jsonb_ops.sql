-- create GIN index idx_checklistresponse_answers_gin on app.checklistresponse(answers jsonb_ops) concurrently
SET application_name = 'pgprov deploy';
SELECT pg_catalog.set_config('client_connection_check_interval', '1s', false)
WHERE pg_catalog.current_setting('server_version_num')::integer >= 140000 \g /dev/null
DO $pgprov$
DECLARE
  announced boolean := false;
BEGIN
  LOOP
    EXIT WHEN pg_catalog.pg_try_advisory_lock(1885824873);
    IF NOT announced THEN
      RAISE NOTICE 'pgprov: waiting for an earlier deploy''s index step: %', (
        SELECT coalesce(pg_catalog.string_agg(pg_catalog.format(
                 'pid %s (application_name %L, %s for %s s: %s)', a.pid, a.application_name,
                 a.state, pg_catalog.round(extract(epoch FROM pg_catalog.clock_timestamp() - a.query_start)),
                 pg_catalog.left(a.query, 60)), '; '), 'a session that is ending')
        FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objid = 1885824873
          AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()));
      announced := true;
    END IF;
    COMMIT;
    PERFORM pg_catalog.pg_sleep(0.2);
    COMMIT;
  END LOOP;
END
$pgprov$;
DO $pgprov$
DECLARE
  announced boolean := false;
BEGIN
  LOOP
    EXIT WHEN NOT EXISTS (
      SELECT FROM pg_catalog.pg_stat_progress_create_index p
      WHERE p.relid = '"app"."checklistresponse"'::regclass
        AND p.pid <> pg_catalog.pg_backend_pid());
    IF NOT announced THEN
      RAISE NOTICE 'pgprov: waiting for an index build already running on %: %', '"app"."checklistresponse"', (
        SELECT pg_catalog.string_agg(pg_catalog.format('pid %s (application_name %L, %s)',
                 p.pid, a.application_name, p.phase), '; ')
        FROM pg_catalog.pg_stat_progress_create_index p
        JOIN pg_catalog.pg_stat_activity a ON a.pid = p.pid
        WHERE p.relid = '"app"."checklistresponse"'::regclass
          AND p.pid <> pg_catalog.pg_backend_pid());
      announced := true;
    END IF;
    COMMIT;
    PERFORM pg_catalog.pg_sleep(0.5);
    COMMIT;
  END LOOP;
END
$pgprov$;
SET ROLE "app_migrator";
WITH found AS (
  SELECT c.relname,
         x.indisvalid AND x.indisready
         AND x.indrelid = '"app"."checklistresponse"'::regclass
         AND x.indnatts = 1 AND x.indexprs IS NULL AND x.indpred IS NULL
         AND am.amname = 'gin'
         AND (SELECT o.opcname FROM pg_catalog.pg_opclass o WHERE o.oid = x.indclass[0]) = 'jsonb_ops'
         AND (SELECT a.attname FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = x.indrelid AND a.attnum = x.indkey[0]) = 'answers' AS ok
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_index x ON x.indexrelid = c.oid
  JOIN pg_catalog.pg_am am ON am.oid = c.relam
  WHERE c.relnamespace = 'app'::regnamespace
    AND c.relname IN ('idx_checklistresponse_answers_gin', 'idx_checklistresponse_answers_gin_new')
), state AS (
  SELECT coalesce(bool_or(relname = 'idx_checklistresponse_answers_gin'), false) AS main_exists,
         coalesce(bool_or(relname = 'idx_checklistresponse_answers_gin' AND ok), false) AS main_ok,
         coalesce(bool_or(relname = 'idx_checklistresponse_answers_gin_new'), false) AS temp_exists,
         coalesce(bool_or(relname = 'idx_checklistresponse_answers_gin_new' AND ok), false) AS temp_ok
  FROM found
)
SELECT temp_exists AND (main_ok OR NOT temp_ok) AS drop_temp,
       NOT main_exists AND NOT temp_ok AS create_index,
       main_exists AND NOT main_ok AND NOT temp_ok AS build_temp,
       main_exists AND NOT main_ok AS drop_index,
       NOT main_ok AND (main_exists OR temp_ok) AS rename_temp
FROM state \gset pgprov_
\if :pgprov_drop_temp
SET lock_timeout = 500;
DROP INDEX CONCURRENTLY IF EXISTS "app"."idx_checklistresponse_answers_gin_new";
\endif
\if :pgprov_create_index
SET lock_timeout = 0;
CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_checklistresponse_answers_gin" ON "app"."checklistresponse" USING gin ("answers");
\endif
\if :pgprov_build_temp
SET lock_timeout = 0;
CREATE INDEX CONCURRENTLY "idx_checklistresponse_answers_gin_new" ON "app"."checklistresponse" USING gin ("answers");
\endif
\if :pgprov_drop_index
SET lock_timeout = 500;
DROP INDEX CONCURRENTLY "app"."idx_checklistresponse_answers_gin";
\endif
\if :pgprov_rename_temp
SET lock_timeout = 500;
ALTER INDEX "app"."idx_checklistresponse_answers_gin_new" RENAME TO "idx_checklistresponse_answers_gin";
\endif
RESET ROLE;
SELECT pg_catalog.pg_advisory_unlock(1885824873) \g /dev/null
